import type { Knex } from 'knex';

export interface ChallengeRow {
  id: string;
  purpose: 'authentication' | 'registration';
  challenge: string;
  user_id: string | null;
  interaction_uid: string | null;
  expires_at: number;
}

export function createChallengeQueries(db: Knex) {
  const table = () => db('webauthn_challenges');
  return {
    async insert(row: ChallengeRow): Promise<void> {
      await table().insert(row).onConflict('id').merge();
    },
    /**
     * Reads the challenge and deletes it; only the request whose delete removed the row may use it, so a
     * challenge is consumed once even under parallel requests. (knex has no portable DELETE … RETURNING:
     * better-sqlite3 answers a count.)
     */
    async consume(id: string, purpose: ChallengeRow['purpose'], nowSeconds: number): Promise<ChallengeRow | undefined> {
      const row = await table().where({ id, purpose }).first();
      if (!row) return undefined;
      const deleted = await table().where({ id, purpose, challenge: row.challenge }).delete();
      if (deleted !== 1 || Number(row.expires_at) <= nowSeconds) return undefined;
      return {
        id: String(row.id), purpose, challenge: String(row.challenge),
        user_id: (row.user_id as string | null) ?? null, interaction_uid: (row.interaction_uid as string | null) ?? null,
        expires_at: Number(row.expires_at),
      };
    },
    async deleteExpired(nowSeconds: number): Promise<number> {
      return table().where('expires_at', '<=', nowSeconds).delete();
    },
  };
}

export type ChallengeQueries = ReturnType<typeof createChallengeQueries>;

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
    /** Deletes and returns the challenge in one statement: whoever gets the row is its only user. */
    async consume(id: string, purpose: ChallengeRow['purpose'], nowSeconds: number): Promise<ChallengeRow | undefined> {
      const rows: Record<string, unknown>[] = await table().where({ id, purpose }).delete()
        .returning(['id', 'purpose', 'challenge', 'user_id', 'interaction_uid', 'expires_at']);
      const row = rows[0];
      if (!row || Number(row.expires_at) <= nowSeconds) return undefined;
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

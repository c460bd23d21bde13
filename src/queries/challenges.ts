import type { Knex } from 'knex';
import { statements } from '../db/fast.js';

export interface ChallengeRow {
  id: string;
  purpose: 'authentication' | 'registration';
  challenge: string;
  user_id: string | null;
  interaction_uid: string | null;
  expires_at: number;
}

/** A challenge's use: the delete that hands it to one request only (see consume). */
export const CONSUME_CHALLENGE = 'delete from webauthn_challenges where id = ? and purpose = ? and challenge = ? returning *';

const toChallenge = (row: Record<string, unknown>, purpose: ChallengeRow['purpose']): ChallengeRow => ({
  id: String(row.id), purpose, challenge: String(row.challenge),
  user_id: (row.user_id as string | null) ?? null, interaction_uid: (row.interaction_uid as string | null) ?? null,
  expires_at: Number(row.expires_at),
});

export function createChallengeQueries(db: Knex) {
  const table = () => db('webauthn_challenges');
  const run = statements(db);
  return {
    /** Stores the challenge of this browser and purpose, replacing the one it had (one per browser). */
    async insert(row: ChallengeRow): Promise<void> {
      await run.write(`insert into webauthn_challenges (id, purpose, challenge, user_id, interaction_uid, expires_at)
        values (?, ?, ?, ?, ?, ?) on conflict (id) do update set purpose = excluded.purpose, challenge = excluded.challenge,
        user_id = excluded.user_id, interaction_uid = excluded.interaction_uid, expires_at = excluded.expires_at`,
      [row.id, row.purpose, row.challenge, row.user_id, row.interaction_uid, row.expires_at]);
    },
    /** The challenge of this browser and purpose, live or not (a read: nothing is used up). */
    async find(id: string, purpose: ChallengeRow['purpose']): Promise<ChallengeRow | undefined> {
      const row = await run.get<Record<string, unknown>>('select * from webauthn_challenges where id = ? and purpose = ?', [id, purpose]);
      return row ? toChallenge(row, purpose) : undefined;
    },
    /**
     * Deletes the challenge and returns it, in one statement: only the request whose delete removed the
     * row gets it, so a challenge is used once even under parallel requests. With `challenge`, only that
     * challenge (not one the browser asked for since). Written out because knex drops `returning` from
     * deletes on SQLite (which has DELETE … RETURNING since 3.35, as PostgreSQL has).
     */
    async consume(id: string, purpose: ChallengeRow['purpose'], nowSeconds: number, challenge?: string): Promise<ChallengeRow | undefined> {
      const row = challenge === undefined
        ? await run.get<Record<string, unknown>>('delete from webauthn_challenges where id = ? and purpose = ? returning *', [id, purpose])
        : await run.get<Record<string, unknown>>(CONSUME_CHALLENGE, [id, purpose, challenge]);
      if (!row || Number(row.expires_at) <= nowSeconds) return undefined;
      return toChallenge(row, purpose);
    },
    async deleteExpired(nowSeconds: number): Promise<number> {
      return table().where('expires_at', '<=', nowSeconds).delete();
    },
  };
}

export type ChallengeQueries = ReturnType<typeof createChallengeQueries>;

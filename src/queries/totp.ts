import type { Knex } from 'knex';

export interface TotpRow {
  user_id: string;
  secret_enc: string;
  confirmed_at: number | null;
  last_used_step: number | null;
  created_at: number;
}

const num = (v: unknown) => (v == null ? null : Number(v));

export function createTotpQueries(db: Knex | Knex.Transaction) {
  const table = () => db('totp_factors');
  return {
    async find(userId: string): Promise<TotpRow | undefined> {
      const r = await table().where({ user_id: userId }).first();
      if (!r) return undefined;
      return {
        user_id: String(r.user_id), secret_enc: String(r.secret_enc), confirmed_at: num(r.confirmed_at),
        last_used_step: num(r.last_used_step), created_at: Number(r.created_at),
      };
    },
    /** Starts (or restarts) an enrollment; a confirmed authenticator is not replaced. */
    async upsertPending(userId: string, secretEnc: string, at: number): Promise<void> {
      await table().where({ user_id: userId }).whereNull('confirmed_at').delete();
      await table().insert({ user_id: userId, secret_enc: secretEnc, confirmed_at: null, last_used_step: null, created_at: at })
        .onConflict('user_id').ignore();
    },
    /**
     * Accepts time step `step` once: only if it is later than the last accepted one (RFC 6238 §5.2),
     * checked and recorded in one statement so parallel requests cannot both use it. With `confirm`, the
     * pending secret `confirm.secretEnc` (the one the code was checked against) becomes the user's
     * authenticator; not another one that replaced it meanwhile, which the user never proved.
     */
    async claimStep(userId: string, step: number, confirm?: { at: number; secretEnc: string }): Promise<boolean> {
      const changes: Record<string, number> = { last_used_step: step };
      if (confirm) changes.confirmed_at = confirm.at;
      const updated = await table()
        .where({ user_id: userId })
        .andWhere((q) => q.whereNull('last_used_step').orWhere('last_used_step', '<', step))
        .andWhere((q) => (confirm ? q.whereNull('confirmed_at').andWhere('secret_enc', confirm.secretEnc) : q.whereNotNull('confirmed_at')))
        .update(changes);
      return updated === 1;
    },
    async listSecrets(): Promise<Array<{ user_id: string; secret_enc: string }>> {
      const rows: Record<string, unknown>[] = await table().select('user_id', 'secret_enc');
      return rows.map((r) => ({ user_id: String(r.user_id), secret_enc: String(r.secret_enc) }));
    },
    async updateSecret(userId: string, secretEnc: string): Promise<void> {
      await table().where({ user_id: userId }).update({ secret_enc: secretEnc });
    },
  };
}

export type TotpQueries = ReturnType<typeof createTotpQueries>;

import type { Knex } from 'knex';

export function createRecoveryCodeQueries(db: Knex) {
  const table = (trx: Knex | Knex.Transaction = db) => trx('recovery_codes');
  return {
    /** Replaces all of a user's codes in one transaction. */
    async replaceAll(userId: string, hashes: string[], at: number): Promise<void> {
      await db.transaction(async (trx) => {
        await table(trx).where({ user_id: userId }).delete();
        await table(trx).insert(hashes.map((code_hash) => ({ user_id: userId, code_hash, used_at: null, created_at: at })));
      });
    },
    /** Marks the code used if it is unused: check and use in one statement (single use under parallel requests). */
    async use(userId: string, hash: string, at: number): Promise<boolean> {
      const updated = await table().where({ user_id: userId, code_hash: hash }).whereNull('used_at').update({ used_at: at });
      return updated === 1;
    },
    async remaining(userId: string): Promise<number> {
      const row = await table().where({ user_id: userId }).whereNull('used_at').count<{ n: number | string }[]>({ n: '*' }).first();
      return Number(row?.n ?? 0);
    },
    async removeAll(userId: string): Promise<void> {
      await table().where({ user_id: userId }).delete();
    },
  };
}

export type RecoveryCodeQueries = ReturnType<typeof createRecoveryCodeQueries>;

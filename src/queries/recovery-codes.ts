import type { Knex } from 'knex';
import { lockUser } from './users.js';

export function createRecoveryCodeQueries(db: Knex) {
  const table = (trx: Knex | Knex.Transaction = db) => trx('recovery_codes');
  const latestSet = async (trx: Knex | Knex.Transaction, userId: string) => Number((await table(trx).where({ user_id: userId }).max<{ id: number | string | null }[]>({ id: 'id' }).first())?.id ?? 0);
  return {
    /**
     * Replaces all of a user's codes in one transaction. Two at once replace one after the other (the
     * user's row is locked): the later set is the only one left, not both. With `ifSet`, only if the
     * user's set is still that one (see latestSet); false otherwise.
     */
    async replaceAll(userId: string, hashes: string[], at: number, ifSet?: number): Promise<boolean> {
      return db.transaction(async (trx) => {
        await lockUser(trx, userId);
        if (ifSet !== undefined && await latestSet(trx, userId) !== ifSet) return false;
        await table(trx).where({ user_id: userId }).delete();
        await table(trx).insert(hashes.map((code_hash) => ({ user_id: userId, code_hash, used_at: null, created_at: at })));
        return true;
      });
    },
    /** Which set of codes the user has: its newest row's id (ids only grow), 0 for none. */
    latestSet: (userId: string) => latestSet(db, userId),
    /**
     * Stores the codes only if the user has none, used or not (the codes of a first factor); false if
     * they had some. Of two first factors enrolled at once, one issues the codes.
     */
    async insertIfNone(userId: string, hashes: string[], at: number): Promise<boolean> {
      return db.transaction(async (trx) => {
        await lockUser(trx, userId);
        if (await table(trx).where({ user_id: userId }).first('user_id')) return false;
        await table(trx).insert(hashes.map((code_hash) => ({ user_id: userId, code_hash, used_at: null, created_at: at })));
        return true;
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
  };
}

export type RecoveryCodeQueries = ReturnType<typeof createRecoveryCodeQueries>;

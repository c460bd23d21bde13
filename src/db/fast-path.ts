import type { Db } from './connect.js';

/**
 * A fast path of one store (sqlite-direct.ts, pg-direct.ts): one instance per knex instance, so every
 * query module shares it; none on the other store, and none inside a knex transaction, whose statements
 * must all run on it, one by one, as knex runs them.
 */
export function fastPath<T>(client: 'better-sqlite3' | 'pg', create: (db: Db) => T): (db: Db) => T | undefined {
  const instances = new WeakMap<Db, T>();
  return (db) => {
    if (db.client.config.client !== client || (db as { isTransaction?: boolean }).isTransaction) return undefined;
    let instance = instances.get(db);
    if (!instance) {
      instance = create(db);
      instances.set(db, instance);
    }
    return instance;
  };
}

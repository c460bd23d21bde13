import type { Db } from './connect.js';

export type SqlValue = string | number | bigint | null;

/** What each store's fast path offers the queries layer: statements with `?` placeholders, no builder. */
export interface FastPath {
  /** The first row a read returns (reads see every write whose promise has settled). */
  get<T>(sql: string, params: SqlValue[]): Promise<T | undefined>;
  /** Every row a read returns. */
  all<T>(sql: string, params: SqlValue[]): Promise<T[]>;
  /** Runs a write; resolves once it is committed (on SQLite, together with the other writes of its turn). */
  write(sql: string, params: SqlValue[]): Promise<void>;
}

/**
 * A fast path of one store (sqlite-direct.ts, pg-direct.ts): one instance per knex instance, so every
 * query module shares it; none on the other store, and none inside a knex transaction, whose statements
 * must all run on it, one by one, as knex runs them.
 */
export function fastPathOn<T extends FastPath>(client: 'better-sqlite3' | 'pg', create: (db: Db) => T): (db: Db) => T | undefined {
  const instances = new WeakMap<Db, T>();
  return (db) => {
    if ((db.client as { driverName?: string }).driverName !== client || (db as { isTransaction?: boolean }).isTransaction) return undefined;
    let instance = instances.get(db);
    if (!instance) {
      instance = create(db);
      instances.set(db, instance);
    }
    return instance;
  };
}

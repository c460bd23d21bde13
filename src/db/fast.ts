import type { Knex } from 'knex';
import type { Db } from './connect.js';
import type { SqlValue } from './fast-path.js';
import { directPg } from './pg-direct.js';
import { directSqlite } from './sqlite-direct.js';

/**
 * Statements written out once, with `?` placeholders, the same on both stores: on the store's fast path
 * (no query builder; see sqlite-direct.ts and pg-direct.ts), or through knex inside a transaction.
 */
export function statements(db: Db | Knex.Transaction) {
  const fast = directSqlite(db as Db) ?? directPg(db as Db);
  // knex answers a raw statement as its driver does: rows (better-sqlite3) or { rows } (node-postgres);
  // a statement that returns nothing, { changes } on better-sqlite3.
  async function rawRows<T>(sql: string, params: SqlValue[]): Promise<T[]> {
    const result = await db.raw(sql, params as Knex.RawBinding[]) as T[] | { rows?: T[] };
    return Array.isArray(result) ? result : result.rows ?? [];
  }
  // Plain functions handing back the fast path's promise (see sqlite-direct.ts).
  return {
    /** The first row the statement returns (a read, or a write with RETURNING). */
    get<T>(sql: string, params: SqlValue[]): Promise<T | undefined> {
      return fast ? fast.get<T>(sql, params) : rawRows<T>(sql, params).then((rows) => rows[0]);
    },
    /** Every row the statement returns. */
    all<T>(sql: string, params: SqlValue[]): Promise<T[]> {
      return fast ? fast.all<T>(sql, params) : rawRows<T>(sql, params);
    },
    write(sql: string, params: SqlValue[]): Promise<void> {
      return fast ? fast.write(sql, params) : db.raw(sql, params as Knex.RawBinding[]).then(() => undefined);
    },
  };
}

/**
 * The hot path of the embedded SQLite store, for the queries layer: statements without knex's query
 * builder, pool and runner (≈ 80 µs a statement on the 2-core VM of the benchmark).
 *
 * - A statement that only reads runs at once on this thread's read-only connection.
 * - A statement that writes (RETURNING included) goes to the writer thread, which commits the ones that
 *   arrive together in one transaction, outside any knex transaction, and answers each after that commit
 *   (sqlite-thread.ts). Nothing is acknowledged before it is stored, exactly as with a lone commit; one bad
 *   write fails only its own caller.
 *
 * PostgreSQL has its own fast path (pg-direct.ts): `directSqlite` returns undefined there, and
 * statements() (fast.ts) picks the one of the store.
 */
import type { Db } from './connect.js';
import { fastPathOn, type FastPath, type SqlValue } from './fast-path.js';
import { sqliteConnectionOf, type SqliteConnection } from './sqlite-thread.js';

/**
 * Shared by every query module. None inside a knex transaction: its statements must run in it, through
 * knex, one by one.
 */
export const directSqlite = fastPathOn('better-sqlite3', (db) => createDirectSqlite(db));

/**
 * The open connection of knex's pool (of one); opened through the pool when it has none yet, or when its
 * writer thread has ended (the pool then replaces it).
 */
export async function sqliteConnection(db: Db): Promise<SqliteConnection> {
  const open = sqliteConnectionOf(db.client);
  if (open?.usable) return open;
  await db.client.releaseConnection(await db.client.acquireConnection());
  return sqliteConnectionOf(db.client)!;
}

function createDirectSqlite(db: Db): FastPath {
  // Plain functions handing back the connection's promise: each async layer between a query and the
  // statement costs promises, which cost more with async hooks on (oidc-provider's request context).
  const open = () => {
    const conn = sqliteConnectionOf(db.client);
    return conn?.usable ? conn : undefined;
  };
  // While the connection is (re)opened, every statement waits on one promise, so they reach the writer
  // in the order they were made, as they do on an open connection (a passkey's use and its challenge's
  // delete, made together, rely on it: PasskeyQueries.useConsumingChallenge).
  let reopening: Promise<SqliteConnection> | undefined;
  const reopened = () => (reopening ??= sqliteConnection(db).finally(() => { reopening = undefined; }));
  return {
    write: (sql: string, params: SqlValue[]) => open()?.write(sql, params) ?? reopened().then((c) => c.write(sql, params)),
    get: <T>(sql: string, params: SqlValue[]) => open()?.get<T>(sql, params) ?? reopened().then((c) => c.get<T>(sql, params)),
    all: <T>(sql: string, params: SqlValue[]) => open()?.all<T>(sql, params) ?? reopened().then((c) => c.all<T>(sql, params)),
  };
}

/**
 * The hot path of the embedded SQLite store, for the queries layer.
 *
 * oidc-provider writes one row for every token it issues. On SQLite each commit is a WAL append, a round
 * of lock calls on the -shm file and a sync of the WAL to disk (synchronous = FULL, connect.ts), all on
 * this thread; on the 2-core VM of the benchmark a one-row commit cost ≈70 µs without the sync and
 * ≈290 µs with it (2026-11-30), and knex's query builder, pool and runner add about 80 µs more.
 *
 * - Writes that arrive in the same turn of the event loop are committed together, in one transaction
 *   (group commit, through createBatcher). A caller's promise settles only after that commit, so nothing
 *   is acknowledged before it is stored, exactly as with a lone commit; one bad write fails only its own
 *   caller.
 * - Statements run on knex's own pooled connection (the pool holds one), so they queue behind a knex
 *   transaction instead of interleaving with it, and come from that connection's statement cache
 *   (connect.ts). While the pool holds the connection idle, a statement uses it directly, without the
 *   pool's acquire and release (idleSqliteConnection).
 *
 * PostgreSQL has its own fast path (pg-direct.ts): `directSqlite` returns undefined there, and
 * statements() (fast.ts) picks the one of the store.
 */
import type { Database } from 'better-sqlite3';
import { createBatcher } from './batcher.js';
import { idleSqliteConnection, type Db } from './connect.js';
import { fastPathOn, type FastPath, type SqlValue } from './fast-path.js';

/**
 * Shared by every query module, so they share one commit queue. None inside a knex transaction: a group
 * commit must not mix the transaction's writes with other callers' writes.
 */
export const directSqlite = fastPathOn('better-sqlite3', (db) => createDirectSqlite(db));

function createDirectSqlite(db: Db): FastPath {
  async function withConnection<T>(use: (conn: Database) => T): Promise<T> {
    const idle = idleSqliteConnection(db);
    if (idle) return use(idle);
    const conn = (await db.client.acquireConnection()) as Database;
    try {
      return use(conn);
    } finally {
      await db.client.releaseConnection(conn);
    }
  }

  type Write = { sql: string; params: SqlValue[] };
  const run = (conn: Database, w: Write) => { conn.prepare(w.sql).run(...w.params); };

  const write = createBatcher<Write>({
    all: (writes) => withConnection((conn) => {
      try {
        conn.transaction(() => { for (const w of writes) run(conn, w); })();
      } catch (error) {
        // better-sqlite3 rolls back; should that rollback itself have failed, end the transaction here.
        if (conn.inTransaction) conn.exec('ROLLBACK');
        throw error;
      }
    }),
    one: (w) => withConnection((conn) => run(conn, w)),
    // Locked by another process past busy_timeout: alone, each write would wait as long again.
    retryAlone: (error) => !String((error as { code?: unknown }).code).startsWith('SQLITE_BUSY'),
  });

  return {
    write: (sql: string, params: SqlValue[]) => write({ sql, params }),
    get<T>(sql: string, params: SqlValue[]) {
      return withConnection((conn) => conn.prepare(sql).get(...params) as T | undefined);
    },
    all<T>(sql: string, params: SqlValue[]) {
      return withConnection((conn) => conn.prepare(sql).all(...params) as T[]);
    },
  };
}

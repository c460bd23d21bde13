/**
 * The hot path of the embedded SQLite store, for the queries layer.
 *
 * oidc-provider writes one row for every token it issues. On SQLite each commit is a WAL append plus a
 * round of lock calls on the -shm file; on a virtual machine, where system calls are dear, one commit
 * cost ≈80 µs, and knex's query builder, pool and runner about as much again: most of a token request.
 *
 * - Writes that arrive in the same turn of the event loop are committed together, in one transaction
 *   (group commit). A caller's promise settles only after that commit, so nothing is acknowledged before
 *   it is stored, exactly as with a lone commit. If the batch fails, each write is retried on its own, so
 *   one bad write fails only its own caller.
 * - Statements are prepared once per connection and run on knex's own pooled connection (the pool holds
 *   one), so they queue behind a knex transaction instead of interleaving with it.
 *
 * PostgreSQL needs none of this (real concurrency, a pool of connections): `directSqlite` returns
 * undefined there and callers use knex.
 */
import type { Database, Statement } from 'better-sqlite3';
import type { Db } from './connect.js';

export type SqlValue = string | number | bigint | null;

export interface DirectSqlite {
  /** Runs a write as part of the next group commit; resolves with the number of rows it changed. */
  write(sql: string, params: SqlValue[]): Promise<number>;
  /** The first row a read returns (reads see every write whose promise has settled). */
  get<T>(sql: string, params: SqlValue[]): Promise<T | undefined>;
}

interface PendingWrite {
  sql: string;
  params: SqlValue[];
  resolve(changes: number): void;
  reject(error: unknown): void;
}

const instances = new WeakMap<Db, DirectSqlite>();

/** One instance per knex instance, so every query module shares one commit queue. */
export function directSqlite(db: Db): DirectSqlite | undefined {
  // Inside a knex transaction, statements run on it one by one, as knex would run them: a group commit
  // must not mix writes of the transaction with writes of other callers.
  if (db.client.config.client !== 'better-sqlite3' || (db as { isTransaction?: boolean }).isTransaction) return undefined;
  let direct = instances.get(db);
  if (!direct) {
    direct = createDirectSqlite(db);
    instances.set(db, direct);
  }
  return direct;
}

function createDirectSqlite(db: Db): DirectSqlite {
  const statements = new WeakMap<Database, Map<string, Statement>>();
  const prepared = (conn: Database, sql: string): Statement => {
    let cache = statements.get(conn);
    if (!cache) {
      cache = new Map();
      statements.set(conn, cache);
    }
    let statement = cache.get(sql);
    if (!statement) {
      statement = conn.prepare(sql);
      cache.set(sql, statement);
    }
    return statement;
  };

  async function withConnection<T>(use: (conn: Database) => T): Promise<T> {
    const conn = (await db.client.acquireConnection()) as Database;
    try {
      return use(conn);
    } finally {
      await db.client.releaseConnection(conn);
    }
  }

  let queue: PendingWrite[] = [];

  async function flush(): Promise<void> {
    const batch = queue;
    queue = [];
    try {
      await withConnection((conn) => {
        let results: number[];
        try {
          results = conn.transaction(() => batch.map((w) => prepared(conn, w.sql).run(...w.params).changes))();
        } catch (error) {
          // Locked by another process past busy_timeout: alone, each write would wait as long again.
          if (String((error as { code?: unknown }).code).startsWith('SQLITE_BUSY')) {
            for (const w of batch) w.reject(error);
            return;
          }
          // better-sqlite3 rolled the transaction back (if a rollback failed, end it before going on).
          if (conn.inTransaction) conn.exec('ROLLBACK');
          // Run each write alone so only the bad one fails.
          for (const w of batch) {
            try {
              w.resolve(prepared(conn, w.sql).run(...w.params).changes);
            } catch (error) {
              w.reject(error);
            }
          }
          return;
        }
        batch.forEach((w, i) => w.resolve(results[i]!));
      });
    } catch (error) {
      // No connection (the pool is closing): nothing was written.
      for (const w of batch) w.reject(error);
    }
  }

  return {
    write(sql, params) {
      return new Promise<number>((resolve, reject) => {
        queue.push({ sql, params, resolve, reject });
        // setImmediate runs after this turn's I/O callbacks: every request that arrived with this one
        // gets to add its write first.
        if (queue.length === 1) setImmediate(() => { void flush(); });
      });
    },
    get<T>(sql: string, params: SqlValue[]) {
      return withConnection((conn) => prepared(conn, sql).get(...params) as T | undefined);
    },
  };
}

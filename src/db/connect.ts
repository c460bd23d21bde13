/**
 * One knex instance for PostgreSQL (DATABASE_URL=postgres://…) or the embedded SQLite database.
 * Only src/queries/ builds SQL with it.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Database, Statement } from 'better-sqlite3';
import knex, { type Knex } from 'knex';
import { namePgStatements, type PgConnection } from './pg-direct.js';

export type Db = Knex;

export interface DbTarget {
  database_url: string | undefined;
  data_dir: string;
  /** PostgreSQL: name statements so each connection prepares them once (default true; see pg-direct.ts). */
  prepared_statements?: boolean;
  /** SQLite: sync the WAL at every commit ('full', the default) or at checkpoints only ('normal'). */
  sqlite_synchronous?: 'full' | 'normal';
}

export function isPostgres(url: string | undefined): url is string {
  return !!url && /^postgres(ql)?:\/\//i.test(url);
}

export function describeDatabase(target: DbTarget): string {
  if (isPostgres(target.database_url)) {
    const u = new URL(target.database_url);
    return `PostgreSQL ${u.hostname}:${u.port || 5432}${u.pathname}`;
  }
  return `SQLite ${path.join(target.data_dir, 'idp.sqlite')}`;
}

export function connect(target: DbTarget): Db {
  if (target.database_url && !isPostgres(target.database_url)) {
    throw new Error('DATABASE_URL: expected a postgres:// or postgresql:// URL');
  }
  if (isPostgres(target.database_url)) {
    return knex({
      client: 'pg', connection: target.database_url,
      pool: {
        min: 0,
        max: 10,
        afterCreate(conn: PgConnection, done: (err: Error | null, conn: unknown) => void) {
          if (target.prepared_statements !== false) namePgStatements(conn);
          done(null, conn);
        },
      },
    });
  }
  mkdirSync(target.data_dir, { recursive: true });
  const db: Db = knex({
    client: 'better-sqlite3',
    connection: { filename: path.join(target.data_dir, 'idp.sqlite') },
    useNullAsDefault: true,
    pool: {
      min: 1,
      max: 1,
      afterCreate(conn: Database, done: (err: Error | null, conn: unknown) => void) {
        // WAL lets several processes (server + CLI) share the file; foreign keys are off by default in SQLite.
        conn.pragma('journal_mode = WAL');
        // By default a commit is on disk before it is answered, as on PostgreSQL (synchronous_commit = on):
        // a consumed code, a used recovery code, a revocation or a throttle count survives a power loss
        // too. Always set: better-sqlite3 is built with SQLITE_DEFAULT_WAL_SYNCHRONOUS=1, which SQLite
        // applies once it reads a file in WAL mode, so unset it ran at NORMAL (the WAL synced at
        // checkpoints only; https://www.sqlite.org/pragma.html#pragma_synchronous).
        conn.pragma(`synchronous = ${target.sqlite_synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
        conn.pragma('foreign_keys = ON');
        conn.pragma('busy_timeout = 5000');
        cachePreparedStatements(conn);
        sqliteConnections.set(db, conn);
        done(null, conn);
      },
    },
  });
  return db;
}

const sqliteConnections = new WeakMap<Db, Database>();

/**
 * The SQLite connection, when knex's pool (of one) holds it idle. A caller that uses it synchronously
 * cannot interleave with a knex query or transaction (nothing else runs meanwhile), so it may skip the
 * pool's acquire and release, two rounds of promises and a timer (sqlite-direct.ts). Otherwise undefined.
 */
export function idleSqliteConnection(db: Db): Database | undefined {
  const pool = db.client.pool as { numFree(): number; numUsed(): number; numPendingAcquires(): number } | undefined;
  if (!pool || pool.numFree() !== 1 || pool.numUsed() !== 0 || pool.numPendingAcquires() !== 0) return undefined;
  return sqliteConnections.get(db);
}

/**
 * knex prepares every statement anew for each query; on SQLite that parse is a good share of a small
 * query's cost. The queries layer issues a few dozen distinct statements, so keep the most recent ones
 * (bounded: an `IN (…)` of another length is another statement). Statements run one at a time on this
 * single connection, so reusing one is safe.
 */
function cachePreparedStatements(conn: Database, size = 256): void {
  const prepare = conn.prepare.bind(conn);
  const cache = new Map<string, Statement>();
  conn.prepare = ((sql: string) => {
    let statement = cache.get(sql);
    if (statement) {
      cache.delete(sql);
    } else {
      statement = prepare(sql);
      if (cache.size >= size) cache.delete(cache.keys().next().value!);
    }
    cache.set(sql, statement);
    return statement;
  }) as Database['prepare'];
}


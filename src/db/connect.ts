/**
 * One knex instance for PostgreSQL (DATABASE_URL=postgres://…) or the embedded SQLite database.
 * Only src/queries/ builds SQL with it.
 */
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import knex, { type Knex } from 'knex';
import { namePgStatements, type PgConnection } from './pg-direct.js';
import { sqliteClient } from './sqlite-thread.js';
import type { Logger } from '../log.js';
import { AppError } from '../errors.js';

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

/** Where the database is, for a message: the URL with any password masked (`postgres://app:***@db/idp`). */
export function databaseLocation(target: DbTarget): string {
  if (!isPostgres(target.database_url)) return describeDatabase(target);
  try {
    const url = new URL(target.database_url);
    if (url.password) url.password = '***';
    for (const key of [...url.searchParams.keys()]) if (/pass/i.test(key)) url.searchParams.set(key, '***');
    return url.toString();
  } catch {
    return 'DATABASE_URL, not a valid URL';
  }
}

/**
 * Opens one connection and gives it back, so that a database that cannot be reached (refused, unknown
 * host, no such database, a wrong password) is one sentence naming it, before any command starts work.
 */
export async function reachDatabase(db: Db, target: DbTarget): Promise<void> {
  let connection: unknown;
  try {
    connection = await db.client.acquireConnection();
  } catch (err) {
    // Node's connect to a name with several addresses fails with an AggregateError whose message is empty.
    const causes = err instanceof AggregateError && err.errors.length ? err.errors : [err];
    const reason = [...new Set(causes.map((e) => (e instanceof Error ? e.message || (e as { code?: string }).code || e.name : String(e)).split('\n')[0]))].join('; ');
    throw new AppError('database_unreachable', `cannot reach the database (${databaseLocation(target)}): ${reason}`, { cause: err });
  }
  await db.client.releaseConnection(connection);
}

/**
 * knex's own messages (a lost connection, a failed acquire, deprecations) go to our log as single JSON
 * lines; knex would print them with console.log, stack traces and all, between the log's lines.
 */
function knexLog(log: Logger | undefined): Knex.Config['log'] {
  if (!log) return undefined;
  // The first line: knex appends the error's stack to some ("Acquire connection error: …").
  const detail = (message: unknown) => ({ detail: (message instanceof Error ? message.message : String(message)).split('\n')[0] });
  return {
    warn: (message) => {
      // Its advice while another process holds the migration lock names its own CLI: ours is
      // `migrate --unlock`, which the error names if the wait gives up (migrate.ts).
      if (/knex migrate:unlock/.test(String(message))) return;
      log.warn('database', detail(message));
    },
    error: (message) => log.error('database', detail(message)),
    // knex hands over one finished sentence, whatever its type says (lib/logger.js).
    deprecate: (message) => log.warn('database', detail(message)),
    debug: (message) => log.debug('database', detail(message)),
  };
}

export function connect(target: DbTarget, log?: Logger): Db {
  if (target.database_url && !isPostgres(target.database_url)) {
    throw new Error('DATABASE_URL: expected a postgres:// or postgresql:// URL');
  }
  if (isPostgres(target.database_url)) {
    return knex({
      client: 'pg', connection: target.database_url, log: knexLog(log),
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
  // The file holds the signing keys' private halves and the cookie keys (keystore), as PostgreSQL's tables
  // do behind its own access control: only this user may read it (an operator-audit finding: it was
  // created 0644). SQLite gives its -wal and -shm files the database file's permissions. An existing
  // file's permissions are the operator's.
  mkdirSync(target.data_dir, { recursive: true, mode: 0o700 });
  const file = path.join(target.data_dir, 'idp.sqlite');
  if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
  return knex({
    // Statements run on a thread of their own, reads of the fast path on this one (sqlite-thread.ts).
    client: sqliteClient([
      'busy_timeout = 5000',
      // WAL lets several processes (server + CLI) and this process's two connections share the file.
      'journal_mode = WAL',
      // By default a commit is on disk before it is answered, as on PostgreSQL (synchronous_commit = on;
      // there, postgres_issuance_commit: async excepts newly issued tokens and codes): a consumed code, a
      // used recovery code, a revocation or a throttle count survives a power loss too. Always set:
      // better-sqlite3 is built with SQLITE_DEFAULT_WAL_SYNCHRONOUS=1, which SQLite applies once it reads a
      // file in WAL mode, so unset it ran at NORMAL (the WAL synced at checkpoints only;
      // https://www.sqlite.org/pragma.html#pragma_synchronous).
      `synchronous = ${target.sqlite_synchronous === 'normal' ? 'NORMAL' : 'FULL'}`,
      // Off by default in SQLite.
      'foreign_keys = ON',
    ]),
    connection: { filename: file },
    useNullAsDefault: true,
    log: knexLog(log),
    // One connection, as SQLite has one writer: knex's queries and transactions take turns on it.
    pool: { min: 1, max: 1 },
  });
}

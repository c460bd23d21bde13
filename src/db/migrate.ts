/**
 * Migrations are imported modules (not a directory scan) so the same code runs from sources, from the
 * compiled output and under jest.
 */
import type { Knex } from 'knex';
import { migrations } from '../../migrations/index.js';
import type { Db } from './connect.js';

const source: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(migrations).sort(),
  getMigrationName: (name) => name,
  getMigration: async (name) => migrations[name]!,
};

// A database may hold migrations this code does not know: a newer version applied them during a rolling
// upgrade, while this one still serves. Migrations only add (new tables, nullable columns), so this code
// works on such a database; knex would otherwise refuse to start and report every check as failed.
const OPTIONS = { migrationSource: source, disableMigrationsListValidation: true };

/** Any number of our own (pg_advisory_xact_lock takes a bigint): "wrnexus" in ASCII, 0x77726e65787573. */
const PG_MIGRATION_LOCK = '33621340702930291';
/** How long a start waits for another process's migrations before it gives up. */
const WAIT_FOR_OTHERS_MS = 60_000;

/**
 * Applies pending migrations, also when other instances start at the same time on the same new database
 * (docker-compose.yml's first start, or the CLI beside the server). knex creates its bookkeeping tables
 * before it takes its lock, so two processes can both create them (one fails) and both insert the lock
 * row, after which knex finds the lock taken for ever (it expects to update exactly one row); and while
 * another process migrates it refuses (MigrationLocked) rather than waits. So: on PostgreSQL the
 * instances queue on an advisory lock held for the whole run and released when its transaction ends,
 * also if the process dies (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS);
 * on both stores a start that meets another's migrations tries again until they are done, and removes a
 * second lock row.
 */
export async function migrate(db: Db): Promise<string[]> {
  if (db.client.driverName === 'pg') {
    return db.transaction(async (trx) => {
      // The lock waits as long as the migrations ahead take, on a connection idle meanwhile: a database's
      // lock_timeout or idle_in_transaction_session_timeout would cut it short (and release it early).
      await trx.raw('set local lock_timeout = 0; set local statement_timeout = 0; set local idle_in_transaction_session_timeout = 0');
      await trx.raw(`select pg_advisory_xact_lock(${PG_MIGRATION_LOCK})`);
      return latestOnceOthersAreDone(db);
    });
  }
  return latestOnceOthersAreDone(db);
}

/** Tries of a start that met another's creation of knex's tables: the next one finds them. */
const CREATION_RACES = 3;

async function latestOnceOthersAreDone(db: Db): Promise<string[]> {
  const giveUpAt = Date.now() + WAIT_FOR_OTHERS_MS;
  for (let races = 0, waits = 0; ; ) {
    try {
      return (await db.migrate.latest(OPTIONS))[1] as string[];
    } catch (err) {
      const e = err as { name?: string; message?: string; code?: string };
      const locked = e.name === 'MigrationLocked';
      // Two processes creating knex's tables at once (an older version, without the advisory lock, on
      // PostgreSQL): "already exists", or on PostgreSQL a duplicate in its catalogue (23505).
      const createdMeanwhile = /\bcreate table\b.*\bknex_migrations(_lock)?\b/i.test(e.message ?? '')
        && (/already exists/.test(e.message ?? '') || e.code === '23505');
      if (createdMeanwhile && (races += 1) < CREATION_RACES) continue;
      // Waiting on another's lock past the database's lock_timeout (55P03) is another's work too.
      if (!locked && !String(e.code).startsWith('SQLITE_BUSY') && e.code !== '55P03') throw err;
      if (Date.now() > giveUpAt) {
        throw new Error(`another process has held the migration lock (table knex_migrations_lock) for ${WAIT_FOR_OTHERS_MS / 1000} s: if none is migrating, one stopped while it did: free it with the CLI's "migrate --unlock" (${e.message})`, { cause: err });
      }
      // With two lock rows nobody can take the lock (knex's update must change exactly one), so nobody
      // holds it either: keep the first.
      if (locked) await db('knex_migrations_lock').where('index', '>', db('knex_migrations_lock').min('index')).delete();
      // Sooner at first (migrations usually take a second), then every two seconds or so: each try is a
      // warning in the log (knex's "Can't take lock").
      waits += 1;
      await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 50 * 2 ** waits) * (0.5 + Math.random() / 2)));
    }
  }
}

/**
 * Frees knex's migration lock, left taken by a process that stopped while it migrated (`idp migrate
 * --unlock`). Only then: a process migrating now would be run over.
 */
export async function freeMigrationLock(db: Db): Promise<void> {
  await db.migrate.forceFreeMigrationsLock(OPTIONS);
}

/** Names of migrations not yet applied to this database. */
export async function pendingMigrations(db: Db): Promise<string[]> {
  const [, pending] = await db.migrate.list(OPTIONS) as [unknown[], Array<string | { file?: string; name?: string }>];
  return pending.map((p) => (typeof p === 'string' ? p : p.name ?? p.file ?? String(p)));
}

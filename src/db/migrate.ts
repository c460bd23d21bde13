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
      await trx.raw(`select pg_advisory_xact_lock(${PG_MIGRATION_LOCK})`);
      return latestOnceOthersAreDone(db);
    });
  }
  return latestOnceOthersAreDone(db);
}

async function latestOnceOthersAreDone(db: Db): Promise<string[]> {
  const giveUpAt = Date.now() + WAIT_FOR_OTHERS_MS;
  for (;;) {
    try {
      return (await db.migrate.latest(OPTIONS))[1] as string[];
    } catch (err) {
      const e = err as { name?: string; message?: string; code?: string };
      const locked = e.name === 'MigrationLocked';
      const othersAtWork = locked || String(e.code).startsWith('SQLITE_BUSY')
        || /\bknex_migrations(_lock)?\b.*already exists/.test(e.message ?? '');
      if (!othersAtWork) throw err;
      if (Date.now() > giveUpAt) {
        throw new Error(`another process has held the migration lock for ${WAIT_FOR_OTHERS_MS / 1000} s (table knex_migrations_lock): if none is migrating, one stopped while it did: free it with npm run idp -- migrate --unlock`, { cause: err });
      }
      // With two lock rows nobody can take the lock (knex's update must change exactly one), so nobody
      // holds it either: keep the first.
      if (locked) await db('knex_migrations_lock').where('index', '>', db('knex_migrations_lock').min('index')).delete();
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 150));
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

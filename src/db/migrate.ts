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

export async function migrate(db: Db): Promise<string[]> {
  const [, applied] = await db.migrate.latest(OPTIONS);
  return applied as string[];
}

/** Names of migrations not yet applied to this database. */
export async function pendingMigrations(db: Db): Promise<string[]> {
  const [, pending] = await db.migrate.list(OPTIONS) as [unknown[], Array<string | { file?: string; name?: string }>];
  return pending.map((p) => (typeof p === 'string' ? p : p.name ?? p.file ?? String(p)));
}

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

export async function migrate(db: Db): Promise<string[]> {
  const [, applied] = await db.migrate.latest({ migrationSource: source });
  return applied as string[];
}

/** Names of migrations not yet applied to this database. */
export async function pendingMigrations(db: Db): Promise<string[]> {
  const [, pending] = await db.migrate.list({ migrationSource: source }) as [unknown[], Array<string | { file?: string; name?: string }>];
  return pending.map((p) => (typeof p === 'string' ? p : p.name ?? p.file ?? String(p)));
}

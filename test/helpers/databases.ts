/**
 * The databases every storage-touching suite runs against: SQLite always, PostgreSQL too when
 * TEST_DATABASE_URL is set (each suite gets a fresh database there). Under CI=true a missing
 * TEST_DATABASE_URL fails the suite instead of skipping PostgreSQL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import knex from 'knex';
import { connect, type Db, type DbTarget } from '../../src/db/connect.js';
import { migrate } from '../../src/db/migrate.js';

export interface TestDatabase {
  name: 'sqlite' | 'postgres';
  target: DbTarget;
  /** Drops the database (PostgreSQL) or removes the directory (SQLite). */
  dispose(): Promise<void>;
}

export const databaseKinds = (): Array<'sqlite' | 'postgres'> => {
  if (process.env.TEST_DATABASE_URL) return ['sqlite', 'postgres'];
  if (process.env.CI === 'true') {
    throw new Error('CI=true but TEST_DATABASE_URL is not set: the PostgreSQL half of the suite cannot run');
  }
  return ['sqlite'];
};

export async function createTestDatabase(kind: 'sqlite' | 'postgres'): Promise<TestDatabase> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'wrnexus-test-'));
  if (kind === 'sqlite') {
    return {
      name: 'sqlite',
      target: { database_url: undefined, data_dir: dataDir },
      async dispose() { rmSync(dataDir, { recursive: true, force: true }); },
    };
  }
  const adminUrl = process.env.TEST_DATABASE_URL!;
  const name = `wrnexus_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = knex({ client: 'pg', connection: adminUrl, pool: { min: 0, max: 1 } });
  try {
    await admin.raw(`create database ${name}`);
  } finally {
    await admin.destroy();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name: 'postgres',
    target: { database_url: url.toString(), data_dir: dataDir },
    async dispose() {
      const cleanup = knex({ client: 'pg', connection: adminUrl, pool: { min: 0, max: 1 } });
      try {
        await cleanup.raw(`drop database if exists ${name} with (force)`);
      } finally {
        await cleanup.destroy();
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** A migrated knex handle on a fresh test database. */
export async function migratedDb(kind: 'sqlite' | 'postgres'): Promise<{ db: Db; test: TestDatabase; close(): Promise<void> }> {
  const test = await createTestDatabase(kind);
  const db = connect(test.target);
  await migrate(db);
  return {
    db,
    test,
    async close() {
      await db.destroy();
      await test.dispose();
    },
  };
}

/** Migrates `db` as a version before migration `name` did: every migration up to, not including, it. */
export async function migrateUpTo(db: Db, name: string): Promise<void> {
  const { migrations } = await import('../../migrations/index.js');
  const before = Object.keys(migrations).sort().filter((m) => m < name);
  await db.migrate.latest({ migrationSource: { getMigrations: async () => before, getMigrationName: (m: string) => m, getMigration: async (m: string) => migrations[m]! } });
}

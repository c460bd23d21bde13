/** The benchmark script runs end to end in its short mode, so it cannot rot. Its figures are not asserted. */
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import knex from 'knex';
import { projectRoot } from '../../src/paths.js';
import { createTestDatabase, databaseKinds } from '../helpers/databases.js';

const runBench = (args: string[], databaseUrl?: string) => {
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'wrnexus-bench-test-')), 'results.json');
  const { DATABASE_URL: _unused, ...env } = process.env;
  const run = spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'bench', 'run.js'), '--short', '--out', out, ...args], {
    env: databaseUrl ? { ...env, DATABASE_URL: databaseUrl } : env, encoding: 'utf8', timeout: 120_000,
  });
  expect(run.stderr).not.toContain('bench failed');
  expect(run.status).toBe(0);
  expect(run.stdout).toContain('wrnexus-sso');
  return JSON.parse(readFileSync(out, 'utf8')) as { short: boolean; machine: string; rows: Array<{ scenario: string; ours: string }> };
};

describe('npm run bench --short', () => {
  it('runs every scenario and writes its results', () => {
    const results = runBench([]);
    expect(results.short).toBe(true);
    expect(results.rows.map((r) => r.scenario)).toEqual([
      'discovery (GET)', 'JWKS (GET)', 'client_credentials (POST /token)', 'refresh_token (POST /token)',
      'password sign-in, bcrypt cost 12', 'password sign-in, bcrypt cost 10', 'passkey assertion verification',
      'token p99 during 16 sign-ins',
    ]);
  });

  if (databaseKinds().includes('postgres')) {
    it('runs on PostgreSQL in a schema of its own and leaves nothing behind', async () => {
      const database = await createTestDatabase('postgres');
      const url = database.target.database_url!;
      const look = knex({ client: 'pg', connection: url });
      try {
        const results = runBench(['--only', 'client_credentials'], url);
        expect(results.machine).toContain('PostgreSQL');
        expect(results.rows.map((r) => r.scenario)).toEqual(['client_credentials (POST /token)']);
        const { rows: schemas } = await look.raw("select nspname from pg_namespace where nspname like 'wrnexus_bench%'") as { rows: unknown[] };
        expect(schemas).toEqual([]);
        const { rows: tables } = await look.raw("select tablename from pg_tables where schemaname = 'public'") as { rows: unknown[] };
        expect(tables).toEqual([]);
      } finally {
        await look.destroy();
        await database.dispose();
      }
    });
  }
});

/** The benchmark script runs end to end in its short mode, so it cannot rot. Its figures are not asserted. */
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/paths.js';

describe('npm run bench --short', () => {
  it('runs every scenario and writes its results', () => {
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'wrnexus-bench-test-')), 'results.json');
    const { DATABASE_URL: _unused, ...env } = process.env;
    const run = spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'bench', 'run.js'), '--short', '--out', out], {
      env, encoding: 'utf8', timeout: 120_000,
    });
    expect(run.stderr).not.toContain('bench failed');
    expect(run.status).toBe(0);
    const results = JSON.parse(readFileSync(out, 'utf8')) as { short: boolean; rows: Array<{ scenario: string; ours: string }> };
    expect(results.short).toBe(true);
    expect(results.rows.map((r) => r.scenario)).toEqual([
      'discovery (GET)', 'JWKS (GET)', 'client_credentials (POST /token)', 'refresh_token (POST /token)',
      'password sign-in, bcrypt cost 12', 'password sign-in, bcrypt cost 10', 'passkey assertion verification',
      'token p99 during 16 sign-ins',
    ]);
    expect(run.stdout).toContain('wrnexus-sso');
  });
});

/** Secrets at rest: TOTP secrets encrypted, a wrong key refused loudly, and key rotation by the CLI. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { generateSync } from 'otplib';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { startIdp, TEST_SECRET_KEY } from '../helpers/idp.js';
import { projectRoot } from '../../src/paths.js';

describe.each(databaseKinds())('secret key on %s', (kind) => {
  let database: TestDatabase;
  let configFile: string;
  let secret: string;
  let codes: string[];
  let userId: string;
  let now = Math.floor(Date.now() / 30_000) * 30_000 + 10_000;
  const clock = { now: () => now };

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    const idp = await startIdp(database, { clock });
    configFile = idp.config.file;
    const user = await idp.users.add({ username: 'zed', email: 'zed@example.com', password: 'zed-password-1' });
    userId = user.id;
    const enrollment = await idp.app.services.totp.startEnrollment(user.id, user.email);
    secret = enrollment.secret;
    expect(await idp.app.services.totp.confirmEnrollment(user.id, generateSync({ secret, epoch: Math.floor(now / 1000) }))).toBe(true);
    codes = (await idp.app.services.recovery.regenerate(user.id))!;
    await idp.close();
  });
  afterAll(async () => { await database?.dispose(); });

  const cli = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'src', 'cli', 'main.js'), ...args], {
    env: {
      ...process.env, IDP_CONFIG: configFile, IDP_DATA_DIR: database.target.data_dir, DATABASE_URL: database.target.database_url ?? '',
      IDP_SECRET_KEY: TEST_SECRET_KEY.toString('base64'), ...env,
    },
    encoding: 'utf8', timeout: 30_000,
  });

  it('rotates the key in one go: TOTP and recovery codes keep working under the new key only', async () => {
    const refused = cli(['secrets', 'rotate']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('--new-key-file');

    const idpBefore = await startIdp(database, { clock });
    const before: { secret_enc: string } = await idpBefore.db('totp_factors').where({ user_id: userId }).first();
    await idpBefore.close();
    expect(before.secret_enc).not.toContain(secret);

    const keyFile = path.join(database.target.data_dir, 'new.key');
    const rotated = cli(['secrets', 'rotate', '--new-key-file', keyFile]);
    expect(rotated.stderr.replace(/.*Unsupported runtime.*\n/, '')).toBe('');
    expect(rotated.status).toBe(0);
    expect(rotated.stdout).toContain('re-encrypted 1 TOTP secret(s)');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const newKey = Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64');
    expect(newKey).toHaveLength(32);

    // The old key is refused at start, loudly.
    await expect(startIdp(database, { clock })).rejects.toThrow(/does not match the key this database was set up with/);

    const idp = await startIdp(database, { clock, secretKey: newKey });
    try {
      const after: { secret_enc: string } = await idp.db('totp_factors').where({ user_id: userId }).first();
      expect(after.secret_enc).not.toBe(before.secret_enc);
      now += 30_000;
      expect(await idp.app.services.totp.verify(userId, generateSync({ secret, epoch: Math.floor(now / 1000) }))).toBe(true);
      expect(await idp.app.services.recovery.use(userId, codes[0]!)).toBe(true);
      const events = await idp.app.services.audit.list({});
      expect(events.some((e) => e.type === 'secrets_rotated')).toBe(true);
    } finally {
      await idp.close();
    }
  });
});

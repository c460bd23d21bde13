/**
 * No account enumeration by timing: unknown users are checked against a dummy bcrypt hash, so their
 * answers take as long as a wrong password's. A statistical comparison of the two distributions, not a
 * wall-clock limit: without the dummy hash the unknown user answers many times faster.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Browser, findForm } from '../helpers/browser.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, pkce } from '../helpers/flows.js';

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

describe('enumeration by timing', () => {
  let database: TestDatabase;
  let idp: TestIdp;

  beforeAll(async () => {
    database = await createTestDatabase('sqlite');
    // A realistic work factor, so that skipping bcrypt would stand out against request overhead.
    idp = await startIdp(database, { extra: { password: { bcrypt_cost: 9 } } });
    await idp.users.add({ username: 'timed', email: 'timed@example.com', password: 'timed-password-1' });
    await idp.users.add({ username: 'asleep', email: 'asleep@example.com', password: 'asleep-password-1' });
    await idp.users.setDisabled('asleep', true);
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  async function timedAttempt(login: string, password: string): Promise<{ ms: number; status: number }> {
    const browser = new Browser(idp.issuer);
    const page = await browser.get(authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
    const form = findForm(page.body, '/login');
    const started = process.hrtime.bigint();
    const res = await browser.request(new URL(form.action, page.url).toString(), { form: { ...form.fields, login, password } });
    return { ms: Number(process.hrtime.bigint() - started) / 1e6, status: res.status };
  }

  it('answers unknown, wrong-password and disabled accounts in indistinguishable time', async () => {
    const unknown: number[] = [];
    const wrong: number[] = [];
    const disabled: number[] = [];
    await timedAttempt('warm-up', 'warm-up-password');
    for (let i = 0; i < 21; i += 1) {
      // Interleaved, so load on the machine affects all three alike.
      const u = await timedAttempt(`nobody${i}`, 'some-password-1');
      const w = await timedAttempt('timed', `wrong-password-${i}`);
      const d = await timedAttempt('asleep', 'asleep-password-1');
      expect([u.status, w.status, d.status]).toEqual([401, 401, 401]);
      unknown.push(u.ms);
      wrong.push(w.ms);
      disabled.push(d.ms);
    }
    const ratio = median(unknown) / median(wrong);
    const disabledRatio = median(disabled) / median(wrong);
    expect(ratio).toBeGreaterThan(0.6);
    expect(ratio).toBeLessThan(1.6);
    expect(disabledRatio).toBeGreaterThan(0.6);
    expect(disabledRatio).toBeLessThan(1.6);
  });
});

/**
 * No account enumeration by timing: unknown users are checked against a dummy bcrypt hash, so their
 * answers take as long as a wrong password's. A statistical comparison of the two distributions, not a
 * wall-clock limit: without the dummy hash the unknown user answers many times faster.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { Browser, findForm } from '../helpers/browser.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, callbackOf, pkce } from '../helpers/flows.js';
import { paddingCosts } from '../../src/auth/password.js';

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

  // Found by an audit: after bcrypt_cost was raised, an account whose hash predates the change answered a
  // wrong password about four times faster (two steps) than an unknown login, which is checked at the new
  // cost: existing accounts stood out.
  it('pads the check of a hash made at a lower cost to the configured cost, and rehashes it at sign-in', async () => {
    expect(paddingCosts('$2b$07$abcdefghijklmnopqrstuu', 9)).toEqual([7, 8]);
    expect(paddingCosts('$2b$09$abcdefghijklmnopqrstuu', 9)).toEqual([]);
    expect(paddingCosts('$2b$10$abcdefghijklmnopqrstuu', 9)).toEqual([]);
    const id = randomUUID();
    await idp.app.services.users.insert({
      id, username: 'older', email: 'older@example.com', name: null, email_verified: false,
      password_hash: bcrypt.hashSync('older-password-1', 7), disabled: false, created_at: 1, updated_at: 1,
    });
    const unknown: number[] = [];
    const older: number[] = [];
    for (let i = 0; i < 15; i += 1) {
      const u = await timedAttempt(`nobody-else${i}`, 'some-password-1');
      const o = await timedAttempt('older', `wrong-password-${i}`);
      expect([u.status, o.status]).toEqual([401, 401]);
      unknown.push(u.ms);
      older.push(o.ms);
    }
    const ratio = median(older) / median(unknown);
    expect(ratio).toBeGreaterThan(0.6);
    expect(ratio).toBeLessThan(1.6);
    // A wrong password changes nothing; the right one upgrades the hash to the configured cost.
    expect((await idp.app.services.users.findById(id))!.password_hash).toMatch(/^\$2[aby]\$07\$/);
    const browser = new Browser(idp.issuer);
    const page = await browser.get(authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
    callbackOf(await browser.submit(page, '/login', { login: 'older', password: 'older-password-1' }));
    const upgraded = (await idp.app.services.users.findById(id))!.password_hash!;
    expect(upgraded).toMatch(/^\$2[aby]\$09\$/);
    expect(await bcrypt.compare('older-password-1', upgraded)).toBe(true);
  });

  // Found by a review: the rehash at sign-in hashed the NFKC form, which for ﷺ (3 bytes typed, 33
  // normalised) is longer than bcrypt takes: the next sign-in checked only the form as typed, and failed.
  it('keeps a user whose password normalises to over 72 bytes signed in after the rehash', async () => {
    const password = `pass${'\uFDFA'.repeat(4)}`;
    const id = randomUUID();
    await idp.app.services.users.insert({
      id, username: 'ligature', email: 'ligature@example.com', name: null, email_verified: false,
      password_hash: bcrypt.hashSync(password, 7), disabled: false, created_at: 1, updated_at: 1,
    });
    for (let i = 0; i < 2; i += 1) {
      const browser = new Browser(idp.issuer);
      const page = await browser.get(authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
      callbackOf(await browser.submit(page, '/login', { login: 'ligature', password }));
    }
    expect((await idp.app.services.users.findById(id))!.password_hash).toMatch(/^\$2[aby]\$09\$/);
  });
});

/**
 * Attacks, each asserting the refusal: OTP guessing (sequential and parallel), password spraying,
 * spoofed X-Forwarded-For, enumeration by status, body and timing, forged cross-site posts, session
 * fixation, and secrets leaking into logs.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import path from 'node:path';
import { generateSync } from 'otplib';
import * as oidc from 'openid-client';
import { Browser, findForm, rawGet, visibleText, type Page } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, callbackOf, pkce, relyingParty, signIn, startAuthorization } from '../helpers/flows.js';
import { createClientIp } from '../../src/http/client-ip.js';
import { createThrottleQueries } from '../../src/queries/throttle.js';
import { addressBucket } from '../../src/auth/throttle.js';
import { createLogger } from '../../src/log.js';
import { projectRoot } from '../../src/paths.js';

const STRICT = { backoff_after: 5, max_backoff_seconds: 8, lock_after: 20, lock_seconds: 3600, ip_max_failures: 1000, ip_window_seconds: 900 };

describe('client IP resolution', () => {
  const ip = createClientIp(['10.0.0.0/8', '::1']);
  it('believes X-Forwarded-For only from trusted proxies, and only well-formed', () => {
    expect(ip.resolve('203.0.113.9', '198.51.100.1')).toBe('203.0.113.9');
    expect(ip.resolve('10.1.2.3', '198.51.100.1')).toBe('198.51.100.1');
    expect(ip.resolve('10.1.2.3', '198.51.100.1, 10.9.9.9')).toBe('198.51.100.1');
    expect(ip.resolve('10.1.2.3', '6.6.6.6, 198.51.100.1')).toBe('198.51.100.1');
    expect(ip.resolve('10.1.2.3', 'not-an-ip')).toBe('10.1.2.3');
    // Junk the client put left of its own address does not hide that address (found by an audit).
    expect(ip.resolve('10.1.2.3', 'junk, 203.0.113.9')).toBe('203.0.113.9');
    expect(ip.resolve('10.1.2.3', '203.0.113.9, junk, 10.9.9.9')).toBe('10.9.9.9');
    expect(ip.resolve('10.1.2.3', '10.8.8.8, 10.9.9.9')).toBe('10.8.8.8');
    expect(ip.resolve('::ffff:203.0.113.9', undefined)).toBe('203.0.113.9');
    // An IPv4 client written in IPv6 form, in any spelling, is that IPv4 client (found by a review: these
    // all landed in one per-address bucket with ::1).
    for (const mapped of ['::FFFF:203.0.113.9', '::ffff:cb00:7109', '0:0:0:0:0:ffff:203.0.113.9']) {
      expect(ip.resolve('10.1.2.3', mapped)).toBe('203.0.113.9');
    }
    expect(ip.resolve('10.1.2.3', '2001:db8::1')).toBe('2001:db8::1');
  });
});

describe('the per-address throttle bucket', () => {
  it('is the address for IPv4 and the /64 for IPv6 (found by an audit: each IPv6 address counted alone)', () => {
    expect(addressBucket('203.0.113.9')).toBe('203.0.113.9');
    expect(addressBucket('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(addressBucket('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressBucket('2001:0db8:0001:0002:0:0:0:7')).toBe('2001:db8:1:2::/64');
    expect(addressBucket('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressBucket('::1')).toBe('0:0:0:0::/64');
    expect(addressBucket('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressBucket('::ffff:1.2.3.4')).toBe('0:0:0:0::/64');
  });
});

describe.each(databaseKinds())('abuse resistance on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  let now = Math.floor(Date.now() / 30_000) * 30_000 + 10_000;
  const secrets = new Map<string, string>();
  const logLines: string[] = [];

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, {
      clock: { now: () => now },
      log: createLogger((line) => logLines.push(line)),
      extra: { throttle: STRICT, trusted_proxies: ['127.0.0.1'] },
    });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  async function userWithTotp(username: string) {
    const user = await idp.users.add({ username, email: `${username}@example.com`, password: `${username}-password-1` });
    const enrollment = await idp.app.services.totp.startEnrollment(user.id, user.email);
    secrets.set(username, enrollment.secret);
    expect(await idp.app.services.totp.confirmEnrollment(user.id, generateSync({ secret: enrollment.secret, epoch: Math.floor(now / 1000) }))).toBe(true);
    now += 30_000;
    return user;
  }
  const totpNow = (username: string) => generateSync({ secret: secrets.get(username)!, epoch: Math.floor(now / 1000) });
  const wrongCode = (username: string) => String((Number(totpNow(username)) + 1) % 1_000_000).padStart(6, '0');

  /** A browser from `ip` (through our trusted proxy), at the TOTP step of a first-party sign-in. */
  async function pendingTotp(username: string, ip: string) {
    const browser = new Browser(idp.issuer);
    browser.headers['x-forwarded-for'] = ip;
    const page = await signIn(browser, authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }),
      username, `${username}-password-1`);
    const form = findForm(page.body, '/totp');
    const send = (code: string) => browser.request(new URL(form.action, page.url).toString(), { form: { ...form.fields, code } });
    return { browser, page, send };
  }

  const runCli = (args: string[]) => spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'src', 'cli', 'main.js'), ...args], {
    env: { ...process.env, IDP_CONFIG: idp.config.file, IDP_DATA_DIR: database.target.data_dir, DATABASE_URL: database.target.database_url ?? '' },
    encoding: 'utf8', timeout: 30_000,
  });

  it('locks TOTP before the 100th of 100 sequential wrong codes, says the same for the right code, and unlocks by CLI', async () => {
    await userWithTotp('guess1');
    const p = await pendingTotp('guess1', '198.51.100.1');
    const statuses: number[] = [];
    let lockedPage: Page | undefined;
    for (let i = 0; i < 100; i += 1) {
      const res = await p.send(wrongCode('guess1'));
      statuses.push(res.status);
      if (res.status === 429) {
        const retry = Number(res.headers.get('retry-after'));
        expect(retry).toBeGreaterThan(0);
        if (retry < STRICT.lock_seconds) now += (retry + 1) * 1000; // wait out the back-off, not the lock
        else lockedPage = res;
      }
    }
    const evaluated = statuses.filter((s) => s === 401).length;
    expect(evaluated).toBe(STRICT.lock_after);
    expect(statuses.slice(-50).every((s) => s === 429)).toBe(true);
    expect(lockedPage!.body).toContain('Too many attempts');

    // Locked: the right code gets the very same answer as a wrong one.
    const right = await p.send(totpNow('guess1'));
    expect(right.status).toBe(429);
    expect(right.body).toBe(lockedPage!.body);

    const unlocked = runCli(['users', 'unlock', 'guess1']);
    expect(unlocked.status).toBe(0);
    expect(unlocked.stdout).toContain('unlocked guess1');
    now += 30_000;
    expect((await p.send(totpNow('guess1'))).status).toBe(303);
  });

  it('throttles the code that confirms a new authenticator app, on the account page and during a sign-in', async () => {
    for (const where of ['account', 'sign-in'] as const) {
      const username = `confirm-${where}`;
      await idp.users.add({ username, email: `${username}@example.com`, password: `${username}-password-1` });
      const browser = new Browser(idp.issuer);
      let setup: Page;
      let action: string;
      if (where === 'account') {
        await browser.submit(await browser.get('/account'), '/login', { login: username, password: `${username}-password-1` });
        setup = await browser.get('/account/totp');
        action = '/account/totp';
      } else {
        // The account page's own authorization request, asking for MFA the user has not got: enrollment.
        const start = await browser.request('/account/login');
        const url = new URL(start.headers.get('location')!);
        url.searchParams.set('acr_values', 'https://refeds.org/profile/mfa');
        const enroll = await signIn(browser, url.toString(), username, `${username}-password-1`);
        setup = await browser.get(`${enroll.url.split('?')[0]}?method=totp`);
        action = '/enroll/totp';
      }
      const form = findForm(setup.body, action);
      const secret = /<code class="secret">([A-Z2-7 ]+)<\/code>/.exec(setup.body)![1]!.replace(/ /g, '');
      const right = () => generateSync({ secret, epoch: Math.floor(now / 1000) });
      const wrong = () => String((Number(right()) + 1) % 1_000_000).padStart(6, '0');
      const statuses: number[] = [];
      for (let i = 0; i < 12; i += 1) {
        statuses.push((await browser.request(new URL(form.action, setup.url).toString(), { form: { ...form.fields, code: wrong() } })).status);
      }
      // Back-off after STRICT.backoff_after failures: the right code waits too.
      expect(statuses.slice(0, STRICT.backoff_after)).toEqual(Array(STRICT.backoff_after).fill(400));
      expect(statuses).toContain(429);
      expect((await browser.request(new URL(form.action, setup.url).toString(), { form: { ...form.fields, code: right() } })).status).toBe(429);
    }
  });

  it('lets a lock expire by itself: one checked attempt after each lock period', async () => {
    await userWithTotp('guess3');
    const p = await pendingTotp('guess3', '198.51.100.3');
    let evaluated = 0;
    for (let i = 0; i < 40 && evaluated < STRICT.lock_after; i += 1) {
      const res = await p.send(wrongCode('guess3'));
      if (res.status === 401) evaluated += 1;
      else now += (Number(res.headers.get('retry-after')) + 1) * 1000;
    }
    expect(evaluated).toBe(STRICT.lock_after);
    expect((await p.send(totpNow('guess3'))).status).toBe(429);
    now += (STRICT.lock_seconds + 1) * 1000;
    // After the lock (the sign-in page itself has expired by now: start again): one checked attempt,
    // and a wrong one locks again at once.
    const after = await pendingTotp('guess3', '198.51.100.3');
    expect((await after.send(wrongCode('guess3'))).status).toBe(401);
    expect((await after.send(totpNow('guess3'))).status).toBe(429);
    now += (STRICT.lock_seconds + 1) * 1000;
    const later = await pendingTotp('guess3', '198.51.100.3');
    expect((await later.send(totpNow('guess3'))).status).toBe(303);
  });

  it('counts every one of 50 parallel wrong codes and evaluates no more than the lock allows', async () => {
    const user = await userWithTotp('guess2');
    const browsers = [];
    for (let i = 0; i < 50; i += 1) browsers.push(await pendingTotp('guess2', '198.51.100.2'));
    const results = await Promise.all(browsers.map((b) => b.send(wrongCode('guess2'))));
    expect(results.every((r) => r.status === 401 || r.status === 429)).toBe(true);
    expect(results.filter((r) => r.status === 401).length).toBeLessThanOrEqual(STRICT.lock_after);
    const ipRows: Array<{ failures: number | string }> = await idp.db('throttle').where('key', 'like', 'ip:198.51.100.2:%').select('failures');
    expect(ipRows.reduce((n, r) => n + Number(r.failures), 0)).toBe(50);
    // Whatever the order, the account is now locked or backing off: even the right code is refused.
    expect((await browsers[0]!.send(totpNow('guess2'))).status).toBe(429);
    expect(await idp.app.services.throttle.unlock(user)).toBeGreaterThan(0);
  });

  // Found by an audit: the back-off's wait was set by a failure, after the secret was checked, so every
  // attempt of a parallel burst was reserved before the first failure finished and the whole lock budget
  // went in under a second (one after another, reaching the 20th guess takes over an hour).
  it('backs off a parallel burst as it does attempts one after another, on every verification path', async () => {
    const { throttle } = idp.app.services;
    for (const factor of ['pwd', 'otp', 'recovery_code'] as const) {
      const outcomes = await Promise.allSettled(Array.from({ length: 30 }, () => throttle.begin(factor, `burst-${factor}`, '198.51.100.50')));
      const reserved = outcomes.filter((o) => o.status === 'fulfilled');
      expect(reserved).toHaveLength(STRICT.backoff_after);
      expect(outcomes.filter((o) => o.status === 'rejected' && (o.reason as { status?: number }).status === 429)).toHaveLength(30 - STRICT.backoff_after);
      await Promise.all(reserved.map((o) => (o as PromiseFulfilledResult<{ failed(): Promise<boolean> }>).value.failed()));
    }
    // A passkey cannot be guessed, and people behind one address share its usernameless key (a review
    // finding: ten users signing in at once from one office got five 429s): its attempts wait for failures.
    const passkeys = await Promise.all(Array.from({ length: 10 }, () => throttle.begin('passkey', 'anonymous:198.51.100.52', '198.51.100.52')));
    await Promise.all(passkeys.map((a) => a.succeeded()));
    const failing = await Promise.all(Array.from({ length: STRICT.backoff_after }, () => throttle.begin('passkey', 'burst-passkey', '198.51.100.50')));
    await Promise.all(failing.map((a) => a.failed()));
    await expect(throttle.begin('passkey', 'burst-passkey', '198.51.100.50')).rejects.toMatchObject({ status: 429 });
    // Over HTTP: 20 wrong TOTP codes at once from 20 browsers; no more than the back-off allows are checked.
    await userWithTotp('burst');
    const browsers = [];
    for (let i = 0; i < 20; i += 1) browsers.push(await pendingTotp('burst', '198.51.100.51'));
    const results = await Promise.all(browsers.map((b) => b.send(wrongCode('burst'))));
    expect(results.filter((r) => r.status === 401)).toHaveLength(STRICT.backoff_after);
    expect(results.filter((r) => r.status === 429)).toHaveLength(20 - STRICT.backoff_after);
    // The page says the wait as it is: a second (it said "1 minute").
    const waiting = results.find((r) => r.status === 429)!;
    expect(waiting.headers.get('retry-after')).toBe('1');
    expect(waiting.body).toContain('Please wait 1 second and try again.');
    // A success ends the wait at once: after the back-off, the right code signs in, and the count starts over.
    now += (STRICT.max_backoff_seconds + 1) * 1000;
    const ok = await browsers[0]!.send(totpNow('burst'));
    expect(ok.status).toBe(303);
    expect((await createThrottleQueries(idp.db).read(`acct:${(await idp.users.find('burst')).id}:otp`))).toEqual({ failures: 0, blocked_until: null });
  });

  // The wait set as an attempt is counted: 2^(n - backoff_after) s, at most max_backoff_seconds, also with
  // a huge maximum on PostgreSQL (a review finding: its 32-bit shift turned the wait negative at the 33rd).
  // Found in review: an attempt given back after an operator's unlock (or in the next window) left the
  // address a count of -1, one failure more than the limit allows.
  it('never counts an address below zero', async () => {
    const queries = createThrottleQueries(idp.db);
    expect(await queries.adjust('ip:credit-test:1', -1, 1_000)).toBe(0);
    expect(await queries.adjust('ip:credit-test:1', 2, 1_000)).toBe(2);
    await queries.reset('ip:credit-test:1', 1_001);
    expect(await queries.adjust('ip:credit-test:1', -1, 1_002)).toBe(0);
    expect(await queries.adjust('ip:credit-test:1', 1, 1_003)).toBe(1);
  });

  it('computes the counted attempt’s wait, for huge maximums too', async () => {
    const queries = createThrottleQueries(idp.db);
    for (const maxSeconds of [900, 3, 2 ** 40]) {
      let at = 1_000;
      for (let n = 1; n <= 45; n += 1) {
        const row = (await queries.take(`exact-${maxSeconds}`, at, { after: 2, maxSeconds }))!;
        expect(row.failures).toBe(n);
        // From a wait of 2^30 s (34 years) on, the maximum.
        const expected = n < 2 ? null : n - 2 >= 30 ? maxSeconds : Math.min(maxSeconds, 2 ** (n - 2));
        expect([n, row.blocked_until === null ? null : row.blocked_until - at]).toEqual([n, expected]);
        at = (row.blocked_until ?? at) + 1;
      }
    }
  });

  it('throttles password spraying across accounts from one address', async () => {
    const sprayIdp = await startIdp(database, { clock: { now: () => now }, extra: { throttle: { ...STRICT, ip_max_failures: 10 }, trusted_proxies: ['127.0.0.1'] } });
    try {
      await sprayIdp.users.add({ username: 'sprayed', email: 'sprayed@example.com', password: 'sprayed-password-1' });
      const attempt = async (ip: string, login: string, password: string) => {
        const browser = new Browser(sprayIdp.issuer);
        browser.headers['x-forwarded-for'] = ip;
        const page = await browser.get(authorizeUrl(sprayIdp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
        return browser.request(new URL(findForm(page.body, '/login').action, page.url).toString(), { form: { ...findForm(page.body, '/login').fields, login, password } });
      };
      for (let i = 0; i < 10; i += 1) expect((await attempt('203.0.113.7', `victim${i}`, 'Summer2026!')).status).toBe(401);
      // A parallel burst from a fresh address is held to the same ceiling.
      const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => attempt('203.0.113.99', `burst${i}`, 'Summer2026!')));
      expect(burst.filter((r) => r.status === 401).length).toBeLessThanOrEqual(10);
      expect(burst.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(20);
      const blocked = await attempt('203.0.113.7', 'sprayed', 'sprayed-password-1');
      expect(blocked.status).toBe(429);
      expect(blocked.headers.get('retry-after')).toMatch(/^\d+$/);
      // The same account from another address is unaffected.
      expect((await attempt('203.0.113.8', 'sprayed', 'sprayed-password-1')).status).toBe(303);
    } finally {
      await sprayIdp.close();
    }
  });

  it('starts the account count over after a success, and gives the address back its reserved attempt', async () => {
    const settleIdp = await startIdp(database, { clock: { now: () => now }, extra: { throttle: { ...STRICT, ip_max_failures: 6 }, trusted_proxies: ['127.0.0.1'] } });
    try {
      await settleIdp.users.add({ username: 'settled', email: 'settled@example.com', password: 'settled-password-1' });
      await settleIdp.users.add({ username: 'settled2', email: 'settled2@example.com', password: 'settled2-password-1' });
      const attempt = async (ip: string, login: string, password: string) => {
        const browser = new Browser(settleIdp.issuer);
        browser.headers['x-forwarded-for'] = ip;
        const page = await browser.get(authorizeUrl(settleIdp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
        return (await browser.request(new URL(findForm(page.body, '/login').action, page.url).toString(), { form: { ...findForm(page.body, '/login').fields, login, password } })).status;
      };
      const statuses = async (ip: string, tries: Array<[string, string]>) => {
        const out: number[] = [];
        for (const [login, password] of tries) out.push(await attempt(ip, login, password));
        return out;
      };
      const wrong: [string, string] = ['settled', 'wrong-password'];
      const right: [string, string] = ['settled', 'settled-password-1'];
      // Back-off starts at the 5th consecutive failure: without the reset, the 6th would set one and the 7th be refused.
      expect(await statuses('203.0.113.30', [wrong, wrong, wrong, wrong, right, wrong, wrong])).toEqual([401, 401, 401, 401, 303, 401, 401]);
      // Six failures allowed per address: successes in between do not use any of them up.
      const others = Array.from({ length: 5 }, (_, i): [string, string] => [`nobody${i}`, 'wrong-password']);
      const ok: [string, string] = ['settled2', 'settled2-password-1'];
      expect(await statuses('203.0.113.31', [...others, ok, ok, ok, ['nobody9', 'wrong-password'], ok]))
        .toEqual([401, 401, 401, 401, 401, 303, 303, 303, 401, 429]);
    } finally {
      await settleIdp.close();
    }
  });

  it('counts password failures per login as typed, so a lock on the username says nothing of the e-mail address', async () => {
    // Found by an audit: keyed by the user, a lock reached by username answered 429 for that user's
    // address too, and 401 for an unknown one.
    const user = await idp.users.add({ username: 'vic_a', email: 'vic_a.secret@example.com', password: 'vic-password-1' });
    const attempt = async (login: string, password: string) => {
      const browser = new Browser(idp.issuer);
      browser.headers['x-forwarded-for'] = '198.51.100.77';
      const page = await browser.get(authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
      const form = findForm(page.body, '/login');
      return (await browser.request(new URL(form.action, page.url).toString(), { form: { ...form.fields, login, password } })).status;
    };
    const byName: number[] = [];
    for (let i = 0; i < STRICT.backoff_after + 2; i += 1) byName.push(await attempt('vic_a', `wrong-${i}`));
    expect(byName.at(-1)).toBe(429);
    expect(await attempt('vic_a.secret@example.com', 'wrong-x')).toBe(401);
    expect(await attempt('nobody@example.com', 'wrong-x')).toBe(401);
    // The operator's unlock clears the count of every login of the user (an underscore included).
    expect(await idp.app.services.throttle.unlock(user)).toBeGreaterThan(0);
    expect(await attempt('vic_a', 'vic-password-1')).toBe(303);
  });

  // People type their password into the login field too: a login no user has is counted under its keyed
  // hash, so neither the throttle's rows nor `idp throttle list` keep what was typed.
  it('counts a login no user has under its keyed hash, never in clear', async () => {
    await idp.users.add({ username: 'known_kim', email: 'kim@example.com', password: 'kim-password-1' });
    const typed = 'Tr0ub4dor&3-Horse';
    const attempt = async (login: string) => {
      const browser = new Browser(idp.issuer);
      browser.headers['x-forwarded-for'] = '198.51.100.78';
      const page = await browser.get(authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
      const form = findForm(page.body, '/login');
      return (await browser.request(new URL(form.action, page.url).toString(), { form: { ...form.fields, login, password: 'wrong-password' } })).status;
    };
    expect([await attempt(typed), await attempt(` ${typed.toUpperCase()} `), await attempt('known_kim')]).toEqual([401, 401, 401]);
    const keys = ((await idp.db('throttle').select('key', 'failures')) as Array<{ key: string; failures: number | string }>)
      .map(({ key, failures }) => ({ key, failures: Number(failures) }));
    expect(keys.filter(({ key }) => key.toLowerCase().includes('tr0ub4dor'))).toEqual([]);
    // The same login however it was typed (case, spaces) is one count; a user's login stays readable.
    const hash = idp.app.services.hashLogin(typed.toLowerCase());
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(keys).toContainEqual({ key: `acct:unknown:${hash}:pwd`, failures: 2 });
    expect(keys).toContainEqual({ key: 'acct:login:known_kim:pwd', failures: 1 });
    const listed = await idp.app.services.throttle.list();
    expect(listed).toContainEqual({ kind: 'user', factor: 'pwd', unknownLogin: hash, failures: 2, blockedUntil: null });
    expect(JSON.stringify(listed).toLowerCase()).not.toContain('tr0ub4dor');
  });

  it('counts password failures from addresses of one IPv6 /64 together', async () => {
    const { throttle } = idp.app.services;
    const limited = createThrottleQueries(idp.db);
    for (let i = 1; i <= 3; i += 1) {
      const attempt = await throttle.begin('pwd', `v6-spray-${i}`, `2001:db8:77:1::${i.toString(16)}`);
      await attempt.failed();
    }
    const bucket = `ip:2001:db8:77:1::/64:${Math.floor(Math.floor(now / 1000) / STRICT.ip_window_seconds)}`;
    expect((await limited.read(bucket)).failures).toBe(3);
  });

  it('settles many parallel successes of one account from one address, and counts from zero after', async () => {
    const { throttle } = idp.app.services;
    const ip = '198.51.100.40';
    // As many at once as the back-off allows (an attempt beyond it waits for the outcomes: see below).
    for (let round = 0; round < 20; round += 1) {
      const attempts = await Promise.all(Array.from({ length: STRICT.backoff_after }, () => throttle.begin('pwd', 'parallel-user', ip)));
      await Promise.all(attempts.map((a) => a.succeeded()));
    }
    await throttle.begin('pwd', 'parallel-user', ip);
    const counts = createThrottleQueries(idp.db);
    expect((await counts.read('acct:parallel-user:pwd')).failures).toBe(1);
    expect((await counts.read(`ip:${ip}:${Math.floor(Math.floor(now / 1000) / STRICT.ip_window_seconds)}`)).failures).toBe(1);
  });

  it('ignores a spoofed X-Forwarded-For from an untrusted peer', async () => {
    const direct = await startIdp(database, { clock: { now: () => now }, extra: { throttle: { ...STRICT, ip_max_failures: 5 } } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 8; i += 1) {
        const browser = new Browser(direct.issuer);
        browser.headers['x-forwarded-for'] = `192.0.2.${i + 1}`;
        const page = await browser.get(authorizeUrl(direct.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
        const res = await browser.request(new URL(findForm(page.body, '/login').action, page.url).toString(), {
          form: { ...findForm(page.body, '/login').fields, login: `spoof${i}`, password: 'wrong-password' },
        });
        statuses.push(res.status);
      }
      expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
      expect(statuses.slice(5)).toEqual([429, 429, 429]);
    } finally {
      await direct.close();
    }
  });

  it('rotates the sign-in cookie at each factor and the session cookie at sign-in', async () => {
    await userWithTotp('fixme');
    const browser = new Browser(idp.issuer);
    browser.headers['x-forwarded-for'] = '198.51.100.50';
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const login = await browser.get(auth.url);
    const beforePassword = browser.cookie('idp_signin');
    expect(beforePassword).toBeDefined();
    const totpPage = await browser.submit(login, '/login', { login: 'fixme', password: 'fixme-password-1' });
    const afterPassword = browser.cookie('idp_signin');
    expect(afterPassword).toBeDefined();
    expect(afterPassword).not.toBe(beforePassword);

    // A value planted before the password (session fixation) no longer names the sign-in: the API sees
    // no sign-in for it, while the real browser is recognised as half-signed-in.
    const attacker = new Browser(idp.issuer);
    attacker.setCookie('idp_signin', beforePassword!);
    expect((await attacker.api('POST', '/api/mfa/passkeys/start', {})).status).toBe(401);
    expect((await browser.api('POST', '/api/mfa/passkeys/start', {})).status).toBe(403);

    const done = await browser.submit(totpPage, '/totp', { code: totpNow('fixme') });
    now += 30_000;
    await auth.redeem(done);
    const firstSession = browser.cookie('_session');
    expect(firstSession).toBeDefined();
    const again = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { prompt: 'login' });
    const relogin = await browser.submit(await browser.get(again.url), '/login', { login: 'fixme', password: 'fixme-password-1' });
    await again.redeem(await browser.submit(relogin, '/totp', { code: totpNow('fixme') }));
    now += 30_000;
    expect(browser.cookie('_session')).toBeDefined();
    expect(browser.cookie('_session')).not.toBe(firstSession);
  });

  it('refuses cross-site form posts to consent and logout', async () => {
    await idp.users.add({ username: 'csrf', email: 'csrf@example.com', password: 'csrf-password-1' });
    const rp = await relyingParty(idp.issuer, 'web-app');
    const auth = await startAuthorization(rp, { scope: 'openid email' });
    const browser = new Browser(idp.issuer);
    const consent = await signIn(browser, auth.url, 'csrf', 'csrf-password-1');
    const form = findForm(consent.body, '/confirm');
    const forged = await browser.request(new URL(form.action, consent.url).toString(), { form: {} });
    expect(forged.status).toBe(403);
    const tokens = await auth.redeem(await browser.submit(consent, '/confirm', {}));

    const logout = await browser.get(oidc.buildEndSessionUrl(rp, { id_token_hint: tokens.id_token! }).toString());
    const logoutForm = findForm(logout.body, '/session/end/confirm');
    const forgedLogout = await browser.request(new URL(logoutForm.action, logout.url).toString(), { form: { logout: 'yes' } });
    expect(forgedLogout.status).toBe(400);
    // Still signed in: no password asked.
    const still = await browser.get((await startAuthorization(rp, { scope: 'openid email' })).url);
    expect(still.body).not.toContain('autocomplete="current-password"');
  });

  it('keeps passwords, codes, secrets and tokens out of the logs of a whole sign-in', async () => {
    await userWithTotp('logged');
    logLines.length = 0;
    const browser = new Browser(idp.issuer);
    const rp = await relyingParty(idp.issuer, 'first-party');
    const auth = await startAuthorization(rp, { scope: 'openid profile' });
    const totpPage = await signIn(browser, auth.url, 'logged', 'logged-password-1');
    const code = totpNow('logged');
    const wrong = wrongCode('logged');
    await browser.submit(totpPage, '/totp', { code: wrong });
    const tokens = await auth.redeem(await browser.submit(totpPage, '/totp', { code }));
    await oidc.fetchUserInfo(rp, tokens.access_token, tokens.claims()!.sub);
    const text = logLines.join('\n');
    expect(text).toContain('sign_in');
    for (const secret of ['logged-password-1', secrets.get('logged')!, tokens.access_token, tokens.id_token!, browser.cookie('_session')!]) {
      expect(text).not.toContain(secret);
    }
    // Six-digit codes as whole numbers (timestamps and ids are full of digits).
    for (const otp of [code, wrong]) expect(text).not.toMatch(new RegExp(`(^|[^0-9])${otp}([^0-9]|$)`));
  });

  it('prints the audit trail with the CLI', async () => {
    const json = runCli(['audit', '--user', 'guess1', '--since', '1d', '--json']);
    expect(json.status).toBe(0);
    const events = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; outcome: string; ip: string; detail?: { factor?: string } });
    expect(events.some((e) => e.type === 'lockout' && e.detail?.factor === 'otp')).toBe(true);
    expect(events.some((e) => e.type === 'sign_in' && e.outcome === 'failure' && e.ip === '198.51.100.1')).toBe(true);
    expect(events.some((e) => e.type === 'cli_user_unlocked')).toBe(true);
    const text = runCli(['audit', '--since', 'soon']);
    expect(text.status).toBe(1);
    expect(text.stderr).toContain('--since');
  });

  // oidc-provider checks a code's `consumed` when it reads it and consumes it a few awaits later; the
  // adapter makes the consuming UPDATE the arbiter (src/oidc/adapter.ts). Before that, nearly every round
  // here redeemed one code several times on both stores (on SQLite while the consuming write waited for
  // its group commit; now it is a statement of its own, so there the requests no longer overlap at all
  // and PostgreSQL is the real race; the storage suite checks the arbiter itself on both stores).
  // RFC 6749 §5.2 (a protocol-audit finding: oidc-provider answered invalid_request).
  it('answers unauthorized_client to a client that sends a grant type it may not use', async () => {
    const res = await fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`service:${TEST_SECRET}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'whatever' }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: 'unauthorized_client', error_description: 'requested grant type is not allowed for this client' });
  });

  // PostgreSQL refuses a NUL character in text: a token or id holding one must be "not found", not a 500.
  // (An interaction id reaches the database only after the signed interaction cookie matched it.)
  it('answers a NUL character in a token, code or client id with a 4xx', async () => {
    const basic = `Basic ${Buffer.from(`first-party:${TEST_SECRET}`).toString('base64')}`;
    const token = (form: Record<string, string>, headers: Record<string, string> = { authorization: basic }) => new Browser(idp.issuer)
      .request('/token', { method: 'POST', headers: { ...headers, accept: 'application/json' }, form });
    const answers = {
      refresh: await token({ grant_type: 'refresh_token', refresh_token: 'abc\u0000def' }),
      code: await token({ grant_type: 'authorization_code', code: 'abc\u0000def', redirect_uri: REDIRECT_URI, code_verifier: 'v'.repeat(43) }),
      client: await token({ grant_type: 'client_credentials', client_id: 'first\u0000party', client_secret: TEST_SECRET }, {}),
      authorize: await new Browser(idp.issuer).request(`/auth?client_id=x%00&response_type=code&scope=openid&redirect_uri=${encodeURIComponent(REDIRECT_URI)}`),
      // In the body (RFC 6750 §2.2): a header cannot carry a NUL.
      userinfo: await new Browser(idp.issuer).request('/me', { method: 'POST', form: { access_token: 'abc\u0000def' } }),
      introspection: await new Browser(idp.issuer).request('/token/introspection', { method: 'POST', headers: { authorization: basic }, form: { token: 'a\u0000b' } }),
    };
    expect(Object.fromEntries(Object.entries(answers).map(([name, page]) => [name, page.status]))).toEqual({
      refresh: 400, code: 400, client: 401, authorize: 400, userinfo: 401, introspection: 200,
    });
    expect(JSON.parse(answers.refresh.body)).toMatchObject({ error: 'invalid_grant' });
    expect(JSON.parse(answers.code.body)).toMatchObject({ error: 'invalid_grant' });
    expect(answers.userinfo.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(JSON.parse(answers.introspection.body)).toEqual({ active: false });
  });

  // Malformed requests are the client's: they must not be logged (or counted) as our failures.
  it('answers a broken chunked body 400 and an unknown method 405 (404 where no route has the path), and logs neither as an error', async () => {
    const send = (raw: string) => new Promise<string>((resolve) => {
      const socket = connect(Number(new URL(idp.url).port), '127.0.0.1');
      let answer = '';
      socket.on('data', (d) => { answer += d.toString('latin1'); });
      socket.on('close', () => resolve(answer));
      socket.on('error', () => resolve(answer));
      socket.end(raw);
    });
    logLines.length = 0;
    const host = new URL(idp.url).host;
    const broken = await send(`POST /api/auth/mfa/verify/webauthn HTTP/1.1\r\nHost: ${host}\r\nOrigin: ${new URL(idp.issuer).origin}\r\n`
      + 'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{"a":\r\nzz\r\n');
    const trace = await send(`TRACE /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    const propfind = await send(`PROPFIND /interaction/abc HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    expect([broken, trace, propfind].map((a) => a.split('\r\n')[0]))
      .toEqual(['HTTP/1.1 400 Bad Request', 'HTTP/1.1 404 Not Found', 'HTTP/1.1 405 Method Not Allowed']);
    expect(propfind).toMatch(/\r\nAllow: HEAD, GET\r\n/i);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const entries = logLines.map((l) => JSON.parse(l) as { level: number; msg: string; route?: string; method?: string; status?: number });
    const requests = entries.filter((e) => e.msg === 'request').map((e) => [e.method, e.status, e.level]);
    expect(requests).toEqual(expect.arrayContaining([['POST', 400, 30], ['TRACE', 404, 30], ['PROPFIND', 405, 30]]));
    expect(entries.filter((e) => e.level >= 50)).toEqual([]);
  });

  // Found by an audit: these were plain-text "Not Found" and "Method Not Allowed".
  it('answers a path the JSON API does not have, or a method it does not take, in JSON', async () => {
    const browser = new Browser(idp.issuer);
    const missing = await browser.request('/api/mfa/nothing-here');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(/^application\/json/);
    expect(JSON.parse(missing.body)).toEqual({ error: 'not_found', error_description: 'There is no such API endpoint.' });
    expect(missing.headers.get('cache-control')).toBe('no-store');
    const wrongMethod = await browser.request('/api/mfa/passkeys/start', { method: 'DELETE' });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    expect(JSON.parse(wrongMethod.body)).toMatchObject({ error: 'method_not_allowed' });
  });

  // Found by an audit of the protocol: a POST to the authorization or logout endpoint, or a method the
  // library's endpoints do not take, got Koa's plain-text "Not Found".
  it('answers a POST to the GET-only authorization and logout endpoints with 405 and Allow, and other methods with our 404', async () => {
    const browser = new Browser(idp.issuer);
    for (const path of ['/auth', '/session/end']) {
      const json = await browser.request(path, { form: { client_id: 'first-party' }, headers: { accept: 'application/json' } });
      expect([path, json.status, json.headers.get('allow')]).toEqual([path, 405, 'GET, HEAD']);
      expect(JSON.parse(json.body)).toMatchObject({ error: 'method_not_allowed', error_description: expect.stringContaining('GET') });
      const page = await browser.request(path, { form: { client_id: 'first-party' }, headers: { accept: 'text/html' } });
      expect([path, page.status]).toEqual([path, 405]);
      expect(visibleText(page)).toContain('This endpoint takes GET requests only');
    }
    const jwks = await browser.request('/jwks', { form: {}, headers: { accept: 'application/json' } });
    expect([jwks.status, JSON.parse(jwks.body).error]).toEqual([404, 'not_found']);
    const me = await browser.request('/me', { method: 'DELETE', headers: { accept: 'text/html' } });
    expect(me.status).toBe(404);
    expect(me.headers.get('content-type')).toMatch(/^text\/html/);
    expect(visibleText(me)).toContain('Nothing here takes DELETE requests.');
  });

  it('answers an invalid Host with the issuer’s URLs instead of failing (RFC 9112 §3.2)', async () => {
    for (const host of ['127.0.0.1:99999', '[::1', 'evil.example']) {
      const answer = await rawGet(idp.url, '/.well-known/openid-configuration', { host });
      expect([host, answer.status]).toEqual([host, 200]);
      expect(JSON.parse(answer.body)).toMatchObject({ token_endpoint: `${idp.issuer}/token` });
    }
  });

  // Found by an audit: oidc-provider's resume destroys the interaction without asking whether it was still
  // there, so one sign-in resumed several times at once (a script replaying the redirect) got a code each.
  it('gives one authorization request one code when its resume is sent six times at once', async () => {
    await idp.users.add({ username: 'resumer', email: 'resumer@example.com', password: 'resumer-password-1' });
    for (let round = 0; round < 3; round += 1) {
      const browser = new Browser(idp.issuer);
      const login = await browser.get(authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
      const form = findForm(login.body, '/login');
      const posted = await browser.request(new URL(form.action, login.url).toString(), { form: { ...form.fields, login: 'resumer', password: 'resumer-password-1' } });
      const resume = new URL(posted.headers.get('location')!, idp.issuer).toString();
      expect(resume).toMatch(/\/auth\//);
      const answers = await Promise.all(Array.from({ length: 6 }, () => browser.request(resume)));
      const codes = answers.filter((a) => a.headers.get('location')?.startsWith(REDIRECT_URI) && new URL(a.headers.get('location')!).searchParams.has('code'));
      expect(codes).toHaveLength(1);
      for (const other of answers.filter((a) => !codes.includes(a))) expect(other.status).toBe(400);
    }
  });

  it('redeems an authorization code sent eight times at once only once, and revokes what it gave', async () => {
    await idp.users.add({ username: 'racer', email: 'racer@example.com', password: 'racer-password-1' });
    const basic = `Basic ${Buffer.from(`first-party:${TEST_SECRET}`).toString('base64')}`;
    for (let round = 0; round < 5; round += 1) {
      const { verifier, challenge } = pkce();
      const done = await signIn(new Browser(idp.issuer), authorizeUrl(idp.issuer, {
        client_id: 'first-party', code_challenge: challenge, code_challenge_method: 'S256',
      }), 'racer', 'racer-password-1');
      const code = callbackOf(done).searchParams.get('code')!;
      const answers = await Promise.all(Array.from({ length: 8 }, () => new Browser(idp.issuer).request('/token', {
        method: 'POST', headers: { authorization: basic, accept: 'application/json' },
        form: { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier },
      })));
      const granted = answers.filter((a) => a.status === 200);
      const refused = answers.filter((a) => a.status === 400);
      expect(granted).toHaveLength(1);
      expect(granted.length + refused.length).toBe(8);
      for (const answer of refused) expect(JSON.parse(answer.body)).toMatchObject({ error: 'invalid_grant' });
      for (const answer of granted) {
        const { access_token: accessToken } = JSON.parse(answer.body) as { access_token: string };
        const userinfo = await fetch(`${idp.issuer}/me`, { headers: { authorization: `Bearer ${accessToken}` } });
        expect(userinfo.status).toBe(401);
      }
    }
  });
});

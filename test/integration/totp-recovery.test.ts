/** TOTP (RFC 6238) and recovery codes through the no-JavaScript pages, including races. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { generateSync } from 'otplib';
import { Browser, visibleText, findForm, type Page } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { recoveryCodesOf, relyingParty, signIn, startAuthorization, totpSecretOf } from '../helpers/flows.js';

const clients = [
  ...defaultClients(REDIRECT_URI),
  { client_id: 'strict-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'required' },
];

describe.each(databaseKinds())('TOTP and recovery codes on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  // Our clock, moved by the tests; a whole 30-second step boundary plus 10 s keeps ±1 step unambiguous.
  let now = Math.floor(Date.now() / 30_000) * 30_000 + 10_000;
  let secret: string;
  let codes: string[];

  const codeAt = (stepOffset: number) => generateSync({ secret, epoch: Math.floor(now / 1000) + stepOffset * 30 });

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, { clients, clock: { now: () => now } });
    await idp.users.add({ username: 'uma', email: 'uma@example.com', password: 'uma-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  /** A browser at the second-factor step of a first-party sign-in, with the chosen method's page. */
  async function pending(method: 'totp' | 'recovery_code') {
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const browser = new Browser(idp.issuer);
    const first = await signIn(browser, auth.url, 'uma', 'uma-password-1');
    const page = method === 'totp' ? first : await browser.get(`${first.url.split('?')[0]}?method=recovery_code`);
    return { browser, page, auth };
  }
  const submitCode = (p: { browser: Browser; page: Page }, code: string) => p.browser.request(
    new URL(findForm(p.page.body, '/totp').action, p.page.url).toString(), { form: { ...findForm(p.page.body, '/totp').fields, code } });
  const submitRecovery = (p: { browser: Browser; page: Page }, code: string) => p.browser.request(
    new URL(findForm(p.page.body, '/recovery').action, p.page.url).toString(), { form: { ...findForm(p.page.body, '/recovery').fields, recovery_code: code } });

  it('enrolls an authenticator app during a sign-in that requires it, without JavaScript', async () => {
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'strict-app'));
    const browser = new Browser(idp.issuer);
    const enroll = await signIn(browser, auth.url, 'uma', 'uma-password-1');
    expect(enroll.body).toContain('Use an authenticator app instead');
    const setup = await browser.get(`${enroll.url.split('?')[0]}?method=totp`);
    expect(setup.status).toBe(200);
    expect(setup.body).toMatch(/<img class="qr" src="data:image\/svg\+xml;base64,/);
    expect(setup.body).toMatch(/href="otpauth:\/\/totp\/[^"]*secret=/);
    secret = totpSecretOf(setup);
    expect(secret).toMatch(/^[A-Z2-7]{16,}$/);

    const wrong = await browser.submit(setup, '/enroll/totp', { code: '000000' === codeAt(0) ? '111111' : '000000' });
    expect(wrong.status).toBe(400);
    expect(totpSecretOf(wrong)).toBe(secret);

    const shown = await browser.submit(wrong, '/enroll/totp', { code: codeAt(0) });
    expect(shown.status).toBe(200);
    codes = recoveryCodesOf(shown);
    expect(codes).toHaveLength(10);
    expect(shown.body).toContain('download="wrnexus-sso-recovery-codes.txt"');
    // The page reloaded (its form sent again): on with the sign-in where it stands (here: done, back to the
    // app), not an error page (a web-audit finding: it was a 400 page).
    const form = findForm(wrong.body, '/enroll/totp');
    const resent = await browser.request(new URL(form.action, wrong.url).toString(), { form: { ...form.fields, code: codeAt(0) } });
    expect([resent.status, resent.headers.get('location')]).toEqual([303, expect.stringMatching(/^\/interaction\/[^/?]+$/)]);
    const tokens = await auth.redeem(await browser.follow(resent));
    expect(tokens.claims()).toMatchObject({ amr: ['pwd', 'otp', 'mfa'], acr: 'https://refeds.org/profile/mfa' });

    const stored = await idp.db('totp_factors').first();
    expect(stored.secret_enc).toMatch(/^v1\./);
    expect(stored.secret_enc).not.toContain(secret);
    const hashes: Array<{ code_hash: string }> = await idp.db('recovery_codes').select('code_hash');
    expect(hashes).toHaveLength(10);
    for (const { code_hash } of hashes) expect(codes).not.toContain(code_hash);
  });

  it('asks for the code with the right input hints, never mentions SMS, and accepts ±1 step only', async () => {
    now += 60_000; // past the step used at enrollment
    const p = await pending('totp');
    expect(p.page.body).toMatch(/<input id="code" name="code" type="text" inputmode="numeric"[^>]*autocomplete="one-time-code"/);
    expect(p.page.body).toContain('Use a recovery code');
    expect(visibleText(p.page)).not.toMatch(/\bSMS\b|text message/i);
    expect((await submitCode(p, codeAt(-2))).status).toBe(401);
    expect((await submitCode(p, codeAt(2))).status).toBe(401);
    const accepted = await submitCode(p, codeAt(-1));
    expect(accepted.status).toBe(303);
    const tokens = await p.auth.redeem(await p.browser.follow(accepted));
    expect(tokens.claims()?.amr).toEqual(['pwd', 'otp', 'mfa']);

    const next = await pending('totp');
    expect((await submitCode(next, codeAt(1))).status).toBe(303);
  });

  it('refuses a code whose time step was already used, even from another browser', async () => {
    const replay = await pending('totp');
    const refused = await submitCode(replay, codeAt(1));
    expect(refused.status).toBe(401);
    expect(refused.body).toContain('That did not work.');
    // An earlier step than the last one used is refused too.
    expect((await submitCode(replay, codeAt(0))).status).toBe(401);
  });

  it('accepts one code exactly once when ten browsers send it at the same time', async () => {
    now += 90_000;
    const browsers = await Promise.all(Array.from({ length: 10 }, () => pending('totp')));
    const code = codeAt(0);
    const results = await Promise.all(browsers.map((b) => submitCode(b, code)));
    expect(results.filter((r) => r.status === 303)).toHaveLength(1);
    expect(results.filter((r) => r.status === 401)).toHaveLength(9);
  });

  it('signs in once with a recovery code, then urges the user to add a factor', async () => {
    const p = await pending('recovery_code');
    expect(p.page.body).toMatch(/<input id="recovery_code" name="recovery_code"/);
    const used = await submitRecovery(p, codes[0]!.toUpperCase());
    expect(used.status).toBe(303);
    const urge = await p.browser.follow(used);
    expect(urge.body).toContain('You used a recovery code');
    expect(urge.body).toContain('<strong>9</strong> left');
    // No link away from the sign-in before it is finished: it would cost another code (an audit finding).
    expect(urge.body).not.toContain('href="/account"');
    const tokens = await p.auth.redeem(await p.browser.submit(urge, '/continue', {}));
    expect(tokens.claims()).toMatchObject({ amr: ['pwd', 'recovery_code', 'mfa'], acr: 'https://refeds.org/profile/mfa' });

    const again = await pending('recovery_code');
    expect((await submitRecovery(again, codes[0]!)).status).toBe(401);
  });

  it('lets exactly one of ten parallel uses of a code succeed, and regenerating invalidates the rest', async () => {
    const browsers = await Promise.all(Array.from({ length: 10 }, () => pending('recovery_code')));
    const results = await Promise.all(browsers.map((b) => submitRecovery(b, codes[1]!)));
    expect(results.filter((r) => r.status === 303)).toHaveLength(1);
    expect(results.filter((r) => r.status === 401)).toHaveLength(9);

    const user = await idp.users.find('uma');
    const fresh = (await idp.app.services.recovery.regenerate(user.id))!;
    expect(await idp.app.services.recovery.remaining(user.id)).toBe(10);
    const old = await pending('recovery_code');
    expect((await submitRecovery(old, codes[2]!)).status).toBe(401);
    expect((await submitRecovery(old, fresh[0]!)).status).toBe(303);
  });
});

/**
 * A browser left signed in must not be enough to change what protects the account: adding a factor
 * during a sign-in needs factors proven within FRESH_PROOF_SECONDS, and a step-up that adds one fresh
 * factor to a session's old ones does not make the sign-in count as recent (auth_time is that of the
 * oldest factor). Found by an audit: both used to let the holder of an old session enroll their own
 * passkey or authenticator app, then change the password on /account. The factors of the sign-in itself
 * need the same freshness when a setup begins, and a setup begun in time may be finished five minutes
 * later (found by reviews: a new user confirming an authenticator app after minute ten got an error
 * page, a passkey the authenticator had just made was refused, and an enrollment page left open for an
 * hour let anyone at the browser add a factor).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { generateSync } from 'otplib';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import { Browser, findForm, type Page } from '../helpers/browser.js';
import { SoftAuthenticator } from '../helpers/authenticator.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { relyingParty, signIn, startAuthorization, totpSecretOf } from '../helpers/flows.js';

const MFA = 'https://refeds.org/profile/mfa';
const clients = [
  ...defaultClients(REDIRECT_URI),
  { client_id: 'phr-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'phishing-resistant' },
  { client_id: 'mfa-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'required' },
];

describe.each(databaseKinds())('re-authentication on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  // oidc-provider dates sessions by the real clock, our checks by this one: each test starts near the
  // real time, so that only its own minutes count against the session's idle limit.
  let now = 0;
  beforeEach(() => { now = Math.floor(Date.now() / 30_000) * 30_000 + 10_000; });
  const code = (secret: string) => generateSync({ secret, epoch: Math.floor(now / 1000) });

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, { clients, clock: { now: () => now } });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  /** The account page's own authorization request, with acr_values added (its state cookie kept). */
  async function accountStepUp(browser: Browser, acr: string): Promise<Page> {
    const start = await browser.request('/account/login');
    const url = new URL(start.headers.get('location')!);
    url.searchParams.set('acr_values', acr);
    return browser.get(url.toString());
  }

  /** A new user signed in to /account with the password (a recent sign-in there). */
  async function accountUser(username: string): Promise<Browser> {
    await idp.users.add({ username, email: `${username}@example.com`, password: `${username}-password-1` });
    const browser = new Browser(idp.issuer);
    const page = await browser.submit(await browser.get('/account'), '/login', { login: username, password: `${username}-password-1` });
    expect(page.url).toBe(`${idp.issuer}/account`);
    return browser;
  }

  /** A new user signed in with the password to the app that requires a second factor: at its enrollment step. */
  async function atEnrollment(username: string): Promise<{ browser: Browser; enroll: Page }> {
    await idp.users.add({ username, email: `${username}@example.com`, password: `${username}-password-1` });
    const browser = new Browser(idp.issuer);
    const enroll = await signIn(browser, (await startAuthorization(await relyingParty(idp.issuer, 'mfa-app'))).url, username, `${username}-password-1`);
    expect(enroll.body).toContain('/decline');
    return { browser, enroll };
  }

  async function changePassword(browser: Browser, password: string) {
    const account = await browser.get('/account');
    const form = findForm(account.body, '/account/password');
    const res = await browser.request('/account/password', { form: { ...form.fields, new_password: password, confirm_password: password } });
    return { status: res.status, location: res.headers.get('location'), changed: res.body.includes('Password changed.') };
  }

  it('a stale session with TOTP asked for a passkey must prove the password and TOTP again before enrolling one', async () => {
    const browser = await accountUser('tina');
    const setup = await browser.get('/account/totp');
    const secret = totpSecretOf(setup);
    await browser.submit(setup, '/account/totp', { code: code(secret) });
    now += 30_000;
    let page = await browser.submit(await browser.get('/account/login?reauth=1'), '/login', { login: 'tina', password: 'tina-password-1' });
    page = await browser.submit(page, '/totp', { code: code(secret) });
    expect(page.url).toBe(`${idp.issuer}/account`);

    now += 11 * 60_000;
    expect(await changePassword(browser, 'not-yet-allowed-1')).toMatchObject({ status: 303, location: '/account/login?reauth=1' });

    // Asked for a passkey, which she has not got: the password first, not the enrollment page.
    const asked = await accountStepUp(browser, 'phr');
    expect(asked.body).toContain('autocomplete="current-password"');
    expect((await browser.api('POST', '/api/mfa/passkeys/start', {})).status).toBe(403);
    const second = await browser.submit(asked, '/login', { login: 'tina', password: 'tina-password-1' });
    expect(second.body).toContain('name="code"');
    expect((await browser.api('POST', '/api/mfa/passkeys/start', {})).status).toBe(403);
    now += 30_000;
    const enroll = await browser.submit(second, '/totp', { code: code(secret) });
    expect(enroll.body).not.toContain('name="code"');
    const options = await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {});
    expect(options.status).toBe(200);
    const finish = await browser.api<{ redirectTo: string }>('POST', '/api/mfa/passkeys/finish', new SoftAuthenticator(idp.issuer).create(options.body));
    expect(finish.status).toBe(200);
    await browser.get(finish.body.redirectTo);
    // Every factor was proven just now: the account page counts the sign-in as recent.
    expect(await changePassword(browser, 'tina-password-2')).toMatchObject({ changed: true });
  });

  it('a stale password-only session asked for MFA must enter the password again before adding an authenticator app', async () => {
    const browser = await accountUser('uma');
    now += 11 * 60_000;

    const asked = await accountStepUp(browser, MFA);
    expect(asked.body).toContain('autocomplete="current-password"');
    const refused = await browser.request(`${asked.url.split('?')[0]}/enroll/totp`, { form: { csrf: findForm(asked.body, '/login').fields.csrf!, code: '000000' } });
    expect(refused.status).toBe(400);
    expect(refused.body).not.toContain('class="secret"');
    const enroll = await browser.submit(asked, '/login', { login: 'uma', password: 'uma-password-1' });
    const setup = await browser.get(`${enroll.url.split('?')[0]}?method=totp`);
    expect(setup.body).toContain('class="secret"');
  });

  it('a password posted at a step that does not ask for one is refused, and a step-up keeps the first factor’s auth_time', async () => {
    await idp.users.add({ username: 'pat', email: 'pat@example.com', password: 'pat-password-1' });
    const browser = new Browser(idp.issuer);
    const first = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const loginPage = await browser.get(first.url);
    const csrf = findForm(loginPage.body, '/login').fields.csrf!;
    const t0 = await first.redeem(await browser.submit(loginPage, '/login', { login: 'pat', password: 'pat-password-1' }));
    const authTime0 = t0.claims()!.auth_time!;
    // An authenticator app added on the account page: the session still says pwd only.
    await browser.get('/account');
    const setup = await browser.get('/account/totp');
    const secret = totpSecretOf(setup);
    await browser.submit(setup, '/account/totp', { code: code(secret) });

    now += 5 * 60_000;
    const req = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const second = await browser.get(req.url);
    expect(second.body).toContain('name="code"');
    const posted = await browser.request(`${new URL(second.url).pathname}/login`, { form: { csrf, login: 'pat', password: 'pat-password-1' } });
    expect(posted.status).toBe(400);
    const tokens = await req.redeem(await browser.submit(second, '/totp', { code: code(secret) }));
    expect(tokens.claims()).toMatchObject({ acr: MFA, auth_time: authTime0 });
    expect(tokens.claims()!.amr).toEqual(expect.arrayContaining(['pwd', 'otp']));
  });

  it('TOTP setup opened at 9 min, confirmed at 11 min: the sign-in goes on (not an error page)', async () => {
    now = Date.now();
    const { browser, enroll } = await atEnrollment('nia');
    now += 9 * 60_000;
    const setup = await browser.get(`${enroll.url.split('?')[0]}?method=totp`);
    const secret = totpSecretOf(setup);
    now += 2 * 60_000; // scanning the QR code, finding the phone…
    const form = findForm(setup.body, /\/enroll\/totp$/);
    const res = await browser.request(form.action, { form: { ...form.fields, code: code(secret) } });
    expect({ status: res.status, notExpected: /not expected at this step/.test(res.body), codes: res.body.includes('Save your recovery codes') })
      .toEqual({ status: 200, notExpected: false, codes: true });
  });

  it('passkey registration started at 9.5 min and finished at 10.5 min is accepted', async () => {
    now = Date.now();
    const { browser } = await atEnrollment('ola');
    now += 9.5 * 60_000;
    const options = await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {});
    expect(options.status).toBe(200);
    const credential = new SoftAuthenticator(idp.issuer).create(options.body); // created on the authenticator
    now += 60_000;
    const finish = await browser.api<{ error?: string }>('POST', '/api/mfa/passkeys/finish', credential);
    expect({ status: finish.status, error: finish.body.error }).toEqual({ status: 200, error: undefined });
  });

  it('an enrollment page left open for 55 minutes asks for the password again before the setup', async () => {
    const { browser, enroll } = await atEnrollment('vic');
    now += 55 * 60_000;
    const asked = await browser.get(`${enroll.url.split('?')[0]}?method=totp`);
    expect(asked.body).toContain('autocomplete="current-password"');
    expect(asked.body).not.toContain('class="secret"');
  });

  it('a setup begun from a nine-minute-old session can be finished after minute ten', async () => {
    const browser = await accountUser('wes');
    now += 9 * 60_000;
    const asked = await accountStepUp(browser, MFA);
    expect(asked.body).toContain('/decline'); // the enrollment page at once: the session is 9 minutes old
    now += 30_000;
    const options = await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {});
    expect(options.status).toBe(200);
    const credential = new SoftAuthenticator(idp.issuer).create(options.body);
    now += 60_000;
    const finish = await browser.api<{ error?: string }>('POST', '/api/mfa/passkeys/finish', credential);
    expect({ status: finish.status, error: finish.body.error }).toEqual({ status: 200, error: undefined });
  });

  it('a stale sign-in cannot confirm a secret it was not shown, nor be shown one by a failed code', async () => {
    const browser = await accountUser('ria');
    const secret = totpSecretOf(await browser.get('/account/totp')); // begun on the account page, never confirmed
    now += 11 * 60_000;
    const asked = await accountStepUp(browser, MFA);
    expect(asked.body).toContain('autocomplete="current-password"');
    const csrf = findForm(asked.body, '/login').fields.csrf!;
    const action = `${asked.url.split('?')[0]}/enroll/totp`;
    const wrong = await browser.request(action, { form: { csrf, code: '000000' } });
    expect(wrong.status).toBe(400);
    expect(wrong.body).not.toContain('class="secret"');
    const right = await browser.request(action, { form: { csrf, code: code(secret) } });
    expect(right.status).toBe(400);
    expect(right.body).not.toContain('Save your recovery codes');
    // After the password, the setup page shows a new secret, which then works.
    const enroll = await browser.submit(asked, '/login', { login: 'ria', password: 'ria-password-1' });
    const setup = await browser.get(`${enroll.url.split('?')[0]}?method=totp`);
    const fresh = totpSecretOf(setup);
    expect(fresh).not.toBe(secret);
    now += 30_000;
    const done = await browser.submit(setup, '/enroll/totp', { code: code(fresh) });
    expect(done.body).toContain('Save your recovery codes');
  });
});

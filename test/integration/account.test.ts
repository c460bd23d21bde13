/** /account over HTTP: signing in through the account client, fresh sign-in for changes, policy guards. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { generateSync } from 'otplib';
import { Browser, findForm, visibleText, type Page } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { recoveryCodesOf, totpSecretOf } from '../helpers/flows.js';

const clients = [
  ...defaultClients(REDIRECT_URI),
  { client_id: 'strict-app', client_name: 'Strict App', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], mfa_policy: 'required' },
];

describe.each(databaseKinds())('account page on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  let now = Math.floor(Date.now() / 30_000) * 30_000 + 10_000;
  let secret = '';

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, { clients, clock: { now: () => now } });
    await idp.users.add({ username: 'yara', email: 'yara@example.com', password: 'yara-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  async function signedIn(password = 'yara-password-1'): Promise<{ browser: Browser; page: Page }> {
    const browser = new Browser(idp.issuer);
    const login = await browser.get('/account');
    expect(login.body).toContain('autocomplete="current-password"');
    let page = await browser.submit(login, '/login', { login: 'yara', password });
    if (page.body.includes('name="code"')) {
      now += 30_000; // a fresh time step: each is accepted once
      page = await browser.submit(page, '/totp', { code: generateSync({ secret, epoch: Math.floor(now / 1000) }) });
    }
    return { browser, page };
  }

  it('sends a visitor without a session to sign in, then shows the security settings', async () => {
    const { page } = await signedIn();
    expect(page.url).toBe(`${idp.issuer}/account`);
    expect(page.body).toContain('Your account');
    expect(page.body).toContain('Add a passkey');
    expect(page.body).toContain('Set up an authenticator app');
    // The activity list names the account pages as such, not by their client id (an audit finding).
    expect(page.body).toContain('· account page');
    expect(page.body).not.toContain('wrnexus-account<');
    const icon = await fetch(`${idp.issuer}/static/favicon.svg`);
    expect([icon.status, icon.headers.get('content-type')]).toEqual([200, 'image/svg+xml']);
  });

  it('serves its pages whatever the letter case of the path, as the router matches', async () => {
    const { browser } = await signedIn();
    const page = await browser.get('/Account');
    expect(page.status).toBe(200);
    expect(page.body).toContain('Your account');
  });

  it('sets up an authenticator app, issues recovery codes, and regenerates them', async () => {
    const { browser } = await signedIn();
    const setup = await browser.get('/account/totp');
    secret = totpSecretOf(setup);
    const codesPage = await browser.submit(setup, '/account/totp', { code: generateSync({ secret, epoch: Math.floor(now / 1000) }) });
    const codes = recoveryCodesOf(codesPage);
    expect(codes).toHaveLength(10);
    now += 30_000;
    const account = await browser.get('/account');
    expect(account.body).toContain('An authenticator app is set up.');
    // The session proved only the password; the strongest factor is now the app, so changes ask for it.
    const weaker = await browser.request('/account/recovery-codes', { form: findForm(account.body, '/account/recovery-codes').fields });
    expect(weaker.headers.get('location')).toBe('/account/login?reauth=1');
    const reauth = await browser.get('/account/login?reauth=1');
    expect(reauth.body).toContain('autocomplete="current-password"');
    const second = await browser.submit(reauth, '/login', { login: 'yara', password: 'yara-password-1' });
    const back = await browser.submit(second, '/totp', { code: generateSync({ secret, epoch: Math.floor(now / 1000) }) });
    expect(back.url).toBe(`${idp.issuer}/account`);
    // A second authenticator app is not set up over the first one.
    const again = await browser.get('/account/totp');
    expect(again.status).toBe(409);
    expect(again.body).toContain('already set up');
    const fresh = await browser.submit(back, '/account/recovery-codes', {});
    const regenerated = recoveryCodesOf(fresh);
    expect(regenerated).toHaveLength(10);
    expect(regenerated.filter((c) => codes.includes(c))).toHaveLength(0);
    // The same form sent again (a reload of the codes page, the back button, a second tab) replaces
    // nothing: the codes just shown, and saved, stay the ones that work (an audit finding).
    const resent = await browser.submit(back, '/account/recovery-codes', {});
    expect(resent.status).toBe(409);
    expect(resent.body).toContain('already created');
    expect(recoveryCodesOf(resent)).toHaveLength(0);
    const user = await idp.users.find('yara');
    expect(await idp.app.services.recovery.use(user.id, regenerated[0]!)).toBe(true);
    // The page it answers with offers a fresh form, which does replace them.
    expect(recoveryCodesOf(await browser.submit(resent, '/account/recovery-codes', {}))).toHaveLength(10);
    expect(await idp.app.services.recovery.use(user.id, regenerated[1]!)).toBe(false);
  });

  it('refuses to remove the last factor while an app requires one, and says which app', async () => {
    const { browser, page } = await signedIn();
    now += 30_000;
    const refused = await browser.submit(page, '/account/totp/delete', {});
    expect(refused.status).toBe(409);
    expect(refused.body).toContain('Strict App');
    expect((await browser.get('/account')).body).toContain('An authenticator app is set up.');
  });

  it('asks for a fresh sign-in before changes after ten minutes, and changes the password', async () => {
    const { browser, page } = await signedIn();
    now += 11 * 60_000;
    const stale = await browser.get('/account');
    expect(stale.body).toContain('confirm it’s you');
    const form = findForm(stale.body, '/account/password');
    const redirected = await browser.request('/account/password', { form: { ...form.fields, new_password: 'new-yara-password', confirm_password: 'new-yara-password' } });
    expect(redirected.status).toBe(303);
    expect(redirected.headers.get('location')).toBe('/account/login?reauth=1');
    now -= 11 * 60_000;
    // A password the policy refuses: the rule, as a sentence.
    const short = await browser.submit(page, '/account/password', { new_password: 'short', confirm_password: 'short' });
    expect(short.status).toBe(400);
    expect(visibleText(short)).toContain('Password must be at least 8 characters.');
    const changed = await browser.submit(page, '/account/password', { new_password: 'new-yara-password', confirm_password: 'new-yara-password' });
    expect(changed.body).toContain('Password changed.');
    now += 30_000;
    const again = await signedIn('new-yara-password');
    expect(again.page.url).toBe(`${idp.issuer}/account`);
  });

  // Found by an audit of the pages: confirming it was you landed on /account, the setup forgotten.
  it('returns to the authenticator-app setup after confirming it is you', async () => {
    const { browser } = await signedIn('new-yara-password');
    now += 11 * 60_000;
    expect((await browser.request('/account/totp')).headers.get('location')).toBe('/account/login?reauth=1&next=totp');
    const login = await browser.get('/account/totp');
    let page = await browser.submit(login, '/login', { login: 'yara', password: 'new-yara-password' });
    now += 30_000;
    page = await browser.submit(page, '/totp', { code: generateSync({ secret, epoch: Math.floor(now / 1000) }) });
    expect(page.url).toBe(`${idp.issuer}/account/totp`);
    // Only known places: anything else returns to the account page.
    const elsewhere = await browser.request('/account/login?next=https://evil.example/');
    const state = new URL(elsewhere.headers.get('location')!).searchParams.get('state');
    expect(browser.cookie('idp_account')).toBe(state);
  });

  it('refuses account changes without the CSRF token', async () => {
    const { browser } = await signedIn('new-yara-password');
    now += 30_000;
    const forged = await browser.request('/account/recovery-codes', { form: {} });
    expect(forged.status).toBe(403);
  });

  // Found by an audit: time spent on the account pages counted as idle (only the provider's own
  // endpoints saved the session), so sessions.mfa_idle_timeout could end a session in use there.
  it('counts using the account page as using the session', async () => {
    const { browser } = await signedIn('new-yara-password');
    const expiry = async () => {
      const row = await idp.db('oidc_payloads').where({ kind: 'Session', id: browser.cookie('_session')! }).first();
      return (JSON.parse(String(row.payload)) as { exp: number }).exp;
    };
    const before = await expiry();
    now += 120_000;
    expect((await browser.get('/account')).body).toContain('Your account');
    expect(await expiry()).toBe(Math.floor(now / 1000) + idp.config.ttl.session);
    expect(await expiry()).toBeGreaterThan(before);
  });

  // Found by an audit: renaming a passkey that is not the user's (or not there) said it was done, and
  // wrote a passkey_renamed event.
  it('answers 404 when renaming a passkey the user does not have', async () => {
    const { browser } = await signedIn('new-yara-password');
    now += 30_000;
    const { csrf } = findForm((await browser.get('/account')).body, '/account/password').fields;
    const renamed = await browser.request('/account/passkeys/bm90LWEtcGFzc2tleQ/rename', { form: { csrf: csrf!, name: 'mine now' } });
    expect(renamed.status).toBe(404);
    const events = await idp.app.services.audit.list({ userId: (await idp.users.find('yara')).id, limit: 50 });
    expect(events.filter((e) => e.type === 'passkey_renamed')).toEqual([]);
  });
});

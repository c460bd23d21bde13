/** The hosted sign-in pages under bad input, on every test database. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Browser, findForm, visibleText, type Page } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, callbackOf, pkce, relyingParty, signIn, startAuthorization } from '../helpers/flows.js';
import { createHash, randomUUID } from 'node:crypto';
import bcrypt from 'bcryptjs';

describe.each(databaseKinds())('sign-in pages on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database);
    await idp.users.add({ username: 'bob', email: 'bob@example.com', password: 'bob-password-1' });
    await idp.users.add({ username: 'carol', email: 'carol@example.com', password: 'carol-password-1' });
    await idp.users.setDisabled('carol', true);
  });

  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  const webAppUrl = (extra: Record<string, string> = {}) =>
    authorizeUrl(idp.issuer, { client_id: 'web-app', code_challenge: pkce().challenge, code_challenge_method: 'S256', ...extra });

  /** The page with what differs per request (interaction id, CSRF token) blanked out. */
  const comparable = (page: Page) => page.body
    .replace(/\/interaction\/[A-Za-z0-9_-]+/g, '/interaction/UID')
    .replace(/name="csrf" value="[^"]*"/g, 'name="csrf" value="TOKEN"')
    .replace(/nonce="[^"]*"/g, 'nonce="NONCE"')
    .replace(/value="[^"]*@?[^"]*" autocomplete/g, 'value="LOGIN" autocomplete');

  it('serves an accessible login page with the right autocomplete hints and security headers', async () => {
    const page = await new Browser(idp.issuer).get(webAppUrl({ login_hint: 'bob' }));
    expect(page.status).toBe(200);
    expect(page.body).toContain('autocomplete="username"');
    expect(page.body).toContain('autocomplete="current-password"');
    expect(page.body).toMatch(/<label for="login">/);
    expect(page.body).toMatch(/<label for="password">/);
    expect(page.body).toContain('value="bob"');
    expect(findForm(page.body, '/login').fields.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.body).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)[^"']*\.(css|js)/);
  });

  it('answers a wrong password, an unknown user and a disabled user with the same page and status', async () => {
    const attempt = async (login: string, password: string) => {
      const browser = new Browser(idp.issuer);
      return browser.submit(await browser.get(webAppUrl()), '/login', { login, password });
    };
    const wrong = await attempt('bob', 'not-bobs-password');
    const unknown = await attempt('nobody', 'not-bobs-password');
    const disabled = await attempt('carol', 'carol-password-1');
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(wrong.status);
    expect(disabled.status).toBe(wrong.status);
    expect(wrong.body).toContain('The username or password is incorrect.');
    const normalise = (p: Page) => comparable(p).replace(/value="(bob|nobody|carol)"/, 'value="LOGIN"');
    expect(normalise(unknown)).toBe(normalise(wrong));
    expect(normalise(disabled)).toBe(normalise(wrong));
  });

  it('refuses a login form without the CSRF token and establishes no session', async () => {
    const browser = new Browser(idp.issuer);
    const page = await browser.get(webAppUrl());
    const form = findForm(page.body, '/login');
    const forged = await browser.request(new URL(form.action, page.url).toString(), { form: { login: 'bob', password: 'bob-password-1' } });
    expect(forged.status).toBe(403);
    expect(forged.body).toContain('Something went wrong');
    expect(forged.headers.get('location')).toBeNull();
    const again = await browser.get(webAppUrl());
    expect(again.body).toContain('autocomplete="current-password"');
  });

  it('shows an error page, and does not redirect, for an unregistered redirect_uri', async () => {
    const page = await new Browser(idp.issuer).request(webAppUrl({ redirect_uri: 'https://evil.example/steal' }));
    expect(page.status).toBe(400);
    expect(page.headers.get('location')).toBeNull();
    expect(page.body).toContain('redirect_uri');
    expect(page.body).not.toMatch(/\bat \S+\.(js|ts):\d+/);
  });

  it('refuses a public client that does not use PKCE', async () => {
    const page = await new Browser(idp.issuer).request(authorizeUrl(idp.issuer, { client_id: 'spa' }));
    const location = new URL(page.headers.get('location')!);
    expect(location.origin + location.pathname).toBe(REDIRECT_URI);
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('error_description')).toMatch(/PKCE/);
    expect(location.searchParams.get('code')).toBeNull();
  });

  it('goes from the password straight back to the authorization endpoint when nothing more is asked', async () => {
    const browser = new Browser(idp.issuer);
    const page = await browser.get(webAppUrl());
    expect(browser.cookieNames()).toContain('idp_signin');
    const form = findForm(page.body, '/login');
    const posted = await browser.request(new URL(form.action, page.url).toString(), { form: { ...form.fields, login: 'bob', password: 'bob-password-1' } });
    expect(posted.status).toBe(303);
    const uid = /\/interaction\/([^/]+)\//.exec(form.action)![1];
    expect(posted.headers.get('location')).toBe(`${idp.issuer}/auth/${uid}`);
    // The sign-in cookie goes with it: nothing is left half-finished.
    expect(browser.cookieNames()).not.toContain('idp_signin');
    // This app asks for consent next; the sign-in itself is complete.
    expect((await browser.follow(posted)).body).toContain('Allow access?');
  });

  it('shows on the consent page the claims asked for with the claims parameter, which Allow then grants', async () => {
    // Found by an audit: the page said only "Know who you are", and the ID token carried the e-mail address.
    const browser = new Browser(idp.issuer);
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'web-app'), {
      scope: 'openid', claims: JSON.stringify({ id_token: { email: null, preferred_username: null } }),
    });
    const consent = await signIn(browser, auth.url, 'bob', 'bob-password-1');
    const text = visibleText(consent);
    expect(text).toContain('Know who you are');
    expect(text).toContain('Your e-mail address');
    expect(text).toContain('Your name and username');
    const tokens = await auth.redeem(await browser.submit(consent, '/confirm', {}));
    expect(tokens.claims()).toMatchObject({ email: 'bob@example.com', preferred_username: 'bob' });
  });

  it('signs in one account from many browsers at once', async () => {
    // A burst to one account (a shared kiosk account, a load test): every statement on its throttle rows
    // and sign-in state must hold up under it (an UPDATE of two rows once deadlocked on PostgreSQL here).
    for (let round = 0; round < 10; round += 1) {
      const statuses = await Promise.all(Array.from({ length: 10 }, async () => {
        const browser = new Browser(idp.issuer);
        const page = await browser.get(webAppUrl());
        const form = findForm(page.body, '/login');
        return (await browser.request(new URL(form.action, page.url).toString(), { form: { ...form.fields, login: 'bob', password: 'bob-password-1' } })).status;
      }));
      expect(statuses).toEqual(Array.from({ length: 10 }, () => 303));
    }
  });

  // Found by an audit of the headers: oidc-provider's own pages (here the authorization response posted to
  // the app) had no Content-Security-Policy.
  it('gives the library’s form_post page a policy that lets only its own inline script run', async () => {
    const browser = new Browser(idp.issuer);
    const url = authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256', response_mode: 'form_post' });
    const page = await signIn(browser, url, 'bob', 'bob-password-1');
    expect(page.status).toBe(200);
    expect(page.body).toContain(`action="${REDIRECT_URI}"`);
    expect(page.body).toMatch(/name="code" value="[^"]+"/);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("default-src 'none'");
    const script = /<script>([\s\S]*?)<\/script>/.exec(page.body)![1]!;
    const scriptSrc = /script-src ([^;]+)/.exec(csp)![1]!.split(' ');
    expect(scriptSrc).toEqual(["'self'", `'sha256-${createHash('sha256').update(script).digest('base64')}'`]);
  });

  it('redeems an authorization code once only', async () => {
    const { verifier, challenge } = pkce();
    const browser = new Browser(idp.issuer);
    const consent = await signIn(browser, authorizeUrl(idp.issuer, {
      client_id: 'first-party', code_challenge: challenge, code_challenge_method: 'S256',
    }), 'bob', 'bob-password-1');
    const code = callbackOf(consent).searchParams.get('code')!;
    const redeem = () => fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`first-party:${TEST_SECRET}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier }),
    });
    const first = await redeem();
    expect(first.status).toBe(200);
    const second = await redeem();
    expect(second.status).toBe(400);
    expect(await second.json()).toMatchObject({ error: 'invalid_grant' });
  });

  it('answers prompt=none without a session with login_required', async () => {
    const page = await new Browser(idp.issuer).request(webAppUrl({ prompt: 'none' }));
    expect(new URL(page.headers.get('location')!).searchParams.get('error')).toBe('login_required');
  });

  it('shows a friendly page for an unknown or expired sign-in page, and 4xx JSON for bad bodies', async () => {
    const browser = new Browser(idp.issuer);
    const stale = await browser.request('/interaction/does-not-exist');
    expect(stale.status).toBe(400);
    expect(stale.body).toContain('expired');
    expect(stale.body).not.toMatch(/\bat \S+\.(js|ts):\d+/);

    const page = await browser.get(webAppUrl());
    const form = findForm(page.body, '/login');
    const json = await browser.request(new URL(form.action, page.url).toString(), {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' },
    });
    expect(json.status).toBe(415);
    expect(JSON.parse(json.body)).toMatchObject({ error: 'invalid_request' });
  });

  // NIST SP 800-63B §5.1.1.2: passwords are normalised (NFKC) before hashing. Found by an audit: a password
  // set with é as one code point was refused when typed as e + combining accent (as macOS may send it),
  // and min_length counted code points, so four accented letters passed a minimum of eight.
  it('takes a password however its accents are composed, counts its length in characters, and upgrades older hashes', async () => {
    const composed = 'p\u00e4ssw\u00f6rd-one';
    const decomposed = composed.normalize('NFD');
    expect(decomposed).not.toBe(composed);
    await idp.users.add({ username: 'umlaut', email: 'umlaut@example.com', password: composed });
    const firstParty = () => authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' });
    for (const typed of [composed, decomposed]) callbackOf(await signIn(new Browser(idp.issuer), firstParty(), 'umlaut', typed));
    await expect(idp.users.add({ username: 'short', email: 'short@example.com', password: 'e\u0301'.repeat(7) })).rejects.toThrow('at least 8 characters');
    // Counted as typed (composed), not as NFKC expands it (a review finding: ﷺ alone counted 18).
    await expect(idp.users.add({ username: 'short', email: 'short@example.com', password: '\uFDFA' })).rejects.toThrow('at least 8 characters');
    // A hash made before normalising, of the password as typed (decomposed): still accepted, then made
    // again of the normalised form, which both spellings match.
    const id = randomUUID();
    await idp.app.services.users.insert({
      id, username: 'legacy', email: 'legacy@example.com', name: null, email_verified: false,
      password_hash: bcrypt.hashSync(decomposed, 4), disabled: false, created_at: 1, updated_at: 1,
    });
    callbackOf(await signIn(new Browser(idp.issuer), firstParty(), 'legacy', decomposed));
    expect(await bcrypt.compare(composed, (await idp.app.services.users.findById(id))!.password_hash!)).toBe(true);
    callbackOf(await signIn(new Browser(idp.issuer), firstParty(), 'legacy', composed));
  });

  // Found by an audit of the pages: these showed the library's words ("client is invalid", "authorization
  // request has expired"), Koa's plain "Not Found", and error pages with no way on.
  it('explains errors to the person at the browser, with a way back where there is one', async () => {
    const html = { accept: 'text/html' };
    const unknown = await new Browser(idp.issuer).request(authorizeUrl(idp.issuer, { client_id: 'no-such-app', code_challenge: pkce().challenge, code_challenge_method: 'S256' }), { headers: html });
    expect(unknown.status).toBe(400);
    expect(visibleText(unknown)).toContain('The app that sent you here is not registered here.');
    expect(visibleText(unknown)).toContain('invalid_client');
    const missing = await new Browser(idp.issuer).request('/no-such-page', { headers: html });
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(/^text\/html/);
    expect(visibleText(missing)).toContain('There is no page at this address.');
    // Back to the app's redirect after the sign-in finished: the resume again.
    const browser = new Browser(idp.issuer);
    const login = await browser.get(authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
    const form = findForm(login.body, '/login');
    const posted = await browser.request(new URL(form.action, login.url).toString(), { form: { ...form.fields, login: 'bob', password: 'bob-password-1' } });
    const resume = new URL(posted.headers.get('location')!, idp.issuer).toString();
    callbackOf(await browser.request(resume));
    const again = await browser.request(resume);
    expect(again.status).toBe(400);
    expect(visibleText(again)).toContain('This sign-in has already finished or has expired. Go back to the app and start again.');
    // A refused form (here without its CSRF token) leads back to its step.
    const page = await new Browser(idp.issuer).get(webAppUrl());
    const refused = await new Browser(idp.issuer).request(new URL(findForm(page.body, '/login').action, page.url).toString(), { form: { login: 'bob', password: 'x' } });
    expect(refused.status).toBe(403);
    expect(refused.body).toMatch(/<a class="button secondary" href="\/interaction\/[A-Za-z0-9_-]+">Back to the sign-in<\/a>/);
  });

  it('answers a NUL character in the form with 400, not a server error', async () => {
    const browser = new Browser(idp.issuer);
    const page = await browser.get(webAppUrl());
    const form = findForm(page.body, '/login');
    const res = await browser.request(new URL(form.action, page.url).toString(), { form: { ...form.fields, login: 'bob\u0000', password: 'x' } });
    expect(res.status).toBe(400);
    expect(res.body).toContain('not allowed');
  });

  it('cancelling sends the user back to the app with access_denied', async () => {
    const browser = new Browser(idp.issuer);
    const page = await browser.get(webAppUrl({ state: 'xyz' }));
    const back = await browser.submit(page, '/abort', {});
    const location = callbackOf(back);
    expect(location.searchParams.get('error')).toBe('access_denied');
    expect(location.searchParams.get('state')).toBe('xyz');
  });

  it('reports liveness, and readiness that follows the database', async () => {
    const res = await fetch(`${idp.issuer}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${idp.issuer}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { database: 'ok', migrations: 'ok', keys: 'ok' } });
    // Load balancers often probe with HEAD (a review finding: it was 404).
    for (const path of ['/healthz', '/readyz']) {
      const head = await fetch(`${idp.issuer}${path}`, { method: 'HEAD' });
      expect([path, head.status, await head.text()]).toEqual([path, 200, '']);
    }

    // The database goes away (the pool is closed), then comes back.
    await idp.db.destroy();
    const down = await fetch(`${idp.issuer}/readyz`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ status: 'not ready', checks: { database: 'unreachable' } });
    expect((await fetch(`${idp.issuer}/readyz`, { method: 'HEAD' })).status).toBe(503);
    expect((await fetch(`${idp.issuer}/healthz`)).status).toBe(200);
    idp.db.initialize();
    const back = await fetch(`${idp.issuer}/readyz`);
    expect(back.status).toBe(200);
  });
});

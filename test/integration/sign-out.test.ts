/**
 * What ends a user's sessions and tokens, and what a browser meets afterwards. Found by an audit: a
 * disabled or deleted user's browser got a 500 at every authorization (whoever tried to sign in there);
 * disabling, deleting, a new password and a removed factor revoked nothing (introspection still said
 * active, and enabling the user again brought every session and token back); an expired session asked
 * with prompt=none got interaction_required instead of login_required.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';
import { generateSync } from 'otplib';
import { Browser, findForm, type Page } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, callbackOf, pkce, relyingParty, signIn, startAuthorization } from '../helpers/flows.js';

describe.each(databaseKinds())('signing out everywhere on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  let now = 0;
  beforeEach(() => { now = Math.floor(Date.now() / 30_000) * 30_000 + 10_000; });

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, { clock: { now: () => now } });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  const add = (username: string) => idp.users.add({ username, email: `${username}@example.com`, password: `${username}-password-1` });
  const firstParty = (params: Record<string, string> = {}) => authorizeUrl(idp.issuer, {
    client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256', ...params,
  });
  /** A new user with an authenticator app; returns what makes its next code (a fresh time step each). */
  async function withAuthenticatorApp(username: string): Promise<() => string> {
    const user = await add(username);
    const enrollment = await idp.app.services.totp.startEnrollment(user.id, user.email);
    const code = () => { now += 30_000; return generateSync({ secret: enrollment.secret, epoch: Math.floor(now / 1000) }); };
    expect(await idp.app.services.totp.confirmEnrollment(user.id, code())).toBe(true);
    return code;
  }
  /** Where a silent authorization (prompt=none) of this browser ends: a code, or the error. */
  async function silently(browser: Browser): Promise<string> {
    const answer = new URL((await browser.request(firstParty({ prompt: 'none' }))).headers.get('location')!);
    return answer.searchParams.get('code') ? 'code' : String(answer.searchParams.get('error'));
  }
  /** A browser signed in to the app `web-app` with offline_access, and the app's tokens. */
  async function appSignIn(username: string) {
    const rp = await relyingParty(idp.issuer, 'web-app');
    const auth = await startAuthorization(rp, { scope: 'openid offline_access', prompt: 'consent' });
    const browser = new Browser(idp.issuer);
    const consent = await signIn(browser, auth.url, username, `${username}-password-1`);
    const tokens = await auth.redeem(await browser.submit(consent, '/confirm', {}));
    expect(tokens.refresh_token).toBeDefined();
    return {
      browser,
      /** Whether introspection calls the access and refresh tokens active. */
      active: async () => Promise.all([tokens.access_token, tokens.refresh_token!].map(async (t) => (await oidc.tokenIntrospection(rp, t)).active)),
      refresh: () => oidc.refreshTokenGrant(rp, tokens.refresh_token!),
    };
  }

  // Disabled in the database itself (no sign-out), as an operator's own tooling might: the session lives on
  // and names a user findAccount no longer finds.
  const disableInDatabase = async (username: string) => {
    expect(await idp.app.services.users.update((await idp.users.find(username)).id, { disabled: true })).toBe(true);
  };

  it('asks a browser whose user was disabled or deleted to sign in again, and lets someone else sign in there', async () => {
    for (const end of ['database', 'disable', 'delete'] as const) {
      await add(`gone-${end}`);
      await add(`next-${end}`);
      const browser = new Browser(idp.issuer);
      callbackOf(await signIn(browser, firstParty(), `gone-${end}`, `gone-${end}-password-1`));
      expect(await silently(browser)).toBe('code');
      if (end === 'database') await disableInDatabase(`gone-${end}`);
      else if (end === 'disable') await idp.users.setDisabled(`gone-${end}`, true);
      else await idp.users.remove(`gone-${end}`);
      expect(await silently(browser)).toBe('login_required');
      const again = await browser.get(firstParty());
      expect(again.status).toBe(200);
      expect(again.body).toContain('autocomplete="current-password"');
      // Another person at that browser signs in as usual. Over a session that still names the old user,
      // oidc-provider first ends it (a page that posts itself to /session/end/confirm).
      let done = await browser.submit(again, '/login', { login: `next-${end}`, password: `next-${end}-password-1` });
      if (end === 'database') done = await browser.submit(done, '/session/end/confirm', {});
      expect(callbackOf(done).searchParams.get('code')).toBeTruthy();
    }
  });

  it('sends a sign-in whose user was disabled between the password and consent back to the start, with a page that says so', async () => {
    await add('midway');
    await add('midway2');
    const rp = await relyingParty(idp.issuer, 'web-app');
    // Disabled in the database: the sign-in resumes, and its account is gone.
    const browser = new Browser(idp.issuer);
    const consent = await signIn(browser, (await startAuthorization(rp)).url, 'midway', 'midway-password-1');
    expect(consent.body).toContain('Allow access?');
    await disableInDatabase('midway');
    const after = await browser.submit(consent, '/confirm', {});
    expect(after.status).toBe(200);
    expect(after.body).toContain('autocomplete="current-password"');
    // Disabled with the CLI: its session has ended, and the consent page says to start again.
    const other = new Browser(idp.issuer);
    const consent2 = await signIn(other, (await startAuthorization(rp)).url, 'midway2', 'midway2-password-1');
    await idp.users.setDisabled('midway2', true);
    const refused = await other.submit(consent2, '/confirm', {});
    expect(refused.status).toBe(400);
    expect(refused.body).toContain('Please start again from the app.');
    expect((await other.get((await startAuthorization(rp)).url)).body).toContain('autocomplete="current-password"');
  });

  it('revokes every session and token when an administrator disables, deletes or sets the password; enabling brings none back', async () => {
    for (const change of ['disable', 'set-password', 'delete'] as const) {
      const username = `admin-${change}`;
      await add(username);
      const app = await appSignIn(username);
      expect(await app.active()).toEqual([true, true]);
      if (change === 'disable') {
        expect(await idp.users.setDisabled(username, true)).toBeGreaterThan(0);
        await idp.users.setDisabled(username, false);
      } else if (change === 'set-password') {
        expect(await idp.users.setPassword(username, 'a-new-password-1')).toBeGreaterThan(0);
      } else {
        expect(await idp.users.remove(username)).toBeGreaterThan(0);
      }
      expect(await app.active()).toEqual([false, false]);
      await expect(app.refresh()).rejects.toMatchObject({ error: 'invalid_grant' });
      expect(await silently(app.browser)).toBe('login_required');
    }
  });

  it('signs every other session out on a new password from /account, and keeps this browser and its apps signed in', async () => {
    await add('mover');
    const elsewhere = await appSignIn('mover');
    const here = new Browser(idp.issuer);
    callbackOf(await signIn(here, firstParty(), 'mover', 'mover-password-1'));
    const account = await here.get('/account');
    expect(account.body).toContain('Your account');
    const changed = await here.submit(account, '/account/password', { new_password: 'a-moved-password-1', confirm_password: 'a-moved-password-1' });
    expect(changed.body).toContain('Password changed.');
    expect(changed.body).toContain('Your other sessions and the apps signed in through them were signed out.');
    expect(await elsewhere.active()).toEqual([false, false]);
    await expect(elsewhere.refresh()).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(await silently(elsewhere.browser)).toBe('login_required');
    expect(await silently(here)).toBe('code');
    expect((await here.get('/account')).body).toContain('Your account');
  });

  it('signs every other session out when a factor is removed on /account', async () => {
    const code = await withAuthenticatorApp('loser');
    const withTotp = async (browser: Browser, url: string): Promise<Page> => browser.submit(await signIn(browser, url, 'loser', 'loser-password-1'), '/totp', { code: code() });
    const thief = new Browser(idp.issuer);
    callbackOf(await withTotp(thief, firstParty()));
    const owner = new Browser(idp.issuer);
    const account = await withTotp(owner, `${idp.issuer}/account`);
    expect(account.url).toBe(`${idp.issuer}/account`);
    const removed = await owner.request('/account/totp/delete', { form: findForm(account.body, '/account/totp/delete').fields });
    expect(removed.body).toContain('Authenticator app removed.');
    expect(await silently(thief)).toBe('login_required');
    expect((await owner.get('/account')).body).toContain('Your account');
  });

  // Review findings on the first version of signing out everywhere.
  it('drops a sign-in whose password was checked but which has not resumed yet', async () => {
    for (const how of ['account-password', 'set-password', 'sign-out'] as const) {
      const username = `pending-${how}`;
      await add(username);
      const attacker = new Browser(idp.issuer);
      const login = await attacker.get(firstParty());
      const form = findForm(login.body, '/login');
      const posted = await attacker.request(new URL(form.action, login.url).toString(), { form: { ...form.fields, login: username, password: `${username}-password-1` } });
      const resume = new URL(posted.headers.get('location')!, idp.issuer).toString();
      if (how === 'account-password') {
        const owner = new Browser(idp.issuer);
        const account = await signIn(owner, `${idp.issuer}/account`, username, `${username}-password-1`);
        expect((await owner.submit(account, '/account/password', { new_password: 'a-new-password-9', confirm_password: 'a-new-password-9' })).body).toContain('Password changed.');
      } else if (how === 'set-password') {
        await idp.users.setPassword(username, 'a-new-password-9');
      } else {
        await idp.users.signOutEverywhere(username);
      }
      const resumed = await attacker.request(resume);
      expect([how, resumed.status]).toEqual([how, 400]);
      expect(resumed.headers.get('location')).toBeNull();
    }
  });

  it('keeps the sign-ins this browser has in progress in another tab when it changes the password', async () => {
    await add('tabs');
    const browser = new Browser(idp.issuer);
    const account = await signIn(browser, `${idp.issuer}/account`, 'tabs', 'tabs-password-1');
    const rp = await relyingParty(idp.issuer, 'web-app');
    const auth = await startAuthorization(rp);
    const consent = await browser.get(auth.url);
    expect(consent.body).toContain('Allow access?');
    expect((await browser.submit(account, '/account/password', { new_password: 'a-new-tabs-password', confirm_password: 'a-new-tabs-password' })).body).toContain('Password changed.');
    const tokens = await auth.redeem(await browser.submit(consent, '/confirm', {}));
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(true);
  });

  it('keeps a sign-in step this browser has half done in another tab when it changes the password', async () => {
    const code = await withAuthenticatorApp('halfway');
    const browser = new Browser(idp.issuer);
    const account = await browser.submit(await signIn(browser, `${idp.issuer}/account`, 'halfway', 'halfway-password-1'), '/totp', { code: code() });
    expect(account.url).toBe(`${idp.issuer}/account`);
    // Another tab: the account page's re-authentication, password done, at its authenticator-app step.
    const atTotp = await signIn(browser, `${idp.issuer}/account/login?reauth=1`, 'halfway', 'halfway-password-1');
    expect(atTotp.body).toContain('name="code"');
    expect((await browser.submit(account, '/account/password', { new_password: 'a-new-halfway-password', confirm_password: 'a-new-halfway-password' })).body).toContain('Password changed.');
    const done = await browser.submit(atTotp, '/totp', { code: code() });
    expect(done.url).toBe(`${idp.issuer}/account`);
  });

  it('keeps this browser signed in when its session got a new id while the change was made', async () => {
    const user = await add('rotated');
    const browser = new Browser(idp.issuer);
    callbackOf(await signIn(browser, firstParty(), 'rotated', 'rotated-password-1'));
    const before = await idp.db('oidc_payloads').where({ kind: 'Session', id: browser.cookie('_session')! }).first();
    // Signing in again (prompt=login) gives the session a new id, and a new app a grant in it.
    const rp = await relyingParty(idp.issuer, 'web-app');
    const auth = await startAuthorization(rp, { prompt: 'login' });
    const consent = await signIn(browser, auth.url, 'rotated', 'rotated-password-1');
    const tokens = await auth.redeem(await browser.submit(consent, '/confirm', {}));
    expect(browser.cookie('_session')).not.toBe(before.id);
    // The change read the session before that: its id and grants then.
    const grantIds = Object.values((JSON.parse(before.payload) as { authorizations: Record<string, { grantId: string }> }).authorizations).map((a) => a.grantId);
    await idp.app.services.signOut.everywhere(user.id, { sessionUid: String(before.uid), grantIds });
    expect(await silently(browser)).toBe('code');
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(true);
  });

  it('does not bring a session back that was signed out while the account page was in use', async () => {
    for (let trial = 0; trial < 6; trial += 1) {
      const username = `poller-${trial}`;
      await add(username);
      const thief = new Browser(idp.issuer);
      callbackOf(await signIn(thief, firstParty(), username, `${username}-password-1`));
      let stop = false;
      const loops = Array.from({ length: 4 }, async () => { while (!stop) await thief.request('/account'); });
      await new Promise((resolve) => setTimeout(resolve, 30));
      await idp.users.signOutEverywhere(username);
      await new Promise((resolve) => setTimeout(resolve, 30));
      stop = true;
      await Promise.all(loops);
      expect([trial, await silently(thief)]).toEqual([trial, 'login_required']);
    }
  });

  // Found by an audit of the pages: from the account page, "No, only Your account" said "You are signed
  // out" and the account page stayed signed in (it runs on the provider's session itself).
  it('asks the account page only about signing out of wrnexus-sso, and says what is true afterwards', async () => {
    await add('leaver');
    const browser = new Browser(idp.issuer);
    const account = await signIn(browser, `${idp.issuer}/account`, 'leaver', 'leaver-password-1');
    const logoutHref = /href="([^"]*\/session\/end[^"]*)"/.exec(account.body)![1]!.replace(/&amp;/g, '&');
    const confirm = await browser.get(logoutHref);
    expect(confirm.body).toContain('Yes, sign me out');
    expect(confirm.body).not.toContain('No, only');
    const stayed = await browser.submit(confirm, '/session/end/confirm', {});
    expect(stayed.body).toContain('You are still signed in');
    expect(stayed.body).not.toContain('You are signed out');
    expect((await browser.get('/account')).body).toContain('Your account');
    const left = await browser.submit(await browser.get(logoutHref), '/session/end/confirm', { logout: 'yes' });
    expect(left.body).toContain('You are signed out');
    expect((await browser.get('/account')).body).toContain('autocomplete="current-password"');
  });

  // Found by an audit of the protocol: the passkey API read the sign-in without the check the pages get
  // from oidc-provider (the session it began from must still be there), so after "sign out" whoever used
  // the browser next could add their own passkey to the account through an enrollment step left open.
  it('lets no one add a passkey through a step-up left open when the user signed out', async () => {
    await add('openstep');
    const browser = new Browser(idp.issuer);
    callbackOf(await signIn(browser, firstParty(), 'openstep', 'openstep-password-1'));
    const stepUp = await browser.get(firstParty({ acr_values: 'phr' }));
    expect(stepUp.body).toContain('Add a passkey');
    const uid = /\/interaction\/([^/?]+)/.exec(stepUp.url)![1]!;
    expect((await browser.api('POST', `/api/mfa/passkeys/start?interaction=${uid}`, {})).status).toBe(200);
    const logout = await browser.get('/session/end?client_id=first-party');
    expect((await browser.submit(logout, '/session/end/confirm', { logout: 'yes' })).body).toContain('You are signed out');
    for (const path of [`/api/mfa/passkeys/start?interaction=${uid}`, '/api/mfa/passkeys/start']) {
      const refused = await browser.api<{ error: string }>('POST', path, {});
      expect([refused.status, refused.body.error]).toEqual([401, 'login_required']);
    }
    expect((await idp.app.services.enrolled((await idp.users.find('openstep')).id)).passkeys).toBe(0);
  });

  it('answers prompt=none with login_required once a session has been idle too long to use (OIDC Core §3.1.2.6)', async () => {
    const code = await withAuthenticatorApp('sleeper');
    const browser = new Browser(idp.issuer);
    callbackOf(await browser.submit(await signIn(browser, firstParty(), 'sleeper', 'sleeper-password-1'), '/totp', { code: code() }));
    expect(await silently(browser)).toBe('code');
    // A session that used a second factor signs in again after sessions.mfa_idle_timeout unused.
    now += (idp.config.sessions.mfa_idle_timeout + 60) * 1000;
    expect(await silently(browser)).toBe('login_required');
  });
});

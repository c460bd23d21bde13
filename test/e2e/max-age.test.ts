/**
 * auth_time of a sign-in made in one go is its last factor's time: an app that sends max_age and checks
 * auth_time (OIDC Core §3.1.3.7 step 13; openid-client allows 30 s of skew) accepts a password + TOTP
 * sign-in whose code came a minute after the password. (Only a step-up dates it back to the session's
 * sign-in.) Found by a review.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { generateSync } from 'otplib';
import * as oidc from 'openid-client';
import { Browser } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { callbackOf, relyingParty, totpSecretOf } from '../helpers/flows.js';
import { REDIRECT_URI } from '../helpers/idp.js';

describe.each(databaseKinds())('max_age and auth_time on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  let now = Date.now();
  const code = (secret: string) => generateSync({ secret, epoch: Math.floor(now / 1000) });

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, { clock: { now: () => now } });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  it('a fresh password+TOTP sign-in with max_age=0 that took 60 s is accepted by a conformant RP', async () => {
    now = Date.now() - 150_000; // the app was set up a few minutes earlier (a different TOTP time step)
    await idp.users.add({ username: 'mia', email: 'mia@example.com', password: 'mia-password-1' });
    const setupBrowser = new Browser(idp.issuer);
    await setupBrowser.submit(await setupBrowser.get('/account'), '/login', { login: 'mia', password: 'mia-password-1' });
    const setup = await setupBrowser.get('/account/totp');
    const secret = totpSecretOf(setup);
    await setupBrowser.submit(setup, '/account/totp', { code: code(secret) });

    // A fresh browser, an app asking for a fresh authentication (max_age=0).
    const rp = await relyingParty(idp.issuer, 'first-party');
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT_URI, scope: 'openid', state, max_age: '0',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const browser = new Browser(idp.issuer);
    now = Date.now() - 60_000; // the password is typed…
    const second = await browser.submit(await browser.get(url.toString()), '/login', { login: 'mia', password: 'mia-password-1' });
    expect(second.body).toContain('name="code"');
    now = Date.now(); // …and the code from the phone a minute later
    const done = await browser.submit(second, '/totp', { code: code(secret) });
    const callback = callbackOf(done);

    let error: unknown;
    let authTime: number | undefined;
    try {
      const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true, maxAge: 0 });
      authTime = tokens.claims()!.auth_time;
    } catch (err) { error = err; }
    // The sign-in has just happened: the RP must accept it.
    expect(String((error as Error | undefined)?.message ?? '')).toBe('');
    expect(Math.floor(Date.now() / 1000) - authTime!).toBeLessThan(30);
  });
});

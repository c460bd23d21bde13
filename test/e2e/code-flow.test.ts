/**
 * A real relying party (openid-client) logs a user in through the HTML forms, on every test database:
 * code flow with PKCE, ID token verification, userinfo, refresh, introspection, revocation, logout.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { Browser } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { callbackOf } from '../helpers/flows.js';

describe.each(databaseKinds())('code flow on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database);
    await idp.users.add({ username: 'alice', email: 'alice@example.com', name: 'Alice Liddell', password: 'correct horse battery' });
  });

  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  const discover = (clientId: string, secret?: string) => oidc.discovery(
    new URL(idp.issuer), clientId, secret ? { client_secret: secret } : { token_endpoint_auth_method: 'none' },
    secret ? oidc.ClientSecretBasic(secret) : oidc.None(),
    { execute: [oidc.allowInsecureRequests] },
  );

  it('signs a user into a confidential app, then refreshes, revokes and logs out', async () => {
    const rp = await discover('web-app', TEST_SECRET);
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const authUrl = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid profile email offline_access',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      prompt: 'consent',
    });

    const browser = new Browser(idp.issuer);
    const loginPage = await browser.get(authUrl.toString());
    expect(loginPage.status).toBe(200);
    expect(loginPage.body).toContain('Test Web App');
    const consentPage = await browser.submit(loginPage, '/login', { login: 'Alice@Example.com', password: 'correct horse battery' });
    expect(consentPage.status).toBe(200);
    expect(consentPage.body).toContain('Allow access?');
    expect(consentPage.body).toContain('Your e-mail address');
    const done = await browser.submit(consentPage, '/confirm', {});

    const tokens = await oidc.authorizationCodeGrant(rp, callbackOf(done), {
      pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
    });
    expect(tokens.refresh_token).toEqual(expect.any(String));

    // The ID token's signature checks against the published JWKS, and it says how the user signed in.
    const jwks = createRemoteJWKSet(new URL(`${idp.issuer}/jwks`));
    const { payload, protectedHeader } = await jwtVerify(tokens.id_token!, jwks, { issuer: idp.issuer, audience: 'web-app' });
    expect(protectedHeader.alg).toBe('RS256');
    expect(payload.acr).toBe('https://refeds.org/profile/sfa');
    expect(payload.amr).toEqual(['pwd']);
    expect(typeof payload.auth_time).toBe('number');
    expect(Math.abs((payload.auth_time as number) - Date.now() / 1000)).toBeLessThan(60);
    const user = await idp.users.find('alice');
    expect(payload.sub).toBe(user.id);

    const userinfo = await oidc.fetchUserInfo(rp, tokens.access_token, user.id);
    expect(userinfo).toMatchObject({
      sub: user.id, name: 'Alice Liddell', preferred_username: 'alice', email: 'alice@example.com', email_verified: false,
    });

    const introspected = await oidc.tokenIntrospection(rp, tokens.access_token);
    expect(introspected.active).toBe(true);
    expect(introspected.sub).toBe(user.id);

    const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    expect(refreshed.claims()?.sub).toBe(user.id);

    await oidc.tokenRevocation(rp, refreshed.refresh_token ?? tokens.refresh_token!);
    await expect(oidc.refreshTokenGrant(rp, refreshed.refresh_token ?? tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });

    // RP-initiated logout: a confirmation page (with its CSRF field), then back to the app.
    const logoutUrl = oidc.buildEndSessionUrl(rp, {
      id_token_hint: tokens.id_token!, post_logout_redirect_uri: `${REDIRECT_URI}/logged-out`, state: 'bye',
    });
    const confirm = await browser.get(logoutUrl.toString());
    expect(confirm.status).toBe(200);
    expect(confirm.body).toContain('Sign out of ');
    expect(confirm.body).toContain('Yes, sign out everywhere');
    expect(confirm.body).toMatch(/name="xsrf"/);
    const afterLogout = await browser.submit(confirm, '/session/end/confirm', { logout: 'yes' });
    expect(afterLogout.headers.get('location')).toBe(`${REDIRECT_URI}/logged-out?state=bye`);

    // The session is gone: a new authorization request asks for the password again.
    const again = await browser.get(oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT_URI, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    }).toString());
    expect(again.body).toContain('autocomplete="current-password"');
  });

  it('lets a public client sign in with PKCE and skips consent for a first-party app', async () => {
    const spa = await discover('spa');
    const verifier = oidc.randomPKCECodeVerifier();
    const browser = new Browser(idp.issuer);
    const consent = await browser.submit(await browser.get(oidc.buildAuthorizationUrl(spa, {
      redirect_uri: REDIRECT_URI, scope: 'openid email', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state: 's1',
    }).toString()), '/login', { login: 'alice', password: 'correct horse battery' });
    const done = await browser.submit(consent, '/confirm', {});
    const tokens = await oidc.authorizationCodeGrant(spa, callbackOf(done), { pkceCodeVerifier: verifier, expectedState: 's1' });
    expect(tokens.claims()?.amr).toEqual(['pwd']);

    // Same browser, first-party app: the session is reused and no consent page is shown.
    const firstParty = await discover('first-party', TEST_SECRET);
    const v2 = oidc.randomPKCECodeVerifier();
    const straight = await browser.get(oidc.buildAuthorizationUrl(firstParty, {
      redirect_uri: REDIRECT_URI, scope: 'openid profile', code_challenge: await oidc.calculatePKCECodeChallenge(v2), code_challenge_method: 'S256', state: 's2',
    }).toString());
    const fp = await oidc.authorizationCodeGrant(firstParty, callbackOf(straight), { pkceCodeVerifier: v2, expectedState: 's2' });
    expect(fp.claims()?.sub).toBe((await idp.users.find('alice')).id);
  });

  it('issues client_credentials tokens to a service', async () => {
    const service = await discover('service', TEST_SECRET);
    const tokens = await oidc.clientCredentialsGrant(service, {});
    expect(tokens.access_token).toEqual(expect.any(String));
    expect(tokens.token_type.toLowerCase()).toBe('bearer');
    const wrong = await oidc.discovery(new URL(idp.issuer), 'service', {}, oidc.ClientSecretBasic('not-the-secret-at-all'), { execute: [oidc.allowInsecureRequests] });
    await expect(oidc.clientCredentialsGrant(wrong, {})).rejects.toMatchObject({ status: 401 });
  });
});

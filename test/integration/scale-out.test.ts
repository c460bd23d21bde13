/**
 * Two instances on one database behind a "load balancer" that sends every request to the other one:
 * a password + passkey sign-in, the token and refresh requests, throttle counts and key rotation all
 * cross instances.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { Browser, findForm } from '../helpers/browser.js';
import { SoftAuthenticator } from '../helpers/authenticator.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { callbackOf, pkce, authorizeUrl } from '../helpers/flows.js';
import { rotateSigningKeys } from '../../src/oidc/keys.js';
import { systemClock } from '../../src/clock.js';

const issuer = 'http://idp.cluster.test';
const clients = [
  ...defaultClients(REDIRECT_URI),
  { client_id: 'strict-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'required',
    grant_types: ['authorization_code', 'refresh_token'] },
];

describe.each(databaseKinds())('scale-out on %s', (kind) => {
  let database: TestDatabase;
  let one: TestIdp;
  let two: TestIdp;
  const hits: string[] = [];
  let next = 0;
  // Both instances' clock: real time, unless a test stops it (a one-second back-off must not run out
  // between two requests on a busy machine).
  let stopped: number | undefined;
  const clock = { now: () => stopped ?? Date.now() };

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    const extra = { throttle: { backoff_after: 3, max_backoff_seconds: 60, lock_after: 10, lock_seconds: 600, ip_max_failures: 1000, ip_window_seconds: 900 } };
    one = await startIdp(database, { issuer, clients, extra, clock });
    two = await startIdp(database, { issuer, clients, extra, clock });
    await one.users.add({ username: 'hop', email: 'hop@example.com', password: 'hop-password-1' });
  });
  afterAll(async () => {
    await one?.close();
    await two?.close();
    await database?.dispose();
  });

  /** Round robin: each request goes to the instance the previous one did not. */
  const alternate = (url: URL) => {
    const backend = [one, two][next++ % 2]!;
    hits.push(backend.url);
    return new URL(url.pathname + url.search, backend.url);
  };

  it('completes password + passkey, token and refresh with every step on the other instance', async () => {
    const browser = new Browser(issuer, alternate);
    const authenticator = new SoftAuthenticator(issuer);
    const rp = await oidc.discovery(new URL(issuer), 'strict-app', TEST_SECRET, undefined, {
      execute: [oidc.allowInsecureRequests],
      [oidc.customFetch]: (url: string, options: RequestInit) => fetch(alternate(new URL(url)), options),
    } as oidc.DiscoveryRequestOptions);
    rp[oidc.customFetch] = (url, options) => fetch(alternate(new URL(url)), options as RequestInit);

    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT_URI, scope: 'openid offline_access', prompt: 'consent', state: 'hop',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    // Discovery answered with the address it was reached at; the browser goes through the public name.
    const viaIssuer = (u: URL) => new URL(u.pathname + u.search, issuer).toString();
    const login = await browser.get(viaIssuer(url));
    const enroll = await browser.submit(login, '/login', { login: 'hop', password: 'hop-password-1' });
    expect(enroll.body).toContain('Add a passkey');
    const options = await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {});
    const finished = await browser.api<{ redirectTo: string }>('POST', '/api/mfa/passkeys/finish', authenticator.create(options.body));
    expect(finished.status).toBe(200);
    const first = await oidc.authorizationCodeGrant(rp, callbackOf(await browser.get(finished.body.redirectTo)), { pkceCodeVerifier: verifier, expectedState: 'hop' });
    expect(first.claims()?.amr).toEqual(['pwd', 'hwk', 'user', 'mfa']);

    // A second sign-in, password then passkey assertion: challenge and verify on different instances.
    const second = new Browser(issuer, alternate);
    const v2 = oidc.randomPKCECodeVerifier();
    const url2 = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT_URI, scope: 'openid offline_access', prompt: 'consent', state: 'hop2',
      code_challenge: await oidc.calculatePKCECodeChallenge(v2), code_challenge_method: 'S256',
    });
    const step = await second.submit(await second.get(viaIssuer(url2)), '/login', { login: 'hop', password: 'hop-password-1' });
    expect(step.body).toContain('Use your passkey');
    const challenge = await second.api<PublicKeyCredentialRequestOptionsJSON>('GET', '/api/auth/mfa/challenge/webauthn');
    const verified = await second.api<{ redirectTo: string }>('POST', '/api/auth/mfa/verify/webauthn', authenticator.get(challenge.body));
    expect(verified.status).toBe(200);
    const tokens = await oidc.authorizationCodeGrant(rp, callbackOf(await second.get(verified.body.redirectTo)), { pkceCodeVerifier: v2, expectedState: 'hop2' });
    expect(tokens.claims()?.acr).toBe('phrh');
    const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    expect(refreshed.access_token).toEqual(expect.any(String));
    // Both instances served the flow, alternately.
    expect(new Set(hits)).toEqual(new Set([one.url, two.url]));
  });

  it('shares throttle counts and key rotations between instances', async () => {
    await one.users.add({ username: 'counted', email: 'counted@example.com', password: 'counted-password-1' });
    const attempt = async () => {
      const browser = new Browser(issuer, alternate);
      const page = await browser.get(authorizeUrl(issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
      const form = findForm(page.body, '/login');
      return browser.request(new URL(form.action, page.url).toString(), { form: { ...form.fields, login: 'counted', password: 'wrong-password' } });
    };
    stopped = Date.now();
    try {
      expect([(await attempt()).status, (await attempt()).status, (await attempt()).status]).toEqual([401, 401, 401]);
      // The fourth attempt lands wherever: the back-off set by the third is in the shared database.
      expect((await attempt()).status).toBe(429);
    } finally {
      stopped = undefined;
    }

    const before = (await (await fetch(`${two.url}/jwks`)).json()) as { keys: Array<{ kid: string }> };
    await rotateSigningKeys(one.db, systemClock);
    await one.reloadKeys();
    await two.reloadKeys();
    const after = (await (await fetch(`${two.url}/jwks`)).json()) as { keys: Array<{ kid: string }> };
    expect(after.keys[0]!.kid).not.toBe(before.keys[0]!.kid);
    expect(after.keys.map((k) => k.kid)).toEqual(expect.arrayContaining(before.keys.map((k) => k.kid)));
  });
});

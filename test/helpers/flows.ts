/** Stories an app and a user play again and again: start an authorization request, sign in, consent. */
import { createHash, randomBytes } from 'node:crypto';
import { Browser, type Page } from './browser.js';
import * as oidc from 'openid-client';
import { REDIRECT_URI, TEST_SECRET } from './idp.js';

export function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

export function authorizeUrl(issuer: string, params: Record<string, string>): string {
  const url = new URL('/auth', issuer);
  const defaults = { response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: randomBytes(8).toString('hex') };
  for (const [k, v] of Object.entries({ ...defaults, ...params })) url.searchParams.set(k, v);
  return url.toString();
}

/** Opens the authorization URL and signs in with the password form; returns the page after it. */
export async function signIn(browser: Browser, url: string, login: string, password: string): Promise<Page> {
  const loginPage = await browser.get(url);
  if (!loginPage.body.includes('autocomplete="current-password"')) {
    throw new Error(`expected the login page, got ${loginPage.status}: ${loginPage.body.slice(0, 500)}`);
  }
  return browser.submit(loginPage, '/login', { login, password });
}

/** The authorization response the IdP redirected to (the RP's redirect_uri), as a URL. */
export function callbackOf(page: Page): URL {
  const location = page.headers.get('location');
  if (!location || !location.startsWith(REDIRECT_URI)) {
    throw new Error(`expected a redirect to the app, got ${page.status} ${location ?? ''}: ${page.body.slice(0, 500)}`);
  }
  return new URL(location);
}


/** A relying party (openid-client) for one of the test clients; public clients have no secret. */
export async function relyingParty(issuer: string, clientId: string, secret: string | undefined = TEST_SECRET) {
  return oidc.discovery(new URL(issuer), clientId, secret ? { client_secret: secret } : { token_endpoint_auth_method: 'none' },
    secret ? oidc.ClientSecretBasic(secret) : oidc.None(), { execute: [oidc.allowInsecureRequests] });
}

/** Starts an authorization request as an app would: PKCE S256, state; returns the URL and what redeems it. */
export async function startAuthorization(rp: oidc.Configuration, params: Record<string, string> = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(rp, {
    redirect_uri: REDIRECT_URI, scope: 'openid', state,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...params,
  });
  return {
    url: url.toString(),
    /** Redeems the code the app received, verifying state, PKCE and the ID token. */
    async redeem(page: Page) {
      return oidc.authorizationCodeGrant(rp, callbackOf(page), { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true });
    },
  };
}

/** The TOTP secret shown for manual entry on an enrollment page. */
export const totpSecretOf = (page: Page): string => /<code class="secret">([A-Z2-7 ]+)<\/code>/.exec(page.body)![1]!.replace(/ /g, '');

/** The recovery codes listed on a page. */
export const recoveryCodesOf = (page: Page): string[] => [...page.body.matchAll(/<li><code>([a-z0-9]{5}-[a-z0-9]{5})<\/code><\/li>/g)].map((m) => m[1]!);

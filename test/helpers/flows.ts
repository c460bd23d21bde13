/** Stories an app and a user play again and again: start an authorization request, sign in, consent. */
import { createHash, randomBytes } from 'node:crypto';
import { Browser, type Page } from './browser.js';
import { REDIRECT_URI } from './idp.js';

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

/** Behind a TLS-terminating proxy (https issuer): cookie names, flags and HSTS. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Browser, rawGet as fetchRaw } from '../helpers/browser.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, callbackOf, pkce } from '../helpers/flows.js';

describe('https issuer', () => {
  let database: TestDatabase;
  let idp: TestIdp;
  const issuer = 'https://idp.test';

  beforeAll(async () => {
    database = await createTestDatabase('sqlite');
    idp = await startIdp(database, { issuer, extra: { trusted_proxies: ['127.0.0.1'] } });
    await idp.users.add({ username: 'tls', email: 'tls@example.com', password: 'tls-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  // Every URL the provider builds (discovery, redirects) uses the issuer, whatever the request's Host,
  // X-Forwarded-Host or X-Forwarded-Proto say: a forged or broken one can neither poison a cached
  // discovery document nor make the provider fail (RFC 9112 §3.2; it answered 500 for an invalid Host).
  it('builds its URLs from the issuer, whatever Host and X-Forwarded-* say', async () => {
    for (const headers of [
      {}, { host: 'evil.example' }, { host: '127.0.0.1:99999' }, { host: '[::1' },
      { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' },
    ] as Array<Record<string, string>>) {
      const answer = await fetchRaw(idp.url, '/.well-known/openid-configuration', headers);
      expect([headers, answer.status]).toEqual([headers, 200]);
      expect(JSON.parse(answer.body)).toMatchObject({ issuer, token_endpoint: `${issuer}/token`, authorization_endpoint: `${issuer}/auth` });
      const auth = new URL(authorizeUrl(issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
      const login = await fetchRaw(idp.url, auth.pathname + auth.search, headers);
      expect([headers, login.status, login.location?.startsWith(`${issuer}/interaction/`) || login.location?.startsWith('/interaction/')]).toEqual([headers, 303, true]);
    }
    // A request target in absolute form (RFC 9112 §3.2.2) names its own origin, which koa prefers to Host.
    const absolute = await fetchRaw(idp.url, 'http://evil.example/.well-known/openid-configuration', {});
    expect(absolute.status).toBe(200);
    expect(JSON.parse(absolute.body)).toMatchObject({ issuer, token_endpoint: `${issuer}/token` });
    expect((await fetchRaw(idp.url, 'http://a:99999/.well-known/openid-configuration', {})).status).toBe(400);
  });

  it('uses __Host- and __Secure- cookies with Secure, HttpOnly and SameSite=Lax, and sends HSTS', async () => {
    const browser = new Browser(issuer, (url) => new URL(url.pathname + url.search, idp.url));
    browser.headers['x-forwarded-proto'] = 'https';
    const setCookies: string[] = [];
    const original = browser.request.bind(browser);
    browser.request = async (url, init) => {
      const page = await original(url, init);
      setCookies.push(...page.headers.getSetCookie());
      return page;
    };
    const login = await browser.get(authorizeUrl(issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
    expect(login.status).toBe(200);
    expect(login.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
    expect(login.headers.get('content-security-policy')).toMatch(/script-src 'nonce-[A-Za-z0-9+/=]+'/);
    const nonce = /script-src 'nonce-([^']+)'/.exec(login.headers.get('content-security-policy')!)![1];
    expect(login.body).toContain(`<script nonce="${nonce}"`);
    const done = await browser.submit(login, '/login', { login: 'tls', password: 'tls-password-1' });
    expect(callbackOf(done).searchParams.get('code')).toBeTruthy();

    const names = setCookies.map((c) => c.split('=')[0]!);
    expect(names).toEqual(expect.arrayContaining(['__Host-idp_session', '__Secure-idp_interaction', '__Secure-idp_resume', '__Host-idp_signin', '__Host-idp_csrf']));
    expect(names).not.toContain('_session');
    for (const cookie of setCookies) {
      expect(cookie).toMatch(/;\s*secure/i);
      expect(cookie).toMatch(/;\s*httponly/i);
      expect(cookie).toMatch(/;\s*samesite=lax/i);
      if (cookie.startsWith('__Host-')) expect(cookie).toMatch(/;\s*path=\/(;|$)/);
    }
  });
});

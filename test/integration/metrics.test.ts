/** Prometheus metrics: off unless configured, behind a bearer token on the main port. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Browser } from '../helpers/browser.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { relyingParty, signIn, startAuthorization } from '../helpers/flows.js';

describe('metrics', () => {
  let database: TestDatabase;
  let idp: TestIdp;
  const token = 'metrics-bearer-token-0123456789';

  beforeAll(async () => {
    database = await createTestDatabase('sqlite');
    idp = await startIdp(database, { extra: { metrics: { enabled: true, bearer_token: token } } });
    await idp.users.add({ username: 'metered', email: 'metered@example.com', password: 'metered-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  it('counts requests, sign-ins and tokens, and shows them only with the bearer token', async () => {
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const browser = new Browser(idp.issuer);
    await signIn(browser, auth.url, 'metered', 'wrong-password');
    await auth.redeem(await signIn(browser, auth.url, 'metered', 'metered-password-1'));

    expect((await fetch(`${idp.issuer}/metrics`)).status).toBe(401);
    expect((await fetch(`${idp.issuer}/metrics`, { headers: { authorization: 'Bearer not-the-token-at-all-12345' } })).status).toBe(401);
    const res = await fetch(`${idp.issuer}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    // Like any response: a request id and the security headers, and its own route in the next scrape.
    expect(res.headers.get('x-request-id')).toBeTruthy();
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    await res.text();
    const again = await fetch(`${idp.issuer}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    const text = await again.text();
    expect(text).toMatch(/idp_http_request_duration_seconds_count\{method="GET",route="metrics",status="200"\} 1/);
    expect(text).toMatch(/idp_http_request_duration_seconds_count\{method="GET",route="metrics",status="401"\} 2/);
    expect(text).toMatch(/idp_http_request_duration_seconds_count\{method="GET",route="authorization",status="303"\} \d+/);
    expect(text).toMatch(/idp_sign_in_attempts_total\{outcome="failure",factor="pwd"\} 1/);
    expect(text).toMatch(/idp_sign_in_attempts_total\{outcome="success",factor="pwd"\} 1/);
    expect(text).toMatch(/idp_tokens_issued_total\{grant_type="authorization_code"\} 1/);
    expect(text).toMatch(/idp_db_pool_connections\{state="used"\} \d+/);
  });

  it('is not served when not enabled', async () => {
    const plain = await startIdp(database);
    try {
      expect((await fetch(`${plain.issuer}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(404);
    } finally {
      await plain.close();
    }
  });
});

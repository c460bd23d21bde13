/** Prometheus metrics: off unless configured, behind a bearer token on the main port. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Browser } from '../helpers/browser.js';
import { connect } from '../../src/db/connect.js';
import { createMetrics } from '../../src/http/metrics.js';
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

  // Operator-audit findings: on a port of their own, a bearer_token was silently ignored, and a scrape
  // with a query string, or by HEAD, got 404.
  it('serves the metrics port for GET and HEAD, with any query string, behind the bearer token when one is set', async () => {
    const db = connect(database.target);
    const server = createServer(createMetrics(db).standalone(token));
    try {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const auth = { authorization: `Bearer ${token}` };
      expect((await fetch(`${base}/metrics`)).status).toBe(401);
      const scraped = await fetch(`${base}/metrics?name[]=idp_http_request_duration_seconds`, { headers: auth });
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toContain('idp_http_request_duration_seconds');
      const head = await fetch(`${base}/metrics`, { method: 'HEAD', headers: auth });
      expect([head.status, await head.text()]).toEqual([200, '']);
      const post = await fetch(`${base}/metrics`, { method: 'POST', headers: auth });
      expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
      expect((await fetch(`${base}/other`, { headers: auth })).status).toBe(404);
    } finally {
      server.close();
      await db.destroy();
    }
  });
});

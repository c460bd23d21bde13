/** Log lines: JSON with the fields operators need, one per request, with the request id echoed back. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createLogger } from '../../src/log.js';
import { connect } from '../../src/db/connect.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { Browser } from '../helpers/browser.js';
import { authorizeUrl, pkce } from '../helpers/flows.js';

describe('logging', () => {
  let database: TestDatabase;
  let idp: TestIdp;
  const lines: string[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('sqlite');
    idp = await startIdp(database, { log: createLogger((line) => lines.push(line)) });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  it('writes one JSON line per request with id, method, route, status and latency', async () => {
    const res = await fetch(`${idp.issuer}/.well-known/openid-configuration?secret=do-not-log`, { headers: { 'x-request-id': 'trace-123' } });
    expect(res.headers.get('x-request-id')).toBe('trace-123');
    const entry = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.request_id === 'trace-123');
    expect(entry).toMatchObject({ level: 30, msg: 'request', method: 'GET', route: 'discovery', status: 200 });
    expect(typeof entry!.ms).toBe('number');
    expect(lines.join('\n')).not.toContain('do-not-log');

    const generated = await fetch(`${idp.issuer}/healthz`, { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('names a path no route has "other", not the path', async () => {
    const res = await fetch(`${idp.issuer}/no-such-page/SECRET-IN-PATH`, { headers: { 'x-request-id': 'unmatched-1' } });
    expect(res.status).toBe(404);
    const entry = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.request_id === 'unmatched-1');
    expect(entry).toMatchObject({ msg: 'request', route: 'other', status: 404 });
    expect(lines.join('\n')).not.toContain('SECRET-IN-PATH');
    await fetch(`${idp.issuer}/readyz`, { headers: { 'x-request-id': 'probe-1' } });
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.request_id === 'probe-1')).toMatchObject({ route: 'readyz' });
    await fetch(`${idp.issuer}/static/simplewebauthn-browser.js`, { headers: { 'x-request-id': 'file-1' } });
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.request_id === 'file-1')).toMatchObject({ route: 'static', status: 200 });
  });

  // knex prints its own messages with console.log, stack and all; they must be log lines like the rest.
  it("writes knex's own messages as one log line each", async () => {
    const caught: string[] = [];
    const db = connect(database.target, createLogger((line) => caught.push(line)));
    try {
      (db.client as unknown as { logger: { warn(m: string): void } }).logger.warn('Acquire connection error: Error: refused\n    at connect (net.js:1:1)');
      expect(caught).toHaveLength(1);
      expect(JSON.parse(caught[0]!)).toMatchObject({ level: 40, msg: 'database', detail: 'Acquire connection error: Error: refused' });
      (db.client as unknown as { logger: { deprecate(m: string, a: string): void } }).logger.deprecate('json(true)', 'jsonb()');
      expect(JSON.parse(caught[1]!)).toMatchObject({ level: 40, msg: 'database', detail: 'json(true) is deprecated, please use jsonb()' });
    } finally {
      await db.destroy();
    }
  });

  // An operator-audit finding: a security event's line could not be matched to its request's.
  it('gives a security event the request id of the request that caused it', async () => {
    await idp.users.add({ username: 'traced', email: 'traced@example.com', password: 'traced-password-1' });
    const browser = new Browser(idp.issuer);
    const login = await browser.get(authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
    browser.headers['x-request-id'] = 'audit-1';
    const refused = await browser.submit(login, '/login', { login: 'traced', password: 'not-the-password' });
    expect(refused.status).toBe(401);
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.request_id === 'audit-1');
    expect(entries).toEqual(expect.arrayContaining([
      expect.objectContaining({ msg: 'security event: sign_in', outcome: 'failure', factor: 'pwd' }),
      expect.objectContaining({ msg: 'request', status: 401 }),
    ]));
  });

  it('honours the level', () => {
    const quiet: string[] = [];
    const logger = createLogger((line) => quiet.push(line), 'warn');
    logger.info('hidden');
    logger.warn('shown', { n: 1 });
    expect(quiet).toHaveLength(1);
    expect(JSON.parse(quiet[0]!)).toMatchObject({ msg: 'shown', n: 1, level: 40 });
  });
});

/**
 * The middleware every request passes, on a bare koa app: whatever a handler rejects with becomes an
 * answer without a stack trace, and the log line says the status the client got.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from '@jest/globals';
import Koa from 'koa';
import { errorHandler } from '../../src/http/errors.js';
import { requestLog } from '../../src/http/request-log.js';
import { proxyWarning } from '../../src/http/client-ip.js';
import { createLogger } from '../../src/log.js';

const servers: Server[] = [];
afterEach(() => { for (const s of servers.splice(0)) s.close(); });

async function serve(...middleware: Koa.Middleware[]) {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger((line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  const app = new Koa();
  app.silent = true;
  for (const m of [requestLog(log), ...middleware]) app.use(m);
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, lines };
}

describe('the edge middleware', () => {
  it.each([['undefined', undefined], ['null', null], ['a string', 'boom']])('answers a handler that rejects with %s with a generic 500', async (_what, reason) => {
    const log = createLogger(() => undefined);
    const { url, lines } = await serve(errorHandler(log), () => Promise.reject(reason));
    const res = await fetch(`${url}/api/thing`, { headers: { accept: 'application/json' } });
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: 'server_error', error_description: 'Something went wrong on our side. Please try again later.' });
    expect(lines.find((l) => l.msg === 'request')).toMatchObject({ status: 500, level: 50 });
  });

  // An error that escapes the error handler (or that no handler catches) is answered by koa itself; the
  // log line must not say what the status was before it.
  it('logs the status koa answers an escaped error with', async () => {
    const { url, lines } = await serve(() => Promise.reject(new Error('escaped')));
    const res = await fetch(`${url}/anything`);
    expect(res.status).toBe(500);
    expect(await res.text()).not.toContain('escaped');
    expect(lines.find((l) => l.msg === 'request')).toMatchObject({ status: 500, level: 50 });
  });

  it('logs an escaped client error with its own status', async () => {
    const { url, lines } = await serve(() => Promise.reject(Object.assign(new Error('bad'), { status: 400, expose: true })));
    const res = await fetch(`${url}/anything`);
    expect(res.status).toBe(400);
    expect(lines.find((l) => l.msg === 'request')).toMatchObject({ status: 400, level: 30 });
  });
});

// An operator-audit finding: behind a proxy without trusted_proxies, one attacker's failures locked every
// user out (all requests came from the proxy's address), and nothing said why.
describe('the start-up warning about proxies', () => {
  it('warns for an https issuer without trusted proxies, and only then', () => {
    expect(proxyWarning({ issuer: 'https://sso.example.com', trusted_proxies: [] })).toMatch(/trusted_proxies is empty/);
    expect(proxyWarning({ issuer: 'https://sso.example.com', trusted_proxies: ['10.0.0.0/8'] })).toBeUndefined();
    expect(proxyWarning({ issuer: 'http://localhost:3000', trusted_proxies: [] })).toBeUndefined();
  });
});

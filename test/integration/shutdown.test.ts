/** SIGTERM during a sign-in: the process drains and exits 0, and the user finishes on another instance. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import YAML from 'yaml';
import { Browser } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET_KEY, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, callbackOf, pkce } from '../helpers/flows.js';
import { projectRoot } from '../../src/paths.js';

const freePort = () => new Promise<number>((resolve) => {
  const srv = createServer().listen(0, '127.0.0.1', () => {
    const { port } = srv.address() as { port: number };
    srv.close(() => resolve(port));
  });
});

describe.each(databaseKinds())('graceful shutdown on %s', (kind) => {
  let database: TestDatabase;
  let survivor: TestIdp;
  let child: ChildProcess;
  let childUrl: string;
  let metricsUrl: string;
  let startOutput = '';
  const issuer = 'http://idp.shutdown.test';

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    survivor = await startIdp(database, { issuer });
    await survivor.users.add({ username: 'term', email: 'term@example.com', password: 'term-password-1' });
    const port = await freePort();
    childUrl = `http://127.0.0.1:${port}`;
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const config = path.join(database.target.data_dir, 'child.yaml');
    writeFileSync(config, YAML.stringify({
      password: { bcrypt_cost: 4 }, clients: defaultClients(REDIRECT_URI), metrics: { enabled: true, port: metricsPort },
    }));
    child = spawn(process.execPath, [path.join(projectRoot, 'dist', 'src', 'main.js')], {
      env: {
        ...process.env, IDP_CONFIG: config, IDP_ISSUER: issuer, PORT: String(port), IDP_DATA_DIR: database.target.data_dir,
        DATABASE_URL: database.target.database_url ?? '', IDP_SECRET_KEY: TEST_SECRET_KEY.toString('base64'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        startOutput = out;
        if (out.includes('listening on port')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`server exited early (${code}): ${out}`)));
    });
  }, 60_000);

  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await survivor?.close();
    await database?.dispose();
  });

  // An operator-audit finding: the start banner was plain text amid the JSON log lines of a container.
  it('writes only JSON lines to a standard output that is not a terminal, the start among them', () => {
    const lines = startOutput.split('\n').filter((line) => line.trim() !== '');
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    const started = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((entry) => String(entry.msg).includes('listening on port'));
    expect(started).toMatchObject({ issuer, clients: defaultClients(REDIRECT_URI).length });
    // There is a user already (the survivor's): no first-user hint.
    expect(started).not.toHaveProperty('first_user');
  });

  it('serves metrics on their own port, exits cleanly on SIGTERM, and the sign-in it started finishes elsewhere', async () => {
    let backend = childUrl;
    const browser = new Browser(issuer, (url) => new URL(url.pathname + url.search, backend));
    const login = await browser.get(authorizeUrl(issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
    expect(login.body).toContain('autocomplete="current-password"');
    // Metrics on their own port, without a token; not on the main port.
    const metrics = await fetch(metricsUrl);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/idp_http_request_duration_seconds_count\{method="GET",route="authorization"/);
    expect((await fetch(`${childUrl}/metrics`)).status).toBe(404);

    // A request in flight on a kept-alive connection (its body not all sent yet) when SIGTERM arrives: it is
    // answered, and the answer closes the connection, so a load balancer that reuses connections moves on
    // (an operator-audit finding: it went on being served, and told /readyz 200, while draining).
    const open = async () => {
      const socket = connect(Number(new URL(childUrl).port), '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      const received = { text: '' };
      socket.on('data', (chunk: Buffer) => { received.text += chunk.toString(); });
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      return { socket, received, closed };
    };
    const token = await open();
    const body = 'grant_type=client_credentials&client_id=nobody';
    token.socket.write(`POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
    // A load balancer's probe, its headers not all sent yet.
    const probe = await open();
    probe.socket.write('GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n');
    await new Promise((resolve) => setTimeout(resolve, 200));

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const draining = new Promise<void>((resolve) => child.stdout!.on('data', (chunk: Buffer) => { if (chunk.toString().includes('shutting down')) resolve(); }));
    child.kill('SIGTERM');
    await draining;
    token.socket.write(body.slice(10));
    probe.socket.write('\r\n');
    await Promise.all([token.closed, probe.closed]);
    expect(token.received.text).toMatch(/^HTTP\/1\.1 40[01] /);
    expect(token.received.text).toMatch(/\r\nConnection: close\r\n/i);
    expect(token.received.text).toContain('invalid_client');
    expect(probe.received.text).toMatch(/^HTTP\/1\.1 503 /);
    expect(probe.received.text).toMatch(/\r\nConnection: close\r\n/i);
    expect(probe.received.text).toContain('{"status":"draining"}');
    expect(await exited).toBe(0);

    backend = survivor.url;
    const done = await browser.submit(login, '/login', { login: 'term', password: 'term-password-1' });
    expect(callbackOf(done).searchParams.get('code')).toEqual(expect.any(String));
  });
});

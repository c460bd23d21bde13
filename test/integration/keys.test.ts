/** Signing-key rotation across instances: old tokens keep verifying, new ones use the new key, retired keys leave. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { Browser } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, TEST_SECRET_KEY, type TestIdp } from '../helpers/idp.js';
import { signIn } from '../helpers/flows.js';
import { projectRoot } from '../../src/paths.js';
import { replacedKeyLifetime, rotateSigningKeys, signingKeySets } from '../../src/oidc/keys.js';

const clients = [
  ...defaultClients(REDIRECT_URI),
  { client_id: 'es-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, id_token_signed_response_alg: 'ES256' },
  { client_id: 'ed-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, id_token_signed_response_alg: 'EdDSA' },
];

describe.each(databaseKinds())('signing keys on %s', (kind) => {
  let database: TestDatabase;
  let one: TestIdp;
  let two: TestIdp;
  let now = Date.now();
  const clock = { now: () => now };
  const issuer = 'http://keys.test';
  let backend = '';

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    one = await startIdp(database, { issuer, clients, clock });
    two = await startIdp(database, { issuer, clients, clock });
    backend = one.url;
    await one.users.add({ username: 'kim', email: 'kim@example.com', password: 'kim-password-1' });
  });
  afterAll(async () => {
    await one?.close();
    await two?.close();
    await database?.dispose();
  });

  const route = (url: URL) => new URL(url.pathname + url.search, backend);
  const jwks = async (via: TestIdp) => (await (await fetch(`${via.url}/jwks`)).json()) as JSONWebKeySet;
  /** A confidential client's token request straight to an instance, with the code from the browser flow. */
  async function signInFor(clientId: string, via: TestIdp): Promise<string> {
    backend = via.url;
    const browser = new Browser(issuer, route);
    const url = new URL(`${issuer}/auth`);
    const verifier = 'v'.repeat(43);
    const { createHash } = await import('node:crypto');
    for (const [k, v] of Object.entries({
      client_id: clientId, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 's',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
    })) url.searchParams.set(k, v);
    const done = await signIn(browser, url.toString(), 'kim', 'kim-password-1');
    const code = new URL(done.headers.get('location')!).searchParams.get('code')!;
    const res = await fetch(`${via.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${clientId}:${TEST_SECRET}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { id_token: string }).id_token;
  }

  const verify = async (token: string, set: JSONWebKeySet, audience = 'first-party') =>
    jwtVerify(token, createLocalJWKSet(set), { issuer, audience });

  const cli = (args: string[]) => spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'src', 'cli', 'main.js'), ...args], {
    env: {
      ...process.env, IDP_CONFIG: one.config.file, IDP_DATA_DIR: database.target.data_dir, DATABASE_URL: database.target.database_url ?? '',
      IDP_SECRET_KEY: TEST_SECRET_KEY.toString('base64'),
    },
    encoding: 'utf8', timeout: 30_000,
  });

  it('signs with RS256 by default and with ES256 or EdDSA when the client asks', async () => {
    expect(decodeProtectedHeader(await signInFor('first-party', one)).alg).toBe('RS256');
    expect(decodeProtectedHeader(await signInFor('es-app', one)).alg).toBe('ES256');
    expect(decodeProtectedHeader(await signInFor('ed-app', two)).alg).toBe('EdDSA');
  });

  it('rotates: every instance picks the new key up, old tokens verify until the old key retires', async () => {
    const before = await signInFor('first-party', one);
    const oldKid = decodeProtectedHeader(before).kid!;

    const rotated = cli(['keys', 'rotate']);
    expect(rotated.status).toBe(0);
    expect(rotated.stdout).toMatch(/new signing keys \S+ are active/);
    expect(await one.reloadKeys()).toBe(true);
    expect(await two.reloadKeys()).toBe(true);
    expect(await two.reloadKeys()).toBe(false);

    const after = await signInFor('first-party', two);
    const newKid = decodeProtectedHeader(after).kid!;
    expect(newKid).not.toBe(oldKid);
    for (const via of [one, two]) {
      const published = await jwks(via);
      expect(published.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, newKid]));
      expect(published.keys.every((k) => k.d === undefined)).toBe(true);
      await expect(verify(before, published)).resolves.toBeDefined();
      await expect(verify(after, published)).resolves.toBeDefined();
    }

    const listed = cli(['keys', 'list', '--json']);
    const sets = listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as { status: string; keys: Array<{ kid: string }> });
    expect(sets[0]!.status).toBe('active');
    expect(sets[0]!.keys.map((k) => k.kid)).toContain(newKid);
    expect(sets[1]!.status).toBe('published');

    // Once the last token an instance can have signed with it has expired, the old key retires from every
    // instance's JWKS.
    // (The CLI rotated on the real clock, which may be ahead of this test's.)
    now = Math.max(now, Date.now()) + (replacedKeyLifetime(one.config) + 1) * 1000;
    await one.reloadKeys();
    await two.reloadKeys();
    for (const via of [one, two]) {
      const published = await jwks(via);
      expect(published.keys.map((k) => k.kid)).not.toContain(oldKid);
      await expect(verify(before, published)).rejects.toThrow();
    }
  });

  // An instance signs with the replaced key until its next reload, keys.reload_seconds after the rotation
  // at most; what it signs then must verify for the token's whole lifetime.
  it('keeps a replaced key published until the tokens an instance signed with it before reloading expire', async () => {
    const slow = await startIdp(database, { issuer, clients, clock, extra: { keys: { reload_seconds: 600 } } });
    try {
      const oldKid = decodeProtectedHeader(await signInFor('first-party', slow)).kid!;
      await rotateSigningKeys(slow.db, clock);
      const [rotated] = await signingKeySets(slow.db, Math.floor(now / 1000), replacedKeyLifetime(slow.config));
      now = (rotated!.createdAt + 599) * 1000;
      const late = await signInFor('first-party', slow);
      expect(decodeProtectedHeader(late).kid).toBe(oldKid);
      // A second before that token expires: still in every instance's JWKS.
      now = (rotated!.createdAt + 599 + slow.config.ttl.id_token - 1) * 1000;
      expect(await slow.reloadKeys()).toBe(true);
      expect((await jwks(slow)).keys.map((k) => k.kid)).toContain(oldKid);
      // Once every such token has expired (and the minute for clock skew), it retires.
      now = (rotated!.createdAt + replacedKeyLifetime(slow.config) + 1) * 1000;
      await slow.reloadKeys();
      expect((await jwks(slow)).keys.map((k) => k.kid)).not.toContain(oldKid);
    } finally {
      await slow.close();
    }
  });

  it('rotates automatically once per period, even with several instances racing', async () => {
    const auto1 = await startIdp(database, { issuer, clients, clock, extra: { keys: { rotate_every: 86400, reload_seconds: 60 } } });
    const auto2 = await startIdp(database, { issuer, clients, clock, extra: { keys: { rotate_every: 86400, reload_seconds: 60 } } });
    try {
      const kidsBefore = (await jwks(auto1)).keys.map((k) => k.kid);
      now += 86400 * 1000;
      await Promise.all([auto1.reloadKeys(), auto2.reloadKeys()]);
      const a = (await jwks(auto1)).keys.map((k) => k.kid);
      const b = (await jwks(auto2)).keys.map((k) => k.kid);
      expect(a).toEqual(b);
      expect(a[0]).not.toBe(kidsBefore[0]);
      const sets = cli(['keys', 'list', '--json']).stdout.trim().split('\n');
      expect(sets.filter((l) => JSON.parse(l).status === 'active')).toHaveLength(1);
    } finally {
      await auto1.close();
      await auto2.close();
    }
  });
});

/**
 * Passkeys over HTTP with a software authenticator that signs for real: enrollment during a sign-in,
 * second factor, usernameless sign-in, and every refusal the WebAuthn checks owe us.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { Browser, visibleText, type Page } from '../helpers/browser.js';
import { SoftAuthenticator } from '../helpers/authenticator.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { relyingParty, signIn, startAuthorization } from '../helpers/flows.js';
import { createLogger } from '../../src/log.js';

const clients = [
  ...defaultClients(REDIRECT_URI),
  { client_id: 'strict-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'required' },
  { client_id: 'phr-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'phishing-resistant' },
];

describe.each(databaseKinds())('passkeys on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  let now = Date.now();

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, { clients, clock: { now: () => now }, log: process.env.DEBUG_LOG ? createLogger((l) => console.log(l)) : undefined });
    await idp.users.add({ username: 'pia', email: 'pia@example.com', password: 'pia-password-1' });
    await idp.users.add({ username: 'quinn', email: 'quinn@example.com', password: 'quinn-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  /** Enrolls a passkey for `username` through a sign-in to the strict app; returns the authenticator. */
  async function enrollDuringSignIn(username: string, password: string, authenticator = new SoftAuthenticator(idp.issuer)) {
    const rp = await relyingParty(idp.issuer, 'strict-app');
    const auth = await startAuthorization(rp);
    const browser = new Browser(idp.issuer);
    const enrollPage = await signIn(browser, auth.url, username, password);
    expect(enrollPage.status).toBe(200);
    expect(enrollPage.body).toContain('Add a passkey');
    expect(visibleText(enrollPage)).not.toMatch(/\bSMS\b|text message/i);

    const start = await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {});
    expect(start.status).toBe(200);
    expect(start.body.rp.id).toBe('127.0.0.1');
    expect(start.body.authenticatorSelection).toMatchObject({ residentKey: 'preferred', userVerification: 'required' });
    // Any passkey does here: no hint for a security key (that is for phrh, below), nothing about synced ones.
    expect(start.body.hints ?? []).not.toContain('security-key');
    expect(visibleText(enrollPage)).not.toMatch(/security key, or|synced between|synced ones/);
    const finish = await browser.api<{ id: string; name: string; redirectTo: string; recoveryCodes?: string[] }>(
      'POST', '/api/mfa/passkeys/finish', { ...authenticator.create(start.body), name: 'Test key' });
    expect(finish.status).toBe(200);
    const done = await browser.get(finish.body.redirectTo);
    const tokens = await auth.redeem(done);
    return { authenticator, finish: finish.body, tokens, browser };
  }

  /** Signs in with password, then answers the passkey step through the JSON API. */
  async function passkeySecondFactor(browser: Browser, url: string, username: string, password: string, authenticator: SoftAuthenticator) {
    const page = await signIn(browser, url, username, password);
    expect(page.body).toContain('Use your passkey');
    const options = await browser.api<PublicKeyCredentialRequestOptionsJSON>('GET', '/api/auth/mfa/challenge/webauthn');
    return { page, options: options.body, verify: (response: unknown) => browser.api<{ redirectTo?: string; error?: string }>('POST', '/api/auth/mfa/verify/webauthn', response) };
  }

  it('enrolls a passkey during a sign-in that requires a second factor, and issues ten recovery codes', async () => {
    const { finish, tokens } = await enrollDuringSignIn('pia', 'pia-password-1');
    expect(finish.name).toBe('Test key');
    expect(finish.recoveryCodes).toHaveLength(10);
    for (const code of finish.recoveryCodes!) expect(code).toMatch(/^[a-z0-9]{5}-[a-z0-9]{5}$/);
    expect(new Set(finish.recoveryCodes).size).toBe(10);
    const claims = tokens.claims()!;
    expect(claims.amr).toEqual(['pwd', 'hwk', 'user', 'mfa']);
    expect(claims.acr).toBe('phrh');
    const stored = await idp.app.services.passkeyQueries.listForUser((await idp.users.find('pia')).id);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ transports: ['internal'], aaguid: '00000000-0000-0000-0000-000000000000', backup_eligible: false, backed_up: false });
    expect(stored[0]!.created_at).toBeGreaterThan(0);
  });

  it('asks a user with a passkey for it after the password, and counts it in acr and amr', async () => {
    const authenticator = new SoftAuthenticator(idp.issuer, { backupEligible: true });
    await enrollDuringSignIn('quinn', 'quinn-password-1', authenticator);
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const browser = new Browser(idp.issuer);
    const step = await passkeySecondFactor(browser, auth.url, 'quinn', 'quinn-password-1', authenticator);
    expect(step.options.userVerification).toBe('required');
    expect(step.options.rpId).toBe('127.0.0.1');
    expect(step.options.allowCredentials).toHaveLength(1);
    expect(step.options.timeout).toBeLessThanOrEqual(300_000);
    const verified = await step.verify(authenticator.get(step.options));
    expect(verified.status).toBe(200);
    const tokens = await auth.redeem(await browser.get(verified.body.redirectTo!));
    // A synced (backup-eligible) passkey: swk, and phr but not phrh.
    expect(tokens.claims()).toMatchObject({ amr: ['pwd', 'swk', 'user', 'mfa'], acr: 'phr' });
    const stored = await idp.app.services.passkeyQueries.listForUser((await idp.users.find('quinn')).id);
    expect(stored[0]!.last_used_at).toEqual(expect.any(Number));
    expect(stored[0]!.counter).toBeGreaterThan(0);
  });

  it('signs in usernameless with the passkey alone', async () => {
    await idp.users.add({ username: 'rosa', email: 'rosa@example.com', password: 'rosa-password-1' });
    const { authenticator } = await enrollDuringSignIn('rosa', 'rosa-password-1');
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const browser = new Browser(idp.issuer);
    const login = await browser.get(auth.url);
    expect(login.body).toContain('Sign in with a passkey');
    const challenge = await browser.api<PublicKeyCredentialRequestOptionsJSON>('GET', '/api/auth/mfa/challenge/webauthn');
    expect(challenge.status).toBe(200);
    expect(challenge.body.allowCredentials).toEqual([]);
    const cookie = challenge.headers.getSetCookie().find((c) => c.startsWith('idp_webauthn='))!;
    expect(cookie).toMatch(/HttpOnly/i);
    const expires = new Date(/expires=([^;]+)/i.exec(cookie)![1]!).getTime();
    expect(expires - Date.now()).toBeLessThanOrEqual(300_000);
    expect(expires - Date.now()).toBeGreaterThan(0);
    const verified = await browser.api<{ redirectTo: string }>('POST', '/api/auth/mfa/verify/webauthn', authenticator.get(challenge.body));
    expect(verified.status).toBe(200);
    const tokens = await auth.redeem(await browser.get(verified.body.redirectTo));
    expect(tokens.claims()).toMatchObject({ sub: (await idp.users.find('rosa')).id, amr: ['hwk', 'user', 'mfa'], acr: 'phrh' });
  });

  // Found by an audit: such an assertion was verified (its counter recorded, the passkey marked used) and
  // an attempt reserved against the address that was never given back, then refused anyway.
  it('keeps two sign-ins of one browser (two tabs) apart: the passkey answers the one its page names', async () => {
    await idp.users.add({ username: 'tabs', email: 'tabs@example.com', password: 'tabs-password-1' });
    const { authenticator } = await enrollDuringSignIn('tabs', 'tabs-password-1');
    const browser = new Browser(idp.issuer);
    // Tab A reaches the passkey step of one app; then tab B opens another app's sign-in page.
    const authA = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const pageA = await signIn(browser, authA.url, 'tabs', 'tabs-password-1');
    expect(pageA.body).toContain('Use your passkey');
    const uidA = /\/interaction\/([^/?]+)/.exec(pageA.url)![1]!;
    const authB = await startAuthorization(await relyingParty(idp.issuer, 'strict-app'));
    const loginB = await browser.get(authB.url);
    expect(loginB.body).toContain('autocomplete="current-password"');
    expect(loginB.url).not.toContain(uidA);

    // Tab A's passkey, named by its page, finishes tab A's request (it used to finish tab B's).
    const options = await browser.api<PublicKeyCredentialRequestOptionsJSON>('GET', `/api/auth/mfa/challenge/webauthn?interaction=${uidA}`);
    expect(options.body.allowCredentials).toHaveLength(1);
    const verified = await browser.api<{ redirectTo: string }>('POST', `/api/auth/mfa/verify/webauthn?interaction=${uidA}`, authenticator.get(options.body));
    expect(verified.status).toBe(200);
    expect(verified.body.redirectTo).toBe(`${idp.issuer}/interaction/${uidA}`);
    const tokens = await authA.redeem(await browser.get(verified.body.redirectTo));
    expect(tokens.claims()).toMatchObject({ aud: 'first-party', amr: expect.arrayContaining(['pwd', 'hwk']) });

    // Tab B's sign-in is still its own: its password step leads to its passkey step.
    const stepB = await browser.submit(loginB, '/login', { login: 'tabs', password: 'tabs-password-1' });
    expect(stepB.url).not.toContain(uidA);
    expect(stepB.body).toContain('Use your passkey');
    // A page naming a sign-in this browser does not have gets no sign-in's challenge.
    const unknown = await browser.api('POST', '/api/auth/mfa/verify/webauthn?interaction=nope', authenticator.get(options.body));
    expect(unknown.status).toBe(400);
  });

  // Found by an audit of the protocol: a user whose passkeys were all synced, asked for phrh, was told only
  // "add a passkey", added another synced one, and met the same page again.
  it('tells a user with synced passkeys that a request for phrh needs a security key, and asks the browser for one', async () => {
    await idp.users.add({ username: 'synced', email: 'synced@example.com', password: 'synced-password-1' });
    const synced = new SoftAuthenticator(idp.issuer, { backupEligible: true });
    await enrollDuringSignIn('synced', 'synced-password-1', synced);
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { acr_values: 'phrh' });
    const browser = new Browser(idp.issuer);
    const step = await passkeySecondFactor(browser, auth.url, 'synced', 'synced-password-1', synced);
    const enroll = await browser.get((await step.verify(synced.get(step.options))).body.redirectTo!);
    expect(visibleText(enroll)).toContain('needs a security key, or a passkey kept on one device');
    expect(visibleText(enroll)).toContain('the passkeys you have are synced ones');
    const start = await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {});
    expect(start.body.hints).toEqual(['security-key']);
    // A security key (not backup-eligible) meets it.
    const finish = await browser.api<{ redirectTo: string }>('POST', '/api/mfa/passkeys/finish', new SoftAuthenticator(idp.issuer).create(start.body));
    const tokens = await auth.redeem(await browser.get(finish.body.redirectTo));
    expect(tokens.claims()).toMatchObject({ acr: 'phrh', amr: expect.arrayContaining(['hwk']) });
  });

  it('refuses an assertion from a browser with no sign-in in progress before verifying or counting it', async () => {
    await idp.users.add({ username: 'stray', email: 'stray@example.com', password: 'stray-password-1' });
    const { authenticator } = await enrollDuringSignIn('stray', 'stray-password-1');
    const userId = (await idp.users.find('stray')).id;
    const [before] = await idp.app.services.passkeyQueries.listForUser(userId);
    const throttleRows = async () => (await idp.db('throttle').select('key', 'failures').orderBy('key')) as unknown[];
    const rowsBefore = await throttleRows();
    const browser = new Browser(idp.issuer);
    const challenge = await browser.api<PublicKeyCredentialRequestOptionsJSON>('GET', '/api/auth/mfa/challenge/webauthn');
    const refused = await browser.api('POST', '/api/auth/mfa/verify/webauthn', authenticator.get(challenge.body));
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ error: 'session_not_found' });
    const [after] = await idp.app.services.passkeyQueries.listForUser(userId);
    expect([after!.counter, after!.last_used_at]).toEqual([before!.counter, before!.last_used_at]);
    expect(await throttleRows()).toEqual(rowsBefore);
  });

  // WebAuthn L3 §7.2 step 6: when the user was not identified before the ceremony, the response must
  // carry a user handle (found by an audit: one without was accepted).
  it('refuses a usernameless sign-in whose assertion has no user handle', async () => {
    await idp.users.add({ username: 'nameless', email: 'nameless@example.com', password: 'nameless-password-1' });
    const { authenticator } = await enrollDuringSignIn('nameless', 'nameless-password-1');
    for (const userHandle of [undefined, '']) {
      const browser = new Browser(idp.issuer);
      await browser.get((await startAuthorization(await relyingParty(idp.issuer, 'first-party'))).url);
      const challenge = await browser.api<PublicKeyCredentialRequestOptionsJSON>('GET', '/api/auth/mfa/challenge/webauthn');
      const assertion = authenticator.get(challenge.body);
      const refused = await browser.api('POST', '/api/auth/mfa/verify/webauthn', { ...assertion, response: { ...assertion.response, userHandle } });
      expect(refused.status).toBe(400);
      expect(refused.body).toMatchObject({ error: 'passkey_failed' });
    }
  });

  describe('refusals', () => {
    let authenticator: SoftAuthenticator;
    let otherAuthenticator: SoftAuthenticator;
    beforeAll(async () => {
      await idp.users.add({ username: 'sam', email: 'sam@example.com', password: 'sam-password-1' });
      await idp.users.add({ username: 'tess', email: 'tess@example.com', password: 'tess-password-1' });
      ({ authenticator } = await enrollDuringSignIn('sam', 'sam-password-1'));
      ({ authenticator: otherAuthenticator } = await enrollDuringSignIn('tess', 'tess-password-1'));
    });

    async function pendingSam() {
      const auth = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
      const browser = new Browser(idp.issuer);
      return { browser, ...(await passkeySecondFactor(browser, auth.url, 'sam', 'sam-password-1', authenticator)) };
    }

    const expectRefused = (res: { status: number; body: { error?: string; error_description?: string } }) => {
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('passkey_failed');
      expect(res.body.error_description).toBe('The passkey could not be verified. Please try again.');
    };

    it('refuses an assertion made for a lookalike origin', async () => {
      const s = await pendingSam();
      expectRefused(await s.verify(authenticator.get(s.options, { origin: 'https://127.0.0.1.evil.example' })));
      // The audit trail says which check refused it (the user is told only that it failed).
      const [event] = await idp.app.services.audit.list({ userId: (await idp.users.find('sam')).id, limit: 1 });
      expect(event).toMatchObject({ type: 'sign_in', outcome: 'failure' });
      expect(JSON.parse(event!.detail!)).toEqual({ factor: 'passkey', reason: expect.stringMatching(/origin/i) });
    });

    it('refuses an assertion with the wrong RP ID hash', async () => {
      const s = await pendingSam();
      expectRefused(await s.verify(authenticator.get(s.options, { rpId: 'evil.example' })));
    });

    it('refuses a replayed assertion', async () => {
      const s = await pendingSam();
      const response = authenticator.get(s.options);
      expect((await s.verify(response)).status).toBe(200);
      const again = await pendingSam();
      expectRefused(await again.verify(response));
    });

    it('refuses an expired challenge and a challenge from another browser', async () => {
      const s = await pendingSam();
      now += 301_000;
      try {
        expectRefused(await s.verify(authenticator.get(s.options)));
      } finally {
        now -= 301_000;
      }
      const mine = await pendingSam();
      const theirs = await pendingSam();
      // Signed over the other browser's challenge, sent with mine.
      expectRefused(await mine.verify(authenticator.get(theirs.options)));
    });

    it('hands a challenge out once, to one of many parallel requests, and only for its purpose', async () => {
      const { challenges } = idp.app.services;
      const at = Math.floor(now / 1000);
      await challenges.insert({ id: 'parallel', purpose: 'registration', challenge: 'c1', user_id: null, interaction_uid: 'uid-1', expires_at: at + 60 });
      expect(await challenges.consume('parallel', 'authentication', at)).toBeUndefined();
      const results = await Promise.all(Array.from({ length: 8 }, () => challenges.consume('parallel', 'registration', at)));
      expect(results.filter((r) => r !== undefined)).toEqual([
        { id: 'parallel', purpose: 'registration', challenge: 'c1', user_id: null, interaction_uid: 'uid-1', expires_at: at + 60 },
      ]);
      // An expired challenge is removed but not handed out: asked for again as if it were still live, it is gone.
      await challenges.insert({ id: 'stale', purpose: 'authentication', challenge: 'c2', user_id: null, interaction_uid: null, expires_at: at });
      expect(await challenges.consume('stale', 'authentication', at)).toBeUndefined();
      expect(await challenges.consume('stale', 'authentication', at - 10)).toBeUndefined();
      await challenges.insert({ id: 'fresh', purpose: 'authentication', challenge: 'c3', user_id: null, interaction_uid: null, expires_at: at + 1 });
      expect((await challenges.consume('fresh', 'authentication', at))?.challenge).toBe('c3');
    });

    it('gives a challenge one try: a refused assertion uses it up, and of parallel verifications of one assertion one succeeds', async () => {
      const { passkeys, challenges } = idp.app.services;
      const sam = await idp.users.find('sam');
      const reasonOf = async (attempt: Promise<unknown>) => attempt.then(() => 'verified', (err: { reason?: string }) => err.reason);
      const options = await passkeys.authenticationOptions('one-try', sam);
      expect(await reasonOf(passkeys.verifyAuthentication('one-try', authenticator.get(options, { origin: 'https://evil.example' })))).toMatch(/origin/i);
      // The same challenge, now signed as it should be: already used up.
      expect(await reasonOf(passkeys.verifyAuthentication('one-try', authenticator.get(options)))).toBe('no live challenge for this browser');
      expect(await challenges.find('one-try', 'authentication')).toBeUndefined();

      // A few rounds: the race (which request consumes, which moves the counter) goes differently each time.
      for (let round = 0; round < 4; round += 1) {
        const fresh = await passkeys.authenticationOptions('parallel-verify', sam);
        const assertion = authenticator.get(fresh);
        const outcomes = await Promise.all(Array.from({ length: 6 }, () => reasonOf(passkeys.verifyAuthentication('parallel-verify', assertion))));
        expect(outcomes.filter((o) => o === 'verified')).toHaveLength(1);
        expect(await challenges.find('parallel-verify', 'authentication')).toBeUndefined();
      }
    });

    it('refuses an assertion without user verification', async () => {
      const s = await pendingSam();
      expectRefused(await s.verify(authenticator.get(s.options, { noUserVerification: true })));
    });

    it('refuses a signature counter that went backwards', async () => {
      const s = await pendingSam();
      const stored = (await idp.app.services.passkeyQueries.findById(authenticator.credentials[0]!.id.toString('base64url')))!;
      expect(stored.counter).toBeGreaterThan(1);
      // A cloned authenticator reports a counter at or below the one already seen (WebAuthn §6.1.1).
      expectRefused(await s.verify(authenticator.get(s.options, { counter: stored.counter - 1 })));
      const again = await pendingSam();
      expectRefused(await again.verify(authenticator.get(again.options, { counter: stored.counter })));
      authenticator.credentials[0]!.counter = stored.counter + 10;
      const fine = await pendingSam();
      expect((await fine.verify(authenticator.get(fine.options))).status).toBe(200);
    });

    it('refuses another user’s credential for a pending sign-in', async () => {
      const s = await pendingSam();
      expectRefused(await s.verify(otherAuthenticator.get({ ...s.options, allowCredentials: [] })));
    });

    it('refuses the wrong clientDataJSON type', async () => {
      const s = await pendingSam();
      expectRefused(await s.verify(authenticator.get(s.options, { type: 'webauthn.create' })));
    });

    it('refuses cross-origin and non-JSON posts, and a half-signed-in browser adding a passkey', async () => {
      const s = await pendingSam();
      const cross = await s.browser.api('POST', '/api/auth/mfa/verify/webauthn', authenticator.get(s.options), { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' });
      expect(cross.status).toBe(403);
      const form = await s.browser.request('/api/auth/mfa/verify/webauthn', {
        method: 'POST', form: { a: 'b' }, headers: { origin: new URL(idp.issuer).origin, accept: 'application/json' },
      });
      expect(form.status).toBe(415);
      const start = await s.browser.api('POST', '/api/mfa/passkeys/start', {});
      expect(start.status).toBe(403);
      for (const body of [null, [1], 'text']) {
        const bad = await s.browser.api('POST', '/api/auth/mfa/verify/webauthn', body);
        expect(bad.status).toBe(400);
        expect(bad.body).toMatchObject({ error: 'invalid_request' });
      }
      // Nothing was issued to the half-signed-in browser.
      const none = await s.browser.request(`/auth?client_id=first-party&response_type=code&scope=openid&prompt=none&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&code_challenge=${'a'.repeat(43)}&code_challenge_method=S256`);
      expect(new URL(none.headers.get('location')!).searchParams.get('error')).toBe('login_required');
    });
  });

  // WebAuthn L3 §7.1: a credential id may be up to 1023 bytes (PostgreSQL refused ids over 768 bytes with a
  // 500 before 2026-11-30); longer ones are refused. Transports are hints the browser reports: only known
  // ones are kept (a deeply nested value once made the server fail while storing it).
  // Found by an audit: the check that a credential is new and its insert were two statements, so the same
  // credential registered by two users at once gave one of them a 500. A "none" attestation signs
  // nothing, so one attestation object answers any challenge.
  it('refuses with a 400, never a 500, one credential registered by two users at once', async () => {
    for (let round = 0; round < 3; round += 1) {
      const enrolling = await Promise.all(['a', 'b'].map(async (who) => {
        const username = `twin-${who}-${round}`;
        await idp.users.add({ username, email: `${username}@example.com`, password: `${username}-password-1` });
        const browser = new Browser(idp.issuer);
        expect((await signIn(browser, (await startAuthorization(await relyingParty(idp.issuer, 'strict-app'))).url, username, `${username}-password-1`)).body).toContain('Add a passkey');
        const options = (await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {})).body;
        return { browser, options };
      }));
      const first = new SoftAuthenticator(idp.issuer).create(enrolling[0]!.options);
      const clientData = JSON.parse(Buffer.from(first.response.clientDataJSON, 'base64url').toString('utf8')) as Record<string, unknown>;
      const second = { ...first, response: { ...first.response, clientDataJSON: Buffer.from(JSON.stringify({ ...clientData, challenge: enrolling[1]!.options.challenge })).toString('base64url') } };
      const answers = await Promise.all([
        enrolling[0]!.browser.api<{ error?: string }>('POST', '/api/mfa/passkeys/finish', first),
        enrolling[1]!.browser.api<{ error?: string }>('POST', '/api/mfa/passkeys/finish', second),
      ]);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 400]);
      expect(answers.find((a) => a.status === 400)!.body).toMatchObject({ error: 'passkey_failed' });
    }
  });

  it('enrolls a credential id of 1023 bytes, refuses one of 1024, and keeps only known transports', async () => {
    await idp.users.add({ username: 'ravi', email: 'ravi@example.com', password: 'ravi-password-1' });
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'strict-app'));
    const browser = new Browser(idp.issuer);
    expect((await signIn(browser, auth.url, 'ravi', 'ravi-password-1')).body).toContain('Add a passkey');
    const authenticator = new SoftAuthenticator(idp.issuer);
    const create = async (forged: Parameters<SoftAuthenticator['create']>[1]) => authenticator.create(
      (await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {})).body, forged);

    const tooLong = await browser.api('POST', '/api/mfa/passkeys/finish', await create({ idBytes: 1024 }));
    expect(tooLong.status).toBe(400);
    expect(tooLong.body).toMatchObject({ error: 'passkey_failed' });

    const finish = await browser.api<{ id: string }>('POST', '/api/mfa/passkeys/finish',
      await create({ idBytes: 1023, transports: ['usb', 'usb', 'nfc', 'carrier-pigeon', 7, ['hybrid'], { internal: true }] }));
    expect(finish.status).toBe(200);
    expect(Buffer.from(finish.body.id, 'base64url')).toHaveLength(1023);
    const stored = await idp.app.services.passkeyQueries.listForUser((await idp.users.find('ravi')).id);
    expect(stored.map((p) => [p.id, p.transports])).toEqual([[finish.body.id, ['usb', 'nfc']]]);
  });

  it('answers a passkey id that cannot be one (NUL, not base64url, too long) with 404 on the account page', async () => {
    const browser = new Browser(idp.issuer);
    for (const id of ['a%00b', 'a%20b', 'A'.repeat(1365)]) {
      const rename = await browser.request(`/account/passkeys/${id}/rename`, { method: 'POST', form: { name: 'x' } });
      const remove = await browser.request(`/account/passkeys/${id}/delete`, { method: 'POST', form: {} });
      expect([id.slice(0, 8), rename.status, remove.status]).toEqual([id.slice(0, 8), 404, 404]);
    }
  });

  it('refuses a JSON body nested deeper than any of ours, before parsing it', async () => {
    const browser = new Browser(idp.issuer);
    const deep = `{"id":"x","response":{"transports":${'['.repeat(20_000)}${']'.repeat(20_000)}}}`;
    const answer = await browser.request('/api/mfa/passkeys/finish', {
      method: 'POST', body: deep,
      headers: { 'content-type': 'application/json', accept: 'application/json', origin: new URL(idp.issuer).origin, 'sec-fetch-site': 'same-origin' },
    });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toEqual({ error: 'invalid_request', error_description: 'the body is nested too deeply' });
  });

  it('renders the passkey option first on the second-factor page', async () => {
    const auth = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const page: Page = await signIn(new Browser(idp.issuer), auth.url, 'pia', 'pia-password-1');
    expect(page.body).toContain('Use your passkey');
    expect(page.body).toContain('Use a recovery code');
    expect(visibleText(page)).not.toMatch(/\bSMS\b|text message/i);
  });
});

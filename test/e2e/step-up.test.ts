/**
 * Step-up with a real relying party (openid-client): what the tokens say after each kind of sign-in,
 * asking only for what is missing, and the errors an app gets when the demand cannot be met.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';
import { generateSync } from 'otplib';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { Browser, type Page } from '../helpers/browser.js';
import { SoftAuthenticator } from '../helpers/authenticator.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { relyingParty, signIn, startAuthorization, totpSecretOf } from '../helpers/flows.js';

const clients = [
  ...defaultClients(REDIRECT_URI),
  { client_id: 'strict-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'required' },
  { client_id: 'phr-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'phishing-resistant' },
];

const MFA = 'https://refeds.org/profile/mfa';

describe.each(databaseKinds())('step-up on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  let now = Math.floor(Date.now() / 30_000) * 30_000 + 10_000;
  const secrets = new Map<string, string>();
  const authenticator = new SoftAuthenticator('');

  const totp = (username: string) => generateSync({ secret: secrets.get(username)!, epoch: Math.floor(now / 1000) });
  /** Each TOTP use needs a fresh time step (RFC 6238 §5.2), so time moves on between uses. */
  const nextStep = () => { now += 30_000; };

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, { clients, clock: { now: () => now } });
    Object.assign(authenticator, { origin: idp.issuer });
    await idp.users.add({ username: 'vic', email: 'vic@example.com', password: 'vic-password-1' });
    await idp.users.add({ username: 'wes', email: 'wes@example.com', password: 'wes-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  async function enrollTotp(browser: Browser, page: Page, username: string): Promise<Page> {
    const setup = await browser.get(`${page.url.split('?')[0]}?method=totp`);
    secrets.set(username, totpSecretOf(setup));
    const codes = await browser.submit(setup, '/enroll/totp', { code: totp(username) });
    nextStep();
    return browser.submit(codes, '/continue', {});
  }

  async function passkeyStep(browser: Browser): Promise<Page> {
    const options = await browser.api<PublicKeyCredentialRequestOptionsJSON>('GET', '/api/auth/mfa/challenge/webauthn');
    const verified = await browser.api<{ redirectTo: string }>('POST', '/api/auth/mfa/verify/webauthn', authenticator.get(options.body));
    expect(verified.status).toBe(200);
    return browser.get(verified.body.redirectTo);
  }

  async function totpStep(browser: Browser, page: Page, username: string): Promise<Page> {
    const form = page.body.includes('name="code"') ? page : await browser.get(`${page.url.split('?')[0]}?method=totp`);
    const next = await browser.submit(form, '/totp', { code: totp(username) });
    nextStep();
    return next;
  }

  it('password + TOTP gives mfa; a phishing-resistant app then asks only for a passkey enrollment', async () => {
    const browser = new Browser(idp.issuer);
    const strict = await startAuthorization(await relyingParty(idp.issuer, 'strict-app'));
    const enroll = await signIn(browser, strict.url, 'vic', 'vic-password-1');
    const first = await strict.redeem(await enrollTotp(browser, enroll, 'vic'));
    expect(first.claims()).toMatchObject({ acr: MFA, amr: ['pwd', 'otp', 'mfa'] });

    // Same browser, phishing-resistant app: the session's password and TOTP count; only a passkey is missing.
    const phr = await startAuthorization(await relyingParty(idp.issuer, 'phr-app'));
    const page = await browser.get(phr.url);
    expect(page.body).not.toContain('autocomplete="current-password"');
    expect(page.body).not.toContain('name="code"');
    expect(page.body).toContain('Add a passkey');
    const options = await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {});
    expect(options.status).toBe(200);
    const finish = await browser.api<{ redirectTo: string; recoveryCodes?: string[] }>('POST', '/api/mfa/passkeys/finish', authenticator.create(options.body));
    expect(finish.status).toBe(200);
    // Not the first factor: the recovery codes from the TOTP enrollment stay.
    expect(finish.body.recoveryCodes).toBeUndefined();
    const tokens = await phr.redeem(await browser.get(finish.body.redirectTo));
    expect(tokens.claims()).toMatchObject({ acr: 'phrh', amr: ['pwd', 'otp', 'hwk', 'user', 'mfa'] });
  });

  it('a password + TOTP session asked for phr is asked for the passkey, not the password', async () => {
    const browser = new Browser(idp.issuer);
    const plain = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const second = await signIn(browser, plain.url, 'vic', 'vic-password-1');
    expect(second.body).toContain('Use your passkey');
    const mfa = await plain.redeem(await totpStep(browser, second, 'vic'));
    expect(mfa.claims()).toMatchObject({ acr: MFA, amr: ['pwd', 'otp', 'mfa'] });
    const authTime = mfa.claims()!.auth_time!;

    const stepUp = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { acr_values: 'phr' });
    const page = await browser.get(stepUp.url);
    expect(page.body).toContain('Use your passkey');
    expect(page.body).not.toContain('autocomplete="current-password"');
    expect(page.body).not.toContain('Use an authenticator app');
    const tokens = await stepUp.redeem(await passkeyStep(browser));
    // The strongest requested value satisfied (phr), though the device-bound key also meets phrh.
    expect(tokens.claims()).toMatchObject({ acr: 'phr', amr: ['pwd', 'otp', 'hwk', 'user', 'mfa'] });
    expect(tokens.claims()!.auth_time).toBeGreaterThanOrEqual(authTime);

    // Satisfied already: an essential acr claim for mfa needs no interaction, and the token says mfa.
    const again = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), {
      claims: JSON.stringify({ id_token: { acr: { essential: true, values: [MFA] } } }),
    });
    const straight = await browser.request(again.url);
    const done = await browser.follow(straight);
    const third = await again.redeem(done);
    expect(third.claims()!.acr).toBe(MFA);
  });

  it('an essential acr claim the session lacks triggers the missing step', async () => {
    const browser = new Browser(idp.issuer);
    const plain = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    await plain.redeem(await totpStep(browser, await signIn(browser, plain.url, 'vic', 'vic-password-1'), 'vic'));
    const essential = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), {
      claims: JSON.stringify({ id_token: { acr: { essential: true, values: ['phr'] } } }),
    });
    const page = await browser.get(essential.url);
    expect(page.body).toContain('Use your passkey');
    const tokens = await essential.redeem(await passkeyStep(browser));
    expect(tokens.claims()!.acr).toBe('phr');
  });

  it('prompt=login and an exceeded max_age re-run the whole sign-in', async () => {
    const browser = new Browser(idp.issuer);
    const plain = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    await plain.redeem(await totpStep(browser, await signIn(browser, plain.url, 'vic', 'vic-password-1'), 'vic'));
    for (const params of [{ prompt: 'login' }, { max_age: '0' }] as Record<string, string>[]) {
      const again = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), params);
      const page = await browser.get(again.url);
      expect(page.body).toContain('autocomplete="current-password"');
    }
  });

  it('sends unmet_authentication_requirements when the user declines to enroll, interaction_required for prompt=none', async () => {
    const browser = new Browser(idp.issuer);
    const demand = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { acr_values: 'phr', state: 'declined' });
    const enroll = await signIn(browser, demand.url, 'wes', 'wes-password-1');
    expect(enroll.body).toContain('Add a passkey');
    expect(enroll.body).not.toContain('Use an authenticator app instead');
    const declined = await browser.submit(enroll, '/decline', {});
    const location = new URL(declined.headers.get('location')!);
    expect(location.searchParams.get('error')).toBe('unmet_authentication_requirements');

    // wes now has a password-only session? No: declining ends the sign-in without one.
    const none = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { prompt: 'none' });
    expect(new URL((await browser.request(none.url)).headers.get('location')!).searchParams.get('error')).toBe('login_required');

    // With a password-only session, prompt=none asking for more than it has gets interaction_required.
    const sfa = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const sfaTokens = await sfa.redeem(await signIn(browser, sfa.url, 'wes', 'wes-password-1'));
    expect(sfaTokens.claims()).toMatchObject({ acr: 'https://refeds.org/profile/sfa', amr: ['pwd'] });
    const silent = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { prompt: 'none', acr_values: MFA });
    const answer = new URL((await browser.request(silent.url)).headers.get('location')!);
    expect(answer.searchParams.get('error')).toBe('interaction_required');
  });

  it('ends a second-factor session after 30 idle minutes, and any session after 12 hours (AAL2)', async () => {
    const browser = new Browser(idp.issuer);
    const plain = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    await plain.redeem(await totpStep(browser, await signIn(browser, plain.url, 'vic', 'vic-password-1'), 'vic'));
    now += 20 * 60_000;
    const active = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    await active.redeem(await browser.get(active.url));
    now += 31 * 60_000;
    const idle = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    expect((await browser.get(idle.url)).body).toContain('autocomplete="current-password"');

    const pwdOnly = new Browser(idp.issuer);
    const sfa = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    await sfa.redeem(await signIn(pwdOnly, sfa.url, 'wes', 'wes-password-1'));
    now += 31 * 60_000;
    const stillIn = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    await stillIn.redeem(await pwdOnly.get(stillIn.url));
    now += 12 * 3600_000;
    const tooOld = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    expect((await pwdOnly.get(tooOld.url)).body).toContain('autocomplete="current-password"');
  });

  it('puts acr and auth_time in introspection responses (RFC 9470)', async () => {
    const browser = new Browser(idp.issuer);
    const rp = await relyingParty(idp.issuer, 'first-party');
    const auth = await startAuthorization(rp);
    const tokens = await auth.redeem(await totpStep(browser, await signIn(browser, auth.url, 'vic', 'vic-password-1'), 'vic'));
    const introspection = await oidc.tokenIntrospection(rp, tokens.access_token);
    expect(introspection).toMatchObject({ active: true, acr: MFA });
    expect(introspection.auth_time).toBe(tokens.claims()!.auth_time);
  });
});

/**
 * What an app gets when it asks for an acr in the ways OIDC Core allows (acr_values, §3.1.2.1; an
 * essential or voluntary `acr` claim, §5.5.1.1), against a session that already exists: the acr of this
 * request (not of the one that signed the session in), essential values winning, and an answer (not a
 * redirect loop) when no sign-in can give what is demanded. Found by an audit.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { Browser, findForm, type Page } from '../helpers/browser.js';
import { SoftAuthenticator } from '../helpers/authenticator.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { relyingParty, signIn, startAuthorization } from '../helpers/flows.js';

const clients = [
  ...defaultClients(REDIRECT_URI),
  { client_id: 'phr-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'phishing-resistant' },
];
const MFA = 'https://refeds.org/profile/mfa';
const essential = (value: string) => JSON.stringify({ id_token: { acr: { essential: true, value } } });

describe.each(databaseKinds())('acr requests on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  const authenticator = new SoftAuthenticator('');

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, { clients });
    Object.assign(authenticator, { origin: idp.issuer });
    await idp.users.add({ username: 'pat', email: 'pat@example.com', password: 'pat-password-1' });
    await idp.users.add({ username: 'sam', email: 'sam@example.com', password: 'sam-password-1' });
    const browser = new Browser(idp.issuer);
    const phr = await startAuthorization(await relyingParty(idp.issuer, 'phr-app'));
    await signIn(browser, phr.url, 'pat', 'pat-password-1');
    const options = await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {});
    const finish = await browser.api<{ redirectTo: string }>('POST', '/api/mfa/passkeys/finish', authenticator.create(options.body));
    expect((await phr.redeem(await browser.get(finish.body.redirectTo))).claims()!.acr).toBe('phrh');
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  async function passkeyStep(browser: Browser): Promise<Page> {
    const options = await browser.api<PublicKeyCredentialRequestOptionsJSON>('GET', '/api/auth/mfa/challenge/webauthn');
    const verified = await browser.api<{ redirectTo: string }>('POST', '/api/auth/mfa/verify/webauthn', authenticator.get(options.body));
    expect(verified.status).toBe(200);
    return browser.get(verified.body.redirectTo);
  }

  /** A password + passkey session, signed in by a request that asked for `acrValues` (if any). */
  async function passkeySession(acrValues?: string): Promise<Browser> {
    const browser = new Browser(idp.issuer);
    const first = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), acrValues ? { acr_values: acrValues } : {});
    await signIn(browser, first.url, 'pat', 'pat-password-1');
    const tokens = await first.redeem(await passkeyStep(browser));
    expect(tokens.claims()!.acr).toBe(acrValues ?? 'phrh');
    return browser;
  }

  const answerOf = (page: Page) => new URL(page.headers.get('location')!).searchParams;

  it('a session signed in for mfa, asked for phr which it meets, says phr', async () => {
    const browser = await passkeySession(MFA);
    const phr = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { acr_values: 'phr' });
    expect((await phr.redeem(await browser.get(phr.url))).claims()!.acr).toBe('phr');
  });

  it('a phrh session asked for mfa says mfa, the value asked for', async () => {
    const browser = await passkeySession();
    const mfa = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { acr_values: MFA });
    expect((await mfa.redeem(await browser.get(mfa.url))).claims()!.acr).toBe(MFA);
  });

  it('an essential acr wins over acr_values', async () => {
    const browser = await passkeySession();
    const req = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { acr_values: 'phr', claims: essential(MFA) });
    expect((await req.redeem(await browser.get(req.url))).claims()!.acr).toBe(MFA);
  });

  it('prompt=none with an essential acr the session meets gets a code; one it does not meet gets interaction_required', async () => {
    const browser = await passkeySession();
    const met = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { prompt: 'none', claims: essential(MFA) });
    const page = await browser.get(met.url);
    expect(answerOf(page).get('error')).toBeNull();
    expect((await met.redeem(page)).claims()!.acr).toBe(MFA);

    const sam = new Browser(idp.issuer);
    const first = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    await first.redeem(await signIn(sam, first.url, 'sam', 'sam-password-1'));
    const unmet = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { prompt: 'none', claims: essential('phr') });
    expect(answerOf(await sam.get(unmet.url)).get('error')).toBe('interaction_required');
  });

  it('an essential acr that is not ours is answered with unmet_authentication_requirements, with or without a session', async () => {
    const browser = await passkeySession();
    const withSession = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { claims: essential('urn:example:unsupported') });
    expect(answerOf(await browser.get(withSession.url)).get('error')).toBe('unmet_authentication_requirements');

    const silent = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { prompt: 'none', claims: essential('urn:example:unsupported') });
    expect(answerOf(await browser.get(silent.url)).get('error')).toBe('unmet_authentication_requirements');

    const fresh = new Browser(idp.issuer);
    const without = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { claims: essential('urn:example:unsupported') });
    expect(answerOf(await fresh.get(without.url)).get('error')).toBe('unmet_authentication_requirements');
  });

  it.each([
    ['values a string', { essential: true, values: 'phr' }],
    ['value an array', { essential: true, value: ['phr'] }],
  ])('refuses an essential acr with %s with invalid_request (found by a review: it was ignored)', async (_name, acr) => {
    const req = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { claims: JSON.stringify({ id_token: { acr } }) });
    const first = await new Browser(idp.issuer).request(req.url);
    expect(answerOf(first).get('error')).toBe('invalid_request');
  });

  it('declining is only possible where the sign-in asks to enroll a factor', async () => {
    const browser = new Browser(idp.issuer);
    const req = await startAuthorization(await relyingParty(idp.issuer, 'first-party'));
    const login = await browser.get(req.url);
    const declined = await browser.request(`${new URL(login.url).pathname}/decline`, { form: { csrf: findForm(login.body, '/login').fields.csrf! } });
    expect(declined.status).toBe(400);
    // The sign-in goes on as if nothing happened.
    const done = await browser.submit(login, '/login', { login: 'sam', password: 'sam-password-1' });
    expect((await req.redeem(done)).claims()!.sub).toBeTruthy();
  });
});

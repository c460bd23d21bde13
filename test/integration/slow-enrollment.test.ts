/**
 * A new user at an app with mfa_policy required enrolls a second factor after the password: the
 * password of this very sign-in counts however long the enrollment takes (the ten-minute rule is for
 * factors carried over from an older session). Found by a review: confirming after minute ten ended on
 * an error page, and a passkey the authenticator had just made was refused.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { generateSync } from 'otplib';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import { Browser, findForm } from '../helpers/browser.js';
import { SoftAuthenticator } from '../helpers/authenticator.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { relyingParty, signIn, startAuthorization, totpSecretOf } from '../helpers/flows.js';

const clients = [
  ...defaultClients(REDIRECT_URI),
  { client_id: 'mfa-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, mfa_policy: 'required' },
];

describe.each(databaseKinds())('slow first enrollment on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  let now = Date.now();
  const code = (secret: string) => generateSync({ secret, epoch: Math.floor(now / 1000) });
  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, { clients, clock: { now: () => now } });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  it('TOTP setup opened at 9 min, confirmed at 11 min: the sign-in goes on (not an error page)', async () => {
    now = Date.now();
    await idp.users.add({ username: 'nia', email: 'nia@example.com', password: 'nia-password-1' });
    const browser = new Browser(idp.issuer);
    const req = await startAuthorization(await relyingParty(idp.issuer, 'mfa-app'));
    const enroll = await signIn(browser, req.url, 'nia', 'nia-password-1');
    expect(enroll.body).toContain('/decline');
    now += 9 * 60_000;
    const setup = await browser.get(`${enroll.url.split('?')[0]}?method=totp`);
    const secret = totpSecretOf(setup);
    now += 2 * 60_000; // scanning the QR code, finding the phone…
    const form = findForm(setup.body, /\/enroll\/totp$/);
    const res = await browser.request(form.action, { form: { ...form.fields, code: code(secret) } });
    // What happens: 400 and the error page "Setting up an authenticator app is not expected at this step."
    // What should: the recovery codes page of a first factor (200), as before the change.
    expect({ status: res.status, notExpected: /not expected at this step/.test(res.body), codes: res.body.includes('Save your recovery codes') })
      .toEqual({ status: 200, notExpected: false, codes: true });
  });

  it('passkey registration started at 9.5 min and finished at 10.5 min is accepted', async () => {
    now = Date.now();
    await idp.users.add({ username: 'ola', email: 'ola@example.com', password: 'ola-password-1' });
    const browser = new Browser(idp.issuer);
    const req = await startAuthorization(await relyingParty(idp.issuer, 'mfa-app'));
    await signIn(browser, req.url, 'ola', 'ola-password-1');
    now += 9.5 * 60_000;
    const options = await browser.api<PublicKeyCredentialCreationOptionsJSON>('POST', '/api/mfa/passkeys/start', {});
    expect(options.status).toBe(200);
    const credential = new SoftAuthenticator(idp.issuer).create(options.body); // created on the authenticator
    now += 60_000;
    const finish = await browser.api<{ error?: string }>('POST', '/api/mfa/passkeys/finish', credential);
    expect({ status: finish.status, error: finish.body.error }).toEqual({ status: 200, error: undefined });
  });
});

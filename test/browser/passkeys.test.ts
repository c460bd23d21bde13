/**
 * A real browser: Debian's Chromium driven by playwright-core, with Chrome's virtual authenticator (CDP
 * WebAuthn domain). Enroll a passkey on /account, sign in to an app with password + passkey, then
 * usernameless with the passkey alone. Under CI=true a missing Chromium fails the suite.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import * as oidc from 'openid-client';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.CI === 'true') {
  throw new Error(`CI=true but Chromium is not at ${CHROMIUM}: install Debian's chromium package`);
}
const describeWithChromium = available ? describe : describe.skip;

describeWithChromium('passkeys in Chromium', () => {
  let database: TestDatabase;
  let idp: TestIdp;
  let rpServer: Server;
  let redirectUri: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let presence: (enabled: boolean) => Promise<void>;
  /** How far the IdP's own clock runs ahead of the real one (for a sign-in page left open). */
  let clockAhead = 0;

  beforeAll(async () => {
    // The app: a page that just receives the authorization response.
    rpServer = createServer((_req, res) => { res.setHeader('content-type', 'text/html'); res.end('<h1>app callback</h1>'); });
    await new Promise<void>((resolve) => rpServer.listen(0, '127.0.0.1', resolve));
    redirectUri = `http://localhost:${(rpServer.address() as AddressInfo).port}/callback`;
    database = await createTestDatabase('sqlite');
    idp = await startIdp(database, {
      host: 'localhost',
      clock: { now: () => Date.now() + clockAhead },
      clients: [
        { client_id: 'browser-app', client_name: 'Browser App', client_secret: TEST_SECRET, redirect_uris: [redirectUri], skip_consent: true },
        { client_id: 'browser-mfa-app', client_secret: TEST_SECRET, redirect_uris: [redirectUri], skip_consent: true, mfa_policy: 'required' },
      ],
    });
    await idp.users.add({ username: 'xena', email: 'xena@example.com', password: 'xena-password-1' });

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    context = await browser.newContext();
    page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
        isUserVerified: true, automaticPresenceSimulation: true,
      },
    });
    // With automatic presence on, the virtual authenticator also answers the login page's conditional
    // (autofill) request at once; tests that want the password form switch it off until they click.
    presence = async (enabled) => { await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled }); };
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await idp?.close();
    await database?.dispose();
    await new Promise((resolve) => rpServer?.close(resolve));
  });

  async function authorize(clientId = 'browser-app'): Promise<{ url: string; redeem(callback: string): Promise<oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers> }> {
    const rp = await oidc.discovery(new URL(idp.issuer), clientId, TEST_SECRET, undefined, { execute: [oidc.allowInsecureRequests] });
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: redirectUri, scope: 'openid profile', state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    return {
      url: url.toString(),
      redeem: (callback) => oidc.authorizationCodeGrant(rp, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state }),
    };
  }

  /** A new browser session at `clientId`'s authorization request, signed in with the password (the passkey held back). */
  async function passwordFirst(clientId: string, login: string, password: string) {
    await context.clearCookies();
    const auth = await authorize(clientId);
    await presence(false);
    await page.goto(auth.url);
    await page.getByLabel('Username or e-mail').fill(login);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    return auth;
  }

  it('enrolls a passkey on /account and shows the ten recovery codes', async () => {
    await page.goto(`${idp.issuer}/account`);
    await page.getByLabel('Username or e-mail').fill('xena');
    await page.getByLabel('Password').fill('xena-password-1');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL(`${idp.issuer}/account`);
    await expect(page.getByRole('heading', { name: 'Your account' }).isVisible()).resolves.toBe(true);

    await page.getByLabel('Name for a new passkey (optional)').fill('Virtual key');
    // Enter in the name field adds the passkey, as in a form (an audit finding: it did nothing).
    await page.getByLabel('Name for a new passkey (optional)').press('Enter');
    await page.locator('#recovery-codes').waitFor({ state: 'visible' });
    const codes = await page.locator('#recovery-code-list code').allTextContents();
    expect(codes).toHaveLength(10);
    for (const code of codes) expect(code).toMatch(/^[a-z0-9]{5}-[a-z0-9]{5}$/);
    // What came before the codes is gone: adding again now would only fail (an audit finding).
    await expect(page.getByRole('button', { name: 'Add a passkey' }).isVisible()).resolves.toBe(false);
    await page.getByRole('link', { name: 'I saved them, continue' }).click();
    await page.waitForURL(`${idp.issuer}/account`);
    await expect(page.getByText('Virtual key').first().isVisible()).resolves.toBe(true);
  });

  it('signs in to an app with password + passkey', async () => {
    const auth = await passwordFirst('browser-app', 'xena@example.com', 'xena-password-1');
    const usePasskey = page.getByRole('button', { name: 'Use your passkey' });
    await usePasskey.waitFor();
    await presence(true);
    await usePasskey.click();
    await page.waitForURL((url) => url.toString().startsWith(redirectUri));
    const tokens = await auth.redeem(page.url());
    expect(tokens.claims()).toMatchObject({ amr: ['pwd', 'hwk', 'user', 'mfa'], acr: 'phrh' });
  });

  it('sends an enrollment page left open past ten minutes back to the password, not to a dead end', async () => {
    await idp.users.add({ username: 'yara', email: 'yara@example.com', password: 'yara-password-1' });
    await passwordFirst('browser-mfa-app', 'yara', 'yara-password-1');
    const add = page.getByRole('button', { name: 'Add a passkey' });
    await add.waitFor();
    clockAhead = 11 * 60_000;
    try {
      await presence(true);
      await add.click();
      await page.getByLabel('Password').waitFor();
      await expect(page.getByLabel('Username or e-mail').isVisible()).resolves.toBe(true);
    } finally {
      clockAhead = 0;
    }
  });

  it('signs in usernameless with the passkey alone', async () => {
    await context.clearCookies();
    const auth = await authorize();
    await presence(false);
    await page.goto(auth.url);
    const button = page.getByRole('button', { name: 'Sign in with a passkey' });
    await button.waitFor();
    await presence(true);
    // Either the button's request or the pending autofill request completes: both are usernameless.
    await button.click().catch(() => undefined);
    await page.waitForURL((url) => url.toString().startsWith(redirectUri));
    const tokens = await auth.redeem(page.url());
    expect(tokens.claims()).toMatchObject({ amr: ['hwk', 'user', 'mfa'], acr: 'phrh' });
    expect(tokens.claims()!.sub).toBe((await idp.users.find('xena')).id);
  });
});

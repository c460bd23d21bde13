/** The provider's name as the operator gives it (`name`): pages, passkey prompts, authenticator apps. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Browser, visibleText } from '../helpers/browser.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, pkce } from '../helpers/flows.js';
import { recoveryCodesView } from '../../src/http/factor-views.js';
import { loadConfig } from '../../src/config/load.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

describe('the provider’s name', () => {
  let database: TestDatabase;
  let named: TestIdp;
  let unnamed: TestIdp;
  beforeAll(async () => {
    database = await createTestDatabase('sqlite');
    named = await startIdp(database, { extra: { name: 'Acme Sign-in' } });
    unnamed = await startIdp(database);
  });
  afterAll(async () => {
    await named?.close();
    await unnamed?.close();
    await database?.dispose();
  });

  it('is what the pages, passkey prompts and authenticator apps show', async () => {
    const page = await new Browser(named.issuer).get(authorizeUrl(named.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
    expect(page.body).toContain('<title>Sign in · Acme Sign-in</title>');
    expect(page.body).toContain('<p class="brand">Acme Sign-in</p>');
    expect(visibleText(page)).not.toContain('wrnexus-sso');
    const user = await named.users.add({ username: 'brand', email: 'brand@example.com', password: 'brand-password-1' });
    expect((await named.app.services.passkeys.registrationOptions('brand-reg', user)).rp.name).toBe('Acme Sign-in');
    const totp = await named.app.services.totp.startEnrollment(user.id, 'brand');
    expect(new URL(totp.uri).searchParams.get('issuer')).toBe('Acme Sign-in');
    const file = recoveryCodesView(named.config.name, 'brand', ['a']);
    expect(decodeURIComponent(file.download)).toContain('Acme Sign-in recovery codes for brand');
    expect(file.filename).toBe('Acme-Sign-in-recovery-codes.txt');
  });

  it('defaults to wrnexus-sso, with the issuer’s host for authenticator apps (so two providers differ there)', async () => {
    const page = await new Browser(unnamed.issuer).get(authorizeUrl(unnamed.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }));
    expect(page.body).toContain('<title>Sign in · wrnexus-sso</title>');
    const user = await unnamed.users.add({ username: 'plain', email: 'plain@example.com', password: 'plain-password-1' });
    const totp = await unnamed.app.services.totp.startEnrollment(user.id, 'plain');
    // The host name without the port: a colon would split the app's label (issuer:account) in the wrong place.
    expect(new URL(totp.uri).searchParams.get('issuer')).toBe(new URL(unnamed.issuer).hostname);
    expect(decodeURIComponent(new URL(totp.uri).pathname)).toBe(`/${new URL(unnamed.issuer).hostname}:plain`);
  });

  it('refuses a name that is empty, too long or more than one line', () => {
    for (const [name, problem] of [['  ', 'must not be empty'], ['x'.repeat(61), 'must be at most 60 characters'],
      ['Acme\nSSO', 'must be one line, without control or format characters'], ['Acme\u2028SSO', 'must be one line, without control or format characters'],
      ['Acme: SSO', 'must not contain a colon (authenticator apps split their labels at one)']]) {
      const file = path.join(database.target.data_dir, 'bad-name.yaml');
      writeFileSync(file, YAML.stringify({ name }));
      expect(() => loadConfig({ IDP_CONFIG: file })).toThrow(expect.objectContaining({ problems: [`name: ${problem}`] }));
    }
  });
});

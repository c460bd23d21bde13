/** PKCE for every client (RFC 9700 §2.1.1), unless a confidential client's entry says require_pkce: false. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as oidc from 'openid-client';
import { Browser } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { defaultClients, REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { callbackOf, relyingParty, signIn } from '../helpers/flows.js';

describe.each(databaseKinds())('PKCE on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database, {
      clients: [...defaultClients(REDIRECT_URI), {
        client_id: 'legacy-app', client_secret: TEST_SECRET, redirect_uris: [REDIRECT_URI], skip_consent: true, require_pkce: false,
      }],
    });
    await idp.users.add({ username: 'pkce', email: 'pkce@example.com', password: 'pkce-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  it('refuses a confidential client’s request without PKCE, and lets one whose entry opts out sign in', async () => {
    const strict = oidc.buildAuthorizationUrl(await relyingParty(idp.issuer, 'first-party'), { redirect_uri: REDIRECT_URI, scope: 'openid', state: 's1' });
    const refused = callbackOf(await new Browser(idp.issuer).get(strict.toString()));
    expect(Object.fromEntries(refused.searchParams)).toMatchObject({ error: 'invalid_request', state: 's1' });
    expect(refused.searchParams.get('error_description')).toMatch(/PKCE/i);

    const rp = await relyingParty(idp.issuer, 'legacy-app');
    const state = oidc.randomState();
    const legacy = oidc.buildAuthorizationUrl(rp, { redirect_uri: REDIRECT_URI, scope: 'openid', state });
    const done = await signIn(new Browser(idp.issuer), legacy.toString(), 'pkce', 'pkce-password-1');
    const tokens = await oidc.authorizationCodeGrant(rp, callbackOf(done), { expectedState: state, idTokenExpected: true });
    expect(tokens.claims()?.sub).toBe((await idp.users.find('pkce')).id);
  });
});

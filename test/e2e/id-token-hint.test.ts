/** id_token_hint (OIDC Core §3.1.2.1): the request names the user it expects. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Browser } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { callbackOf, relyingParty, signIn, startAuthorization } from '../helpers/flows.js';

describe.each(databaseKinds())('id_token_hint on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database);
    await idp.users.add({ username: 'hinta', email: 'hinta@example.com', password: 'hinta-password-1' });
    await idp.users.add({ username: 'hintb', email: 'hintb@example.com', password: 'hintb-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  // Found by a protocol audit: signing in as another user than the hint names gave the app a code for that
  // other user.
  it('answers login_required when someone other than the hinted user signs in, and a code for the hinted one', async () => {
    const rp = await relyingParty(idp.issuer, 'first-party');
    const a = new Browser(idp.issuer);
    const first = await startAuthorization(rp);
    const tokensA = await first.redeem(await signIn(a, first.url, 'hinta', 'hinta-password-1'));
    const b = new Browser(idp.issuer);
    const second = await startAuthorization(rp);
    await second.redeem(await signIn(b, second.url, 'hintb', 'hintb-password-1'));

    // B's browser, a request for A: without prompt=none, a sign-in page (the session is B's).
    const forA = await startAuthorization(rp, { id_token_hint: tokensA.id_token! });
    const page = await b.get(forA.url);
    expect(page.body).toContain('autocomplete="current-password"');
    const asB = await b.submit(page, '/login', { login: 'hintb', password: 'hintb-password-1' });
    const answer = callbackOf(asB);
    expect(Object.fromEntries(answer.searchParams)).toMatchObject({ error: 'login_required' });
    expect(answer.searchParams.has('code')).toBe(false);
    const [refused] = await idp.app.services.audit.list({ userId: (await idp.users.find('hintb')).id, limit: 1 });
    expect(refused).toMatchObject({ type: 'sign_in', outcome: 'refused' });
    // Refused as soon as the password named another user, before any second step.
    expect(JSON.parse(refused!.detail!)).toEqual({ factor: 'pwd', reason: 'id_token_hint_mismatch', expected_user_id: (await idp.users.find('hinta')).id });

    // With prompt=none the library says so at once.
    const silent = await b.get((await startAuthorization(rp, { id_token_hint: tokensA.id_token!, prompt: 'none' })).url);
    expect(callbackOf(silent).searchParams.get('error')).toBe('login_required');

    // The hinted user signing in gets the code (in a browser of their own: over B's session, oidc-provider
    // first ends it through its logout page's script).
    const again = await startAuthorization(rp, { id_token_hint: tokensA.id_token! });
    const asA = await signIn(new Browser(idp.issuer), again.url, 'hinta', 'hinta-password-1');
    const tokens = await again.redeem(asA);
    expect(tokens.claims()?.sub).toBe((await idp.users.find('hinta')).id);
  });
});

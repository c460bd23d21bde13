/**
 * An essential acr claim in a shape that cannot be met (`values` not an array of strings, `value` not a
 * string) is refused with invalid_request, as oidc-provider's own check did, instead of being ignored
 * (the app would get a password-only token). Found by a review.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Browser } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { relyingParty, startAuthorization } from '../helpers/flows.js';

describe.each(databaseKinds())('malformed essential acr on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;
  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database);
    await idp.users.add({ username: 'ned', email: 'ned@example.com', password: 'ned-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  it.each([
    ['values a string', { essential: true, values: 'phr' }],
    ['value an array', { essential: true, value: ['phr'] }],
  ])('essential acr with %s is refused with invalid_request, not answered with sfa', async (_name, acr) => {
    const req = await startAuthorization(await relyingParty(idp.issuer, 'first-party'), { claims: JSON.stringify({ id_token: { acr } }) });
    const browser = new Browser(idp.issuer);
    const first = await browser.request(req.url);
    const location = first.headers.get('location') ?? '';
    let outcome: string;
    if (location.startsWith('https://rp.example.test/')) {
      outcome = new URL(location).searchParams.get('error') ?? 'no error';
    } else {
      // Sent to the sign-in page: sign in with the password and see what the app gets.
      const page = await browser.submit(await browser.get(req.url), '/login', { login: 'ned', password: 'ned-password-1' });
      outcome = `token acr=${(await req.redeem(page)).claims()!.acr}`;
    }
    expect(outcome).toBe('invalid_request');
  });
});

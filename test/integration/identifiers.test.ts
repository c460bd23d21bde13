/**
 * Usernames and e-mail addresses have one Unicode form each (src/auth/users.ts): two users cannot have
 * identifiers that look the same, and a user signs in whichever way the keyboard composed their name.
 * Found by an audit: josé@ with é as one code point and as e + U+0301 were two users, each able to sign in
 * only with their own form, and invisible characters made further look-alikes.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Browser } from '../helpers/browser.js';
import { createTestDatabase, databaseKinds, migrateUpTo, type TestDatabase } from '../helpers/databases.js';
import { startIdp, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, callbackOf, pkce, signIn } from '../helpers/flows.js';
import { connect } from '../../src/db/connect.js';
import { migrate } from '../../src/db/migrate.js';

const NFC = 'jos\u00e9@example.com';
const NFD = 'jose\u0301@example.com';
const PASSWORD = 'identifiers-password-1';

describe.each(databaseKinds())('user identifiers on %s', (kind) => {
  let database: TestDatabase;
  let idp: TestIdp;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    idp = await startIdp(database);
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  const add = (username: string, email: string, name?: string) => idp.users.add({ username, email, name, password: PASSWORD });
  const codeOf = (promise: Promise<unknown>) => promise.then(() => 'added', (err: { code?: string }) => err.code);
  const signsIn = async (login: string, password: string) => {
    const browser = new Browser(idp.issuer);
    const page = await signIn(browser, authorizeUrl(idp.issuer, { client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256' }), login, password);
    return page.status === 303 && Boolean(callbackOf(page).searchParams.get('code'));
  };

  it('stores one form of an address, refuses its other forms as taken, and signs in with any of them', async () => {
    expect((await add('jose', NFD)).email).toBe(NFC);
    expect(await codeOf(add('jose2', NFC))).toBe('duplicate_email');
    expect(await codeOf(add('jose3', 'JOSE\u0301@EXAMPLE.COM'))).toBe('duplicate_email');
    // The domain folds compatibility forms (fullwidth letters), as IDNA's mapping does.
    expect(await codeOf(add('jose4', 'jos\u00e9@\uff45xample.com'))).toBe('duplicate_email');
    expect(await signsIn(NFC, PASSWORD)).toBe(true);
    expect(await signsIn(NFD, PASSWORD)).toBe(true);
  });

  it('refuses addresses with invisible characters, and a local part over 64 octets', async () => {
    for (const email of ['alice\u200b@example.com', 'ali\u00adce@example.com', 'alice\u202e@example.com', 'alice@exa\u2060mple.com', 'alice\u0000@example.com']) {
      expect([email, await codeOf(add('alice', email))]).toEqual([email, 'invalid_email']);
    }
    expect(await codeOf(add('long', `${'a'.repeat(65)}@example.com`))).toBe('invalid_email');
    expect(await codeOf(add('long', `${'\u00e9'.repeat(33)}@example.com`))).toBe('invalid_email');
    expect(await codeOf(add('long', `${'a'.repeat(64)}@example.com`))).toBe('added');
  });

  it('folds usernames typed in compatibility forms (fullwidth, the Kelvin sign) into the one they look like', async () => {
    expect((await add('\uff42\uff4f\uff42', 'bob@example.com')).username).toBe('bob');
    expect(await codeOf(add('bob', 'bob2@example.com'))).toBe('duplicate_username');
    expect((await add('\u212aate', 'kate@example.com')).username).toBe('kate');
    expect(await signsIn('\uff42\uff4f\uff42', PASSWORD)).toBe(true);
    expect(await signsIn('\u212aATE', PASSWORD)).toBe(true);
  });

  // Found by the same audit: on PostgreSQL a name over the column's 200 characters was reported as "a user
  // with that name or e-mail already exists" (every failed insert was).
  it('refuses a display name over 200 characters or with control characters as such, not as a duplicate', async () => {
    expect(await codeOf(add('named', 'named@example.com', 'N'.repeat(201)))).toBe('invalid_name');
    expect(await codeOf(add('named', 'named@example.com', 'Line one\nline two'))).toBe('invalid_name');
    expect(await codeOf(add('named', 'named@example.com', 'Evil \u202egnp.exe'))).toBe('invalid_name');
    expect((await add('named', 'named@example.com', `${'\u00c9'.repeat(199)}\u{1f600}`)).name).toHaveLength(201);
  });

  it('brings stored addresses to the one form on upgrade, leaving one that would then equal another’s', async () => {
    const fresh = await createTestDatabase(kind);
    const db = connect(fresh.target);
    try {
      await migrateUpTo(db, '20261202010000_normalised_emails');
      const user = (id: string, email: string) => ({ id, username: id, email, password_hash: null, created_at: 1, updated_at: 1 });
      await db('users').insert([user('u1', NFD), user('u2', 'ren\u00e9e@example.com'), user('u3', 'rene\u0301e@example.com'), user('u4', 'plain@example.com')]);
      expect(await migrate(db)).toContain('20261202010000_normalised_emails');
      const stored = await db('users').select('id', 'email').orderBy('id');
      expect(stored).toEqual([
        { id: 'u1', email: NFC },
        { id: 'u2', email: 'ren\u00e9e@example.com' },
        { id: 'u3', email: 'rene\u0301e@example.com' },
        { id: 'u4', email: 'plain@example.com' },
      ]);
    } finally {
      await db.destroy();
      await fresh.dispose();
    }
  });
});

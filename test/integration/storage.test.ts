/** Storage shared by instances: the oidc-provider adapter, the keystore, and a sign-in that hops instances. */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Database from 'better-sqlite3';
import { connect } from '../../src/db/connect.js';
import { sqliteConnection } from '../../src/db/sqlite-direct.js';
import { SqliteConnection } from '../../src/db/sqlite-thread.js';
import { statements } from '../../src/db/fast.js';
import { migrate, pendingMigrations } from '../../src/db/migrate.js';
import { migrations } from '../../migrations/index.js';
import { migratedDb, migrateUpTo, createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { createAdapterFactory, upsertDurability } from '../../src/oidc/adapter.js';
import { createFindAccount } from '../../src/oidc/account.js';
import { createReadAhead } from '../../src/oidc/read-ahead.js';
import { loadOrCreateKeys } from '../../src/oidc/keys.js';
import { ACCOUNTLESS, asyncUpsertSql, createOidcPayloadQueries, findManySql, upsertSql, type PayloadRow } from '../../src/queries/oidc-payloads.js';
import { epochSeconds, systemClock, type Clock } from '../../src/clock.js';
import { cleanUp } from '../../src/services.js';
import { createSecurityEventQueries } from '../../src/queries/security-events.js';
import { createEnrollmentQueries } from '../../src/queries/enrollment.js';
import { createPasskeyQueries, type PasskeyRow } from '../../src/queries/passkeys.js';
import { createChallengeQueries } from '../../src/queries/challenges.js';
import { createRecoveryCodeQueries } from '../../src/queries/recovery-codes.js';
import { createTotpQueries } from '../../src/queries/totp.js';
import { createUserQueries, type UserRow } from '../../src/queries/users.js';
import { Browser } from '../helpers/browser.js';
import { REDIRECT_URI, startIdp, TEST_SECRET, type TestIdp } from '../helpers/idp.js';
import { authorizeUrl, callbackOf, pkce, signIn } from '../helpers/flows.js';

const movableClock = (start = Date.UTC(2026, 10, 25)) => {
  let now = start;
  const clock: Clock = { now: () => now };
  return { clock, advance: (seconds: number) => { now += seconds * 1000; } };
};

describe.each(databaseKinds())('storage on %s', (kind) => {
  describe('oidc-provider adapter', () => {
    let env: Awaited<ReturnType<typeof migratedDb>>;
    beforeAll(async () => { env = await migratedDb(kind); });
    afterAll(async () => { await env?.close(); });

    it('stores, finds, consumes, expires and revokes payloads', async () => {
      const { clock, advance } = movableClock();
      const Adapter = createAdapterFactory(env.db, clock);
      const codes = new Adapter('AuthorizationCode');
      const tokens = new Adapter('AccessToken');
      await codes.upsert('code-1', { grantId: 'g1', accountId: 'a1', uid: 'u1' }, 60);
      await tokens.upsert('at-1', { grantId: 'g1', accountId: 'a1' }, 3600);
      await tokens.upsert('at-2', { grantId: 'g2', accountId: 'a1' }, 3600);

      expect(await codes.find('code-1')).toEqual({ grantId: 'g1', accountId: 'a1', uid: 'u1' });
      expect(await codes.findByUid('u1')).toMatchObject({ accountId: 'a1' });
      expect(await new Adapter('AccessToken').find('code-1')).toBeUndefined();

      await codes.consume('code-1');
      const consumed = await codes.find('code-1');
      expect(consumed?.consumed).toEqual(expect.any(Number));

      await codes.upsert('code-1', { grantId: 'g1', accountId: 'a1' }, 60);
      expect((await codes.find('code-1'))?.consumed).toBeUndefined();

      await tokens.revokeByGrantId('g1');
      expect(await tokens.find('at-1')).toBeUndefined();
      expect(await codes.find('code-1')).toBeUndefined();
      expect(await tokens.find('at-2')).toBeDefined();

      advance(3601);
      expect(await tokens.find('at-2')).toBeUndefined();
      expect(await createOidcPayloadQueries(env.db).deleteExpired(epochSeconds(clock))).toBe(1);

      await tokens.upsert('at-3', { accountId: 'a1' }, 60);
      await tokens.destroy('at-3');
      expect(await tokens.find('at-3')).toBeUndefined();
    });

    it('lets one consume of a single-use code through; a second is refused as a reuse and revokes its grant', async () => {
      const { clock } = movableClock();
      const Adapter = createAdapterFactory(env.db, clock);
      const [grants, codes, tokens, interactions] = ['Grant', 'AuthorizationCode', 'AccessToken', 'Interaction'].map((k) => new Adapter(k));
      await grants!.upsert('grant-reuse', { accountId: 'a1', clientId: 'c1' }, 3600);
      await codes!.upsert('code-reuse', { grantId: 'grant-reuse', accountId: 'a1' }, 60);
      await tokens!.upsert('at-reuse', { grantId: 'grant-reuse', accountId: 'a1' }, 3600);
      const both = await Promise.allSettled([codes!.consume('code-reuse'), codes!.consume('code-reuse')]);
      expect(both.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      const refusal = both.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(refusal.reason).toMatchObject({ error: 'invalid_grant', error_detail: 'authorization code already consumed' });
      expect(await grants!.find('grant-reuse')).toBeUndefined();
      expect(await tokens!.find('at-reuse')).toBeUndefined();
      // Gone since it was read: "not found", nothing revoked.
      await grants!.upsert('grant-gone', { accountId: 'a1', clientId: 'c1' }, 3600);
      await expect(codes!.consume('code-gone')).rejects.toMatchObject({ error: 'invalid_grant', error_detail: 'authorization code not found' });
      expect(await grants!.find('grant-gone')).toBeDefined();
      // A pushed authorization request used twice: oidc-provider's request_uri error, no grant to revoke.
      const pushed = new Adapter('PushedAuthorizationRequest');
      await pushed.upsert('par-reuse', { grantId: 'grant-gone' } as never, 60);
      await pushed.consume('par-reuse');
      await expect(pushed.consume('par-reuse')).rejects.toMatchObject({ error: 'invalid_request_uri' });
      expect(await grants!.find('grant-gone')).toBeDefined();
      // Models that are not single-use consume as before, silently.
      await interactions!.upsert('int-reuse', { uid: 'int-reuse' }, 60);
      await interactions!.consume('int-reuse');
      await expect(interactions!.consume('int-reuse')).resolves.toBeUndefined();
    });

    // oidc-provider reads a token's grant right after the token; within one request the adapter reads both
    // in one statement and keeps the grant for that request's next read (src/oidc/adapter.ts).
    it('reads a token’s grant with it, for that request only, once, and never past a write of the grant', async () => {
      const { clock, advance } = movableClock();
      let request: object | undefined;
      const Adapter = createAdapterFactory(env.db, clock, createReadAhead(() => request));
      const grants = new Adapter('Grant');
      const tokens = new Adapter('RefreshToken');
      const removeGrantRow = () => env.db('oidc_payloads').where({ kind: 'Grant', id: 'grant-ra' }).delete();
      await grants.upsert('grant-ra', { accountId: 'a1', clientId: 'c1' }, 3600);
      await tokens.upsert('rt-ra', { grantId: 'grant-ra', accountId: 'a1' }, 7200);

      request = {};
      expect(await tokens.find('rt-ra')).toEqual({ grantId: 'grant-ra', accountId: 'a1' });
      await removeGrantRow();
      // Read with the token, before the row went away; then taken: the next read asks the database.
      expect(await grants.find('grant-ra')).toEqual({ accountId: 'a1', clientId: 'c1' });
      expect(await grants.find('grant-ra')).toBeUndefined();

      // Another request, and reads outside any request, never see what this one read.
      await grants.upsert('grant-ra', { accountId: 'a1', clientId: 'c1' }, 3600);
      expect(await tokens.find('rt-ra')).toBeDefined();
      await removeGrantRow();
      const first = request;
      request = {};
      expect(await grants.find('grant-ra')).toBeUndefined();
      request = undefined;
      expect(await grants.find('grant-ra')).toBeUndefined();
      request = first;
      expect(await grants.find('grant-ra')).toEqual({ accountId: 'a1', clientId: 'c1' });

      // A write or removal of the grant by the request itself drops what it read ahead.
      request = {};
      await grants.upsert('grant-ra', { accountId: 'a1', clientId: 'c1' }, 3600);
      expect(await tokens.find('rt-ra')).toBeDefined();
      await grants.upsert('grant-ra', { accountId: 'a1', clientId: 'c2' }, 3600);
      expect(await grants.find('grant-ra')).toEqual({ accountId: 'a1', clientId: 'c2' });
      expect(await tokens.find('rt-ra')).toBeDefined();
      await grants.destroy('grant-ra');
      expect(await grants.find('grant-ra')).toBeUndefined();
      await grants.upsert('grant-ra', { accountId: 'a1', clientId: 'c1' }, 3600);
      expect(await tokens.find('rt-ra')).toBeDefined();
      await tokens.revokeByGrantId('grant-ra');
      await removeGrantRow();
      expect(await grants.find('grant-ra')).toBeUndefined();

      // An expired grant is not read ahead, though its token lives on.
      await grants.upsert('grant-ra', { accountId: 'a1', clientId: 'c1' }, 60);
      await tokens.upsert('rt-ra', { grantId: 'grant-ra', accountId: 'a1' }, 7200);
      advance(61);
      request = {};
      expect(await tokens.find('rt-ra')).toBeDefined();
      await env.db('oidc_payloads').where({ kind: 'Grant', id: 'grant-ra' })
        .update({ expires_at: null, payload: JSON.stringify({ accountId: 'a1', clientId: 'c3' }) });
      expect(await grants.find('grant-ra')).toEqual({ accountId: 'a1', clientId: 'c3' });
      await removeGrantRow();
    });

    it('reads a token’s user with it, for findAccount in that request only, once', async () => {
      const { clock } = movableClock();
      let request: object | undefined;
      const readAhead = createReadAhead(() => request);
      const tokens = new (createAdapterFactory(env.db, clock, readAhead))('AccessToken');
      const users = createUserQueries(env.db);
      const findAccount = createFindAccount(users, readAhead);
      const claimsOf = async (sub: string) => (await (await findAccount({} as never, sub))?.claims('id_token', 'openid', {}, []));
      await users.insert({
        id: 'ra-user', username: 'ra-user', email: 'ra@example.com', name: 'Before', email_verified: true,
        password_hash: null, disabled: false, created_at: 1, updated_at: 1,
      });
      await tokens.upsert('at-user-ra', { accountId: 'ra-user' }, 3600);
      await tokens.upsert('at-nobody-ra', { accountId: 'no-such-user' }, 3600);

      request = {};
      expect(await tokens.find('at-user-ra')).toEqual({ accountId: 'ra-user' });
      await users.update('ra-user', { name: 'After' });
      // Read with the token, before the change; taken once, then from the database.
      expect(await claimsOf('ra-user')).toMatchObject({ sub: 'ra-user', name: 'Before' });
      expect(await claimsOf('ra-user')).toMatchObject({ name: 'After' });
      // The first request keeps the user once more (enabled); another request, and reads outside any
      // request, never see that row.
      expect(await tokens.find('at-user-ra')).toBeDefined();
      await users.update('ra-user', { disabled: true });
      const first = request;
      request = {};
      expect(await findAccount({} as never, 'ra-user')).toBeUndefined();
      request = undefined;
      expect(await findAccount({} as never, 'ra-user')).toBeUndefined();
      request = first;
      expect(await claimsOf('ra-user')).toMatchObject({ name: 'After' });

      // What is kept is the user as findById reads it (booleans and numbers alike on both stores), less
      // the password hash; a disabled user kept with the token still has no account.
      request = {};
      expect(await tokens.find('at-user-ra')).toBeDefined();
      const { password_hash: _hash, ...profile } = (await users.findById('ra-user'))!;
      expect(readAhead.take('user:ra-user')).toEqual(profile);
      expect(profile).toMatchObject({ disabled: true, email_verified: true, created_at: 1 });
      expect(await tokens.find('at-user-ra')).toBeDefined();
      await users.update('ra-user', { disabled: false });
      expect(await findAccount({} as never, 'ra-user')).toBeUndefined();

      // A token whose user does not exist keeps nothing.
      request = {};
      expect(await tokens.find('at-nobody-ra')).toEqual({ accountId: 'no-such-user' });
      expect(await findAccount({} as never, 'no-such-user')).toBeUndefined();
      await users.delete('ra-user');
    });

    // Concurrent token requests: on PostgreSQL their lookups of one turn go as one statement.
    it('answers each of many token lookups sent together with its own row, grant and user', async () => {
      const queries = createOidcPayloadQueries(env.db);
      const users = createUserQueries(env.db);
      await users.insert({
        id: 'many-user', username: 'many-user', email: 'many@example.com', name: 'Many', email_verified: false,
        password_hash: 'not-returned', disabled: false, created_at: 5, updated_at: 6,
      });
      const put = (kind: string, id: string, extra: Partial<PayloadRow>) => queries.upsert({
        kind, id, payload: JSON.stringify({ id }), grant_id: null, account_id: null, user_code: null, uid: null,
        expires_at: 2000, consumed_at: null, ...extra,
      });
      await Promise.all([
        put('Grant', 'many-grant', { account_id: 'many-user' }),
        put('Grant', 'many-old-grant', { expires_at: 900 }),
        put('RefreshToken', 'many-rt', { grant_id: 'many-grant', account_id: 'many-user' }),
        put('AccessToken', 'many-at', { grant_id: 'many-grant', account_id: 'many-user', consumed_at: 950 }),
        put('AccessToken', 'many-bare', {}),
        put('AccessToken', 'many-expired', { expires_at: 999 }),
        put('RefreshToken', 'many-old', { grant_id: 'many-old-grant', account_id: 'nobody' }),
      ]);
      const lookups: Array<[string, string]> = [
        ['RefreshToken', 'many-rt'], ['AccessToken', 'many-at'], ['AccessToken', 'many-bare'], ['AccessToken', 'many-expired'],
        ['AccessToken', 'many-missing'], ['RefreshToken', 'many-old'], ['RefreshToken', 'many-rt'], ['AccessToken', 'many-rt'],
      ];
      const found = await Promise.all(lookups.map(([k, id]) => queries.findLiveWithGrantAndUser(k, id, 1000)));
      const user = { id: 'many-user', username: 'many-user', email: 'many@example.com', name: 'Many', email_verified: false, disabled: false, created_at: 5, updated_at: 6 };
      const grant = { id: 'many-grant', row: { payload: '{"id":"many-grant"}', consumed_at: null } };
      expect(found).toEqual([
        { row: { payload: '{"id":"many-rt"}', consumed_at: null }, grant, user },
        { row: { payload: '{"id":"many-at"}', consumed_at: 950 }, grant, user },
        { row: { payload: '{"id":"many-bare"}', consumed_at: null }, grant: undefined, user: undefined },
        undefined,
        undefined,
        // Its grant expired, its user does not exist: the token alone.
        { row: { payload: '{"id":"many-old"}', consumed_at: null }, grant: undefined, user: undefined },
        { row: { payload: '{"id":"many-rt"}', consumed_at: null }, grant, user },
        undefined,
      ]);

      // A lookup the database refuses (PostgreSQL takes no NUL in text) fails its own caller only.
      const mixed = await Promise.allSettled([
        queries.findLiveWithGrantAndUser('RefreshToken', 'many-rt', 1000),
        queries.findLiveWithGrantAndUser('RefreshToken', 'bad\u0000id', 1000),
        queries.findLiveWithGrantAndUser('AccessToken', 'many-bare', 1000),
      ]);
      expect(mixed[0]).toEqual({ status: 'fulfilled', value: { row: { payload: '{"id":"many-rt"}', consumed_at: null }, grant, user } });
      expect(mixed[1]).toEqual(kind === 'postgres' ? expect.objectContaining({ status: 'rejected' }) : { status: 'fulfilled', value: undefined });
      expect(mixed[2]).toMatchObject({ status: 'fulfilled', value: { row: { payload: '{"id":"many-bare"}' } } });
      await users.delete('many-user');
    });

    // The first start of several instances on one new database (docker-compose.yml): all migrate at once.
    it('migrates a new database from several instances starting at once', async () => {
      for (let round = 0; round < 3; round += 1) {
        const fresh = await createTestDatabase(kind);
        const instances = Array.from({ length: 4 }, () => connect(fresh.target));
        try {
          const applied = await Promise.all(instances.map((db) => migrate(db)));
          expect(applied.flat().sort()).toEqual(Object.keys(migrations).sort());
          expect(await pendingMigrations(instances[0]!)).toEqual([]);
        } finally {
          await Promise.all(instances.map((db) => db.destroy()));
          await fresh.dispose();
        }
      }
    });

    // Another process migrating for a while (an older version holds knex's lock row in its transaction),
    // on a database whose settings cut short waits and idle transactions.
    // PostgreSQL's settings only.
    if (kind === 'postgres') it('waits for another process migrating, whatever the database sets as lock_timeout and idle_in_transaction_session_timeout', async () => {
      const fresh = await createTestDatabase(kind);
      const first = connect(fresh.target);
      const name = new URL(fresh.target.database_url!).pathname.slice(1);
      try {
        await migrate(first);
        await first.raw(`alter database ${name} set lock_timeout = '500ms'`);
        await first.raw(`alter database ${name} set idle_in_transaction_session_timeout = '500ms'`);
        const other = connect(fresh.target);
        const late = connect(fresh.target);
        try {
          const busy = other.transaction(async (trx) => {
            await trx.raw(`set local idle_in_transaction_session_timeout = 0`);
            await trx('knex_migrations_lock').update({ is_locked: 1 });
            await trx.raw('select pg_sleep(1.5)');
            await trx('knex_migrations_lock').update({ is_locked: 0 });
          });
          await new Promise((resolve) => setTimeout(resolve, 100));
          await expect(migrate(late)).resolves.toEqual([]);
          await busy;
        } finally {
          await other.destroy();
          await late.destroy();
        }
      } finally {
        await first.destroy();
        await fresh.dispose();
      }
    });

    // Signing out everywhere finds an account's rows by account_id, and those written before the column
    // (or, for interactions, before 2026-12-02) by their payload. A migration that filled the column in
    // held older instances' writes back for minutes on a large table, and PostgreSQL's json cast failed on
    // a client's NUL in a payload (review findings).
    it('migrates past payloads PostgreSQL cannot cast, and signs out rows written before their account had a column', async () => {
      const fresh = await createTestDatabase(kind);
      const db = connect(fresh.target);
      try {
        await migrateUpTo(db, '20261202000000_payload_account_index');
        const row = (kind: string, id: string, payload: Record<string, unknown>) => ({
          kind, id, payload: JSON.stringify(payload), grant_id: null, user_code: null, uid: null, expires_at: null, consumed_at: null,
        });
        await db('oidc_payloads').insert([
          row('Session', 'old-session', { accountId: 'someone', exp: 1, state: { note: '\u0000' } }),
          row('Session', 'anonymous-session', { exp: 1, state: { state: '\u0000' } }),
          row('RefreshToken', 'old-token', { accountId: 'someone', grantId: 'g' }),
          row('Interaction', 'old-interaction', { result: { login: { accountId: 'someone' } } }),
          row('RefreshToken', 'other-token', { accountId: 'someone-else', grantId: 'g2' }),
          row('ClientCredentials', 'service-token', { clientId: 'service', note: '"accountId":"someone"' }),
        ]);
        expect(await migrate(db)).toEqual(Object.keys(migrations).sort().filter((name) => name >= '20261202000000_payload_account_index'));
        expect(await createOidcPayloadQueries(db).deleteForAccount('someone')).toBe(3);
        expect((await db('oidc_payloads').select('id').orderBy('id')).map((r: { id: string }) => r.id)).toEqual(['anonymous-session', 'other-token', 'service-token']);
      } finally {
        await db.destroy();
        await fresh.dispose();
      }
    });

    // Signing out looked for rows without an account by reading every session and token of every account
    // (≈ 100 ms a sign-out at 300 000 rows). The search must go through the partial index that holds only
    // those rows, which SQLite uses only when the statement repeats its predicate word for word.
    it('finds the rows of a sign-out through indexes, not by reading every account’s tokens', async () => {
      const { db, close } = await migratedDb(kind);
      try {
        let statement: { sql: string; bindings: unknown[] } | undefined;
        db.on('query', (q: { sql: string; bindings: unknown[] }) => { if (/^delete/i.test(q.sql)) statement = q; });
        await createOidcPayloadQueries(db).deleteForAccount('someone', { sessionUid: 'uid-1', grantIds: ['g1'], interactionIds: ['i1'] });
        expect(statement).toBeDefined();
        const sql = statement!.sql.replace(/\$\d+/g, '?');
        const plan = kind === 'sqlite'
          ? ((await db.raw(`explain query plan ${sql}`, statement!.bindings as never)) as Array<{ detail: string }>).map((r) => r.detail).join('\n')
          // With sequential scans priced out, as they are on a large table: the plan PostgreSQL then picks.
          : await db.transaction(async (trx) => {
            await trx.raw('set local enable_seqscan = off');
            const { rows } = await trx.raw(`explain ${sql}`, statement!.bindings as never) as { rows: Array<{ 'QUERY PLAN': string }> };
            return rows.map((r) => r['QUERY PLAN']).join('\n');
          });
        expect(plan).toContain('oidc_payloads_accountless_partial');
        expect(plan).toContain('oidc_payloads_account_id_partial');
        // And the statement's predicate is the index's as the migration made it (SQLite keeps its text).
        if (kind === 'sqlite') {
          const [index] = await db('sqlite_master').where({ type: 'index', name: 'oidc_payloads_accountless_partial' }).select('sql') as Array<{ sql: string }>;
          expect(index!.sql.endsWith(`where ${ACCOUNTLESS}`)).toBe(true);
        }
      } finally {
        await close();
      }
    });

    it('drops the throttle counts of unknown logins kept in clear by earlier versions, and keeps the rest', async () => {
      const fresh = await createTestDatabase(kind);
      const db = connect(fresh.target);
      try {
        await migrateUpTo(db, '20261203000000_accountless_payload_index');
        await createUserQueries(db).insert({
          id: 'u-kept', username: 'kept_user', email: 'kept@example.com', name: null, email_verified: false,
          password_hash: null, disabled: false, created_at: 1, updated_at: 1,
        });
        const keys = ['acct:login:kept_user:pwd', 'acct:login:kept@example.com:pwd', 'acct:login:hunter2-typed-as-login:pwd',
          'acct:login:kept_user2:pwd', 'acct:u-kept:otp', 'ip:198.51.100.1:20000'];
        await db('throttle').insert(keys.map((key) => ({ key, failures: 3, blocked_until: null, updated_at: 1 })));
        await migrate(db);
        expect((await db('throttle').select('key').orderBy('key')).map((r: { key: string }) => r.key))
          .toEqual(['acct:login:kept@example.com:pwd', 'acct:login:kept_user:pwd', 'acct:u-kept:otp', 'ip:198.51.100.1:20000']);
      } finally {
        await db.destroy();
        await fresh.dispose();
      }
    });

    // During a rolling upgrade the database may already hold a newer version's migrations.
    it('lets this version start and report ready on a database migrated by a newer one', async () => {
      await env.db('knex_migrations').insert({ name: '29991231000000_from_a_newer_version', batch: 99, migration_time: new Date() });
      try {
        expect(await pendingMigrations(env.db)).toEqual([]);
        expect(await migrate(env.db)).toEqual([]);
      } finally {
        await env.db('knex_migrations').where({ name: '29991231000000_from_a_newer_version' }).delete();
      }
    });

    // On SQLite, writes that arrive together are committed together (src/db/sqlite-direct.ts); what a
    // caller sees must not change: each write is stored once its promise resolves, and fails alone.
    it('stores every one of many parallel writes, each visible once its promise resolves', async () => {
      const { clock } = movableClock();
      const Adapter = createAdapterFactory(env.db, clock);
      const tokens = new Adapter('ClientCredentials');
      await Promise.all(Array.from({ length: 60 }, async (_, i) => {
        await tokens.upsert(`cc-${i}`, { clientId: 'c', n: i } as never, 600);
        expect(await tokens.find(`cc-${i}`)).toEqual({ clientId: 'c', n: i });
      }));
      await Promise.all(Array.from({ length: 30 }, (_, i) => tokens.destroy(`cc-${i}`)));
      const left = await Promise.all(Array.from({ length: 60 }, (_, i) => tokens.find(`cc-${i}`)));
      expect(left.filter(Boolean)).toHaveLength(30);
    });

    it('keeps writes made through a transaction inside it', async () => {
      const row: PayloadRow = {
        kind: 'AccessToken', id: 'through-trx', payload: '{}', grant_id: null, account_id: null, user_code: null, uid: null, expires_at: null, consumed_at: null,
      };
      await expect(env.db.transaction(async (trx) => {
        const inside = createOidcPayloadQueries(trx);
        await inside.upsert(row);
        expect(await inside.findLive('AccessToken', 'id', 'through-trx', 0)).toEqual({ payload: '{}', consumed_at: null });
        // Through knex.raw a statement that returns no rows answers in its driver's own shape.
        expect(await statements(trx).get('delete from oidc_payloads where id = ?', ['no-such-row'])).toBeUndefined();
        throw new Error('roll back');
      })).rejects.toThrow('roll back');
      expect(await createOidcPayloadQueries(env.db).findLive('AccessToken', 'id', 'through-trx', 0)).toBeUndefined();
    });

    it('keeps the later of two writes to one row sent together', async () => {
      const queries = createOidcPayloadQueries(env.db);
      const row = (payload: string): PayloadRow => ({
        kind: 'Session', id: 'same-row', payload, grant_id: null, account_id: null, user_code: null, uid: null, expires_at: null, consumed_at: null,
      });
      await Promise.all([queries.upsert(row('{"v":1}')), queries.upsert(row('{"v":2}')), queries.upsert(row('{"v":3}'))]);
      expect(await queries.findLive('Session', 'id', 'same-row', 0)).toEqual({ payload: '{"v":3}', consumed_at: null });
    });

    it('fails only the bad write among writes sent together', async () => {
      const queries = createOidcPayloadQueries(env.db);
      const row = (id: string, payload: string | null): PayloadRow => ({
        kind: 'AccessToken', id, payload: payload as string, grant_id: null, account_id: null, user_code: null, uid: null, expires_at: null, consumed_at: null,
      });
      const results = await Promise.allSettled([
        queries.upsert(row('good-1', '{"a":1}')),
        queries.upsert(row('bad', null)),
        queries.upsert(row('good-2', '{"a":2}')),
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect(await queries.findLive('AccessToken', 'id', 'good-1', 0)).toEqual({ payload: '{"a":1}', consumed_at: null });
      expect(await queries.findLive('AccessToken', 'id', 'good-2', 0)).toEqual({ payload: '{"a":2}', consumed_at: null });
      expect(await queries.findLive('AccessToken', 'id', 'bad', 0)).toBeUndefined();
    });

    it('keeps a token written during another transaction when that transaction rolls back', async () => {
      const { clock } = movableClock();
      const tokens = new (createAdapterFactory(env.db, clock))('AccessToken');
      let written: Promise<void> | undefined;
      await expect(env.db.transaction(async (trx) => {
        await trx('oidc_payloads').insert({ kind: 'AccessToken', id: 'in-trx', payload: '{}' });
        written = tokens.upsert('beside-trx', { accountId: 'a1' }, 600);
        await new Promise((resolve) => setTimeout(resolve, 20));
        throw new Error('roll back');
      })).rejects.toThrow('roll back');
      await written;
      expect(await tokens.find('beside-trx')).toEqual({ accountId: 'a1' });
      expect(await tokens.find('in-trx')).toBeUndefined();
    });

    it('gives instances that start at the same time the same keys', async () => {
      const { clock } = movableClock();
      const [a, b] = await Promise.all([loadOrCreateKeys(env.db, clock), loadOrCreateKeys(env.db, clock)]);
      expect(a.jwks.keys.map((k) => k.kid)).toEqual(b.jwks.keys.map((k) => k.kid));
      expect(a.cookieKeys).toEqual(b.cookieKeys);
      expect(a.jwks.keys.map((k) => k.alg).sort()).toEqual(['ES256', 'EdDSA', 'RS256']);
      expect(a.jwks.keys.every((k) => typeof k.d === 'string')).toBe(true);
      const again = await loadOrCreateKeys(env.db, clock);
      expect(again.jwks.keys[0]!.kid).toBe(a.jwks.keys[0]!.kid);
    });
  });

  describe('enrollment counts', () => {
    let env: Awaited<ReturnType<typeof migratedDb>>;
    beforeAll(async () => { env = await migratedDb(kind); });
    afterAll(async () => { await env?.close(); });

    it('counts passkeys (device-bound apart), a confirmed authenticator app and unused recovery codes of one user only', async () => {
      const users = createUserQueries(env.db);
      const user = (id: string): UserRow => ({
        id, username: id, email: `${id}@example.com`, name: null, email_verified: false, password_hash: null, disabled: false, created_at: 1, updated_at: 1,
      });
      await users.insert(user('u-counted'));
      await users.insert(user('u-other'));
      const counts = createEnrollmentQueries(env.db);
      expect(await counts.counts('u-counted')).toEqual({ passkeys: 0, deviceBoundPasskeys: 0, totp: 0, unusedRecoveryCodes: 0 });

      const passkeys = createPasskeyQueries(env.db);
      const passkey = (id: string, userId: string, backupEligible: boolean): PasskeyRow => ({
        id, user_id: userId, public_key: 'pk', counter: 0, transports: [], aaguid: '00000000-0000-0000-0000-000000000000',
        backup_eligible: backupEligible, backed_up: backupEligible, user_verified: true, name: id, created_at: 1, last_used_at: null,
      });
      await passkeys.insert(passkey('pk-synced', 'u-counted', true));
      await passkeys.insert(passkey('pk-device', 'u-counted', false));
      await passkeys.insert(passkey('pk-other', 'u-other', false));
      const totp = createTotpQueries(env.db);
      await totp.upsertPending('u-counted', 'sealed', 1);
      await totp.upsertPending('u-other', 'sealed', 1);
      expect(await totp.claimStep('u-other', 5, { at: 2, secretEnc: 'sealed' })).toBe(true);
      const codes = createRecoveryCodeQueries(env.db);
      await codes.replaceAll('u-counted', ['h1', 'h2', 'h3'], 1);
      await codes.replaceAll('u-other', ['h4'], 1);
      expect(await codes.use('u-counted', 'h2', 2)).toBe(true);
      // The authenticator app is still pending (never confirmed with a code): it does not count.
      expect(await counts.counts('u-counted')).toEqual({ passkeys: 2, deviceBoundPasskeys: 1, totp: 0, unusedRecoveryCodes: 2 });
      expect(await counts.counts('u-other')).toEqual({ passkeys: 1, deviceBoundPasskeys: 1, totp: 1, unusedRecoveryCodes: 1 });
    });
  });

  // Found by an audit: each of these judged on what it read before the other's change (on PostgreSQL's
  // READ COMMITTED, and across awaits on SQLite), so two at once both passed.
  describe('changes to one user’s factors made at once', () => {
    let env: Awaited<ReturnType<typeof migratedDb>>;
    beforeAll(async () => { env = await migratedDb(kind); });
    afterAll(async () => { await env?.close(); });
    const user = async (id: string) => {
      await createUserQueries(env.db).insert({
        id, username: id, email: `${id}@example.com`, name: null, email_verified: false, password_hash: 'x', disabled: false, created_at: 1, updated_at: 1,
      });
      return id;
    };

    it('removes only one of two factors removed at once when one must stay, and keeps the codes', async () => {
      const enrollment = createEnrollmentQueries(env.db);
      const passkeys = createPasskeyQueries(env.db);
      const totp = createTotpQueries(env.db);
      const codes = createRecoveryCodeQueries(env.db);
      const oneLeft = (after: { passkeys: number; totp: number }) => after.passkeys + after.totp > 0;
      for (let round = 0; round < 5; round += 1) {
        const id = await user(`removal-${round}`);
        await passkeys.insert({
          id: `pk-${round}`, user_id: id, public_key: 'pk', counter: 0, transports: [], aaguid: '00000000-0000-0000-0000-000000000000',
          backup_eligible: false, backed_up: false, user_verified: true, name: 'key', created_at: 1, last_used_at: null,
        });
        await totp.upsertPending(id, 'sealed', 1);
        expect(await totp.claimStep(id, 5, { at: 2, secretEnc: 'sealed' })).toBe(true);
        await codes.replaceAll(id, ['c1', 'c2'], 1);
        const results = await Promise.all([
          enrollment.removeFactor(id, { passkeyId: `pk-${round}` }, oneLeft),
          enrollment.removeFactor(id, 'totp', oneLeft),
        ]);
        expect([...results].sort()).toEqual(['refused', 'removed']);
        const after = await enrollment.counts(id);
        expect(after.passkeys + after.totp).toBe(1);
        expect(after.unusedRecoveryCodes).toBe(2);
      }
      // The last factor takes the codes with it; a factor that is not there is not found.
      const id = await user('removal-last');
      await totp.upsertPending(id, 'sealed', 1);
      await totp.claimStep(id, 5, { at: 2, secretEnc: 'sealed' });
      await codes.replaceAll(id, ['c1'], 1);
      expect(await enrollment.removeFactor(id, 'totp', () => true)).toBe('removed');
      expect(await enrollment.counts(id)).toEqual({ passkeys: 0, deviceBoundPasskeys: 0, totp: 0, unusedRecoveryCodes: 0 });
      expect(await enrollment.removeFactor(id, { passkeyId: 'none' }, () => true)).toBe('not_found');
    });

    it('issues the first factor’s recovery codes once, and leaves one set of two regenerated at once', async () => {
      const codes = createRecoveryCodeQueries(env.db);
      const unused = async (id: string) => (await createEnrollmentQueries(env.db).counts(id)).unusedRecoveryCodes;
      for (let round = 0; round < 5; round += 1) {
        const id = await user(`codes-${round}`);
        const issued = await Promise.all([1, 2].map((n) => codes.insertIfNone(id, Array.from({ length: 10 }, (_, i) => `first-${n}-${i}`), 1)));
        expect([...issued].sort()).toEqual([false, true]);
        expect(await unused(id)).toBe(10);
        expect(await codes.insertIfNone(id, ['late'], 2)).toBe(false);
        await Promise.all([1, 2].map((n) => codes.replaceAll(id, Array.from({ length: 10 }, (_, i) => `again-${n}-${i}`), 3)));
        expect(await unused(id)).toBe(10);
      }
    });

    it('confirms only the pending authenticator app the code was checked against', async () => {
      const totp = createTotpQueries(env.db);
      const id = await user('totp-swap');
      await totp.upsertPending(id, 'sealed-first', 1);
      // Another setup page replaced the secret between the check and the confirmation.
      await totp.upsertPending(id, 'sealed-second', 2);
      expect(await totp.claimStep(id, 5, { at: 3, secretEnc: 'sealed-first' })).toBe(false);
      expect((await totp.find(id))?.confirmed_at).toBeNull();
      expect(await totp.claimStep(id, 5, { at: 3, secretEnc: 'sealed-second' })).toBe(true);
    });
  });

  describe('passkey signature counters', () => {
    let env: Awaited<ReturnType<typeof migratedDb>>;
    beforeAll(async () => { env = await migratedDb(kind); });
    afterAll(async () => { await env?.close(); });

    // WebAuthn §6.1: the counter is 32 bits, unsigned; PostgreSQL must not compare it as an integer.
    it('moves a counter forward only, up to 2^32 - 1, and keeps an always-zero counter at zero', async () => {
      await createUserQueries(env.db).insert({
        id: 'u-counter', username: 'u-counter', email: 'u-counter@example.com', name: null, email_verified: false,
        password_hash: null, disabled: false, created_at: 1, updated_at: 1,
      });
      const passkeys = createPasskeyQueries(env.db);
      const passkey = (id: string): PasskeyRow => ({
        id, user_id: 'u-counter', public_key: 'pk', counter: 0, transports: [], aaguid: '00000000-0000-0000-0000-000000000000',
        backup_eligible: false, backed_up: false, user_verified: true, name: id, created_at: 1, last_used_at: null,
      });
      await passkeys.insert(passkey('pk-counting'));
      await passkeys.insert(passkey('pk-zero'));
      // Each use comes with a challenge of its own, which it consumes.
      const challenges = createChallengeQueries(env.db);
      const recordUse = async (id: string, counter: number, backedUp: boolean, at: number) => {
        await challenges.insert({ id: 'counting', purpose: 'authentication', challenge: `c${at}`, user_id: null, interaction_uid: null, expires_at: 100 });
        const use = await passkeys.useConsumingChallenge('counting', `c${at}`, id, counter, backedUp, at);
        expect(use.consumed).toBe(true);
        return use.counted;
      };
      expect([
        await recordUse('pk-counting', 3_000_000_000, false, 10),
        await recordUse('pk-counting', 3_000_000_000, false, 11),
        await recordUse('pk-counting', 2_999_999_999, false, 12),
        await recordUse('pk-counting', 4_294_967_295, true, 13),
        await recordUse('pk-counting', 0, false, 14),
        await recordUse('pk-zero', 0, false, 15),
        await recordUse('pk-zero', 0, false, 16),
      ]).toEqual([true, false, false, true, false, true, true]);
      // Without its challenge (used, or replaced by a newer one), a use moves nothing.
      await challenges.insert({ id: 'counting', purpose: 'authentication', challenge: 'newer', user_id: null, interaction_uid: null, expires_at: 100 });
      expect(await passkeys.useConsumingChallenge('counting', 'c17', 'pk-zero', 0, false, 17)).toEqual({ consumed: false, counted: false });
      expect(await challenges.find('counting', 'authentication')).toMatchObject({ challenge: 'newer' });
      expect(await passkeys.findById('pk-counting')).toMatchObject({ counter: 4_294_967_295, backed_up: true, last_used_at: 13 });
      expect(await passkeys.findById('pk-zero')).toMatchObject({ counter: 0, last_used_at: 16 });
    });
  });

  describe('two instances on one database', () => {
    let database: TestDatabase;
    let one: TestIdp;
    let two: TestIdp;
    const issuer = 'http://idp.test';
    beforeAll(async () => {
      database = await createTestDatabase(kind);
      one = await startIdp(database, { issuer });
      two = await startIdp(database, { issuer });
      await one.users.add({ username: 'dave', email: 'dave@example.com', password: 'dave-password-1' });
    });
    afterAll(async () => {
      await one?.close();
      await two?.close();
      await database?.dispose();
    });

    it('finishes on instance two a sign-in started on instance one', async () => {
      let backend = one.url;
      const browser = new Browser(issuer, (url) => new URL(url.pathname + url.search, backend));
      const login = await browser.get(authorizeUrl(issuer, {
        client_id: 'first-party', code_challenge: pkce().challenge, code_challenge_method: 'S256',
      }));
      expect(login.status).toBe(200);
      expect(login.body).toContain('autocomplete="current-password"');
      backend = two.url;
      const done = await browser.submit(login, '/login', { login: 'dave', password: 'dave-password-1' });
      expect(callbackOf(done).searchParams.get('code')).toEqual(expect.any(String));
    });
  });

  // An operator-audit finding: the security events were kept forever.
  describe('the periodic clean-up', () => {
    let database: TestDatabase;
    let idp: TestIdp;
    const time = movableClock();
    beforeAll(async () => {
      database = await createTestDatabase(kind);
      idp = await startIdp(database, { clock: time.clock, extra: { audit: { retention_days: 30 } } });
    });
    afterAll(async () => {
      await idp?.close();
      await database?.dispose();
    });

    it('forgets security events past audit.retention_days, a batch at a time, and keeps the rest', async () => {
      const { audit } = idp.app.services;
      for (let i = 0; i < 7; i += 1) await audit.record({ type: 'sign_in', outcome: 'failure', username: `old-${i}` });
      time.advance(20 * 86_400);
      await audit.record({ type: 'sign_in', outcome: 'failure', username: 'recent' });
      time.advance(11 * 86_400);
      // The seven are 31 days old, the recent one 11: only the seven go.
      await cleanUp(idp.app.services, { db: idp.db, clock: time.clock, config: idp.config });
      expect((await audit.list()).map((e) => e.username)).toEqual(['recent']);
      // In batches of two: three full ones, then an empty one that ends it.
      for (let i = 0; i < 5; i += 1) await audit.record({ type: 'sign_in', outcome: 'failure', username: `later-${i}` });
      time.advance(31 * 86_400);
      expect(await createSecurityEventQueries(idp.db).deleteBefore(epochSeconds(time.clock) - 30 * 86_400, 2)).toBe(6);
      expect(await audit.list()).toEqual([]);
      // 0 keeps every event.
      await audit.record({ type: 'sign_in', outcome: 'failure', username: 'kept' });
      time.advance(10_000 * 86_400);
      expect(await audit.prune(0)).toBe(0);
      expect((await audit.list()).map((e) => e.username)).toEqual(['kept']);
    });
  });
});

describe('the SQLite file', () => {
  const settingsAfterMigrating = async (target: TestDatabase['target']) => {
    const db = connect(target);
    try {
      await migrate(db);
      // Asked of the connection that writes (the writer thread's, sqlite-thread.ts).
      const [{ journal_mode: journal }] = await db.raw('pragma journal_mode') as Array<{ journal_mode: string }>;
      const [{ synchronous }] = await db.raw('pragma synchronous') as Array<{ synchronous: number }>;
      return { journal, synchronous };
    } finally {
      await db.destroy();
    }
  };

  // An operator-audit finding: the file, which holds the signing keys' private halves, was world-readable.
  it('creates its directory and file readable by this user only, the write-ahead log too', async () => {
    const database = await createTestDatabase('sqlite');
    try {
      const dir = path.join(database.target.data_dir, 'new-dir');
      await settingsAfterMigrating({ ...database.target, data_dir: dir });
      const mode = (file: string) => (statSync(path.join(dir, file)).mode & 0o777).toString(8);
      expect([mode('.'), mode('idp.sqlite')]).toEqual(['700', '600']);
      const db = connect({ ...database.target, data_dir: dir });
      try {
        await db('keystore').count({ n: '*' });
        expect(mode('idp.sqlite-wal')).toBe('600');
      } finally {
        await db.destroy();
      }
    } finally {
      await database.dispose();
    }
  });

  // better-sqlite3's build makes SQLite switch a connection to synchronous = NORMAL once it reads the file
  // in WAL mode: unless we set it, durability is not what we chose.
  it('syncs every commit by default, on the start that created the file and on the next', async () => {
    const database = await createTestDatabase('sqlite');
    try {
      expect([await settingsAfterMigrating(database.target), await settingsAfterMigrating(database.target)])
        .toEqual([{ journal: 'wal', synchronous: 2 }, { journal: 'wal', synchronous: 2 }]);
    } finally {
      await database.dispose();
    }
  });

  it('syncs at checkpoints only when the operator chose sqlite_synchronous: normal', async () => {
    const database = await createTestDatabase('sqlite');
    try {
      expect(await settingsAfterMigrating({ ...database.target, sqlite_synchronous: 'normal' }))
        .toEqual({ journal: 'wal', synchronous: 1 });
    } finally {
      await database.dispose();
    }
  });
});

describe('SQLite, written on a thread of its own', () => {
  let env: Awaited<ReturnType<typeof migratedDb>>;
  beforeAll(async () => { env = await migratedDb('sqlite'); });
  afterAll(async () => { await env?.close(); });
  const row = (id: string): PayloadRow => ({
    kind: 'AccessToken', id, payload: '{}', grant_id: null, account_id: null, user_code: null, uid: null, expires_at: null, consumed_at: null,
  });

  // The fast path's writes run outside any transaction (src/db/sqlite-thread.ts): one that arrives while
  // knex's transaction is open waits for it to end instead of joining it, and so survives its rollback.
  it('keeps a write of the fast path out of a knex transaction that is open meanwhile', async () => {
    const payloads = createOidcPayloadQueries(env.db);
    let beside: Promise<void> | undefined;
    let settledInside = false;
    await expect(env.db.transaction(async (trx) => {
      await trx('oidc_payloads').insert(row('in-trx'));
      beside = payloads.upsert(row('beside-trx')).then(() => { settledInside = true; });
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(settledInside).toBe(false);
      throw new Error('roll back');
    })).rejects.toThrow('roll back');
    await beside;
    expect(await env.db('oidc_payloads').where({ id: 'in-trx' }).first()).toBeUndefined();
    expect(await env.db('oidc_payloads').where({ id: 'beside-trx' }).first()).toMatchObject({ id: 'beside-trx' });
  });

  // The writer's page cache is warm; this thread's is dropped after every commit of the writer's.
  it('reads on the writer while it is free, and sees every write that has settled', async () => {
    const conn = await sqliteConnection(env.db);
    expect(conn.readConnection.readonly).toBe(true);
    const prepare = conn.readConnection.prepare;
    let readHere = 0;
    // Counts the statements that run on this thread's connection (the cache hands out the same ones).
    conn.readConnection.prepare = ((sql: string) => {
      const statement = prepare(sql);
      return new Proxy(statement, {
        get: (target, key) => (key === 'get' || key === 'all'
          ? (...args: unknown[]) => { readHere += 1; return (target[key] as (...a: unknown[]) => unknown)(...args); }
          : Reflect.get(target, key)),
      });
    }) as typeof prepare;
    const payloads = createOidcPayloadQueries(env.db);
    try {
      for (let i = 0; i < 20; i += 1) {
        await payloads.upsert(row(`visible-${i}`));
        expect(await payloads.findLive('AccessToken', 'id', `visible-${i}`, 0)).toEqual({ payload: '{}', consumed_at: null });
        // A statement with RETURNING writes: the writer runs it, once.
        expect(await payloads.consume('AccessToken', `visible-${i}`, 5)).toBe(true);
        expect(await payloads.consume('AccessToken', `visible-${i}`, 6)).toBe(false);
        expect(await payloads.findLive('AccessToken', 'id', `visible-${i}`, 0)).toEqual({ payload: '{}', consumed_at: 5 });
      }
    } finally {
      conn.readConnection.prepare = prepare;
    }
    expect(readHere).toBe(0);
  });

  // The request thread never waits for a commit: here the writer is held up by another process's lock (as
  // it would be by a slow disk), and reads go on meanwhile, on this thread's connection. With commits on
  // the request thread, or every read on the writer, the read would have waited for the lock too.
  it('keeps reading while a commit waits for the disk or a lock', async () => {
    const payloads = createOidcPayloadQueries(env.db);
    const conn = await sqliteConnection(env.db);
    await payloads.upsert(row('before-lock'));
    const blocker = new Database(path.join(env.test.target.data_dir, 'idp.sqlite'));
    blocker.exec('BEGIN IMMEDIATE');
    let settled = false;
    let write: Promise<void> | undefined;
    try {
      write = payloads.upsert(row('behind-lock')).then(() => { settled = true; });
      const readsBefore = conn.readsHere;
      for (let i = 0; i < 5; i += 1) {
        expect(await payloads.findLive('AccessToken', 'id', 'before-lock', 0)).toEqual({ payload: '{}', consumed_at: null });
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(settled).toBe(false);
      // The first read may have reached the writer before it started waiting: it is answered first.
      expect(conn.readsHere - readsBefore).toBeGreaterThanOrEqual(4);
    } finally {
      blocker.exec('ROLLBACK');
      blocker.close();
    }
    await write;
    expect(await payloads.findLive('AccessToken', 'id', 'behind-lock', 0)).toEqual({ payload: '{}', consumed_at: null });
  });

  // Inside the transaction the writer's connection would show the transaction's own rows (or make the
  // read wait for its end: here, for ever, since the transaction waits for the read).
  it('answers a read sent while a knex transaction is open from what is committed, without waiting for it', async () => {
    const payloads = createOidcPayloadQueries(env.db);
    await payloads.upsert(row('committed-before'));
    const seen = await env.db.transaction(async (trx) => {
      await trx('oidc_payloads').insert(row('uncommitted'));
      return Promise.all([
        payloads.findLive('AccessToken', 'id', 'committed-before', 0),
        payloads.findLive('AccessToken', 'id', 'uncommitted', 0),
      ]);
    });
    expect(seen).toEqual([{ payload: '{}', consumed_at: null }, undefined]);
    expect(await payloads.findLive('AccessToken', 'id', 'uncommitted', 0)).toEqual({ payload: '{}', consumed_at: null });
  });

  // A connection of its own, on a file of its own: these close it.
  const ownConnection = async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'wrnexus-thread-'));
    const conn = await SqliteConnection.open(path.join(dir, 'db.sqlite'), ['journal_mode = WAL', 'synchronous = FULL']);
    await conn.query('create table t (id integer primary key, v text)', []);
    await conn.query("insert into t values (1, 'one')", []);
    return { conn, dispose: () => rmSync(dir, { recursive: true, force: true }) };
  };

  // The writer hands the read back (code 2) from inside the transaction; it must still find this
  // thread's connection open.
  it('answers a read sent just before close(), also one handed back from inside a transaction', async () => {
    const { conn, dispose } = await ownConnection();
    // Not awaited: the read is asked while the writer is still free, and reaches it inside the transaction.
    const begun = conn.query('BEGIN', []);
    const read = conn.get<{ v: string }>('select v from t where id = 1', []);
    await conn.close();
    await begun;
    await expect(read).resolves.toEqual({ v: 'one' });
    dispose();
  });

  // The writer tells reads from writes by the op, not only by the text: a statement sent as a write is
  // never handed back to be read here, so it waits for the transaction and the answers after it arrive.
  it('runs a statement sent as a write on the writer even when its text only reads', async () => {
    const { conn, dispose } = await ownConnection();
    await conn.query('BEGIN', []);
    const write = conn.write('select 1', []);
    await expect(conn.query('select 2 as two', [])).resolves.toEqual({ rows: [{ two: 2 }] });
    await conn.query('COMMIT', []);
    await expect(write).resolves.toBeUndefined();
    await conn.close();
    dispose();
  });

  // Numbering a statement's text and then failing to send it would put the two threads out of step.
  it('refuses more parameters than SQLite binds before numbering the statement, and keeps its numbering', async () => {
    const { conn, dispose } = await ownConnection();
    await expect(conn.write('insert into t (v) values (?)', new Array(200_000).fill('x'))).rejects.toThrow(/at most 32766 parameters/);
    await expect(conn.get("select 'A' as which", [])).resolves.toEqual({ which: 'A' });
    await expect(conn.get("select 'B' as which", [])).resolves.toEqual({ which: 'B' });
    await expect(conn.get("select 'A' as which", [])).resolves.toEqual({ which: 'A' });
    await conn.close();
    dispose();
  });

  it('answers a failed statement with its error and code, and keeps serving', async () => {
    await expect(env.db.raw('select * from no_such_table')).rejects.toMatchObject({ message: expect.stringMatching(/no such table/), code: 'SQLITE_ERROR' });
    const run = statements(env.db);
    await expect(run.write('insert into no_such_table values (?)', [1])).rejects.toMatchObject({ code: 'SQLITE_ERROR' });
    await expect(run.write("insert into oidc_payloads (kind, id, payload) values ('AccessToken', ?, '{}')", ['dup'])).resolves.toBeUndefined();
    await expect(run.write("insert into oidc_payloads (kind, id, payload) values ('AccessToken', ?, '{}')", ['dup'])).rejects.toMatchObject({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' });
    expect(await env.db.raw('select 1 as one')).toEqual([{ one: 1 }]);
  });

  // Statement texts are numbered alike on both threads: a refused statement must not shift the numbering
  // (the next write would run another statement).
  it('refuses a parameter SQLite cannot bind and writes the next statement where it belongs', async () => {
    const run = statements(env.db);
    const into = (table: string) => `insert into ${table} (kind, id, payload) values ('AccessToken', ?, '{}')`;
    await env.db.schema.createTable('other_payloads', (t) => { t.string('kind'); t.string('id'); t.text('payload'); });
    await expect(run.write(into('oidc_payloads'), [(() => 1) as never])).rejects.toThrow(/cannot bind a parameter of type function/);
    await run.write(into('other_payloads'), ['to-other']);
    await run.write(into('oidc_payloads'), ['to-payloads']);
    expect(await env.db('other_payloads').pluck('id')).toEqual(['to-other']);
    expect(await env.db('oidc_payloads').where({ id: 'to-payloads' }).first()).toBeDefined();
  });

  it('runs a write of the fast path after a knex transaction that commits, outside it', async () => {
    const payloads = createOidcPayloadQueries(env.db);
    let beside: Promise<void> | undefined;
    await env.db.transaction(async (trx) => {
      await trx('oidc_payloads').insert(row('committed-in-trx'));
      beside = payloads.upsert(row('after-commit'));
      await new Promise((resolve) => setTimeout(resolve, 10));
    });
    await beside;
    expect(await env.db('oidc_payloads').whereIn('id', ['committed-in-trx', 'after-commit']).orderBy('id').pluck('id'))
      .toEqual(['after-commit', 'committed-in-trx']);
  });

  // knex releases the connection after a failed COMMIT without a ROLLBACK; the writer must end the
  // transaction itself, or every later write would wait for it (or run inside it) forever.
  it('ends a transaction whose COMMIT failed, so later writes go on', async () => {
    await env.db.raw('create table parents (id text primary key)');
    await env.db.raw('create table children (parent text references parents(id) deferrable initially deferred)');
    await expect(env.db.transaction(async (trx) => {
      await trx('children').insert({ parent: 'missing' });
    })).rejects.toThrow(/FOREIGN KEY constraint failed/);
    const payloads = createOidcPayloadQueries(env.db);
    await payloads.upsert(row('after-failed-commit'));
    expect(await env.db('children').count({ n: '*' })).toEqual([{ n: 0 }]);
    expect(await payloads.findLive('AccessToken', 'id', 'after-failed-commit', 0)).toEqual({ payload: '{}', consumed_at: null });
  });
});

describe('a token request on SQLite', () => {
  let database: TestDatabase;
  let idp: TestIdp;
  beforeAll(async () => {
    database = await createTestDatabase('sqlite');
    idp = await startIdp(database);
    await idp.users.add({ username: 'erin', email: 'erin@example.com', password: 'erin-password-1' });
  });
  afterAll(async () => {
    await idp?.close();
    await database?.dispose();
  });

  // What the adapter reads ahead is keyed by oidc-provider's own request context (Provider.ctx): if that
  // stopped working, the grant and the user would be read a second time, by id.
  it('reads the code, its grant and its user in one statement, and neither again', async () => {
    const browser = new Browser(idp.url);
    const { verifier, challenge } = pkce();
    const done = await signIn(browser, authorizeUrl(idp.url, { client_id: 'first-party', code_challenge: challenge, code_challenge_method: 'S256' }),
      'erin', 'erin-password-1');
    const code = callbackOf(done).searchParams.get('code')!;
    const conn = (await sqliteConnection(idp.db)).readConnection;
    const prepare = conn.prepare;
    const seen: string[] = [];
    conn.prepare = ((sql: string) => { seen.push(sql.replace(/\s+/g, ' ')); return prepare(sql); }) as typeof conn.prepare;
    try {
      const token = await new Browser(idp.url).request('/token', {
        method: 'POST', headers: { authorization: `Basic ${Buffer.from(`first-party:${TEST_SECRET}`).toString('base64')}` },
        form: { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier },
      });
      expect(token.status).toBe(200);
    } finally {
      conn.prepare = prepare;
    }
    expect(seen.filter((sql) => sql.includes('left join oidc_payloads g'))).toHaveLength(1);
    expect(seen.filter((sql) => /from oidc_payloads where kind = \? and id = \?/.test(sql))).toEqual([]);
    expect(seen.filter((sql) => sql.startsWith('select * from users'))).toEqual([]);
  });
});

// PostgreSQL keeps a prepared statement's generic plan per connection. One planned while the table was
// nearly empty (a fresh deployment) must still probe the index for each token as the table grows, not
// scan it: a plain join of the keys was planned as a hash join over a sequential scan.
const pgOnly = databaseKinds().includes('postgres') ? describe : describe.skip;
pgOnly('the batched token lookup on postgres', () => {
  let env: Awaited<ReturnType<typeof migratedDb>>;
  beforeAll(async () => { env = await migratedDb('postgres'); });
  afterAll(async () => { await env?.close(); });

  it('is planned as index probes on an empty table', async () => {
    let n = 0;
    const text = findManySql(3).replace(/\?/g, () => `$${++n}`);
    const plan = await env.db.transaction(async (trx) => {
      await trx.raw('set local plan_cache_mode = force_generic_plan');
      await trx.raw(`prepare lookups as ${text}`);
      const params = [0, 'RefreshToken', 'a', 1, 1, 'AccessToken', 'b', 1, 2, 'AccessToken', 'c', 1];
      const explained = await trx.raw<{ rows: Array<{ 'QUERY PLAN': string }> }>(`explain execute lookups(${params.map((p) => (typeof p === 'string' ? `'${p}'` : p)).join(', ')})`);
      await trx.raw('deallocate lookups');
      return explained.rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).not.toMatch(/Seq Scan|Hash Join|Hash Left Join/);
    expect(plan.match(/Index (Only )?Scan using oidc_payloads_pkey/g)).toHaveLength(2);
    expect(plan).toMatch(/Index (Only )?Scan using users_pkey/);
  });
});

// postgres_issuance_commit: async. What commits asynchronously is decided per model (the adapter) and per
// batch (one synchronous row makes the batch synchronous); the statement itself turns synchronous_commit
// off for its own transaction only.
describe('asynchronous commits of issued rows', () => {
  it('are only for models whose rows fail closed, and only when the operator keeps async', () => {
    for (const kind of ['AccessToken', 'ClientCredentials', 'AuthorizationCode', 'RefreshToken', 'Interaction', 'PushedAuthorizationRequest']) {
      expect([kind, upsertDurability(kind, true), upsertDurability(kind, false)]).toEqual([kind, 'soon', 'now']);
    }
    // An update of a session or a grant can take something away; a replay record records a use.
    for (const kind of ['Session', 'Grant', 'ReplayDetection', 'Client', 'RegistrationAccessToken', 'InitialAccessToken']) {
      expect([kind, upsertDurability(kind, true)]).toEqual([kind, 'now']);
    }
  });
});

pgOnly('asynchronous commits on postgres', () => {
  let env: Awaited<ReturnType<typeof migratedDb>>;
  beforeAll(async () => { env = await migratedDb('postgres'); });
  afterAll(async () => { await env?.close(); });

  const row = (id: string, kind = 'AccessToken') => [kind, id, '{"n":1}', null, null, null, null, 4102444800, null];
  // The setting each statement's own transaction committed with, as the statement returns it (the
  // asynchronous one says so itself; the synchronous one is asked).
  const settingOf = async (sql: string, params: unknown[]) => {
    const text = sql.includes('returning') ? sql : `${sql} returning current_setting('synchronous_commit') as synchronous_commit`;
    const { rows } = await env.db.raw(text, params as never) as { rows: Array<{ synchronous_commit: string }> };
    return rows.map((r) => r.synchronous_commit);
  };

  it('turn synchronous_commit off for that statement only, and store the rows as the synchronous upsert does', async () => {
    expect(await settingOf(asyncUpsertSql(2), [...row('async-1'), ...row('async-2', 'Interaction')])).toEqual(['off', 'off']);
    // The next statement on any connection is back to the server's setting.
    const [{ sc }] = (await env.db.raw("select current_setting('synchronous_commit') as sc") as { rows: Array<{ sc: string }> }).rows;
    expect(sc).toBe('on');
    expect(await settingOf(upsertSql(1), row('sync-1'))).toEqual(['on']);
    // An upsert of a row that exists changes it, as the synchronous one does.
    await settingOf(asyncUpsertSql(1), ['AccessToken', 'async-1', '{"n":2}', 'g1', 'a1', null, null, 4102444801, 7]);
    const stored = await env.db('oidc_payloads').where({ kind: 'AccessToken', id: 'async-1' }).first();
    expect(stored).toMatchObject({ payload: '{"n":2}', grant_id: 'g1', account_id: 'a1', uid: null });
    expect([Number(stored.expires_at), Number(stored.consumed_at)]).toEqual([4102444801, 7]);
    expect(await env.db('oidc_payloads').where({ kind: 'Interaction', id: 'async-2' }).first()).toMatchObject({ payload: '{"n":1}' });
  });

  it('are what the adapter sends for issued rows alone; one synchronous row in a batch makes it synchronous', async () => {
    // The statements the fast path sends, as they reach the connections.
    const sent: string[] = [];
    const client = env.db.client as { acquireConnection(): Promise<{ query(config: unknown, cb?: unknown): unknown; spied?: boolean }> };
    const acquire = client.acquireConnection.bind(client);
    client.acquireConnection = async () => {
      const conn = await acquire();
      if (!conn.spied) {
        const query = conn.query.bind(conn);
        conn.query = (config: unknown, cb?: unknown) => {
          const text = typeof config === 'string' ? config : (config as { text?: string }).text;
          if (text?.startsWith('insert into oidc_payloads')) sent.push(text.includes("set_config('synchronous_commit', 'off', true)") ? 'async' : 'sync');
          return query(config, cb);
        };
        conn.spied = true;
      }
      return conn;
    };
    try {
      const Adapter = createAdapterFactory(env.db, systemClock, undefined, { asyncIssuance: true });
      const token = { jti: 'through-adapter', grantId: 'g2', accountId: 'acct-2' };
      await new Adapter('AccessToken').upsert('through-adapter', token as never, 60);
      expect(sent).toEqual(['async']);
      await Promise.all([
        new Adapter('AccessToken').upsert('with-replay', token as never, 60),
        new Adapter('ReplayDetection').upsert('replay-1', { jti: 'replay-1' } as never, 60),
      ]);
      expect(sent).toEqual(['async', 'sync']);
      await new Adapter('ReplayDetection').upsert('replay-2', { jti: 'replay-2' } as never, 60);
      await new (createAdapterFactory(env.db, systemClock, undefined, { asyncIssuance: false }))('AccessToken').upsert('kept-sync', token as never, 60);
      expect(sent).toEqual(['async', 'sync', 'sync', 'sync']);
      expect(await new Adapter('AccessToken').find('through-adapter')).toMatchObject({ grantId: 'g2', accountId: 'acct-2' });
      expect(await new Adapter('ReplayDetection').find('replay-1')).toMatchObject({ jti: 'replay-1' });
    } finally {
      client.acquireConnection = acquire;
    }
  });
});

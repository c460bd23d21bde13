import type { Knex } from 'knex';
import { createBatcher } from '../db/batcher.js';
import { statements } from '../db/fast.js';
import { directPg } from '../db/pg-direct.js';
import { LIKE_ESCAPE, likePattern } from './like.js';
import { PROFILE_COLUMNS, toProfile, type UserProfile } from './users.js';

export interface PayloadRow {
  kind: string;
  id: string;
  payload: string;
  grant_id: string | null;
  account_id: string | null;
  user_code: string | null;
  uid: string | null;
  expires_at: number | null;
  consumed_at: number | null;
}

type Lookup = 'id' | 'uid' | 'user_code';

/**
 * How soon a write must be durable once it is answered: 'now' (the default), or 'soon' for a row whose
 * loss in a crash fails closed: it only issues something new (a token, code, pushed request) or holds a
 * sign-in page's progress, which would then be unknown and refused or asked again (the adapter's
 * FAILS_CLOSED). Never for what uses something up, revokes, counts, records or can take something away.
 */
export type Durability = 'now' | 'soon';

// The statements of the fast paths (src/db/sqlite-direct.ts, src/db/pg-direct.ts), the same on both
// stores: one row per token issued, so this is the busiest table.
const COLUMNS = ['kind', 'id', 'payload', 'grant_id', 'account_id', 'user_code', 'uid', 'expires_at', 'consumed_at'] as const;
const ROW = `(${COLUMNS.map(() => '?').join(', ')})`;
// The text of a statement for `rows` rows, built once per size: the fast paths look texts up by value,
// and a string built anew is hashed anew.
const bySize = (build: (rows: number) => string) => {
  const texts: string[] = [];
  return (rows: number) => (texts[rows] ??= build(rows));
};
export const upsertSql = bySize((rows) => `insert into oidc_payloads (${COLUMNS.join(', ')}) values ${Array.from({ length: rows }, () => ROW).join(', ')}
    on conflict (kind, id) do update set ${COLUMNS.slice(2).map((c) => `${c} = excluded.${c}`).join(', ')}`);
/**
 * PostgreSQL, for rows whose loss fails closed (the adapter's 'soon', `postgres_issuance_commit: async`):
 * the same upsert, committed asynchronously. A statement outside a transaction block is its own
 * transaction, so set_config(…, true) in its RETURNING turns synchronous_commit off for this commit only:
 * it is answered once its WAL record is written, not flushed; the WAL writer flushes it within 3 ×
 * wal_writer_delay (600 ms by default), and so does any later synchronous commit, since the WAL is flushed
 * in order (https://www.postgresql.org/docs/current/wal-async-commit.html). A crash of the database server
 * may forget the last of these rows, never a later synchronous change, and never leaves them inconsistent.
 */
export const asyncUpsertSql = bySize((rows) => `${upsertSql(rows)}
    returning set_config('synchronous_commit', 'off', true) as synchronous_commit`);
// A token with its grant (when live) and its user: the columns of findLiveWithGrantAndUser.
const WITH_GRANT_AND_USER = `t.payload, t.consumed_at, t.grant_id, g.payload as grant_payload, g.consumed_at as grant_consumed_at,
      ${PROFILE_COLUMNS.map((c) => `u.${c} as u_${c}`).join(', ')}`;
// PostgreSQL: the lookups of `rows` tokens in one statement; `k.n` says whose row is whose. Each row is
// looked up by its own LATERAL ... LIMIT 1, so every lookup stays an index probe: a prepared statement's
// plan is kept per connection, and a plain join planned while the table was nearly empty (a fresh
// deployment) went on scanning it as it grew (measured: a hash join over a sequential scan, 7x slower).
export const findManySql = bySize((rows) => `with k (n, kind, id, now) as (values ${Array.from({ length: rows }, () => '(cast(? as integer), ?, ?, cast(? as bigint))').join(', ')})
    select k.n, ${WITH_GRANT_AND_USER}
    from k
    join lateral (select * from oidc_payloads t where t.kind = k.kind and t.id = k.id and (t.expires_at is null or t.expires_at > k.now) limit 1) t on true
    left join lateral (select payload, consumed_at from oidc_payloads g
      where g.kind = 'Grant' and g.id = t.grant_id and (g.expires_at is null or g.expires_at > k.now) limit 1) g on true
    left join lateral (select * from users u where u.id = t.account_id limit 1) u on true`);
const SQL = {
  upsert: upsertSql(1),
  findLive: Object.fromEntries((['id', 'uid', 'user_code'] as const).map((column) => [column, `select payload, consumed_at from oidc_payloads
    where kind = ? and ${column} = ? and (expires_at is null or expires_at > ?) limit 1`])) as Record<Lookup, string>,
  // A token, its grant and its user in one statement (see findLiveWithGrantAndUser); SQLite's, which has
  // no round trip to save and no LATERAL.
  findLiveWithGrantAndUser: `select ${WITH_GRANT_AND_USER} from oidc_payloads t
    left join oidc_payloads g on g.kind = 'Grant' and g.id = t.grant_id and (g.expires_at is null or g.expires_at > ?)
    left join users u on u.id = t.account_id
    where t.kind = ? and t.id = ? and (t.expires_at is null or t.expires_at > ?) limit 1`,
  consume: 'update oidc_payloads set consumed_at = ? where kind = ? and id = ? and consumed_at is null returning id',
  find: 'select grant_id from oidc_payloads where kind = ? and id = ?',
  destroy: 'delete from oidc_payloads where kind = ? and id = ?',
  destroyOnce: 'delete from oidc_payloads where kind = ? and id = ? returning id',
  destroyByGrantId: 'delete from oidc_payloads where kind = ? and grant_id = ?',
};
// PostgreSQL batches of up to this many rows go as prepared statements (one per size); larger ones, rare,
// through knex, in statements of at most 1000 rows (PostgreSQL takes at most 65535 parameters, 9 a row).
const PREPARED_BATCH = 32;
/**
 * A batch goes out once it holds this many rows, before the turn ends. Requests that arrive together (a
 * closed loop of clients falls into step) otherwise wait in one batch while the database commits it, this
 * thread idle, then all come back at once; in two halves, the database commits the first while this
 * thread prepares the second. Each batch is a round trip and a commit, so not much smaller: on the
 * benchmark's 2-core VM (2026-12-04, 16 clients, PostgreSQL 15), client_credentials went from 0.71–0.78
 * of the bare library (five runs) to 0.76–0.83 at 8 (seven runs); at 4 and 2 it fell (0.67, 0.54: a run
 * each), and with every upsert alone to 0.43.
 */
const EARLY_BATCH = 8;
const valuesOf = (row: PayloadRow) => COLUMNS.map((c) => row[c]);

/**
 * The rows without an account among the kinds whose payload may name one: the predicate of the partial
 * index of migration 20261203000000, word for word, or SQLite would not use that index (a storage test
 * compares the two).
 */
export const ACCOUNTLESS = "account_id is null and kind in ('Session', 'Interaction', 'Grant', 'AccessToken', 'RefreshToken', "
  + "'AuthorizationCode', 'DeviceCode', 'BackchannelAuthenticationRequest')";

type Found = { payload: string; consumed_at: number | string | null };
export interface LiveRow { payload: string; consumed_at: number | null }
const found = (row: Found | undefined): LiveRow | undefined => (row
  ? { payload: row.payload, consumed_at: row.consumed_at == null ? null : Number(row.consumed_at) }
  : undefined);
type FoundWithGrant = Found & { grant_id: string | null; grant_payload: string | null; grant_consumed_at: number | string | null }
  & { [column in `u_${typeof PROFILE_COLUMNS[number]}`]: unknown };

export function createOidcPayloadQueries(db: Knex) {
  const table = () => db('oidc_payloads');
  // Inside a knex transaction every statement runs on it, one by one: no fast path (statements() and
  // directPg say so), no batching.
  const run = statements(db);
  const pg = directPg(db);
  const upsertOne = (row: PayloadRow) => run.write(SQL.upsert, valuesOf(row));
  type Upsert = { row: PayloadRow; durability: Durability };
  // PostgreSQL: the upserts of one event-loop turn go as one multi-row statement (one round trip, one
  // commit), EARLY_BATCH at most. A statement may touch a row once only, so of two writes to one row in a
  // batch the later one is sent, as if they had run one after the other. Two writes to one row in two
  // batches (one sent full, the next at the end of the turn, or two turns) run side by side, as writes of
  // two requests do: a request's own writes are ordered, since oidc-provider awaits each save.
  // A batch commits asynchronously only if every row in it may (one synchronous row makes it synchronous).
  const upsertBatched = createBatcher<Upsert>({
    async all(items) {
      // In key order: batches in flight at once (or from other instances) then lock the rows they share in
      // the same order, so two of them cannot deadlock.
      const last = [...new Map(items.map(({ row: r }) => [`${r.kind}\u0000${r.id}`, r])).entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
      if (pg && last.length <= PREPARED_BATCH) {
        const sql = items.every((i) => i.durability === 'soon') ? asyncUpsertSql : upsertSql;
        await pg.write(sql(last.length), last.flatMap(valuesOf));
        return;
      }
      // Rare (more than PREPARED_BATCH rows in one turn): through knex, committed synchronously.
      for (let i = 0; i < last.length; i += 1000) {
        await table().insert(last.slice(i, i + 1000)).onConflict(['kind', 'id']).merge();
      }
    },
    one: ({ row, durability }) => (pg && durability === 'soon' ? pg.write(asyncUpsertSql(1), valuesOf(row)) : upsertOne(row)),
    flushAt: EARLY_BATCH,
  });
  // PostgreSQL: the token lookups of one event-loop turn (concurrent token requests) go as one statement,
  // one round trip instead of one each; batches beyond PREPARED_BATCH, rare, in chunks.
  type Key = { kind: string; id: string; now: number };
  async function findMany(keys: Key[]): Promise<Array<FoundWithGrant | undefined>> {
    const results: Array<FoundWithGrant | undefined> = keys.map(() => undefined);
    for (let at = 0; at < keys.length; at += PREPARED_BATCH) {
      const chunk = keys.slice(at, at + PREPARED_BATCH);
      const rows = await pg!.all<FoundWithGrant & { n: number }>(findManySql(chunk.length), chunk.flatMap((k, n) => [n, k.kind, k.id, k.now]));
      for (const row of rows) results[at + row.n] = row;
    }
    return results;
  }
  const findBatched = createBatcher<Key, FoundWithGrant | undefined>({
    all: findMany,
    one: async (key) => (await findMany([key]))[0],
    flushAt: EARLY_BATCH,
  });
  return {
    /**
     * `durability` 'soon': the row only issues something new whose loss fails closed, and may be committed
     * asynchronously on PostgreSQL (asyncUpsertSql). SQLite syncs every commit (its writer thread; a
     * relaxed commit there was measured and not kept: README, Performance).
     */
    upsert(row: PayloadRow, durability: Durability = 'now'): Promise<void> {
      // SQLite's writer commits the writes that reach it together by itself (sqlite-thread.ts).
      return pg ? upsertBatched({ row, durability }) : upsertOne(row);
    },
    /** The live row of `kind` whose `column` is `value`; expired rows count as absent. */
    findLive(kind: string, column: Lookup, value: string, nowSeconds: number): Promise<LiveRow | undefined> {
      return run.get<Found>(SQL.findLive[column], [kind, value, nowSeconds]).then(found);
    },
    /**
     * The live row of `kind` with primary key `id`, with the row of its grant when that is live and the
     * profile of its user (no password hash) when it names one that exists: one statement instead of three.
     */
    findLiveWithGrantAndUser(kind: string, id: string, nowSeconds: number):
    Promise<{ row: LiveRow; grant?: { id: string; row: LiveRow }; user?: UserProfile } | undefined> {
      const read = pg
        ? findBatched({ kind, id, now: nowSeconds })
        : run.get<FoundWithGrant>(SQL.findLiveWithGrantAndUser, [nowSeconds, kind, id, nowSeconds]);
      return read.then((first) => {
        if (!first) return undefined;
        const grant = first.grant_id != null && first.grant_payload != null
          ? { id: first.grant_id, row: found({ payload: first.grant_payload, consumed_at: first.grant_consumed_at })! }
          : undefined;
        const user = first.u_id != null
          ? toProfile(Object.fromEntries(PROFILE_COLUMNS.map((c) => [c, first[`u_${c}`]])))
          : undefined;
        return { row: found(first)!, grant, user };
      });
    },
    /** Whether the row is stored, expired or not, and its grant. */
    async stored(kind: string, id: string): Promise<{ grant_id: string | null } | undefined> {
      return run.get<{ grant_id: string | null }>(SQL.find, [kind, id]);
    },
    /**
     * Marks the row consumed; true when this call did it, false when it was consumed already (or is gone).
     * One statement, so of requests racing to consume one row exactly one gets true.
     */
    async consume(kind: string, id: string, nowSeconds: number): Promise<boolean> {
      return (await run.get(SQL.consume, [nowSeconds, kind, id])) !== undefined;
    },
    async destroy(kind: string, id: string): Promise<void> {
      await run.write(SQL.destroy, [kind, id]);
    },
    /** Deletes the row; true when this call did it (of requests racing to delete one row, exactly one). */
    async destroyOnce(kind: string, id: string): Promise<boolean> {
      return (await run.get(SQL.destroyOnce, [kind, id])) !== undefined;
    },
    async destroyByGrantId(kind: string, grantId: string): Promise<void> {
      await run.write(SQL.destroyByGrantId, [kind, grantId]);
    },
    async deleteExpired(nowSeconds: number): Promise<number> {
      return table().where('expires_at', '<=', nowSeconds).delete();
    },
    /** The payloads of the live sessions with this uid (one, but for a moment while its id changes). */
    async sessionsByUid(uid: string, nowSeconds: number): Promise<string[]> {
      const rows: Array<{ payload: string }> = await table().select('payload').where({ kind: 'Session', uid })
        .andWhere((q) => q.whereNull('expires_at').orWhere('expires_at', '>', nowSeconds));
      return rows.map((r) => r.payload);
    },
    /**
     * Moves a live session's expiry to `until`, as oidc-provider's own save does, without writing back a
     * copy of the session read earlier: the row is changed only if it is still there and unchanged since
     * this read (a compare-and-set), so a logout or sign-out meanwhile is not undone, nor an app added
     * meanwhile dropped. False when it was not changed (gone, or changed meanwhile: then it was just used).
     */
    async touchSession(id: string, until: number, nowSeconds: number): Promise<boolean> {
      const row: { payload: string } | undefined = await table().first('payload').where({ kind: 'Session', id })
        .andWhere((q) => q.whereNull('expires_at').orWhere('expires_at', '>', nowSeconds));
      if (!row) return false;
      const payload = JSON.parse(row.payload) as { exp?: number };
      payload.exp = until;
      const changed = await table().where({ kind: 'Session', id, payload: row.payload }).update({ payload: JSON.stringify(payload), expires_at: until });
      return changed === 1;
    },
    /**
     * Deletes every row naming the account (its sessions, interactions, grants, codes and tokens), but the
     * session `keep.sessionUid` (the uid stays when oidc-provider gives a session a new id), the grants
     * `keep.grantIds` with their tokens, and the interactions `keep.interactionIds`. Rows written before
     * the account had a column (account_id null) are found by the account id in their payload, among the
     * kinds that can name one: the rows of a partial index that holds just those (ACCOUNTLESS, word for
     * word as the index has it, or SQLite would not use it). A deleted row is not found, which for oidc-provider is a revoked token or an ended session.
     * Returns how many rows went.
     */
    async deleteForAccount(accountId: string, keep: { sessionUid?: string; grantIds?: readonly string[]; interactionIds?: readonly string[] } = {}): Promise<number> {
      const grantIds = [...(keep.grantIds ?? [])];
      const interactionIds = [...(keep.interactionIds ?? [])];
      // oidc-provider writes payloads with JSON.stringify: `"accountId":"<id>"`, also inside an
      // interaction's session and login result.
      const named = likePattern(JSON.stringify({ accountId }).slice(1, -1), { prefix: true, suffix: true });
      return table()
        .where((w) => w.where('account_id', accountId)
          .orWhere((legacy) => legacy.whereRaw(ACCOUNTLESS).andWhereRaw(`payload like ? ${LIKE_ESCAPE}`, [named])))
        .modify((q) => {
          if (keep.sessionUid) q.whereNot((w) => w.where({ kind: 'Session', uid: keep.sessionUid }));
          if (grantIds.length > 0) {
            q.where((w) => w.whereNull('grant_id').orWhereNotIn('grant_id', grantIds));
            q.whereNot((w) => w.where('kind', 'Grant').whereIn('id', grantIds));
          }
          if (interactionIds.length > 0) q.whereNot((w) => w.where('kind', 'Interaction').whereIn('id', interactionIds));
        }).delete();
    },
    /** The interactions that name the account (id and payload). */
    async interactionsOf(accountId: string): Promise<Array<{ id: string; payload: string }>> {
      return table().select('id', 'payload').where({ kind: 'Interaction', account_id: accountId });
    },
  };
}

export type OidcPayloadQueries = ReturnType<typeof createOidcPayloadQueries>;

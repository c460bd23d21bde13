import type { Knex } from 'knex';
import { statements } from '../db/fast.js';
import { LIKE_ESCAPE, likePattern } from './like.js';

export interface ThrottleRow {
  failures: number;
  blocked_until: number | null;
}

// Every sign-in attempt runs these, so they skip the query builder (src/db/fast.ts).
const SQL = {
  // The attempt that reaches the back-off blocks the key at once, for the wait its failure would bring
  // (2^(n - after) seconds, at most max: `1 << k` below capShift, max from there), so a parallel burst
  // meets the block instead of all passing before the first failure sets it.
  take: `insert into throttle (key, failures, blocked_until, updated_at) values (?, 1, ?, ?)
    on conflict (key) do update set failures = throttle.failures + 1, updated_at = excluded.updated_at,
      blocked_until = case
        when throttle.failures + 1 < ? then throttle.blocked_until
        when throttle.failures + 1 - ? >= ? then cast(? as bigint)
        else cast(? as bigint) + (1 << (throttle.failures + 1 - ?))
      end
    where throttle.blocked_until is null or throttle.blocked_until <= ? returning failures, blocked_until`,
  // Never below zero: an attempt given back after its count was started over (an operator's unlock, a new
  // window) must not leave a credit of extra attempts.
  adjust: `insert into throttle (key, failures, blocked_until, updated_at) values (?, ?, null, ?)
    on conflict (key) do update set updated_at = excluded.updated_at,
      failures = case when throttle.failures + ? < 0 then 0 else throttle.failures + ? end
    returning failures, blocked_until`,
  reset: 'update throttle set failures = 0, blocked_until = null, updated_at = ? where key = ?',
};
type Returned = { failures: unknown; blocked_until: unknown };

export function createThrottleQueries(db: Knex) {
  const table = () => db('throttle');
  const run = statements(db);
  // PostgreSQL returns bigint columns as strings.
  const toRow = (row: { failures?: unknown; blocked_until?: unknown } | undefined): ThrottleRow => ({
    failures: Number(row?.failures ?? 0),
    blocked_until: row?.blocked_until == null ? null : Number(row.blocked_until),
  });
  const read = async (key: string): Promise<ThrottleRow> => toRow(await table().where({ key }).first());
  return {
    read,
    /**
     * Counts one attempt unless the key is blocked, in one statement (an upsert that returns the new
     * count), so parallel requests each count: returns undefined when blocked, else the row after this
     * attempt. A conflict update whose WHERE is false changes and returns nothing (SQLite and PostgreSQL).
     * With `backoff`, from the `backoff.after`-th attempt on, the same statement blocks the key for
     * 2^(n - after) seconds (at most `backoff.maxSeconds`) as it counts the n-th: a success ends the block
     * (reset).
     */
    async take(key: string, now: number, backoff?: { after: number; maxSeconds: number }): Promise<ThrottleRow | undefined> {
      // Without `backoff` no attempt blocks as it is counted (`after` beyond any count: a 32-bit integer).
      const after = backoff?.after ?? 2 ** 31 - 1;
      const maxSeconds = backoff?.maxSeconds ?? 1;
      // At most 30: `1 << k` is a 32-bit integer on PostgreSQL (from a back-off of 2^30 s on, the longest).
      const capShift = Math.min(30, Math.ceil(Math.log2(maxSeconds)));
      const first = after <= 1 ? now + Math.min(maxSeconds, 2 ** (1 - after)) : null;
      const row = await run.get<Returned>(SQL.take, [
        key, first, now, after, after, capShift, now + maxSeconds, now, after, now,
      ]);
      return row ? toRow(row) : undefined;
    },
    /** Locks until `until`, with the count set so that the first attempt after the lock is allowed. */
    async lock(key: string, until: number, failures: number, now: number): Promise<void> {
      await table().where({ key }).update({ blocked_until: until, failures, updated_at: now });
    },
    /** Adds `delta` (which may be negative, the count staying at least 0); returns the new count. One statement. */
    async adjust(key: string, delta: number, now: number): Promise<number> {
      return toRow(await run.get<Returned>(SQL.adjust, [key, Math.max(0, delta), now, delta, delta])).failures;
    },
    async blockUntil(key: string, until: number, now: number): Promise<void> {
      await table().where({ key }).andWhere((q) => q.whereNull('blocked_until').orWhere('blocked_until', '<', until))
        .update({ blocked_until: until, updated_at: now });
    },
    /** Starts the count over. An UPDATE, not a DELETE: the row keeps its place for the clean-up's age rule. */
    async reset(key: string, now: number): Promise<void> {
      await run.write(SQL.reset, [now, key]);
    },
    async resetPrefix(prefix: string, now: number): Promise<number> {
      // A login may hold `_` or `%` (john_doe@example.com).
      return table().whereRaw(`?? like ? ${LIKE_ESCAPE}`, ['key', likePattern(prefix, { suffix: true })])
        .andWhere((q) => q.where('failures', '>', 0).orWhereNotNull('blocked_until'))
        .update({ failures: 0, blocked_until: null, updated_at: now });
    },
    /** The keys that count failures or are blocked at `now`, for the operator, by key. */
    async listActive(now: number): Promise<Array<ThrottleRow & { key: string }>> {
      const rows: Array<{ key: string; failures: unknown; blocked_until: unknown }> = await table().select('key', 'failures', 'blocked_until')
        .where('failures', '>', 0).orWhere('blocked_until', '>', now).orderBy('key');
      return rows.map((row) => ({ key: String(row.key), ...toRow(row) }));
    },
    async deleteStale(before: number): Promise<number> {
      return table().where('updated_at', '<', before)
        .andWhere((q) => q.whereNull('blocked_until').orWhere('blocked_until', '<', before)).delete();
    },
  };
}

export type ThrottleQueries = ReturnType<typeof createThrottleQueries>;

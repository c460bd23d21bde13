import type { Knex } from 'knex';

export interface ThrottleRow {
  failures: number;
  blocked_until: number | null;
}

export function createThrottleQueries(db: Knex) {
  const table = () => db('throttle');
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
     */
    async take(key: string, now: number): Promise<ThrottleRow | undefined> {
      const [row] = await table()
        .insert({ key, failures: 1, blocked_until: null, updated_at: now })
        .onConflict('key')
        .merge({ failures: db.raw('?? + 1', ['throttle.failures']), updated_at: now })
        .where((q) => q.whereNull('throttle.blocked_until').orWhere('throttle.blocked_until', '<=', now))
        .returning(['failures', 'blocked_until']);
      return row ? toRow(row) : undefined;
    },
    /** Locks until `until`, with the count set so that the first attempt after the lock is allowed. */
    async lock(key: string, until: number, failures: number, now: number): Promise<void> {
      await table().where({ key }).update({ blocked_until: until, failures, updated_at: now });
    },
    /** Adds `delta` (which may be negative) without checking; returns the new count. One statement. */
    async adjust(key: string, delta: number, now: number): Promise<number> {
      const [row] = await table()
        .insert({ key, failures: delta, blocked_until: null, updated_at: now })
        .onConflict('key')
        .merge({ failures: db.raw('?? + ?', ['throttle.failures', delta]), updated_at: now })
        .returning(['failures', 'blocked_until']);
      return toRow(row).failures;
    },
    async blockUntil(key: string, until: number, now: number): Promise<void> {
      await table().where({ key }).andWhere((q) => q.whereNull('blocked_until').orWhere('blocked_until', '<', until))
        .update({ blocked_until: until, updated_at: now });
    },
    /** Starts the count over. An UPDATE, not a DELETE: the row keeps its place for the clean-up's age rule. */
    async reset(key: string, now: number): Promise<void> {
      await table().where({ key }).update({ failures: 0, blocked_until: null, updated_at: now });
    },
    async resetPrefix(prefix: string, now: number): Promise<number> {
      return table().where('key', 'like', `${prefix.replace(/[%_]/g, '')}%`)
        .andWhere((q) => q.where('failures', '>', 0).orWhereNotNull('blocked_until'))
        .update({ failures: 0, blocked_until: null, updated_at: now });
    },
    async deleteStale(before: number): Promise<number> {
      return table().where('updated_at', '<', before)
        .andWhere((q) => q.whereNull('blocked_until').orWhere('blocked_until', '<', before)).delete();
    },
  };
}

export type ThrottleQueries = ReturnType<typeof createThrottleQueries>;

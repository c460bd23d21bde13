import type { Knex } from 'knex';

export interface ThrottleRow {
  failures: number;
  blocked_until: number | null;
}

export function createThrottleQueries(db: Knex) {
  const table = () => db('throttle');
  const read = async (key: string): Promise<ThrottleRow> => {
    const row = await table().where({ key }).first();
    return { failures: Number(row?.failures ?? 0), blocked_until: row?.blocked_until == null ? null : Number(row.blocked_until) };
  };
  return {
    read,
    /**
     * Counts one attempt unless the key is blocked, in one UPDATE, so parallel requests each count:
     * returns undefined when blocked, else the count after this attempt.
     */
    async take(key: string, now: number): Promise<ThrottleRow | undefined> {
      await table().insert({ key, failures: 0, blocked_until: null, updated_at: now }).onConflict('key').ignore();
      const updated = await table()
        .where({ key })
        .andWhere((q) => q.whereNull('blocked_until').orWhere('blocked_until', '<=', now))
        .update({ failures: db.raw('failures + 1'), updated_at: now });
      if (updated !== 1) return undefined;
      return read(key);
    },
    /** Locks until `until`, with the count set so that the first attempt after the lock is allowed. */
    async lock(key: string, until: number, failures: number, now: number): Promise<void> {
      await table().where({ key }).update({ blocked_until: until, failures, updated_at: now });
    },
    /** Adds `delta` (which may be negative) without checking. */
    async adjust(key: string, delta: number, now: number): Promise<number> {
      await table().insert({ key, failures: 0, blocked_until: null, updated_at: now }).onConflict('key').ignore();
      await table().where({ key }).update({ failures: db.raw('failures + ?', [delta]), updated_at: now });
      return (await read(key)).failures;
    },
    async blockUntil(key: string, until: number, now: number): Promise<void> {
      await table().where({ key }).andWhere((q) => q.whereNull('blocked_until').orWhere('blocked_until', '<', until))
        .update({ blocked_until: until, updated_at: now });
    },
    /** Starts the count over. An UPDATE, not a DELETE: a parallel `take` must never find the row gone. */
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

import type { Knex } from 'knex';
import { statements } from '../db/fast.js';

export interface SecurityEventRow {
  id?: number;
  at: number;
  type: string;
  outcome: string;
  user_id: string | null;
  username: string | null;
  client_id: string | null;
  ip: string | null;
  user_agent: string | null;
  detail: string | null;
}

// One row per sign-in attempt, so it skips the query builder (src/db/fast.ts); on SQLite it is committed with
// the other writes of its turn.
const COLUMNS = ['at', 'type', 'outcome', 'user_id', 'username', 'client_id', 'ip', 'user_agent', 'detail'] as const;
const INSERT = `insert into security_events (${COLUMNS.join(', ')}) values (${COLUMNS.map(() => '?').join(', ')})`;

export function createSecurityEventQueries(db: Knex) {
  const table = () => db('security_events');
  const run = statements(db);
  return {
    async insert(row: SecurityEventRow): Promise<void> {
      await run.write(INSERT, COLUMNS.map((c) => row[c]));
    },
    /** Newest first; `username` matches the name recorded with the event (that of a user deleted since). */
    async list(filter: { userId?: string; username?: string; since?: number; limit?: number } = {}): Promise<SecurityEventRow[]> {
      const q = table().select('*').orderBy([{ column: 'at', order: 'desc' }, { column: 'id', order: 'desc' }]);
      if (filter.userId) q.where({ user_id: filter.userId });
      // Not every event names its user (a failed sign-in records only the id): those of a user id that some
      // event recorded with this name count too.
      if (filter.username !== undefined) {
        const name = filter.username;
        q.where((w) => w.where({ username: name })
          .orWhereIn('user_id', db('security_events').distinct('user_id').where({ username: name }).whereNotNull('user_id')));
      }
      if (filter.since !== undefined) q.where('at', '>=', filter.since);
      if (filter.limit) q.limit(filter.limit);
      const rows: Record<string, unknown>[] = await q;
      return rows.map((r) => ({
        id: Number(r.id), at: Number(r.at), type: String(r.type), outcome: String(r.outcome),
        user_id: (r.user_id as string | null) ?? null, username: (r.username as string | null) ?? null,
        client_id: (r.client_id as string | null) ?? null, ip: (r.ip as string | null) ?? null,
        user_agent: (r.user_agent as string | null) ?? null, detail: (r.detail as string | null) ?? null,
      }));
    },
    /**
     * Deletes the events before `at`, a batch at a time (a long-neglected table must not be locked for one
     * huge delete), up to `maxBatches`; returns how many went.
     */
    async deleteBefore(at: number, batch = 5000, maxBatches = 100): Promise<number> {
      let deleted = 0;
      for (let i = 0; i < maxBatches; i += 1) {
        const n = await table().whereIn('id', db('security_events').select('id').where('at', '<', at).orderBy('at').limit(batch)).delete();
        deleted += n;
        if (n < batch) break;
      }
      return deleted;
    },
  };
}

export type SecurityEventQueries = ReturnType<typeof createSecurityEventQueries>;

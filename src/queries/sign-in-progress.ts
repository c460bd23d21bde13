import type { Knex } from 'knex';
import { statements } from '../db/fast.js';

export interface ProgressRow {
  uid: string;
  binding: string;
  user_id: string | null;
  factors: string;
  notice: string | null;
  expires_at: number;
}

// Read and written by every sign-in step, so they skip the query builder (src/db/fast.ts).
const COLUMNS = ['uid', 'binding', 'user_id', 'factors', 'notice', 'expires_at'] as const;
const SQL = {
  upsert: `insert into sign_in_progress (${COLUMNS.join(', ')}) values (${COLUMNS.map(() => '?').join(', ')})
    on conflict (uid) do update set ${COLUMNS.slice(1).map((c) => `${c} = excluded.${c}`).join(', ')}`,
  find: 'select * from sign_in_progress where uid = ? and expires_at > ? limit 1',
  remove: 'delete from sign_in_progress where uid = ?',
};

export function createSignInProgressQueries(db: Knex) {
  const table = () => db('sign_in_progress');
  const run = statements(db);
  const read = (r: Record<string, unknown> | undefined): ProgressRow | undefined => (r ? {
    uid: String(r.uid), binding: String(r.binding), user_id: (r.user_id as string | null) ?? null,
    factors: String(r.factors), notice: (r.notice as string | null) ?? null, expires_at: Number(r.expires_at),
  } : undefined);
  return {
    async upsert(row: ProgressRow): Promise<void> {
      await run.write(SQL.upsert, COLUMNS.map((c) => row[c]));
    },
    async find(uid: string, nowSeconds: number): Promise<ProgressRow | undefined> {
      return read(await run.get<Record<string, unknown>>(SQL.find, [uid, nowSeconds]));
    },
    async update(uid: string, changes: Partial<Omit<ProgressRow, 'uid'>>): Promise<void> {
      await table().where({ uid }).update(changes);
    },
    async remove(uid: string): Promise<void> {
      await run.write(SQL.remove, [uid]);
    },
    async deleteExpired(nowSeconds: number): Promise<number> {
      return table().where('expires_at', '<=', nowSeconds).delete();
    },
    /** Every sign-in of the user in progress, in any browser, but those of the interactions `except`. */
    async deleteForUser(userId: string, except: readonly string[] = []): Promise<number> {
      return table().where({ user_id: userId }).modify((q) => { if (except.length > 0) q.whereNotIn('uid', [...except]); }).delete();
    },
  };
}

export type SignInProgressQueries = ReturnType<typeof createSignInProgressQueries>;

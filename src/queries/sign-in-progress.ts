import type { Knex } from 'knex';

export interface ProgressRow {
  uid: string;
  binding: string;
  user_id: string | null;
  factors: string;
  notice: string | null;
  expires_at: number;
}

export function createSignInProgressQueries(db: Knex) {
  const table = () => db('sign_in_progress');
  const read = (r: Record<string, unknown> | undefined): ProgressRow | undefined => (r ? {
    uid: String(r.uid), binding: String(r.binding), user_id: (r.user_id as string | null) ?? null,
    factors: String(r.factors), notice: (r.notice as string | null) ?? null, expires_at: Number(r.expires_at),
  } : undefined);
  return {
    async upsert(row: ProgressRow): Promise<void> {
      await table().insert(row).onConflict('uid').merge();
    },
    async find(uid: string, nowSeconds: number): Promise<ProgressRow | undefined> {
      return read(await table().where({ uid }).andWhere('expires_at', '>', nowSeconds).first());
    },
    async update(uid: string, changes: Partial<Omit<ProgressRow, 'uid'>>): Promise<void> {
      await table().where({ uid }).update(changes);
    },
    async remove(uid: string): Promise<void> {
      await table().where({ uid }).delete();
    },
    async deleteExpired(nowSeconds: number): Promise<number> {
      return table().where('expires_at', '<=', nowSeconds).delete();
    },
  };
}

export type SignInProgressQueries = ReturnType<typeof createSignInProgressQueries>;

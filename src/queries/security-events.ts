import type { Knex } from 'knex';

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

export function createSecurityEventQueries(db: Knex) {
  const table = () => db('security_events');
  return {
    async insert(row: SecurityEventRow): Promise<void> {
      await table().insert(row);
    },
    async list(filter: { userId?: string; since?: number; limit?: number } = {}): Promise<SecurityEventRow[]> {
      const q = table().select('*').orderBy([{ column: 'at', order: 'desc' }, { column: 'id', order: 'desc' }]);
      if (filter.userId) q.where({ user_id: filter.userId });
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
  };
}

export type SecurityEventQueries = ReturnType<typeof createSecurityEventQueries>;

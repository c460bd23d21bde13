import type { Knex } from 'knex';

export interface PayloadRow {
  kind: string;
  id: string;
  payload: string;
  grant_id: string | null;
  user_code: string | null;
  uid: string | null;
  expires_at: number | null;
  consumed_at: number | null;
}

type Lookup = 'id' | 'uid' | 'user_code';

export function createOidcPayloadQueries(db: Knex) {
  const table = () => db('oidc_payloads');
  return {
    async upsert(row: PayloadRow): Promise<void> {
      await table().insert(row).onConflict(['kind', 'id']).merge();
    },
    /** The live row of `kind` whose `column` is `value`; expired rows count as absent. */
    async findLive(kind: string, column: Lookup, value: string, nowSeconds: number):
    Promise<{ payload: string; consumed_at: number | null } | undefined> {
      const row = await table()
        .select('payload', 'consumed_at')
        .where({ kind, [column]: value })
        .andWhere((q) => q.whereNull('expires_at').orWhere('expires_at', '>', nowSeconds))
        .first();
      if (!row) return undefined;
      return { payload: row.payload, consumed_at: row.consumed_at == null ? null : Number(row.consumed_at) };
    },
    async consume(kind: string, id: string, nowSeconds: number): Promise<void> {
      await table().where({ kind, id }).whereNull('consumed_at').update({ consumed_at: nowSeconds });
    },
    async destroy(kind: string, id: string): Promise<void> {
      await table().where({ kind, id }).delete();
    },
    async destroyByGrantId(kind: string, grantId: string): Promise<void> {
      await table().where({ kind, grant_id: grantId }).delete();
    },
    async deleteExpired(nowSeconds: number): Promise<number> {
      return table().where('expires_at', '<=', nowSeconds).delete();
    },
  };
}

export type OidcPayloadQueries = ReturnType<typeof createOidcPayloadQueries>;

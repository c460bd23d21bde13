import type { Knex } from 'knex';
import { createBatcher } from '../db/batcher.js';
import { directSqlite } from '../db/sqlite-direct.js';

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

// The same statements as the knex builders below, written out for the SQLite fast path (one row per
// token issued: see src/db/sqlite-direct.ts).
const COLUMNS = ['kind', 'id', 'payload', 'grant_id', 'user_code', 'uid', 'expires_at', 'consumed_at'] as const;
const SQLITE = {
  upsert: `insert into oidc_payloads (${COLUMNS.join(', ')}) values (${COLUMNS.map(() => '?').join(', ')})
    on conflict (kind, id) do update set ${COLUMNS.slice(2).map((c) => `${c} = excluded.${c}`).join(', ')}`,
  findLive: (column: Lookup) => `select payload, consumed_at from oidc_payloads
    where kind = ? and ${column} = ? and (expires_at is null or expires_at > ?) limit 1`,
  consume: 'update oidc_payloads set consumed_at = ? where kind = ? and id = ? and consumed_at is null',
  destroy: 'delete from oidc_payloads where kind = ? and id = ?',
  destroyByGrantId: 'delete from oidc_payloads where kind = ? and grant_id = ?',
};

type Found = { payload: string; consumed_at: number | string | null };
const found = (row: Found | undefined) => (row
  ? { payload: row.payload, consumed_at: row.consumed_at == null ? null : Number(row.consumed_at) }
  : undefined);

export function createOidcPayloadQueries(db: Knex) {
  const table = () => db('oidc_payloads');
  // Inside a knex transaction every statement must run on it: no fast path (directSqlite says so), no batching.
  const inTransaction = (db as Knex.Transaction).isTransaction === true;
  const sqlite = directSqlite(db);
  // PostgreSQL: the upserts of one event-loop turn go as one multi-row statement (one round trip, one
  // commit). A statement may touch a row once only, so of two writes to one row the later one is sent,
  // as if they had run one after the other.
  const upsertOne = async (row: PayloadRow) => { await table().insert(row).onConflict(['kind', 'id']).merge(); };
  const upsertBatched = createBatcher<PayloadRow>({
    async all(rows) {
      const last = [...new Map(rows.map((r) => [`${r.kind}\u0000${r.id}`, r])).values()];
      // PostgreSQL takes at most 65535 parameters a statement (8 a row here).
      for (let i = 0; i < last.length; i += 1000) {
        await table().insert(last.slice(i, i + 1000)).onConflict(['kind', 'id']).merge();
      }
    },
    one: upsertOne,
  });
  return {
    async upsert(row: PayloadRow): Promise<void> {
      if (sqlite) {
        await sqlite.write(SQLITE.upsert, COLUMNS.map((c) => row[c]));
        return;
      }
      if (inTransaction) await upsertOne(row);
      else await upsertBatched(row);
    },
    /** The live row of `kind` whose `column` is `value`; expired rows count as absent. */
    async findLive(kind: string, column: Lookup, value: string, nowSeconds: number):
    Promise<{ payload: string; consumed_at: number | null } | undefined> {
      if (sqlite) return found(await sqlite.get<Found>(SQLITE.findLive(column), [kind, value, nowSeconds]));
      return found(await table()
        .select('payload', 'consumed_at')
        .where({ kind, [column]: value })
        .andWhere((q) => q.whereNull('expires_at').orWhere('expires_at', '>', nowSeconds))
        .first());
    },
    async consume(kind: string, id: string, nowSeconds: number): Promise<void> {
      if (sqlite) {
        await sqlite.write(SQLITE.consume, [nowSeconds, kind, id]);
        return;
      }
      await table().where({ kind, id }).whereNull('consumed_at').update({ consumed_at: nowSeconds });
    },
    async destroy(kind: string, id: string): Promise<void> {
      if (sqlite) {
        await sqlite.write(SQLITE.destroy, [kind, id]);
        return;
      }
      await table().where({ kind, id }).delete();
    },
    async destroyByGrantId(kind: string, grantId: string): Promise<void> {
      if (sqlite) {
        await sqlite.write(SQLITE.destroyByGrantId, [kind, grantId]);
        return;
      }
      await table().where({ kind, grant_id: grantId }).delete();
    },
    async deleteExpired(nowSeconds: number): Promise<number> {
      return table().where('expires_at', '<=', nowSeconds).delete();
    },
  };
}

export type OidcPayloadQueries = ReturnType<typeof createOidcPayloadQueries>;

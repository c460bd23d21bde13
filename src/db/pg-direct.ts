/**
 * The hot path of the PostgreSQL store: statements prepared once per connection, and (for the busiest
 * queries) run without knex's query builder.
 *
 * knex sends every query as text that PostgreSQL parses and plans anew; for the small statements behind
 * each token request that is most of the work, on both sides. Measured here (PG 15, 16 concurrent
 * lookups of one payload by primary key): through knex ≈ 8 000/s at ≈ 100 µs of Node CPU each; the same
 * statement, named and straight on the pool ≈ 28 000/s at ≈ 30 µs. PostgreSQL keeps a named statement
 * per connection (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY);
 * node-postgres prepares it the first time a connection sees the name.
 *
 * SQLite has its own fast path (sqlite-direct.ts): `directPg` returns undefined there, and inside a knex
 * transaction, whose statements must all run on its connection.
 */
import { createHash } from 'node:crypto';
import type { Db } from './connect.js';
import { fastPath } from './fast-path.js';

export type PgValue = string | number | null;

interface PgQueryConfig { text: string; values?: unknown[]; name?: string }
type Callback = (err: (Error & { code?: string }) | null, result: unknown) => void;
export interface PgConnection { query(config: PgQueryConfig | string, ...rest: unknown[]): unknown }

// One text has one name on every connection (a hash of it). Bounded, since a `whereIn` of another length
// is another text: texts beyond the bound run unnamed, as knex sends them.
const names = new Map<string, string>();
const MAX_NAMED = 500;
let generation = 0;
const PREPARABLE = /^\s*(select|insert|update|delete|with)\b/i;
// PostgreSQL refuses a prepared statement whose result columns changed under it (a migration by another
// instance added a column to a table read with `select *`).
const planChanged = (err: { code?: string; message?: string } | null) =>
  err?.code === '0A000' && /cached plan must not change result type/.test(err.message ?? '');

const TRANSACTION_STARTS = /^\s*(begin|start\s+transaction)\b/i;
// ROLLBACK TO SAVEPOINT stays in the transaction.
const TRANSACTION_ENDS = /^\s*(commit|end|abort|rollback(?!\s+to\b))\b/i;

/**
 * Names every data statement knex (or directPg) sends on this connection outside a transaction, so
 * node-postgres prepares it once and then only binds and executes it. Installed on each new pooled
 * connection (connect.ts). A statement refused because its table changed is sent again under a new
 * generation of names, which every connection then prepares afresh. Inside a transaction statements go
 * unnamed, as knex sends them: there a refused statement would abort the transaction, and a retry could
 * not save it.
 */
export function namePgStatements(conn: PgConnection): void {
  const query = conn.query.bind(conn);
  let inTransaction = false;
  conn.query = ((config: PgQueryConfig | string, ...rest: unknown[]) => {
    const text = typeof config === 'string' ? config : config?.text ?? '';
    if (TRANSACTION_STARTS.test(text)) inTransaction = true;
    else if (TRANSACTION_ENDS.test(text)) inTransaction = false;
    const callback = rest[rest.length - 1];
    if (inTransaction || typeof config !== 'object' || config.name || rest.length !== 1 || typeof callback !== 'function'
      || !PREPARABLE.test(config.text) || config.text.includes(';')) {
      return query(config, ...rest);
    }
    let hash = names.get(config.text);
    if (!hash) {
      if (names.size >= MAX_NAMED) return query(config, callback);
      hash = createHash('sha256').update(config.text).digest('hex').slice(0, 24);
      names.set(config.text, hash);
    }
    const sent = generation;
    return query({ ...config, name: `wx${sent}_${hash}` }, ((err, result) => {
      if (!planChanged(err)) return (callback as Callback)(err, result);
      if (sent === generation) generation += 1;
      return query({ ...config, name: `wx${generation}_${hash}` }, callback);
    }) as Callback);
  }) as PgConnection['query'];
}

export interface DirectPg {
  /** Runs `sql` (with `?` placeholders) on a pooled connection, without knex's builder. */
  query<T>(sql: string, params: PgValue[]): Promise<{ rows: T[]; rowCount: number }>;
}

export const directPg = fastPath('pg', (db) => createDirectPg(db));

function createDirectPg(db: Db): DirectPg {
  // `?` to `$n`, once per statement (callers pass a fixed set of statements).
  const texts = new Map<string, string>();
  const toPg = (sql: string) => {
    let text = texts.get(sql);
    if (!text) {
      let n = 0;
      text = sql.replace(/\?/g, () => `$${++n}`);
      texts.set(sql, text);
    }
    return text;
  };
  return {
    async query<T>(sql: string, params: PgValue[]) {
      const text = toPg(sql);
      const conn = (await db.client.acquireConnection()) as PgConnection;
      try {
        const result = await new Promise<{ rows: unknown[]; rowCount: number | null }>((resolve, reject) => {
          conn.query({ text, values: params }, ((err, res) => (err ? reject(err) : resolve(res as { rows: unknown[]; rowCount: number | null }))) as Callback);
        });
        return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
      } finally {
        await db.client.releaseConnection(conn);
      }
    },
  };
}

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
import { fastPathOn, type FastPath, type SqlValue } from './fast-path.js';

interface PgQueryConfig { text: string; values?: unknown[]; name?: string }
type Callback = (err: (Error & { code?: string }) | null, result: unknown) => void;
export interface PgConnection {
  query(config: PgQueryConfig | string, ...rest: unknown[]): unknown;
  getTransactionStatus(): string | null;
}

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
  conn.query = ((config: PgQueryConfig | string, ...rest: unknown[]) => {
    const callback = rest[rest.length - 1];
    // The server's own answer, from its last ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' failed one.
    const inTransaction = conn.getTransactionStatus() !== 'I';
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

export const directPg = fastPathOn('pg', (db) => createDirectPg(db));

function createDirectPg(db: Db): FastPath {
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
  /** Runs on a pooled connection, where namePgStatements (installed by connect.ts) names it. */
  async function run<T>(sql: string, params: SqlValue[]): Promise<T[]> {
    const conn = (await db.client.acquireConnection()) as PgConnection;
    try {
      return await new Promise<T[]>((resolve, reject) => {
        conn.query({ text: toPg(sql), values: params }, ((err, res) => (err ? reject(err) : resolve((res as { rows: T[] }).rows))) as Callback);
      });
    } finally {
      await db.client.releaseConnection(conn);
    }
  }
  return {
    get: async <T>(sql: string, params: SqlValue[]) => (await run<T>(sql, params))[0],
    all: run,
    write: async (sql: string, params: SqlValue[]) => { await run(sql, params); },
  };
}

/**
 * The embedded SQLite store on a thread of its own (the writer), so that no request waits for the disk.
 *
 * better-sqlite3 is synchronous. With `synchronous = FULL` (connect.ts) a commit waits for the WAL to
 * reach the disk: ≈ 250 µs of fdatasync on the benchmark's VM, a third of it kernel CPU, during which the
 * request thread would serve nobody. So one connection, owned by the writer thread, runs every statement
 * that writes (and everything knex sends: migrations, transactions, the CLI's queries). The request thread
 * keeps a read-only connection beside it (WAL lets readers run beside a writer,
 * https://www.sqlite.org/wal.html#concurrency) for the fast path's reads while the writer is busy (see
 * SqliteConnection.read). A read sees every commit whose promise has settled: the writer answers only
 * after the commit is in the WAL index, and with FULL, on disk.
 *
 * Two kinds of work reach the writer:
 * - knex's statements, run at once and in order, as knex sends them on its one pooled connection (a
 *   transaction's BEGIN … COMMIT arrive one by one, each after the previous answer);
 * - the fast path's statements (sqlite-direct.ts), which run outside any transaction (they wait for knex's
 *   to end): of all that have reached the writer when it is free (those sent while it synced the last
 *   commit), the reads are answered at once and the writes committed together (group commit), each
 *   answered after that commit. If the batch fails, each write is run alone, so a bad statement fails
 *   only its own caller.
 *
 * The price: the request thread posts each statement and reads its answer (on the benchmark's VM ≈ 3.5 µs
 * to post to a writer that is awake, 17 µs to one that sleeps, which the host must wake). The gain: no
 * request waits behind another's commit, however slow the disk (README, Performance).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import Database, { type Database as Connection } from 'better-sqlite3';
import type { Knex } from 'knex';
import type { SqlValue } from './fast-path.js';

const require = createRequire(import.meta.url);
const driverPath = require.resolve('better-sqlite3');
/** SQLITE_MAX_VARIABLE_NUMBER, as better-sqlite3 builds SQLite (https://www.sqlite.org/limits.html#max_variable_number). */
const MAX_PARAMETERS = 32766;
/** The statements a connection keeps prepared (an `IN (…)` of another length is another statement). */
const CACHED_STATEMENTS = 256;

/**
 * knex prepares every statement anew for each query; on SQLite that parse is a good share of a small
 * query's cost. `conn.prepare` then keeps the most recent ones (the writer thread keeps its own the same
 * way). Statements run one at a time on a connection, so reusing one is safe.
 */
function cachePreparedStatements(conn: { prepare(sql: string): unknown }, size: number): void {
  const prepare = conn.prepare.bind(conn);
  const cache = new Map<string, unknown>();
  conn.prepare = (sql: string) => {
    let statement = cache.get(sql);
    if (statement) {
      cache.delete(sql);
    } else {
      statement = prepare(sql);
      if (cache.size >= size) cache.delete(cache.keys().next().value!);
    }
    cache.set(sql, statement);
    return statement;
  };
}

/*
 * The messages, flat arrays (cheaper to pass between threads than objects):
 * - to the writer, per statement: op, id, statement, parameter count, parameters. The statement is its
 *   text, or for the fast path's statements (a fixed set) the number both sides gave the text when it was
 *   first sent (their texts are sent once). The op says what to do: a read (readGet, readAll: this thread
 *   found the statement read-only) is answered as it arrives; a write (write, or get and all for a write
 *   with RETURNING) waits for the next commit.
 * - to this thread, per answer: id, 1 and the result; id, 0 and [message, code]; or, for a read that
 *   arrived inside knex's transaction, id, 2 and null (read it on your own connection).
 */
const OP = { query: 0, write: 1, get: 2, all: 3, close: 4, readGet: 5, readAll: 6 } as const;
type Op = keyof typeof OP;

// Plain CommonJS, so it runs the same from sources, from dist/ and under jest.
const WRITER_SOURCE = `
const { parentPort, workerData, receiveMessageOnPort } = require('node:worker_threads');
const Database = require(${JSON.stringify(driverPath)});
const [QUERY, WRITE, GET, CLOSE, READ_GET, READ_ALL] = [${OP.query}, ${OP.write}, ${OP.get}, ${OP.close}, ${OP.readGet}, ${OP.readAll}];
const { filename, pragmas } = workerData;
const failure = (err) => [String(err && err.message || err), err && err.code];
let db;
const statements = new Map();
function prepare(sql) {
  let statement = statements.get(sql);
  if (statement) statements.delete(sql);
  else {
    statement = db.prepare(sql);
    if (statements.size >= ${CACHED_STATEMENTS}) statements.delete(statements.keys().next().value);
  }
  statements.set(sql, statement);
  return statement;
}
try {
  db = new Database(filename);
  for (const pragma of pragmas) db.pragma(pragma);
  parentPort.postMessage([0, 1, 'ready']);
} catch (err) {
  parentPort.postMessage([0, 0, failure(err)]);
  parentPort.close();
}

const replies = [];
const answer = (id, run) => {
  try { replies.push(id, 1, run()); } catch (err) { replies.push(id, 0, failure(err)); }
};
const send = () => { if (replies.length > 0) parentPort.postMessage(replies.splice(0)); };

// knex's statements: rows for a statement that returns rows, else what it changed.
function query(item) {
  try {
    const statement = prepare(item.sql);
    if (statement.reader) return { rows: statement.all(item.params) };
    const { changes, lastInsertRowid } = statement.run(item.params);
    return { changes, lastInsertRowid: Number(lastInsertRowid) };
  } catch (err) {
    // A COMMIT that failed (a deferred constraint) leaves the transaction open, and knex releases the
    // connection without a ROLLBACK: end it, or every later statement would run inside it.
    if (/^\\s*(commit|end)\\b/i.test(item.sql) && db.inTransaction) db.exec('ROLLBACK');
    throw err;
  }
}
function fast(item) {
  const statement = prepare(item.sql);
  if (item.op === WRITE) { statement.run(item.params); return undefined; }
  return (item.op === GET || item.op === READ_GET ? statement.get(item.params) : statement.all(item.params)) ?? null;
}

// The fast path's writes waiting for their commit.
let queued = [];
// Set while the writer commits (syncs) or knex's transaction is open: the request thread then reads on its
// own connection rather than wait (see SqliteConnection.read).
const busy = new Int32Array(workerData.busy);
function commitQueued() {
  // Inside knex's transaction: they run once it has ended (see take).
  if (db.inTransaction || queued.length === 0) return;
  const batch = queued;
  queued = [];
  Atomics.store(busy, 0, 1);
  try {
    if (batch.length > 1) {
      try {
        db.exec('BEGIN IMMEDIATE');
        const results = batch.map(fast);
        db.exec('COMMIT');
        batch.forEach((item, i) => replies.push(item.id, 1, results[i]));
        return;
      } catch (err) {
        if (db.inTransaction) db.exec('ROLLBACK');
        // Locked by another process past busy_timeout: alone, each would wait as long again.
        if (String(err && err.code).startsWith('SQLITE_BUSY')) {
          for (const item of batch) replies.push(item.id, 0, failure(err));
          return;
        }
      }
    }
    for (const item of batch) answer(item.id, () => fast(item));
  } finally {
    Atomics.store(busy, 0, 0);
  }
}

const texts = [];
let closing;
function take(message) {
  for (let at = 0; at < message.length;) {
    const op = message[at];
    const id = message[at + 1];
    let sql = message[at + 2];
    const count = message[at + 3];
    const params = message.slice(at + 4, at + 4 + count);
    at += 4 + count;
    if (typeof sql === 'number') sql = texts[sql];
    else if (op !== QUERY) texts.push(sql);
    if (op === QUERY) {
      Atomics.store(busy, 0, 1);
      answer(id, () => query({ sql, params }));
      Atomics.store(busy, 0, db.inTransaction ? 1 : 0);
    } else if (op === CLOSE) {
      closing = id;
    } else if (op === READ_GET || op === READ_ALL) {
      // Answered as it arrives; inside knex's transaction it would see (or wait for) that transaction, so
      // the request thread is told to read it on its own connection (code 2).
      if (db.inTransaction) replies.push(id, 2, null);
      else answer(id, () => fast({ op, sql, params }));
    } else {
      queued.push({ op, id, sql, params });
    }
  }
}
function drain() {
  for (let more = receiveMessageOnPort(parentPort); more && closing === undefined; more = receiveMessageOnPort(parentPort)) take(more.message);
}
// Answers the reads that have arrived, then commits the writes (everything sent while the last commit was
// syncing joins it) and answers them.
function work() {
  drain();
  send();
  commitQueued();
  if (closing !== undefined) answer(closing, () => { db.close(); return 'closed'; });
  send();
  if (closing !== undefined) parentPort.close();
}
parentPort.on('message', (message) => {
  take(message);
  work();
});
`;

interface Pending {
  resolve(result: unknown): void;
  reject(error: Error): void;
  /** For a read: runs it on this thread's connection instead. */
  here?: () => unknown;
}

const bindable = (value: unknown) => value === null || ['string', 'number', 'bigint'].includes(typeof value) || value instanceof Uint8Array;

/**
 * Rows come from the writer as structured clones, in which a BLOB's Buffer is a plain Uint8Array: make it
 * a Buffer again, as better-sqlite3 returns it.
 */
function revive(result: unknown): unknown {
  if (result === null || typeof result !== 'object') return result;
  const rows = Array.isArray(result) ? result : 'rows' in result && Array.isArray(result.rows) ? result.rows : [result];
  for (const row of rows) {
    if (row === null || typeof row !== 'object') continue;
    for (const [column, value] of Object.entries(row)) {
      if (value instanceof Uint8Array && !Buffer.isBuffer(value)) (row as Record<string, unknown>)[column] = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    }
  }
  return result;
}
export type QueryResult = { rows: unknown[] } | { changes: number; lastInsertRowid: number };

/** The request thread's handle on the writer thread, and its own read-only connection. */
export class SqliteConnection {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private outgoing: Array<SqlValue | undefined> = [];
  /** The reads among them, which may yet be read here instead. */
  private outgoingReads: number[] = [];
  /** The fast path's statement texts the writer has been sent, by number. */
  private readonly texts = new Map<string, number>();
  private nextId = 1;
  /** Why the writer thread has ended, once it has. */
  private stopped?: Error;
  private reader?: Connection;
  private readonly ready: Promise<void>;
  /** Non-zero while the writer commits or knex's transaction is open (set by the writer). */
  private readonly writerBusy = new Int32Array(new SharedArrayBuffer(4));

  private constructor(filename: string, pragmas: string[]) {
    this.worker = new Worker(WRITER_SOURCE, { eval: true, workerData: { filename, pragmas, busy: this.writerBusy.buffer } });
    this.ready = new Promise<void>((resolve, reject) => this.pending.set(0, { resolve: () => resolve(), reject }));
    this.worker.on('message', (replies: unknown[]) => this.settle(replies));
    this.worker.on('error', (err) => {
      this.stopped = err;
      this.failAll(err);
    });
    this.worker.on('exit', () => {
      this.stopped ??= new Error('the SQLite writer thread has stopped');
      this.failAll(this.stopped);
    });
  }

  /** Opens the database: the writer applies `pragmas` (journal mode first) before the reader opens it. */
  static async open(filename: string, pragmas: string[]): Promise<SqliteConnection> {
    const conn = new SqliteConnection(filename, pragmas);
    await conn.ready;
    try {
      conn.reader = new Database(filename, { readonly: true });
      // A reader may have to wait for a writer of another process that is recovering the WAL.
      conn.reader.pragma('busy_timeout = 5000');
    } catch (err) {
      await conn.close();
      throw err;
    }
    cachePreparedStatements(conn.reader, CACHED_STATEMENTS);
    return conn;
  }

  /** A statement sent by knex: run at once, in the order knex sends them. */
  query(sql: string, params: SqlValue[]): Promise<QueryResult> {
    return this.send('query', sql, params) as Promise<QueryResult>;
  }

  /** A write of the fast path; settles once committed, with the other writes that reached the writer with it. */
  write(sql: string, params: SqlValue[]): Promise<void> {
    return this.send('write', sql, params) as Promise<void>;
  }

  /** The first row a statement returns: read here when it only reads, else run (and committed) by the writer. */
  get<T>(sql: string, params: SqlValue[]): Promise<T | undefined> {
    return this.read('get', sql, params) as Promise<T | undefined>;
  }

  all<T>(sql: string, params: SqlValue[]): Promise<T[]> {
    return this.read('all', sql, params) as Promise<T[]>;
  }

  /**
   * A read runs on the writer while it is free: SQLite drops a connection's page cache whenever another
   * connection has committed, so a read here after the writer's commits finds its pages cold (a token with
   * its grant and user took ≈ 30 µs here against ≈ 8 µs on the writer, and refresh_token went from
   * 0.70–0.77 of the bare library to 0.81–0.84). While the writer syncs a commit, waits for a lock or holds
   * knex's transaction, the read runs here instead, on what is committed, rather than wait: when it is
   * asked (the writer's flag), when it is sent (the flag again), and when the writer answers that its
   * transaction is open. (A read sent just as the writer starts a commit waits for that commit.)
   */
  private read(op: 'get' | 'all', sql: string, params: SqlValue[]): Promise<unknown> {
    let here: () => unknown;
    try {
      const statement = this.reader!.prepare(sql);
      // A write with RETURNING: only the writer may run it.
      if (!statement.readonly) return this.send(op, sql, params).then((row) => row ?? undefined);
      here = () => {
        this.readsHere += 1;
        return statement[op](...params);
      };
      if (Atomics.load(this.writerBusy, 0) !== 0) return Promise.resolve(here());
    } catch (err) {
      return Promise.reject(err);
    }
    // The writer answers null for no row.
    return this.send(op === 'get' ? 'readGet' : 'readAll', sql, params, here).then((row) => row ?? undefined);
  }

  /** Reads run on this thread's connection so far (the others ran on the writer). */
  readsHere = 0;

  /** Whether the writer still runs (knex's pool replaces a connection whose writer has ended). */
  get usable(): boolean { return !this.stopped; }

  /** The read-only connection of this thread (it also tells which statements only read). */
  get readConnection(): Connection { return this.reader!; }

  /**
   * Commits what is queued, closes both connections and ends the thread. (A write queued behind a knex
   * transaction that is still open is rejected: the writer has stopped.)
   */
  async close(): Promise<void> {
    await this.send('close', '', []).catch(() => undefined);
    // Only now: until the writer has answered, a read sent before may still come back to be read here
    // (code 2, or the check in flush).
    this.reader?.close();
    // Held until the thread has ended: once the answer is in, nothing else may keep the process alive.
    this.worker.ref();
    await new Promise<void>((resolve) => { if (this.worker.threadId === -1) resolve(); else this.worker.once('exit', () => resolve()); });
  }

  private send(op: Op, sql: string, params: SqlValue[], here?: () => unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.stopped) {
        reject(this.stopped);
        return;
      }
      // Ensure every parameter is one SQLite binds (and a message can carry), and not more than it binds,
      // before anything is numbered or waits: past this point nothing may throw.
      if (params.length > MAX_PARAMETERS) {
        reject(new RangeError(`SQLite binds at most ${MAX_PARAMETERS} parameters in a statement, not ${params.length}`));
        return;
      }
      const bad = params.find((p) => !bindable(p));
      if (bad !== undefined) {
        reject(new TypeError(`SQLite cannot bind a parameter of type ${typeof bad}`));
        return;
      }
      const id = this.nextId++;
      // Like a socket, the thread keeps the process alive only while a statement waits for its answer.
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject, here });
      if (here) this.outgoingReads.push(id);
      let statement: string | number = sql;
      if (op !== 'query') {
        const known = this.texts.get(sql);
        if (known === undefined) this.texts.set(sql, this.texts.size);
        else statement = known;
      }
      // The statements of one synchronous stretch go in one message, at once: the writer groups what
      // reaches it while it syncs the previous commit. (Holding them until the previous batch is answered
      // makes a closed loop of requests fall into step: all wait for the same commit while this thread idles.)
      const first = this.outgoing.length === 0;
      this.outgoing.push(OP[op], id, statement, params.length);
      // Not a spread: a long list would overflow the call's arguments.
      for (const param of params) this.outgoing.push(param);
      if (first) queueMicrotask(() => this.flush());
    });
  }

  private flush(): void {
    const reads = this.outgoingReads.splice(0);
    try {
      this.worker.postMessage(this.outgoing.splice(0));
      // Busy since the reads were asked: read them here now (the writer's answers, later, are ignored).
      if (reads.length > 0 && Atomics.load(this.writerBusy, 0) !== 0) this.settle(reads.flatMap((id) => [id, 2, null]));
    } catch (err) {
      // The writer and this thread no longer agree on what was sent (the numbering of statement texts):
      // this connection is done; knex's pool opens another (validateConnection).
      this.stopped = err as Error;
      this.failAll(this.stopped);
      void this.worker.terminate();
    }
  }

  private settle(replies: unknown[]): void {
    for (let at = 0; at < replies.length; at += 3) {
      const id = replies[at] as number;
      const pending = this.pending.get(id);
      if (!pending) continue;
      this.pending.delete(id);
      if (replies[at + 1] === 1) {
        pending.resolve(revive(replies[at + 2]));
      } else if (replies[at + 1] === 2) {
        try {
          // Only reads (sent with `here`) are handed back.
          pending.resolve(pending.here!());
        } catch (err) {
          pending.reject(err as Error);
        }
      } else {
        const [message, code] = replies[at + 2] as [string, string | undefined];
        pending.reject(Object.assign(new Error(message), code ? { code } : {}));
      }
    }
    if (this.pending.size === 0) this.worker.unref();
  }

  private failAll(error: Error): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
    this.worker.unref();
  }
}

// The knex dialect whose raw connection is a SqliteConnection (knex's own runs better-sqlite3 on this thread).
const BetterSqlite3Client = require('knex/lib/dialects/better-sqlite3/index.js') as new (config: unknown) => object;
const connections = new WeakMap<object, SqliteConnection>();

/** A knex client for SQLite whose statements run on the writer thread; `pragmas` are set on its connection. */
export function sqliteClient(pragmas: string[]): typeof Knex.Client {
  class SqliteThreadClient extends BetterSqlite3Client {
    declare connectionSettings: { filename: string };
    declare _formatBindings: (bindings: unknown[] | undefined) => SqlValue[];

    async acquireRawConnection(): Promise<SqliteConnection> {
      const conn = await SqliteConnection.open(this.connectionSettings.filename, pragmas);
      connections.set(this, conn);
      return conn;
    }

    validateConnection(conn: SqliteConnection): boolean {
      return conn.usable;
    }

    async destroyRawConnection(conn: SqliteConnection): Promise<void> {
      if (connections.get(this) === conn) connections.delete(this);
      await conn.close();
    }

    async _query(conn: SqliteConnection, obj: { sql?: string; bindings?: unknown[]; response?: unknown; context?: unknown }) {
      if (!obj.sql) throw new Error('The query is empty');
      const result = await conn.query(obj.sql, this._formatBindings(obj.bindings));
      if ('rows' in result) {
        obj.response = result.rows;
      } else {
        obj.response = result;
        obj.context = { lastID: result.lastInsertRowid, changes: result.changes };
      }
      return obj;
    }
  }
  return SqliteThreadClient as unknown as typeof Knex.Client;
}

/** The connection a knex client of sqliteClient() has open, if any. */
export function sqliteConnectionOf(client: object): SqliteConnection | undefined {
  return connections.get(client);
}

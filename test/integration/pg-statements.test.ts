/**
 * PostgreSQL statements are prepared once per connection (src/db/pg-direct.ts). What must hold: results
 * are the same as unprepared, and a table changed under a prepared `select *` (a migration run by another
 * instance) does not break the connections that prepared it.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import knex, { type Knex } from 'knex';
import pg from 'pg';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';
import { connect } from '../../src/db/connect.js';
import { namePgStatements, type PgConnection } from '../../src/db/pg-direct.js';

// Without TEST_DATABASE_URL there is nothing to run here (under CI=true, databaseKinds() fails instead).
const kinds = databaseKinds().filter((k) => k === 'postgres');
const suite = kinds.length > 0 ? describe.each(kinds) : describe.skip.each(['postgres' as const]);

suite('prepared statements on %s', (kind) => {
  let database: TestDatabase;
  let db: Knex;
  beforeAll(async () => {
    database = await createTestDatabase(kind);
    // One connection, so every query below meets the statements the earlier ones prepared.
    db = knex({
      client: 'pg', connection: database.target.database_url,
      pool: { min: 1, max: 1, afterCreate: (conn: PgConnection, done: (e: null, c: unknown) => void) => { namePgStatements(conn); done(null, conn); } },
    });
    await db.schema.createTable('gadgets', (t) => { t.string('id').primary(); t.integer('size'); });
    await db('gadgets').insert([{ id: 'a', size: 1 }, { id: 'b', size: 2 }]);
  });
  afterAll(async () => {
    await db?.destroy();
    await database?.dispose();
  });

  it('prepares each data statement once on a connection and answers as before', async () => {
    for (const id of ['a', 'b', 'a']) expect(await db('gadgets').where({ id }).first()).toEqual({ id, size: id === 'a' ? 1 : 2 });
    const prepared = await db.raw<{ rows: Array<{ statement: string }> }>('select statement from pg_prepared_statements');
    expect(prepared.rows.filter((r) => r.statement.startsWith('select * from "gadgets" where "id" = $1'))).toHaveLength(1);
  });

  it('survives a column added under a prepared select *', async () => {
    expect(await db('gadgets').where({ id: 'a' }).first()).toEqual({ id: 'a', size: 1 });
    // Another instance migrates: a plain client, outside our pool.
    const other = new pg.Client({ connectionString: database.target.database_url });
    await other.connect();
    try {
      await other.query('alter table gadgets add column colour text');
      // The hazard is real: a statement prepared before the change is refused after it.
      await other.query({ name: 'before', text: 'select * from gadgets where id = $1', values: ['a'] });
      await other.query('alter table gadgets add column weight int');
      await expect(other.query({ name: 'before', text: 'select * from gadgets where id = $1', values: ['a'] }))
        .rejects.toMatchObject({ code: '0A000' });
    } finally {
      await other.end();
    }
    expect(await db('gadgets').where({ id: 'a' }).first()).toEqual({ id: 'a', size: 1, colour: null, weight: null });
    expect(await db('gadgets').where({ id: 'b' }).first()).toEqual({ id: 'b', size: 2, colour: null, weight: null });
  });

  it('is installed on the connections of the application pool, unless prepared_statements is false', async () => {
    const preparedOnAppPool = async (preparedStatements?: boolean) => {
      const app = connect({ ...database.target, prepared_statements: preparedStatements });
      try {
        // One query at a time: the pool opens one connection and uses it for both.
        expect(await app('gadgets').where({ id: 'b' }).first()).toMatchObject({ id: 'b', size: 2 });
        const prepared = await app.raw<{ rows: unknown[] }>("select 1 from pg_prepared_statements where statement like 'select * from \"gadgets\"%'");
        expect(app.client.pool.numUsed() + app.client.pool.numFree()).toBe(1);
        return prepared.rows.length;
      } finally {
        await app.destroy();
      }
    };
    expect(await preparedOnAppPool()).toBeGreaterThan(0);
    expect(await preparedOnAppPool(false)).toBe(0);
  });

  it('sends statements unnamed inside a transaction, where a refused one could not be retried', async () => {
    const named = await db.transaction(async (trx) => {
      expect(await trx('gadgets').where({ size: 2 }).select('id')).toEqual([{ id: 'b' }]);
      await trx.raw('savepoint inner_one');
      await trx.raw('rollback to savepoint inner_one');
      expect(await trx('gadgets').where({ size: 1 }).select('id')).toEqual([{ id: 'a' }]);
      return (await trx.raw<{ rows: unknown[] }>("select 1 from pg_prepared_statements where statement like 'select \"id\" from \"gadgets\"%'")).rows.length;
    });
    expect(named).toBe(0);
    // After the transaction, naming resumes on the connection.
    expect(await db('gadgets').where({ size: 2 }).select('id')).toEqual([{ id: 'b' }]);
    const after = await db.raw<{ rows: unknown[] }>("select 1 from pg_prepared_statements where statement like 'select \"id\" from \"gadgets\"%'");
    expect(after.rows.length).toBe(1);
  });
});

import type { Knex } from 'knex';

// Times are integer epoch seconds: they read back the same on SQLite and PostgreSQL.
export async function up(db: Knex): Promise<void> {
  await db.schema.createTable('users', (t) => {
    t.string('id', 36).primary();
    t.string('username', 64).notNullable().unique();
    t.string('email', 254).notNullable().unique();
    t.string('name', 200);
    t.boolean('email_verified').notNullable().defaultTo(false);
    t.string('password_hash', 100);
    t.boolean('disabled').notNullable().defaultTo(false);
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
  });

  // Everything oidc-provider stores (sessions, interactions, grants, codes, tokens) goes through this table.
  await db.schema.createTable('oidc_payloads', (t) => {
    t.string('kind', 40).notNullable();
    t.string('id', 255).notNullable();
    t.text('payload').notNullable();
    t.string('grant_id', 255);
    t.string('user_code', 255);
    t.string('uid', 255);
    t.bigInteger('expires_at');
    t.bigInteger('consumed_at');
    t.primary(['kind', 'id']);
    t.index(['grant_id']);
    t.index(['uid']);
    t.index(['user_code']);
    t.index(['expires_at']);
  });

  // Signing keys and cookie keys, shared by every instance on the same database.
  await db.schema.createTable('keystore', (t) => {
    t.string('id', 64).primary();
    t.string('kind', 20).notNullable();
    t.text('material').notNullable();
    t.bigInteger('created_at').notNullable();
  });
}

export async function down(db: Knex): Promise<void> {
  await db.schema.dropTable('keystore');
  await db.schema.dropTable('oidc_payloads');
  await db.schema.dropTable('users');
}

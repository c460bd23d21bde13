import type { Knex } from 'knex';

// The account a token belongs to, in its own column, so that a token is read together with its user in
// one statement (src/oidc/read-ahead.ts). Rows written before it have none and are read as before; no
// index: nothing looks rows up by it.
export async function up(db: Knex): Promise<void> {
  await db.schema.alterTable('oidc_payloads', (t) => {
    t.string('account_id', 255);
  });
}

export async function down(db: Knex): Promise<void> {
  await db.schema.alterTable('oidc_payloads', (t) => {
    t.dropColumn('account_id');
  });
}

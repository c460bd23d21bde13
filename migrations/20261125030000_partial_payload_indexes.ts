import type { Knex } from 'knex';

// Many rows have no grant (client-credentials tokens, sessions) and most have no uid or user code: index
// only the rows that do, so a token insert updates fewer B-trees. The lookups (`column = ?`) imply
// `column is not null`, so both SQLite and PostgreSQL still use these indexes.
const PARTIAL = ['grant_id', 'uid', 'user_code'] as const;

export async function up(db: Knex): Promise<void> {
  await db.schema.alterTable('oidc_payloads', (t) => {
    for (const column of PARTIAL) t.dropIndex([column]);
  });
  await db.schema.alterTable('oidc_payloads', (t) => {
    for (const column of PARTIAL) {
      t.index([column], `oidc_payloads_${column}_partial`, { predicate: db.whereNotNull(column) });
    }
  });
}

export async function down(db: Knex): Promise<void> {
  await db.schema.alterTable('oidc_payloads', (t) => {
    for (const column of PARTIAL) t.dropIndex([column], `oidc_payloads_${column}_partial`);
  });
  await db.schema.alterTable('oidc_payloads', (t) => {
    for (const column of PARTIAL) t.index([column]);
  });
}

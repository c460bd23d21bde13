import type { Knex } from 'knex';

// Signing an account out everywhere (src/auth/sign-out.ts) deletes its sessions, interactions, grants and
// tokens by account: index the rows that name one (client-credentials tokens do not, and so cost no index
// entry). While it builds, the writes of instances of the previous version wait for it.
//
// Rows written before their account had a column of its own (all rows before 20261125040000, and
// interactions before this migration) are not filled in here: a backfill of a large table took minutes
// while it held those writes back (review finding). Signing out finds them by their payload instead
// (OidcPayloadQueries.deleteForAccount), until they expire.
const INDEX = 'oidc_payloads_account_id_partial';

export async function up(db: Knex): Promise<void> {
  // Not CONCURRENTLY: that cannot run in a transaction, and outside one it waits for every open
  // transaction to end, migrate()'s advisory lock among them, for ever.
  await db.raw('create index if not exists ?? on oidc_payloads (account_id) where account_id is not null', [INDEX]);
}

export async function down(db: Knex): Promise<void> {
  await db.raw('drop index if exists ??', [INDEX]);
}

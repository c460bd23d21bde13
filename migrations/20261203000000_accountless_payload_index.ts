import type { Knex } from 'knex';

// Signing an account out everywhere (OidcPayloadQueries.deleteForAccount) also looks for its rows that
// have no account_id (written before 20261125040000, or interactions before 20261202000000) by their
// payload. Without an index that meant reading every session, grant and token of every account: about
// 100 ms per sign-out with 300 000 rows, on both stores. This one holds only the rows without an account
// among the kinds that can name one (pre-login interactions, legacy rows), so that search reads those alone;
// client-credentials tokens, which never name an account, stay out of it and cost no index entry.
//
// The predicate is written out in full, and deleteForAccount's statement repeats it word for word
// (ACCOUNTLESS in src/queries/oidc-payloads.ts): SQLite uses a partial index only when the query's WHERE
// clause contains the index's terms as they are
// (https://www.sqlite.org/partialindex.html#queries_using_partial_indexes). Never edit it here: databases
// keep the index as this migration made it, and a storage test fails when the two texts differ. Both
// stores build it while the writes of instances of the previous version wait; it reads the table once and
// holds few entries.
const INDEX = 'oidc_payloads_accountless_partial';

export async function up(db: Knex): Promise<void> {
  await db.raw(`create index if not exists ?? on oidc_payloads (kind) where account_id is null and kind in ('Session', 'Interaction', 'Grant', 'AccessToken', 'RefreshToken', 'AuthorizationCode', 'DeviceCode', 'BackchannelAuthenticationRequest')`, [INDEX]);
}

export async function down(db: Knex): Promise<void> {
  await db.raw('drop index if exists ??', [INDEX]);
}

import type { Knex } from 'knex';

// Signing an account out everywhere (src/auth/sign-out.ts) deletes its sessions, grants and tokens by
// account: index the rows that name one (client-credentials tokens and interactions do not, and so cost
// no index entry). Rows written before 20261125040000_payload_account have no account_id: it is filled in
// from the payload, for the kinds that carry an accountId, so that their tokens can be revoked too.
const ACCOUNT_KINDS = ['Session', 'Grant', 'AccessToken', 'RefreshToken', 'AuthorizationCode', 'DeviceCode', 'BackchannelAuthenticationRequest'];

export async function up(db: Knex): Promise<void> {
  const fromPayload = db.client.config.client === 'pg' ? db.raw("cast(payload as json) ->> 'accountId'") : db.raw("json_extract(payload, '$.accountId')");
  await db('oidc_payloads').whereNull('account_id').whereIn('kind', ACCOUNT_KINDS).update({ account_id: fromPayload });
  await db.schema.alterTable('oidc_payloads', (t) => {
    t.index(['account_id'], 'oidc_payloads_account_id_partial', { predicate: db.whereNotNull('account_id') });
  });
}

export async function down(db: Knex): Promise<void> {
  await db.schema.alterTable('oidc_payloads', (t) => {
    t.dropIndex(['account_id'], 'oidc_payloads_account_id_partial');
  });
}

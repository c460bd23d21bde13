import type { Knex } from 'knex';

// Signing an account out everywhere (src/auth/sign-out.ts) deletes its sessions, grants and tokens by
// account: index the rows that name one (client-credentials tokens do not, and so cost no index entry).
// Rows written before 20261125040000_payload_account have no account_id: it is filled in from the payload,
// for the kinds that carry an accountId, so that their tokens can be revoked too.
//
// In one transaction, the index first: from then on the writes of instances of the previous version wait
// until the migration commits (seconds for a million rows), and none can hold a row the backfill needs
// while waiting for the table (backfill first, the index after: a delete waited seconds behind the
// backfill's row locks, then CREATE INDEX deadlocked with it; a review finding). The backfill reads and
// updates only the rows that name an account in their payload.

const INDEX = 'oidc_payloads_account_id_partial';
const ACCOUNT_KINDS = ['Session', 'Grant', 'AccessToken', 'RefreshToken', 'AuthorizationCode', 'DeviceCode', 'BackchannelAuthenticationRequest'];
const BATCH = 500;

/** The payload's accountId, read in JavaScript: PostgreSQL's json type refuses some of what payloads hold
 * (a NUL a client sent, as in `/session/end?state=%00`, made the cast fail and the start with it). */
function accountIdOf(payload: string): string | undefined {
  try {
    const parsed = JSON.parse(payload) as { accountId?: unknown } | null;
    return typeof parsed?.accountId === 'string' ? parsed.accountId : undefined;
  } catch {
    return undefined;
  }
}

export async function up(db: Knex): Promise<void> {
  // Not CONCURRENTLY: that cannot run in a transaction, and outside one it waits for every open
  // transaction to end, migrate()'s advisory lock among them, for ever.
  await db.raw('create index if not exists ?? on oidc_payloads (account_id) where account_id is not null', [INDEX]);
  let after: [string, string] | undefined;
  for (;;) {
    const rows: Array<{ kind: string; id: string; payload: string }> = await db('oidc_payloads')
      .select('kind', 'id', 'payload')
      .whereNull('account_id').whereIn('kind', ACCOUNT_KINDS).andWhere('payload', 'like', '%"accountId"%')
      .modify((q) => { if (after) q.andWhereRaw('(kind, id) > (?, ?)', after); })
      .orderBy([{ column: 'kind' }, { column: 'id' }])
      .limit(BATCH);
    const found = rows.flatMap((r) => {
      const accountId = accountIdOf(r.payload);
      return accountId ? [[r.kind, r.id, accountId]] : [];
    });
    if (found.length > 0) {
      // One statement a batch, the same on both stores; `account_id is null` leaves a row an instance
      // rewrote meanwhile as it wrote it.
      await db.raw(`with v (kind, id, account_id) as (values ${found.map(() => '(?, ?, ?)').join(', ')})
        update oidc_payloads set account_id = (select v.account_id from v where v.kind = oidc_payloads.kind and v.id = oidc_payloads.id)
        where account_id is null and (kind, id) in (select kind, id from v)`, found.flat());
    }
    if (rows.length < BATCH) break;
    after = [rows[rows.length - 1]!.kind, rows[rows.length - 1]!.id];
  }
}

export async function down(db: Knex): Promise<void> {
  await db.raw('drop index if exists ??', [INDEX]);
}

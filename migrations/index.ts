import type { Knex } from 'knex';
import * as init from './20261125000000_init.js';
import * as secondFactors from './20261125010000_second_factors.js';
import * as abuseResistance from './20261125020000_abuse_resistance.js';
import * as partialPayloadIndexes from './20261125030000_partial_payload_indexes.js';
import * as payloadAccount from './20261125040000_payload_account.js';
import * as credentialIdLength from './20261130000000_credential_id_length.js';
import * as payloadAccountIndex from './20261202000000_payload_account_index.js';
import * as normalisedEmails from './20261202010000_normalised_emails.js';
import * as accountlessPayloadIndex from './20261203000000_accountless_payload_index.js';
import * as unknownLoginsOutOfThrottle from './20261203010000_unknown_logins_out_of_throttle.js';

export interface Migration {
  up(db: Knex): Promise<void>;
  down(db: Knex): Promise<void>;
}

/** Every migration, by name; names sort in the order they apply. */
export const migrations: Record<string, Migration> = {
  '20261125000000_init': init,
  '20261125010000_second_factors': secondFactors,
  '20261125020000_abuse_resistance': abuseResistance,
  '20261125030000_partial_payload_indexes': partialPayloadIndexes,
  '20261125040000_payload_account': payloadAccount,
  '20261130000000_credential_id_length': credentialIdLength,
  '20261202000000_payload_account_index': payloadAccountIndex,
  '20261202010000_normalised_emails': normalisedEmails,
  '20261203000000_accountless_payload_index': accountlessPayloadIndex,
  '20261203010000_unknown_logins_out_of_throttle': unknownLoginsOutOfThrottle,
};

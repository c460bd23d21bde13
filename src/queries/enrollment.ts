import type { Knex } from 'knex';
import { statements } from '../db/fast.js';

export interface EnrollmentCounts {
  passkeys: number;
  deviceBoundPasskeys: number;
  /** Confirmed authenticator apps (0 or 1). */
  totp: number;
  unusedRecoveryCodes: number;
}

const COUNTS = `select
  (select count(*) from webauthn_credentials where user_id = ?) as passkeys,
  (select count(*) from webauthn_credentials where user_id = ? and not backup_eligible) as device_bound,
  (select count(*) from totp_factors where user_id = ? and confirmed_at is not null) as totp,
  (select count(*) from recovery_codes where user_id = ? and used_at is null) as recovery_codes`;

/**
 * What a user has enrolled, counted in one statement: every sign-in step and page asks, so it is one
 * round trip instead of one per factor table.
 */
export function createEnrollmentQueries(db: Knex | Knex.Transaction) {
  const run = statements(db);
  return {
    async counts(userId: string): Promise<EnrollmentCounts> {
      const row = (await run.get<Record<string, number | string>>(COUNTS, [userId, userId, userId, userId]))!;
      return {
        passkeys: Number(row.passkeys),
        deviceBoundPasskeys: Number(row.device_bound),
        totp: Number(row.totp),
        unusedRecoveryCodes: Number(row.recovery_codes),
      };
    },
  };
}

export type EnrollmentQueries = ReturnType<typeof createEnrollmentQueries>;

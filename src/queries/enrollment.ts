import type { Knex } from 'knex';

export interface EnrollmentCounts {
  passkeys: number;
  deviceBoundPasskeys: number;
  /** Confirmed authenticator apps (0 or 1). */
  totp: number;
  unusedRecoveryCodes: number;
}

/**
 * What a user has enrolled, counted in one statement: every sign-in step and page asks, so it is one
 * round trip instead of one per factor table.
 */
export function createEnrollmentQueries(db: Knex | Knex.Transaction) {
  return {
    async counts(userId: string): Promise<EnrollmentCounts> {
      const count = (table: string) => db(table).count('*').where({ user_id: userId });
      const row = await db.select(
        count('webauthn_credentials').as('passkeys'),
        count('webauthn_credentials').where({ backup_eligible: false }).as('device_bound'),
        count('totp_factors').whereNotNull('confirmed_at').as('totp'),
        count('recovery_codes').whereNull('used_at').as('recovery_codes'),
      ).first() as Record<string, number | string>;
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

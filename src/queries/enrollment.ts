import type { Knex } from 'knex';
import { statements } from '../db/fast.js';
import { lockUser } from './users.js';

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

/** A passkey by its credential id, or the authenticator app. */
export type FactorToRemove = { passkeyId: string } | 'totp';
export type Removal = 'removed' | 'not_found' | 'refused';

/** Ends a transaction without its changes, with what to answer. */
class Rollback {
  constructor(readonly result: Removal) {}
}

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
    /**
     * Removes one factor unless `allowed` refuses what would be left, judged in the same transaction,
     * with the user's row locked: two removals at once are judged one after the other, each on what the
     * other left (judged on counts read before, both passed and left no factor). The recovery codes go
     * with the last factor.
     */
    async removeFactor(userId: string, factor: FactorToRemove, allowed: (after: EnrollmentCounts) => boolean): Promise<Removal> {
      try {
        return await db.transaction(async (trx) => {
          await lockUser(trx, userId);
          const removed = factor === 'totp'
            ? await trx('totp_factors').where({ user_id: userId }).delete()
            : await trx('webauthn_credentials').where({ id: factor.passkeyId, user_id: userId }).delete();
          if (removed === 0) throw new Rollback('not_found');
          const after = await createEnrollmentQueries(trx).counts(userId);
          if (!allowed(after)) throw new Rollback('refused');
          if (after.passkeys === 0 && after.totp === 0) await trx('recovery_codes').where({ user_id: userId }).delete();
          return 'removed' as const;
        });
      } catch (err) {
        if (err instanceof Rollback) return err.result;
        throw err;
      }
    },
  };
}

export type EnrollmentQueries = ReturnType<typeof createEnrollmentQueries>;

/** What a user has enrolled, in the shape the sign-in policy reads. */
import type { EnrollmentCounts, EnrollmentQueries, FactorToRemove, Removal } from '../queries/enrollment.js';
import type { Enrolled } from './sign-in-policy.js';

const toEnrolled = (counts: EnrollmentCounts): Enrolled => ({
  passkeys: counts.passkeys,
  deviceBoundPasskeys: counts.deviceBoundPasskeys,
  totp: counts.totp > 0,
  recoveryCodes: counts.unusedRecoveryCodes,
});

export function createEnrollmentReader(deps: { queries: EnrollmentQueries }) {
  return async function enrolled(userId: string): Promise<Enrolled> {
    return toEnrolled(await deps.queries.counts(userId));
  };
}

export type EnrollmentReader = ReturnType<typeof createEnrollmentReader>;

/**
 * Removes a factor unless `conflict` objects to what would be left (its message is returned then); the
 * judgement and the removal are one step (queries: removeFactor), and recovery codes go with the last factor.
 */
export function createFactorRemoval(deps: { queries: EnrollmentQueries }) {
  return async function removeFactor(userId: string, factor: FactorToRemove, conflict: (after: Enrolled) => string | undefined):
  Promise<{ result: Removal; conflict?: string }> {
    let objection: string | undefined;
    const result = await deps.queries.removeFactor(userId, factor, (after) => {
      objection = conflict(toEnrolled(after));
      return objection === undefined;
    });
    return result === 'refused' ? { result, conflict: objection } : { result };
  };
}

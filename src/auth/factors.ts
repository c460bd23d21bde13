/** What a user has enrolled, in the shape the sign-in policy reads. */
import type { EnrollmentQueries } from '../queries/enrollment.js';
import type { Enrolled } from './sign-in-policy.js';

export function createEnrollmentReader(deps: { queries: EnrollmentQueries }) {
  return async function enrolled(userId: string): Promise<Enrolled> {
    const counts = await deps.queries.counts(userId);
    return {
      passkeys: counts.passkeys,
      deviceBoundPasskeys: counts.deviceBoundPasskeys,
      totp: counts.totp > 0,
      recoveryCodes: counts.unusedRecoveryCodes,
    };
  };
}

export type EnrollmentReader = ReturnType<typeof createEnrollmentReader>;

/** What a user has enrolled, gathered from the per-factor services. */
import type { PasskeyQueries } from '../queries/passkeys.js';
import type { RecoveryCodeService } from './recovery-codes.js';
import type { Enrolled } from './sign-in-policy.js';
import type { TotpService } from './totp.js';

export function createEnrollmentReader(deps: { passkeys: PasskeyQueries; totp: TotpService; recovery: RecoveryCodeService }) {
  return async function enrolled(userId: string): Promise<Enrolled> {
    const [passkeys, totp, recoveryCodes] = await Promise.all([
      deps.passkeys.listForUser(userId), deps.totp.isEnrolled(userId), deps.recovery.remaining(userId),
    ]);
    return {
      passkeys: passkeys.length,
      deviceBoundPasskeys: passkeys.filter((p) => !p.backup_eligible).length,
      totp,
      recoveryCodes,
    };
  };
}

export type EnrollmentReader = ReturnType<typeof createEnrollmentReader>;

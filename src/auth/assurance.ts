/**
 * What a sign-in proved, in the vocabulary tokens use: `acr` (REFEDS Assurance profiles and OpenID EAP
 * ACR values) and `amr` (RFC 8176 §2). Pure functions over the factors a session has verified.
 */

export const ACR = {
  /** One factor. https://refeds.org/profile/sfa */
  sfa: 'https://refeds.org/profile/sfa',
  /** Two factors of different kinds. https://refeds.org/profile/mfa */
  mfa: 'https://refeds.org/profile/mfa',
  /** Phishing-resistant (OpenID EAP ACR Values 1.0 §2): a user-verified passkey. */
  phr: 'phr',
  /** Phishing-resistant and hardware-bound (EAP §2): a passkey that is not backup-eligible. */
  phrh: 'phrh',
} as const;

/** Weakest to strongest; advertised in `acr_values_supported`. */
export const ACR_ORDER: readonly string[] = [ACR.sfa, ACR.mfa, ACR.phr, ACR.phrh];

export type FactorMethod = 'pwd' | 'otp' | 'recovery_code' | 'passkey';

export interface VerifiedFactor {
  method: FactorMethod;
  /** Epoch seconds of the verification. */
  at: number;
  /** Passkeys: the authenticator performed user verification (UV flag, WebAuthn §6.1). */
  userVerified?: boolean;
  /** Passkeys: backup-eligible (BE flag), i.e. a synced credential. */
  backupEligible?: boolean;
  /** Verified by the session this sign-in started from (a step-up), not in this sign-in. */
  carried?: boolean;
}

/** RFC 8176 values for the verified factors, plus our `recovery_code`. */
export function amrFor(factors: readonly VerifiedFactor[]): string[] {
  const amr = new Set<string>();
  for (const factor of factors) {
    if (factor.method === 'pwd') amr.add('pwd');
    if (factor.method === 'otp') amr.add('otp');
    if (factor.method === 'recovery_code') amr.add('recovery_code');
    if (factor.method === 'passkey') {
      amr.add(factor.backupEligible ? 'swk' : 'hwk');
      // RFC 8176 §2 `user`: a test of the user's presence, which user verification includes (the
      // authenticator checked a biometric or PIN: WebAuthn L3 §6.1, flags UP and UV both set).
      if (factor.userVerified) amr.add('user');
    }
  }
  const kinds = new Set(factors.map((f) => f.method));
  const uvPasskey = factors.some((f) => f.method === 'passkey' && f.userVerified);
  if (kinds.size >= 2 || uvPasskey) amr.add('mfa');
  return [...amr];
}

/** Every acr value the factors satisfy, weakest first. */
export function satisfiedAcrs(factors: readonly VerifiedFactor[]): string[] {
  const out: string[] = [];
  if (factors.length === 0) return out;
  out.push(ACR.sfa);
  const kinds = new Set(factors.map((f) => f.method));
  const uvPasskeys = factors.filter((f) => f.method === 'passkey' && f.userVerified);
  if (kinds.size >= 2 || uvPasskeys.length > 0) out.push(ACR.mfa);
  if (uvPasskeys.length > 0) out.push(ACR.phr);
  if (uvPasskeys.some((f) => !f.backupEligible)) out.push(ACR.phrh);
  return out;
}

/**
 * The acr to put in tokens: the strongest requested value the factors satisfy; with none requested
 * (or none satisfied), the strongest achieved. Never more than was achieved.
 */
export function acrFor(factors: readonly VerifiedFactor[], requested: readonly string[] = []): string | undefined {
  const satisfied = satisfiedAcrs(factors);
  const matching = ACR_ORDER.filter((acr) => requested.includes(acr) && satisfied.includes(acr));
  return matching.at(-1) ?? satisfied.at(-1);
}

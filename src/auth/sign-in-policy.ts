/**
 * Which authentication a request demands, and what the user must do next to meet it. Pure functions:
 * the handlers gather the facts (client policy, request, enrolled factors, verified factors) and render
 * whatever step comes back.
 */
import type { MFA_POLICIES } from '../config/schema.js';
import { ACR, ACR_ORDER, satisfiedAcrs, type VerifiedFactor } from './assurance.js';

export type MfaPolicy = (typeof MFA_POLICIES)[number];

export interface Enrolled {
  passkeys: number;
  /** Passkeys that are not backup-eligible (can satisfy `phrh`). */
  deviceBoundPasskeys: number;
  totp: boolean;
  recoveryCodes: number;
}

export const hasAnyFactor = (e: Enrolled) => e.passkeys > 0 || e.totp;

/**
 * How recently a factor must have been verified to change what protects the account: adding a factor
 * during a sign-in, or the security settings of the account page. Binding an authenticator requires
 * authenticating first (NIST SP 800-63B §6.1.2.1); a factor carried over from an older session does not
 * count.
 */
export const FRESH_PROOF_SECONDS = 600;
/**
 * How long after it began a setup may be finished (the setup page with its secret, or the passkey
 * options): five minutes, the life of a passkey challenge.
 */
export const SETUP_FINISH_SECONDS = 300;
/**
 * How old the factors may be at a setup's finish: a setup begun within FRESH_PROOF_SECONDS is not sent
 * back because it is finished at minute eleven.
 */
export const ENROLL_FINISH_SECONDS = FRESH_PROOF_SECONDS + SETUP_FINISH_SECONDS;

const rank = (acr: string) => ACR_ORDER.indexOf(acr);

export interface AcrRequest {
  /** The acr values any of which satisfies the request (only values we issue). */
  values: string[];
  /** Essential values were asked for and none is one we issue: no sign-in can meet the request. */
  unsupported: boolean;
  /** An essential `acr` whose `value` is not a string or whose `values` is not a list of strings. */
  malformed: boolean;
}

/**
 * The acr values an authorization request asks for. An essential `acr` member of the `claims` parameter
 * wins (OIDC Core §5.5.1.1: the acr returned must be one of its values, and if none can be met the
 * authentication fails); otherwise `acr_values` (§3.1.2.1) and a voluntary `acr` claim, both
 * preferences. Values we do not issue are dropped.
 */
export function acrRequest(params: { acr_values?: unknown; claims?: unknown }): AcrRequest {
  let claims: unknown = params.claims;
  if (typeof claims === 'string') {
    try { claims = JSON.parse(claims); } catch { claims = undefined; }
  }
  const acr = (claims as { id_token?: { acr?: { essential?: unknown; value?: unknown; values?: unknown } | null } } | undefined)?.id_token?.acr;
  const claimed = [
    ...(typeof acr?.value === 'string' ? [acr.value] : []),
    ...(Array.isArray(acr?.values) ? acr.values.filter((v): v is string => typeof v === 'string') : []),
  ];
  const known = (values: string[]) => [...new Set(values)].filter((v) => ACR_ORDER.includes(v));
  if (acr?.essential === true) {
    const malformed = (acr.value !== undefined && typeof acr.value !== 'string')
      || (acr.values !== undefined && !(Array.isArray(acr.values) && acr.values.every((v) => typeof v === 'string')));
    if (malformed) return { values: [], unsupported: false, malformed: true };
    if (claimed.length > 0) {
      const values = known(claimed);
      return { values, unsupported: values.length === 0, malformed: false };
    }
  }
  return { values: known([...String(params.acr_values ?? '').split(' ').filter(Boolean), ...claimed]), unsupported: false, malformed: false };
}

/**
 * The weakest acr that satisfies the request: the client's policy and the user's enrollment set a floor;
 * requested values raise it to the weakest of them (any requested value satisfies the request).
 */
export function demandedAcr(input: { mfaPolicy: MfaPolicy; enrolled: Enrolled; requested: readonly string[] }): string {
  let floor: string = ACR.sfa;
  if (hasAnyFactor(input.enrolled) || input.mfaPolicy === 'required') floor = ACR.mfa;
  if (input.mfaPolicy === 'phishing-resistant') floor = ACR.phr;
  const weakestRequested = input.requested.reduce<string | undefined>(
    (weakest, acr) => (weakest === undefined || rank(acr) < rank(weakest) ? acr : weakest), undefined);
  return weakestRequested && rank(weakestRequested) > rank(floor) ? weakestRequested : floor;
}

export const meets = (factors: readonly VerifiedFactor[], demand: string) => satisfiedAcrs(factors).includes(demand);

export type Method = 'passkey' | 'totp' | 'recovery_code';

export type Step =
  | { kind: 'first-factor' }
  | { kind: 'second-factor'; methods: Method[] }
  | { kind: 'enroll'; methods: Array<'passkey' | 'totp'> }
  | { kind: 'done' };

/** What the user does next. Passkeys always come first among the options; SMS is never one. */
export function nextStep(input: {
  demand: string; factors: readonly VerifiedFactor[]; enrolled: Enrolled; now: number;
  /** How old a factor may be to allow enrolling: FRESH_PROOF_SECONDS, or ENROLL_FINISH_SECONDS at a setup's finish. */
  freshFor?: number;
}): Step {
  const { demand, factors, enrolled, now, freshFor = FRESH_PROOF_SECONDS } = input;
  if (factors.length === 0) return { kind: 'first-factor' };
  if (meets(factors, demand)) return { kind: 'done' };

  const isSecond = (f: VerifiedFactor) => f.method === 'otp' || f.method === 'recovery_code' || f.method === 'passkey';
  const secondVerified = factors.some(isSecond);
  const enrolledMethods: Method[] = [
    ...(enrolled.passkeys > 0 ? ['passkey' as const] : []),
    ...(enrolled.totp ? ['totp' as const] : []),
    ...(enrolled.recoveryCodes > 0 && hasAnyFactor(enrolled) ? ['recovery_code' as const] : []),
  ];
  // Enrolling requires first proving, within `freshFor`, the factors the user already has: a session
  // signed in an hour ago, or a sign-in page left open as long (a browser left unattended), must not be
  // able to add its holder's passkey or authenticator app. Stale ones are asked for again, password first.
  const enroll = (methods: Array<'passkey' | 'totp'>): Step => {
    const fresh = factors.filter((f) => now - f.at <= freshFor);
    if (!fresh.some((f) => f.method === 'pwd' || f.method === 'passkey')) return { kind: 'first-factor' };
    if (hasAnyFactor(enrolled) && !fresh.some(isSecond)) return { kind: 'second-factor', methods: enrolledMethods };
    return { kind: 'enroll', methods };
  };

  if (rank(demand) >= rank(ACR.phr)) {
    const usablePasskeys = demand === ACR.phrh ? enrolled.deviceBoundPasskeys : enrolled.passkeys;
    if (usablePasskeys > 0 && !factors.some((f) => f.method === 'passkey')) return { kind: 'second-factor', methods: ['passkey'] };
    if (hasAnyFactor(enrolled) && !secondVerified) return { kind: 'second-factor', methods: enrolledMethods };
    return enroll(['passkey']);
  }
  if (hasAnyFactor(enrolled) && !secondVerified) return { kind: 'second-factor', methods: enrolledMethods };
  return enroll(['passkey', 'totp']);
}

/** The factors an existing session proved, read back from its `amr` (RFC 8176) and login time. */
export function factorsFromAmr(amr: readonly string[] | undefined, at: number): VerifiedFactor[] {
  const list = amr ?? [];
  const factors: VerifiedFactor[] = [];
  if (list.includes('pwd')) factors.push({ method: 'pwd', at });
  if (list.includes('otp')) factors.push({ method: 'otp', at });
  if (list.includes('recovery_code')) factors.push({ method: 'recovery_code', at });
  if (list.includes('hwk') || list.includes('swk')) {
    factors.push({ method: 'passkey', at, userVerified: list.includes('user'), backupEligible: list.includes('swk') && !list.includes('hwk') });
  }
  return factors;
}

/**
 * Whether a session is too old or too idle to count (NIST SP 800-63B §4.2.3): every session is limited
 * to `reauthenticateAfter` seconds from sign-in; one that used a second factor also ends after
 * `mfaIdleTimeout` seconds without use.
 */
export function sessionExpired(input: {
  now: number; loginTs: number; lastSeen: number; amr: readonly string[] | undefined;
  reauthenticateAfter: number; mfaIdleTimeout: number;
}): boolean {
  if (input.now - input.loginTs > input.reauthenticateAfter) return true;
  const usedSecondFactor = (input.amr ?? []).some((m) => m !== 'pwd');
  return usedSecondFactor && input.now - input.lastSeen > input.mfaIdleTimeout;
}

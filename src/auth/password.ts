/**
 * Password hashing and checking with bcrypt (bcryptjs, in a pool of worker threads).
 * bcrypt only reads the first 72 bytes of its input: longer passwords are refused outright rather than
 * silently truncated (two passwords sharing 72 bytes would otherwise be equal).
 */
import bcrypt from 'bcryptjs';
import { AppError } from '../errors.js';
import { bcryptPool } from './bcrypt-pool.js';

export interface PasswordPolicy {
  bcrypt_cost: number;
  min_length: number;
}

const MAX_BYTES = 72;

/**
 * What is hashed: the password in Unicode NFKC (NIST SP 800-63B §5.1.1.2), so that one password typed on
 * systems that compose characters differently (é as one code point, or e and a combining accent) is one.
 */
export const normalisePassword = (password: string): string => password.normalize('NFKC');

const graphemes = new Intl.Segmenter('en', { granularity: 'grapheme' });
/** Characters as a person counts them (grapheme clusters, UAX #29), not code points. */
const lengthOf = (text: string) => {
  let n = 0;
  for (const _ of graphemes.segment(text)) n += 1;
  return n;
};

/**
 * What a password in use is hashed as: its normalised form, or, when that is longer than bcrypt takes
 * (NFKC may expand: ﷺ is 3 bytes as typed, 33 normalised), the password as typed,
 * which is all a hash made before normalising (2026-12-02) can match. A rehash must hash what the check
 * will check, or the user is locked out.
 */
const hashedForm = (password: string): string => {
  const normal = normalisePassword(password);
  return bcrypt.truncates(normal) ? password : normal;
};

/**
 * The forms of a typed password to check, the hashed form first: also as typed when that differs (a hash
 * made before passwords were normalised). Unknown logins are checked as often, so timing stays equal.
 */
const formsToCheck = (password: string): string[] => {
  const first = hashedForm(password);
  return (first === password ? [first] : [first, password]).filter((form) => !bcrypt.truncates(form));
};

/** Throws an AppError saying what is wrong with a new password. */
export function checkNewPassword(password: string, policy: PasswordPolicy): void {
  const normal = normalisePassword(password);
  // Counted as composed (NFC), not as hashed: NFKC expands some single characters into many (ﷺ into 18).
  if (lengthOf(password.normalize('NFC')) < policy.min_length) {
    throw new AppError('weak_password', `password must be at least ${policy.min_length} characters`);
  }
  if (bcrypt.truncates(normal)) {
    throw new AppError('weak_password', `password must be at most ${MAX_BYTES} bytes (UTF-8)`);
  }
  // A password field cannot hold these (browsers drop line breaks; the sign-in form refuses NUL), so a
  // password with one, set from the CLI's standard input, could never be used.
  if (/[\0\r\n]/.test(password)) {
    throw new AppError('weak_password', 'password must not contain line breaks or NUL characters (a sign-in form cannot take them)');
  }
}

export async function hashPassword(password: string, policy: PasswordPolicy): Promise<string> {
  checkNewPassword(password, policy);
  return bcryptPool().hash(hashedForm(password), policy.bcrypt_cost);
}

/** The work factor a bcrypt hash was made with (`$2b$12$…` → 12), or undefined if it is not one. */
export function bcryptCost(hash: string): number | undefined {
  const match = /^\$2[abxy]?\$(\d\d)\$/.exec(hash);
  return match ? Number(match[1]) : undefined;
}

/**
 * The extra compares that make checking `hash` as much work as one compare at cost `target`. bcrypt's
 * work doubles with each cost step: at cost c, then one compare at each of c, …, target - 1, is
 * 2^c + (2^target - 2^c) = 2^target. A hash above the target (the cost was lowered) cannot be matched
 * this way; the sign-in rehashes it (upgradePasswordHash).
 */
export function paddingCosts(hash: string, target: number): number[] {
  const cost = bcryptCost(hash) ?? target;
  return Array.from({ length: Math.max(0, target - cost) }, (_, i) => cost + i);
}

export function createPasswordVerifier(policy: PasswordPolicy) {
  // Unknown users are checked against a hash at the configured cost so that they take as long as known
  // ones (OWASP ASVS V6: no account enumeration through timing). A known user's hash may be older and
  // cheaper (the cost was raised since): its check is padded to the same work, below.
  const dummies = new Map<number, Promise<string>>();
  const dummyAt = (cost: number) => {
    let dummy = dummies.get(cost);
    if (!dummy) {
      dummy = bcryptPool().hash('wrnexus-sso dummy password', cost);
      dummies.set(cost, dummy);
    }
    return dummy;
  };
  /**
   * Whether `password` matches `hash` (with no hash: the same work, and no); `rehash` when it matched a
   * hash that should be made again (at another cost, or of the password as typed, not normalised).
   */
  async function check(password: string, hash: string | null | undefined): Promise<{ ok: boolean; rehash: boolean }> {
    const pool = bcryptPool();
    const forms = formsToCheck(password);
    if (forms.length === 0) {
      await pool.compare('', await dummyAt(policy.bcrypt_cost));
      return { ok: false, rehash: false };
    }
    for (const form of forms) {
      if (!hash) {
        await pool.compare(form, await dummyAt(policy.bcrypt_cost));
        continue;
      }
      const ok = await pool.compare(form, hash);
      for (const pad of paddingCosts(hash, policy.bcrypt_cost)) await pool.compare(form, await dummyAt(pad));
      if (ok) return { ok, rehash: bcryptCost(hash) !== policy.bcrypt_cost || form !== forms[0] };
    }
    return { ok: false, rehash: false };
  }
  return {
    check,
    /** True when `password` matches `hash`; with no hash, does the same work and answers false. */
    async verify(password: string, hash: string | null | undefined): Promise<boolean> {
      return (await check(password, hash)).ok;
    },
    /** A new hash of a password already in use (no new-password rules: they may have changed since). */
    rehash: (password: string) => bcryptPool().hash(hashedForm(password), policy.bcrypt_cost),
    warmUp: () => dummyAt(policy.bcrypt_cost).then(() => undefined),
  };
}

export type PasswordVerifier = ReturnType<typeof createPasswordVerifier>;

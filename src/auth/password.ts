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

/** Throws an AppError saying what is wrong with a new password. */
export function checkNewPassword(password: string, policy: PasswordPolicy): void {
  if ([...password].length < policy.min_length) {
    throw new AppError('weak_password', `password must be at least ${policy.min_length} characters`);
  }
  if (bcrypt.truncates(password)) {
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
  return bcryptPool().hash(password, policy.bcrypt_cost);
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
  return {
    /** True when `password` matches `hash`; with no hash, does the same work and answers false. */
    async verify(password: string, hash: string | null | undefined): Promise<boolean> {
      const pool = bcryptPool();
      if (bcrypt.truncates(password)) {
        await pool.compare('', await dummyAt(policy.bcrypt_cost));
        return false;
      }
      if (!hash) {
        await pool.compare(password, await dummyAt(policy.bcrypt_cost));
        return false;
      }
      const ok = await pool.compare(password, hash);
      for (const pad of paddingCosts(hash, policy.bcrypt_cost)) await pool.compare(password, await dummyAt(pad));
      return ok;
    },
    /** Whether a stored hash was made at another cost than the configured one (rehash it at sign-in). */
    outdated: (hash: string) => bcryptCost(hash) !== policy.bcrypt_cost,
    /** A new hash of a password already in use (no new-password rules: they may have changed since). */
    rehash: (password: string) => bcryptPool().hash(password, policy.bcrypt_cost),
    warmUp: () => dummyAt(policy.bcrypt_cost).then(() => undefined),
  };
}

export type PasswordVerifier = ReturnType<typeof createPasswordVerifier>;

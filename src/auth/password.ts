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
}

export async function hashPassword(password: string, policy: PasswordPolicy): Promise<string> {
  checkNewPassword(password, policy);
  return bcryptPool().hash(password, policy.bcrypt_cost);
}

export function createPasswordVerifier(policy: PasswordPolicy) {
  // Unknown users are checked against this hash so that they take as long as known ones
  // (OWASP ASVS V6: no account enumeration through timing).
  let dummy: Promise<string> | undefined;
  const dummyHash = () => {
    dummy ??= bcryptPool().hash('wrnexus-sso dummy password', policy.bcrypt_cost);
    return dummy;
  };
  return {
    /** True when `password` matches `hash`; with no hash, does the same work and answers false. */
    async verify(password: string, hash: string | null | undefined): Promise<boolean> {
      const pool = bcryptPool();
      if (bcrypt.truncates(password)) {
        await pool.compare('', await dummyHash());
        return false;
      }
      if (!hash) {
        await pool.compare(password, await dummyHash());
        return false;
      }
      return pool.compare(password, hash);
    },
    warmUp: () => dummyHash().then(() => undefined),
  };
}

export type PasswordVerifier = ReturnType<typeof createPasswordVerifier>;

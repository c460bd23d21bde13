/**
 * Recovery codes: ten per user, from a CSPRNG, shaped `k7d2m-q9xwa` (two groups of five lowercase
 * letters and digits, about 51 bits each). Shown once, stored only as keyed hashes, single use.
 */
import { randomInt } from 'node:crypto';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import type { RecoveryCodeQueries } from '../queries/recovery-codes.js';
import type { KeyedHash } from './secret-box.js';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
export const RECOVERY_CODE_COUNT = 10;
const SHAPE = /^[a-z0-9]{5}-[a-z0-9]{5}$/;

function newCode(): string {
  const group = () => Array.from({ length: 5 }, () => ALPHABET[randomInt(ALPHABET.length)]).join('');
  return `${group()}-${group()}`;
}

function tenCodes(): string[] {
  const fresh = new Set<string>();
  while (fresh.size < RECOVERY_CODE_COUNT) fresh.add(newCode());
  return [...fresh];
}

/** Accepts what people type: any case, spaces, a missing hyphen. */
export function normaliseRecoveryCode(input: string): string | undefined {
  const compact = input.toLowerCase().replace(/[\s-]+/g, '');
  const code = `${compact.slice(0, 5)}-${compact.slice(5)}`;
  return SHAPE.test(code) ? code : undefined;
}

export function createRecoveryCodeService(deps: { codes: RecoveryCodeQueries; hash: KeyedHash; clock: Clock }) {
  const { codes, hash, clock } = deps;
  const hashOf = (userId: string, code: string) => hash(`recovery:${userId}:${code}`);
  return {
    /**
     * Replaces every code of the user with ten new ones, returned once in clear. With `replacing` (the
     * set the user was shown, see currentSet), only if that set is still theirs: a form sent again (a
     * reload, the back button, a second tab) must not silently replace the codes just shown and saved.
     */
    async regenerate(userId: string, replacing?: number): Promise<string[] | undefined> {
      const list = tenCodes();
      return (await codes.replaceAll(userId, list.map((c) => hashOf(userId, c)), epochSeconds(clock), replacing)) ? list : undefined;
    },
    /** Names the user's current set of codes (0: none), for regenerate. */
    currentSet: (userId: string) => codes.latestSet(userId),
    /**
     * The codes that come with a user's first factor: ten new ones if the user has none yet, returned once
     * in clear; undefined if they have codes already (another factor, or a first one enrolled at the same
     * moment in another window, which shows them).
     */
    async issueFirst(userId: string): Promise<string[] | undefined> {
      const list = tenCodes();
      return (await codes.insertIfNone(userId, list.map((c) => hashOf(userId, c)), epochSeconds(clock))) ? list : undefined;
    },
    async use(userId: string, input: string): Promise<boolean> {
      const code = normaliseRecoveryCode(input);
      if (!code) return false;
      return codes.use(userId, hashOf(userId, code), epochSeconds(clock));
    },
    remaining: (userId: string) => codes.remaining(userId),
  };
}

export type RecoveryCodeService = ReturnType<typeof createRecoveryCodeService>;

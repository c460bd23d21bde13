/**
 * Rate limiting for every verification path (NIST SP 800-63B §5.2.2, OWASP ASVS V6.3): per account and
 * factor, consecutive failures bring exponential back-off and then a lock that expires by itself; per
 * client IP, a ceiling on failures across accounts against spraying. Counters live in the database,
 * so instances share them, and an attempt is counted *before* the secret is checked, so a burst of
 * parallel guesses cannot slip past the limit.
 */
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { AppError } from '../errors.js';
import type { ThrottleQueries } from '../queries/throttle.js';
import { canonicalIp, ipv6Groups } from '../ip.js';

export interface ThrottlePolicy {
  /** Consecutive failures before back-off starts. */
  backoff_after: number;
  /** Longest back-off between attempts, in seconds. */
  max_backoff_seconds: number;
  /** Consecutive failures that lock the factor for `lock_seconds`. */
  lock_after: number;
  lock_seconds: number;
  /** Failures allowed from one IP address within `ip_window_seconds`, across all accounts. */
  ip_max_failures: number;
  ip_window_seconds: number;
}

export type Factor = 'pwd' | 'otp' | 'recovery_code' | 'passkey';

/** "1 second", "40 seconds", "2 minutes": the wait as a person reads it (back-offs start at one second). */
export function waitText(seconds: number): string {
  if (seconds < 60) {
    const n = Math.max(1, Math.ceil(seconds));
    return `${n} second${n === 1 ? '' : 's'}`;
  }
  const minutes = Math.ceil(seconds / 60);
  return `${minutes} minute${minutes === 1 ? '' : 's'}`;
}

export class ThrottledError extends AppError {
  constructor(readonly retryAfter: number, readonly scope: 'account' | 'ip') {
    super('too_many_attempts', `Too many attempts. Please wait ${waitText(retryAfter)} and try again.`, { status: 429 });
  }
}

export interface Attempt {
  /** Call after a successful verification: the consecutive-failure count starts over. */
  succeeded(): Promise<void>;
  /** Call after a failed verification. Returns true if this failure locked the factor. */
  failed(): Promise<boolean>;
}

/**
 * What the per-address limit counts: an IPv4 address, or an IPv6 address's /64. A host is usually given a
 * whole /64 (RFC 7934 §6 recommends it), so counting single IPv6 addresses would let one client spray from
 * 2^64 of them.
 */
export function addressBucket(ip: string): string {
  const groups = ipv6Groups(ip);
  return groups ? `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64` : ip;
}

/** A throttle key that counts failures or blocks, as the operator sees it (`throttle list`). */
export type ThrottleEntry = {
  failures: number;
  /** When the key lets attempts through again, if it does not now. */
  blockedUntil: number | null;
} & (
  | { kind: 'ip'; address: string }
  /**
   * A factor of one user (`userId`), of a login as typed (`login`, a user's username or e-mail address;
   * `unknownLogin`, the keyed hash of one no user had when it was typed), or of usernameless passkey
   * sign-ins from one address (`anonymous`).
   */
  | { kind: 'user'; factor: string; userId?: string; login?: string; unknownLogin?: string; anonymous?: string }
);

export function createThrottle(deps: { queries: ThrottleQueries; clock: Clock; policy: ThrottlePolicy; onRefused?: (scope: 'account' | 'ip') => void }) {
  const { queries, clock, policy } = deps;
  const now = () => epochSeconds(clock);
  const ipKey = (ip: string) => `ip:${addressBucket(ip)}:${Math.floor(now() / policy.ip_window_seconds)}`;

  /**
   * A lock expires by itself: the count is left one below the limit, so the first attempt after the lock
   * is checked, and if it fails too the factor locks again at once (one guess per lock period).
   */
  const lock = (key: string) => queries.lock(key, now() + policy.lock_seconds, policy.lock_after - 1, now());

  const backoff = (failures: number) => (failures < policy.backoff_after ? 0
    : Math.min(policy.max_backoff_seconds, 2 ** (failures - policy.backoff_after)));

  /**
   * Reserves one attempt of `factor` for `subject` (a user id, or the typed login for unknown users)
   * from `ip`; throws ThrottledError (status 429, retryAfter) when either limit says no.
   */
  async function begin(factor: Factor, subject: string, ip: string): Promise<Attempt> {
    // The address's attempt is reserved first (and given back on success), so a parallel burst from one
    // address cannot all pass the check before any of it is counted.
    const addressKey = ipKey(ip);
    const fromIp = await queries.adjust(addressKey, 1, now());
    if (fromIp > policy.ip_max_failures) {
      deps.onRefused?.('ip');
      throw new ThrottledError(policy.ip_window_seconds - (now() % policy.ip_window_seconds), 'ip');
    }
    const key = `acct:${subject}:${factor}`;
    // A secret that can be guessed (password, codes) waits as its back-off is reached, before the outcome is
    // known, so parallel guesses get no more tries than sequential ones. A passkey cannot be guessed (each
    // try needs the authenticator's signature), and many people behind one address sign in usernameless
    // under one key: its attempts are held back by failures only, as they are counted.
    const taken = await queries.take(key, now(), factor === 'passkey' ? undefined : { after: policy.backoff_after, maxSeconds: policy.max_backoff_seconds });
    if (!taken || taken.failures > policy.lock_after) {
      // Refused guesses still count against the address: hammering a locked account is spraying too.
      if (taken) await lock(key);
      const { blocked_until: until } = await queries.read(key);
      deps.onRefused?.('account');
      throw new ThrottledError(Math.max(1, (until ?? now()) - now()), 'account');
    }
    return {
      async succeeded() {
        // Two single-row statements, not one UPDATE of both rows: on PostgreSQL two such UPDATEs can lock
        // the rows in opposite orders and deadlock (seen under parallel sign-ins of one account).
        await Promise.all([queries.reset(key, now()), queries.adjust(addressKey, -1, now())]);
      },
      async failed() {
        if (taken.failures >= policy.lock_after) {
          await lock(key);
          return true;
        }
        const wait = backoff(taken.failures);
        if (wait > 0) await queries.blockUntil(key, now() + wait, now());
        return false;
      },
    };
  }

  /**
   * Every key that counts failures or blocks now: users' factors (consecutive failures, back-off,
   * lock) and addresses with failures in the current window (blocked once they reach ip_max_failures,
   * until the window ends).
   */
  async function list(): Promise<ThrottleEntry[]> {
    const at = now();
    const window = Math.floor(at / policy.ip_window_seconds);
    const entries: ThrottleEntry[] = [];
    for (const { key, failures, blocked_until: until } of await queries.listActive(at)) {
      const blockedUntil = until !== null && until > at ? until : null;
      if (key.startsWith('ip:')) {
        // ip:<address or /64>:<window>; an IPv6 range holds colons itself.
        const cut = key.lastIndexOf(':');
        if (Number(key.slice(cut + 1)) !== window || failures <= 0) continue;
        entries.push({ kind: 'ip', address: key.slice(3, cut), failures,
          blockedUntil: failures >= policy.ip_max_failures ? (window + 1) * policy.ip_window_seconds : null });
      } else if (key.startsWith('acct:')) {
        // acct:<subject>:<factor>, the subject a user id, login:<login>, unknown:<hash> or anonymous:<address>.
        const cut = key.lastIndexOf(':');
        const subject = key.slice(5, cut);
        const factor = key.slice(cut + 1);
        const who = subject.startsWith('login:') ? { login: subject.slice(6) }
          : subject.startsWith('unknown:') ? { unknownLogin: subject.slice(8) }
          : subject.startsWith('anonymous:') ? { anonymous: subject.slice(10) } : { userId: subject };
        entries.push({ kind: 'user', factor, ...who, failures, blockedUntil });
      }
    }
    return entries;
  }

  return {
    begin,
    /**
     * One throttled verification that is not a sign-in step (the code that confirms a new authenticator
     * app): refused before `verify` runs while locked, its outcome counted like a sign-in's.
     */
    async check(factor: Factor, subject: string, ip: string, verify: () => Promise<boolean>): Promise<boolean> {
      const attempt = await begin(factor, subject, ip);
      const ok = await verify();
      await (ok ? attempt.succeeded() : attempt.failed());
      return ok;
    },
    /** Operator unlock: clears every counter of the user, those of the logins it signs in with included. */
    async unlock(user: { id: string; username: string; email: string }): Promise<number> {
      const prefixes = [`acct:${user.id}:`, ...[user.username, user.email].map((login) => `acct:login:${login.toLowerCase()}:`)];
      const cleared = await Promise.all(prefixes.map((prefix) => queries.resetPrefix(prefix, now())));
      return cleared.reduce((sum, n) => sum + n, 0);
    },
    list,
    /**
     * Operator unlock of an address (for IPv6 the /64 it falls in: the unit the limit counts), and of
     * the usernameless passkey sign-ins from exactly that address. Returns what it cleared, and whether
     * any of it was blocking.
     */
    async unlockAddress(ip: string): Promise<{ address: string; wasBlocked: boolean; cleared: number }> {
      const address = addressBucket(canonicalIp(ip));
      const entries = await list();
      // Usernameless passkey sign-ins count under the exact address they came from (webauthn-api.ts): those
      // of every address in the bucket (an IPv6 /64, named by its network address, matches no client).
      const anonymous = entries.filter((e) => e.kind === 'user' && e.factor === 'passkey' && e.anonymous !== undefined
        && addressBucket(canonicalIp(e.anonymous)) === address);
      const wasBlocked = entries.some((e) => e.blockedUntil !== null && (e.kind === 'ip' ? e.address === address : anonymous.includes(e)));
      let cleared = await queries.resetPrefix(`ip:${address}:`, now());
      for (const e of anonymous) if (e.kind === 'user') cleared += await queries.resetPrefix(`acct:anonymous:${e.anonymous}:passkey`, now());
      return { address, wasBlocked, cleared };
    },
    deleteStale: () => queries.deleteStale(now() - 24 * 3600),
  };
}

export type Throttle = ReturnType<typeof createThrottle>;

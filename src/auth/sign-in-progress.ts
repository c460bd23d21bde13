/**
 * A sign-in in progress, per oidc-provider interaction: who the browser has proven to be so far and
 * with which factors. It is bound to the browser by a cookie whose hash is stored, and it is kept
 * out of the provider's interaction `result` so the provider never sees a half-finished login.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import type { SignInProgressQueries } from '../queries/sign-in-progress.js';
import type { VerifiedFactor } from './assurance.js';

export interface Progress {
  uid: string;
  userId: string | undefined;
  factors: VerifiedFactor[];
  notice: string | undefined;
}

const hash = (value: string) => createHash('sha256').update(value).digest('hex');

/** A sign-in's binding to the browser is `<interaction uid>.<random>`; only its hash is stored. */
export const parseProgressCookie = (value: string | undefined): { uid: string; binding: string } | undefined => {
  const match = /^([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{43})$/.exec(value ?? '');
  return match ? { uid: match[1]!, binding: hash(value!) } : undefined;
};

/**
 * The browser's cookie holds the bindings of its sign-ins in progress, newest first, `~`-separated: one
 * per interaction, as oidc-provider keeps one interaction cookie per uid, so a sign-in begun in a second
 * tab leaves the first one's progress alone (an audit finding: the second tab's binding replaced the
 * first's, whose passkey then finished the second tab's authorization request). A few at most.
 */
export const MAX_SIGN_INS_PER_BROWSER = 4;
const bindingsOf = (cookie: string | undefined) => (cookie ?? '').split('~').filter((b) => parseProgressCookie(b));
/** The cookie with `binding` first, in place of any other binding of its interaction. */
export function withBinding(cookie: string | undefined, binding: string): string {
  const uid = binding.slice(0, binding.indexOf('.'));
  return [binding, ...bindingsOf(cookie).filter((b) => !b.startsWith(`${uid}.`))].slice(0, MAX_SIGN_INS_PER_BROWSER).join('~');
}
/** The cookie without the binding of interaction `uid` (empty when it was the last). */
export const withoutBinding = (cookie: string | undefined, uid: string): string => bindingsOf(cookie).filter((b) => !b.startsWith(`${uid}.`)).join('~');

export function createSignInProgress(deps: { queries: SignInProgressQueries; clock: Clock; ttlSeconds: number }) {
  const { queries, clock, ttlSeconds } = deps;
  const now = () => epochSeconds(clock);
  const toProgress = (row: { uid: string; user_id: string | null; factors: string; notice: string | null }): Progress => ({
    uid: row.uid,
    userId: row.user_id ?? undefined,
    factors: JSON.parse(row.factors) as VerifiedFactor[],
    notice: row.notice ?? undefined,
  });

  return {
    /** Starts tracking a sign-in for this interaction; returns the binding to the browser (withBinding). */
    async begin(uid: string, seed: { userId?: string; factors?: VerifiedFactor[] } = {}): Promise<{ cookie: string; progress: Progress }> {
      const cookie = `${uid}.${randomBytes(32).toString('base64url')}`;
      await queries.upsert({
        uid, binding: hash(cookie), user_id: seed.userId ?? null, factors: JSON.stringify(seed.factors ?? []),
        notice: null, expires_at: now() + ttlSeconds,
      });
      return { cookie, progress: { uid, userId: seed.userId, factors: seed.factors ?? [], notice: undefined } };
    },
    /** The progress this browser's cookie proves, for interaction `uid` (without one: the newest). */
    async get(cookieValue: string | undefined, uid?: string): Promise<Progress | undefined> {
      const bindings = bindingsOf(cookieValue);
      const parsed = parseProgressCookie(uid === undefined ? bindings[0] : bindings.find((b) => b.startsWith(`${uid}.`)));
      if (!parsed) return undefined;
      const row = await queries.find(parsed.uid, now());
      if (!row || row.binding !== parsed.binding) return undefined;
      return toProgress(row);
    },
    /**
     * The progress with one more verified factor, not stored yet (a sign-in that is now complete never
     * needs it stored). A factor of another user starts the list over (no mixing of users).
     */
    withFactor(progress: Progress, userId: string, factor: VerifiedFactor): Progress {
      const factors = progress.userId === userId
        ? [...progress.factors.filter((f) => f.method !== factor.method), factor]
        : [factor];
      return { ...progress, userId, factors };
    },
    /**
     * Stores the progress (user, factors, notice) and binds it to a fresh value, which it returns: the
     * old value stops working, so a value planted before a factor is worthless (no fixation). One
     * statement.
     */
    async save(progress: Progress): Promise<string> {
      const cookie = `${progress.uid}.${randomBytes(32).toString('base64url')}`;
      await queries.update(progress.uid, {
        user_id: progress.userId ?? null, factors: JSON.stringify(progress.factors), notice: progress.notice ?? null, binding: hash(cookie),
      });
      return cookie;
    },
    async setNotice(progress: Progress, notice: string | undefined): Promise<void> {
      await queries.update(progress.uid, { notice: notice ?? null });
    },
    finish: (uid: string) => queries.remove(uid),
    deleteExpired: () => queries.deleteExpired(now()),
  };
}

export type SignInProgress = ReturnType<typeof createSignInProgress>;

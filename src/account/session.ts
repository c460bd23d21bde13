/**
 * The signed-in account behind a browser, read from oidc-provider's own session (the `_session`
 * cookie): account pages and passkey enrollment outside a sign-in use it.
 */
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { ACR } from '../auth/assurance.js';
import { FRESH_PROOF_SECONDS, factorsFromAmr, hasAnyFactor, meets, sessionExpired, type Enrolled } from '../auth/sign-in-policy.js';
import type { Config } from '../config/load.js';
import type { KeptSession } from '../auth/sign-out.js';
import type { UserRow } from '../queries/users.js';
import type { Services } from '../services.js';

export interface AccountSession {
  user: UserRow;
  enrolled: Enrolled;
  loginTs: number;
  /** The factors the session's sign-in verified (oidc-provider's amr). */
  amr: string[] | undefined;
  /** The acr of the user's strongest enrolled factor. */
  strongest: string;
  /** Signed in within FRESH_PROOF_SECONDS (every factor of the sign-in), with the strongest factor. */
  recent: boolean;
  /** This browser's session and the grants of the apps signed in through it: what signing out elsewhere keeps. */
  kept: KeptSession;
}

export const strongestAcr = (enrolled: Enrolled) => (enrolled.passkeys > 0 ? ACR.phr : hasAnyFactor(enrolled) ? ACR.mfa : ACR.sfa);

export function createAccountSessions(deps: { provider: Provider; services: Services; clock: Clock; config: Config }) {
  const { provider, services, clock, config } = deps;
  /** What the account's factors make of the session: its strongest factor, and whether it proved it lately. */
  const judged = (account: Omit<AccountSession, 'strongest' | 'recent'>): AccountSession => {
    const strongest = strongestAcr(account.enrolled);
    const recent = epochSeconds(clock) - account.loginTs <= FRESH_PROOF_SECONDS && meets(factorsFromAmr(account.amr, account.loginTs), strongest);
    return { ...account, strongest, recent };
  };
  return {
    async current(ctx: Context): Promise<AccountSession | undefined> {
      const session = await provider.Session.get(provider.createContext(ctx.req, ctx.res) as never) as unknown as {
        jti: string; uid: string; accountId?: string; amr?: string[]; loginTs?: number; exp?: number; authorizations?: Record<string, { grantId?: string }>;
      };
      if (!session.accountId) return undefined;
      if (sessionExpired({
        now: epochSeconds(clock), loginTs: session.loginTs ?? 0, lastSeen: (session.exp ?? 0) - config.ttl.session, amr: session.amr,
        reauthenticateAfter: config.sessions.reauthenticate_after, mfaIdleTimeout: config.sessions.mfa_idle_timeout,
      })) return undefined;
      const user = await services.users.findById(session.accountId);
      if (!user || user.disabled) return undefined;
      // Using the account pages is using the session, as every request to the provider's own endpoints is
      // (its session middleware saves the session, which moves its expiry): sessions.mfa_idle_timeout
      // counts from here too. Not by saving the copy read above: a logout or sign-out meanwhile would be
      // undone, an app signed in to meanwhile dropped (review findings).
      await services.sessionUsed(session.jti);
      const grantIds = Object.values(session.authorizations ?? {}).flatMap((a) => (a.grantId ? [a.grantId] : []));
      return judged({
        user, enrolled: await services.enrolled(user.id), loginTs: session.loginTs ?? 0, amr: session.amr,
        kept: { sessionUid: session.uid, grantIds },
      });
    },
    /** The same session after a change to the account's factors: only the factors are read again. */
    async refreshed(account: AccountSession): Promise<AccountSession> {
      return judged({ ...account, enrolled: await services.enrolled(account.user.id) });
    },
  };
}

export type AccountSessions = ReturnType<typeof createAccountSessions>;

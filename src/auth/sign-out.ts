/**
 * Signing an account out everywhere: what a changed password, a removed factor or an administrator's
 * action must end. Every session of the account ends, and every grant, code and token issued to it is
 * revoked, those with `offline_access` included (RP-initiated logout leaves those: they are meant to
 * outlive a session, OIDC Core §11; a stolen one is not). Sign-ins in progress go too: one begun from
 * an ended session could otherwise finish with that session's factors.
 */
import type { OidcPayloadQueries } from '../queries/oidc-payloads.js';
import type { SignInProgressQueries } from '../queries/sign-in-progress.js';

/** The session a change was made in, which it keeps, with the grants of the apps signed in through it. */
export interface KeptSession {
  sessionId: string;
  grantIds: readonly string[];
}

export function createSignOut(deps: { payloads: OidcPayloadQueries; progress: SignInProgressQueries }) {
  return {
    /** Returns how many sessions, grants and tokens ended. */
    async everywhere(userId: string, keep?: KeptSession): Promise<number> {
      const ended = await deps.payloads.deleteForAccount(userId, keep);
      await deps.progress.deleteForUser(userId);
      return ended;
    },
  };
}

export type SignOut = ReturnType<typeof createSignOut>;

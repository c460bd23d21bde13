/**
 * Signing an account out everywhere: what a changed password, a removed factor or an administrator's
 * action must end. Every session of the account ends, and every grant, code and token issued to it is
 * revoked, those with `offline_access` included (RP-initiated logout leaves those: they are meant to
 * outlive a session, OIDC Core §11; a stolen one is not). Sign-ins in progress go too (their interactions
 * and progress): one begun from an ended session could otherwise finish with its factors, and one whose
 * password was checked could still resume into a new session.
 */
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import type { OidcPayloadQueries } from '../queries/oidc-payloads.js';
import type { SignInProgressQueries } from '../queries/sign-in-progress.js';

/** The session a change was made in, which it keeps, with the grants of the apps signed in through it. */
export interface KeptSession {
  /** The session's uid: its id changes when the browser signs in again (oidc-provider resetIdentifier). */
  sessionUid: string;
  grantIds: readonly string[];
}

export function createSignOut(deps: { payloads: OidcPayloadQueries; progress: SignInProgressQueries; clock: Clock }) {
  return {
    /** Returns how many sessions, grants and tokens ended. */
    async everywhere(userId: string, keep?: KeptSession): Promise<number> {
      // The kept session as it is now, not as the change read it: an app it signed in to meanwhile is its.
      const grantIds = new Set(keep?.grantIds ?? []);
      if (keep) {
        for (const payload of await deps.payloads.sessionsByUid(keep.sessionUid, epochSeconds(deps.clock))) {
          const { authorizations } = JSON.parse(payload) as { authorizations?: Record<string, { grantId?: string }> };
          for (const { grantId } of Object.values(authorizations ?? {})) if (grantId) grantIds.add(grantId);
        }
      }
      // And the sign-ins this browser has in progress (another tab, a re-authentication), which began from
      // the kept session (a review finding: a change on /account broke this browser's consent page).
      const interactionIds = keep ? (await deps.payloads.interactionsOf(userId))
        .filter(({ payload }) => (JSON.parse(payload) as { session?: { uid?: string } }).session?.uid === keep.sessionUid)
        .map(({ id }) => id) : [];
      const ended = await deps.payloads.deleteForAccount(userId, keep ? { sessionUid: keep.sessionUid, grantIds: [...grantIds], interactionIds } : {});
      // (An interaction's id is its uid, which its progress is stored under.)
      await deps.progress.deleteForUser(userId, interactionIds);
      return ended;
    },
  };
}

export type SignOut = ReturnType<typeof createSignOut>;


/**
 * The passkey JSON API (a contract: our pages' JavaScript and other clients drive it).
 *   GET  /api/auth/mfa/challenge/webauthn  → PublicKeyCredentialRequestOptionsJSON
 *   POST /api/auth/mfa/verify/webauthn     → { redirectTo }
 *   POST /api/mfa/passkeys/start           → PublicKeyCredentialCreationOptionsJSON
 *   POST /api/mfa/passkeys/finish          → { id, name, redirectTo?, recoveryCodes? }
 * During a sign-in, `?interaction=<uid>` names the sign-in (a browser may have several, in tabs).
 * POSTs need Content-Type: application/json and our Origin. Errors are { error, error_description }.
 */
import { createHash, randomBytes } from 'node:crypto';
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { AppError, assertThat } from '../errors.js';
import { createRouter } from '../http/router.js';
import { CHALLENGE_TTL_SECONDS } from '../auth/passkeys.js';
import { ACR } from '../auth/assurance.js';
import { ENROLL_FINISH_SECONDS } from '../auth/sign-in-policy.js';
import { readJson } from '../http/body.js';
import { requestFacts } from '../http/request-facts.js';
import { isSameOrigin, type CookieJar } from '../http/cookies.js';
import type { Logger } from '../log.js';
import type { UserRow } from '../queries/users.js';
import type { Services } from '../services.js';
import type { AccountSessions } from '../account/session.js';
import type { SignInState, SignInStates } from './sign-in-state.js';

export interface WebAuthnApiDeps {
  issuer: string;
  services: Services;
  states: SignInStates;
  accounts: AccountSessions;
  cookies: CookieJar;
  clock: Clock;
  log: Logger;
}

/**
 * A challenge's database key: per browser (cookie), per ceremony and per sign-in (`uid`: the sign-ins of
 * two tabs each have their own challenge; on /account there is none).
 */
const challengeId = (cookie: string, purpose: string, uid = '') => createHash('sha256').update(`${purpose}:${uid}:${cookie}`).digest('hex');

export function createWebAuthnApi(deps: WebAuthnApiDeps): Router {
  const { issuer, services, states, accounts, cookies, clock, log } = deps;
  const origin = new URL(issuer).origin;
  const router = createRouter();

  router.use(async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    if (ctx.method === 'POST') {
      assertThat(isSameOrigin(ctx, origin), () => new AppError('invalid_request', 'cross-origin requests are not allowed', { status: 403 }));
    }
    await next();
  });

  /** The browser's challenge cookie, created if missing (short-lived, HttpOnly). */
  function challengeCookie(ctx: Context): string {
    let value = ctx.cookies.get(cookies.names.webauthn);
    if (!value || !/^[A-Za-z0-9_-]{43}$/.test(value)) value = randomBytes(32).toString('base64url');
    cookies.set(ctx, cookies.names.webauthn, value, CHALLENGE_TTL_SECONDS * 1000);
    return value;
  }

  function existingChallengeCookie(ctx: Context): string {
    const value = ctx.cookies.get(cookies.names.webauthn);
    assertThat(value, () => new AppError('passkey_failed', 'The passkey request has expired. Please try again.'));
    return value;
  }

  /**
   * Who may add a passkey: the user at the enrollment step of a sign-in, or a signed-in account
   * session that recently proved its strongest factor. Never a half-signed-in browser.
   */
  /** `freshFor`: see nextStep (the finish passes ENROLL_FINISH_SECONDS: its start was checked). */
  async function enrollingUser(ctx: Context, freshFor?: number): Promise<{ user: UserRow; signIn?: SignInState }> {
    const signIn = await states.forApi(ctx, freshFor);
    if (signIn?.user) {
      assertThat(signIn.step.kind === 'enroll', () => new AppError('access_denied', 'Finish signing in before adding a passkey.', { status: 403 }));
      return { user: signIn.user, signIn };
    }
    const account = await accounts.current(ctx);
    assertThat(account, () => new AppError('login_required', 'Sign in to add a passkey.', { status: 401 }));
    assertThat(account.recent, () => new AppError('reauthentication_required', 'Confirm it’s you again before changing your security settings.', { status: 403 }));
    return { user: account.user };
  }

  router.get('/api/auth/mfa/challenge/webauthn', async (ctx) => {
    const signIn = await states.forApi(ctx);
    const cookie = challengeCookie(ctx);
    ctx.body = await services.passkeys.authenticationOptions(
      challengeId(cookie, 'authentication', signIn?.progress.uid), signIn?.user, signIn?.progress.uid,
    );
  });

  router.post('/api/auth/mfa/verify/webauthn', async (ctx) => {
    const body = await readJson(ctx) as unknown as AuthenticationResponseJSON;
    const cookie = existingChallengeCookie(ctx);
    const signIn = await states.forApi(ctx);
    // Before anything is counted or used: without a sign-in in progress the assertion can lead nowhere
    // (it used to be verified, its counter recorded and an attempt reserved that was never given back).
    assertThat(signIn, () => new AppError('session_not_found', 'There is no sign-in in progress in this browser. Please start again from the app.'));
    const facts = requestFacts(ctx, signIn.interaction.params.client_id);
    // Usernameless attempts have no account yet: they count against the address.
    const attempt = await services.throttle.begin('passkey', signIn.user?.id ?? `anonymous:${facts.ip}`, facts.ip);
    let verified;
    try {
      verified = await services.passkeys.verifyAuthentication(challengeId(cookie, 'authentication', signIn.progress.uid), body);
    } catch (err) {
      const locked = await attempt.failed();
      // Which check refused it (unknown credential, bad signature, …), for `idp audit`: the user is told only
      // that it failed.
      const detail: Record<string, string> = { factor: 'passkey' };
      if (err instanceof AppError && err.reason) detail.reason = err.reason.slice(0, 200);
      await services.audit.record({ type: 'sign_in', outcome: 'failure', userId: signIn.user?.id, ...facts, detail });
      if (locked) await services.audit.record({ type: 'lockout', outcome: 'success', userId: signIn.user?.id, ...facts, detail: { factor: 'passkey' } });
      throw err;
    } finally {
      cookies.clear(ctx, cookies.names.webauthn);
    }
    if (verified.interactionUid && verified.interactionUid !== signIn.progress.uid) {
      // A challenge of another sign-in: not this one's to finish.
      await attempt.failed();
      throw new AppError('session_not_found', 'This passkey request belongs to another sign-in. Please start again from the app.');
    }
    const user = await services.users.findById(verified.userId);
    if (!user || user.disabled) {
      await attempt.failed();
      log.info('passkey refused', { reason: 'user missing or disabled', user_id: verified.userId });
      throw new AppError('passkey_failed', 'The passkey could not be verified. Please try again.');
    }
    await attempt.succeeded();
    const progress = services.progress.withFactor(signIn.progress, user.id, {
      method: 'passkey', at: epochSeconds(clock), userVerified: verified.userVerified, backupEligible: verified.backupEligible,
    });
    await states.save(ctx, progress);
    ctx.body = { redirectTo: `${issuer}/interaction/${signIn.progress.uid}` };
  });

  router.post('/api/mfa/passkeys/start', async (ctx) => {
    await readJson(ctx);
    const { user, signIn } = await enrollingUser(ctx);
    const cookie = challengeCookie(ctx);
    ctx.body = await services.passkeys.registrationOptions(challengeId(cookie, 'registration', signIn?.progress.uid), user, signIn?.progress.uid,
      { securityKey: signIn?.demand === ACR.phrh });
  });

  router.post('/api/mfa/passkeys/finish', async (ctx) => {
    const body = await readJson(ctx) as unknown as RegistrationResponseJSON & { name?: unknown };
    const { user, signIn } = await enrollingUser(ctx, ENROLL_FINISH_SECONDS);
    const cookie = existingChallengeCookie(ctx);
    const row = await services.passkeys.verifyRegistration(
      challengeId(cookie, 'registration', signIn?.progress.uid), user.id, body, typeof body.name === 'string' ? body.name : undefined,
    );
    cookies.clear(ctx, cookies.names.webauthn);
    await services.audit.record({
      type: 'factor_enrolled', outcome: 'success', userId: user.id, ...requestFacts(ctx, signIn?.interaction.params.client_id),
      detail: { factor: 'passkey', name: row.name, synced: row.backup_eligible },
    });
    const out: { id: string; name: string; redirectTo?: string; recoveryCodes?: string[] } = { id: row.id, name: row.name };
    // A first factor comes with recovery codes, decided as they are stored (issueFirst), not from what
    // was enrolled before: of two first factors added at once in two windows, exactly one shows codes.
    const codes = await services.recovery.issueFirst(user.id);
    if (codes) out.recoveryCodes = codes;
    if (signIn) {
      const progress = services.progress.withFactor(signIn.progress, user.id, {
        method: 'passkey', at: epochSeconds(clock), userVerified: row.user_verified, backupEligible: row.backup_eligible,
      });
      await states.save(ctx, progress);
      out.redirectTo = `${issuer}/interaction/${signIn.progress.uid}`;
    } else {
      out.redirectTo = `${issuer}/account`;
    }
    ctx.body = out;
  });

  return router;
}

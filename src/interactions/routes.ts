/**
 * The hosted sign-in pages. Thin handlers in the shape of node-oidc-provider's example/routes/koa.js:
 * every POST re-reads the interaction, checks the sign-in is at the step the form belongs to, calls the
 * domain, and redirects (303) back to the interaction page, which renders the next step or finishes.
 * They work without JavaScript; only the passkey buttons need it.
 */
import type Router from '@koa/router';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { AppError, assertThat } from '../errors.js';
import { createRouter } from '../http/router.js';
import { ENROLL_FINISH_SECONDS, SETUP_FINISH_SECONDS, type Method } from '../auth/sign-in-policy.js';
import { checkPassword, findLoginUser } from '../auth/users.js';
import { ThrottledError, type Factor } from '../auth/throttle.js';
import { requestFacts } from '../http/request-facts.js';
import { readForm } from '../http/body.js';
import type { CookieJar } from '../http/cookies.js';
import type { Csrf } from '../http/csrf.js';
import { renderPage, siteNameOf } from '../http/views.js';
import { recoveryCodesView, totpSetupView } from '../http/factor-views.js';
import type { Logger } from '../log.js';
import type { Services } from '../services.js';
import type { UserRow } from '../queries/users.js';
import type { Interaction, SignInState, SignInStates } from './sign-in-state.js';
import { ACR, type VerifiedFactor } from '../auth/assurance.js';
import { PROTOCOL } from '../oidc/provider.js';

export interface InteractionDeps {
  provider: Provider;
  csrf: Csrf;
  cookies: CookieJar;
  services: Services;
  states: SignInStates;
  clock: Clock;
  log: Logger;
}

const SCOPE_TEXT: Record<string, string> = {
  openid: 'Know who you are (your account identifier)',
  profile: 'Your name and username',
  email: 'Your e-mail address',
  offline_access: 'Stay signed in to the app when you are not using it',
};

const SCOPE_OF_CLAIM = new Map(Object.entries(PROTOCOL.claims).flatMap(([scope, claims]) => claims.map((claim) => [claim, scope] as const)));

const METHOD_TEXT: Record<Method, string> = {
  passkey: 'Use a passkey',
  totp: 'Use an authenticator app',
  recovery_code: 'Use a recovery code',
};

const FAILED = 'That did not work. Check the code and try again.';
const TOTP_SETUP_NOT_EXPECTED = 'Setting up an authenticator app is not expected at this step.';

/**
 * The subject of the request's id_token_hint. oidc-provider verified its signature and issuer when the
 * authorization request came in (the interaction's parameters are its stored copy), so it is only read.
 */
function hintedSubject(hint: unknown): string | undefined {
  if (typeof hint !== 'string') return undefined;
  try {
    const { sub } = JSON.parse(Buffer.from(hint.split('.')[1] ?? '', 'base64url').toString('utf8')) as { sub?: unknown };
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

export function createInteractionRoutes(deps: InteractionDeps): Router {
  const { provider, csrf, services, states, clock } = deps;
  const router = createRouter();

  const redirectTo = (ctx: Context, url: string) => {
    ctx.status = 303;
    ctx.redirect(url);
  };
  const backToStep = (ctx: Context, uid: string) => redirectTo(ctx, `/interaction/${uid}`);

  async function loginInteraction(ctx: Context): Promise<Interaction> {
    const interaction = await provider.interactionDetails(ctx.req, ctx.res);
    assertThat(interaction.prompt.name === 'login', () => new AppError('invalid_request', 'This sign-in step is already complete.'));
    return interaction;
  }

  /** Reads and checks a form: CSRF first, then the interaction must be at the login prompt. */
  async function postedStep(ctx: Context, freshFor?: number) {
    const form = await readForm(ctx);
    csrf.verify(ctx, form.csrf);
    const state = await states.forPage(ctx, await loginInteraction(ctx), freshFor);
    return { form, state };
  }

  /**
   * After a verified factor: when nothing more is needed the sign-in finishes in this same request (one
   * redirect fewer for the user, nothing stored that would be deleted at once); otherwise the progress is
   * stored under a fresh cookie and the browser goes on to the next step.
   */
  async function advance(ctx: Context, state: SignInState, user: UserRow, factor: VerifiedFactor, notice?: string) {
    // As soon as the user is known, before any other step (a recovery code spent, an app enrolled).
    if (hintRefused(state, user.id)) return refuseHint(ctx, state, user, factor.method);
    const progress = { ...services.progress.withFactor(state.progress, user.id, factor), ...(notice ? { notice } : {}) };
    const next = await states.evaluate(state.interaction, progress, user);
    if (next.step.kind === 'done' && !progress.notice) return finish(ctx, next);
    await states.save(ctx, progress);
    return backToStep(ctx, state.interaction.uid);
  }

  /**
   * OIDC Core §3.1.2.1: an id_token_hint names the user the app expects, and when another one signs in the
   * answer SHOULD be an error: the app gets login_required, not a code for someone else (oidc-provider
   * compares the hint with an existing session only, not with the user who signs in). A hint whose subject
   * cannot be read refuses too.
   */
  const hintRefused = (state: SignInState, userId: string) => {
    const hint = state.interaction.params.id_token_hint;
    return typeof hint === 'string' && hintedSubject(hint) !== userId;
  };
  async function refuseHint(ctx: Context, state: SignInState, user: UserRow, factor: string) {
    await services.progress.finish(state.progress.uid);
    states.release(ctx, state.progress.uid);
    await services.audit.record({
      type: 'sign_in', outcome: 'refused', userId: user.id, username: user.username, ...requestFacts(ctx, state.interaction.params.client_id),
      detail: { factor, reason: 'id_token_hint_mismatch', expected_user_id: hintedSubject(state.interaction.params.id_token_hint) ?? '' },
    });
    const refused = { error: 'login_required', error_description: 'the user signed in with another account than id_token_hint names' };
    redirectTo(ctx, await provider.interactionResult(ctx.req, ctx.res, refused, { mergeWithLastSubmission: false }));
  }

  async function finish(ctx: Context, state: SignInState) {
    // Its callers (advance, renderStep) have refused an id_token_hint that names another user.
    const result = states.loginResult(state);
    // Sent together, so they share one commit (SQLite's writer) or run side by side (PostgreSQL).
    await Promise.all([
      services.progress.finish(state.progress.uid),
      services.audit.record({
        type: 'sign_in', outcome: 'success', userId: state.user!.id, username: state.user!.username,
        ...requestFacts(ctx, state.interaction.params.client_id), detail: { acr: result.login.acr ?? '', amr: result.login.amr.join(' ') },
      }),
    ]);
    states.release(ctx, state.progress.uid);
    redirectTo(ctx, await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
  }

  /**
   * One throttled verification of a factor: reserves the attempt, runs `verify`, records the outcome in
   * the audit trail. A throttled attempt is refused before the secret is looked at (429 page).
   */
  async function attemptFactor(ctx: Context, state: SignInState, factor: Factor, subject: string, verify: () => Promise<boolean>, whileThrottled?: () => Promise<unknown>) {
    const facts = requestFacts(ctx, state.interaction.params.client_id);
    let attempt;
    try {
      attempt = await services.throttle.begin(factor, subject, facts.ip);
    } catch (err) {
      if (err instanceof ThrottledError) {
        // The same work as a real check, so a locked account looks like any other (no timing oracle).
        await whileThrottled?.();
        await services.audit.record({ type: 'sign_in', outcome: 'refused', userId: state.user?.id, ...facts, detail: { factor, reason: `throttled_${err.scope}` } });
      }
      throw err;
    }
    const ok = await verify();
    if (ok) {
      await attempt.succeeded();
      return true;
    }
    const locked = await attempt.failed();
    await services.audit.record({ type: 'sign_in', outcome: 'failure', userId: state.user?.id, ...facts, detail: { factor } });
    if (locked) await services.audit.record({ type: 'lockout', outcome: 'success', userId: state.user?.id, ...facts, detail: { factor } });
    return false;
  }

  const common = (ctx: Context, state: SignInState) => ({
    uid: state.interaction.uid,
    csrf: csrf.token(ctx),
    clientName: state.clientName,
  });

  async function renderStep(ctx: Context, state: SignInState, opts: { error?: string; method?: string; login?: string } = {}, status = 200) {
    const { step } = state;
    // A user identified by a passkey (its API) reaches the next step here.
    if (state.user && hintRefused(state, state.user.id)) return refuseHint(ctx, state, state.user, 'passkey');
    if (state.progress.notice === 'recovery_used' && step.kind === 'done') {
      const remaining = await services.recovery.remaining(state.user!.id);
      return renderPage(ctx, 'recovery-used', { title: 'Recovery code used', ...common(ctx, state), remaining }, status);
    }
    switch (step.kind) {
      case 'first-factor':
        return renderPage(ctx, 'login', {
          title: 'Sign in',
          ...common(ctx, state),
          login: opts.login ?? String(state.interaction.params.login_hint ?? ''),
          error: opts.error,
        }, status);
      case 'second-factor': {
        const method = step.methods.includes(opts.method as Method) ? opts.method as Method : step.methods[0]!;
        return renderPage(ctx, 'second-factor', {
          title: 'Confirm it’s you',
          ...common(ctx, state),
          username: state.user!.username,
          method,
          others: step.methods.filter((m) => m !== method).map((m) => ({ method: m, text: METHOD_TEXT[m] })),
          passkeyOnly: step.methods.length === 1 && step.methods[0] === 'passkey',
          error: opts.error,
        }, status);
      }
      case 'enroll': {
        if (opts.method === 'totp' && step.methods.includes('totp')) {
          const user = state.user!;
          // A secret shown here must be confirmed within SETUP_FINISH_SECONDS (/enroll/totp): an older one
          // (or one begun on the account page long ago) is replaced. After a failed code only a setup begun
          // in time is shown again: the failure is judged with the finish's longer window, and a stale
          // sign-in must not be handed a new secret by it.
          const since = epochSeconds(clock) - SETUP_FINISH_SECONDS;
          const pending = await services.totp.pendingEnrollment(user.id, user.email, since);
          assertThat(pending || !opts.error, () => new AppError('invalid_request', TOTP_SETUP_NOT_EXPECTED));
          const enrollment = pending ?? await services.totp.startEnrollment(user.id, user.email);
          return renderPage(ctx, 'enroll-totp', {
            title: 'Set up an authenticator app',
            ...common(ctx, state),
            ...totpSetupView(enrollment),
            error: opts.error,
          }, status);
        }
        return renderPage(ctx, 'enroll', {
          title: 'Protect your account',
          ...common(ctx, state),
          username: state.user!.username,
          totpAllowed: step.methods.includes('totp'),
          passkeyOnly: !step.methods.includes('totp'),
          // phrh: only a passkey that is not synced counts. A user whose passkeys are all synced, told
          // only "add a passkey", added another synced one and met this page again (an audit finding).
          deviceBound: state.demand === ACR.phrh,
          hasSynced: state.enrolled.passkeys > state.enrolled.deviceBoundPasskeys,
          error: opts.error,
        }, status);
      }
      case 'done':
        return finish(ctx, state);
      default:
        throw new AppError('invalid_request', 'This sign-in step is not supported.');
    }
  }

  async function grantConsent(ctx: Context, interaction: Interaction) {
    const { prompt, params, session } = interaction;
    assertThat(session?.accountId, () => new AppError('invalid_request', 'There is no signed-in user for this request.'));
    const grant = interaction.grantId
      ? await provider.Grant.find(interaction.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: String(params.client_id) });
    assertThat(grant, () => new AppError('invalid_request', 'This authorization has expired. Please start again from the app.'));
    const missing = prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = interaction.grantId ? {} : { grantId };
    redirectTo(ctx, await provider.interactionResult(ctx.req, ctx.res, { consent }, { mergeWithLastSubmission: true }));
  }

  // OpenID Connect Core Error Code unmet_authentication_requirements 1.0.
  async function unmet(ctx: Context, uid: string) {
    await services.progress.finish(uid);
    const result = { error: 'unmet_authentication_requirements', error_description: 'The requested authentication could not be performed.' };
    redirectTo(ctx, await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
  }

  router.get('/interaction/:uid', async (ctx) => {
    const interaction = await provider.interactionDetails(ctx.req, ctx.res);
    switch (interaction.prompt.name) {
      case 'login': {
        const state = await states.forPage(ctx, interaction);
        // An essential acr we never issue: no sign-in helps, so the app hears so at once.
        if (state.unmetAcr) return unmet(ctx, interaction.uid);
        return renderStep(ctx, state, { method: String(ctx.query.method ?? '') });
      }
      case 'consent': {
        const client = await provider.Client.find(String(interaction.params.client_id));
        if (client?.skip_consent === true) return grantConsent(ctx, interaction);
        const missing = interaction.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
        // Everything "Allow" grants (grantConsent): the scopes, and claims asked for one by one with the
        // `claims` parameter (OIDC Core §5.5), each shown as the scope it belongs to.
        const scopes = new Set(missing.missingOIDCScope ?? String(interaction.params.scope ?? '').split(' '));
        for (const claim of missing.missingOIDCClaims ?? []) scopes.add(SCOPE_OF_CLAIM.get(claim) ?? 'profile');
        return renderPage(ctx, 'consent', {
          title: 'Allow access',
          uid: interaction.uid,
          csrf: csrf.token(ctx),
          clientName: client?.clientName ?? String(interaction.params.client_id),
          scopes: Object.keys(SCOPE_TEXT).filter((s) => scopes.has(s)).map((s) => ({ name: s, text: SCOPE_TEXT[s] })),
        });
      }
      default:
        throw new AppError('invalid_request', 'This sign-in step is not supported.');
    }
  });

  router.post('/interaction/:uid/login', async (ctx) => {
    const { form, state } = await postedStep(ctx);
    // Only where the sign-in asks for it: a password posted at another step would add a fresh factor to
    // a session's old ones without being asked for.
    assertThat(state.step.kind === 'first-factor', () => new AppError('invalid_request', 'A password is not expected at this step.'));
    const login = (form.login ?? '').slice(0, 254);
    const password = form.password ?? '';
    const found = await findLoginUser(services.users, login, services.hashLogin);
    let user: Awaited<ReturnType<typeof checkPassword>>;
    const ok = await attemptFactor(ctx, { ...state, user: found.user }, 'pwd', found.subject, async () => {
      user = await checkPassword(services.verifier, services.users, found.user, password, epochSeconds(clock));
      return !!user;
    }, () => services.verifier.verify(password, undefined));
    if (!ok || !user) {
      // One message for unknown user, wrong password and disabled account (no enumeration).
      return renderStep(ctx, { ...state, step: { kind: 'first-factor' } }, { login, error: 'The username or password is incorrect.' }, 401);
    }
    return advance(ctx, state, user, { method: 'pwd', at: epochSeconds(clock) });
  });

  router.post('/interaction/:uid/totp', async (ctx) => {
    const { form, state } = await postedStep(ctx);
    assertThat(state.step.kind === 'second-factor' && state.step.methods.includes('totp'),
      () => new AppError('invalid_request', 'An authenticator app code is not expected at this step.'));
    const user = state.user!;
    if (!(await attemptFactor(ctx, state, 'otp', user.id, () => services.totp.verify(user.id, form.code ?? '')))) {
      return renderStep(ctx, state, { method: 'totp', error: FAILED }, 401);
    }
    return advance(ctx, state, user, { method: 'otp', at: epochSeconds(clock) });
  });

  router.post('/interaction/:uid/recovery', async (ctx) => {
    const { form, state } = await postedStep(ctx);
    assertThat(state.step.kind === 'second-factor' && state.step.methods.includes('recovery_code'),
      () => new AppError('invalid_request', 'A recovery code is not expected at this step.'));
    const user = state.user!;
    if (!(await attemptFactor(ctx, state, 'recovery_code', user.id, () => services.recovery.use(user.id, form.recovery_code ?? '')))) {
      return renderStep(ctx, state, { method: 'recovery_code', error: FAILED }, 401);
    }
    await services.audit.record({ type: 'recovery_code_used', outcome: 'success', userId: user.id, ...requestFacts(ctx, state.interaction.params.client_id) });
    // Finishes through a page that says how many codes are left (the notice).
    return advance(ctx, state, user, { method: 'recovery_code', at: epochSeconds(clock) }, 'recovery_used');
  });

  router.post('/interaction/:uid/enroll/totp', async (ctx) => {
    // The finish of a setup begun (the page with the secret) while the factors were fresh.
    const { form, state } = await postedStep(ctx, ENROLL_FINISH_SECONDS);
    // The same form sent again after it succeeded (a reload of the recovery-codes page, the back button):
    // the app is set up, so on with the sign-in where it stands, rather than an error page. The codes are
    // not shown again (they are stored hashed); the account page makes new ones.
    if (!(state.step.kind === 'enroll' && state.step.methods.includes('totp'))
      && state.progress.factors.some((f) => f.method === 'otp')) return backToStep(ctx, state.interaction.uid);
    assertThat(state.step.kind === 'enroll' && state.step.methods.includes('totp'),
      () => new AppError('invalid_request', TOTP_SETUP_NOT_EXPECTED));
    const user = state.user!;
    // Only the secret of a setup begun within SETUP_FINISH_SECONDS, that is, one shown while the factors
    // were fresh (the setup page, or the account page's): not one shown elsewhere long ago.
    const since = epochSeconds(clock) - SETUP_FINISH_SECONDS;
    const confirmed = await services.throttle.check('otp', user.id, requestFacts(ctx, state.interaction.params.client_id).ip,
      () => services.totp.confirmEnrollment(user.id, form.code ?? '', since));
    if (!confirmed) return renderStep(ctx, state, { method: 'totp', error: FAILED }, 400);
    await services.audit.record({ type: 'factor_enrolled', outcome: 'success', userId: user.id, ...requestFacts(ctx, state.interaction.params.client_id), detail: { factor: 'otp' } });
    await states.save(ctx, services.progress.withFactor(state.progress, user.id, { method: 'otp', at: epochSeconds(clock) }));
    // The first factor: issue the recovery codes now, and show them this once (issueFirst decides, as
    // it stores them: the factors read at the start of this request may already be out of date).
    const codes = await services.recovery.issueFirst(user.id);
    if (!codes) return backToStep(ctx, state.interaction.uid);
    return renderPage(ctx, 'recovery-codes', {
      title: 'Save your recovery codes', ...common(ctx, state), ...recoveryCodesView(siteNameOf(ctx), user.username, codes),
    });
  });

  router.post('/interaction/:uid/continue', async (ctx) => {
    const { state } = await postedStep(ctx);
    await services.progress.setNotice(state.progress, undefined);
    return backToStep(ctx, state.interaction.uid);
  });

  // The user declines to enroll the factor the request demands.
  router.post('/interaction/:uid/decline', async (ctx) => {
    // However old the factors: declining only ends the sign-in.
    const { state } = await postedStep(ctx, Infinity);
    assertThat(state.step.kind === 'enroll', () => new AppError('invalid_request', 'There is nothing to decline at this step.'));
    return unmet(ctx, state.progress.uid);
  });

  router.post('/interaction/:uid/confirm', async (ctx) => {
    const form = await readForm(ctx);
    csrf.verify(ctx, form.csrf);
    const interaction = await provider.interactionDetails(ctx.req, ctx.res);
    assertThat(interaction.prompt.name === 'consent', () => new AppError('invalid_request', 'This consent step is already complete.'));
    return grantConsent(ctx, interaction);
  });

  router.post('/interaction/:uid/abort', async (ctx) => {
    const form = await readForm(ctx);
    csrf.verify(ctx, form.csrf);
    const interaction = await provider.interactionDetails(ctx.req, ctx.res);
    await services.progress.finish(interaction.uid);
    const result = { error: 'access_denied', error_description: 'The user cancelled the sign-in.' };
    redirectTo(ctx, await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
  });

  return router;
}

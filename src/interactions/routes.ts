/**
 * The hosted sign-in pages. Thin handlers in the shape of node-oidc-provider's example/routes/koa.js:
 * every POST re-reads the interaction, checks it is at the expected prompt, and ends with
 * `interactionResult`. Domain work (checking passwords, deciding assurance) lives in src/auth.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { AppError, assertThat } from '../errors.js';
import { acrFor, amrFor, type VerifiedFactor } from '../auth/assurance.js';
import type { PasswordVerifier } from '../auth/password.js';
import { verifyPasswordLogin } from '../auth/users.js';
import { readForm } from '../http/body.js';
import type { Csrf } from '../http/csrf.js';
import { renderPage } from '../http/views.js';
import type { Logger } from '../log.js';
import type { UserQueries } from '../queries/users.js';

export interface InteractionDeps {
  provider: Provider;
  csrf: Csrf;
  users: UserQueries;
  verifier: PasswordVerifier;
  clock: Clock;
  log: Logger;
}

type Details = Awaited<ReturnType<Provider['interactionDetails']>>;

const SCOPE_TEXT: Record<string, string> = {
  openid: 'Know who you are (your account identifier)',
  profile: 'Your name and username',
  email: 'Your e-mail address',
  offline_access: 'Stay signed in to the app when you are not using it',
};

export function createInteractionRoutes(deps: InteractionDeps): Router {
  const { provider, csrf, users, verifier, clock, log } = deps;
  const router = new Router();

  const clientNameOf = async (details: Details) => {
    const client = await provider.Client.find(String(details.params.client_id));
    return client?.clientName ?? String(details.params.client_id);
  };

  const requestedAcrs = (details: Details) => String(details.params.acr_values ?? '').split(' ').filter(Boolean);

  const redirectTo = (ctx: Context, url: string) => {
    ctx.status = 303;
    ctx.redirect(url);
  };

  async function renderLogin(ctx: Context, details: Details, extra: { login?: string; error?: string } = {}, status = 200) {
    renderPage(ctx, 'login', {
      title: 'Sign in',
      uid: details.uid,
      csrf: csrf.token(ctx),
      clientName: await clientNameOf(details),
      login: extra.login ?? String(details.params.login_hint ?? ''),
      error: extra.error,
    }, status);
  }

  /**
   * Ends the login prompt once the user has proved enough. `factors` is everything verified in this
   * interaction; the second-factor step slots in before this call.
   */
  async function finishLogin(ctx: Context, details: Details, accountId: string, factors: VerifiedFactor[]) {
    const ts = Math.max(...factors.map((f) => f.at));
    const result = {
      login: {
        accountId,
        acr: acrFor(factors, requestedAcrs(details)),
        amr: amrFor(factors),
        ts,
        remember: true,
      },
    };
    redirectTo(ctx, await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
  }

  async function grantConsent(ctx: Context, details: Details) {
    const { prompt, params, session } = details;
    assertThat(session?.accountId, new AppError('invalid_request', 'There is no signed-in user for this request.'));
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: String(params.client_id) });
    assertThat(grant, new AppError('invalid_request', 'This authorization has expired. Please start again from the app.'));
    const missing = prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    redirectTo(ctx, await provider.interactionResult(ctx.req, ctx.res, { consent }, { mergeWithLastSubmission: true }));
  }

  router.get('/interaction/:uid', async (ctx) => {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    switch (details.prompt.name) {
      case 'login':
        return renderLogin(ctx, details);
      case 'consent': {
        const client = await provider.Client.find(String(details.params.client_id));
        if (client?.skip_consent === true) return grantConsent(ctx, details);
        const missing = details.prompt.details as { missingOIDCScope?: string[] };
        const scopes = missing.missingOIDCScope ?? String(details.params.scope ?? '').split(' ');
        return renderPage(ctx, 'consent', {
          title: 'Allow access',
          uid: details.uid,
          csrf: csrf.token(ctx),
          clientName: client?.clientName ?? String(details.params.client_id),
          scopes: scopes.filter((s) => SCOPE_TEXT[s]).map((s) => ({ name: s, text: SCOPE_TEXT[s] })),
        });
      }
      default:
        throw new AppError('invalid_request', 'This sign-in step is not supported.');
    }
  });

  router.post('/interaction/:uid/login', async (ctx) => {
    const form = await readForm(ctx);
    csrf.verify(ctx, form.csrf);
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    assertThat(details.prompt.name === 'login', new AppError('invalid_request', 'This sign-in step is already complete.'));
    const login = (form.login ?? '').slice(0, 254);
    const user = await verifyPasswordLogin({ users, verifier }, login, form.password ?? '');
    if (!user) {
      log.info('sign-in failed', { factor: 'pwd', client_id: details.params.client_id, ip: ctx.ip });
      // One message for unknown user, wrong password and disabled account (no enumeration).
      return renderLogin(ctx, details, { login, error: 'The username or password is incorrect.' }, 401);
    }
    log.info('sign-in succeeded', { factor: 'pwd', user_id: user.id, client_id: details.params.client_id, ip: ctx.ip });
    return finishLogin(ctx, details, user.id, [{ method: 'pwd', at: epochSeconds(clock) }]);
  });

  router.post('/interaction/:uid/confirm', async (ctx) => {
    const form = await readForm(ctx);
    csrf.verify(ctx, form.csrf);
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    assertThat(details.prompt.name === 'consent', new AppError('invalid_request', 'This consent step is already complete.'));
    return grantConsent(ctx, details);
  });

  router.post('/interaction/:uid/abort', async (ctx) => {
    const form = await readForm(ctx);
    csrf.verify(ctx, form.csrf);
    await provider.interactionDetails(ctx.req, ctx.res);
    const result = { error: 'access_denied', error_description: 'The user cancelled the sign-in.' };
    redirectTo(ctx, await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
  });

  return router;
}

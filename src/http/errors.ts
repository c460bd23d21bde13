/**
 * The one place errors become responses: a friendly page for browsers, `{ error, error_description }`
 * for the JSON APIs. Never a stack trace; unexpected errors are logged and answered with a generic 500.
 */
import type { Context, Next } from 'koa';
import { errors as oidcErrors } from 'oidc-provider';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import { renderPage } from './views.js';

function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof oidcErrors.SessionNotFound) {
    return new AppError('session_not_found', 'This sign-in page has expired or was opened in another browser. Please start again from the app.', { status: 400, cause: err });
  }
  if (err instanceof oidcErrors.OIDCProviderError && err.expose) {
    return new AppError(err.error, err.error_description ?? err.message, { status: err.status, cause: err });
  }
  const status = (err as { status?: number } | null | undefined)?.status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new AppError('invalid_request', 'The request could not be understood.', { status, cause: err });
  }
  return new AppError('server_error', 'Something went wrong on our side.', { status: 500, expose: false, cause: err });
}

/** Where a page's "Try again" leads: the sign-in step or the account page the failed request came from. */
function backFrom(path: string): { href: string; text: string } | undefined {
  const step = /^\/interaction\/([A-Za-z0-9_-]+)\//.exec(path);
  if (step) return { href: `/interaction/${step[1]}`, text: 'Back to the sign-in' };
  if (/^\/account\//i.test(path)) return { href: '/account', text: 'Back to your account' };
  return undefined;
}

/**
 * oidc-provider's authorization and end-session endpoints, which take GET only. OIDC Core §3.1.2.1 and
 * RP-Initiated Logout §2 also want POST, which the library offers only with its session cookie on
 * SameSite=None (enableHttpPostMethods): a cross-site POST carries no SameSite=Lax cookie, so the user
 * would look signed out. We keep Lax, a defence against cross-site requests for every page, and GET.
 */
const GET_ONLY = new Set(['/auth', '/session/end']);

/** A 4xx no route gave a body to: our page for a browser, JSON for a client that asks for it. */
function answer(ctx: Context, status: number, error: string, description: string): void {
  if (ctx.accepts('html', 'json') === 'json') {
    ctx.status = status;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { error, error_description: description };
    return;
  }
  const heading = status === 404 ? 'Page not found' : 'This request is not supported';
  renderPage(ctx, 'error', { title: heading, heading, description }, status);
}

export function errorHandler(log: Logger) {
  // Not async: see securityHeaders (views.ts).
  return function handleErrors(ctx: Context, next: Next) {
    return next().then(() => {
      // RFC 6749 §5.2: a client that may not use the grant type it sent is `unauthorized_client`;
      // oidc-provider says invalid_request (lib/actions/token.js), which tells the client to fix the request.
      if (ctx.status === 400 && (ctx as { oidc?: { route?: string } }).oidc?.route === 'token') {
        const body = ctx.body as { error?: string; error_description?: string } | undefined;
        if (body?.error === 'invalid_request' && body.error_description === 'requested grant type is not allowed for this client') {
          body.error = 'unauthorized_client';
        }
      }
      // The JSON API answers in JSON also where no route answers: a path it does not have (404) or a
      // method its path does not take (405, Allow set by the router), which Koa would answer in plain text.
      // A page no route has, asked for by a browser: our page, not Koa's plain "Not Found".
      if (ctx.body == null && ctx.status === 404 && !ctx.path.startsWith('/api/')) {
        const read = ctx.method === 'GET' || ctx.method === 'HEAD';
        // The authorization and logout endpoints take GET only (see GET_ONLY): say so, with Allow.
        if (!read && GET_ONLY.has(ctx.path.toLowerCase())) {
          ctx.set('Allow', 'GET, HEAD');
          return answer(ctx, 405, 'method_not_allowed', 'This endpoint takes GET requests only: send its parameters in the query string.');
        }
        return answer(ctx, 404, 'not_found', read ? 'There is no page at this address.' : `Nothing here takes ${ctx.method} requests.`);
      }
      if (ctx.body == null && (ctx.status === 404 || ctx.status === 405) && ctx.path.startsWith('/api/')) {
        const status = ctx.status;
        ctx.body = status === 404
          ? { error: 'not_found', error_description: 'There is no such API endpoint.' }
          : { error: 'method_not_allowed', error_description: `This endpoint does not take ${ctx.method}.` };
        ctx.status = status;
        ctx.set('Cache-Control', 'no-store');
      }
    }, (err: unknown) => {
      const error = toAppError(err);
      if (error.status >= 500) {
        log.error('request failed', {
          request_id: (ctx.state as { requestId?: string }).requestId, path: ctx.path, method: ctx.method, error: String((err as Error)?.stack ?? err),
        });
      }
      const retryAfter = (err as { retryAfter?: number } | null | undefined)?.retryAfter;
      if (typeof retryAfter === 'number') ctx.set('Retry-After', String(Math.ceil(retryAfter)));
      const description = error.expose ? error.message : 'Something went wrong on our side. Please try again later.';
      if (ctx.path.startsWith('/api/') || (ctx.accepts('html', 'json') === 'json')) {
        ctx.status = error.status;
        ctx.set('Cache-Control', 'no-store');
        ctx.body = { error: error.code, error_description: description };
        return;
      }
      renderPage(ctx, 'error', { title: 'Something went wrong', error: error.code, description, back: backFrom(ctx.path) }, error.status);
    });
  };
}

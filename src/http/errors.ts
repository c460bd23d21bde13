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

export function errorHandler(log: Logger) {
  // Not async: see securityHeaders (views.ts).
  return function handleErrors(ctx: Context, next: Next) {
    return next().then(() => {
      // The JSON API answers in JSON also where no route answers: a path it does not have (404) or a
      // method its path does not take (405, Allow set by the router), which Koa would answer in plain text.
      // A page no route has, asked for by a browser: our page, not Koa's plain "Not Found".
      if (ctx.body == null && ctx.status === 404 && (ctx.method === 'GET' || ctx.method === 'HEAD') && !ctx.path.startsWith('/api/')
        && ctx.accepts('html', 'json') === 'html') {
        renderPage(ctx, 'error', { title: 'Page not found', heading: 'Page not found', description: 'There is no page at this address.' }, 404);
        return;
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
        log.error('request failed', { path: ctx.path, method: ctx.method, error: String((err as Error)?.stack ?? err) });
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

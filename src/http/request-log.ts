/** One log line per request: request id, method, route, status, latency. Never the query string. */
import { randomUUID } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Logger } from '../log.js';

const INCOMING_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * A request's route for logs and metrics: oidc-provider's route name, our router's path template,
 * `healthz` / `readyz`, `static` for the pages' files, else `other` (a path no route has: what a client
 * made up, which would also be one metrics series per path).
 */
export function routeOf(ctx: Context): string {
  // Handlers outside the routers (health checks, static files) name theirs in ctx.state.route.
  const route = (ctx.state as { route?: string }).route ?? (ctx as { oidc?: { route?: string } }).oidc?.route
    ?? (ctx as { _matchedRoute?: string })._matchedRoute;
  return route === undefined ? 'other' : String(route);
}

export function requestLog(log: Logger) {
  // Not async: see securityHeaders (views.ts).
  return function logRequest(ctx: Context, next: Next) {
    const incoming = ctx.get('x-request-id');
    const requestId = INCOMING_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    const started = process.hrtime.bigint();
    const done = (status: number) => {
      const fields = {
        request_id: requestId, method: ctx.method, route: routeOf(ctx), status,
        ms: Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10, ip: ctx.ip,
      };
      if (status >= 500) log.error('request', fields);
      else log.info('request', fields);
    };
    return next().then(() => done(ctx.status), (err: unknown) => {
      // An error the error handler did not turn into an answer: koa answers it, with its own status when
      // it exposes one (a client error), else 500.
      const { status, expose } = (err ?? {}) as { status?: unknown; expose?: unknown };
      done(expose === true && typeof status === 'number' && status >= 400 && status < 500 ? status : 500);
      throw err;
    });
  };
}

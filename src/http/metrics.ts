/**
 * Prometheus metrics (prom-client), off by default. One registry per process-level app, so counters
 * survive the app being rebuilt on a key rotation.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, Next } from 'koa';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Db } from '../db/connect.js';
import { routeOf } from './request-log.js';

export function createMetrics(db: Db) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const http = new Histogram({
    name: 'idp_http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const signIns = new Counter({
    name: 'idp_sign_in_attempts_total', help: 'Sign-in verifications by outcome and factor',
    labelNames: ['outcome', 'factor'] as const, registers: [registry],
  });
  const tokens = new Counter({
    name: 'idp_tokens_issued_total', help: 'Successful token endpoint grants by grant type',
    labelNames: ['grant_type'] as const, registers: [registry],
  });
  const throttled = new Counter({
    name: 'idp_throttle_hits_total', help: 'Verifications refused by the throttle, by scope',
    labelNames: ['scope'] as const, registers: [registry],
  });
  type Pool = { numUsed(): number; numFree(): number; numPendingAcquires(): number };
  new Gauge({
    name: 'idp_db_pool_connections', help: 'Database pool connections by state', labelNames: ['state'] as const, registers: [registry],
    collect() {
      const current = (db.client as { pool?: Pool }).pool;
      if (!current) return;
      this.set({ state: 'used' }, current.numUsed());
      this.set({ state: 'free' }, current.numFree());
      this.set({ state: 'pending' }, current.numPendingAcquires());
    },
  });

  return {
    registry,
    signIns,
    tokens,
    throttled,
    /** Times every request; the route is oidc-provider's route name or our router's path template. */
    middleware() {
      return async function timeRequest(ctx: Context, next: Next) {
        const end = http.startTimer({ method: ctx.method });
        try {
          await next();
        } finally {
          end({ route: routeOf(ctx), status: String(ctx.status) });
        }
      };
    },
    async render(): Promise<{ type: string; body: string }> {
      return { type: registry.contentType, body: await registry.metrics() };
    },
    /** `GET /metrics` on the main port, for `Authorization: Bearer <token>` only. */
    route(token: string) {
      const authorized = bearerCheck(token);
      return async (ctx: Context, next: Next) => {
        if (ctx.path !== '/metrics' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
        ctx.state.route = 'metrics';
        if (!authorized(ctx.get('authorization'))) {
          ctx.status = 401;
          ctx.set('WWW-Authenticate', 'Bearer');
          ctx.body = { error: 'invalid_token', error_description: 'a valid bearer token is required' };
          return;
        }
        const { type, body } = await this.render();
        ctx.type = type;
        ctx.body = body;
      };
    },
    /**
     * The handler of the metrics port (`metrics.port`): `/metrics` (any query string, as Prometheus may
     * add one) by GET or HEAD, behind the bearer token too when one is set (an operator-audit finding: it
     * was ignored there); 404 for anything else, 405 for other methods.
     */
    standalone(token?: string) {
      const authorized = token ? bearerCheck(token) : () => true;
      return (req: IncomingMessage, res: ServerResponse) => {
        const pathname = new URL(req.url ?? '/', 'http://metrics').pathname;
        const answer = (status: number, headers: Record<string, string> = {}) => { res.writeHead(status, headers); res.end(); };
        if (pathname !== '/metrics') return answer(404);
        if (req.method !== 'GET' && req.method !== 'HEAD') return answer(405, { Allow: 'GET, HEAD' });
        if (!authorized(req.headers.authorization ?? '')) return answer(401, { 'WWW-Authenticate': 'Bearer' });
        this.render().then(({ type, body }) => {
          res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : body);
        }, () => answer(500));
      };
    },
  };
}

/** Compares an Authorization header with `Bearer <token>` in constant time. */
function bearerCheck(token: string): (header: string) => boolean {
  const expected = Buffer.from(`Bearer ${token}`);
  return (header) => {
    const given = Buffer.from(header);
    return given.length === expected.length && timingSafeEqual(given, expected);
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

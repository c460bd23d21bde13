/**
 * `GET /healthz` (or HEAD): the process is alive (no I/O). `GET /readyz` (or HEAD): this instance can serve: the database
 * answers, its migrations are current, the signing keys are loaded, and it is not shutting down. Both cheap,
 * both JSON.
 */
import type { Context, Next } from 'koa';
import type { Db } from '../db/connect.js';
import { pendingMigrations } from '../db/migrate.js';

const withTimeout = <T>(work: Promise<T>, ms: number) => Promise.race([
  work,
  new Promise<never>((_, reject) => { setTimeout(() => reject(new Error('timed out')), ms).unref(); }),
]);

export function healthChecks(deps: { db: Db; keysLoaded: () => boolean; draining?: () => boolean }) {
  // Migrations only move forward while we run: once current, re-check only now and then.
  let migrationsCheckedAt = 0;
  return async function health(ctx: Context, next: Next) {
    // HEAD too: load balancers probe with it (Koa sends the status and headers, no body).
    const probe = ctx.method === 'GET' || ctx.method === 'HEAD';
    if (ctx.path === '/healthz' && probe) {
      ctx.state.route = 'healthz';
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { status: 'ok' };
      return;
    }
    if (ctx.path !== '/readyz' || !probe) return next();
    ctx.state.route = 'readyz';
    // Shutting down (SIGTERM): a load balancer that probes over a connection it kept alive must take this
    // instance out now, while it finishes what it has in flight.
    if (deps.draining?.()) {
      ctx.set('Cache-Control', 'no-store');
      ctx.status = 503;
      ctx.body = { status: 'draining' };
      return;
    }
    const checks: Record<string, string> = {};
    try {
      await withTimeout(deps.db.raw('select 1'), 2000);
      checks.database = 'ok';
      if (Date.now() - migrationsCheckedAt > 60_000) {
        const pending = await withTimeout(pendingMigrations(deps.db), 2000);
        if (pending.length > 0) throw Object.assign(new Error('pending'), { check: 'migrations' });
        migrationsCheckedAt = Date.now();
      }
      checks.migrations = 'ok';
    } catch (err) {
      if ((err as { check?: string }).check === 'migrations') {
        checks.migrations = 'pending';
      } else {
        checks.database = 'unreachable';
      }
    }
    checks.keys = deps.keysLoaded() ? 'ok' : 'missing';
    const ready = Object.values(checks).every((v) => v === 'ok') && Object.keys(checks).length === 3;
    ctx.set('Cache-Control', 'no-store');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not ready', checks };
  };
}

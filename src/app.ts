/** buildApp(deps): the whole HTTP application, without listening. main.ts and the tests both use it. */
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import type Koa from 'koa';
import compose from 'koa-compose';
import type Provider from 'oidc-provider';
import type { Clock } from './clock.js';
import { epochSeconds, systemClock } from './clock.js';
import type { Config } from './config/load.js';
import type { Db } from './db/connect.js';
import { factorsFromAmr, demandedAcr, meets, sessionExpired, type MfaPolicy } from './auth/sign-in-policy.js';
import { createAccountSessions } from './account/session.js';
import { createAccountRoutes } from './account/routes.js';
import { createCookieJar } from './http/cookies.js';
import { createCsrf } from './http/csrf.js';
import { errorHandler } from './http/errors.js';
import { canonicalHost } from './http/canonical-host.js';
import { createClientIp } from './http/client-ip.js';
import { securityHeaders } from './http/views.js';
import { staticFiles } from './http/static.js';
import { healthChecks } from './http/health.js';
import { requestLog } from './http/request-log.js';
import { createMetrics, type Metrics } from './http/metrics.js';
import { createInteractionRoutes } from './interactions/routes.js';
import { createSignInStates } from './interactions/sign-in-state.js';
import { createWebAuthnApi } from './interactions/webauthn-api.js';
import { createLogger, type Logger } from './log.js';
import { checkSecretKeyFingerprint, loadOrCreateKeys, loadOrCreatePepper, replacedKeyLifetime, rotateSigningKeys, signingKeySets } from './oidc/keys.js';
import { createSecretBox } from './auth/secret-box.js';
import { createProvider } from './oidc/provider.js';
import { createServices, type Services } from './services.js';

export interface AppDeps {
  config: Config;
  db: Db;
  /** 32 bytes; encrypts TOTP secrets and keys recovery-code hashes. */
  secretKey: Buffer;
  clock?: Clock;
  log?: Logger;
  /** Shared across rebuilds, so counters survive a key rotation. Created by createReloadingApp. */
  metrics?: Metrics;
  /** True once the process is shutting down: /readyz then answers 503 (main.ts). */
  draining?: () => boolean;
}

export interface App {
  /** The Koa application (oidc-provider is itself a Koa app; our routes run before its own). */
  provider: Provider;
  callback: ReturnType<Provider['callback']>;
  services: Services;
  /** The published key ids, in order: a change means the keys were rotated or retired. */
  kids: string;
}

const require = createRequire(import.meta.url);
// Lower-cased: @koa/router matches paths case-insensitively.
const firstSegment = (path: string) => { const end = path.indexOf('/', 1); return path.slice(1, end < 0 ? undefined : end).toLowerCase(); };
// The browser half of SimpleWebAuthn, served from our own origin (no CDN).
const BROWSER_BUNDLES = {
  // The package's exports hide dist/; its entry point lives one level below the package root.
  '/static/simplewebauthn-browser.js': path.resolve(path.dirname(require.resolve('@simplewebauthn/browser')), '..', 'dist/bundle/index.umd.min.js'),
};

export async function buildApp({ config, db, secretKey, clock = systemClock, log = createLogger(), metrics, draining }: AppDeps): Promise<App> {
  const keys = await loadOrCreateKeys(db, clock, replacedKeyLifetime(config));
  const box = createSecretBox(secretKey);
  await checkSecretKeyFingerprint(db, clock, box.fingerprint());
  const pepper = await loadOrCreatePepper(db, clock, box);
  const services = createServices({ config, db, clock, log, secretKey, pepper, metrics });
  const provider = createProvider({
    config, db, clock, keys, users: services.users,
    async needsStepUp({ accountId, amr, loginTs, mfaPolicy, requested }) {
      const enrolled = await services.enrolled(accountId);
      const demand = demandedAcr({ mfaPolicy: mfaPolicy as MfaPolicy, enrolled, requested });
      return !meets(factorsFromAmr(amr, loginTs), demand);
    },
    sessionExpired: ({ loginTs, lastSeen, amr }) => sessionExpired({
      now: epochSeconds(clock), loginTs, lastSeen, amr,
      reauthenticateAfter: config.sessions.reauthenticate_after, mfaIdleTimeout: config.sessions.mfa_idle_timeout,
    }),
  });
  const secure = config.issuer.startsWith('https:');
  const csrf = createCsrf({ key: keys.cookieKeys[0]!, secureCookies: secure });
  const cookies = createCookieJar(secure);
  const states = createSignInStates({ provider, services, cookies, clock, interactionTtl: config.ttl.interaction });
  const accounts = createAccountSessions({ provider, services, clock, config });

  // Every page names the provider as the operator does (views.ts reads it off the context).
  (provider.context as { siteName?: string }).siteName = config.name;
  provider.on('server_error', (ctx, err) => log.error('oidc server error', {
    request_id: (ctx?.state as { requestId?: string } | undefined)?.requestId, error: String(err?.stack ?? err),
  }));
  provider.use(canonicalHost(config.issuer));
  if (metrics) {
    provider.use(metrics.middleware());
    provider.on('grant.success', (ctx) => metrics.tokens.inc({ grant_type: String(ctx.oidc.params?.grant_type ?? 'unknown') }));
  }
  provider.use(createClientIp(config.trusted_proxies).middleware());
  provider.use(requestLog(log));
  provider.use(securityHeaders(secure));
  // On the main port, behind its token: logged and given the headers like every other response.
  if (metrics && config.metrics.port === undefined && config.metrics.bearer_token) provider.use(metrics.route(config.metrics.bearer_token));
  provider.use(errorHandler(log));
  const routers = [
    createInteractionRoutes({ provider, csrf, cookies, services, states, clock, log }),
    createWebAuthnApi({ issuer: config.issuer, services, states, accounts, cookies, clock, log }),
    createAccountRoutes({ provider, config, csrf, services, accounts, clock, log }),
  ];
  const ours = compose<Koa.ParameterizedContext>([
    staticFiles(BROWSER_BUNDLES),
    healthChecks({ db, keysLoaded: () => keys.jwks.keys.length > 0, draining }),
    ...routers.flatMap((router) => [router.routes(), router.allowedMethods()] as Koa.Middleware[]),
  ]);
  // Requests for oidc-provider's own endpoints (token, discovery, JWKS, …) skip our routers: the first path
  // segment tells, and the set is read off the routers themselves so a new route cannot be missed.
  const ownSegments = new Set(['static', 'healthz', 'readyz', ...routers.flatMap((r) => r.stack.map((layer) => firstSegment(String(layer.path))))]);
  provider.use((ctx, next) => (ownSegments.has(firstSegment(ctx.path)) ? ours(ctx, next) : next()));

  return { provider, callback: provider.callback(), services, kids: keys.jwks.keys.map((k) => String(k.kid)).join(' ') };
}

export interface ReloadingApp {
  /** The application currently serving. */
  readonly current: App;
  /** Prometheus metrics, when enabled. */
  readonly metrics: Metrics | undefined;
  /** The request handler; it always hands over to the current application. */
  callback(req: IncomingMessage, res: ServerResponse): void;
  /**
   * Rotates the signing keys when `keys.rotate_every` says so, then picks up keys that other instances
   * added or that retired: when the published set changed, a new application replaces the current one.
   */
  reloadKeys(): Promise<boolean>;
}

/** oidc-provider takes its keys at construction: a key change means building the app again and swapping. */
export async function createReloadingApp(deps: AppDeps): Promise<ReloadingApp> {
  const clock = deps.clock ?? systemClock;
  const { config, db } = deps;
  const metrics = deps.metrics ?? (config.metrics.enabled ? createMetrics(db) : undefined);
  deps = { ...deps, metrics };
  let current = await buildApp(deps);
  return {
    get current() { return current; },
    metrics,
    callback: (req, res) => { current.callback(req, res); },
    async reloadKeys() {
      const now = epochSeconds(clock);
      const every = config.keys.rotate_every;
      if (every > 0) {
        const [active] = await signingKeySets(db, now, replacedKeyLifetime(config));
        // Instances racing to rotate agree on the id of this period's set, so only one is created.
        if (!active || now - active.createdAt >= every) await rotateSigningKeys(db, clock, `signing-auto-${Math.floor(now / every)}`);
      }
      const keys = await loadOrCreateKeys(db, clock, replacedKeyLifetime(config));
      if (keys.jwks.keys.map((k) => String(k.kid)).join(' ') === current.kids) return false;
      current = await buildApp(deps);
      return true;
    },
  };
}

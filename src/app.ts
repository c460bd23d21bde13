/** buildApp(deps): the whole HTTP application, without listening. main.ts and the tests both use it. */
import type Provider from 'oidc-provider';
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import type { Config } from './config/load.js';
import type { Db } from './db/connect.js';
import { createPasswordVerifier } from './auth/password.js';
import { createCsrf } from './http/csrf.js';
import { errorHandler } from './http/errors.js';
import { staticFiles } from './http/static.js';
import { createInteractionRoutes } from './interactions/routes.js';
import { createLogger, type Logger } from './log.js';
import { loadOrCreateKeys } from './oidc/keys.js';
import { createProvider } from './oidc/provider.js';
import { createUserQueries } from './queries/users.js';

export interface AppDeps {
  config: Config;
  db: Db;
  clock?: Clock;
  log?: Logger;
}

export interface App {
  /** The Koa application (oidc-provider is itself a Koa app; our routes run before its own). */
  provider: Provider;
  callback: ReturnType<Provider['callback']>;
}

export async function buildApp({ config, db, clock = systemClock, log = createLogger() }: AppDeps): Promise<App> {
  const keys = await loadOrCreateKeys(db, clock);
  const users = createUserQueries(db);
  const verifier = createPasswordVerifier(config.password);
  const provider = createProvider({ config, db, clock, keys, users });
  const csrf = createCsrf({ key: keys.cookieKeys[0]!, secureCookies: config.issuer.startsWith('https:') });

  provider.on('server_error', (_ctx, err) => log.error('oidc server error', { error: String(err?.stack ?? err) }));
  provider.use(errorHandler(log));
  provider.use(staticFiles());
  provider.use(async (ctx, next) => {
    if (ctx.path !== '/healthz') return next();
    await db.raw('select 1');
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  const interactions = createInteractionRoutes({ provider, csrf, users, verifier, clock, log });
  provider.use(interactions.routes());
  provider.use(interactions.allowedMethods());

  return { provider, callback: provider.callback() };
}

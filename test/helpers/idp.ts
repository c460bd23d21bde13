/**
 * Starts a real wrnexus-sso on a random loopback port over a real migrated database, configured through
 * the real config loader (a YAML file written for the test).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { createReloadingApp, type App, type ReloadingApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/load.js';
import { connect, type Db } from '../../src/db/connect.js';
import { migrate } from '../../src/db/migrate.js';
import type { UserService } from '../../src/auth/users.js';
import { systemClock, type Clock } from '../../src/clock.js';
import { silentLogger, type Logger } from '../../src/log.js';
import type { TestDatabase } from './databases.js';

export const TEST_SECRET = 'a-test-client-secret-of-some-length';
export const TEST_SECRET_KEY = Buffer.alloc(32, 7);

export const defaultClients = (redirect: string) => [
  {
    client_id: 'web-app',
    client_name: 'Test Web App',
    client_secret: TEST_SECRET,
    redirect_uris: [redirect],
    post_logout_redirect_uris: [`${redirect}/logged-out`],
    grant_types: ['authorization_code', 'refresh_token'],
  },
  {
    client_id: 'spa',
    client_name: 'Test SPA',
    redirect_uris: [redirect],
    token_endpoint_auth_method: 'none',
  },
  {
    client_id: 'first-party',
    client_secret: TEST_SECRET,
    redirect_uris: [redirect],
    skip_consent: true,
  },
  {
    client_id: 'service',
    client_secret: TEST_SECRET,
    grant_types: ['client_credentials'],
    response_types: [],
  },
];

export const REDIRECT_URI = 'https://rp.example.test/callback';

export interface TestIdp {
  /** Where this instance really listens (differs from the issuer behind a shared "load balancer"). */
  url: string;
  issuer: string;
  config: Config;
  db: Db;
  readonly app: App;
  reloadKeys(): Promise<boolean>;
  users: UserService;
  close(): Promise<void>;
}

export async function startIdp(database: TestDatabase, options: {
  clients?: unknown[];
  extra?: Record<string, unknown>;
  log?: Logger;
  /** Defaults to the instance's own loopback URL; instances behind one "load balancer" share one. */
  issuer?: string;
  /** Host name for the default issuer; browsers refuse IP addresses as WebAuthn RP IDs, so use localhost. */
  host?: string;
  clock?: Clock;
  secretKey?: Buffer;
} = {}): Promise<TestIdp> {
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => { res.statusCode = 503; res.end(); };
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const file = path.join(database.target.data_dir, `idp-${port}.yaml`);
  writeFileSync(file, YAML.stringify({
    password: { bcrypt_cost: 4 },
    // Suites that are not about throttling make many failed attempts on purpose: a lenient limit.
    throttle: { backoff_after: 60, lock_after: 90, ip_max_failures: 10_000 },
    clients: options.clients ?? defaultClients(REDIRECT_URI),
    ...options.extra,
  }));
  let config: Config;
  try {
    config = loadConfig({
      IDP_CONFIG: file,
      IDP_ISSUER: options.issuer ?? `http://${options.host ?? '127.0.0.1'}:${port}`,
      IDP_DATA_DIR: database.target.data_dir,
      DATABASE_URL: database.target.database_url,
    });
  } catch (err) {
    // A refused configuration must not leave a listening socket behind either (jest would never exit).
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw err;
  }
  const db = connect(config);
  let app: ReloadingApp;
  try {
    await migrate(db);
    app = await createReloadingApp({ config, db, secretKey: options.secretKey ?? TEST_SECRET_KEY, clock: options.clock ?? systemClock, log: options.log ?? silentLogger });
  } catch (err) {
    // A refused start must not leave a listening socket or a pool behind (jest would never exit).
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await db.destroy();
    throw err;
  }
  handler = app.callback;
  const users = app.current.services.userService;
  return {
    url: `http://127.0.0.1:${port}`,
    issuer: config.issuer,
    config,
    db,
    get app() { return app.current; },
    reloadKeys: () => app.reloadKeys(),
    users,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await db.destroy();
    },
  };
}

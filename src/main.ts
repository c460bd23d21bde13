/** Start-up: load config → open db → migrate → build app → listen; graceful shutdown. */
import { createServer, type ServerResponse } from 'node:http';
import { systemClock } from './clock.js';
import { ConfigError, loadConfig, type Config } from './config/load.js';
import { connect, describeDatabase } from './db/connect.js';
import { migrate } from './db/migrate.js';
import { createReloadingApp } from './app.js';
import { loadSecretKey } from './config/secret-key.js';
import { createLogger } from './log.js';
import { cleanUp } from './services.js';
import { validateClients } from './oidc/validate-clients.js';
import { cliCommand } from './paths.js';
import { proxyWarning } from './http/client-ip.js';

const CLEANUP_EVERY_MS = 10 * 60 * 1000;

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(`wrnexus-sso: ${err.message}\nRefusing to start.`);
    throw err;
  }
  const log = createLogger(undefined, config.log.level);
  // Before the database: a bad key refuses to start with nothing migrated or created.
  const secretKey = loadSecretKey(process.env, config.data_dir, log);
  const db = connect(config, log);
  const applied = await migrate(db);
  if (applied.length > 0) log.info('database migrated', { applied });
  let draining = false;
  const app = await createReloadingApp({ config, db, secretKey, clock: systemClock, log, draining: () => draining });
  const clientProblems = await validateClients(app.current.provider, config);
  if (clientProblems.length > 0) {
    await db.destroy();
    fail(`wrnexus-sso: invalid configuration in ${config.file}:\n${clientProblems.map((p) => `  - ${p}`).join('\n')}\nRefusing to start.`);
  }

  // While draining, every answer closes its connection, those in flight at SIGTERM included: server.close()
  // refuses new connections only, and a client (or load balancer) that keeps one alive would go on sending
  // requests here.
  const inFlight = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    if (draining) {
      res.setHeader('Connection', 'close');
    } else {
      inFlight.add(res);
      res.once('close', () => inFlight.delete(res));
    }
    app.callback(req, res);
  });
  // Metrics on a port of their own (e.g. only reachable from the monitoring network).
  const metricsServer = app.metrics && config.metrics.port !== undefined
    ? createServer(app.metrics.standalone(config.metrics.bearer_token))
    : undefined;
  // A port that is taken (or not ours to take) is a configuration problem, not a crash.
  const refuse = (setting: string, port: number) => (err: NodeJS.ErrnoException) => {
    const why = err.code === 'EADDRINUSE' ? 'is already in use' : err.code === 'EACCES' ? 'may not be used by this user' : `cannot be used (${err.code ?? err.message})`;
    db.destroy().finally(() => fail(`wrnexus-sso: ${setting}: port ${port} ${why}.\nRefusing to start.`));
  };
  if (metricsServer) metricsServer.once('error', refuse('metrics.port', config.metrics.port!)).listen(config.metrics.port, config.metrics.host);
  server.once('error', refuse(process.env.PORT ? 'PORT' : 'port', config.port));
  const warning = proxyWarning(config);
  if (warning) log.warn(warning);
  const hasUsers = await app.current.services.users.any();
  server.listen(config.port, () => {
    const facts = { port: config.port, issuer: config.issuer, config: config.file, clients: config.clients.length, database: describeDatabase(config) };
    // On a terminal, a banner; otherwise (a container, a service manager) one log line, so that standard
    // output stays JSON lines.
    if (!process.stdout.isTTY) {
      log.info(`wrnexus-sso is listening on port ${config.port}`, hasUsers ? facts : { ...facts, first_user: `${cliCommand()} users add <username> --email <email>` });
      return;
    }
    process.stdout.write([
      '',
      `wrnexus-sso is listening on port ${config.port}`,
      `  issuer:    ${config.issuer}`,
      `  discovery: ${config.issuer}/.well-known/openid-configuration`,
      `  account:   ${config.issuer}/account (where users manage their passkeys, app and password)`,
      `  config:    ${config.file} (${config.clients.length} client${config.clients.length === 1 ? '' : 's'})`,
      `  database:  ${describeDatabase(config)}`,
      '',
      ...(hasUsers ? [] : ['Add the first user with:', `  ${cliCommand()} users add <username> --email <email>`, '']),
    ].join('\n'));
  });

  // Expired rows are already ignored on read; this only keeps the tables small. Every instance runs it:
  // the deletes are idempotent, so several at once are harmless.
  const cleanup = setInterval(() => {
    cleanUp(app.current.services, { db, clock: systemClock, config })
      .catch((err) => log.error('cleanup failed', { error: String(err) }));
  }, CLEANUP_EVERY_MS);
  cleanup.unref();
  // Rotations made by another instance (or by `idp keys rotate`) take effect here within reload_seconds.
  const reload = setInterval(() => {
    app.reloadKeys()
      .then((changed) => { if (changed) log.info('signing keys reloaded'); })
      .catch((err) => log.error('key reload failed', { error: String(err) }));
  }, config.keys.reload_seconds * 1000);
  reload.unref();

  const shutdown = (signal: string) => {
    draining = true;
    for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    log.info('shutting down', { signal });
    clearInterval(cleanup);
    clearInterval(reload);
    metricsServer?.close();
    server.close(() => {
      db.destroy().finally(() => process.exit(0));
    });
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 10_000).unref();
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => fail(`wrnexus-sso failed to start: ${err instanceof Error ? err.message : String(err)}`));

/**
 * The operator's command line: `npm run idp -- <command>`. Errors are one line on stderr and exit 1.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createSecretBox } from '../auth/secret-box.js';
import { decodeKey, generatedKeyFile, loadSecretKey } from '../config/secret-key.js';
import { replacedKeyLifetime, rotateSecretKey, rotateSigningKeys, signingKeySets } from '../oidc/keys.js';
import { systemClock } from '../clock.js';
import { ConfigError, loadConfig } from '../config/load.js';
import { connect, describeDatabase, reachDatabase, type Db } from '../db/connect.js';
import { freeMigrationLock, migrate } from '../db/migrate.js';
import { AppError } from '../errors.js';
import { createUserService, normaliseUsername } from '../auth/users.js';
import { createUserQueries } from '../queries/users.js';
import { createSignOut } from '../auth/sign-out.js';
import { createOidcPayloadQueries } from '../queries/oidc-payloads.js';
import { createSignInProgressQueries } from '../queries/sign-in-progress.js';
import { Cancelled, promptNewPassword, readPasswordFromStdin } from './password-input.js';
import { createAudit, type EventType } from '../auth/audit.js';
import { createThrottle } from '../auth/throttle.js';
import { createSecurityEventQueries } from '../queries/security-events.js';
import { createThrottleQueries } from '../queries/throttle.js';
import { silentLogger } from '../log.js';
import { closeBcryptPool } from '../auth/bcrypt-pool.js';
import { cliCommand } from '../paths.js';
import { parseAddress, parseCommandLine, parseDuration, parseLimit, USAGE, UsageError } from './command-line.js';

/** What a change ended, for the operator (sign-out.ts). */
const signedOut = (ended: number) => `; signed out everywhere (${ended} ${ended === 1 ? 'session, grant or token' : 'sessions, grants and tokens'} revoked)`;

async function run(argv: string[], out: (line: string) => void): Promise<void> {
  const line = parseCommandLine(argv);
  if (line.help) {
    out(USAGE);
    return;
  }
  const { command, args: [username], options: values } = line;
  if (command === 'secrets rotate' && !values['new-key-file'] && (process.env.IDP_SECRET_KEY || process.env.IDP_SECRET_KEY_FILE)) {
    throw new UsageError('--new-key-file <path> is required when the key comes from IDP_SECRET_KEY or IDP_SECRET_KEY_FILE');
  }
  const config = loadConfig();
  // knex's own messages (an "Acquire connection error" with its stack) are not for the operator: a
  // database that cannot be reached is one line (reachDatabase).
  const db: Db = connect(config, silentLogger);
  try {
    await reachDatabase(db, config);
    if (command === 'migrate') {
      if (values.unlock) {
        await freeMigrationLock(db);
        out(`freed the migration lock of ${describeDatabase(config)} (only for a process that stopped while it migrated)`);
      }
      const applied = await migrate(db);
      out(applied.length ? `applied ${applied.join(', ')} to ${describeDatabase(config)}` : `${describeDatabase(config)} is up to date`);
      return;
    }
    await migrate(db);
    const signOut = createSignOut({ payloads: createOidcPayloadQueries(db), progress: createSignInProgressQueries(db), clock: systemClock });
    const service = createUserService({ users: createUserQueries(db), policy: config.password, clock: systemClock, signOut });
    const audit = createAudit({ events: createSecurityEventQueries(db), clock: systemClock, log: silentLogger });
    const throttle = () => createThrottle({ queries: createThrottleQueries(db), clock: systemClock, policy: config.throttle });
    const cliEvent = (type: EventType, user: { id: string; username: string }) =>
      audit.record({ type, outcome: 'success', userId: user.id, username: user.username, userAgent: 'idp CLI' });

    if (command === 'keys rotate') {
      const lifetime = replacedKeyLifetime(config);
      const id = await rotateSigningKeys(db, systemClock);
      const [active, previous] = await signingKeySets(db, Math.floor(Date.now() / 1000), lifetime);
      out(`new signing keys ${id} are active (${active!.keys.map((k) => `${k.alg} ${k.kid}`).join(', ')})`);
      if (previous) out(`the previous keys stay published until ${new Date(previous.retiresAt! * 1000).toISOString()}`);
      out(`running instances switch within keys.reload_seconds (${config.keys.reload_seconds} s)`);
      return;
    }
    if (command === 'keys list') {
      const sets = await signingKeySets(db, Math.floor(Date.now() / 1000), replacedKeyLifetime(config));
      if (values.json) {
        for (const set of sets) {
          out(JSON.stringify({
            id: set.id, status: set.status, created: new Date(set.createdAt * 1000).toISOString(),
            retires: set.retiresAt ? new Date(set.retiresAt * 1000).toISOString() : undefined,
            keys: set.keys.map((k) => ({ kid: k.kid, alg: k.alg })),
          }));
        }
        return;
      }
      for (const set of sets) {
        const when = set.status === 'active' ? '' : set.status === 'published' ? ` until ${new Date(set.retiresAt! * 1000).toISOString()}` : ` since ${new Date(set.retiresAt! * 1000).toISOString()}`;
        out(`${set.id}  ${set.status}${when}  created ${new Date(set.createdAt * 1000).toISOString()}`);
        for (const key of set.keys) out(`    ${String(key.alg).padEnd(6)} ${key.kid}`);
      }
      return;
    }
    if (command === 'secrets rotate') {
      const warn = { ...silentLogger, warn: (msg: string) => { process.stderr.write(`idp: ${msg}\n`); } };
      const current = loadSecretKey(process.env, config.data_dir, warn);
      const target = values['new-key-file'];
      const newKeyPath = target ?? `${generatedKeyFile(config.data_dir)}.new`;
      let newKey: Buffer;
      if (existsSync(newKeyPath)) {
        newKey = decodeKey(readFileSync(newKeyPath, 'utf8'), newKeyPath);
      } else {
        newKey = randomBytes(32);
        writeFileSync(newKeyPath, `${newKey.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
      }
      if (newKey.equals(current)) throw new UsageError('the new key is the current key');
      const result = await rotateSecretKey(db, createSecretBox(current), createSecretBox(newKey));
      if (!target) renameSync(newKeyPath, generatedKeyFile(config.data_dir));
      await audit.record({ type: 'secrets_rotated', outcome: 'success', userAgent: 'idp CLI', detail: { totp_secrets: result.totpSecrets } });
      out(`re-encrypted ${result.totpSecrets} TOTP secret(s) and the recovery-code key under the new key`);
      out(target
        ? `restart every instance with IDP_SECRET_KEY_FILE=${path.resolve(target)} (or IDP_SECRET_KEY set to its contents)`
        : `replaced ${generatedKeyFile(config.data_dir)}; restart the server`);
      return;
    }
    if (command === 'audit') {
      // A user deleted since is still in the events, by the username recorded with them.
      const username = values.user === undefined ? undefined : normaliseUsername(values.user);
      const user = username === undefined ? undefined : await createUserQueries(db).findByUsername(username);
      const since = values.since ? Math.floor(Date.now() / 1000) - parseDuration(values.since) : undefined;
      const limit = values.limit ? parseLimit(values.limit) : 1000;
      // One more than shown, to know whether there are more: the cap is said, never silent (on stderr, so
      // that --json output stays JSON lines).
      const found = await audit.list({ ...(user ? { userId: user.id } : { username }), since, limit: limit + 1 });
      const events = found.slice(0, limit);
      // A name typed wrong is an error, as it was before deleted users' events could be found.
      if (username !== undefined && !user && events.length === 0) {
        throw new AppError('no_such_user', `no user named ${username}, and no security event recorded with that name`);
      }
      if (values.json) {
        for (const e of events) out(JSON.stringify({ ...e, time: new Date(e.at * 1000).toISOString(), detail: e.detail ? JSON.parse(e.detail) : undefined }));
      } else if (events.length === 0) {
        out('no security events');
      } else {
        for (const e of events) {
          out([new Date(e.at * 1000).toISOString(), e.type, e.outcome, e.username ?? e.user_id ?? '-', e.client_id ?? '-', e.ip ?? '-',
            e.detail ?? ''].join('  '));
        }
      }
      if (found.length > limit) process.stderr.write(`idp: showing the newest ${limit} events; use --limit or --since for more\n`);
      return;
    }
    if (command === 'throttle list') {
      const entries = await throttle().list();
      const users = createUserQueries(db);
      const usernames = new Map<string, string | undefined>();
      for (const entry of entries) {
        if (entry.kind === 'user' && entry.userId && !usernames.has(entry.userId)) usernames.set(entry.userId, (await users.findById(entry.userId))?.username);
      }
      const rows = entries.map((entry) => ({
        kind: entry.kind,
        // The user's username; a login as typed (a user's e-mail address); a login no user has, by the start
        // of its keyed hash (what was typed may be a password); an address.
        subject: entry.kind === 'ip' ? entry.address
          : entry.userId ? usernames.get(entry.userId) ?? `deleted user ${entry.userId}`
          : entry.login ?? (entry.unknownLogin ? `unknown login ${entry.unknownLogin.slice(0, 12)}` : `usernameless from ${entry.anonymous}`),
        factor: entry.kind === 'user' ? entry.factor : undefined,
        failures: entry.failures,
        blocked_until: entry.blockedUntil === null ? null : new Date(entry.blockedUntil * 1000).toISOString(),
      }));
      if (values.json) {
        for (const row of rows) out(JSON.stringify(row));
        return;
      }
      if (rows.length === 0) {
        out('no throttled users or addresses');
        return;
      }
      const table = rows.map((r) => [r.kind, r.subject, r.factor ?? '-', String(r.failures), r.blocked_until ?? '-']);
      const header = ['KIND', 'SUBJECT', 'FACTOR', 'FAILURES', 'BLOCKED UNTIL'];
      const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
      for (const row of [header, ...table]) out(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
      return;
    }
    if (command === 'throttle unlock-ip') {
      const { address, wasBlocked, cleared } = await throttle().unlockAddress(parseAddress(line.args[0]!));
      await audit.record({ type: 'cli_ip_unlocked', outcome: 'success', userAgent: 'idp CLI', detail: { address, was_blocked: wasBlocked } });
      out(wasBlocked ? `unlocked ${address}` : cleared > 0 ? `${address} was not locked; its failure count starts over` : `${address} was not locked`);
      return;
    }
    const password = () => (values['password-stdin'] ? readPasswordFromStdin() : promptNewPassword());

    switch (command) {
      case 'users add': {
        const identity = { username: username!, email: values.email!, name: values.name };
        await service.checkNew(identity);
        const user = await service.add({ ...identity, password: await password() });
        await cliEvent('cli_user_added', user);
        out(`added ${user.username} <${user.email}> (id ${user.id})`);
        return;
      }
      case 'users list': {
        const users = await service.list();
        if (users.length === 0) {
          out(`no users yet: add one with  ${cliCommand()} users add <username> --email <email>`);
          return;
        }
        const rows = users.map((u) => [u.username, u.email, u.name ?? '', u.disabled ? 'disabled' : 'active',
          new Date(u.created_at * 1000).toISOString().slice(0, 10)]);
        const header = ['USERNAME', 'EMAIL', 'NAME', 'STATUS', 'CREATED'];
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
        for (const row of [header, ...rows]) out(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
        return;
      }
      case 'users set-password': {
        const user = await service.find(username!);
        const ended = await service.setPassword(username!, await password());
        await cliEvent('cli_password_set', user);
        out(`password changed for ${user.username}${signedOut(ended)}`);
        return;
      }
      case 'users disable':
      case 'users enable': {
        const disable = command === 'users disable';
        const user = await service.find(username!);
        const ended = await service.setDisabled(username!, disable);
        await cliEvent(disable ? 'cli_user_disabled' : 'cli_user_enabled', user);
        out(`${disable ? 'disabled' : 'enabled'} ${user.username}${disable ? signedOut(ended) : ''}`);
        return;
      }
      case 'users delete': {
        const user = await service.find(username!);
        const ended = await service.remove(username!);
        await cliEvent('cli_user_deleted', user);
        out(`deleted ${user.username}${signedOut(ended)}`);
        return;
      }
      case 'users sign-out': {
        const user = await service.find(username!);
        const ended = await service.signOutEverywhere(username!);
        await cliEvent('cli_signed_out', user);
        out(`${user.username}${signedOut(ended)}`);
        return;
      }
      case 'users unlock': {
        const user = await service.find(username!);
        const cleared = await throttle().unlock(user);
        await cliEvent('cli_user_unlocked', user);
        out(cleared > 0 ? `unlocked ${user.username}` : `${user.username} was not locked`);
        return;
      }
    }
  } finally {
    await db.destroy();
    await closeBcryptPool();
  }
}

// Output piped into a reader that stops early (`| head`): done, not a crash.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});
// Exits once what was written has left: process.exit drops output a pipe has not taken yet (past its
// 64 KiB buffer, a long `audit --json | program` lost its end).
const exit = (code: number) => process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
run(process.argv.slice(2), (line) => process.stdout.write(`${line}\n`)).then(() => exit(0), (err: unknown) => {
  if (err instanceof Cancelled) {
    // 128 + SIGINT, as a shell reports a command that Ctrl-C ended.
    process.stderr.write('idp: cancelled\n');
    exit(130);
    return;
  }
  let message: string;
  if (err instanceof ConfigError) message = err.message;
  else if (err instanceof AppError || err instanceof UsageError) message = err.message;
  else message = `failed: ${err instanceof Error ? err.message : String(err)}`;
  process.stderr.write(`idp: ${message}${err instanceof UsageError ? '\n\n' + USAGE : ''}\n`);
  exit(1);
});

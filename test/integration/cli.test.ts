/** The operator's command line, run as the operator runs it (compiled, in a child process), on every database. */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { projectRoot } from '../../src/paths.js';
import { connect } from '../../src/db/connect.js';
import { createUserQueries } from '../../src/queries/users.js';
import { createThrottleQueries } from '../../src/queries/throttle.js';
import { createThrottle } from '../../src/auth/throttle.js';
import { systemClock } from '../../src/clock.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from '../helpers/databases.js';

/**
 * Runs a command on a pseudo-terminal (python3's pty module), as an operator at a terminal does: once the
 * output shows `Password: `, types the keys given and waits for the command to end (killing it after 15 s).
 * Prints what the terminal showed; exits with the command's status.
 */
const ON_A_TERMINAL = `
import os, pty, select, signal, sys, time
keys = sys.argv[1].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
shown, typed, deadline = b'', False, time.time() + 15
while time.time() < deadline:
    if select.select([fd], [], [], 0.1)[0]:
        try:
            data = os.read(fd, 1024)
        except OSError:
            break
        if not data:
            break
        shown += data
    if not typed and b'Password: ' in shown:
        os.write(fd, keys)
        typed = True
else:
    os.kill(pid, signal.SIGKILL)
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors='replace'))
sys.exit(os.waitstatus_to_exitcode(status))
`;

describe.each(databaseKinds())('idp CLI on %s', (kind) => {
  let database: TestDatabase;
  let env: Record<string, string>;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    const file = path.join(database.target.data_dir, 'cli.yaml');
    // Three failures block an address, in a window no test run straddles.
    writeFileSync(file, 'password:\n  bcrypt_cost: 4\nthrottle:\n  ip_max_failures: 3\n  ip_window_seconds: 86400\n');
    env = { ...process.env as Record<string, string>, IDP_CONFIG: file, IDP_DATA_DIR: database.target.data_dir };
    if (database.target.database_url) env.DATABASE_URL = database.target.database_url;
  });
  afterAll(async () => { await database?.dispose(); });

  const idp = (args: string[], input?: string, envOf: Record<string, string> = env) => {
    const result = spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'src', 'cli', 'main.js'), ...args], {
      env: envOf, input: input ?? '', encoding: 'utf8', timeout: 30_000,
    });
    return { code: result.status, out: result.stdout, err: result.stderr.replace(/.*Unsupported runtime.*\n/, '') };
  };

  it('refuses a command line it cannot run before it touches the data directory or the database', async () => {
    const fresh = await createTestDatabase(kind);
    try {
      const dataDir = path.join(fresh.target.data_dir, 'not-yet');
      const freshEnv: Record<string, string> = { ...env, IDP_DATA_DIR: dataDir };
      if (fresh.target.database_url) freshEnv.DATABASE_URL = fresh.target.database_url;
      const refusals: Array<[string[], string]> = [
        [['bogus'], 'idp: unknown command: bogus'],
        [['users', 'frobnicate'], 'idp: unknown command: users frobnicate'],
        [['users', 'list', '--email', 'x@example.com'], 'idp: users list does not take --email'],
        [['keys', 'rotate', '--json'], 'idp: keys rotate does not take --json'],
        [['users', 'disable'], 'idp: expected users disable <username>'],
        [['users', 'disable', 'a', 'b'], 'idp: expected users disable <username>'],
        [['migrate', 'now'], 'idp: expected migrate [--unlock]'],
        [['users', 'add', 'ivy', '--password-stdin'], 'idp: users add needs --email <email>'],
        [['audit', '--bogus'], "idp: Unknown option '--bogus'"],
      ];
      for (const [args, line] of refusals) {
        const refused = idp(args, '', freshEnv);
        expect({ args, code: refused.code, first: refused.err.split('\n')[0], usage: refused.err.split('\n')[2] })
          .toEqual({ args, code: 1, first: line, usage: 'usage: npm run idp -- <command>' });
        expect(refused.out).toBe('');
      }
      expect(existsSync(dataDir)).toBe(false);
      if (fresh.target.database_url) {
        const db = connect(fresh.target);
        try {
          expect(await db('information_schema.tables').where({ table_schema: 'public' }).count({ n: '*' })).toEqual([{ n: '0' }]);
        } finally {
          await db.destroy();
        }
      }
      // A valid command still migrates a fresh database first (the Quick start's `users add`).
      expect(idp(['users', 'list'], '', freshEnv)).toMatchObject({ code: 0, err: '' });
    } finally {
      await fresh.dispose();
    }
  });

  it('says in one line, without its password, that the database cannot be reached', () => {
    const unreachable = [{ url: 'postgres://postgres:a-secret@127.0.0.1:1/x', reason: /connect ECONNREFUSED 127\.0\.0\.1:1/ }];
    if (database.target.database_url) {
      const missing = new URL(database.target.database_url);
      missing.pathname = '/no_such_database';
      missing.password = 'a-secret';
      unreachable.push({ url: missing.toString(), reason: /database "no_such_database" does not exist/ });
    }
    for (const { url, reason } of unreachable) {
      const failed = idp(['users', 'list'], '', { ...env, DATABASE_URL: url });
      expect(failed.code).toBe(1);
      // knex printed "Acquire connection error" with a stack trace to standard output.
      expect(failed.out).toBe('');
      const lines = failed.err.split('\n').filter(Boolean);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`idp: cannot reach the database (${url.replace(':a-secret@', ':***@')}): `);
      expect(lines[0]).toMatch(reason);
      expect(failed.err).not.toContain('a-secret');
    }
  });

  it('ends the command, adding no one, when the operator presses Ctrl-C at the password prompt', async () => {
    const cli = path.join(projectRoot, 'dist', 'src', 'cli', 'main.js');
    for (const [keys, username] of [['half-typed\u0003', 'kira'], ['\u0004', 'lena']] as const) {
      const typed = spawnSync('python3', ['-c', ON_A_TERMINAL, keys, process.execPath, cli, 'users', 'add', username, '--email', `${username}@example.com`], {
        env, encoding: 'utf8', timeout: 30_000,
      });
      expect({ status: typed.status, stderr: typed.stderr }).toEqual({ status: 130, stderr: '' });
      // What the terminal shows, without readline's cursor movements: nothing typed, one line.
      const shown = typed.stdout.replace(/.*Unsupported runtime.*\r?\n/, '').replace(/\u001b\[[0-9;]*[A-Za-z]/g, '');
      expect(shown).toBe('Password: \r\nidp: cancelled\r\n');
    }
    const db = connect(database.target);
    try {
      expect(await createUserQueries(db).existing('kira', 'lena@example.com')).toEqual({ username: false, email: false });
    } finally {
      await db.destroy();
    }
  });

  it('checks the new user’s username, e-mail and name, and that they are free, before it asks for a password', () => {
    expect(idp(['users', 'add', 'mona', '--email', 'mona@example.com', '--password-stdin'], 'mona-password-1').code).toBe(0);
    // No --password-stdin and no terminal: a command that reached the password would say so instead.
    const refusals: Array<[string[], string]> = [
      [['users', 'add', 'Mona'], 'idp: a user named mona already exists'],
      [['users', 'add', 'mona2', '--email', 'MONA@example.com'], 'idp: a user with e-mail mona@example.com already exists'],
      [['users', 'add', 'no spaces'], 'idp: username must be 1-64 characters: letters, digits, ".", "_" or "-", starting with a letter or digit'],
      [['users', 'add', 'nora', '--email', 'nora.example.com'], 'idp: not an e-mail address: "nora.example.com"'],
      [['users', 'add', 'nora', '--name', 'Nora\nRoot'], 'idp: the name must be one line of at most 200 characters, without control characters'],
    ];
    for (const [args, line] of refusals) {
      const withEmail = args.includes('--email') ? args : [...args, '--email', 'nora@example.com'];
      const refused = idp(withEmail);
      expect({ args, code: refused.code, err: refused.err.trim() }).toEqual({ args, code: 1, err: line });
    }
  });

  it('audit --user finds a deleted user’s events by the username recorded with them, and those that record only the id', async () => {
    expect(idp(['users', 'add', 'olga', '--email', 'olga@example.com', '--password-stdin'], 'olga-password-1').code).toBe(0);
    // A failed sign-in records the user's id only (the review found these missed once the user was gone).
    const db = connect(database.target);
    try {
      const olga = await createUserQueries(db).findByUsername('olga');
      await db('security_events').insert({ at: Math.floor(Date.now() / 1000), type: 'sign_in', outcome: 'failure', user_id: olga!.id, username: null });
    } finally {
      await db.destroy();
    }
    expect(idp(['users', 'delete', 'olga']).code).toBe(0);
    const deleted = idp(['audit', '--user', 'Olga']);
    expect(deleted).toMatchObject({ code: 0, err: '' });
    expect(deleted.out.split('\n').filter(Boolean).map((l) => l.split('  ').slice(1, 3)).sort()).toEqual([
      ['cli_user_added', 'success'], ['cli_user_deleted', 'success'], ['sign_in', 'failure'],
    ]);
    expect(idp(['audit', '--user', 'olga', '--limit', '3'])).toMatchObject({ code: 0, err: '' });
    // A name no user has and no event recorded: a typing error, said so.
    expect(idp(['audit', '--user', 'olgaa'])).toMatchObject({ code: 1, err: 'idp: no user named olgaa, and no security event recorded with that name\n' });
  });

  it('audit says when it shows only the newest events (1000 unless --limit says otherwise), on stderr', async () => {
    const db = connect(database.target);
    try {
      const at = Math.floor(Date.now() / 1000);
      const rows = Array.from({ length: 1001 }, (_, i) => ({ at: at - i, type: 'sign_in', outcome: 'failure', username: `capped${i}` }));
      for (let i = 0; i < rows.length; i += 500) await db('security_events').insert(rows.slice(i, i + 500));
    } finally {
      await db.destroy();
    }
    const capped = idp(['audit', '--json']);
    expect(capped.code).toBe(0);
    expect(capped.err).toBe('idp: showing the newest 1000 events; use --limit or --since for more\n');
    const lines = capped.out.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1000);
    expect(lines.every((line) => typeof JSON.parse(line).type === 'string')).toBe(true);

    // Into a pipe whose reader is slow, all of it (the review found the CLI exiting with most of it unsent).
    const piped = spawnSync('sh', ['-c', `"${process.execPath}" "${path.join(projectRoot, 'dist', 'src', 'cli', 'main.js')}" audit --json 2>/dev/null | (sleep 1; wc -l)`], {
      env, encoding: 'utf8', timeout: 30_000,
    });
    expect(piped.stdout.trim()).toBe('1000');

    const two = idp(['audit', '--limit', '2']);
    expect(two.out.split('\n').filter(Boolean)).toHaveLength(2);
    expect(two.err).toBe('idp: showing the newest 2 events; use --limit or --since for more\n');
    for (const limit of ['0', '-1', '1.5', 'ten']) {
      const refused = idp(['audit', `--limit=${limit}`]);
      expect({ limit, code: refused.code, first: refused.err.split('\n')[0] })
        .toEqual({ limit, code: 1, first: `idp: --limit: expected a positive whole number, got ${JSON.stringify(limit)}` });
    }
  });

  it('lists what the throttle holds back, and ends an address’s block with throttle unlock-ip (IPv6: its /64)', async () => {
    expect(idp(['users', 'add', 'pia', '--email', 'pia@example.com', '--password-stdin'], 'pia-password-1').code).toBe(0);
    const db = connect(database.target);
    try {
      const throttle = createThrottle({ queries: createThrottleQueries(db), clock: systemClock,
        policy: { backoff_after: 5, max_backoff_seconds: 900, lock_after: 20, lock_seconds: 3600, ip_max_failures: 3, ip_window_seconds: 86400 } });
      const pia = (await createUserQueries(db).findByUsername('pia'))!;
      for (let i = 0; i < 3; i++) await (await throttle.begin('pwd', 'login:ghost', `2001:db8:1:2::${i + 1}`)).failed();
      for (let i = 0; i < 2; i++) await (await throttle.begin('otp', pia.id, '198.51.100.7')).failed();
      await (await throttle.begin('pwd', `unknown:${'0123456789abcdef'.repeat(4)}`, '192.0.2.5')).failed();
      await expect(throttle.begin('pwd', 'login:ghost', '2001:db8:1:2:aaaa::9')).rejects.toMatchObject({ scope: 'ip' });

      const listed = idp(['throttle', 'list', '--json']);
      expect(listed).toMatchObject({ code: 0, err: '' });
      const entries = listed.out.split('\n').filter(Boolean).map((line) => JSON.parse(line));
      expect(entries).toEqual(expect.arrayContaining([
        { kind: 'ip', subject: '2001:db8:1:2::/64', failures: 4, blocked_until: expect.stringMatching(/^\d{4}-/) },
        { kind: 'ip', subject: '198.51.100.7', failures: 2, blocked_until: null },
        { kind: 'user', subject: 'pia', factor: 'otp', failures: 2, blocked_until: null },
        { kind: 'user', subject: 'ghost', factor: 'pwd', failures: 3, blocked_until: null },
        { kind: 'user', subject: 'unknown login 0123456789ab', factor: 'pwd', failures: 1, blocked_until: null },
      ]));
      expect(idp(['throttle', 'list']).out).toMatch(/^KIND\s+SUBJECT\s+FACTOR\s+FAILURES\s+BLOCKED UNTIL\n(.*\n)*ip\s+2001:db8:1:2::\/64\s+-\s+4\s+\d{4}-/);

      expect(idp(['throttle', 'unlock-ip', '2001:DB8:1:2:ffff::1'])).toMatchObject({ code: 0, err: '', out: 'unlocked 2001:db8:1:2::/64\n' });
      await (await throttle.begin('pwd', 'login:ghost', '2001:db8:1:2:aaaa::9')).failed();
      expect(idp(['throttle', 'unlock-ip', '198.51.100.7'])).toMatchObject({ code: 0, out: '198.51.100.7 was not locked; its failure count starts over\n' });
      expect(idp(['throttle', 'unlock-ip', '203.0.113.1'])).toMatchObject({ code: 0, out: '203.0.113.1 was not locked\n' });
      const after = idp(['throttle', 'list', '--json']).out.split('\n').filter(Boolean).map((line) => JSON.parse(line));
      expect(after.filter((e) => e.kind === 'ip' && e.subject !== '192.0.2.5')).toEqual([{ kind: 'ip', subject: '2001:db8:1:2::/64', failures: 1, blocked_until: null }]);

      const events = idp(['audit', '--json']).out.split('\n').filter(Boolean).map((line) => JSON.parse(line)).filter((e) => e.type === 'cli_ip_unlocked');
      expect(events.map((e) => e.detail)).toEqual([
        { address: '203.0.113.1', was_blocked: false }, { address: '198.51.100.7', was_blocked: false }, { address: '2001:db8:1:2::/64', was_blocked: true },
      ]);

      // Usernameless passkey sign-ins count per exact address; unlocking the /64 (as list prints it) clears
      // those of every address in it (the review found the /64 form matched none of them).
      for (const ip of ['2001:db8:5:6::7', '2001:db8:5:6:1::8']) await (await throttle.begin('passkey', `anonymous:${ip}`, ip)).failed();
      const usernameless = () => idp(['throttle', 'list', '--json']).out.split('\n').filter(Boolean).map((line) => JSON.parse(line))
        .filter((e) => String(e.subject).startsWith('usernameless from 2001:db8:5:6:'));
      expect(usernameless()).toHaveLength(2);
      expect(idp(['throttle', 'unlock-ip', '2001:db8:5:6::/64'])).toMatchObject({ code: 0, out: '2001:db8:5:6::/64 was not locked; its failure count starts over\n' });
      expect(usernameless()).toEqual([]);
    } finally {
      await db.destroy();
    }
    for (const address of ['not-an-address', '198.51.100.7/24', '2001:db8::/48']) {
      const refused = idp(['throttle', 'unlock-ip', address]);
      expect({ address, code: refused.code, first: refused.err.split('\n')[0] })
        .toEqual({ address, code: 1, first: `idp: throttle unlock-ip: not an IP address: ${JSON.stringify(address)}` });
    }
  });

  it('stops quietly when its output is piped into a reader that stops early (| head)', async () => {
    expect(idp(['migrate'])).toMatchObject({ code: 0 });
    const db = connect(database.target);
    try {
      const at = Math.floor(Date.now() / 1000);
      const rows = Array.from({ length: 20_000 }, (_, i) => ({ at: at - i, type: 'sign_in', outcome: 'failure', username: `piped${i}` }));
      for (let i = 0; i < rows.length; i += 500) await db('security_events').insert(rows.slice(i, i + 500));
    } finally {
      await db.destroy();
    }
    const cli = path.join(projectRoot, 'dist', 'src', 'cli', 'main.js');
    const piped = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${cli}" audit | head -1`], { env, encoding: 'utf8', timeout: 30_000 });
    expect(piped.stdout).toMatch(/sign_in\s+failure\s+piped0/);
    expect(piped.stderr).not.toMatch(/EPIPE|Error/);
    expect(piped.status).toBe(0);
  });

  it('migrates, adds, lists, disables, re-enables, changes passwords and deletes users', async () => {
    expect(idp(['migrate'])).toMatchObject({ code: 0 });
    const added = idp(['users', 'add', 'Erin', '--email', 'Erin@Example.com', '--name', 'Erin E.', '--password-stdin'], 'erin-password-1\n');
    expect(added.err).toBe('');
    expect(added.code).toBe(0);
    expect(added.out).toMatch(/^added erin <erin@example.com>/);

    const listed = idp(['users', 'list']);
    expect(listed.code).toBe(0);
    expect(listed.out).toMatch(/erin\s+erin@example.com\s+Erin E\.\s+active/);

    expect(idp(['users', 'disable', 'erin']).code).toBe(0);
    expect(idp(['users', 'list']).out).toMatch(/erin.*disabled/);
    expect(idp(['users', 'enable', 'erin']).code).toBe(0);

    expect(idp(['users', 'set-password', 'erin', '--password-stdin'], 'a-brand-new-password').code).toBe(0);
    const db = connect(database.target);
    try {
      const user = await createUserQueries(db).findByUsername('erin');
      // Stored as a bcrypt hash of exactly what was piped in (one trailing newline is not part of it).
      expect(user?.password_hash).toMatch(/^\$2[aby]\$04\$/);
      expect(await bcrypt.compare('a-brand-new-password', user!.password_hash!)).toBe(true);
    } finally {
      await db.destroy();
    }

    // Found by an audit: a NUL or a second trailing newline was stored, and no sign-in form could send it.
    for (const input of ['a-password\u0000with-nul', 'a-password-with-newlines\n\n']) {
      const refused = idp(['users', 'set-password', 'erin', '--password-stdin'], input);
      expect(refused.code).toBe(1);
      expect(refused.err).toContain('password must not contain line breaks or NUL characters');
    }

    expect(idp(['users', 'delete', 'erin']).code).toBe(0);
    expect(idp(['users', 'list']).out).not.toContain('erin@example.com');
  });

  it('signs a user out everywhere: users sign-out ends their sessions and tokens, and no one else’s', async () => {
    expect(idp(['users', 'add', 'finn', '--email', 'finn@example.com', '--password-stdin'], 'finn-password-1\n').code).toBe(0);
    const db = connect(database.target);
    try {
      const finn = (await createUserQueries(db).findByUsername('finn'))!;
      const row = (kind: string, id: string, accountId: string | null) => ({
        kind, id, payload: JSON.stringify({ accountId }), grant_id: null, account_id: accountId, user_code: null, uid: null, expires_at: null, consumed_at: null,
      });
      await db('oidc_payloads').insert([row('Session', 'finn-s', finn.id), row('RefreshToken', 'finn-rt', finn.id), row('Session', 'someone-s', 'someone')]);
      const out = idp(['users', 'sign-out', 'finn']);
      expect(out).toMatchObject({ code: 0, err: '' });
      expect(out.out).toBe('finn; signed out everywhere (2 sessions, grants and tokens revoked)\n');
      expect((await db('oidc_payloads').whereIn('id', ['finn-s', 'finn-rt', 'someone-s']).select('id')).map((r) => r.id)).toEqual(['someone-s']);
    } finally {
      await db.destroy();
    }
    expect(idp(['users', 'sign-out', 'nobody'])).toMatchObject({ code: 1 });
  });

  // A process that stopped while it migrated leaves knex's lock taken; starts wait, then fail, naming it.
  it('frees a migration lock left taken with migrate --unlock', async () => {
    expect(idp(['migrate']).code).toBe(0);
    const db = connect(database.target);
    try {
      await db('knex_migrations_lock').update({ is_locked: 1 });
      const freed = idp(['migrate', '--unlock']);
      expect(freed).toMatchObject({ code: 0, err: '' });
      expect(freed.out).toMatch(/^freed the migration lock of /);
      expect(freed.out).toMatch(/is up to date/);
      expect(await db('knex_migrations_lock').select('is_locked')).toEqual([{ is_locked: 0 }]);
    } finally {
      await db.destroy();
    }
  });

  it('refuses duplicates, bad passwords and unknown users with one clear line and a non-zero exit', () => {
    expect(idp(['users', 'add', 'frank', '--email', 'frank@example.com', '--password-stdin'], 'frank-password').code).toBe(0);
    const sameName = idp(['users', 'add', 'frank', '--email', 'other@example.com', '--password-stdin'], 'frank-password');
    expect(sameName.code).toBe(1);
    expect(sameName.err.trim()).toBe('idp: a user named frank already exists');
    const sameEmail = idp(['users', 'add', 'frank2', '--email', 'FRANK@example.com', '--password-stdin'], 'frank-password');
    expect(sameEmail.code).toBe(1);
    expect(sameEmail.err.trim()).toBe('idp: a user with e-mail frank@example.com already exists');

    const short = idp(['users', 'add', 'gina', '--email', 'gina@example.com', '--password-stdin'], 'short');
    expect(short.code).toBe(1);
    expect(short.err.trim()).toBe('idp: password must be at least 8 characters');
    const long = idp(['users', 'add', 'gina', '--email', 'gina@example.com', '--password-stdin'], 'é'.repeat(40));
    expect(long.code).toBe(1);
    expect(long.err.trim()).toBe('idp: password must be at most 72 bytes (UTF-8)');

    const missing = idp(['users', 'disable', 'nobody']);
    expect(missing.code).toBe(1);
    expect(missing.err.trim()).toBe('idp: no user named nobody');

    const noTty = idp(['users', 'add', 'hana', '--email', 'hana@example.com']);
    expect(noTty.code).toBe(1);
    expect(noTty.err.trim()).toMatch(/--password-stdin/);

    const unknown = idp(['users', 'frobnicate']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/unknown command: users frobnicate/);
  });
});

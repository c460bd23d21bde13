/** The configuration an operator writes: every problem named at once, env wins, the schema file is current. */
import { describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import YAML from 'yaml';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { jsonSchema } from '../../src/config/schema.js';
import { projectRoot } from '../../src/paths.js';

const dir = mkdtempSync(path.join(tmpdir(), 'wrnexus-config-'));
const write = (name: string, text: string) => {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
};
const problemsOf = (env: Record<string, string | undefined>): string[] => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected the configuration to be refused');
};

const BROKEN = `
clientz: []
sqlite_synchronous: sometimes
postgres_issuance_commit: later
password:
  bcrypt_cost: 99
clients:
  - client_id: one
    client_secret: \${ONE_SECRET}
    redirect_uris: not-a-list
  - client_id: two
    token_endpoint_auth_method: none
    redirect_uris: [https://ok.example/cb, "not a url"]
    mfa_policy: sometimes
`;

describe('configuration', () => {
  it('reports every problem at once, each naming its path', () => {
    const problems = problemsOf({ IDP_CONFIG: write('broken.yaml', BROKEN) });
    expect(problems).toEqual(expect.arrayContaining([
      'clientz: unknown setting',
      'clients[0].client_secret: environment variable ONE_SECRET is not set',
      'clients[0].redirect_uris: expected a list of URLs',
      'clients[1].redirect_uris[1]: expected a URL',
      'clients[1].mfa_policy: expected one of if-enrolled, required, phishing-resistant',
      'sqlite_synchronous: expected full or normal',
      'postgres_issuance_commit: expected async or sync',
    ]));
    expect(problems.some((p) => p.startsWith('password.bcrypt_cost:'))).toBe(true);
  });

  it('fills defaults, interpolates ${ENV_VAR} and lets the environment win', () => {
    const file = write('good.yaml', `
port: 4000
issuer: https://from-file.example
clients:
  - client_id: app
    client_secret: \${APP_SECRET}
    redirect_uris: [https://app.example/cb]
`);
    const config = loadConfig({ IDP_CONFIG: file, APP_SECRET: 's'.repeat(20), PORT: '5000', IDP_DATA_DIR: '/tmp/x' });
    expect(config.port).toBe(5000);
    expect(config.issuer).toBe('https://from-file.example');
    expect(config.data_dir).toBe('/tmp/x');
    expect(config.database_url).toBeUndefined();
    expect(config.password).toEqual({ bcrypt_cost: 12, min_length: 8 });
    expect(config.sqlite_synchronous).toBe('full');
    expect(config.postgres_issuance_commit).toBe('async');
    expect(config.clients[0]).toMatchObject({
      client_secret: 's'.repeat(20), mfa_policy: 'if-enrolled', skip_consent: false,
      grant_types: ['authorization_code', 'refresh_token'], token_endpoint_auth_method: 'client_secret_basic',
    });
    const fromEnv = loadConfig({ IDP_CONFIG: file, APP_SECRET: 's'.repeat(20), IDP_ISSUER: 'https://env.example/', DATABASE_URL: 'postgres://u@h/db' });
    expect(fromEnv.issuer).toBe('https://env.example');
    expect(fromEnv.database_url).toBe('postgres://u@h/db');
    expect(problemsOf({ IDP_CONFIG: file, APP_SECRET: 's'.repeat(20), PORT: 'eighty' })).toEqual(['PORT: expected a port number, got "eighty"']);
  });

  it('reads JSON by extension and defaults the issuer to localhost:$PORT', () => {
    const file = write('conf.json', JSON.stringify({ clients: [] }));
    const config = loadConfig({ IDP_CONFIG: file, PORT: '3123' });
    expect(config.issuer).toBe('http://localhost:3123');
    expect(problemsOf({ IDP_CONFIG: write('bad.json', '{ nope') })[0]).toMatch(/^not valid JSON/);
    expect(problemsOf({ IDP_CONFIG: path.join(dir, 'missing.yaml') })[0]).toMatch(/cannot read the config file: ENOENT/);
  });

  it('refuses an issuer that is not an origin, and says what a number out of range should be', () => {
    const empty = write('empty.yaml', '{}\n');
    const notOrigin = 'IDP_ISSUER: expected an http or https origin (scheme, host, port) without a path, query or fragment';
    for (const issuer of ['https://sso.example.com/sso', 'https://sso.example.com/?a=1', 'ftp://sso.example.com']) {
      expect(problemsOf({ IDP_CONFIG: empty, IDP_ISSUER: issuer })).toEqual([notOrigin]);
    }
    expect(loadConfig({ IDP_CONFIG: empty, IDP_ISSUER: 'https://sso.example.com:8443/' }).issuer).toBe('https://sso.example.com:8443');
    expect(problemsOf({ IDP_CONFIG: write('cost.yaml', 'password:\n  bcrypt_cost: 99\n') })).toEqual(['password.bcrypt_cost: must be between 4 and 15']);
    const machine = 'clients:\n  - client_id: robot\n    client_secret: a-robot-secret-of-some-length\n    grant_types: [client_credentials]\n';
    expect(problemsOf({ IDP_CONFIG: write('robot.yaml', machine) })).toEqual(['clients[0].response_types: expected [] for a client without the authorization_code grant']);
    expect(loadConfig({ IDP_CONFIG: write('robot-ok.yaml', `${machine}    response_types: []\n`) }).clients[0]!.response_types).toEqual([]);
  });

  // Found by an audit: these ended the start with a bare "Invalid URL" or "Maximum call stack size
  // exceeded", naming neither the field nor the file, and hiding the file's other problems.
  it('names an issuer that is no URL at all, a self-referring YAML alias and an alias bomb like any other problem', () => {
    const broken = write('also-broken.yaml', 'clients:\n  - client_id: one\n    client_secret: a-secret-of-some-length\n    redirect_uris: not-a-list\n');
    const problems = problemsOf({ IDP_CONFIG: broken, IDP_ISSUER: 'not-a-url' });
    expect(problems).toContain('IDP_ISSUER: expected a URL');
    expect(problems).toContain('clients[0].redirect_uris: expected a list of URLs');
    expect(problemsOf({ IDP_CONFIG: write('cycle.yaml', 'clients: &a [*a]\n') })).toContain('clients[0]: refers to itself (a YAML alias inside its own anchor)');
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => {
      const name = String.fromCharCode(98 + i);
      const prev = String.fromCharCode(97 + i);
      return `${name}: &${name} [${Array(10).fill(`*${prev}`).join(', ')}]`;
    })].join('\n');
    expect(problemsOf({ IDP_CONFIG: write('bomb.yaml', `${bomb}\n`) })).toEqual([expect.stringMatching(/^not valid YAML: /)]);
    // Shared (not circular) aliases are fine.
    const shared = 'x-uris: &uris [https://app.example/cb]\nclients:\n  - client_id: one\n    client_secret: a-secret-of-some-length\n    redirect_uris: *uris\n    post_logout_redirect_uris: *uris\n';
    expect(problemsOf({ IDP_CONFIG: write('shared.yaml', shared) })).toEqual(['x-uris: unknown setting']);
  });

  // Found by an audit: a value from the environment was named by the file's key (the operator looked for it
  // in the file), one bad issuer gave two lines, and zod's own words leaked through.
  it('names a value from the environment by its variable, once, and words every problem plainly', () => {
    const empty = write('plain-empty.yaml', '{}\n');
    expect(problemsOf({ IDP_CONFIG: empty, IDP_ISSUER: 'not-a-url' })).toEqual(['IDP_ISSUER: expected a URL']);
    expect(problemsOf({ IDP_CONFIG: empty, DATABASE_URL: 'mysql://db/idp' })).toEqual([
      'DATABASE_URL: expected a postgres:// or postgresql:// URL (leave it unset for SQLite)',
    ]);
    expect(problemsOf({ IDP_CONFIG: write('plain-db.yaml', 'database_url: sqlite://x\n') })).toEqual([
      'database_url: expected a postgres:// or postgresql:// URL (leave it unset for SQLite)',
    ]);
    // The file's issuer is named as the file's when the environment sets none.
    expect(problemsOf({ IDP_CONFIG: write('plain-issuer.yaml', 'issuer: https://sso.example/x\n') })).toEqual([
      'issuer: expected an http or https origin (scheme, host, port) without a path, query or fragment',
    ]);
    const problems = problemsOf({ IDP_CONFIG: write('plain.yaml', `
sessions:
  reauthenticate_after: soon
metrics:
  enabled: "yes"
keys:
  reload_seconds: 1
  rotate_every: -5
throttle:
  lock_after: [3]
clients: {}
`) });
    expect(problems).toEqual([
      'metrics.enabled: expected true or false, got "yes"',
      'keys.rotate_every: must be at least 0, got -5',
      'keys.reload_seconds: must be at least 5, got 1',
      'sessions.reauthenticate_after: expected a whole number of seconds',
      'throttle.lock_after: expected a whole number',
      'clients: expected a list of clients',
    ]);
    for (const problem of problems) expect(problem).not.toMatch(/Invalid input|received/);
  });

  it('refuses the redirect URIs oidc-provider refuses, by item, before the database is touched, and accepts the rest', async () => {
    const cases: Array<[string, 'web' | 'native', boolean]> = [
      ['https://app.example/cb', 'web', true],
      ['http://localhost:8080/cb', 'web', true],
      ['https://app.example/cb#x', 'web', false],
      ['com.example.app:/cb', 'web', false],
      ['javascript:alert(1)', 'web', false],
      ['com.example.app:/cb', 'native', true],
      ['http://127.0.0.1:5000/cb', 'native', true],
      ['http://[::1]/cb', 'native', true],
      ['https://app.example/cb', 'native', true],
      ['http://app.example/cb', 'native', false],
      ['https://localhost/cb', 'native', false],
      ['file:///etc/passwd', 'native', false],
      ['data:text/html,hi', 'native', false],
    ];
    // The library's own verdict on each, from its client schema (no database: static clients only).
    const { default: Provider } = await import('oidc-provider');
    const { PROTOCOL, CUSTOM_CLIENT_FIELDS, clientMetadata } = await import('../../src/oidc/provider.js');
    const jwks = { keys: [{ ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), alg: 'RS256' }] };
    // The library's verdict on client `c` among `clients`.
    const verdict = (clients: unknown[]) => new Provider('http://localhost:3000', {
      ...PROTOCOL, clients: clients as never, extraClientMetadata: { properties: [...CUSTOM_CLIENT_FIELDS] }, jwks,
    }).Client.find('c').then(() => 'accepted', (err: { error_description?: string }) => `refused: ${err.error_description}`);
    for (const [uri, applicationType, ok] of cases) {
      const yaml = `clients:\n  - client_id: c\n    token_endpoint_auth_method: none\n    application_type: ${applicationType}\n`
        + `    redirect_uris: [${JSON.stringify(uri)}]\n    post_logout_redirect_uris: [${JSON.stringify(uri)}]\n`;
      const file = write('redirect.yaml', yaml);
      if (!ok) {
        const problems = problemsOf({ IDP_CONFIG: file });
        expect(problems).toHaveLength(2);
        expect(problems[0]).toMatch(/^clients\[0\]\.redirect_uris\[0\]: /);
        expect(problems[1]).toMatch(/^clients\[0\]\.post_logout_redirect_uris\[0\]: /);
        continue;
      }
      const accepted = await verdict(clientMetadata(loadConfig({ IDP_CONFIG: file })));
      expect(`${uri} ${applicationType} ${accepted}`).toBe(`${uri} ${applicationType} accepted`);
    }
    // The cases refused above, given to the library as they are: it refuses each too.
    for (const [uri, applicationType] of cases.filter(([, , ok]) => !ok)) {
      const refused = await verdict([{
        client_id: 'c', token_endpoint_auth_method: 'none', application_type: applicationType, redirect_uris: [uri], grant_types: ['authorization_code'], response_types: ['code'],
      }]);
      expect(refused).toMatch(/^refused: /);
    }
  });

  it('refuses metrics on a port of their own that is the main port', () => {
    const file = write('metrics.yaml', 'metrics:\n  enabled: true\n  port: 3300\n');
    expect(problemsOf({ IDP_CONFIG: file, PORT: '3300' })).toEqual([
      'metrics.port: is the main port (3300): leave it out to serve /metrics there behind a bearer_token, or choose another',
    ]);
    expect(loadConfig({ IDP_CONFIG: file, PORT: '3301' }).metrics.port).toBe(3300);
  });

  it('refuses confidential clients without a secret and duplicate client ids', () => {
    const problems = problemsOf({ IDP_CONFIG: write('dupes.yaml', `
clients:
  - client_id: a
    redirect_uris: [https://a.example/cb]
  - client_id: a
    client_secret: aaaaaaaaaaaaaaaaaaaa
    redirect_uris: [https://a.example/cb]
`) });
    expect(problems).toEqual(expect.arrayContaining([
      'clients[0].client_secret: required for token_endpoint_auth_method client_secret_basic',
      'clients[1].client_id: duplicate client_id a',
    ]));
  });

  it('ships a config file that loads and a JSON Schema that matches the code', () => {
    const shipped = loadConfig({ IDP_CONFIG: path.join(projectRoot, 'config', 'idp.yaml') });
    expect(shipped.clients).toEqual([]);
    const published = JSON.parse(readFileSync(path.join(projectRoot, 'config', 'idp.schema.json'), 'utf8'));
    expect(published).toEqual(jsonSchema());
  });

  // An operator-audit finding: the example's two instances each had a port of their own under one issuer
  // (the second redirected to the first), no load balancer, no way to add clients, and no trusted proxy.
  it('ships a compose example whose instances sit behind its load balancer, trust only it, and load their config', () => {
    const compose = YAML.parse(readFileSync(path.join(projectRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
      services: Record<string, { environment?: Record<string, string>; ports?: string[]; command?: string; networks?: unknown; image?: string; build?: string; volumes?: string[] }>;
    };
    const instances = Object.entries(compose.services).filter(([, service]) => service.build === '.');
    expect(instances.map(([name]) => name)).toEqual(['idp-1', 'idp-2']);
    const lb = compose.services.lb!;
    // The balancer's own configuration, mounted: every instance behind it, taken out while /readyz says no.
    expect(lb.volumes).toContain('./deploy/Caddyfile:/etc/caddy/Caddyfile:ro');
    const caddyfile = readFileSync(path.join(projectRoot, 'deploy', 'Caddyfile'), 'utf8');
    expect(caddyfile).toMatch(/^\s*health_uri \/readyz$/m);
    const lbAddress = (lb.networks as { idp: { ipv4_address: string } }).idp.ipv4_address;
    const [published] = lb.ports!;
    // `${NAME:-default}` as compose reads it, with nothing set.
    const resolve = (value: string) => value.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1');
    for (const [name, service] of instances) {
      expect([name, service.ports]).toEqual([name, undefined]);
      expect(service.volumes).toContain('./config:/app/config:ro');
      expect(caddyfile).toMatch(new RegExp(`reverse_proxy [^{]*\\b${name}:3000\\b`));
      const env = service.environment!;
      const config = loadConfig({ IDP_CONFIG: env.IDP_CONFIG, IDP_ISSUER: resolve(env.IDP_ISSUER!), DATABASE_URL: env.DATABASE_URL }, projectRoot);
      expect(config.issuer).toBe(`http://localhost:${published!.split(':')[0]}`);
      expect(config.trusted_proxies).toEqual([lbAddress]);
      expect(config.database_url).toMatch(/^postgres:\/\/idp:idp@db:5432\//);
    }
  });

  it('refuses to start on a port that is taken, naming the setting, without a stack trace', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const result = spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'src', 'main.js')], {
        env: { ...process.env, IDP_CONFIG: write('taken.yaml', 'clients: []\n'), IDP_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'wrnexus-taken-')), PORT: String(port) },
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(`PORT: port ${port} is already in use.`);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    } finally {
      taken.close();
    }
  });

  it('refuses a bad secret key or a bad redirect URI before creating the data directory or the database', () => {
    for (const [env, message] of [
      [{ IDP_CONFIG: write('key-ok.yaml', 'clients: []\n'), IDP_SECRET_KEY: 'short' }, 'IDP_SECRET_KEY: expected 32 bytes'],
      [{ IDP_CONFIG: write('fragment.yaml', 'clients:\n  - client_id: a\n    client_secret: a-secret-of-some-length\n    redirect_uris: ["https://a.example/cb#f"]\n') },
        'clients[0].redirect_uris[0]: must not contain a fragment'],
    ] as const) {
      const dataDir = path.join(mkdtempSync(path.join(tmpdir(), 'wrnexus-early-')), 'data');
      const result = spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'src', 'main.js')], {
        env: { ...process.env, IDP_SECRET_KEY_FILE: undefined, DATABASE_URL: undefined, ...env, IDP_DATA_DIR: dataDir, PORT: '39999' },
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(message);
      expect(existsSync(dataDir)).toBe(false);
    }
  });

  it('refuses to start with a broken file, naming the field, and exits non-zero', () => {
    const result = spawnSync(process.execPath, [path.join(projectRoot, 'dist', 'src', 'main.js')], {
      env: { ...process.env, IDP_CONFIG: write('broken-start.yaml', BROKEN), IDP_DATA_DIR: dir, PORT: '0' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('clients[0].redirect_uris: expected a list of URLs');
    expect(result.stderr).toContain('Refusing to start.');
    expect(result.stdout).not.toContain('listening');
  });
});

/**
 * The configuration schema: the only home of defaults. `config/idp.schema.json` is generated from it
 * (`npm run schema`) so editors can complete and check `config/idp.yaml`.
 */
import { isIP } from 'node:net';
import { z } from 'zod';

function isIpOrCidr(value: string): boolean {
  const [address, prefix, ...rest] = value.split('/');
  const family = isIP(address ?? '');
  if (!family || rest.length > 0) return false;
  if (prefix === undefined) return true;
  const bits = Number(prefix);
  return /^\d+$/.test(prefix) && bits <= (family === 4 ? 32 : 128);
}

const url = z.url({ error: 'expected a URL' });
const urlList = z.array(url, { error: 'expected a list of URLs' });
// The provider serves from the root of its host: its routes, redirects and form actions are absolute
// paths, so an issuer with a path would publish endpoints that are not there.
const origin = url.refine((value) => {
  // Runs even when `url` has refused the value already (zod goes on to the refinements): unparsable is
  // simply not an origin, and `url`'s own message says why.
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    return false;
  }
  return /^https?:$/.test(parsed.protocol) && parsed.pathname === '/' && !parsed.search && !parsed.hash && !parsed.username && !parsed.password;
}, { error: 'expected an http or https origin (scheme, host, port) without a path, query or fragment' });
const seconds = (fallback: number, description: string) =>
  z.int({ error: 'expected a whole number of seconds' }).positive({ error: 'expected a positive number of seconds' })
    .default(fallback).describe(description);

export const MFA_POLICIES = ['if-enrolled', 'required', 'phishing-resistant'] as const;
export const GRANT_TYPES = ['authorization_code', 'refresh_token', 'client_credentials'] as const;
export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'none'] as const;
/** Scopes this provider serves (OIDC Core §5.4 plus offline_access, §11). */
export const SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;

/** oidc-provider's hosts for a native app's loopback redirect (lib/consts/client_attributes.js). */
const LOOPBACKS = new Set(['localhost', '127.0.0.1', '[::1]']);
/** Schemes no redirect may use (oidc-provider, lib/helpers/client_schema.js; RFC 8252 §8.4 for native apps). */
const FORBIDDEN_SCHEMES = new Set(['javascript:', 'vbscript:', 'data:', 'blob:', 'file:', 'about:']);

/**
 * oidc-provider's own rules for redirect_uris and post_logout_redirect_uris (ClientSchema.redirectUris),
 * checked here so that a bad URI is refused with the rest of the file, before the database is touched.
 * The library checks again at start (validate-clients.ts); this only says it earlier and by item.
 */
function redirectProblem(uri: string, applicationType: 'web' | 'native'): string | undefined {
  const parsed = URL.parse(uri);
  if (!parsed) return undefined; // `url` has said so already
  // RFC 6749 §3.1.2: the endpoint URI must not include a fragment component.
  if (parsed.href.includes('#')) return 'must not contain a fragment (#…)';
  if (applicationType === 'web') {
    return /^https?:$/.test(parsed.protocol) ? undefined : 'a web client redirects to http or https URLs only (application_type: native for an app\'s own scheme)';
  }
  // RFC 8252 §7.3 (loopback), §7.2 (claimed https), §7.1 (private-use schemes).
  if (parsed.protocol === 'http:') return LOOPBACKS.has(parsed.hostname) ? undefined : 'a native client may use http only with localhost, 127.0.0.1 or [::1]';
  if (parsed.protocol === 'https:') return LOOPBACKS.has(parsed.hostname) ? `a native client's https URL must not be on ${parsed.hostname} (use http for loopback)` : undefined;
  return FORBIDDEN_SCHEMES.has(parsed.protocol) ? `must not use the ${parsed.protocol.slice(0, -1)} scheme` : undefined;
}

export const clientSchema = z.strictObject({
  client_id: z.string({ error: 'expected a string' }).min(1, { error: 'must not be empty' }),
  client_secret: z.string({ error: 'expected a string' })
    .min(16, { error: 'must be at least 16 characters (use ${ENV_VAR} to keep it out of the file)' })
    .optional()
    .describe('Secret for confidential clients; reference it as ${ENV_VAR}.'),
  client_name: z.string({ error: 'expected a string' }).optional().describe('Shown on the consent and logout pages.'),
  redirect_uris: urlList.default([]),
  post_logout_redirect_uris: urlList.default([]),
  grant_types: z.array(z.enum(GRANT_TYPES, { error: `expected one of ${GRANT_TYPES.join(', ')}` }), {
    error: 'expected a list of grant types',
  }).default(['authorization_code', 'refresh_token']),
  response_types: z.array(z.enum(['code'], { error: 'only "code" is supported' }), {
    error: 'expected a list of response types',
  }).default(['code']),
  token_endpoint_auth_method: z.enum(AUTH_METHODS, { error: `expected one of ${AUTH_METHODS.join(', ')}` })
    .default('client_secret_basic'),
  scope: z.string({ error: 'expected a space-separated string of scopes' })
    .refine((value) => value.split(' ').every((s) => (SCOPES as readonly string[]).includes(s)), {
      error: `expected scopes among ${SCOPES.join(' ')}`,
    })
    .optional()
    .describe('Scopes this client may request; default: all of them.'),
  application_type: z.enum(['web', 'native'], { error: 'expected web or native' }).default('web'),
  client_uri: url.optional(),
  logo_uri: url.optional(),
  policy_uri: url.optional(),
  tos_uri: url.optional(),
  default_max_age: z.int({ error: 'expected a whole number of seconds' }).nonnegative({ error: 'must not be negative' }).optional(),
  require_auth_time: z.boolean({ error: 'expected true or false' }).optional(),
  id_token_signed_response_alg: z.enum(['RS256', 'ES256', 'EdDSA'], { error: 'expected RS256, ES256 or EdDSA' }).optional()
    .describe('ID token signing algorithm; default RS256.'),
  mfa_policy: z.enum(MFA_POLICIES, { error: `expected one of ${MFA_POLICIES.join(', ')}` })
    .default('if-enrolled')
    .describe('When a second factor is demanded for this client.'),
  require_pkce: z.boolean({ error: 'expected true or false' })
    .default(true)
    .describe('Authorization requests must carry PKCE (S256). false lets a confidential client without PKCE support sign users in; public clients always need it.'),
  skip_consent: z.boolean({ error: 'expected true or false' })
    .default(false)
    .describe('First-party app: grant the requested scopes without showing the consent page.'),
}).superRefine((client, ctx) => {
  for (const list of ['redirect_uris', 'post_logout_redirect_uris'] as const) {
    client[list].forEach((uri, i) => {
      const problem = redirectProblem(uri, client.application_type);
      if (problem) ctx.addIssue({ code: 'custom', path: [list, i], message: problem });
    });
  }
  if (client.token_endpoint_auth_method === 'none' && client.client_secret !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['client_secret'], message: 'a public client (token_endpoint_auth_method: none) has no secret' });
  }
  if (client.token_endpoint_auth_method !== 'none' && client.client_secret === undefined) {
    ctx.addIssue({ code: 'custom', path: ['client_secret'], message: `required for token_endpoint_auth_method ${client.token_endpoint_auth_method}` });
  }
  if (client.grant_types.includes('authorization_code') && client.redirect_uris.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['redirect_uris'], message: 'expected a list of URLs (at least one for the authorization_code grant)' });
  }
  // oidc-provider refuses the pair with a message about redirect_uris (OIDC Dynamic Client Registration §2:
  // response type code goes with the authorization_code grant).
  if (client.response_types.includes('code') && !client.grant_types.includes('authorization_code')) {
    ctx.addIssue({ code: 'custom', path: ['response_types'], message: 'expected [] for a client without the authorization_code grant' });
  }
  if (client.grant_types.includes('client_credentials') && client.token_endpoint_auth_method === 'none') {
    ctx.addIssue({ code: 'custom', path: ['grant_types'], message: 'client_credentials needs a confidential client' });
  }
});

export const DEFAULT_NAME = 'wrnexus-sso';

export const configSchema = z.strictObject({
  $schema: z.string().optional(),
  name: z.string({ error: 'expected a string' }).trim().min(1, { error: 'must not be empty' }).max(60, { error: 'must be at most 60 characters' })
    .refine((value) => !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(value), { error: 'must be one line, without control or format characters' })
    // The TOTP key URI's label is issuer:account, split at the first colon (Google Authenticator's Key Uri Format).
    .refine((value) => !value.includes(':'), { error: 'must not contain a colon (authenticator apps split their labels at one)' })
    .default(DEFAULT_NAME)
    .describe('The name people see: the pages (title, heading, sign-out texts), passkey prompts (WebAuthn rp.name), authenticator apps (the TOTP issuer; with the default name, the issuer\'s host instead) and the recovery-code file.'),
  issuer: origin.optional().describe('Public URL of this provider; env IDP_ISSUER wins. Default http://localhost:$PORT.'),
  port: z.int({ error: 'expected a port number' }).min(1).max(65535).default(3000).describe('env PORT wins.'),
  database_url: z.string({ error: 'expected a string' })
    .refine((value) => value === '' || /^postgres(ql)?:\/\/./i.test(value), { error: 'expected a postgres:// or postgresql:// URL (leave it unset for SQLite)' })
    .optional().describe('postgres://… selects PostgreSQL; env DATABASE_URL wins. Unset: SQLite.'),
  data_dir: z.string().default('./data').describe('Where the embedded SQLite database lives; env IDP_DATA_DIR wins.'),
  prepared_statements: z.boolean().default(true)
    .describe('PostgreSQL: prepare each statement once per connection. Turn off behind a pooler in transaction mode that cannot keep them (PgBouncer before 1.21, or without max_prepared_statements).'),
  postgres_issuance_commit: z.enum(['async', 'sync'], { error: 'expected async or sync' }).default('async')
    .describe('PostgreSQL: async commits the rows that only issue something new (tokens, codes, pushed requests) or hold a sign-in page\'s progress with synchronous_commit off: answered before their WAL is flushed, flushed within 600 ms (3 × wal_writer_delay) or by the next synchronous commit. A crash of the database server may forget the last of them: refused as unknown, their holders sign in again. Sessions, grants, consumed codes, revocations, throttle counts, accounts, factors and the audit trail always commit synchronously. sync: every commit synchronous (the server\'s own synchronous_commit applies).'),
  sqlite_synchronous: z.enum(['full', 'normal'], { error: 'expected full or normal' }).default('full')
    .describe('SQLite: full syncs the WAL to disk at every commit, so every answered change survives a power loss, as with PostgreSQL; normal syncs it at checkpoints only: faster, and a power loss or OS crash (not a crash of the process) may undo the last changes, consumed codes and revocations included.'),
  password: z.strictObject({
    bcrypt_cost: z.int({ error: 'expected a whole number' }).min(4, { error: 'must be between 4 and 15' }).max(15, { error: 'must be between 4 and 15' }).default(12)
      .describe('bcrypt work factor for new password hashes.'),
    min_length: z.int({ error: 'expected a whole number' }).min(8, { error: 'must be at least 8' }).default(8),
  }).prefault({}),
  ttl: z.strictObject({
    session: seconds(12 * 3600, 'Sign-in session lifetime.'),
    interaction: seconds(3600, 'How long a sign-in page stays valid.'),
    authorization_code: seconds(60, 'Authorization code lifetime.'),
    access_token: seconds(3600, 'Access token lifetime.'),
    id_token: seconds(3600, 'ID token lifetime.'),
    refresh_token: seconds(14 * 24 * 3600, 'Refresh token lifetime.'),
    grant: seconds(14 * 24 * 3600, 'Grant (consent) lifetime.'),
  }).prefault({}),
  metrics: z.strictObject({
    enabled: z.boolean().default(false).describe('Serve Prometheus metrics.'),
    port: z.int().min(1).max(65535).optional().describe('Serve /metrics on this port only (e.g. an internal network).'),
    host: z.string().refine((v) => isIP(v) !== 0, { error: 'expected an IP address' }).optional()
      .describe('The address the metrics port listens on (127.0.0.1, or an internal interface\'s address); every interface when unset.'),
    bearer_token: z.string().min(16, { error: 'must be at least 16 characters (use ${ENV_VAR})' }).optional()
      .describe('Requests for /metrics need Authorization: Bearer <token>; required without a port (metrics then on the main port), optional with one.'),
  }).prefault({}).superRefine((m, ctx) => {
    if (m.enabled && m.port === undefined && m.bearer_token === undefined) {
      ctx.addIssue({ code: 'custom', message: 'metrics on the main port need a bearer_token (or set a port of their own)' });
    }
    if (m.host !== undefined && m.port === undefined) {
      ctx.addIssue({ code: 'custom', path: ['host'], message: 'is the address of the metrics port: set metrics.port too' });
    }
  }),
  log: z.strictObject({
    level: z.enum(['debug', 'info', 'warn', 'error'], { error: 'expected debug, info, warn or error' }).default('info'),
  }).prefault({}),
  keys: z.strictObject({
    rotate_every: z.int().min(0).default(0)
      .describe('Seconds between automatic signing-key rotations; 0 turns automatic rotation off.'),
    reload_seconds: z.int().min(5).default(60)
      .describe('How often each instance looks for new or retired signing keys (the longest delay before a rotation takes effect everywhere).'),
  }).prefault({}),
  // NIST SP 800-63B §4.2.3 (AAL2): re-authenticate at least every 12 hours, and after 30 minutes idle.
  sessions: z.strictObject({
    reauthenticate_after: z.int({ error: 'expected a whole number of seconds' }).min(60, { error: 'must be at least 60 seconds' }).default(12 * 3600)
      .describe('Seconds after sign-in when any session must sign in again.'),
    mfa_idle_timeout: z.int({ error: 'expected a whole number of seconds' }).min(60, { error: 'must be at least 60 seconds' }).default(1800)
      .describe('Seconds of inactivity after which a session that used a second factor must sign in again.'),
  }).prefault({}),
  throttle: z.strictObject({
    backoff_after: z.int().min(1).default(5).describe('Consecutive failures of one factor before exponential back-off starts.'),
    max_backoff_seconds: z.int().min(1).default(900).describe('Longest back-off between attempts.'),
    lock_after: z.int().min(2).max(99, { error: 'must be below 100 (NIST SP 800-63B §5.2.2)' }).default(20)
      .describe('Consecutive failures of one factor that lock it (for lock_seconds).'),
    lock_seconds: z.int().min(1).default(3600).describe('How long a lock lasts; operators can unlock sooner.'),
    ip_max_failures: z.int().min(1).default(100).describe('Failed verifications allowed from one IP address (IPv6: one /64) per window, across accounts.'),
    ip_window_seconds: z.int().min(1).default(900),
  }).prefault({}),
  audit: z.strictObject({
    retention_days: z.int({ error: 'expected a whole number of days' }).min(0, { error: 'must not be negative' })
      .max(36_500, { error: 'must be at most 36500 (a hundred years; 0 keeps events forever)' }).default(400)
      .describe('Days the security events (the audit trail) are kept; 0 keeps them forever. The default covers a yearly review.'),
  }).prefault({}),
  trusted_proxies: z.array(z.string().refine((v) => isIpOrCidr(v), { error: 'expected an IP address or CIDR range' }), {
    error: 'expected a list of IP addresses or CIDR ranges',
  }).default([]).describe('Reverse proxies whose X-Forwarded-For is believed; from anyone else it is ignored.'),
  clients: z.array(clientSchema, { error: 'expected a list of clients' }).default([]),
}).superRefine((config, ctx) => {
  const seen = new Set<string>();
  config.clients.forEach((client, i) => {
    if (client.client_id === 'wrnexus-account') {
      ctx.addIssue({ code: 'custom', path: ['clients', i, 'client_id'], message: 'wrnexus-account is reserved for the account pages' });
    }
    if (seen.has(client.client_id)) {
      ctx.addIssue({ code: 'custom', path: ['clients', i, 'client_id'], message: `duplicate client_id ${client.client_id}` });
    }
    seen.add(client.client_id);
  });
  if (config.metrics.enabled && config.metrics.port === config.port) {
    ctx.addIssue({ code: 'custom', path: ['metrics', 'port'], message: `is the main port (${config.port}): leave it out to serve /metrics there behind a bearer_token, or choose another` });
  }
});

export type FileConfig = z.infer<typeof configSchema>;
export type ClientConfig = z.infer<typeof clientSchema>;

export function jsonSchema(): object {
  return {
    ...z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }),
    title: 'wrnexus-sso configuration',
  };
}

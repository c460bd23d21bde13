/**
 * Loads the configuration: defaults (in the schema) < config file < environment.
 * Every problem is collected and reported at once, each naming its path (Authelia's validators do the same).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { configSchema, type ClientConfig, type FileConfig } from './schema.js';

export interface Config extends Omit<FileConfig, 'issuer' | 'database_url' | '$schema'> {
  /** The file the configuration came from. */
  file: string;
  issuer: string;
  database_url: string | undefined;
  clients: ClientConfig[];
}

export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`invalid configuration in ${file}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** `clients[0].redirect_uris` from ['clients', 0, 'redirect_uris']. */
export function formatPath(segments: readonly PropertyKey[]): string {
  return segments.reduce<string>((out, segment) => (typeof segment === 'number'
    ? `${out}[${segment}]`
    : `${out}${out ? '.' : ''}${String(segment)}`), '');
}

/** Replaces `${NAME}` in every string with the environment variable; `$${` is a literal `${`. */
function interpolate(value: unknown, env: Env, at: PropertyKey[], problems: string[], within: ReadonlySet<object> = new Set()): unknown {
  // A YAML alias may name a node that holds it (`a: &a [*a]`): a value inside itself.
  if (value && typeof value === 'object' && within.has(value)) {
    problems.push(`${formatPath(at)}: refers to itself (a YAML alias inside its own anchor)`);
    return undefined;
  }
  if (typeof value === 'string') {
    return value.replace(/\$?\$\{([^}]*)\}/g, (match, name: string) => {
      if (match.startsWith('$$')) return match.slice(1);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        problems.push(`${formatPath(at)}: \${${name}} is not a valid environment variable reference`);
        return match;
      }
      const resolved = env[name];
      if (resolved === undefined) {
        problems.push(`${formatPath(at)}: environment variable ${name} is not set`);
        return match;
      }
      return resolved;
    });
  }
  if (value && typeof value === 'object') {
    const inner = new Set(within).add(value);
    if (Array.isArray(value)) return value.map((item, i) => interpolate(item, env, [...at, i], problems, inner));
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, interpolate(item, env, [...at, key], problems, inner)]));
  }
  return value;
}

function parseFile(file: string, problems: string[]): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`cannot read the config file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    return {};
  }
  if (/\.json$/i.test(file)) {
    try {
      return JSON.parse(text);
    } catch (err) {
      problems.push(`not valid JSON: ${(err as Error).message}`);
      return {};
    }
  }
  if (!/\.ya?ml$/i.test(file)) {
    problems.push('the config file must end in .yaml, .yml or .json');
    return {};
  }
  const doc = YAML.parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    for (const error of doc.errors) problems.push(`not valid YAML: ${error.message.split('\n')[0]}`);
    return {};
  }
  // Building the values can fail too: an alias expanded too often ("billion laughs", yaml's maxAliasCount).
  try {
    return doc.toJS() ?? {};
  } catch (err) {
    problems.push(`not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    return {};
  }
}

/** The settings the environment may set, by the variable that sets each (the variable wins over the file). */
const ENV_SETTINGS = { port: 'PORT', issuer: 'IDP_ISSUER', database_url: 'DATABASE_URL', data_dir: 'IDP_DATA_DIR' } as const;

function envOverrides(env: Env, problems: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (env.PORT !== undefined && env.PORT !== '') {
    const port = Number(env.PORT);
    if (!Number.isInteger(port) || port < 1 || port > 65535) problems.push(`PORT: expected a port number, got ${JSON.stringify(env.PORT)}`);
    else out.port = port;
  }
  if (env.IDP_ISSUER) out.issuer = env.IDP_ISSUER;
  if (env.DATABASE_URL) out.database_url = env.DATABASE_URL;
  if (env.IDP_DATA_DIR) out.data_dir = env.IDP_DATA_DIR;
  return out;
}

/**
 * zod's messages for what a schema does not word itself ("Invalid input: expected number, received
 * string"), in the words the rest of the file's problems use, with the value that was given.
 */
function plainMessage(issue: z.core.$ZodRawIssue): string | undefined {
  const given = typeof issue.input === 'string' || typeof issue.input === 'number' || typeof issue.input === 'boolean'
    ? `, got ${JSON.stringify(issue.input)}` : '';
  switch (issue.code) {
    case 'invalid_type': {
      // z.int() reports itself as a number; its format says it wants a whole one.
      const whole = (issue.inst as { _zod?: { def?: { format?: string } } } | undefined)?._zod?.def?.format === 'safeint';
      if (whole) return `expected a whole number${given}`;
      const expected = {
        number: 'a number', boolean: 'true or false', string: 'a string',
        array: 'a list', object: 'a mapping',
      }[issue.expected as string];
      return expected ? `expected ${expected}${given}` : undefined;
    }
    case 'too_small':
      if (issue.origin === 'number' || issue.origin === 'int') return `must be at least ${String(issue.minimum)}${given}`;
      if (issue.origin === 'string') return `must be at least ${String(issue.minimum)} characters`;
      if (issue.origin === 'array') return `must hold at least ${String(issue.minimum)}`;
      return undefined;
    case 'too_big':
      if (issue.origin === 'number' || issue.origin === 'int') return `must be at most ${String(issue.maximum)}${given}`;
      if (issue.origin === 'string') return `must be at most ${String(issue.maximum)} characters`;
      return undefined;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => String(v)).join(', ')}${given}`;
    default:
      return undefined;
  }
}

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const file = path.resolve(cwd, env.IDP_CONFIG || 'config/idp.yaml');
  const problems: string[] = [];
  const raw = parseFile(file, problems);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(file, [...problems, 'expected a mapping at the top level']);
  }
  const interpolated = interpolate(raw, env, [], problems) as Record<string, unknown>;
  const fromEnv = envOverrides(env, problems);
  const merged = { ...interpolated, ...fromEnv };
  const parsed = configSchema.safeParse(merged, { error: plainMessage });
  if (!parsed.success) {
    // One line per setting: zod goes on to a value's refinements after its type was refused (an issuer
    // that is no URL is also no origin), and the first problem is the one to fix.
    const named = new Set<string>();
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) problems.push(`${formatPath([...issue.path, key])}: unknown setting`);
        continue;
      }
      // A value the environment supplied is named by its variable: the operator looks for it there.
      const [top] = issue.path;
      const variable = issue.path.length === 1 && typeof top === 'string' && top in fromEnv
        ? ENV_SETTINGS[top as keyof typeof ENV_SETTINGS] : undefined;
      const where = variable ?? formatPath(issue.path);
      if (named.has(where)) continue;
      named.add(where);
      problems.push(where ? `${where}: ${issue.message}` : issue.message);
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(file, problems);

  const { $schema: _ignored, ...config } = parsed.data;
  const issuer = (config.issuer ?? `http://localhost:${config.port}`).replace(/\/$/, '');
  return {
    ...config,
    file,
    issuer,
    database_url: config.database_url || undefined,
    data_dir: path.resolve(cwd, config.data_dir),
  };
}

/**
 * The operator's command line, parsed and checked whole before anything reads the configuration or opens
 * the database: a typo must not create a data directory, a database file or a migration.
 */
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { cliCommand } from '../paths.js';

export class UsageError extends Error {}

const OPTIONS = {
  email: { type: 'string' },
  name: { type: 'string' },
  'password-stdin': { type: 'boolean' },
  user: { type: 'string' },
  since: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
  'new-key-file': { type: 'string' },
  unlock: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The options' values as parseArgs gives them (read off OPTIONS). */
export type Options = { [K in Exclude<keyof typeof OPTIONS, 'help'>]?: (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean };
type OptionName = keyof Options;

interface Spec {
  /** The usage line after `npm run idp --`. */
  usage: string;
  /** Positional arguments after the command's words. */
  args: number;
  options: OptionName[];
}

const COMMANDS = {
  'users add': { usage: 'users add <username> --email <email> [--name <display name>] [--password-stdin]', args: 1, options: ['email', 'name', 'password-stdin'] },
  'users list': { usage: 'users list', args: 0, options: [] },
  'users set-password': { usage: 'users set-password <username> [--password-stdin]', args: 1, options: ['password-stdin'] },
  'users disable': { usage: 'users disable <username>', args: 1, options: [] },
  'users enable': { usage: 'users enable <username>', args: 1, options: [] },
  'users delete': { usage: 'users delete <username>', args: 1, options: [] },
  'users unlock': { usage: 'users unlock <username>', args: 1, options: [] },
  'users sign-out': { usage: 'users sign-out <username>', args: 1, options: [] },
  'throttle list': { usage: 'throttle list [--json]', args: 0, options: ['json'] },
  'throttle unlock-ip': { usage: 'throttle unlock-ip <address>', args: 1, options: [] },
  audit: { usage: 'audit [--user <username>] [--since <duration, e.g. 30m, 24h, 7d>] [--limit <n>] [--json]', args: 0, options: ['user', 'since', 'limit', 'json'] },
  'secrets rotate': { usage: 'secrets rotate [--new-key-file <path>]', args: 0, options: ['new-key-file'] },
  'keys list': { usage: 'keys list [--json]', args: 0, options: ['json'] },
  'keys rotate': { usage: 'keys rotate', args: 0, options: [] },
  migrate: { usage: 'migrate [--unlock]', args: 0, options: ['unlock'] },
} satisfies Record<string, Spec>;

export type CommandName = keyof typeof COMMANDS;

export const USAGE = `usage: ${cliCommand()} <command>

${Object.values(COMMANDS).map((spec) => `  ${spec.usage}`).join('\n')}

Without --password-stdin the password is asked for on the terminal, without echo.`;

export type CommandLine = { help: true } | { help: false; command: CommandName; args: string[]; options: Options };

/** `30m`, `24h`, `7d` → seconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+)\s*([smhd])$/.exec(text.trim());
  if (!match) throw new UsageError(`--since: expected a duration like 30m, 24h or 7d, got ${JSON.stringify(text)}`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as 's' | 'm' | 'h' | 'd'];
}

/** An IP address; an IPv6 one may name its /64 (as `throttle list` prints it). */
export function parseAddress(text: string): string {
  const address = text.replace(/\/64$/, '');
  if (isIP(address) === 4 && address === text) return address;
  if (isIP(address.replace(/%.*$/, '')) === 6) return address;
  throw new UsageError(`throttle unlock-ip: not an IP address: ${JSON.stringify(text)}`);
}

/** A positive whole number of events. */
export function parseLimit(text: string): number {
  const limit = /^[1-9][0-9]*$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(limit)) throw new UsageError(`--limit: expected a positive whole number, got ${JSON.stringify(text)}`);
  return limit;
}

export function parseCommandLine(argv: string[]): CommandLine {
  let parsed;
  try {
    // Every command's options at once, to tell option values from positional arguments; which of them the
    // command takes is checked below.
    parsed = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  } catch (err) {
    // Node's first sentence says it ("Unknown option '--bogus'"); the rest is advice about `--`.
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) throw new UsageError((err as Error).message.split(/\.\s|\n/)[0]!);
    throw err;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) return { help: true };

  const [group, word] = positionals as [string, string | undefined];
  const pair = `${group} ${word ?? ''}`.trim();
  const command = (Object.hasOwn(COMMANDS, pair) ? pair : Object.hasOwn(COMMANDS, group) ? group : undefined) as CommandName | undefined;
  if (!command) {
    const known = Object.keys(COMMANDS).some((name) => name.startsWith(`${group} `));
    throw new UsageError(known && word === undefined ? `${group}: which command?` : `unknown command: ${known ? pair : group}`);
  }
  const spec: Spec = COMMANDS[command];
  const args = positionals.slice(command.split(' ').length);
  if (args.length !== spec.args) throw new UsageError(`expected ${spec.usage}`);
  const { help: _help, ...given } = values;
  for (const option of Object.keys(given) as OptionName[]) {
    if (!spec.options.includes(option)) throw new UsageError(`${command} does not take --${option}`);
  }
  const options = given as Options;
  if (command === 'users add' && !options.email) throw new UsageError('users add needs --email <email>');
  if (options.since !== undefined) parseDuration(options.since);
  if (options.limit !== undefined) parseLimit(options.limit);
  if (command === 'throttle unlock-ip') parseAddress(args[0]!);
  return { help: false, command, args, options };
}

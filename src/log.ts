/**
 * Logging: JSON lines through pino; a readable one-line format when stdout is a terminal. Callers pass
 * facts, never secrets (no passwords, codes, tokens, cookies or query strings).
 */
import { pino, type Logger as Pino } from 'pino';

export type Fields = Record<string, unknown>;
export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

const LEVELS: Record<number, string> = { 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR' };

/** `12:00:01 INFO  sign-in completed user_id=… client_id=…` */
function readable(line: string): string {
  const { time, level, msg, pid: _pid, hostname: _host, ...rest } = JSON.parse(line) as Record<string, unknown>;
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return `${new Date(Number(time)).toISOString().slice(11, 19)} ${LEVELS[Number(level)] ?? level} ${String(msg)}${fields ? ` ${fields}` : ''}`;
}

function wrap(logger: Pino): Logger {
  return {
    debug: (msg, fields = {}) => logger.debug(fields, msg),
    info: (msg, fields = {}) => logger.info(fields, msg),
    warn: (msg, fields = {}) => logger.warn(fields, msg),
    error: (msg, fields = {}) => logger.error(fields, msg),
  };
}

/** `write` receives each JSON line (tests capture them); by default stdout, readable on a terminal. */
export function createLogger(write?: (line: string) => void, level: Level = 'info'): Logger {
  const sink = write ?? (process.stdout.isTTY
    ? (line: string) => process.stdout.write(`${readable(line)}\n`)
    : (line: string) => process.stdout.write(`${line}\n`));
  const destination = { write: (chunk: string) => { for (const line of chunk.split('\n')) if (line) sink(line); } };
  return wrap(pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.epochTime }, destination));
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

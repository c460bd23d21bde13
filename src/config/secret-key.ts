/**
 * Where the secret key comes from: IDP_SECRET_KEY (base64 or hex of 32 bytes), IDP_SECRET_KEY_FILE, or,
 * for the embedded default, a key generated once into $IDP_DATA_DIR/secret.key (with a loud warning: it
 * must be backed up and shared by every instance).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.js';

type Env = Record<string, string | undefined>;

export function decodeKey(text: string, source: string): Buffer {
  const value = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64');
  if (key.length !== 32) throw new Error(`${source}: expected 32 bytes as base64 or 64 hex digits (generate one with: openssl rand -base64 32)`);
  return key;
}

/** The generated key file of the embedded default. */
export const generatedKeyFile = (dataDir: string) => path.join(dataDir, 'secret.key');

export function loadSecretKey(env: Env, dataDir: string, log: Logger): Buffer {
  if (env.IDP_SECRET_KEY) return decodeKey(env.IDP_SECRET_KEY, 'IDP_SECRET_KEY');
  if (env.IDP_SECRET_KEY_FILE) {
    let text: string;
    try {
      text = readFileSync(env.IDP_SECRET_KEY_FILE, 'utf8');
    } catch (err) {
      throw new Error(`IDP_SECRET_KEY_FILE: cannot read ${env.IDP_SECRET_KEY_FILE}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    return decodeKey(text, 'IDP_SECRET_KEY_FILE');
  }
  const file = generatedKeyFile(dataDir);
  if (existsSync(file)) return decodeKey(readFileSync(file, 'utf8'), file);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 }); // as connect.ts: it holds the key and the database
  const key = randomBytes(32);
  try {
    writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process sharing the data directory wrote it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return decodeKey(readFileSync(file, 'utf8'), file);
    throw err;
  }
  log.warn(`generated a new secret key in ${file}: back it up, and set IDP_SECRET_KEY (the same on every instance) in production`);
  return key;
}

/** Reads a small form or JSON body; anything else, or anything too large, is a 4xx. */
import type { Context } from 'koa';
import { AppError } from '../errors.js';

const LIMIT = 64 * 1024;

async function readRaw(ctx: Context): Promise<string> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > LIMIT) throw new AppError('invalid_request', 'request body too large', { status: 413 });
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of ctx.req) {
      size += (chunk as Buffer).length;
      if (size > LIMIT) throw new AppError('invalid_request', 'request body too large', { status: 413 });
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof AppError) throw err;
    // The stream ended early: the client went away, or sent a broken chunked encoding (Node answers that
    // 400 itself and closes). Either way the request was the client's, not ours, to fail.
    throw new AppError('invalid_request', 'the request body was cut off', { status: 400, cause: err });
  }
  return Buffer.concat(chunks).toString('utf8');
}

// A NUL character is never legitimate input here, and PostgreSQL refuses it in text parameters.
const NUL = /\u0000/;
// In JSON it may also arrive escaped.
const JSON_NUL = /\u0000|\\u0000/i;

/** application/x-www-form-urlencoded → a map of the first value of each field. */
export async function readForm(ctx: Context): Promise<Record<string, string>> {
  if (!ctx.is('application/x-www-form-urlencoded')) {
    throw new AppError('invalid_request', 'expected a form submission', { status: 415 });
  }
  const params = new URLSearchParams(await readRaw(ctx));
  const out: Record<string, string> = {};
  for (const [key, value] of params) {
    if (NUL.test(key) || NUL.test(value)) throw new AppError('invalid_request', 'The form contains characters that are not allowed.');
    if (!(key in out)) out[key] = value;
  }
  return out;
}

// Our JSON bodies (WebAuthn responses) nest four levels deep; a deeper one is refused before it is parsed,
// so no code that walks a value (JSON.stringify, a validator) can run out of stack on it.
const MAX_DEPTH = 32;
function nestedTooDeep(raw: string): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i += 1) {
    const c = raw.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i += 1; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      depth += 1;
      if (depth > MAX_DEPTH) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth -= 1;
    }
  }
  return false;
}

/** A JSON object body (not null, an array or a scalar). */
export async function readJson(ctx: Context): Promise<Record<string, unknown>> {
  if (!ctx.is('application/json')) {
    throw new AppError('invalid_request', 'Content-Type must be application/json', { status: 415 });
  }
  const raw = await readRaw(ctx);
  if (JSON_NUL.test(raw)) throw new AppError('invalid_request', 'the body contains characters that are not allowed');
  if (nestedTooDeep(raw)) throw new AppError('invalid_request', 'the body is nested too deeply');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw || '{}');
  } catch {
    throw new AppError('invalid_request', 'the body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new AppError('invalid_request', 'the body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

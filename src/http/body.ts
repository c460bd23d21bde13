/** Reads a small form or JSON body; anything else, or anything too large, is a 4xx. */
import type { Context } from 'koa';
import { AppError } from '../errors.js';

const LIMIT = 64 * 1024;

async function readRaw(ctx: Context): Promise<string> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > LIMIT) throw new AppError('invalid_request', 'request body too large', { status: 413 });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > LIMIT) throw new AppError('invalid_request', 'request body too large', { status: 413 });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** application/x-www-form-urlencoded → a map of the first value of each field. */
export async function readForm(ctx: Context): Promise<Record<string, string>> {
  if (!ctx.is('application/x-www-form-urlencoded')) {
    throw new AppError('invalid_request', 'expected a form submission', { status: 415 });
  }
  const params = new URLSearchParams(await readRaw(ctx));
  const out: Record<string, string> = {};
  for (const [key, value] of params) if (!(key in out)) out[key] = value;
  return out;
}

export async function readJson(ctx: Context): Promise<unknown> {
  if (!ctx.is('application/json')) {
    throw new AppError('invalid_request', 'Content-Type must be application/json', { status: 415 });
  }
  const raw = await readRaw(ctx);
  try {
    return JSON.parse(raw || '{}');
  } catch {
    throw new AppError('invalid_request', 'the body is not valid JSON');
  }
}

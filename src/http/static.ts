/** Serves the few files in public/ from memory under /static/ (no CDN, no directory walking). */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Context, Next } from 'koa';
import { projectRoot } from '../paths.js';

const TYPES: Record<string, string> = {
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

export function staticFiles(extra: Record<string, string> = {}, dir = path.join(projectRoot, 'public')) {
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const [urlPath, file] of Object.entries(extra)) {
    files.set(urlPath, { body: readFileSync(file), type: TYPES[path.extname(file)]! });
  }
  for (const name of readdirSync(dir)) {
    const type = TYPES[path.extname(name)];
    if (type) files.set(`/static/${name}`, { body: readFileSync(path.join(dir, name)), type });
  }
  return async function serveStatic(ctx: Context, next: Next) {
    const file = (ctx.method === 'GET' || ctx.method === 'HEAD') ? files.get(ctx.path) : undefined;
    if (!file) return next();
    ctx.state.route = 'static';
    ctx.type = file.type;
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.body = file.body;
  };
}

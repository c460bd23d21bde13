/**
 * Server-rendered pages (eta, auto-escaped). Every page gets the security headers here, so a page can't
 * forget them; a strict Content-Security-Policy allows only our own assets.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Eta } from 'eta';
import type { Context, Next } from 'koa';
import { projectRoot } from '../paths.js';
import { DEFAULT_NAME } from '../config/schema.js';

const eta = new Eta({ views: path.join(projectRoot, 'views'), cache: process.env.NODE_ENV !== 'development', autoEscape: true });

/**
 * A strict Content-Security-Policy: scripts only with this response's nonce (CSP Level 3 §7.1), nothing
 * inline, our own styles and images only, no framing. No form-action: Chromium applies it to the
 * redirect that follows a form post, which would block the redirect to the app's redirect_uri.
 */
export const pageCsp = (nonce: string) => [
  "default-src 'none'",
  `script-src 'nonce-${nonce}'`,
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * Headers for every response, including oidc-provider's own: no MIME sniffing, no referrer, no framing,
 * and HSTS when the issuer is https (RFC 6797).
 */
export function securityHeaders(https: boolean) {
  // Not async (nor the other middleware of every request, app.ts): with async hooks on (oidc-provider's
  // request context), each async function's promises cost more than the headers themselves.
  return function setSecurityHeaders(ctx: Context, next: Next) {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('X-Frame-Options', 'DENY');
    if (https) ctx.set('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
    if (PROVIDER_PAGES.test(ctx.path)) ctx.set('Content-Security-Policy', PROVIDER_PAGE_CSP);
    return next();
  };
}

/**
 * The endpoints where oidc-provider writes HTML pages of its own (the authorization response posted to
 * the app, OAuth 2.0 Form Post Response Mode; the page that ends another user's session before a sign-in,
 * and the logout's and device flow's) get a policy too: the library adds its inline script's hash to
 * script-src (helpers/script_src_sha.js), so only that script runs. Our pages on these paths replace it
 * with theirs (setPageHeaders). Not on every response: JSON needs none, and each header costs.
 */
const PROVIDER_PAGES = /^\/(auth|session|device)(\/|$)/i;
const PROVIDER_PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";

export function setPageHeaders(ctx: Context, nonce: string): void {
  ctx.set('Content-Security-Policy', pageCsp(nonce));
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('Referrer-Policy', 'no-referrer');
  ctx.set('X-Frame-Options', 'DENY');
  ctx.set('Cache-Control', 'no-store');
}

export interface PageData {
  title: string;
  [key: string]: unknown;
}

/** Renders `views/<name>.eta` inside the layout as the response body. */
export function renderPage(ctx: Context, name: string, data: PageData, status = 200): void {
  const nonce = randomBytes(16).toString('base64');
  setPageHeaders(ctx, nonce);
  ctx.status = status;
  ctx.type = 'html';
  ctx.body = eta.render(`./${name}`, { siteName: siteNameOf(ctx), ...data, nonce });
}

/** The provider's name as people see it (config `name`), set once on the app's context (app.ts). */
export const siteNameOf = (ctx: Context): string => (ctx as { siteName?: string }).siteName ?? DEFAULT_NAME;

/**
 * CSRF protection for forms: a random per-browser secret in an HttpOnly cookie, and a form token that is
 * an HMAC of it (the "signed double-submit" pattern, OWASP CSRF Prevention Cheat Sheet). A cross-site page
 * can make the browser send the cookie but can neither read it nor compute the token.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';
import { AppError } from '../errors.js';

export function createCsrf(options: { key: string; secureCookies: boolean }) {
  const cookieName = options.secureCookies ? '__Host-idp_csrf' : 'idp_csrf';
  const sign = (secret: string) => createHmac('sha256', options.key).update(`csrf:${secret}`).digest('base64url');

  return {
    /** The token to embed in a form, creating the browser secret on first use. */
    token(ctx: Context): string {
      let secret = ctx.cookies.get(cookieName);
      if (!secret || !/^[A-Za-z0-9_-]{43}$/.test(secret)) {
        secret = randomBytes(32).toString('base64url');
        ctx.cookies.set(cookieName, secret, {
          httpOnly: true, sameSite: 'lax', secure: options.secureCookies, path: '/', overwrite: true,
        });
      }
      return sign(secret);
    },
    /** Throws unless `submitted` is this browser's token. */
    verify(ctx: Context, submitted: string | undefined): void {
      const secret = ctx.cookies.get(cookieName);
      const expected = secret ? Buffer.from(sign(secret)) : undefined;
      const given = Buffer.from(submitted ?? '');
      if (!expected || given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new AppError('csrf_failed', 'This form has expired or was not sent from our page. Please go back and try again.', { status: 403 });
      }
    },
  };
}

export type Csrf = ReturnType<typeof createCsrf>;

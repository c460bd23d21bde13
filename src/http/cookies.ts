/** Our own cookies: HttpOnly, SameSite=Lax, Secure and `__Host-` prefixed whenever the issuer is https. */
import type { Context } from 'koa';

export function createCookieJar(secure: boolean) {
  const name = (base: string, path: string) => (secure && path === '/' ? `__Host-${base}` : base);
  return {
    names: {
      signIn: name('idp_signin', '/'),
      webauthn: name('idp_webauthn', '/'),
    },
    set(ctx: Context, cookieName: string, value: string, maxAgeMs: number): void {
      ctx.cookies.set(cookieName, value, { httpOnly: true, sameSite: 'lax', secure, path: '/', maxAge: maxAgeMs, overwrite: true });
    },
    clear(ctx: Context, cookieName: string): void {
      ctx.cookies.set(cookieName, '', { httpOnly: true, sameSite: 'lax', secure, path: '/', maxAge: 0, overwrite: true });
    },
  };
}

export type CookieJar = ReturnType<typeof createCookieJar>;

/**
 * JSON APIs: refuse requests that a browser sent on behalf of another site (Origin must be ours;
 * Fetch Metadata, when sent, must say same-origin).
 */
export function isSameOrigin(ctx: Context, issuerOrigin: string): boolean {
  const origin = ctx.get('origin');
  const site = ctx.get('sec-fetch-site');
  return origin === issuerOrigin && (!site || site === 'same-origin');
}

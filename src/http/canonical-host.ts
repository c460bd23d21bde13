/**
 * The issuer is this provider's one public URL, and every URL oidc-provider builds from a request
 * (discovery's endpoints, redirects, form actions) starts from the request's own URL (koa's ctx.href:
 * the request target when it is in absolute form, else Host, or X-Forwarded-Host and X-Forwarded-Proto
 * when proxy is on). So the request is made to name the issuer before anything reads it: a forged host
 * cannot put another origin into a discovery document a cache may keep, and an invalid one (RFC 9112
 * §3.2) cannot make URL building fail (it answered 500). Cookies are unaffected: they carry no domain and
 * stay with the host the browser used.
 */
import type { Context, Next } from 'koa';

export function canonicalHost(issuer: string) {
  const { host, protocol } = new URL(issuer);
  const scheme = protocol.slice(0, -1);
  return function pinHost(ctx: Context, next: Next) {
    // An absolute-form target (RFC 9112 §3.2.2, "GET http://other.example/path") carries its own
    // authority, which koa prefers to every header: keep only its path and query.
    const target = ctx.req.url ?? '/';
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
      let url: URL;
      try {
        url = new URL(target);
      } catch {
        ctx.status = 400;
        ctx.body = 'Bad Request';
        return undefined;
      }
      ctx.req.url = `${url.pathname}${url.search}`;
      ctx.originalUrl = ctx.req.url;
      ctx.request.originalUrl = ctx.req.url;
    }
    const headers = ctx.req.headers;
    headers.host = host;
    delete headers['x-forwarded-host'];
    // Read only when proxy is on (an https issuer behind a TLS-terminating proxy, provider.ts).
    headers['x-forwarded-proto'] = scheme;
    return next();
  };
}

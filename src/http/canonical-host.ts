/**
 * The issuer is this provider's one public URL, and every URL oidc-provider builds from a request
 * (discovery's endpoints, redirects, form actions) starts from the request's host and scheme (koa's
 * ctx.origin: Host, or X-Forwarded-Host and X-Forwarded-Proto when proxy is on). So the request is made
 * to name the issuer before anything reads it: a forged Host or X-Forwarded-Host cannot put another
 * origin into a discovery document a cache may keep, and an invalid one (RFC 9112 §3.2) cannot make URL
 * building fail (it answered 500). Cookies are unaffected: they carry no domain and stay with the host
 * the browser used.
 */
import type { Context, Next } from 'koa';

export function canonicalHost(issuer: string) {
  const { host, protocol } = new URL(issuer);
  const scheme = protocol.slice(0, -1);
  return function pinHost(ctx: Context, next: Next) {
    const headers = ctx.req.headers;
    headers.host = host;
    delete headers['x-forwarded-host'];
    // Read only when proxy is on (an https issuer behind a TLS-terminating proxy, provider.ts).
    headers['x-forwarded-proto'] = scheme;
    return next();
  };
}

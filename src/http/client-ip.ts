/**
 * The client's IP address: the socket's peer, unless that peer is a trusted proxy, in which case the
 * right-most X-Forwarded-For entry that is not itself a trusted proxy. A header sent by anyone else
 * changes nothing (OWASP ASVS V7: do not trust client-supplied addresses).
 */
import { BlockList, isIP } from 'node:net';
import type { Context, Next } from 'koa';
import { canonicalIp } from '../ip.js';

/**
 * What to warn an operator about at start: an https issuer (so, in production, a TLS-terminating proxy in
 * front) with no trusted proxy, where every request would seem to come from the proxy, the per-address
 * throttle would count everyone's failures together, and a few guesses would lock the whole site out.
 */
export function proxyWarning(config: { issuer: string; trusted_proxies: readonly string[] }): string | undefined {
  if (!config.issuer.startsWith('https:') || config.trusted_proxies.length > 0) return undefined;
  return 'the issuer is https but trusted_proxies is empty: behind a reverse proxy, list its addresses there, or every client shares its address for throttling and the audit trail';
}

export function createClientIp(trustedProxies: readonly string[]) {
  const trusted = new BlockList();
  for (const entry of trustedProxies) {
    const [address, prefix] = entry.split('/');
    const type = isIP(address!) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) trusted.addAddress(address!, type);
    else trusted.addSubnet(address!, Number(prefix), type);
  }
  const isTrusted = (address: string) => {
    const family = isIP(address);
    return family !== 0 && trusted.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };

  function resolve(peer: string, forwardedFor: string | undefined): string {
    // An IPv4 client reached over IPv6 (a dual-stack socket, or a proxy writing ::ffff:…) is that client.
    const socket = canonicalIp(peer);
    if (!forwardedFor || !isTrusted(socket)) return socket;
    // From the right: each trusted proxy names the hop before it. What lies left of the first hop that is
    // not a trusted proxy was written by the client, whatever it says (a malformed entry there used to
    // discard the whole header, letting a client pick the proxy's address as its own). A malformed entry
    // among the trusted hops ends the walk at the last address they vouched for.
    const hops = forwardedFor.split(',').map((h) => canonicalIp(h.trim()));
    let vouched = socket;
    for (let i = hops.length - 1; i >= 0; i -= 1) {
      const hop = hops[i]!;
      if (isIP(hop) === 0) return vouched;
      if (!isTrusted(hop)) return hop;
      vouched = hop;
    }
    return vouched;
  }

  return {
    resolve,
    middleware() {
      return function clientIp(ctx: Context, next: Next) {
        ctx.request.ip = resolve(ctx.req.socket.remoteAddress ?? '', ctx.get('x-forwarded-for') || undefined);
        return next();
      };
    },
  };
}

/**
 * The client's IP address: the socket's peer, unless that peer is a trusted proxy, in which case the
 * right-most X-Forwarded-For entry that is not itself a trusted proxy. A malformed header, or one sent
 * by anyone else, changes nothing (OWASP ASVS V7: do not trust client-supplied addresses).
 */
import { BlockList, isIP } from 'node:net';
import type { Context, Next } from 'koa';

const plain = (address: string) => address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');

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
    const socket = plain(peer);
    if (!forwardedFor || !isTrusted(socket)) return socket;
    const hops = forwardedFor.split(',').map((h) => plain(h.trim()));
    if (hops.some((h) => isIP(h) === 0)) return socket;
    for (let i = hops.length - 1; i >= 0; i -= 1) {
      if (!isTrusted(hops[i]!)) return hops[i]!;
    }
    return hops[0] ?? socket;
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

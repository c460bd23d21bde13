/**
 * IP addresses as we count and record them. An IPv6 address has many spellings (RFC 4291 §2.2; RFC 5952
 * picks one); what matters here is its first 64 bits (the per-address throttle) and whether it is an
 * IPv4 address in IPv6 form (::ffff:0:0/96, §2.5.5.2), which is that IPv4 address.
 */
import { isIP } from 'node:net';

/** The eight 16-bit groups of an IPv6 address (a zone id dropped), or undefined when it is not one. */
export function ipv6Groups(address: string): number[] | undefined {
  const plain = address.replace(/%.*$/, '');
  if (isIP(plain) !== 6) return undefined;
  const parse = (part: string) => (part ? part.split(':') : []).flatMap((group) => {
    if (!group.includes('.')) return [parseInt(group, 16)];
    const [a, b, c, d] = group.split('.').map(Number) as [number, number, number, number];
    return [(a << 8) | b, (c << 8) | d];
  });
  const [head = '', tail] = plain.split('::');
  const left = parse(head);
  if (tail === undefined) return left;
  const right = parse(tail);
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/** An IPv4-mapped IPv6 address, however spelled, as its IPv4 address; any other address as given. */
export function canonicalIp(address: string): string {
  const groups = ipv6Groups(address);
  if (!groups || groups.slice(0, 5).some((g) => g !== 0) || groups[5] !== 0xffff) return address;
  return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
}

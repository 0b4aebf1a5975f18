/**
 * IPv4 address helpers. xlb's datapath is IPv4 (IPv6 is recorded in the model
 * but not yet served); addresses travel as dotted quads in TypeScript and as
 * big-endian u32 in maps.
 */

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** True for a dotted-quad IPv4 address without leading zeros. */
export function isIPv4(s: string): boolean {
  return IPV4.test(s);
}

/** True for something that parses as an IPv6 address (for dual-stack objects). */
export function isIPv6(s: string): boolean {
  return s.includes(':') && /^[0-9a-fA-F:.]+$/.test(s);
}

/**
 * A dotted quad as an unsigned 32-bit number in host order (198.18.0.1 → 0xc6120001).
 * @throws Error naming the string when it is not IPv4
 */
export function ipToU32(ip: string): number {
  if (!isIPv4(ip)) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  const [a, b, c, d] = ip.split('.').map(Number);
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/** An unsigned 32-bit host-order number as a dotted quad. */
export function u32ToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

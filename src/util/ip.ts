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
  // A char-code scan (this runs once per backend and frontend of a sync): four
  // decimal octets 0..255 without leading zeros, as isIPv4 accepts.
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return bad(ip);
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return bad(ip); // leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return bad(ip);
    } else return bad(ip);
  }
  if (dots !== 3 || digits === 0) return bad(ip);
  return (n * 256 + octet) >>> 0;
}

function bad(ip: string): never {
  throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
}

/** An unsigned 32-bit host-order number as a dotted quad. */
export function u32ToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

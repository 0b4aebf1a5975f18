/**
 * BGP community strings ↔ wire values.
 *
 * - Standard communities (RFC 1997): a 32-bit value written `ASN:value`, each
 *   half 0..65535 (`65000:100` → 65000 << 16 | 100). The well-known names of
 *   RFC 1997 and RFC 7999 are accepted too.
 * - Large communities (RFC 8092): three 32-bit values written
 *   `global:local1:local2`.
 */

/** A large community as the three u32 fields of RFC 8092 section 3. */
export interface LargeCommunity {
  globalAdmin: number;
  localData1: number;
  localData2: number;
}

/** Well-known communities by the names operators write (RFC 1997 section 4, RFC 7999 section 5). */
const WELL_KNOWN: Record<string, number> = {
  'no-export': 0xffffff01,
  'no-advertise': 0xffffff02,
  'no-export-subconfed': 0xffffff03,
  blackhole: 0xffff029a,
};

const U16 = /^(0|[1-9]\d{0,4})$/;
const U32 = /^(0|[1-9]\d{0,9})$/;

/**
 * Parse a standard community (`65000:100`, or a well-known name such as
 * `no-export`) into its u32 wire value.
 * @param where names the field in errors, e.g. `bgp.communities[0]`
 * @throws Error `<where>: ...` when the string is not `0..65535:0..65535` or a known name
 */
export function parseCommunity(s: string, where = 'community'): number {
  const known = WELL_KNOWN[s.toLowerCase()];
  if (known !== undefined) return known;
  const parts = s.split(':');
  if (parts.length !== 2 || !parts.every((p) => U16.test(p) && Number(p) <= 0xffff)) {
    throw new Error(`${where}: ${JSON.stringify(s)} is not a BGP community (ASN:value, each 0..65535, RFC 1997)`);
  }
  return ((Number(parts[0]) << 16) | Number(parts[1])) >>> 0;
}

/** Format a u32 standard community value as `high:low` (the form BIRD and gobgp print). */
export function formatCommunity(value: number): string {
  return `${value >>> 16}:${value & 0xffff}`;
}

/**
 * Parse a large community `global:local1:local2` (each 0..4294967295).
 * @param where names the field in errors, e.g. `bgp.largeCommunities[1]`
 * @throws Error `<where>: ...` when the string has not three u32 parts
 */
export function parseLargeCommunity(s: string, where = 'large community'): LargeCommunity {
  const parts = s.split(':');
  if (parts.length !== 3 || !parts.every((p) => U32.test(p) && Number(p) <= 0xffffffff)) {
    throw new Error(`${where}: ${JSON.stringify(s)} is not a BGP large community (global:local1:local2, each 0..4294967295, RFC 8092)`);
  }
  const [globalAdmin, localData1, localData2] = parts.map(Number);
  return { globalAdmin, localData1, localData2 };
}

/** Format a large community as `global:local1:local2`. */
export function formatLargeCommunity(c: LargeCommunity): string {
  return `${c.globalAdmin}:${c.localData1}:${c.localData2}`;
}

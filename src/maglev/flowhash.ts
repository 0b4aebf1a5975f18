/**
 * The datapath's flow hash (docs/datapath.md, "Flow hash";
 * xdp/include/xlb_maglev.h), so that the control plane can predict which
 * backend the datapath picks for a flow:
 *
 *     h = jhash_3words(ntohl(saddr), ntohl(daddr),
 *                      ntohs(sport) << 16 | ntohs(dport),
 *                      XLB_FLOW_HASH_SEED + proto)
 *     backend_id = table[h % M]   (0-based here; slot 1 + h % M in the map)
 *
 * test/unit/maglev-flowhash-vectors.json holds golden values computed by a
 * separate C program (test/unit/fixtures/jhash_vectors.c).
 */
import { isIPv4, ipToU32 } from '../util/ip.js';

/** lookup3's arbitrary start value, as in the kernel's include/linux/jhash.h. */
const JHASH_INITVAL = 0xdeadbeef;

/**
 * Added to the protocol number to seed the flow hash ("xlb" in ASCII). Must
 * equal `XLB_FLOW_HASH_SEED` of xdp/include/xlb_types.h; a unit test compares
 * it with the BTF-generated layouts.
 */
export const XLB_FLOW_HASH_SEED = 0x786c62;

function rol32(word: number, shift: number): number {
  return ((word << shift) | (word >>> (32 - shift))) >>> 0;
}

/**
 * The Linux kernel's `jhash_3words(a, b, c, initval)` (include/linux/jhash.h:
 * `__jhash_nwords` with initval + JHASH_INITVAL + (3 << 2), then
 * `__jhash_final`, Bob Jenkins' lookup3 final mix). All arguments and the
 * result are unsigned 32-bit numbers.
 */
export function jhash3Words(a: number, b: number, c: number, initval: number): number {
  const seed = (initval + JHASH_INITVAL + (3 << 2)) >>> 0;
  a = (a + seed) >>> 0;
  b = (b + seed) >>> 0;
  c = (c + seed) >>> 0;
  c = ((c ^ b) - rol32(b, 14)) >>> 0;
  a = ((a ^ c) - rol32(c, 11)) >>> 0;
  b = ((b ^ a) - rol32(a, 25)) >>> 0;
  c = ((c ^ b) - rol32(b, 16)) >>> 0;
  a = ((a ^ c) - rol32(c, 4)) >>> 0;
  b = ((b ^ a) - rol32(a, 14)) >>> 0;
  c = ((c ^ b) - rol32(b, 24)) >>> 0;
  return c;
}

/**
 * A client → frontend IPv4 5-tuple as the datapath sees it.
 *
 * - `saddr`, `daddr`: dotted quads (client and frontend address)
 * - `sport`, `dport`: ports as numbers (host order), 0..65535
 * - `proto`: IP protocol number, 6 (TCP) or 17 (UDP)
 */
export interface FlowTuple {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
}

/**
 * The datapath's flow hash of `flow`, unsigned 32-bit (docs/datapath.md,
 * "Flow hash"). The same on every node.
 *
 * @throws RangeError naming the field (`saddr`, `daddr`, `sport`, `dport`,
 *   `proto`) when it is not an IPv4 address, a port or a protocol number
 */
export function flowHash(flow: FlowTuple): number {
  for (const field of ['saddr', 'daddr'] as const) {
    if (!isIPv4(flow[field])) {
      throw new RangeError(`flow: ${field} must be a dotted-quad IPv4 address, got ${JSON.stringify(flow[field])}`);
    }
  }
  for (const field of ['sport', 'dport'] as const) {
    const port = flow[field];
    if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
      throw new RangeError(`flow: ${field} must be an integer in 0..65535, got ${port}`);
    }
  }
  if (!Number.isInteger(flow.proto) || flow.proto < 0 || flow.proto > 0xff) {
    throw new RangeError(`flow: proto must be an IP protocol number in 0..255, got ${flow.proto}`);
  }
  return jhash3Words(
    ipToU32(flow.saddr),
    ipToU32(flow.daddr),
    ((flow.sport << 16) | flow.dport) >>> 0,
    XLB_FLOW_HASH_SEED + flow.proto,
  );
}

/**
 * The backend ID that the datapath picks for `flow` from Maglev `table`
 * (0-based, as built by `buildMaglevTable` in table.ts): table[flowHash % M].
 * 0 means "no backend" (an empty table, or an empty slot).
 *
 * @throws RangeError when `table` is empty, or as {@link flowHash}
 */
export function predictBackend(table: Uint32Array, flow: FlowTuple): number {
  if (table.length === 0) throw new RangeError('predictBackend: table has no slots (M = 0)');
  return table[flowHash(flow) % table.length];
}

/**
 * Address pools of LB IPAM: sets of IPv4 addresses given as CIDRs
 * (`192.0.2.0/28`), inclusive ranges (`203.0.113.10-203.0.113.20`) or single
 * addresses, held as inclusive [first, last] ranges of 32-bit integers.
 *
 * Network and broadcast addresses: a CIDR larger than a /31 loses its first
 * and last address unless `avoidNetworkAndBroadcast` is false. Pools are
 * often carved from the nodes' own L2 segment, where those two are not host
 * addresses (answering ARP for the subnet's broadcast address breaks the
 * segment, and many hosts drop traffic to it); a routed (BGP) pool that
 * wants every address says so. /31 (RFC 3021) and /32 have no such
 * addresses, and an explicit range is taken as written. Pure: no I/O.
 */
import net from 'node:net';
import { ipToU32, isIPv4, u32ToIp } from '../util/ip.js';
import { selectorMatches, type LabelSelectorRequirement } from '../sources/kubernetes/selector.js';

/**
 * Pseudo-labels a pool's service selector can match besides the Service's
 * own labels: its namespace and its name (Cilium LB IPAM's special selector
 * keys, which xlb reads the same way).
 */
export const SERVICE_NAMESPACE_LABEL = 'io.kubernetes.service.namespace';
/** See {@link SERVICE_NAMESPACE_LABEL}. */
export const SERVICE_NAME_LABEL = 'io.kubernetes.service.name';

/** Inclusive range of IPv4 addresses as unsigned 32-bit integers. */
export interface AddressRange {
  first: number;
  last: number;
}

/**
 * Parse one pool entry.
 * @param avoidNetworkAndBroadcast drop the first and last address of CIDRs shorter than /31
 * @throws Error with a message (no path: the config formatter adds it)
 */
export function parseAddressEntry(entry: string, avoidNetworkAndBroadcast = true): AddressRange {
  const s = entry.trim();
  if (s.includes('/')) {
    const [addr, lenText, extra] = s.split('/');
    if (extra !== undefined || !/^\d{1,2}$/.test(lenText)) throw new Error(`${JSON.stringify(entry)} is not a CIDR (ADDRESS/PREFIX)`);
    if (net.isIPv6(addr)) throw new Error(`${JSON.stringify(entry)}: IPv6 pools are not served yet (the datapath is IPv4)`);
    if (!isIPv4(addr)) throw new Error(`${JSON.stringify(entry)}: ${JSON.stringify(addr)} is not an IPv4 address`);
    const len = Number(lenText);
    if (len > 32) throw new Error(`${JSON.stringify(entry)}: prefix length must be 0..32`);
    const size = 2 ** (32 - len);
    const base = ipToU32(addr);
    if (base % size !== 0) throw new Error(`${JSON.stringify(entry)} has host bits set (did you mean ${u32ToIp(base - (base % size))}/${len}?)`);
    const trim = avoidNetworkAndBroadcast && len < 31 ? 1 : 0;
    return { first: base + trim, last: base + size - 1 - trim };
  }
  if (s.includes('-')) {
    const [a, b, extra] = s.split('-').map((x) => x.trim());
    if (extra !== undefined) throw new Error(`${JSON.stringify(entry)} is not a range (FIRST-LAST)`);
    if (net.isIPv6(a) || net.isIPv6(b)) throw new Error(`${JSON.stringify(entry)}: IPv6 pools are not served yet (the datapath is IPv4)`);
    if (!isIPv4(a) || !isIPv4(b)) throw new Error(`${JSON.stringify(entry)} is not a range of IPv4 addresses (FIRST-LAST)`);
    const first = ipToU32(a);
    const last = ipToU32(b);
    if (first > last) throw new Error(`${JSON.stringify(entry)}: the first address is above the last`);
    return { first, last };
  }
  if (net.isIPv6(s)) throw new Error(`${JSON.stringify(entry)}: IPv6 pools are not served yet (the datapath is IPv4)`);
  if (!isIPv4(s)) throw new Error(`${JSON.stringify(entry)} is not an IPv4 address, CIDR or range`);
  const n = ipToU32(s);
  return { first: n, last: n };
}

/** Which services a pool serves; absent fields do not restrict. */
export interface PoolScope {
  /** Only services in these namespaces. */
  namespaces?: string[];
  /** Only services carrying all these labels. */
  matchLabels?: Record<string, string>;
  /** Only services whose labels meet all these requirements (meta/v1 LabelSelector semantics). */
  matchExpressions?: LabelSelectorRequirement[];
  /** false: only services that ask for this pool or for one of its addresses. */
  autoAssign: boolean;
}

/** One pool: a name, its addresses, its scope. */
export class Pool {
  readonly size: number;
  /** Where the last free-address search ended, to avoid rescanning a full prefix. */
  private cursor = 0;

  constructor(
    readonly name: string,
    readonly ranges: AddressRange[],
    readonly scope: PoolScope,
  ) {
    this.size = ranges.reduce((n, r) => n + (r.last - r.first + 1), 0);
  }

  /** Whether the dotted-quad `ip` is in the pool. */
  contains(ip: string): boolean {
    if (!isIPv4(ip)) return false;
    const n = ipToU32(ip);
    return this.ranges.some((r) => n >= r.first && n <= r.last);
  }

  /**
   * Whether the pool serves a service in `namespace` with `labels` (autoAssign
   * aside). The selector also sees {@link SERVICE_NAMESPACE_LABEL} and, when
   * `name` is given, {@link SERVICE_NAME_LABEL}.
   */
  admits(namespace: string, labels: Record<string, string>, name?: string): boolean {
    if (this.scope.namespaces && !this.scope.namespaces.includes(namespace)) return false;
    if (!this.scope.matchLabels && !this.scope.matchExpressions) return true;
    const seen = { ...labels, [SERVICE_NAMESPACE_LABEL]: namespace, ...(name !== undefined ? { [SERVICE_NAME_LABEL]: name } : {}) };
    return selectorMatches({ matchLabels: this.scope.matchLabels, matchExpressions: this.scope.matchExpressions }, seen);
  }

  /** The address at position i (0..size-1) in range order. */
  private at(i: number): number {
    for (const r of this.ranges) {
      const n = r.last - r.first + 1;
      if (i < n) return r.first + i;
      i -= n;
    }
    throw new RangeError(`pool ${this.name}: index ${i} out of range`);
  }

  /**
   * A free address, or undefined when every address is taken. Searches from
   * where the last search ended, so a run of allocations costs O(size) in
   * all rather than each.
   */
  firstFree(taken: (ip: string) => boolean): string | undefined {
    for (let k = 0; k < this.size; k++) {
      const i = (this.cursor + k) % this.size;
      const ip = u32ToIp(this.at(i));
      if (!taken(ip)) {
        this.cursor = (i + 1) % this.size;
        return ip;
      }
    }
    return undefined;
  }

  /** Start searches from the pool's first address again (after a release, so low addresses are reused first). */
  rewind(): void {
    this.cursor = 0;
  }
}

/** Whether two sets of ranges overlap; returns one shared address when they do. */
export function overlap(a: AddressRange[], b: AddressRange[]): string | undefined {
  for (const x of a) for (const y of b) if (x.first <= y.last && y.first <= x.last) return u32ToIp(Math.max(x.first, y.first));
  return undefined;
}

/**
 * The real LBMaps: xlb's load-balancing maps (docs/datapath.md, "Maps")
 * written through libbpf. Frontends and backends go in one batched update per
 * sync; a Maglev lookup table is written into a fresh inner array with one
 * batched update and then swapped into xlb_maglev with one more, so the
 * datapath always sees a whole table (slot 0 = M, slots 1..M = backend IDs).
 */
import { BpfMap, BPF_F_INNER_MAP, BPF_F_MMAPABLE, possibleCpus, type BpfObject } from './bpf.js';

/** Flags of every Maglev table: those of the template in xlb_maps.h (the kernel compares them on insert). */
export const MAGLEV_TABLE_FLAGS = BPF_F_INNER_MAP | BPF_F_MMAPABLE;
import { ipToU32 } from '../util/ip.js';
import { decode, dropReasonNames, encode, sizeOf, u32Key, enums } from './codec.js';
import type { BackendValue, FrontendKey, LBMaps, MapFill, ServiceCounters, ServiceValue } from './lbmaps.js';

/** The maps of a loaded datapath, by role. */
export interface LBMapSet {
  frontends: BpfMap;
  backends: BpfMap;
  maglev: BpfMap;
  conntrack: BpfMap;
  rnat: BpfMap;
  serviceStats: BpfMap;
  drops: BpfMap;
  affinity: BpfMap;
  sourceRanges: BpfMap;
}

/** The maps of a loaded xlb_xdp object, by role (names as in xdp/include/xlb_maps.h). */
export function lbMapSetOf(obj: BpfObject): LBMapSet {
  const m = (name: string): BpfMap => obj.map(name);
  return {
    frontends: m('xlb_frontends'),
    backends: m('xlb_backends'),
    maglev: m('xlb_maglev'),
    conntrack: m('xlb_conntrack'),
    rnat: m('xlb_rnat'),
    serviceStats: m('xlb_service_stats'),
    drops: m('xlb_drops'),
    affinity: m('xlb_affinity'),
    sourceRanges: m('xlb_source_ranges'),
  };
}

/** `struct xlb_source_range_key` of `cidr` (IPv4 `a.b.c.d/n`, host bits cleared) for a service. */
function sourceRangeKey(serviceId: number, cidr: string): Buffer {
  const [addr, len] = cidr.split('/');
  const bits = Number(len);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const key = Buffer.alloc(sizeOf('xlb_source_range_key'));
  key.writeUInt32LE(32 + bits, 0);
  key.writeUInt32LE(serviceId, 4);
  key.writeUInt32BE((ipToU32(addr) & mask) >>> 0, 8);
  return key;
}

const HEADER = enums.xlb_limits.XLB_MAGLEV_HEADER_SLOTS;
/** Header bit of a Maglev table whose second half is active (xlb_types.h). */
const HALF = 2 ** enums.xlb_limits.XLB_MAGLEV_HALF_BIT;

/** LBMaps over real BPF maps. Errors are BpfErrors naming the map. */
export class BpfLBMaps implements LBMaps {
  private frontendCount = 0;
  private readonly backendIds = new Set<number>();
  /** Source ranges written per service ID, to delete exactly those on change. */
  private readonly sourceRanges = new Map<number, Set<string>>();
  /** M of the two-half table this process swapped in, per service ID (what may be rewritten in place). */
  private readonly tableSizes = new Map<number, number>();
  private slotScratch = new Uint32Array(0);

  constructor(readonly maps: LBMapSet) {}

  putFrontends(entries: Array<{ key: FrontendKey; service: ServiceValue }>): void {
    if (!entries.length) return;
    const ks = sizeOf('xlb_frontend_key');
    const vs = sizeOf('xlb_service');
    const keys = Buffer.alloc(ks * entries.length);
    const values = Buffer.alloc(vs * entries.length);
    entries.forEach((e, i) => {
      encode('xlb_frontend_key', e.key, keys, i * ks);
      encode('xlb_service', e.service, values, i * vs);
    });
    this.maps.frontends.updateBatch(keys, values, entries.length);
    this.frontendCount = -1; // recounted lazily
  }

  deleteFrontends(keys: FrontendKey[]): void {
    for (const k of keys) this.maps.frontends.delete(encode('xlb_frontend_key', k));
    if (keys.length) this.frontendCount = -1;
  }

  putBackends(entries: Array<{ id: number; backend: BackendValue }>): void {
    if (!entries.length) return;
    const vs = sizeOf('xlb_backend');
    const keys = Buffer.alloc(4 * entries.length);
    const values = Buffer.alloc(vs * entries.length);
    entries.forEach((e, i) => {
      if (e.id <= 0) throw new Error(`xlb_backends: backend ID ${e.id} is reserved`);
      keys.writeUInt32LE(e.id, i * 4);
      encode('xlb_backend', e.backend, values, i * vs);
      this.backendIds.add(e.id);
    });
    this.maps.backends.updateBatch(keys, values, entries.length);
  }

  deleteBackends(ids: number[]): void {
    if (!ids.length) return;
    // An array entry cannot be deleted: an all-zero backend means "gone".
    const keys = Buffer.alloc(4 * ids.length);
    ids.forEach((id, i) => {
      keys.writeUInt32LE(id, i * 4);
      this.backendIds.delete(id);
    });
    this.maps.backends.updateBatch(keys, Buffer.alloc(sizeOf('xlb_backend') * ids.length), ids.length);
  }

  /**
   * Write Maglev lookup tables. A table of the same size M as the one the
   * service has is written in place: into the inactive half of its inner
   * map through a memory mapping, then the header flips to it (one aligned
   * 4-byte store, xlb_types.h), with no map swap and so no RCU grace period
   * (~10 ms each). Other tables get new inner maps (2M + 1 slots), filled the
   * same way and swapped in with one batched update of xlb_maglev.
   *
   * The half written in place was last active one table change ago; a
   * packet still reading it would have to take longer than the time between
   * two changes of the service (milliseconds at least, against an XDP run of
   * microseconds).
   */
  putMaglevTables(tables: Array<{ serviceId: number; table: Uint32Array }>): void {
    if (!tables.length) return;
    const swap: Array<{ serviceId: number; table: Uint32Array }> = [];
    for (const t of tables) {
      if (this.tableSizes.get(t.serviceId) !== t.table.length || !this.rewriteTable(t.serviceId, t.table)) swap.push(t);
    }
    if (!swap.length) return;
    const inners: BpfMap[] = [];
    try {
      for (const { serviceId, table } of swap) {
        const m = table.length;
        const inner = BpfMap.createArray({ name: `xlb_mg_${serviceId}`, valueSize: 4, maxEntries: 2 * m + HEADER, flags: MAGLEV_TABLE_FLAGS });
        inners.push(inner);
        // Filled through a memory mapping before any program can see it: a
        // batched update would cost ~250 ns per slot (measured), the copy
        // ~10 µs a table. u32 values sit in 8-byte slots there: index 2i.
        // One scratch buffer for every table: only slot 0 and the even
        // words up to 2(M + HEADER) are ever written, the rest stays zero.
        if (this.slotScratch.length < 2 * (m + HEADER)) this.slotScratch = new Uint32Array(2 * (m + HEADER));
        const slots = this.slotScratch.subarray(0, 2 * (m + HEADER));
        slots[0] = m;
        for (let i = 0; i < m; i++) slots[2 * (HEADER + i)] = table[i];
        inner.writeMmappedSlots(slots);
      }
      // One batched swap into the outer map: one RCU grace period for the whole sync.
      const keys = Buffer.alloc(4 * swap.length);
      const fds = Buffer.alloc(4 * swap.length);
      swap.forEach((t, i) => {
        keys.writeUInt32LE(t.serviceId, 4 * i);
        fds.writeUInt32LE(inners[i].fd, 4 * i);
      });
      this.maps.maglev.updateBatch(keys, fds, swap.length);
      for (const t of swap) this.tableSizes.set(t.serviceId, t.table.length);
    } finally {
      // The outer map holds the tables now (or nothing was swapped): our fds are not needed.
      for (const inner of inners) inner.close();
    }
  }

  /** Rewrite service `serviceId`'s table of the same M in place (see putMaglevTables); false when it cannot. */
  private rewriteTable(serviceId: number, table: Uint32Array): boolean {
    const id = this.maps.maglev.lookup(u32Key(serviceId));
    if (!id) return false;
    const m = table.length;
    let inner: BpfMap;
    try {
      inner = BpfMap.fromId(id.readUInt32LE(0), { name: `xlb_mg_${serviceId}`, keySize: 4, valueSize: 4, maxEntries: 2 * m + HEADER });
    } catch {
      return false;
    }
    try {
      return inner.withMmap(8 * (2 * m + HEADER), (mem) => {
        const slots = new Uint32Array(mem);
        const header = Atomics.load(slots, 0);
        if ((header & ~HALF) >>> 0 !== m) return false;
        const next = (header & HALF) === 0 ? 1 : 0;
        const base = 2 * (HEADER + next * m);
        for (let i = 0; i < m; i++) slots[base + 2 * i] = table[i];
        // The flip: a sequentially consistent store, after every slot of the half.
        Atomics.store(slots, 0, (m | (next ? HALF : 0)) >>> 0);
        return true;
      });
    } catch {
      return false;
    } finally {
      inner.close();
    }
  }

  deleteMaglevTables(serviceIds: number[]): void {
    if (!serviceIds.length) return;
    for (const id of serviceIds) this.tableSizes.delete(id);
    if (serviceIds.length === 1) {
      this.maps.maglev.delete(u32Key(serviceIds[0]));
      return;
    }
    // Array-of-maps has no batched delete (EOPNOTSUPP), and each single
    // delete waits for an RCU grace period (~16 ms here). So many tables go
    // at once by one batched swap to a shared empty table (M = 0 in slot 0),
    // which the datapath treats as no table (XLB_DROP_NO_BACKEND).
    const empty = BpfMap.createArray({ name: 'xlb_mg_empty', valueSize: 4, maxEntries: HEADER, flags: MAGLEV_TABLE_FLAGS });
    try {
      const keys = Buffer.alloc(4 * serviceIds.length);
      const fds = Buffer.alloc(4 * serviceIds.length);
      serviceIds.forEach((id, i) => {
        keys.writeUInt32LE(id, 4 * i);
        fds.writeUInt32LE(empty.fd, 4 * i);
      });
      this.maps.maglev.updateBatch(keys, fds, serviceIds.length);
    } finally {
      empty.close();
    }
  }

  putSourceRanges(serviceId: number, cidrs: string[]): void {
    const want = new Set(cidrs);
    const have = this.sourceRanges.get(serviceId) ?? new Set<string>();
    const allow = Buffer.alloc(4);
    allow.writeUInt32LE(1);
    // Add before removing: a range that only changes its neighbours never disappears.
    for (const c of want) if (!have.has(c)) this.maps.sourceRanges.update(sourceRangeKey(serviceId, c), allow);
    for (const c of have) if (!want.has(c)) this.maps.sourceRanges.delete(sourceRangeKey(serviceId, c));
    if (want.size) this.sourceRanges.set(serviceId, want);
    else this.sourceRanges.delete(serviceId);
  }

  resetServiceStats(serviceIds: number[]): void {
    if (!serviceIds.length) return;
    const keys = Buffer.alloc(4 * serviceIds.length);
    serviceIds.forEach((id, i) => keys.writeUInt32LE(id, 4 * i));
    const per = this.perCpuStride(this.maps.serviceStats) * possibleCpus;
    this.maps.serviceStats.updateBatch(keys, Buffer.alloc(per * serviceIds.length), serviceIds.length);
  }

  private perCpuStride(m: BpfMap): number {
    return Math.ceil(m.valueSize / 8) * 8;
  }

  readServiceStats(serviceIds: number[]): Map<number, ServiceCounters> {
    const out = new Map<number, ServiceCounters>();
    for (const id of serviceIds) {
      let packets = 0n;
      let bytes = 0n;
      for (const v of this.maps.serviceStats.lookupPerCpu(u32Key(id))) {
        const s = decode('xlb_service_stats', v);
        packets += s.packets;
        bytes += s.bytes;
      }
      out.set(id, { packets, bytes });
    }
    return out;
  }

  readDrops(): Record<string, bigint> {
    const out: Record<string, bigint> = {};
    dropReasonNames.forEach((name, reason) => {
      let n = 0n;
      for (const v of this.maps.drops.lookupPerCpu(u32Key(reason))) n += v.readBigUInt64LE(0);
      out[name] = n;
    });
    return out;
  }

  fill(): MapFill[] {
    if (this.frontendCount < 0) this.frontendCount = this.maps.frontends.keys().length;
    return [
      { name: 'xlb_frontends', maxEntries: this.maps.frontends.maxEntries, entries: this.frontendCount },
      { name: 'xlb_backends', maxEntries: this.maps.backends.maxEntries, entries: this.backendIds.size },
      { name: 'xlb_maglev', maxEntries: this.maps.maglev.maxEntries },
      { name: 'xlb_conntrack', maxEntries: this.maps.conntrack.maxEntries },
      { name: 'xlb_rnat', maxEntries: this.maps.rnat.maxEntries },
      { name: 'xlb_affinity', maxEntries: this.maps.affinity.maxEntries },
      { name: 'xlb_source_ranges', maxEntries: this.maps.sourceRanges.maxEntries, entries: [...this.sourceRanges.values()].reduce((n, s) => n + s.size, 0) },
    ];
  }
}

/**
 * The real LBMaps: xlb's load-balancing maps (docs/datapath.md, "Maps")
 * written through libbpf. Frontends and backends go in one batched update per
 * sync; Maglev lookup tables go into the slabs through a memory mapping and
 * are switched in by their descriptors (maglev_slabs.ts), so the datapath
 * always sees a whole table (M, then M backend IDs).
 */
import { BpfMap, possibleCpus, type BpfObject } from './bpf.js';
import { MaglevSlabs, type MaglevSlabStats } from './maglev_slabs.js';
import { ipToU32, u32ToIp } from '../util/ip.js';
import { decode, dropReasonNames, encode, encodeAll, sizeOf, u32Key } from './codec.js';
import type { BackendValue, FrontendKey, LBMaps, MapFill, RestoredMaps, ServiceCounters, ServiceValue } from './lbmaps.js';
import { structs, enums } from './layouts.generated.js';
import { ReplyFrontends } from './reply_frontends.js';

/** The maps of a loaded datapath, by role. */
export interface LBMapSet {
  frontends: BpfMap;
  backends: BpfMap;
  maglev: BpfMap;
  maglevSlabs: BpfMap;
  conntrack: BpfMap;
  rnat: BpfMap;
  /** xlb_reply_frontends (absent in objects that predate it, e.g. bench/datapath's earlier version). */
  replyFrontends?: BpfMap;
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
    maglevSlabs: m('xlb_maglev_slabs'),
    conntrack: m('xlb_conntrack'),
    rnat: m('xlb_rnat'),
    replyFrontends: obj.pinnedMapDefs().some((d) => d.name === 'xlb_reply_frontends') ? m('xlb_reply_frontends') : undefined,
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

const BE = structs.xlb_backend;
const LOCAL = enums.xlb_backend_flags.XLB_BE_F_LOCAL;
// The writer below assumes these field types (xlb_types.h); a change there must fail here, not garble backends.
if (BE.fields.addr.type !== '__be32' || BE.fields.port.type !== '__be16' || BE.fields.proto.size !== 1 || BE.fields.flags.size !== 1) {
  throw new Error('maps.ts: struct xlb_backend changed its field types; update encodeBackends');
}

/**
 * `struct xlb_backend` values, back to back (offsets from layouts.generated.ts; padding zero).
 * @throws Error naming the backend ID when its address is not IPv4
 */
function encodeBackends(entries: ReadonlyArray<{ id: number; backend: BackendValue }>): Buffer {
  const buf = Buffer.alloc(BE.size * entries.length);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const { addr, port, proto, flags, service_id } = BE.fields;
  entries.forEach(({ id, backend: b }, i) => {
    const at = i * BE.size;
    let a: number;
    try {
      a = ipToU32(b.addr);
    } catch (e) {
      throw new Error(`xlb_backends: backend ID ${id}: ${(e as Error).message}`);
    }
    dv.setUint32(at + addr.offset, a, false);
    dv.setUint16(at + port.offset, b.port, false);
    dv.setUint8(at + proto.offset, b.proto);
    dv.setUint8(at + flags.offset, b.flags);
    dv.setUint32(at + service_id.offset, b.service_id ?? 0, true);
  });
  return buf;
}

/** The `a.b.c.d/n` of a source range key (the inverse of sourceRangeKey), and its service ID. */
function sourceRangeOf(key: Buffer): { serviceId: number; cidr: string } {
  return { serviceId: key.readUInt32LE(4), cidr: `${u32ToIp(key.readUInt32BE(8))}/${key.readUInt32LE(0) - 32}` };
}

/** LBMaps over real BPF maps. Errors are BpfErrors naming the map. */
export class BpfLBMaps implements LBMaps {
  private frontendCount = 0;
  /** Per backend ID: 1 when this process wrote it (xlb_backends cannot say: it is an array). */
  private readonly backendPresent: Uint8Array;
  private backendCount = 0;
  /** Source ranges written per service ID, to delete exactly those on change. */
  private readonly sourceRanges = new Map<number, Set<string>>();
  /** The Maglev tables' writer: owns xlb_maglev and xlb_maglev_slabs. */
  readonly tables: MaglevSlabs;

  /** xlb_reply_frontends, derived from the frontends, backends and tables written here. */
  readonly replies?: ReplyFrontends;
  /** What the maps held at start (restore()), when they were kept. */
  private readonly kept?: RestoredMaps;

  /**
   * @param opts.recoverTables the Maglev maps were kept from an earlier agent: read their tables back instead of clearing them
   * @param opts.pinDir the datapath's pin directory: the Maglev slabs are pinned there, for the next agent
   * @throws BpfError when the Maglev maps cannot be mapped
   */
  constructor(
    readonly maps: LBMapSet,
    opts: { recoverTables?: boolean; pinDir?: string } = {},
  ) {
    this.backendPresent = new Uint8Array(maps.backends.maxEntries);
    this.tables = new MaglevSlabs(maps.maglev, maps.maglevSlabs, { recover: opts.recoverTables, pinDir: opts.pinDir });
    this.replies = maps.replyFrontends ? new ReplyFrontends(maps.replyFrontends) : undefined;
    this.kept = this.readKept(opts.recoverTables ?? false);
    if (this.kept && this.replies) {
      for (const f of this.kept.frontends) this.replies.putFrontend(f.key, f.service.id);
      for (const b of this.kept.backends) this.replies.putBackend(b.id, b.backend, (b.backend.flags & LOCAL) !== 0);
      for (const [id, t] of this.kept.tables) this.replies.putTable(id, t);
    }
    this.replies?.flush();
  }

  /**
   * Read what an earlier agent left: frontends, backends (their presence
   * recorded here too), source ranges, and (when recovered) the tables.
   */
  private readKept(withTables: boolean): RestoredMaps | undefined {
    const frontends: RestoredMaps['frontends'] = [];
    for (const k of this.maps.frontends.keys()) {
      const v = this.maps.frontends.lookup(k);
      if (!v) continue;
      const key = decode('xlb_frontend_key', k);
      const svc = decode('xlb_service', v);
      const service: ServiceValue = { id: svc.id, flags: svc.flags, internal_id: svc.internal_id };
      if (svc.affinity_timeout) service.affinity_timeout = svc.affinity_timeout;
      frontends.push({ key: { addr: key.addr, port: key.port, proto: key.proto }, service });
    }
    this.frontendCount = frontends.length;
    const backends: RestoredMaps['backends'] = [];
    const all = this.maps.backends.lookupArray();
    const size = BE.size;
    for (let id = 1; id * size < all.length; id++) {
      const v = all.subarray(id * size, (id + 1) * size);
      if (v.every((b) => b === 0)) continue;
      const b = decode('xlb_backend', v);
      backends.push({ id, backend: { addr: b.addr, port: b.port, proto: b.proto, flags: b.flags, service_id: b.service_id } });
      this.markBackend(id, true);
    }
    const sourceRanges = new Map<number, string[]>();
    for (const k of this.maps.sourceRanges.keys()) {
      const { serviceId, cidr } = sourceRangeOf(k);
      if (!this.sourceRanges.has(serviceId)) this.sourceRanges.set(serviceId, new Set());
      this.sourceRanges.get(serviceId)!.add(cidr);
      sourceRanges.set(serviceId, [...(sourceRanges.get(serviceId) ?? []), cidr]);
    }
    const tables = withTables ? this.tables.published() : new Map<number, Uint32Array>();
    if (!frontends.length && !backends.length && !tables.size) return undefined;
    return { frontends, backends, tables, sourceRanges };
  }

  /** What the maps held when they were opened, if an earlier agent left anything (see LBMaps.restore). */
  restore(): RestoredMaps | undefined {
    return this.kept;
  }

  /** Release the Maglev slabs' mappings (before the datapath's maps close). */
  close(): void {
    this.replies?.cancel();
    this.tables.close();
  }

  putFrontends(entries: Array<{ key: FrontendKey; service: ServiceValue }>): void {
    if (entries.length) {
      const keys = encodeAll('xlb_frontend_key', entries.length, (i) => entries[i].key);
      const values = encodeAll('xlb_service', entries.length, (i) => entries[i].service);
      this.maps.frontends.updateBatch(keys, values, entries.length);
      this.frontendCount = -1; // recounted lazily
    }
    if (this.replies) {
      for (const e of entries) this.replies.putFrontend(e.key, e.service.id);
      this.replies.flush();
    }
  }

  deleteFrontends(keys: FrontendKey[]): void {
    for (const k of keys) this.maps.frontends.delete(encode('xlb_frontend_key', k));
    if (keys.length) this.frontendCount = -1;
    if (this.replies) {
      for (const k of keys) this.replies.dropFrontend(k);
      this.replies.flush();
    }
  }

  putBackends(entries: ReadonlyArray<{ id: number; backend: BackendValue }>): void {
    const n = entries.length;
    if (!n) return;
    const max = this.maps.backends.maxEntries;
    const keys = Buffer.alloc(4 * n);
    entries.forEach(({ id }, i) => {
      if (!(id > 0 && id < max)) throw new Error(`xlb_backends: backend ID ${id} is ${id === 0 ? 'reserved' : 'outside the map'}`);
      keys.writeUInt32LE(id, 4 * i); // the IDs as they are (u32 in host order, as the map's keys)
    });
    this.maps.backends.updateBatch(keys, encodeBackends(entries), n);
    for (const { id } of entries) this.markBackend(id, true);
    if (this.replies) {
      for (const { id, backend: b } of entries) this.replies.putBackend(id, { addr: b.addr, port: b.port, proto: b.proto }, (b.flags & LOCAL) !== 0);
      this.replies.flush();
    }
  }

  deleteBackends(ids: number[]): void {
    if (!ids.length) return;
    // An array entry cannot be deleted: an all-zero backend means "gone".
    const keys = Buffer.alloc(4 * ids.length);
    ids.forEach((id, i) => keys.writeUInt32LE(id, i * 4));
    this.maps.backends.updateBatch(keys, Buffer.alloc(sizeOf('xlb_backend') * ids.length), ids.length);
    for (const id of ids) this.markBackend(id, false);
    if (this.replies) {
      for (const id of ids) this.replies.dropBackend(id);
      this.replies.flush();
    }
  }

  /** Record whether backend `id` is written (a bitmap and a count, for fill()). */
  private markBackend(id: number, present: boolean): void {
    const was = this.backendPresent[id] === 1;
    if (was === present) return;
    this.backendPresent[id] = present ? 1 : 0;
    this.backendCount += present ? 1 : -1;
  }

  /**
   * Write Maglev lookup tables: each into free slots of a slab, then
   * switched in by one store of its descriptor (see MaglevSlabs.put, which
   * makes room first: new slabs, put into the datapath with one update).
   */
  putMaglevTables(tables: Array<{ serviceId: number; table: Uint32Array }>): void {
    if (!tables.length) return;
    this.tables.put(tables);
    if (this.replies) {
      for (const t of tables) this.replies.putTable(t.serviceId, t.table);
      this.replies.flush();
    }
  }

  /**
   * New slabs for `tables` tables of `slots` slots that a later
   * putMaglevTables will write, put into the datapath now, on the thread
   * pool (see MaglevSlabs.reserve): a detail of these maps, for a caller
   * that can overlap that work with building the tables. putMaglevTables
   * makes whatever room is still missing.
   */
  reserveMaglevTables(tables: number, slots: number): void {
    if (tables) this.tables.reserve(tables, slots);
  }

  deleteMaglevTables(serviceIds: number[]): void {
    if (!serviceIds.length) return;
    this.tables.delete(serviceIds);
    if (this.replies) {
      for (const id of serviceIds) this.replies.putTable(id, undefined);
      this.replies.flush();
    }
  }

  /** Slots, slabs and tables of the Maglev slabs. */
  maglevStats(): MaglevSlabStats {
    return this.tables.stats();
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
    const maglev = this.tables.stats();
    return [
      { name: 'xlb_frontends', maxEntries: this.maps.frontends.maxEntries, entries: this.frontendCount },
      { name: 'xlb_backends', maxEntries: this.maps.backends.maxEntries, entries: this.backendCount },
      { name: 'xlb_maglev', maxEntries: this.maps.maglev.maxEntries, entries: maglev.tables },
      { name: 'xlb_maglev_slabs', maxEntries: this.maps.maglevSlabs.maxEntries, entries: maglev.slabs },
      { name: 'xlb_conntrack', maxEntries: this.maps.conntrack.maxEntries },
      { name: 'xlb_rnat', maxEntries: this.maps.rnat.maxEntries },
      { name: 'xlb_affinity', maxEntries: this.maps.affinity.maxEntries },
      { name: 'xlb_source_ranges', maxEntries: this.maps.sourceRanges.maxEntries, entries: [...this.sourceRanges.values()].reduce((n, s) => n + s.size, 0) },
    ];
  }
}

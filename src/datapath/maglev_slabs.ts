/**
 * Maglev lookup tables in the kernel (docs/datapath.md, "Maglev tables"):
 * slabs of 2^20 slots held by xlb_maglev_slabs, each mapped into this
 * process once, and one descriptor per service in xlb_maglev (also mapped).
 *
 * Publishing a table: its M + 1 slots are written into free slots of a slab
 * (plain stores into the mapping), then the service's descriptor is
 * switched by one aligned 4-byte atomic store, which orders it after the
 * slots (a sequentially consistent store). The datapath reads the
 * descriptor once, so a packet sees the old table or the new one, whole.
 * The old table's slots are retired: reused only after an RCU grace period,
 * when no XDP or tc run that could have read the old descriptor is left.
 * User space cannot call synchronize_rcu(), but every successful update of a
 * map-in-map waits for one before it returns (kernel/bpf/syscall.c,
 * maybe_wait_bpf_programs: on return, no non-sleepable program still runs
 * with the old value); re-inserting slab 0 into xlb_maglev_slabs is such an
 * update, run on libuv's thread pool so that the agent does not block on it
 * (~10 ms). A quarter slab of free slots is kept at hand (HEADROOM), so that
 * a change does not have to wait for one.
 *
 * Compared with one inner map per table (Cilium's layout), this needs no map
 * creation per table (~30 µs each, 0.3 s at 10,000 services) and no map
 * swap per change; compared with Katran's fixed ring per VIP, tables keep
 * their own size.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BpfMap, BPF_F_MMAPABLE, mapInfo } from './bpf.js';
import { enums } from './codec.js';
import { SlabAllocator, type SlotRange, type SlotStats } from './slots.js';

const L = enums.xlb_limits;
const SLAB_SLOTS = L.XLB_MAGLEV_SLAB_SLOTS;
const SLAB_SHIFT = L.XLB_MAGLEV_SLAB_SHIFT;
const SLABS_MAX = L.XLB_MAGLEV_SLABS_MAX;
const HEADER = L.XLB_MAGLEV_HEADER_SLOTS;
/** Bytes of one slab entry: XLB_MAGLEV_ENTRY_SLOTS u32 slots (xlb_maps.h). */
const ENTRY_BYTES = 4 * L.XLB_MAGLEV_ENTRY_SLOTS;
const SLAB_ENTRIES = SLAB_SLOTS / L.XLB_MAGLEV_ENTRY_SLOTS;
/**
 * Free slots kept at hand (a quarter slab, ~250 tables of M = 1021): with
 * less, a batch that makes slabs makes one more, and after any batch a spare
 * slab is made and put in on the thread pool. Without it, a change that
 * finds no free slots waits for a grace period or a slab insertion (~10 ms).
 */
const HEADROOM = SLAB_SLOTS / 4;

/** A slab: its map (our fd) and its mapping, slot s at `slots[s]`. */
interface Slab {
  map: BpfMap;
  slots: Uint32Array;
  unmap(): void;
}

/** The descriptor of a table at `range`: slab << 20 | first slot (xlb_types.h). */
export function maglevDescriptor(range: { slab: number; first: number }): number {
  return ((range.slab << SLAB_SHIFT) | range.first) >>> 0;
}

/** Slot counts plus the tables held and the grace periods run. */
export interface MaglevSlabStats extends SlotStats {
  tables: number;
  gracePeriods: number;
}

/**
 * Writer of the Maglev tables of one loaded datapath. It owns xlb_maglev and
 * xlb_maglev_slabs. Constructed over maps an earlier agent left (`recover`),
 * it takes their slabs and tables over as they are: the tables keep placing
 * flows while the new agent starts, and its first sync replaces only those
 * that differ. Otherwise every descriptor is cleared (tables of an unknown
 * writer name slabs this one does not know). One per datapath; close() when
 * the datapath goes.
 */
export class MaglevSlabs {
  private alloc = new SlabAllocator(SLAB_SLOTS);
  private readonly slabs: Slab[] = [];
  /** xlb_maglev's mapping: service i's descriptor at index 2i (8-byte elements). */
  private readonly descriptors: Uint32Array;
  private readonly unmapDescriptors: () => void;
  /** Our own fd of xlb_maglev_slabs, for grace periods that may outlive the object's. */
  private readonly outer: BpfMap;
  /** Ranges whose grace period is running on the thread pool. */
  private inGrace: SlotRange[] | null = null;
  /** Slabs made but not yet in xlb_maglev_slabs (no descriptor may name them). */
  private pendingSlabs: number[] = [];
  /** A spare slab being put in on the thread pool (reserved in the allocator until then). */
  private spareInFlight: number | null = null;
  /**
   * Slabs of reserve() being put in on the thread pool: their slots are
   * free to fill, but no descriptor may name them before they are seen in
   * xlb_maglev_slabs (put() checks, and puts in itself what is not).
   */
  private inserting: number[] = [];
  /** Whether reserve()'s update is still running on the thread pool (our fds stay open until it returns). */
  private insertInFlight = false;
  private closed = false;
  private tableCount = 0;
  private graceCount = 0;

  /**
   * @param descriptorMap xlb_maglev (mmapable ARRAY, __u32 values)
   * @param slabMap xlb_maglev_slabs (ARRAY_OF_MAPS)
   * @throws BpfError when a map cannot be mapped
   */
  /** Where each slab is pinned (`<dir>/<index>`), so that a restarted agent can open it again; none without. */
  private readonly slabPinDir?: string;

  /**
   * @param opts.recover take over the slabs and tables in the maps (a restart)
   * @param opts.pinDir pin each slab under `<pinDir>/slabs/`: a restarted agent opens them from there (opening a map by its ID would need CAP_SYS_ADMIN)
   */
  constructor(
    private readonly descriptorMap: BpfMap,
    slabMap: BpfMap,
    opts: { recover?: boolean; pinDir?: string } = {},
  ) {
    const m = descriptorMap.mmap(8 * descriptorMap.maxEntries);
    this.descriptors = new Uint32Array(m.view);
    this.unmapDescriptors = m.unmap;
    this.outer = slabMap.dup();
    if (opts.pinDir) this.slabPinDir = path.join(opts.pinDir, 'slabs');
    if (!opts.recover || !this.recover()) {
      this.descriptors.fill(0);
      // Slabs an earlier writer pinned belong to tables no longer named.
      if (this.slabPinDir) fs.rmSync(this.slabPinDir, { recursive: true, force: true });
    }
  }

  /**
   * Take over the slabs and tables in the maps: each slab of
   * xlb_maglev_slabs (slabs are added in order: the first missing index
   * ends them) is opened by its map ID and mapped; the slots every
   * descriptor names are in use, the rest free.
   * @returns false when nothing could be taken over (no slab, or a
   *   descriptor naming slots no slab holds): the caller starts afresh
   */
  private recover(): boolean {
    if (!this.slabPinDir) return false;
    for (let i = 0; i < SLABS_MAX; i++) {
      const id = this.outer.lookup(u32(i));
      const pin = path.join(this.slabPinDir, String(i));
      if (!id || !fs.existsSync(pin)) break;
      const map = BpfMap.openPinned(pin);
      if (mapInfo(map.fd).id !== id.readUInt32LE(0)) {
        // Not the slab the datapath holds there: take nothing over.
        map.close();
        break;
      }
      try {
        const mm = map.mmap(SLAB_ENTRIES * ENTRY_BYTES);
        this.slabs.push({ map, slots: new Uint32Array(mm.view), unmap: mm.unmap });
      } catch {
        map.close();
        break;
      }
      this.alloc.addSlab(true);
    }
    if (!this.slabs.length) return false;
    const used: SlotRange[][] = this.slabs.map(() => []);
    for (let id = 0; 2 * id < this.descriptors.length; id++) {
      const desc = this.descriptors[2 * id];
      if (!desc) continue;
      const r = this.rangeOf(desc);
      if (!r || r.first + r.size > SLAB_SLOTS || r.size <= HEADER) {
        // Not a table of these slabs: start afresh.
        for (const s of this.slabs) s.unmap();
        for (const s of this.slabs) s.map.close();
        this.slabs.length = 0;
        this.alloc = new SlabAllocator(SLAB_SLOTS);
        return false;
      }
      used[r.slab].push(r);
      this.tableCount++;
    }
    // Free: every slot of every slab (but slot 0 of slab 0) that no table holds.
    used.forEach((ranges, slab) => {
      ranges.sort((a, b) => a.first - b.first);
      let at = this.alloc.wholeRange(slab).first;
      const gaps: SlotRange[] = [];
      for (const r of ranges) {
        if (r.first > at) gaps.push({ slab, first: at, size: r.first - at });
        at = Math.max(at, r.first + r.size);
      }
      if (at < SLAB_SLOTS) gaps.push({ slab, first: at, size: SLAB_SLOTS - at });
      this.alloc.release(gaps);
    });
    return true;
  }

  /** Every table published now, by service ID (copies). */
  published(): Map<number, Uint32Array> {
    const out = new Map<number, Uint32Array>();
    for (let id = 0; 2 * id < this.descriptors.length; id++) {
      if (!this.descriptors[2 * id]) continue;
      const t = this.table(id);
      if (t) out.set(id, t);
    }
    return out;
  }

  /** Largest service ID + 1. */
  get capacity(): number {
    return this.descriptorMap.maxEntries;
  }

  /**
   * Publish tables: each into free slots, then its descriptor switched. The
   * batch's new slabs go into xlb_maglev_slabs with one update (one grace
   * period) before any descriptor names them.
   * @param tables table[i] = backend ID of slot i; M = table.length (0: a table the datapath treats as none)
   * @throws RangeError naming the service when its ID is outside xlb_maglev or its table larger than a slab;
   *   Error when all XLB_MAGLEV_SLABS_MAX slabs are full; BpfError when a slab cannot be made.
   *   Nothing of a failed batch is published.
   */
  put(tables: Array<{ serviceId: number; table: Uint32Array }>): void {
    this.checkOpen();
    // Indexed loops: 10,000 tables in a first sync, run cold (a for...of
    // allocates an iterator result per step until the loop is optimized).
    for (let i = 0; i < tables.length; i++) {
      const { serviceId, table } = tables[i];
      this.checkId(serviceId);
      if (table.length + HEADER > SLAB_SLOTS) throw new RangeError(`xlb_maglev: service ${serviceId}'s table has ${table.length} slots, more than a slab holds`);
    }
    const placed: SlotRange[] = [];
    try {
      for (let i = 0; i < tables.length; i++) {
        const table = tables[i].table;
        const range = this.place(table.length + HEADER);
        placed.push(range);
        const slots = this.slabs[range.slab].slots;
        slots[range.first] = table.length;
        slots.set(table, range.first + HEADER);
      }
      // New slabs go in before any descriptor names them. Should that fail,
      // they stay pending (a later batch inserts them) and nothing is published.
      // When little room is left, one more goes in with them, at no extra wait.
      if (this.pendingSlabs.length && this.alloc.freeCount < HEADROOM && this.slabs.length < SLABS_MAX) this.pendingSlabs.push(this.addSlab());
      this.checkInserted();
      this.insertPendingSlabs();
    } catch (e) {
      this.alloc.release(placed);
      throw e;
    }
    for (let i = 0; i < tables.length; i++) this.switchTo(tables[i].serviceId, maglevDescriptor(placed[i]));
    this.startGrace();
    this.keepHeadroom();
  }

  /**
   * Make room for `tables` tables of `slots` slots in all (M each, without
   * the header) that a later put() will write. When the free slots are too
   * few, new slabs, enough for them and HEADROOM, are made now and put
   * into xlb_maglev_slabs with one update on libuv's thread pool: the
   * update's grace period (8-34 ms for 11 slabs, measured) is not waited
   * for on this thread, and the kernel's zeroing of the slabs (8-15 ms)
   * overlaps the caller's build of the tables (the controller's, on the
   * Maglev build pool). put() checks that they are in before naming them,
   * and inserts itself what is not (or what a failed update left out).
   * Retired slots do not count as room (they need a grace period first);
   * tables that end a slab with unusable slots are allowed for.
   * @throws BpfError when a slab cannot be made
   */
  reserve(tables: number, slots: number): void {
    this.checkOpen();
    if (tables <= 0) return;
    const largest = Math.ceil(slots / tables) + HEADER;
    const need = slots + tables * HEADER;
    let room = this.alloc.freeCount;
    // Room enough (a change, usually): nothing to wait for here; put() keeps the headroom up off the main thread.
    if (room >= need + largest) return;
    const made: number[] = [];
    while (room < need + HEADROOM && this.slabs.length < SLABS_MAX) {
      made.push(this.addSlab());
      // A slab's last few slots may be too few for the next table.
      room += SLAB_SLOTS - largest;
    }
    this.insertAsync(made);
  }

  /**
   * Put `slabs` into xlb_maglev_slabs with one update on the thread pool.
   * The update stores each slab at once and then waits for a grace period
   * (of no use here: the slots it replaces were empty); put() needs only
   * the first, and checks for it (checkInserted). Pending slabs from
   * earlier go along. Should the update fail, put() inserts them itself.
   */
  private insertAsync(slabs: number[]): void {
    const all = [...this.pendingSlabs, ...slabs];
    this.pendingSlabs = [];
    if (!all.length) return;
    if (this.insertInFlight) {
      // One update at a time (close() waits for it): these go in by put().
      this.pendingSlabs = all;
      return;
    }
    const keys = Buffer.alloc(4 * all.length);
    const fds = Buffer.alloc(4 * all.length);
    all.forEach((s, i) => {
      keys.writeUInt32LE(s, 4 * i);
      fds.writeUInt32LE(this.slabs[s].map.fd, 4 * i);
    });
    this.inserting.push(...all);
    this.insertInFlight = true;
    this.outer.updateBatchAsync(keys, fds, all.length, (err) => {
      this.insertInFlight = false;
      if (this.closed) return this.closeFdsWhenIdle();
      if (!err) this.graceCount++;
      // Not seen by put() yet: after a failure, put() must insert them itself.
      if (err) {
        for (const s of this.inserting) this.pendingSlabs.push(s);
        this.inserting = [];
      }
    });
  }

  /**
   * Before descriptors are switched: every slab of reserve()'s update is
   * in xlb_maglev_slabs (a lookup there gives the slab's map ID once its
   * update stored it). One not there yet goes to pendingSlabs (put in
   * synchronously next, the same map in the same slot again).
   */
  private checkInserted(): void {
    if (!this.inserting.length) return;
    for (const s of this.inserting) if (!this.outer.lookup(u32(s))) this.pendingSlabs.push(s);
    this.inserting = [];
  }

  /** Remove tables (descriptor 0: the datapath drops with XLB_DROP_NO_BACKEND). IDs without a table are ignored. */
  delete(serviceIds: number[]): void {
    this.checkOpen();
    for (const id of serviceIds) {
      this.checkId(id);
      this.switchTo(id, 0);
    }
    this.startGrace();
  }

  /** The table published for `serviceId` (a copy), or undefined. */
  table(serviceId: number): Uint32Array | undefined {
    this.checkOpen();
    this.checkId(serviceId);
    const desc = this.descriptors[2 * serviceId];
    const r = desc ? this.rangeOf(desc) : undefined;
    return r && this.slabs[r.slab].slots.slice(r.first + HEADER, r.first + r.size);
  }

  /** Service `serviceId`'s descriptor (0: none), as the datapath reads it. */
  descriptor(serviceId: number): number {
    this.checkOpen();
    this.checkId(serviceId);
    return this.descriptors[2 * serviceId];
  }

  /**
   * Run a grace period now (blocking, ~10 ms) and free every retired range:
   * what a batch does itself when it finds no free slots. For tests and
   * tools; returns the slots freed.
   */
  reclaim(): number {
    this.checkOpen();
    const ranges = this.alloc.takeRetired();
    if (this.inGrace) {
      ranges.push(...this.inGrace);
      this.inGrace.length = 0; // released here; the pending callback finds nothing
    }
    if (!ranges.length) return 0;
    try {
      this.outer.update(u32(0), u32(this.slabs[0].map.fd));
    } catch (e) {
      for (const r of ranges) this.alloc.retire(r); // not known to have waited
      throw e;
    }
    this.graceCount++;
    this.alloc.release(ranges);
    return ranges.reduce((n, r) => n + r.size, 0);
  }

  /** Slots, slabs and tables now. */
  stats(): MaglevSlabStats {
    const s = this.alloc.stats();
    return { ...s, retired: s.retired + this.inGraceSlots(), tables: this.tableCount, gracePeriods: this.graceCount };
  }

  /** Unmap the slabs and close our fds (deferred while a grace period runs). The maps stay while the datapath holds them. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unmapDescriptors();
    for (const s of this.slabs) s.unmap();
    this.closeFdsWhenIdle();
  }

  /** Slots whose grace period runs on the thread pool. */
  private inGraceSlots(): number {
    return this.inGrace ? this.inGrace.reduce((n, r) => n + r.size, 0) : 0;
  }

  /** Close our fds once no call on the thread pool uses them. */
  private closeFdsWhenIdle(): void {
    if (this.closed && !this.inGrace && this.spareInFlight === null && !this.insertInFlight) this.closeFds();
  }

  private closeFds(): void {
    for (const s of this.slabs) s.map.close();
    this.outer.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('xlb_maglev: the table writer is closed');
  }

  private checkId(serviceId: number): void {
    if (!Number.isInteger(serviceId) || serviceId < 0 || serviceId >= this.capacity) throw new RangeError(`xlb_maglev: service ID ${serviceId} is outside 0..${this.capacity - 1}`);
  }

  /** The range descriptor `desc` names (its size from the header slot); undefined when it names no slab of ours. */
  private rangeOf(desc: number): SlotRange | undefined {
    const slab = desc >>> SLAB_SHIFT;
    const first = desc & (SLAB_SLOTS - 1);
    const s = this.slabs[slab];
    return s ? { slab, first, size: s.slots[first] + HEADER } : undefined;
  }

  /** Point `serviceId` at `desc` and retire what it named. */
  private switchTo(serviceId: number, desc: number): void {
    const old = Atomics.exchange(this.descriptors, 2 * serviceId, desc);
    const range = old ? this.rangeOf(old) : undefined;
    if (range) this.alloc.retire(range);
    this.tableCount += (desc ? 1 : 0) - (range ? 1 : 0);
  }

  /** Free slots for `size`: a free range, else retired ones after a grace period, else a new slab (inserted before publishing). */
  private place(size: number): SlotRange {
    let r = this.alloc.alloc(size);
    if (r) return r;
    if (this.alloc.retiredCount || this.inGrace?.length) {
      this.reclaim();
      r = this.alloc.alloc(size);
      if (r) return r;
    }
    this.pendingSlabs.push(this.addSlab());
    return this.alloc.alloc(size)!;
  }

  /** Make a slab (map and mapping); `reserved`: no free slots until released. */
  private addSlab(reserved = false): number {
    const index = this.slabs.length;
    if (index >= SLABS_MAX) throw new Error(`xlb_maglev_slabs: all ${SLABS_MAX} slabs (${SLAB_SLOTS} slots each) are full`);
    const map = BpfMap.createArray({ name: `xlb_mg_slab${index}`, valueSize: ENTRY_BYTES, maxEntries: SLAB_ENTRIES, flags: BPF_F_MMAPABLE });
    let m: { view: ArrayBuffer; unmap(): void };
    try {
      m = map.mmap(SLAB_ENTRIES * ENTRY_BYTES);
    } catch (e) {
      map.close();
      throw e;
    }
    this.slabs.push({ map, slots: new Uint32Array(m.view), unmap: m.unmap });
    this.alloc.addSlab(reserved);
    if (this.slabPinDir) {
      fs.mkdirSync(this.slabPinDir, { recursive: true });
      map.pin(path.join(this.slabPinDir, String(index)));
    }
    return index;
  }

  /** Put the slabs not yet in xlb_maglev_slabs there with one update (one grace period for all). */
  private insertPendingSlabs(): void {
    const pending = this.pendingSlabs;
    if (!pending.length) return;
    const keys = Buffer.alloc(4 * pending.length);
    const fds = Buffer.alloc(4 * pending.length);
    pending.forEach((s, i) => {
      keys.writeUInt32LE(s, 4 * i);
      fds.writeUInt32LE(this.slabs[s].map.fd, 4 * i);
    });
    this.outer.updateBatch(keys, fds, pending.length);
    this.pendingSlabs = [];
    this.graceCount++;
  }

  /**
   * With less than HEADROOM free slots, none coming back from retired
   * tables and no spare on its way, make a spare slab and put it in on the
   * thread pool; its slots become free once the datapath can see it.
   */
  private keepHeadroom(): void {
    if (this.spareInFlight !== null || !this.slabs.length || this.slabs.length >= SLABS_MAX) return;
    const coming = this.alloc.retiredCount + this.inGraceSlots();
    if (this.alloc.freeCount + coming >= HEADROOM) return;
    const index = this.addSlab(true);
    this.spareInFlight = index;
    this.outer.updateAsync(u32(index), u32(this.slabs[index].map.fd), (err) => {
      this.spareInFlight = null;
      if (this.closed) return this.closeFdsWhenIdle();
      // Failed: the next batch puts it in itself, before naming it.
      if (err) this.pendingSlabs.push(index);
      else this.graceCount++;
      this.alloc.release([this.alloc.wholeRange(index)]);
    });
  }

  /** Start a grace period on the thread pool for what is retired now, unless one runs. */
  private startGrace(): void {
    if (this.inGrace || !this.alloc.retiredCount || !this.slabs.length) return;
    const ranges = this.alloc.takeRetired();
    this.inGrace = ranges;
    this.outer.updateAsync(u32(0), u32(this.slabs[0].map.fd), (err) => {
      this.inGrace = null;
      if (this.closed) return this.closeFdsWhenIdle();
      if (err) {
        // Not known to have waited: retire them again for the next one.
        for (const r of ranges) this.alloc.retire(r);
        return;
      }
      this.graceCount++;
      this.alloc.release(ranges);
      this.startGrace();
    });
  }
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

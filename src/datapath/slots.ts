/**
 * Free space of the Maglev slabs (xdp/include/xlb_maps.h, docs/datapath.md,
 * "Maglev tables"): which slot ranges hold a table, which are free, and
 * which were given up but may still be read by a packet that picked its
 * table before the switch (retired, free after an RCU grace period).
 *
 * Pure bookkeeping: the kernel side (slab maps, memory mappings, grace
 * periods) is in maglev_slabs.ts.
 */

/** Consecutive slots `first .. first + size - 1` of slab `slab`. */
export interface SlotRange {
  slab: number;
  first: number;
  size: number;
}

/** Counts of slots, over all slabs. */
export interface SlotStats {
  slabs: number;
  /** Slots that hold a table (including retired ones not yet released). */
  used: number;
  free: number;
  /** Slots of replaced or removed tables that wait for a grace period. */
  retired: number;
}

/**
 * First-fit allocator of slot ranges over equally sized slabs. A range never
 * crosses a slab. Slot 0 of slab 0 is never handed out, so that descriptor 0
 * can mean "no table". Freed ranges merge with their free neighbours.
 */
export class SlabAllocator {
  /** Per slab: free ranges as [first, size] pairs, sorted by first. */
  private readonly freeRanges: number[][] = [];
  /** Per slab: an upper bound of its largest free range (exact after a failed scan). */
  private readonly largest: number[] = [];
  private retiredRanges: SlotRange[] = [];
  private freeSlots = 0;
  private retiredSlots = 0;

  /** @param slabSlots slots per slab (XLB_MAGLEV_SLAB_SLOTS) */
  constructor(readonly slabSlots: number) {}

  /** Slabs added so far. */
  get slabs(): number {
    return this.freeRanges.length;
  }

  /**
   * Add an empty slab; returns its index. A reserved slab has no free range
   * until its whole range ({@link wholeRange}) is released, e.g. once the
   * datapath can see it.
   */
  addSlab(reserved = false): number {
    const index = this.freeRanges.length;
    this.freeRanges.push([]);
    this.largest.push(0);
    if (!reserved) this.release([this.wholeRange(index)]);
    return index;
  }

  /** Every slot slab `slab` can hand out (all but slot 0 of slab 0). */
  wholeRange(slab: number): SlotRange {
    const first = slab === 0 ? 1 : 0;
    return { slab, first, size: this.slabSlots - first };
  }

  /** Free slots over all slabs. */
  get freeCount(): number {
    return this.freeSlots;
  }

  /**
   * A free range of `size` slots (the lowest fitting one), or undefined when
   * no slab has one: the caller then releases retired ranges after a grace
   * period or adds a slab.
   * @throws RangeError when `size` is not a positive integer no larger than a slab
   */
  alloc(size: number): SlotRange | undefined {
    if (!Number.isInteger(size) || size <= 0 || size > this.slabSlots) throw new RangeError(`Maglev slots: cannot place ${size} slots in slabs of ${this.slabSlots}`);
    for (let slab = 0; slab < this.freeRanges.length; slab++) {
      if (this.largest[slab] < size) continue;
      const ranges = this.freeRanges[slab];
      let best = 0;
      for (let i = 0; i < ranges.length; i += 2) {
        const len = ranges[i + 1];
        if (len < size) {
          if (len > best) best = len;
          continue;
        }
        const first = ranges[i];
        if (len === size) ranges.splice(i, 2);
        else {
          ranges[i] = first + size;
          ranges[i + 1] = len - size;
        }
        this.freeSlots -= size;
        return { slab, first, size };
      }
      this.largest[slab] = best;
    }
    return undefined;
  }

  /** Give up a range that a published descriptor may still name: free once {@link release}d after a grace period. */
  retire(range: SlotRange): void {
    this.retiredRanges.push(range);
    this.retiredSlots += range.size;
  }

  /** Slots retired and not yet taken for release. */
  get retiredCount(): number {
    return this.retiredSlots;
  }

  /** Every range retired so far, handed to the caller, who starts a grace period and then {@link release}s them. */
  takeRetired(): SlotRange[] {
    const out = this.retiredRanges;
    this.retiredRanges = [];
    this.retiredSlots = 0;
    return out;
  }

  /** Make ranges free again: retired ones after their grace period, or ones never published. */
  release(ranges: SlotRange[]): void {
    for (const r of ranges) this.insertFree(r);
  }

  private insertFree({ slab, first, size }: SlotRange): void {
    const ranges = this.freeRanges[slab];
    if (!ranges) throw new RangeError(`Maglev slots: no slab ${slab}`);
    // Binary search for the first free range after `first`.
    let lo = 0;
    let hi = ranges.length / 2;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ranges[2 * mid] < first) lo = mid + 1;
      else hi = mid;
    }
    const at = 2 * lo;
    const prevEnd = at > 0 ? ranges[at - 2] + ranges[at - 1] : -1;
    const nextFirst = at < ranges.length ? ranges[at] : -1;
    if (prevEnd > first || (nextFirst >= 0 && first + size > nextFirst)) throw new RangeError(`Maglev slots: slots ${first}..${first + size - 1} of slab ${slab} are already free`);
    let merged: number;
    if (prevEnd === first && nextFirst === first + size) {
      ranges[at - 1] += size + ranges[at + 1];
      merged = ranges[at - 1];
      ranges.splice(at, 2);
    } else if (prevEnd === first) {
      ranges[at - 1] += size;
      merged = ranges[at - 1];
    } else if (nextFirst === first + size) {
      ranges[at] = first;
      ranges[at + 1] += size;
      merged = ranges[at + 1];
    } else {
      ranges.splice(at, 0, first, size);
      merged = size;
    }
    if (merged > this.largest[slab]) this.largest[slab] = merged;
    this.freeSlots += size;
  }

  /** Slot counts over all slabs. */
  stats(): SlotStats {
    const total = this.freeRanges.length * this.slabSlots - (this.freeRanges.length ? 1 : 0);
    return { slabs: this.freeRanges.length, used: total - this.freeSlots, free: this.freeSlots, retired: this.retiredSlots };
  }
}

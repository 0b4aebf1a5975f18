/**
 * Stable numeric identities for services and backends. A name keeps its ID
 * for as long as it is live; released IDs are reused only after every other
 * ID has been handed out (the allocator moves forward and wraps), so that a
 * conntrack entry still naming a removed backend's ID is unlikely to meet a
 * new backend under it — and the datapath also compares the address.
 */
export class IdAllocator {
  private readonly byName = new Map<string, number>();
  private readonly used = new Set<number>();
  private next = 1;

  /** @param max largest ID (inclusive); ID 0 is never handed out. */
  constructor(private readonly max: number) {}

  /**
   * The ID of `name`, allocating one if it has none.
   * @param onAllocate called with a freshly allocated ID (e.g. to reset its counters)
   * @throws RangeError when all IDs up to `max` are in use
   */
  idFor(name: string, onAllocate?: (id: number) => void): number {
    const have = this.byName.get(name);
    if (have !== undefined) return have;
    for (let tries = 0; tries < this.max; tries++) {
      const id = this.next;
      this.next = this.next >= this.max ? 1 : this.next + 1;
      if (this.used.has(id)) continue;
      this.used.add(id);
      this.byName.set(name, id);
      onAllocate?.(id);
      return id;
    }
    throw new RangeError(`no free ID left (all ${this.max} in use) for ${name}`);
  }

  /** The ID of `name`, if it has one. */
  get(name: string): number | undefined {
    return this.byName.get(name);
  }

  /** Release `name`'s ID, if it has one. */
  release(name: string): void {
    const id = this.byName.get(name);
    if (id === undefined) return;
    this.byName.delete(name);
    this.used.delete(id);
  }

  /** Release every name not in `live`. */
  releaseExcept(live: Set<string>): void {
    for (const [name, id] of this.byName) {
      if (live.has(name)) continue;
      this.byName.delete(name);
      this.used.delete(id);
    }
  }

  /** Number of live IDs. */
  get size(): number {
    return this.byName.size;
  }
}

/**
 * Stable numeric identities for services and backends. A name keeps its ID
 * for as long as it is live; released IDs are reused only after every other
 * ID has been handed out (the allocator moves forward and wraps), so that a
 * conntrack entry still naming a removed backend's ID is unlikely to meet a
 * new backend under it — and the datapath also compares the address.
 *
 * Names live in scopes (a backend's scope is its service port): a lookup is
 * two Map reads, with no `scope|name` string built for each of 100,000
 * backends on every full sync.
 */
export class IdAllocator {
  private readonly scopes = new Map<string, Map<string, number>>();
  /** 1 where an ID is in use; index 0 is never handed out. */
  private readonly used: Uint8Array;
  private next = 1;
  private live = 0;
  /** IDs held for names not known yet (see reserve). */
  private readonly reserved = new Set<number>();

  /** @param max largest ID (inclusive); ID 0 is never handed out. */
  constructor(private readonly max: number) {
    this.used = new Uint8Array(max + 1);
  }

  /**
   * The ID of `name` in `scope`, allocating one if it has none.
   * @param onAllocate called with a freshly allocated ID (e.g. to reset its counters)
   * @throws RangeError naming the scope and name when all IDs up to `max` are in use
   */
  idFor(scope: string, name: string, onAllocate?: (id: number) => void): number {
    let names = this.scopes.get(scope);
    const have = names?.get(name);
    if (have !== undefined) return have;
    if (this.live >= this.max) throw new RangeError(`no free ID left (all ${this.max} in use) for ${scope ? `${scope} ` : ''}${name}`);
    let id = this.next;
    while (this.used[id]) id = id >= this.max ? 1 : id + 1;
    this.next = id >= this.max ? 1 : id + 1;
    this.used[id] = 1;
    this.live++;
    if (!names) this.scopes.set(scope, (names = new Map()));
    names.set(name, id);
    onAllocate?.(id);
    return id;
  }

  /** The ID of `name` in `scope`, if it has one. */
  get(scope: string, name: string): number | undefined {
    return this.scopes.get(scope)?.get(name);
  }

  /** Release `name`'s ID in `scope`, if it has one. */
  release(scope: string, name: string): void {
    const names = this.scopes.get(scope);
    const id = names?.get(name);
    if (id === undefined) return;
    names!.delete(name);
    if (!names!.size) this.scopes.delete(scope);
    this.used[id] = 0;
    this.live--;
  }

  /**
   * Hold `id` (in use in the maps, its name not known yet: an earlier
   * agent's), so that no name is given it before {@link claim} or
   * {@link takeUnclaimed}. Out of range or 0: ignored.
   */
  reserve(id: number): void {
    if (!Number.isInteger(id) || id <= 0 || id > this.max || this.reserved.has(id)) return;
    if (this.used[id]) return; // already a name's
    this.used[id] = 1;
    this.live++;
    this.reserved.add(id);
  }

  /**
   * Give reserved `id` to `name` in `scope` (the name it had before the
   * restart). @returns false when `id` is not reserved or the name already
   * has an ID (it then keeps that one)
   */
  claim(scope: string, name: string, id: number): boolean {
    if (!this.reserved.has(id)) return false;
    let names = this.scopes.get(scope);
    if (names?.has(name)) return false;
    this.reserved.delete(id);
    if (!names) this.scopes.set(scope, (names = new Map()));
    names.set(name, id);
    return true;
  }

  /** Release every reserved ID that no name claimed; returns them (their map entries are stale). */
  takeUnclaimed(): number[] {
    const ids = [...this.reserved];
    for (const id of ids) {
      this.used[id] = 0;
      this.live--;
    }
    this.reserved.clear();
    return ids;
  }

  /** Number of live IDs. */
  get size(): number {
    return this.live;
  }
}

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

  /** Number of live IDs. */
  get size(): number {
    return this.live;
  }
}

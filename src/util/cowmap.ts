/**
 * A string-keyed map that hands out read-only snapshots cheaply: entries
 * live in {@link SHARDS} shards by a hash of the key; a snapshot shares the
 * shards, and the first write to a shared shard after a snapshot copies that
 * shard alone. A source with 10,000 objects that changes one of them copies
 * ~160 entries instead of 10,000 (a whole-Map copy was ~0.5 MB of garbage a
 * change, and the young-generation collections it caused were most of the
 * slow changes, measured in bench/kubernetes).
 */

/** Number of shards (a power of two). */
export const SHARDS = 64;

/** 32-bit FNV-1a of a string's UTF-16 code units, for the shard choice only. */
function shardOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & (SHARDS - 1);
}

/**
 * The mutable owner. `get`/`has`/`size` read the current state; `set` and
 * `delete` write it; {@link snapshot} returns an immutable Map view of the
 * state at that moment.
 */
export class CowMap<V> {
  private shards: Array<Map<string, V>> = Array.from({ length: SHARDS }, () => new Map());
  /** Whether a snapshot still holds shard i as it is. */
  private readonly shared = new Uint8Array(SHARDS);
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    return this.shards[shardOf(key)].get(key);
  }

  has(key: string): boolean {
    return this.shards[shardOf(key)].has(key);
  }

  set(key: string, value: V): void {
    const m = this.writable(shardOf(key));
    if (!m.has(key)) this.count++;
    m.set(key, value);
  }

  delete(key: string): boolean {
    const i = shardOf(key);
    if (!this.shards[i].has(key)) return false;
    this.writable(i).delete(key);
    this.count--;
    return true;
  }

  /** The state now, as a Map that never changes (its set, delete and clear throw). */
  snapshot(): Map<string, V> {
    this.shared.fill(1);
    return new SnapshotMap(this.shards.slice(), this.count);
  }

  private writable(i: number): Map<string, V> {
    if (this.shared[i]) {
      this.shards[i] = new Map(this.shards[i]);
      this.shared[i] = 0;
    }
    return this.shards[i];
  }
}

/** A read-only Map over shards that nobody changes any more (see CowMap.snapshot). */
class SnapshotMap<V> implements Map<string, V> {
  readonly [Symbol.toStringTag] = 'Map';

  constructor(
    private readonly shards: ReadonlyArray<Map<string, V>>,
    readonly size: number,
  ) {}

  get(key: string): V | undefined {
    return this.shards[shardOf(key)].get(key);
  }

  has(key: string): boolean {
    return this.shards[shardOf(key)].has(key);
  }

  *entries(): MapIterator<[string, V]> {
    for (const m of this.shards) yield* m.entries();
  }

  *keys(): MapIterator<string> {
    for (const m of this.shards) yield* m.keys();
  }

  *values(): MapIterator<V> {
    for (const m of this.shards) yield* m.values();
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  /** Map's forEach over every shard: no iterator result or entry pair per entry, as a `for...of` makes until V8 has optimized the loop. */
  forEach(fn: (value: V, key: string, map: Map<string, V>) => void, thisArg?: unknown): void {
    for (let i = 0; i < this.shards.length; i++) this.shards[i].forEach((v, k) => fn.call(thisArg, v, k, this));
  }

  set(): this {
    throw new TypeError('snapshot maps are read-only');
  }

  delete(): boolean {
    throw new TypeError('snapshot maps are read-only');
  }

  clear(): void {
    throw new TypeError('snapshot maps are read-only');
  }
}

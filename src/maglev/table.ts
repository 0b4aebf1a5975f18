/**
 * The weighted Maglev lookup table: Eisenbud et al., "Maglev: A Fast and
 * Reliable Software Network Load Balancer", NSDI 2016, section 3.4
 * (Pseudocode 1), extended with weights. This module is the rule; read it
 * beside the paper. A faster builder for large syncs lives in ./accel and
 * must give exactly these tables (test/unit/maglev-accel.test.ts).
 *
 * Each backend has a permutation of the M slots, (offset + j × skip) mod M,
 * from two hashes of its name (hash.ts). Backends take turns in name order;
 * at its turn a backend claims the next slot of its permutation that is
 * still empty. M is prime, so every permutation visits every slot and the
 * table fills completely.
 *
 * Weights: each round a backend adds its weight to a credit and takes its
 * turn only when the credit reaches the largest weight (then pays that
 * back). The heaviest backends take a turn every round, one of weight w one
 * in every maxWeight / w rounds, so its share of the slots is about
 * w / Σ weights. Credits are doubles: exact for integer weights, and for
 * any weights the same IEEE-754 operations in the same order, so every node
 * builds the same table.
 */
import { nameHashes } from './hash.js';
import { MAX_MAGLEV_TABLE_SIZE } from './primes.js';

/**
 * One backend as Maglev sees it.
 *
 * - `name`: identifies the backend the same way on every node, e.g.
 *   `198.19.1.10:8080/TCP`; it alone decides the backend's permutation.
 * - `id`: the datapath backend ID (index into `xlb_backends`), an integer in
 *   1..2^32-1; this is what the table holds.
 * - `weight`: relative share of the slots, a finite number ≥ 0; 0 keeps the
 *   backend out of the table (e.g. terminating endpoints).
 */
export interface MaglevBackend {
  name: string;
  id: number;
  weight: number;
}

/** Where a backend's permutation starts and how far it steps, both in slots. */
export interface MaglevPermutation {
  /** h1(name) mod M, in 0..M-1. */
  offset: number;
  /** h2(name) mod (M-1) + 1, in 1..M-1 (never 0, so the walk moves). */
  skip: number;
}

/** A backend taking turns: its ID, weight and permutation (section 3.4). */
export interface MaglevTurns extends MaglevPermutation {
  id: number;
  weight: number;
}

/**
 * The permutation of backend `name` in a table of `tableSize` slots
 * (section 3.4: offset ← h1(name) mod M, skip ← h2(name) mod (M − 1) + 1).
 * The j-th preferred slot is (offset + j × skip) mod M.
 */
export function permutationOf(name: string, tableSize: number): MaglevPermutation {
  const { h1, h2 } = nameHashes(name);
  const M = tableSize;
  return { offset: h1 % M, skip: M > 1 ? (h2 % (M - 1)) + 1 : 1 };
}

/** True when n is a prime (trial division; n is at most a few hundred thousand here). */
export function isPrime(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

const MAX_BACKEND_ID = 0xffffffff;

/**
 * Build the Maglev lookup table of `tableSize` slots for `backends`.
 *
 * The result depends only on the set of backends (names, IDs, weights) and
 * M: backends take turns in name order (UTF-16 code units, not locale
 * order), so every node and every input order gives the same table.
 *
 * @param backends backends of one service; names and IDs must be unique
 * @param tableSize M, a prime in 2..131071 (`XLB_MAGLEV_MAX_M`); normally
 *   from `tableSizeFor` (primes.ts)
 * @returns M backend IDs (the datapath stores them after a header slot
 *   holding M, docs/datapath.md). With no backend of weight > 0 every slot is
 *   0, "no backend": the datapath drops such flows (`XLB_DROP_NO_BACKEND`).
 * @throws RangeError naming the backend and field (`name`, `id`, `weight`)
 *   or `tableSize` when a value is invalid or a name or ID is repeated, or
 *   when more backends have weight > 0 than the table has slots
 */
export function buildMaglevTable(backends: readonly MaglevBackend[], tableSize: number): Uint32Array {
  const turns = maglevTurns(backends, tableSize);
  const table = new Uint32Array(tableSize);
  fillMaglevTable(table, turns);
  return table;
}

/**
 * The backends that take turns, in turn order (by name), with their
 * permutations: the input of {@link fillMaglevTable}. Backends of weight 0
 * are left out.
 * @throws RangeError as {@link buildMaglevTable}
 */
export function maglevTurns(backends: readonly MaglevBackend[], tableSize: number): MaglevTurns[] {
  validate(backends, tableSize);
  const turns: MaglevTurns[] = [];
  for (const b of backends.filter((x) => x.weight > 0).sort(byName)) {
    const { offset, skip } = permutationOf(b.name, tableSize);
    turns.push({ id: b.id, weight: b.weight, offset, skip });
  }
  if (turns.length > tableSize) throw new RangeError(`Maglev table: ${turns.length} backends with weight > 0 do not fit in tableSize ${tableSize}`);
  return turns;
}

/**
 * Pseudocode 1 with weights: fill `table` (M slots, all 0) from `turns`
 * (in turn order; see {@link maglevTurns}). Slot value 0 means "empty"
 * (IDs are > 0), so the table is its own occupancy map. With no turns the
 * table stays empty.
 *
 * Uses nothing but its arguments and built-ins: the build pool
 * (accel/pool.ts) runs this very function's source on its worker threads.
 *
 * @returns the slots each backend got, in turn order
 */
export function fillMaglevTable(table: Uint32Array, turns: readonly MaglevTurns[]): number[] {
  const M = table.length;
  const n = turns.length;
  const taken = turns.map(() => 0);
  if (n === 0) return taken;
  // Each backend's fields as columns, and its next preferred slot.
  const ids = Uint32Array.from(turns, (t) => t.id);
  const skips = Int32Array.from(turns, (t) => t.skip);
  const weights = Float64Array.from(turns, (t) => t.weight);
  const next = Int32Array.from(turns, (t) => t.offset);
  const credit = new Float64Array(n);
  const maxWeight = turns.reduce((m, t) => Math.max(m, t.weight), 0);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      credit[i] += weights[i];
      if (credit[i] < maxWeight) continue; // not this round
      credit[i] -= maxWeight;
      const skip = skips[i];
      let slot = next[i];
      while (table[slot] !== 0) {
        // slot = (slot + skip) mod M; M comes off when the sum reaches M, by
        // the sign of M - 1 - sum rather than a branch (whether a step wraps
        // is a coin toss, and as a branch builds took a tenth longer).
        slot += skip;
        slot -= M & ((M - 1 - slot) >> 31);
      }
      table[slot] = ids[i];
      taken[i]++;
      slot += skip;
      next[i] = slot >= M ? slot - M : slot;
      if (++filled === M) return taken;
    }
  }
}

/**
 * The fraction of `table`'s slots that each backend ID holds, in 0..1.
 * Empty slots (0, "no backend") are not counted under any ID, so an all-zero
 * table gives an empty map.
 */
export function tableShares(table: Uint32Array): Map<number, number> {
  const counts = new Map<number, number>();
  for (const id of table) if (id !== 0) counts.set(id, (counts.get(id) ?? 0) + 1);
  const shares = new Map<number, number>();
  for (const [id, count] of counts) shares.set(id, count / table.length);
  return shares;
}

/** Code unit order: the same on every node, unlike localeCompare. */
export function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Check `backends` and `tableSize` as {@link buildMaglevTable} documents.
 * @throws RangeError naming the first bad backend (index and name) and field
 */
export function validate(backends: readonly MaglevBackend[], tableSize: number): void {
  if (!isPrime(tableSize) || tableSize > MAX_MAGLEV_TABLE_SIZE) {
    throw new RangeError(`Maglev table: tableSize must be a prime in 2..${MAX_MAGLEV_TABLE_SIZE}, got ${tableSize}`);
  }
  const names = new Set<string>();
  const ids = new Map<number, string>();
  backends.forEach((b, i) => {
    // Worded only on error: formatting it for every backend costs a third of a small table's build.
    const what = () => `Maglev backend ${i} (${JSON.stringify(b.name)})`;
    if (typeof b.name !== 'string' || b.name === '') throw new RangeError(`${what()}: name must be a non-empty string`);
    if (names.has(b.name)) throw new RangeError(`${what()}: name is repeated`);
    names.add(b.name);
    if (!Number.isInteger(b.id) || b.id < 1 || b.id > MAX_BACKEND_ID) {
      throw new RangeError(`${what()}: id must be an integer in 1..${MAX_BACKEND_ID}, got ${b.id}`);
    }
    const other = ids.get(b.id);
    if (other !== undefined) throw new RangeError(`${what()}: id ${b.id} is also the id of ${JSON.stringify(other)}`);
    ids.set(b.id, b.name);
    if (!Number.isFinite(b.weight) || b.weight < 0) {
      throw new RangeError(`${what()}: weight must be a finite number >= 0, got ${b.weight}`);
    }
  });
}

/**
 * The weighted Maglev lookup table: Eisenbud et al., "Maglev: A Fast and
 * Reliable Software Network Load Balancer", NSDI 2016, section 3.4
 * (Pseudocode 1), extended with weights.
 *
 * Each backend has a permutation of the M slots, (offset + j × skip) mod M,
 * from two hashes of its name (src/maglev/hash.ts). Backends take turns in a
 * fixed order; at its turn a backend claims the next slot of its permutation
 * that is still empty. Because M is prime, every permutation visits every
 * slot, so the table fills completely.
 *
 * Weights: each round a backend adds its weight to a credit and takes a turn
 * only when the credit reaches the largest weight (then pays it back). The
 * heaviest backends take a turn every round, one of weight w one in every
 * maxWeight/w rounds, so its share of the slots is about w / sum(weights).
 * The credits are doubles: exact for integer weights, and for any weights
 * the same IEEE-754 operations in the same order, so every node agrees.
 */
import { nameHashes, nameHashesTo } from './hash.js';
import { MAX_MAGLEV_TABLE_SIZE } from './primes.js';

/** h1 and h2 of the name being prepared (prepareMaglevBuild). */
const hashes = new Uint32Array(2);

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

/**
 * The permutation of backend `name` in a table of `tableSize` slots
 * (section 3.4: offset ← h1(name) mod M, skip ← h2(name) mod (M − 1) + 1).
 * The j-th preferred slot is (offset + j × skip) mod M.
 */
export function permutationOf(name: string, tableSize: number): MaglevPermutation {
  const { h1, h2 } = nameHashes(name);
  return { offset: offsetOf(h1, tableSize), skip: skipOf(h2, tableSize) };
}

/** offset ← h1 mod M (section 3.4). */
const offsetOf = (h1: number, M: number): number => h1 % M;
/** skip ← h2 mod (M − 1) + 1, never 0 (section 3.4); 1 when M = 1. */
const skipOf = (h2: number, M: number): number => (M > 1 ? (h2 % (M - 1)) + 1 : 1);

/** True when n is a prime (trial division; n is at most a few hundred thousand here). */
export function isPrime(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

const MAX_BACKEND_ID = 0xffffffff;

/**
 * Empty slots left when the build stops walking permutations and searches
 * the remaining empty slots directly (phase 2 of buildMaglevTable): √M.
 * A walk with E slots empty costs up to M/E probes, the search E modular
 * multiplications, so they break even near E = √M. Measured: about 10%
 * faster than walking to the end at M = 65521 and 131071, N = 1000.
 */
function tailEmptySlots(tableSize: number): number {
  return Math.floor(Math.sqrt(tableSize));
}

/**
 * Build the Maglev lookup table of `tableSize` slots for `backends`.
 *
 * The result depends only on the set of backends (names, IDs, weights) and
 * M: backends are ordered by name (UTF-16 code unit order, not locale order)
 * before the turns, so every node and every input order gives the same table.
 *
 * @param backends backends of one service; names and IDs must be unique
 * @param tableSize M, a prime in 2..131071 (`XLB_MAGLEV_MAX_M`); normally
 *   from `tableSizeFor` (primes.ts)
 * @returns `Uint32Array` of M backend IDs, 0-based (the datapath stores it
 *   after a header slot holding M, docs/datapath.md). When no backend has a weight
 *   > 0 every slot is 0, "no backend": the datapath drops such flows with
 *   `XLB_DROP_NO_BACKEND`. Otherwise every slot holds a backend ID.
 * @throws RangeError naming the backend and field (`name`, `id`, `weight`)
 *   or `tableSize` when a value is invalid or a name or ID is repeated, or
 *   when more backends have weight > 0 than the table has slots
 *
 * Cost: under M·ln(M) slot probes (M = 65521, N = 1000: about 2 ms, see
 * `npm run bench -- --only maglev`); unequal weights add one credit step per backend
 * per round, at most M × N in all.
 *
 * @param opts.counts when given, filled with the number of slots each
 *   backend ID got (IDs of backends with weight 0 are left out): what the
 *   build knows anyway, and a pass over the table to count them would cost
 *   a fifth of it
 * @param opts.into where to build: M zeroed slots (a view into one buffer
 *   for many tables spares the garbage collector 10,000 separate buffers);
 *   returned. RangeError when its length is not M.
 */
export function buildMaglevTable(
  backends: readonly MaglevBackend[],
  tableSize: number,
  opts: { counts?: Map<number, number>; into?: Uint32Array } = {},
): Uint32Array {
  const M = tableSize;
  if (opts.into && opts.into.length !== M) throw new RangeError(`Maglev table: into has ${opts.into.length} slots, tableSize is ${M}`);
  // Per-backend state in scratch arrays shared by every build (a build
  // allocates only its table: at 10,000 services of 10 backends, fresh
  // arrays per build cost more than the slots of small tables).
  const s = scratchFor(backends.length, M);
  const n = prepareMaglevBuild(backends, M, s, 0);
  const table = opts.into ?? new Uint32Array(M);
  if (n === 0) return table;
  fillMaglevTable(table, M, n, 0, s.ids, s.next, s.skips, s.weights, s.credit, s.taken, s.empty, s.inverses);
  if (opts.counts) for (let k = 0; k < n; k++) opts.counts.set(s.ids[k], s.taken[k]);
  return table;
}

/**
 * Per-backend arrays of builds: backend k of a build whose backends start
 * at `at` is at index `at + k`. `next` and `skips` are slots (the
 * permutation, updated as the build walks it), `credit` and `taken` are
 * working state and output of {@link fillMaglevTable}. They may live in
 * SharedArrayBuffers that worker threads fill from (pool.ts).
 */
export interface MaglevBuildArrays {
  ids: Uint32Array;
  next: Int32Array;
  skips: Int32Array;
  weights: Float64Array;
  credit: Float64Array;
  taken: Int32Array;
}

/**
 * The first half of a build: check the backends, order them by name, and
 * write the ones with weight > 0 with their permutations into `arrays` from
 * index `at` (room for `backends.length` is needed).
 * @returns n, how many backends take part (0: the table stays empty)
 * @throws RangeError as {@link buildMaglevTable}
 */
export function prepareMaglevBuild(backends: readonly MaglevBackend[], tableSize: number, arrays: MaglevBuildArrays, at: number): number {
  const M = tableSize;
  const order = checkedOrderByName(backends, tableSize);
  let n = 0;
  for (let k = 0; k < backends.length; k++) {
    const b = backends[order[k]];
    if (b.weight <= 0) continue;
    if (n === M) {
      // Backends late in the order would silently get no slot.
      let active = 0;
      for (const x of backends) if (x.weight > 0) active++;
      throw new RangeError(`Maglev table: ${active} backends with weight > 0 do not fit in tableSize ${M}`);
    }
    // permutationOf, without an object per backend.
    nameHashesTo(b.name, hashes);
    arrays.ids[at + n] = b.id;
    arrays.next[at + n] = offsetOf(hashes[0], M);
    arrays.skips[at + n] = skipOf(hashes[1], M);
    arrays.weights[at + n] = b.weight;
    n++;
  }
  return n;
}

/**
 * The second half of a build: the turns of Pseudocode 1 (with weights)
 * over n prepared backends, filling `table` (M zeroed slots) and counting
 * each backend's slots in `taken`. `empty` (at least ⌊√M⌋ + 1 entries) and
 * `inverses` (at least n) are scratch.
 *
 * Self-contained on purpose (no calls to other functions of this module,
 * no variables from outside it): the build pool (pool.ts) runs this very
 * function's source in worker threads.
 */
export function fillMaglevTable(
  table: Uint32Array,
  M: number,
  n: number,
  at: number,
  ids: Uint32Array,
  next: Int32Array,
  skips: Int32Array,
  weights: Float64Array,
  credit: Float64Array,
  taken: Int32Array,
  empty: Int32Array,
  inverses: Int32Array,
): void {
  let maxWeight = 0;
  let equalWeights = true;
  for (let k = 0; k < n; k++) {
    const w = weights[at + k];
    if (w > maxWeight) maxWeight = w;
    if (w !== weights[at]) equalWeights = false;
    credit[at + k] = 0;
    taken[at + k] = 0;
    inverses[k] = 0;
  }
  /**
   * Whether backend b takes the turn it is offered, with unequal weights:
   * each round it adds its weight to a credit and takes its turn only when
   * the credit reaches the largest weight (module comment).
   */
  const takesTurn = (b: number): boolean => {
    const c = credit[b] + weights[b];
    if (c < maxWeight) {
      credit[b] = c;
      return false;
    }
    credit[b] = c - maxWeight;
    return true;
  };
  let filled = 0;
  let i = 0; // the backend offered the next turn; turns run on across both phases

  // Phase 1, Pseudocode 1 as written: at its turn a backend walks its
  // permutation to the first empty slot. Slot value 0 marks "empty" (IDs are
  // > 0), so the table is its own occupancy map. The walks stop with √M
  // slots left (see tailEmptySlots).
  const walkUntil = M - Math.floor(Math.sqrt(M));
  // A step is slot + skip mod M, written as slot - (M - skip), plus M when
  // that went negative (sign mask): whether a step wraps is a coin toss, and
  // as a branch it mispredicts half the time (measured: builds a quarter
  // slower).
  while (filled < walkUntil) {
    const b = at + i;
    if (equalWeights || takesTurn(b)) {
      const back = M - skips[b];
      let slot = next[b];
      while (table[slot] !== 0) {
        slot -= back;
        slot += M & (slot >> 31);
      }
      table[slot] = ids[b];
      taken[b]++;
      slot -= back;
      slot += M & (slot >> 31);
      next[b] = slot;
      filled++;
    }
    if (++i === n) i = 0;
  }

  // Phase 2, same result, less work: with E slots left empty a walk costs up
  // to M/E probes. The first empty slot on backend i's walk from slot x is
  // the empty slot e with the fewest steps, (e - x) × skip⁻¹ mod M: found by
  // looking at the E empty slots instead.
  let emptyCount = 0;
  for (let slot = 0; slot < M; slot++) if (table[slot] === 0) empty[emptyCount++] = slot;
  const reciprocal = 1 / M;
  while (emptyCount > 0) {
    const b = at + i;
    if (equalWeights || takesTurn(b)) {
      const x = next[b];
      if (inverses[i] === 0) {
        // skip⁻¹ mod M (M prime, 0 < skip < M), by the extended Euclid algorithm.
        let r0 = M;
        let r1 = skips[b];
        let t0 = 0;
        let t1 = 1;
        while (r1 !== 0) {
          const q = Math.floor(r0 / r1);
          const r = r0 - q * r1;
          r0 = r1;
          r1 = r;
          const t = t0 - q * t1;
          t0 = t1;
          t1 = t;
        }
        inverses[i] = t0 < 0 ? t0 + M : t0;
      }
      const inverse = inverses[i];
      let best = 0;
      let bestSteps = M;
      for (let j = 0; j < emptyCount; j++) {
        let delta = empty[j] - x;
        if (delta < 0) delta += M;
        // delta, inverse < 2^17: the product is exact in a double. The
        // quotient through the reciprocal (a multiply, not a divide) may be
        // one off near an integer; the remainder is then out of 0..M-1 by M.
        const product = delta * inverse;
        let steps = product - Math.floor(product * reciprocal) * M;
        if (steps < 0) steps += M;
        else if (steps >= M) steps -= M;
        if (steps < bestSteps) {
          bestSteps = steps;
          best = j;
        }
      }
      const slot = empty[best];
      empty[best] = empty[--emptyCount];
      table[slot] = ids[b];
      taken[b]++;
      next[b] = slot + skips[b] >= M ? slot + skips[b] - M : slot + skips[b];
    }
    if (++i === n) i = 0;
  }
}

/** {@link MaglevBuildArrays} plus the per-thread scratch of {@link fillMaglevTable}. */
interface BuildScratch extends MaglevBuildArrays {
  inverses: Int32Array;
  empty: Int32Array;
}
let scratch: BuildScratch | undefined;

/** Scratch arrays for n backends and M slots (builds are synchronous: one user at a time). */
function scratchFor(n: number, M: number): BuildScratch {
  if (!scratch || scratch.ids.length < n) {
    const cap = Math.max(n, 64, scratch ? 2 * scratch.ids.length : 0);
    scratch = {
      ids: new Uint32Array(cap),
      next: new Int32Array(cap),
      skips: new Int32Array(cap),
      weights: new Float64Array(cap),
      credit: new Float64Array(cap),
      taken: new Int32Array(cap),
      inverses: new Int32Array(cap),
      empty: scratch?.empty ?? new Int32Array(0),
    };
  }
  const emptyCap = emptyScratchSize(M);
  if (scratch.empty.length < emptyCap) scratch.empty = new Int32Array(Math.max(emptyCap, 2 * scratch.empty.length));
  return scratch;
}

/** Phase 2 holds at most the ⌊√M⌋ empty slots phase 1 leaves. */
export function emptyScratchSize(M: number): number {
  return tailEmptySlots(M) + 1;
}

/**
 * The fraction of `table`'s slots that each backend ID holds, in 0..1.
 * Empty slots (0, "no backend") are not counted under any ID, so an all-zero
 * table gives an empty map.
 */
export function tableShares(table: Uint32Array): Map<number, number> {
  const counts = new Map<number, number>();
  for (let i = 0; i < table.length; i++) {
    const id = table[i];
    if (id !== 0) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const shares = new Map<number, number>();
  for (const [id, count] of counts) shares.set(id, count / table.length);
  return shares;
}

/** Code unit order: the same on every node, unlike localeCompare. */
function byName(a: MaglevBackend, b: MaglevBackend): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Indexes into the backends in name order (scratch of {@link checkedOrderByName}, grown when needed). */
let orderScratch = new Int32Array(64);
/** Their IDs, for the uniqueness check of large inputs. */
let idScratch = new Float64Array(64);
/** Up to this many backends, orders and ID checks are insertion sorts and pairwise compares (no allocation). */
const SMALL_INPUT = 32;

/**
 * The order of `backends` by name (indexes, a view into scratch valid until
 * the next call), after checking what {@link validate} checks. Valid input
 * (the common case) costs one pass, a sort of the indexes by name (which the
 * build needs anyway: a repeated name is then next to its twin) and a check
 * that no ID repeats; nothing is allocated for up to SMALL_INPUT backends
 * (measured: a third of the cost of preparing 10,000 tables of 10 backends
 * was the copies and sorted arrays made per table). {@link validate}, which
 * builds a Set and a Map, runs only when something is wrong, to throw its
 * error naming the first bad backend.
 */
function checkedOrderByName(backends: readonly MaglevBackend[], tableSize: number): Int32Array {
  const n = backends.length;
  let ok = isPrime(tableSize) && tableSize <= MAX_MAGLEV_TABLE_SIZE;
  for (let i = 0; ok && i < n; i++) {
    const b = backends[i];
    ok =
      typeof b.name === 'string' &&
      b.name !== '' &&
      Number.isInteger(b.id) &&
      b.id >= 1 &&
      b.id <= MAX_BACKEND_ID &&
      Number.isFinite(b.weight) &&
      b.weight >= 0;
  }
  if (orderScratch.length < n) orderScratch = new Int32Array(Math.max(n, 2 * orderScratch.length));
  const order = orderScratch.subarray(0, n);
  if (ok) {
    if (n <= SMALL_INPUT) {
      for (let i = 0; i < n; i++) {
        const name = backends[i].name;
        let j = i;
        for (; j > 0 && backends[order[j - 1]].name > name; j--) order[j] = order[j - 1];
        order[j] = i;
      }
      for (let i = 0; ok && i < n; i++) for (let j = i + 1; ok && j < n; j++) ok = backends[i].id !== backends[j].id;
    } else {
      const sorted = Array.from({ length: n }, (_, i) => i).sort((x, y) => byName(backends[x], backends[y]));
      order.set(sorted);
      if (idScratch.length < n) idScratch = new Float64Array(Math.max(n, 2 * idScratch.length));
      const ids = idScratch.subarray(0, n);
      for (let i = 0; i < n; i++) ids[i] = backends[i].id;
      ids.sort();
      for (let i = 1; ok && i < n; i++) ok = ids[i] !== ids[i - 1];
    }
    for (let i = 1; ok && i < n; i++) ok = backends[order[i]].name !== backends[order[i - 1]].name;
  }
  if (ok) return order;
  validate(backends, tableSize);
  throw new Error('Maglev table: input rejected by the fast check but accepted by validate (a bug in buildMaglevTable)');
}

function validate(backends: readonly MaglevBackend[], tableSize: number): void {
  if (!isPrime(tableSize) || tableSize > MAX_MAGLEV_TABLE_SIZE) {
    throw new RangeError(`Maglev table: tableSize must be a prime in 2..${MAX_MAGLEV_TABLE_SIZE}, got ${tableSize}`);
  }
  const names = new Set<string>();
  const ids = new Map<number, string>();
  backends.forEach((b, i) => {
    // Built only on error: formatting it for every backend doubles the cost of a build.
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

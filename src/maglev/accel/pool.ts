/**
 * Many Maglev lookup tables at once, on every core: the initial sync of a
 * large cluster builds one table per service, and nothing else in the sync
 * needs them until the map writes. The tables are table.ts's, built by its
 * own fillMaglevTable; this module only spreads the work over threads
 * (equal tables: test/unit/maglev-accel.test.ts). Deleting it means
 * building each table with buildMaglevTable on the calling thread.
 *
 * Why it stays: 10,000 tables of M = 1021 (a 10,000-service sync) take
 * ~400 ms on one core and ~200 ms on this machine's two
 * (`npm run bench -- --only maglev`); the Kubernetes benchmark's cold-start
 * target has room for the second figure, not the first (docs/benchmarks.md).
 *
 * How: the calling thread checks and orders every table's backends
 * (maglevTurns, which also throws for bad input) into arrays in
 * SharedArrayBuffers, then it and the pool's worker threads take tables from
 * a shared counter (Atomics.add, 64 tables at a time) and fill them into one
 * shared buffer of slots. The caller stays synchronous: it works through the
 * counter itself and then waits (Atomics.wait) for the tables the workers
 * took. A worker that is still starting simply takes no table; tables the
 * workers have not finished {@link WORKER_TIMEOUT_MS} after the caller ran
 * out of work are rebuilt by the caller.
 *
 * Workers are threads of this process (node:worker_threads), started by
 * startMaglevPool or the first large batch, unreferenced (they never keep
 * the process alive), one fewer than the available cores, at most
 * {@link MAX_THREADS}; none on one core.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { fillMaglevTable, maglevTurns, type MaglevBackend, type MaglevTurns } from '../table.js';

/** Most worker threads the pool starts. */
export const MAX_THREADS = 3;
/** Fewer tables than this are built on the calling thread alone (a message round is not worth it). */
export const POOL_MIN_TABLES = 32;
/**
 * Tables taken at a time. Neighbouring tables' backends share cache lines
 * (a build writes each backend's next slot and count in its inner loop):
 * with one table per take, two threads kept stealing those lines from each
 * other and together built no faster than one (measured).
 */
const CHUNK = 64;
/** How long the caller waits for the tables workers took before building the rest itself, ms. */
export const WORKER_TIMEOUT_MS = 2000;

/** One table to build. */
export interface MaglevJob {
  backends: readonly MaglevBackend[];
  /** M, as for buildMaglevTable. */
  tableSize: number;
}

/** One built table: M backend IDs (a view into a buffer shared by the batch) and slots per backend ID. */
export interface MaglevBuilt {
  table: Uint32Array;
  /**
   * Slots each backend that takes part got, flat: ID, count, ID, count, ...
   * (see {@link slotCount}). One small array per table: a Map per table
   * was 10,000 Maps, ~9 MB of allocation, at 10,000 services.
   */
  counts: number[];
}

/** The slots backend `id` got in a table, from its {@link MaglevBuilt.counts}; 0 when it has none. */
export function slotCount(counts: readonly number[], id: number): number {
  for (let i = 0; i < counts.length; i += 2) if (counts[i] === id) return counts[i + 1];
  return 0;
}

/**
 * Per-backend arrays of a batch: backend k of a table whose turns start at
 * `at` is at index `at + k` (a MaglevTurns as columns, so that they can
 * live in SharedArrayBuffers), and `taken`, the slots it got.
 */
interface TurnColumns {
  ids: Uint32Array;
  offsets: Int32Array;
  skips: Int32Array;
  weights: Float64Array;
  taken: Int32Array;
}

/** What the workers are sent: every array of a batch (SharedArrayBuffers, not copied). */
interface Batch extends TurnColumns {
  /** Every table's slots, back to back. */
  out: Uint32Array;
  /** Per table: offset in `out`, M, n, first backend index. */
  jobs: Int32Array;
  /** Per table: 2 once a worker has built it. */
  state: Int32Array;
  /**
   * [0]: the next table to take. [1]: `out`'s pages: 0 untouched, 1 being
   * faulted in by the thread that claimed it, 2 done (tables are taken only then).
   */
  control: Int32Array;
  count: number;
}

/**
 * Fill table k of batch `b` with `fill` (table.ts's fillMaglevTable) and
 * record each backend's slots in `b.taken`.
 *
 * Uses nothing but its arguments: the workers run this very function's source.
 */
export function fillBatchTable(b: Batch, k: number, fill: typeof fillMaglevTable): void {
  const off = b.jobs[4 * k];
  const M = b.jobs[4 * k + 1];
  const n = b.jobs[4 * k + 2];
  const at = b.jobs[4 * k + 3];
  const turns = [];
  for (let i = at; i < at + n; i++) turns.push({ id: b.ids[i], weight: b.weights[i], offset: b.offsets[i], skip: b.skips[i] });
  const taken = fill(b.out.subarray(off, off + M), turns);
  for (let i = 0; i < n; i++) b.taken[at + i] = taken[i];
}

/** The worker's program: table.ts's fill, and the loop over the shared counter. */
function workerSource(): string {
  return `'use strict';
const { parentPort } = require('node:worker_threads');
const __name = (f) => f; // esbuild's keepNames helper, should the sources carry it
const fill = (${fillMaglevTable.toString()});
const fillBatchTable = (${fillBatchTable.toString()});
const faultIn = (${faultInOnce.toString()});
parentPort.on('message', (b) => {
  // Should another thread never finish faulting the buffer in, this batch
  // is left to the caller (it builds what no worker did).
  if (!faultIn(b.control, b.out, performance.now() + ${WORKER_TIMEOUT_MS})) return;
  for (;;) {
    const c = Atomics.add(b.control, 0, 1) * ${CHUNK};
    if (c >= b.count) return;
    for (let k = c; k < Math.min(b.count, c + ${CHUNK}); k++) {
      fillBatchTable(b, k, fill);
      Atomics.store(b.state, k, 2);
      Atomics.notify(b.state, k);
    }
  }
});
`;
}

let workers: Worker[] | undefined;
/** Workers that have started running their program. */
const online = new WeakSet<Worker>();
/** Worker threads to use here: one fewer than the cores, at most MAX_THREADS. */
function threadCount(): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(0, Math.min(MAX_THREADS, cores - 1));
}

/**
 * Start the pool's threads now rather than at the first large batch (they
 * take tens of ms to start; the ServiceController calls this when it is
 * made, well before its first sync).
 * Idempotent. A thread that fails to start is left out, with no error:
 * the caller then builds the tables itself.
 */
export function startMaglevPool(): void {
  if (workers) return;
  workers = [];
  for (let i = 0; i < threadCount(); i++) {
    try {
      // No execArgv: the worker runs plain JavaScript (no TypeScript loader).
      const w = new Worker(workerSource(), { eval: true, execArgv: [], name: `xlb-maglev-${i}` });
      w.unref();
      w.once('online', () => online.add(w));
      w.on('error', () => {
        workers = workers?.filter((x) => x !== w);
      });
      workers.push(w);
    } catch {
      break;
    }
  }
}

/** Stop the pool's threads (tests; the agent's threads are unreferenced and end with it). */
export async function stopMaglevPool(): Promise<void> {
  const ws = workers ?? [];
  workers = undefined;
  await Promise.all(ws.map((w) => w.terminate()));
}

const stats = { batches: 0, tables: 0, byWorkers: 0 };

/**
 * What the pool has done in this process: worker threads started and those
 * of them running, batches that used them, tables in those batches, and how
 * many of those the workers built (the rest the calling thread did).
 */
export function maglevPoolStats(): { threads: number; online: number; batches: number; tables: number; byWorkers: number } {
  return { ...stats, threads: workers?.length ?? 0, online: (workers ?? []).filter((w) => online.has(w)).length };
}

/**
 * Build every table of `jobs` (see the module comment for how).
 * @returns one entry per job, in order
 * @throws RangeError as buildMaglevTable, naming the job's backend or size,
 *   before any table is built
 */
export function buildMaglevTables(jobs: readonly MaglevJob[]): MaglevBuilt[] {
  return startMaglevTables(jobs).finish();
}

/** A batch of tables the pool's workers are building: {@link MaglevBatch.finish} builds the rest here and returns all. */
export interface MaglevBatch {
  /** Take part in the build until every table is done (at most {@link WORKER_TIMEOUT_MS} of waiting), then return them, in job order. */
  finish(): MaglevBuilt[];
}

/**
 * {@link buildMaglevTables} in two steps, so that the caller can do other
 * work (the controller writes the backends) while the workers start on the
 * tables: this checks and prepares every table and hands the batch to the
 * workers; finish() does the rest. A batch that is never finished is
 * completed by the workers and dropped.
 * @throws RangeError as buildMaglevTables, before any table is built
 */
export function startMaglevTables(jobs: readonly MaglevJob[]): MaglevBatch {
  let slots = 0;
  let backends = 0;
  for (const j of jobs) {
    slots += j.tableSize;
    backends += j.backends.length;
  }
  const pooled = jobs.length >= POOL_MIN_TABLES;
  if (pooled) startMaglevPool();
  const ws = pooled ? (workers ?? []) : [];
  const Shared = ws.length ? SharedArrayBuffer : ArrayBuffer;
  const u32 = (n: number) => new Uint32Array(new Shared(4 * n));
  const i32 = (n: number) => new Int32Array(new Shared(4 * n));
  const f64 = (n: number) => new Float64Array(new Shared(8 * n));
  const b: Batch = {
    out: u32(slots),
    ids: u32(backends),
    offsets: i32(backends),
    skips: i32(backends),
    weights: f64(backends),
    taken: i32(backends),
    jobs: i32(4 * jobs.length),
    state: i32(jobs.length),
    control: i32(2),
    count: jobs.length,
  };
  let off = 0;
  let at = 0;
  jobs.forEach((j, k) => {
    const turns = maglevTurns(j.backends, j.tableSize);
    const n = turns.length;
    turns.forEach((t, i) => {
      b.ids[at + i] = t.id;
      b.offsets[at + i] = t.offset;
      b.skips[at + i] = t.skip;
      b.weights[at + i] = t.weight;
    });
    b.jobs[4 * k] = off;
    b.jobs[4 * k + 1] = j.tableSize;
    b.jobs[4 * k + 2] = n;
    b.jobs[4 * k + 3] = at;
    off += j.tableSize;
    at += j.backends.length;
  });
  // The fresh buffer's pages are faulted in by one thread, the first worker
  // to get the batch (or the caller, in finish(), should it come first),
  // before any table is written: two threads faulting pages of one process
  // in at once took turns (measured: both at half speed, no gain from the
  // second thread). A worker does it while the caller goes on (~20 ms for
  // 10,000 tables).
  for (const w of ws) w.postMessage(b);
  return { finish: () => finishBatch(jobs, b, ws.length > 0) };
}

/** The calling thread's part of a batch: take tables too, then wait for the ones a worker took. */
function finishBatch(jobs: readonly MaglevJob[], b: Batch, pooled: boolean): MaglevBuilt[] {
  const mine = new Uint8Array(jobs.length);
  // Tables are taken once `out`'s pages are in; should a worker that
  // claimed that never finish it, every table no worker built is built
  // privately below.
  const canTake = !pooled || faultInOnce(b.control, b.out, performance.now() + WORKER_TIMEOUT_MS);
  while (canTake) {
    const c = Atomics.add(b.control, 0, 1) * CHUNK;
    if (c >= jobs.length) break;
    for (let k = c; k < Math.min(jobs.length, c + CHUNK); k++) {
      mine[k] = 1;
      fillBatchTable(b, k, fillMaglevTable);
    }
  }
  if (pooled) {
    stats.batches++;
    stats.tables += jobs.length;
    for (const m of mine) if (!m) stats.byWorkers++;
  }
  // One deadline for the whole batch: a worker that died holding a chunk
  // costs one wait, then its tables are built here.
  const deadline = performance.now() + WORKER_TIMEOUT_MS;
  return jobs.map((j, k) => {
    const o = b.jobs[4 * k];
    const M = b.jobs[4 * k + 1];
    const n = b.jobs[4 * k + 2];
    const first = b.jobs[4 * k + 3];
    // Every table was taken by someone: the ones not taken here by a worker.
    if (!mine[k] && !awaitWorker(b.state, k, deadline)) {
      // The worker is stuck or gone: build this table here, privately (the
      // worker may still be writing its copy of the same slots).
      const turns = maglevTurns(j.backends, M);
      const table = new Uint32Array(M);
      const taken = fillMaglevTable(table, turns);
      return { table, counts: turns.flatMap((t, i) => [t.id, taken[i]]) };
    }
    return { table: b.out.subarray(o, o + M), counts: countsOf(b, first, n) };
  });
}

/**
 * Fault a batch's `out` in, once, on whichever thread claims it first
 * (`control[1]`: 0 untouched, 1 being faulted in, 2 done), or wait until the
 * thread that claimed it is done. False when that is not done by
 * `deadline` (performance.now(), ms).
 *
 * Self-contained on purpose: the workers run this very function's source.
 */
export function faultInOnce(control: Int32Array, out: Uint32Array, deadline: number): boolean {
  if (Atomics.compareExchange(control, 1, 0, 1) === 0) {
    out.fill(0);
    Atomics.store(control, 1, 2);
    Atomics.notify(control, 1);
    return true;
  }
  for (;;) {
    const s = Atomics.load(control, 1);
    if (s === 2) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    Atomics.wait(control, 1, s, left);
  }
}

/** Wait until a worker has built table k; false once `deadline` (performance.now(), ms) has passed. */
function awaitWorker(state: Int32Array, k: number, deadline: number): boolean {
  for (;;) {
    const s = Atomics.load(state, k);
    if (s === 2) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    Atomics.wait(state, k, s, left);
  }
}

/** Slots per backend ID of a filled table whose n backends start at `first` (as {@link MaglevBuilt.counts}). */
function countsOf(a: TurnColumns, first: number, n: number): number[] {
  const counts: number[] = new Array(2 * n);
  for (let i = 0; i < n; i++) {
    counts[2 * i] = a.ids[first + i];
    counts[2 * i + 1] = a.taken[first + i];
  }
  return counts;
}

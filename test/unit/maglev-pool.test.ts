/**
 * The Maglev build pool (src/maglev/accel/pool.ts), the differential test
 * of the one faster path beside table.ts: many tables at once, on worker
 * threads, must give exactly what buildMaglevTable (Pseudocode 1, plainly
 * written) gives for each, with the same slot counts, and reject bad input
 * before building anything.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { execFile } from 'node:child_process';
import {
  buildMaglevTable,
  buildMaglevTables,
  maglevTurns,
  MAGLEV_TABLE_SIZES,
  startMaglevPool,
  stopMaglevPool,
  type MaglevBackend,
  type MaglevJob,
} from '../../src/maglev/index.js';
import { faultInOnce, maglevPoolStats, POOL_MIN_TABLES, slotCount } from '../../src/maglev/accel/pool.js';
import { waitFor } from '../../src/util/wait.js';
import { prng } from '../helpers/prng.js';

/** Jobs of random sizes and backend counts; some weighted, some with weight-0 or no backends. */
function randomJobs(count: number, seed: number): MaglevJob[] {
  const rand = prng(seed);
  const jobs: MaglevJob[] = [];
  for (let j = 0; j < count; j++) {
    const n = j % 17 === 0 ? 0 : 1 + Math.floor(rand() * 40);
    const weighted = j % 5 === 0;
    const backends: MaglevBackend[] = Array.from({ length: n }, (_, i) => ({
      name: `198.18.${j % 250}.${i}:${8000 + (j % 7)}/TCP`,
      id: 1 + j * 64 + i,
      weight: weighted ? Math.floor(rand() * 4) : 1,
    }));
    jobs.push({ backends, tableSize: MAGLEV_TABLE_SIZES[Math.floor(rand() * 6)] });
  }
  return jobs;
}

function slotCounts(table: Uint32Array): Map<number, number> {
  const m = new Map<number, number>();
  for (const id of table) if (id) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
}

/** Until the pool's workers are running (none start on one core). */
async function workersRunning(): Promise<void> {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  if (cores < 2) return;
  await waitFor(() => {
    const s = maglevPoolStats();
    return s.threads > 0 && s.online === s.threads;
  }, 5000, "the pool's workers to start", 5);
}

describe('faultInOnce (one thread faults a batch buffer in)', () => {
  it('the first caller claims it, zeroes the buffer and marks it done; later callers find it done', () => {
    const control = new Int32Array(new SharedArrayBuffer(8));
    const out = new Uint32Array(new SharedArrayBuffer(64)).fill(7);
    assert.equal(faultInOnce(control, out, performance.now() + 1000), true);
    assert.equal(control[1], 2);
    assert.ok(out.every((v) => v === 0));
    out[0] = 9;
    assert.equal(faultInOnce(control, out, performance.now() + 1000), true);
    assert.equal(out[0], 9, 'not zeroed a second time');
  });

  it('a claim that is never finished makes a waiter give up at its deadline', () => {
    const control = new Int32Array(new SharedArrayBuffer(8));
    control[1] = 1; // claimed by a thread that is gone
    const t0 = performance.now();
    assert.equal(faultInOnce(control, new Uint32Array(4), t0 + 50), false);
    assert.ok(performance.now() - t0 >= 49, 'waited until the deadline');
  });
});

describe('buildMaglevTables (the build pool)', () => {
  before(() => startMaglevPool());
  after(() => stopMaglevPool());

  it('gives every table and slot count exactly as buildMaglevTable does', async () => {
    // Let the worker threads start, so that they take part.
    await workersRunning();
    const jobs = randomJobs(600, 20261123);
    const before = maglevPoolStats();
    const built = buildMaglevTables(jobs);
    const after = maglevPoolStats();
    assert.equal(built.length, jobs.length);
    jobs.forEach((j, k) => {
      const want = buildMaglevTable(j.backends, j.tableSize);
      const counts = new Map(maglevTurns(j.backends, j.tableSize).map((t) => [t.id, 0]));
      for (const id of want) if (id) counts.set(id, counts.get(id)! + 1);
      assert.deepEqual(built[k].table, want, `table ${k} (M=${j.tableSize}, N=${j.backends.length})`);
      const pairs = new Map<number, number>();
      for (let i = 0; i < built[k].counts.length; i += 2) pairs.set(built[k].counts[i], built[k].counts[i + 1]);
      assert.equal(pairs.size * 2, built[k].counts.length, `each backend once in the counts of table ${k}`);
      assert.deepEqual(pairs, counts, `counts of table ${k}`);
      for (const [id, c] of counts) assert.equal(slotCount(built[k].counts, id), c, `slotCount of ${id} in table ${k}`);
      assert.equal(slotCount(built[k].counts, 0xfffffff0), 0, 'slotCount of an ID not in the table');
      assert.deepEqual(slotCounts(built[k].table), new Map([...counts].filter(([, c]) => c > 0)), `counts of table ${k} match its slots`);
    });
    const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
    if (cores > 1) {
      assert.ok(after.threads >= 1, 'worker threads running');
      assert.equal(after.batches, before.batches + 1, 'the batch used the pool');
      assert.ok(after.byWorkers > before.byWorkers, `workers built some of the ${jobs.length} tables`);
    }
  });

  it('builds the same tables when the workers are still starting (the caller faults the buffer in and builds)', async () => {
    await stopMaglevPool();
    startMaglevPool();
    const jobs = randomJobs(300, 99);
    const built = buildMaglevTables(jobs);
    jobs.forEach((j, k) => assert.deepEqual(built[k].table, buildMaglevTable(j.backends, j.tableSize), `table ${k}`));
    // And once they run, a worker faults the next batch's buffer in: same tables again.
    await workersRunning();
    const again = buildMaglevTables(jobs);
    jobs.forEach((j, k) => assert.deepEqual(again[k].table, built[k].table, `table ${k}, second batch`));
  });

  it('builds small batches on the calling thread with the same results', () => {
    const jobs = randomJobs(POOL_MIN_TABLES - 1, 7);
    const before = maglevPoolStats().batches;
    const built = buildMaglevTables(jobs);
    assert.equal(maglevPoolStats().batches, before, 'no pool round for a small batch');
    jobs.forEach((j, k) => assert.deepEqual(built[k].table, buildMaglevTable(j.backends, j.tableSize)));
  });

  it('never keeps a process alive: one that started the pool and is done exits', async () => {
    const pool = new URL('../../src/maglev/accel/pool.ts', import.meta.url).href;
    // The workers are running by the time the timer fires.
    const script = `const m = await import(${JSON.stringify(pool)}); m.startMaglevPool(); setTimeout(() => console.log(JSON.stringify(m.maglevPoolStats())), 500);`;
    const started = performance.now();
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 20_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    });
    assert.ok(performance.now() - started < 15_000, 'exited on its own');
    const stats = JSON.parse(out) as { threads: number; online: number };
    assert.equal(stats.online, stats.threads, `workers were running by then: ${out.trim()}`);
  });

  it('rejects a bad job with buildMaglevTable\'s error, naming the backend', () => {
    const jobs = randomJobs(100, 3);
    jobs[57] = { backends: [{ name: 'a', id: 1, weight: 1 }, { name: 'a', id: 2, weight: 1 }], tableSize: 251 };
    assert.throws(() => buildMaglevTables(jobs), /Maglev backend 1 \("a"\): name is repeated/);
    jobs[57] = { backends: [{ name: 'a', id: 1, weight: 1 }], tableSize: 250 };
    assert.throws(() => buildMaglevTables(jobs), /tableSize must be a prime/);
  });
});

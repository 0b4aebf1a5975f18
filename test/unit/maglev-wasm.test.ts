/**
 * The WebAssembly Maglev fill (src/maglev/fill.c via src/maglev/wasm.ts)
 * must fill exactly what the reference, fillMaglevTable (table.ts), fills:
 * every slot, every backend's count, and the walk's state, for equal,
 * unequal and zero weights, small and large tables, and after its memory
 * has grown.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { emptyScratchSize, fillMaglevTable, prepareMaglevBuild, type MaglevBackend, type MaglevBuildArrays } from '../../src/maglev/table.js';
import { maglevFillModule, wasmMaglevFill, MAGLEV_FILL_WASM } from '../../src/maglev/wasm.js';
import os from 'node:os';
import { maglevPoolStats, startMaglevPool, stopMaglevPool } from '../../src/maglev/pool.js';
import { prng } from '../helpers/prng.js';
import { waitFor } from '../../src/util/wait.js';

function arrays(n: number): MaglevBuildArrays {
  return { ids: new Uint32Array(n), next: new Int32Array(n), skips: new Int32Array(n), weights: new Float64Array(n), credit: new Float64Array(n), taken: new Int32Array(n) };
}

/** Prepare `backends` for M at index `at` of fresh arrays (with room before them), twice: one set per filler. */
function prepared(backends: MaglevBackend[], M: number, at: number) {
  const a = arrays(at + backends.length);
  const b = arrays(at + backends.length);
  const n = prepareMaglevBuild(backends, M, a, at);
  prepareMaglevBuild(backends, M, b, at);
  return { a, b, n };
}

describe('Maglev fill in WebAssembly', () => {
  const module = maglevFillModule();

  it('is built (make -C xdp) and is what the build pool uses, on this thread and on its workers', async () => {
    assert.ok(module, `${MAGLEV_FILL_WASM} is missing or does not compile: run make -C xdp`);
    startMaglevPool();
    try {
      assert.equal(maglevPoolStats().filler, 'wasm');
      const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
      if (cores > 1) {
        await waitFor(() => maglevPoolStats().workerFillers.length > 0 && !maglevPoolStats().workerFillers.includes('starting'), 5000, 'the workers to report their fill', 5);
        assert.deepEqual([...new Set(maglevPoolStats().workerFillers)], ['wasm']);
      }
    } finally {
      await stopMaglevPool();
    }
  });

  it('fills every table exactly as fillMaglevTable does, memory growing and shrinking in use', () => {
    assert.ok(module);
    const fill = wasmMaglevFill(module);
    const rand = prng(20261123);
    // Small tables, then one that makes the module's memory grow, then small again.
    const cases: Array<[number, number, (i: number) => number]> = [
      [251, 3, () => 1],
      [1021, 10, () => 1],
      [1021, 10, (i) => (i % 3) + 1],
      [251, 7, (i) => (i % 2 ? 0 : 2.5)],
      [4093, 1, () => 1],
      [131071, 5000, (i) => 1 + (i % 7)],
      [65521, 1000, () => 1],
      [2, 2, () => 1],
      [1021, 40, () => Math.floor(rand() * 4)],
    ];
    for (const [M, count, weight] of cases) {
      const backends = Array.from({ length: count }, (_, i) => ({ name: `198.18.${i >> 8}.${i & 255}:${80 + (M % 7)}/TCP`, id: 1 + i * 3, weight: weight(i) }));
      const at = 5;
      const { a, b, n } = prepared(backends, M, at);
      const want = new Uint32Array(M);
      const got = new Uint32Array(M).fill(0xdead); // the filler zeroes its own copy and overwrites every slot
      if (n > 0) {
        fillMaglevTable(want, M, n, at, a.ids, a.next, a.skips, a.weights, a.credit, a.taken, new Int32Array(emptyScratchSize(M)), new Int32Array(n));
        fill(got, M, n, at, b.ids, b.next, b.skips, b.weights, b.credit, b.taken);
        assert.deepEqual(got, want, `M=${M}, ${count} backends: slots`);
        assert.deepEqual(b.taken, a.taken, `M=${M}, ${count} backends: counts`);
        assert.deepEqual(b.next, a.next, `M=${M}, ${count} backends: walk positions`);
        assert.deepEqual(b.credit, a.credit, `M=${M}, ${count} backends: credits`);
        assert.ok(got.every((id) => id !== 0), `M=${M}: every slot filled`);
      }
    }
  });
});

/**
 * The Maglev table fill compiled to WebAssembly (src/maglev/fill.c, built by
 * `make -C xdp` into xdp/build/xlb_maglev_fill.wasm): what the build pool
 * (pool.ts) runs, on its worker threads and on the calling thread, for
 * large syncs. It fills exactly the table fillMaglevTable (table.ts) fills,
 * in about half the time (measured: 10,000 tables of M = 1021, 10 backends
 * each, ~135 ms against ~255 ms on one core, copies included).
 *
 * Without the built module (a checkout where `make -C xdp` has not run),
 * the pool uses fillMaglevTable instead: slower, same tables.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { fillMaglevTable } from './table.js';

/** Where `make -C xdp` puts the module. */
export const MAGLEV_FILL_WASM = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../xdp/build/xlb_maglev_fill.wasm');

/** Every parameter of fillMaglevTable but its last two (the scratch arrays). */
type WithoutScratch<T extends unknown[]> = T extends [...infer Head, Int32Array, Int32Array] ? Head : never;

/**
 * fillMaglevTable's signature (table.ts) without its scratch arrays, which
 * the filler has of its own: fill `table` (M zeroed slots) from the n
 * prepared backends at index `at` of the arrays; `taken[at + k]` ends as
 * backend k's slot count and `next` is advanced.
 */
export type MaglevFill = (...args: WithoutScratch<Parameters<typeof fillMaglevTable>>) => void;

let compiled: WebAssembly.Module | null | undefined;

/**
 * The compiled module, or null when it has not been built (or does not
 * compile: then also null, and the pool falls back). Read and compiled once.
 */
export function maglevFillModule(): WebAssembly.Module | null {
  if (compiled !== undefined) return compiled;
  try {
    compiled = new WebAssembly.Module(fs.readFileSync(MAGLEV_FILL_WASM));
  } catch {
    compiled = null;
  }
  return compiled;
}

/**
 * A {@link MaglevFill} over one instance of `module`, with its own memory
 * (grown as tables need). Not shareable between threads: each thread makes
 * its own.
 *
 * Self-contained on purpose (no reference to anything outside its body):
 * the pool's worker threads run this very function's source.
 *
 * Memory layout per call, in bytes, from the module's __heap_base (below
 * it are its stack and data): the table (4M), then per backend ids,
 * next, skips, taken, inverses (4n each), the empty-slot scratch
 * (4(⌊√M⌋ + 1)), then weights and credit (8n each, 8-aligned).
 */
export function wasmMaglevFill(module: WebAssembly.Module): MaglevFill {
  const exports = new WebAssembly.Instance(module, {}).exports as {
    fill: (table: number, M: number, n: number, ids: number, next: number, skips: number, weights: number, credit: number, taken: number, empty: number, inverses: number) => void;
    memory: WebAssembly.Memory;
    __heap_base: WebAssembly.Global;
  };
  const memory = exports.memory;
  // Below __heap_base are the module's stack and data.
  const base = ((exports.__heap_base.value as number) + 7) & ~7;
  let u32 = new Uint32Array(memory.buffer);
  let i32 = new Int32Array(memory.buffer);
  let f64 = new Float64Array(memory.buffer);
  return (table, M, n, at, ids, next, skips, weights, credit, taken) => {
    const tab = base;
    const idsAt = tab + 4 * M;
    const nextAt = idsAt + 4 * n;
    const skipsAt = nextAt + 4 * n;
    const takenAt = skipsAt + 4 * n;
    const inversesAt = takenAt + 4 * n;
    const emptyAt = inversesAt + 4 * n;
    const weightsAt = (emptyAt + 4 * (Math.floor(Math.sqrt(M)) + 1) + 7) & ~7;
    const creditAt = weightsAt + 8 * n;
    const bytes = creditAt + 8 * n;
    if (bytes > memory.buffer.byteLength) {
      memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / 65536));
      u32 = new Uint32Array(memory.buffer);
      i32 = new Int32Array(memory.buffer);
      f64 = new Float64Array(memory.buffer);
    }
    u32.fill(0, tab / 4, tab / 4 + M);
    for (let k = 0; k < n; k++) {
      u32[idsAt / 4 + k] = ids[at + k];
      i32[nextAt / 4 + k] = next[at + k];
      i32[skipsAt / 4 + k] = skips[at + k];
      f64[weightsAt / 8 + k] = weights[at + k];
    }
    exports.fill(tab, M, n, idsAt, nextAt, skipsAt, weightsAt, creditAt, takenAt, emptyAt, inversesAt);
    table.set(u32.subarray(tab / 4, tab / 4 + M));
    for (let k = 0; k < n; k++) {
      taken[at + k] = i32[takenAt / 4 + k];
      next[at + k] = i32[nextAt / 4 + k];
      credit[at + k] = f64[creditAt / 8 + k];
    }
  };
}

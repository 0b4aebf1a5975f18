/**
 * Maglev table build time: median wall time of buildMaglevTable over RUNS
 * runs for each table size M × backend count N (equal weights).
 *
 *   npx tsx bench/maglev/build.ts
 *
 * Prints a table in milliseconds. The control plane rebuilds a service's
 * table on every endpoint change, so this bounds how fast it follows churn.
 */
import { buildMaglevTable, type MaglevBackend } from '../../src/maglev/index.js';

const SIZES = [16381, 65521, 131071];
const BACKEND_COUNTS = [10, 100, 1000];
/** Timed runs per cell (the median is reported). */
const RUNS = 31;
/** Untimed runs first, so that the JIT has optimised the build loop. */
const WARMUP_RUNS = 10;

function backends(n: number): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({
    name: `198.19.${i >> 8}.${i & 255}:8080/TCP`,
    id: i + 1,
    weight: 1,
  }));
}

function medianMs(fn: () => void): number {
  for (let i = 0; i < WARMUP_RUNS; i++) fn();
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const start = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1];
}

const header = ['M \\ N', ...BACKEND_COUNTS.map(String)];
const rows: string[][] = [];
for (const m of SIZES) {
  const row = [String(m)];
  for (const n of BACKEND_COUNTS) {
    const input = backends(n);
    row.push(medianMs(() => buildMaglevTable(input, m)).toFixed(3));
  }
  rows.push(row);
}
console.log(`buildMaglevTable median of ${RUNS} runs, ms (node ${process.version})`);
for (const r of [header, ...rows]) console.log(r.map((c, i) => (i === 0 ? c.padEnd(8) : c.padStart(9))).join(''));

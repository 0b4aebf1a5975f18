/**
 * Entry point of `npm run bench`: runs every benchmark in turn, each writing
 * bench/results/<name>.json (and a chart, <name>.svg), then prints every
 * ratio and target and writes bench/results/summary.md (the table the
 * README's Performance section shows).
 *
 *   npm run bench                      all benchmarks, full length (root)
 *   npm run bench -- --quick           shorter runs and fewer sizes (CI: under 3 minutes)
 *   npm run bench -- --only maglev,datapath
 *
 * A benchmark that cannot run (a tool missing, not root) fails with its
 * reason; the others still run, and the exit code is non-zero.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot, resultsDir } from './lib/paths.js';
import { writeSummary } from './lib/summary.js';

/** A benchmark module: run({quick}) measures, prints and writes its result files. */
interface BenchModule {
  run(opts: { quick: boolean }): Promise<unknown>;
}

/** The benchmarks, in the order they run (cheap and self-contained first). */
const BENCHMARKS: Array<{ name: string; module: string; optional?: boolean }> = [
  { name: 'maglev', module: 'bench/maglev/index.ts' },
  { name: 'datapath', module: 'bench/datapath/index.ts' },
  { name: 'events', module: 'bench/datapath/events.ts' },
  { name: 'convergence', module: 'bench/convergence/index.ts' },
  // Owned by another engineer; run when present (bench/kubernetes/index.ts exports run({quick})).
  { name: 'kubernetes', module: 'bench/kubernetes/index.ts', optional: true },
  { name: 'e2e', module: 'bench/e2e/index.ts' },
  { name: 'clusterip', module: 'bench/clusterip/index.ts' },
  { name: 'restart', module: 'bench/restart/index.ts' },
];

function parseArgs(argv: string[]): { quick: boolean; only?: Set<string> } {
  let quick = false;
  let only: Set<string> | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') quick = true;
    else if (a === '--only') only = new Set((argv[++i] ?? '').split(',').filter(Boolean));
    else if (a.startsWith('--only=')) only = new Set(a.slice('--only='.length).split(',').filter(Boolean));
    else throw new Error(`bench: unknown argument ${a} (use --quick, --only NAME[,NAME])`);
  }
  if (only) {
    for (const n of only) if (!BENCHMARKS.some((b) => b.name === n)) throw new Error(`bench: --only ${n}: no such benchmark (${BENCHMARKS.map((b) => b.name).join(', ')})`);
    if (!only.size) throw new Error('bench: --only needs a benchmark name');
  }
  return { quick, only };
}

async function main(): Promise<number> {
  const { quick, only } = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const failures: string[] = [];
  const timings: string[] = [];
  for (const b of BENCHMARKS) {
    if (only && !only.has(b.name)) continue;
    const file = path.join(repoRoot, b.module);
    const t0 = performance.now();
    console.log(`\n=== ${b.name}${quick ? ' (quick)' : ''} ===`);
    if (!fs.existsSync(file)) {
      const msg = `${b.name}: SKIPPED: ${b.module} does not exist${b.optional ? ' (not written yet)' : ''}`;
      console.error(`\n!!!!!!!! ${msg} !!!!!!!!\n`);
      if (!b.optional) failures.push(msg);
      else timings.push(`${b.name}: skipped (missing)`);
      continue;
    }
    try {
      const mod = (await import(pathToFileURL(file).href)) as BenchModule;
      if (typeof mod.run !== 'function') throw new Error(`${b.module} does not export run({quick})`);
      await mod.run({ quick });
      timings.push(`${b.name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } catch (e) {
      const msg = `${b.name}: FAILED: ${(e as Error).stack ?? e}`;
      console.error(`\n!!!!!!!! ${msg}\n`);
      failures.push(`${b.name}: ${(e as Error).message.split('\n')[0]}`);
      timings.push(`${b.name}: failed after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  }
  const summary = writeSummary();
  console.log(`\n=== summary (${path.relative(repoRoot, summary.path)}) ===\n${summary.text}`);
  console.log(`\ntimes: ${timings.join('; ')}; total ${((performance.now() - started) / 1000).toFixed(1)} s`);
  console.log(`results in ${path.relative(repoRoot, resultsDir)}/`);
  if (failures.length) {
    console.error(`\n${failures.length} benchmark(s) did not complete:\n  ${failures.join('\n  ')}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  },
);

/**
 * Statistics of repeated measurements. A benchmark on a small, shared
 * machine is noisy: xlb reports the median of at least five runs, the
 * nearest-rank p99 where a distribution matters (latencies), and the spread
 * so that a reader can see how much the runs disagreed.
 */

/** The runs of one figure and what is reported of them; all in the figure's unit. */
export interface Summary {
  /** Every run, in the order measured. */
  runs: number[];
  /** Median of the runs (mean of the two middle runs for an even count). */
  median: number;
  /** Nearest-rank 99th percentile (the largest run when there are fewer than 100). */
  p99: number;
  min: number;
  max: number;
  /**
   * (p95 − p5) / median, nearest rank: for fewer than 20 runs that is (max −
   * min) / median, the whole range; for a latency distribution of hundreds
   * of samples it leaves out the 5% tails on each side (the p99 says how
   * long the tail is). 0.05 means the runs lie within a band 5% of the
   * median wide. 0 for one run.
   */
  spread: number;
}

/**
 * Nearest-rank quantile of `sorted` (ascending), q in [0, 1]
 * (the smallest value with at least q of the values at or below it).
 * @throws Error when `sorted` is empty
 */
export function quantile(sorted: readonly number[], q: number): number {
  if (!sorted.length) throw new Error('quantile of no values');
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1];
}

/**
 * Summarise `runs`.
 * @throws Error naming `what` when there are no runs or a run is not a finite number
 */
export function summarize(runs: readonly number[], what = 'figure'): Summary {
  if (!runs.length) throw new Error(`${what}: no runs to summarise`);
  for (const r of runs) if (!Number.isFinite(r)) throw new Error(`${what}: run value ${r} is not a finite number`);
  const sorted = [...runs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  const min = sorted[0];
  const max = sorted[sorted.length - 1];
  const band = quantile(sorted, 0.95) - quantile(sorted, 0.05);
  return { runs: [...runs], median, p99: quantile(sorted, 0.99), min, max, spread: median ? band / Math.abs(median) : 0 };
}

/**
 * Time `fn` `runs` times after `warmup` untimed calls; returns each run's
 * wall time in ms (performance.now, sub-microsecond resolution).
 */
export function timeRuns(fn: () => void, runs: number, warmup = 0): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    out.push(performance.now() - t0);
  }
  return out;
}

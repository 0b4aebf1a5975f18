/**
 * Exponential backoff with jitter for restarting informers and retrying
 * writes, shaped like client-go's reflector backoff
 * (`wait.NewExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0)`): the
 * delay doubles from `initialMs` up to `maxMs`, each delay is stretched by a
 * random factor in [1, 1 + jitter] so that many agents restarted by the same
 * API server outage do not come back in step, and the sequence starts over
 * once no delay was asked for during `resetAfterMs`.
 */

/** Options of {@link Backoff}; every time is in milliseconds. */
export interface BackoffOptions {
  /** First delay, ms (default 800). */
  initialMs?: number;
  /** Largest delay before jitter, ms (default 30 000). */
  maxMs?: number;
  /** Growth per step (default 2). */
  factor?: number;
  /** Each delay is multiplied by 1 + jitter × U[0, 1) (default 1: up to double). */
  jitter?: number;
  /** Quiet time after which the next delay is `initialMs` again, ms (default 120 000). */
  resetAfterMs?: number;
  /** Random source in [0, 1), for tests (default Math.random). */
  random?: () => number;
  /** Clock, ms, for tests (default performance.now). */
  now?: () => number;
}

/** One backoff sequence. Not shared between independent retry loops. */
export class Backoff {
  private readonly o: Required<BackoffOptions>;
  private step = 0;
  private last = -Infinity;

  constructor(opts: BackoffOptions = {}) {
    this.o = {
      initialMs: 800,
      maxMs: 30_000,
      factor: 2,
      jitter: 1,
      resetAfterMs: 120_000,
      random: Math.random,
      now: () => performance.now(),
      ...opts,
    };
    if (!(this.o.initialMs > 0) || !(this.o.maxMs >= this.o.initialMs) || !(this.o.factor >= 1) || !(this.o.jitter >= 0)) {
      throw new Error(`backoff: need 0 < initialMs <= maxMs, factor >= 1, jitter >= 0 (got ${JSON.stringify({ ...this.o, random: undefined, now: undefined })})`);
    }
  }

  /** The next delay, ms: initial × factor^n capped at max, times 1 + jitter × U[0, 1). */
  next(): number {
    const now = this.o.now();
    if (now - this.last >= this.o.resetAfterMs) this.step = 0;
    this.last = now;
    const base = Math.min(this.o.maxMs, this.o.initialMs * this.o.factor ** this.step);
    if (base < this.o.maxMs) this.step++;
    return base * (1 + this.o.jitter * this.o.random());
  }

  /** Start over at `initialMs` (after a success that proves the peer healthy). */
  reset(): void {
    this.step = 0;
    this.last = -Infinity;
  }
}

/** Resolve after `ms`, or at once when `signal` aborts (no rejection). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

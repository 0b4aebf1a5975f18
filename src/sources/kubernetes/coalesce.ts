/**
 * Coalescing of change events into few snapshots: a burst of events (the
 * 10 000 ADDs of a relist, the MODIFIEDs of a rolling update) produces one
 * call, made `quietMs` after the last event but never later than `maxDelayMs`
 * after the first, so a steady stream of events cannot starve the consumer.
 * (kube-proxy's `BoundedFrequencyRunner` bounds the other way, a minimum
 * interval between syncs; xlb's syncs are cheap diffs, so latency wins.)
 *
 * A quiet time of 0 coalesces the events of one turn of the event loop
 * (all events of one watch read, all ADDs of one list): the call comes from
 * `setImmediate`, right after the I/O that brought them, where a 0 ms
 * timer would wait for the next timer tick (1 ms or more).
 */

/** Debounces `fire` with a bound. Times in ms. */
export class Coalescer {
  private timer?: { cancel: () => void };
  private first = 0;
  private stopped = false;

  /**
   * @param fire called once per burst; errors it throws are its own to handle
   * @param quietMs quiet time after the last event, ms (>= 0)
   * @param maxDelayMs longest time from the first event of a burst, ms (>= quietMs)
   */
  constructor(
    private readonly fire: () => void,
    private readonly quietMs: number,
    private readonly maxDelayMs: number,
  ) {
    if (!(quietMs >= 0) || !(maxDelayMs >= quietMs)) throw new Error(`coalescer: need 0 <= quietMs <= maxDelayMs (got ${quietMs}, ${maxDelayMs})`);
  }

  /** Note an event: (re)arm the timer within the burst's bound. */
  poke(): void {
    if (this.stopped) return;
    const now = performance.now();
    if (this.timer) {
      // The pending setImmediate runs after this turn's other events too.
      if (this.quietMs === 0) return;
      this.timer.cancel();
    } else this.first = now;
    const delay = Math.max(0, Math.min(this.quietMs, this.first + this.maxDelayMs - now));
    const run = () => {
      this.timer = undefined;
      if (!this.stopped) this.fire();
    };
    if (delay === 0) {
      const i = setImmediate(run);
      this.timer = { cancel: () => clearImmediate(i) };
    } else {
      const t = setTimeout(run, delay);
      this.timer = { cancel: () => clearTimeout(t) };
    }
  }

  /** Whether a call is pending. */
  pending(): boolean {
    return this.timer !== undefined;
  }

  /** Drop a pending call (the caller is about to deliver the state itself). */
  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Cancel and refuse further events. */
  stop(): void {
    this.stopped = true;
    this.cancel();
  }
}

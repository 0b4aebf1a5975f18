/**
 * Keeps the next hops cached in conntrack entries honest (docs/datapath.md,
 * "Next hops"). The XDP program caches, per flow it forwards, what
 * bpf_fib_lookup answered (egress interface, MAC addresses, a length known
 * to fit the MTU), tagged with the generation in xlb_nh_gen; a cached next
 * hop is used only while the generation is unchanged. This watcher follows
 * the kernel's neighbour, route and link changes (`ip monitor`, one
 * long-lived process reading rtnetlink's multicast groups) and bumps the
 * generation on each burst of them, so that a MAC that changes, a route
 * that moves or a link that goes down is seen by the next packet of every
 * flow, within the time the kernel takes to report it.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** Follows rtnetlink neighbour, route and link events of this network namespace. */
export class NextHopWatcher {
  private child?: ChildProcess;
  private stopped = false;
  private pending = false;
  private restartTimer?: NodeJS.Timeout;
  /** Bursts of events reported so far. */
  changes = 0;

  /**
   * @param onChange called once per burst of events (coalesced within one turn of the event loop)
   * @param warn called when `ip monitor` cannot run or exits; it is started again a second later
   */
  constructor(
    private readonly onChange: () => void,
    private readonly warn: (msg: string) => void = (m) => console.warn(m),
  ) {}

  /** Start following; idempotent. */
  start(): void {
    if (this.child || this.stopped) return;
    const child = spawn('ip', ['-o', 'monitor', 'neigh', 'route', 'link'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', () => this.changed());
    child.stderr!.on('data', () => undefined);
    child.on('error', (e) => this.restart(`ip monitor: ${e.message}`));
    child.on('exit', (code, signal) => {
      if (this.child === child) this.restart(`ip monitor exited (${signal ?? code})`);
    });
  }

  private changed(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      if (this.stopped) return;
      this.changes++;
      this.onChange();
    });
  }

  private restart(why: string): void {
    this.child = undefined;
    if (this.stopped) return;
    this.warn(`${why}; next hops are re-checked on every change once it runs again (in 1 s)`);
    // What changed while nobody listened is not known: assume something did.
    this.changed();
    this.restartTimer = setTimeout(() => this.start(), 1000);
    this.restartTimer.unref();
  }

  /** Stop following; idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    this.child = undefined;
    child?.kill();
  }
}

/**
 * Gratuitous ARP on taking a VIP over, so that clients and switches move to
 * the new owner at once instead of when their cache entry expires. Both
 * forms are sent, `count` rounds spaced by `intervalMs`, the first at once:
 * the request form (RFC 5227 2.4 "ARP Announcement": sender IP = target IP =
 * the VIP), which every Linux host takes into an existing neighbour entry,
 * and the reply form (RFC 826 with the VIP as sender and target), which some
 * routers and older stacks only accept.
 *
 * Node cannot open AF_PACKET sockets, so this runs `arping` from
 * iputils-arping: `arping -U` (request form) and `arping -A` (reply form),
 * `-c 1 -I <interface> <VIP>`, one process per frame (iputils' `-i` takes
 * whole seconds only). iputils arping binds a UDP socket to its source
 * address, the VIP, which no interface of the node carries, so the node's
 * network namespace needs net.ipv4.ip_nonlocal_bind=1
 * ({@link ensureNonlocalBind}). Assigning the VIP to an interface instead
 * would make the kernel answer ARP for it as well (on every interface with
 * the default arp_ignore=0) and take its traffic as local: a second,
 * uncoordinated answerer, which is what layer 2 mode must avoid.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import type { Logger } from 'pino';

const execFileP = promisify(execFile);

/** The two frames of one round. */
export type GarpForm = 'request' | 'reply';

/** Sends gratuitous ARP for VIPs this node has taken over. */
export interface GarpSender {
  /**
   * Announce `vip` out of `iface`: `count` rounds of both forms, the first
   * now. Replaces a running announcement of the same VIP on that interface.
   */
  announce(vip: string, iface: string): void;
  /** Stop the rounds still to come for `vip` on every interface (the VIP was lost: announcing it would pull its traffic back). */
  cancel(vip: string): void;
  /** Cancel everything; resolves when no frame is being sent any more. */
  stop(): Promise<void>;
  counters(): { sent: number; failed: number };
}

/** Settings of {@link ArpingGarpSender}. */
export interface ArpingGarpOptions {
  count: number;
  intervalMs: number;
  /** The arping binary; default `arping`. */
  arping?: string;
  /** Put before arping's argv (e.g. `['nsenter', '--net=/run/netns/X']`). */
  commandPrefix?: string[];
  /** Most arping processes at once (each lives about 1 s); default 64. Frames beyond wait. */
  maxConcurrent?: number;
  log?: Logger;
}

/** GarpSender through iputils arping (see the module's doc). */
export class ArpingGarpSender implements GarpSender {
  private readonly timers = new Map<string, NodeJS.Timeout[]>();
  private readonly queue: Array<{ vip: string; iface: string; form: GarpForm }> = [];
  private readonly running = new Set<ReturnType<typeof spawn>>();
  private readonly stats = { sent: 0, failed: 0 };
  private lastError = '';
  private stopped = false;
  private idle?: () => void;

  constructor(private readonly opts: ArpingGarpOptions) {}

  announce(vip: string, iface: string): void {
    if (this.stopped || this.opts.count === 0) return;
    const key = `${vip}|${iface}`;
    for (const t of this.timers.get(key) ?? []) clearTimeout(t);
    const timers: NodeJS.Timeout[] = [];
    for (let round = 0; round < this.opts.count; round++) {
      const fire = () => {
        this.enqueue(vip, iface, 'request');
        this.enqueue(vip, iface, 'reply');
      };
      if (round === 0) fire();
      else timers.push(setTimeout(fire, round * this.opts.intervalMs));
    }
    this.timers.set(key, timers);
  }

  cancel(vip: string): void {
    for (const [key, timers] of this.timers) {
      if (!key.startsWith(`${vip}|`)) continue;
      for (const t of timers) clearTimeout(t);
      this.timers.delete(key);
    }
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i].vip === vip) this.queue.splice(i, 1);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timers of this.timers.values()) for (const t of timers) clearTimeout(t);
    this.timers.clear();
    this.queue.length = 0;
    if (!this.running.size) return;
    // The frames are out within milliseconds; arping then only waits for replies.
    for (const c of this.running) c.kill();
    await new Promise<void>((resolve) => (this.idle = resolve));
  }

  counters(): { sent: number; failed: number } {
    return { ...this.stats };
  }

  private enqueue(vip: string, iface: string, form: GarpForm): void {
    this.queue.push({ vip, iface, form });
    this.drain();
  }

  private drain(): void {
    const max = this.opts.maxConcurrent ?? 64;
    while (this.queue.length && this.running.size < max && !this.stopped) {
      const { vip, iface, form } = this.queue.shift()!;
      this.spawnOne(vip, iface, form);
    }
    if (!this.running.size) this.idle?.();
  }

  private spawnOne(vip: string, iface: string, form: GarpForm): void {
    const argv = [...(this.opts.commandPrefix ?? []), this.opts.arping ?? 'arping', form === 'request' ? '-U' : '-A', '-q', '-c', '1', '-I', iface, vip];
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    this.running.add(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = (ok: boolean, why: string) => {
      if (!this.running.delete(child)) return;
      if (ok) this.stats.sent++;
      else if (!this.stopped) {
        this.stats.failed++;
        // One log line per distinct failure, not per frame (both forms usually fail alike).
        const msg = `${iface} ${vip}: ${why}`;
        if (msg !== this.lastError) {
          this.lastError = msg;
          this.opts.log?.error({ vip, interface: iface, form, err: why }, 'l2: gratuitous ARP failed');
        }
      }
      this.drain();
    };
    child.on('error', (e) => done(false, e.message));
    // A killed arping (stop) had sent its frame long before: count it as sent.
    child.on('close', (code, signal) => done(code === 0 || signal === 'SIGTERM', stderr.trim() || `exit ${code ?? signal}`));
  }
}

/** A GarpSender that records what it would send, for tests. */
export class FakeGarpSender implements GarpSender {
  /** Every announce() call in order, with its time (ms, performance.now). */
  readonly announced: Array<{ vip: string; iface: string; at: number }> = [];
  readonly cancelled: string[] = [];
  announce(vip: string, iface: string): void {
    this.announced.push({ vip, iface, at: performance.now() });
  }
  cancel(vip: string): void {
    this.cancelled.push(vip);
  }
  async stop(): Promise<void> {}
  counters(): { sent: number; failed: number } {
    return { sent: this.announced.length * 2, failed: 0 };
  }
}

const NONLOCAL_BIND = '/proc/sys/net/ipv4/ip_nonlocal_bind';

/**
 * Make sure arping may bind to a VIP: net.ipv4.ip_nonlocal_bind=1 in this
 * process's network namespace (the sysctl is per namespace).
 * @param set true: set it when it is 0; false: only check
 * @returns whether it had to be set
 * @throws Error naming `l2.gratuitousArp.setNonlocalBind` when it is 0 and may not be set, or the write failed
 */
export function ensureNonlocalBind(set: boolean): boolean {
  if (fs.readFileSync(NONLOCAL_BIND, 'utf8').trim() === '1') return false;
  if (!set)
    throw new Error(
      'l2.gratuitousArp.setNonlocalBind: false, and net.ipv4.ip_nonlocal_bind is 0: arping cannot send gratuitous ARP from a VIP the node does not carry; set the sysctl to 1 or let the agent set it',
    );
  try {
    fs.writeFileSync(NONLOCAL_BIND, '1');
  } catch (e) {
    throw new Error(`l2.gratuitousArp: cannot set net.ipv4.ip_nonlocal_bind=1 (${(e as Error).message}); arping needs it`);
  }
  return true;
}

/**
 * Check that `arping` is iputils' (Thomas Habets' arping takes other flags).
 * @throws Error saying what to install
 */
export async function checkArping(arping = 'arping', commandPrefix: string[] = []): Promise<void> {
  const argv = [...commandPrefix, arping, '-V'];
  let out: string;
  try {
    const r = await execFileP(argv[0], argv.slice(1));
    out = r.stdout + r.stderr;
  } catch (e) {
    throw new Error(`l2.gratuitousArp: ${arping} not runnable (${(e as Error).message.split('\n')[0]}); install iputils-arping`);
  }
  if (!/iputils/.test(out)) throw new Error(`l2.gratuitousArp: ${arping} is not iputils arping (${out.trim().split('\n')[0]}); install iputils-arping`);
}

/**
 * Keeps the kernel's neighbour entries resolved for every next hop the XDP
 * program forwards to. bpf_fib_lookup in XDP cannot trigger ARP: without an
 * entry it answers BPF_FIB_LKUP_RET_NO_NEIGH, and the datapath hands the
 * translated packet to the stack, which resolves the neighbour for a reply
 * to a client but drops a request SNATed to the node's own address (a
 * martian to it). Cilium solves this the same way: the agent installs
 * "managed" neighbour entries (NTF_EXT_MANAGED, Linux >= 5.16), which the
 * kernel resolves and keeps reachable by itself.
 *
 * Next hops: the gateways of the default routes (replies to clients) and the
 * route towards each remote backend (its gateway, or the backend itself when
 * it is on-link). Routes are looked up in the kernel's FIB (policy routing
 * included) by one `ip -batch` run per refresh for all new destinations:
 * about 4 µs a lookup, where one `ip route get` process costs milliseconds
 * (20,000 lookups took 80 ms here). Entries are made with iproute2 (`ip neigh
 * replace ... managed extern_learn`) and removed on stop.
 *
 * A new entry is useless until its ARP reply is in: the agent waits for
 * {@link NeighborManager.awaitResolved} before it reports ready or announces
 * anything, so that the first packets routed here do not meet a next hop
 * that XDP cannot reach yet.
 */
import { execFile } from 'node:child_process';
import { isIPv4 } from 'node:net';

/**
 * Run `ip args`, with `input` on stdin if given.
 * @throws Error `ip args: stderr`, carrying `stdout` (what the commands of a batch that worked printed)
 */
function ip(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', args, { timeout: 5000, maxBuffer: 256 << 20 }, (err, stdout, stderr) =>
      err ? reject(Object.assign(new Error(`ip ${args.join(' ')}: ${(stderr || err.message).trim()}`), { stdout: String(stdout ?? '') })) : resolve(stdout),
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** A next hop: address and the interface it is reached through. */
export interface NextHop {
  addr: string;
  dev: string;
}

/** Neighbour states in which bpf_fib_lookup finds a MAC (NUD_VALID in include/net/neighbour.h). */
const VALID_STATES = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT', 'NOARP']);

/** What the agent needs of a {@link NeighborManager} (a fake in tests). */
export type NextHopKeeper = Pick<NeighborManager, 'ensure' | 'awaitResolved' | 'list' | 'stop'>;

/** Manages neighbour entries for the datapath's next hops on `interfaces`. */
export class NeighborManager {
  private readonly managed = new Map<string, NextHop>();
  private readonly routeCache = new Map<string, NextHop | null>();

  constructor(
    private readonly interfaces: string[],
    private readonly warn: (msg: string) => void,
  ) {}

  /** The next hop towards `dst` per the kernel's FIB (cached: routes to pods rarely move), if it leaves through an external interface. */
  async nextHopFor(dst: string): Promise<NextHop | null> {
    return (await this.nextHopsFor([dst])).get(dst) ?? null;
  }

  /**
   * {@link NeighborManager.nextHopFor} for many destinations at once (one
   * `ip` process for all that are not cached).
   * @returns each destination's next hop; null when its route leaves through
   *   another interface or there is none (warned about, not cached)
   */
  async nextHopsFor(dsts: Iterable<string>): Promise<Map<string, NextHop | null>> {
    const all = [...new Set(dsts)];
    await this.lookUp(all);
    return new Map(all.map((d) => [d, this.routeCache.get(d) ?? null]));
  }

  /**
   * Look up the routes to every destination of `dsts` that is not cached
   * yet, in one `ip -j -force -batch -` run (one JSON array per line, each
   * naming its `dst`). A destination the kernel has no route to, or that is
   * no IPv4 address, is warned about and left uncached, so that the next
   * refresh asks again.
   */
  private async lookUp(dsts: readonly string[]): Promise<void> {
    const todo = dsts.filter((d) => !this.routeCache.has(d));
    // Only addresses go to ip: it exits at the first malformed argument, -force or not (-force goes on past RTNETLINK errors only).
    const ask = todo.filter((d) => isIPv4(d));
    if (!todo.length) return;
    let out = '';
    let failed = '';
    try {
      if (ask.length) out = await ip(['-j', '-force', '-batch', '-'], ask.map((d) => `route get ${d}\n`).join(''));
    } catch (e) {
      out = (e as { stdout?: string }).stdout ?? '';
      failed = (e as Error).message;
    }
    for (const line of out.split('\n')) {
      if (!line.trim()) continue;
      for (const r of JSON.parse(line) as Array<{ gateway?: string; dev: string; dst: string }>) {
        this.routeCache.set(r.dst, this.interfaces.includes(r.dev) ? { addr: r.gateway ?? r.dst, dev: r.dev } : null);
      }
    }
    const missing = todo.filter((d) => !this.routeCache.has(d));
    if (missing.length) this.warn(`neighbours: no route to backend${missing.length > 1 ? 's' : ''} ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}${failed ? ` (${failed.split('\n')[0]})` : ''}`);
  }

  /**
   * Make sure the default gateways and the next hops towards `remoteBackends`
   * (IPv4 addresses) have managed neighbour entries. Failures are warnings:
   * the flows through that next hop drop with `fib_lookup` until it resolves.
   */
  async ensure(remoteBackends: Iterable<string>): Promise<void> {
    const want = new Map<string, NextHop>();
    try {
      const defaults = JSON.parse(await ip(['-j', '-4', 'route', 'show', 'default'])) as Array<{ gateway?: string; dev?: string; nexthops?: Array<{ gateway: string; dev: string }> }>;
      for (const d of defaults) {
        for (const h of d.nexthops ?? [{ gateway: d.gateway!, dev: d.dev! }]) {
          if (h.gateway && this.interfaces.includes(h.dev)) want.set(`${h.gateway}%${h.dev}`, { addr: h.gateway, dev: h.dev });
        }
      }
    } catch (e) {
      this.warn(`neighbours: reading default routes failed: ${(e as Error).message}`);
    }
    for (const hop of (await this.nextHopsFor(remoteBackends)).values()) if (hop) want.set(`${hop.addr}%${hop.dev}`, hop);
    for (const [key, hop] of want) {
      if (this.managed.has(key)) continue;
      try {
        await ip(['neigh', 'replace', hop.addr, 'dev', hop.dev, 'managed', 'extern_learn']);
        this.managed.set(key, hop);
      } catch (e) {
        this.warn(`neighbours: cannot manage ${hop.addr} on ${hop.dev}: ${(e as Error).message}`);
      }
    }
    for (const [key, hop] of [...this.managed]) {
      if (want.has(key)) continue;
      await ip(['neigh', 'del', hop.addr, 'dev', hop.dev]).catch(() => undefined);
      this.managed.delete(key);
    }
  }

  /**
   * Wait until every managed next hop has a MAC that bpf_fib_lookup can use
   * (a NUD_VALID state), polling `ip -j -4 neigh show` every `pollMs`.
   * @param timeoutMs how long to wait at most, ms
   * @returns the next hops still unresolved at the deadline (empty when all are)
   */
  async awaitResolved(timeoutMs: number, pollMs = 10): Promise<NextHop[]> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      let unresolved = [...this.managed.values()];
      if (!unresolved.length) return [];
      try {
        const entries = JSON.parse(await ip(['-j', '-4', 'neigh', 'show'])) as Array<{ dst: string; dev: string; state?: string[] }>;
        const valid = new Set(entries.filter((e) => e.state?.some((st) => VALID_STATES.has(st))).map((e) => `${e.dst}%${e.dev}`));
        unresolved = unresolved.filter((h) => !valid.has(`${h.addr}%${h.dev}`));
      } catch (e) {
        this.warn(`neighbours: reading the neighbour table failed: ${(e as Error).message}`);
      }
      if (!unresolved.length || performance.now() >= deadline) return unresolved;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Next hops currently managed. */
  list(): NextHop[] {
    return [...this.managed.values()];
  }

  /**
   * Stop managing: remove every entry this manager made, unless
   * `keepEntries` (a restart: the programs that stay attached keep
   * forwarding through them, and the next agent takes them over).
   */
  async stop(opts: { keepEntries?: boolean } = {}): Promise<void> {
    if (!opts.keepEntries) for (const hop of this.managed.values()) await ip(['neigh', 'del', hop.addr, 'dev', hop.dev]).catch(() => undefined);
    this.managed.clear();
  }
}

/**
 * Keeps the kernel's neighbour entries resolved for every next hop the XDP
 * program forwards to. bpf_fib_lookup in XDP cannot trigger ARP: without an
 * entry it answers BPF_FIB_LKUP_RET_NO_NEIGH and the packet is dropped
 * (`fib_lookup`). Cilium solves this the same way: the agent installs
 * "managed" neighbour entries (NTF_EXT_MANAGED, Linux >= 5.16), which the
 * kernel resolves and keeps reachable by itself.
 *
 * Next hops: the gateways of the default routes (replies to clients) and the
 * route towards each remote backend (its gateway, or the backend itself when
 * it is on-link). Entries are made with iproute2 (`ip neigh replace ...
 * managed extern_learn`) and removed on stop.
 */
import { execFile } from 'node:child_process';

function ip(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('ip', args, { timeout: 5000 }, (err, stdout, stderr) => (err ? reject(new Error(`ip ${args.join(' ')}: ${(stderr || err.message).trim()}`)) : resolve(stdout))),
  );
}

/** A next hop: address and the interface it is reached through. */
export interface NextHop {
  addr: string;
  dev: string;
}

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
    if (this.routeCache.has(dst)) return this.routeCache.get(dst)!;
    const [r] = JSON.parse(await ip(['-j', 'route', 'get', dst])) as Array<{ gateway?: string; dev: string; dst: string }>;
    const hop = r && this.interfaces.includes(r.dev) ? { addr: r.gateway ?? dst, dev: r.dev } : null;
    this.routeCache.set(dst, hop);
    return hop;
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
    for (const b of remoteBackends) {
      try {
        const hop = await this.nextHopFor(b);
        if (hop) want.set(`${hop.addr}%${hop.dev}`, hop);
      } catch (e) {
        this.warn(`neighbours: no route to backend ${b}: ${(e as Error).message}`);
      }
    }
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

  /** Next hops currently managed. */
  list(): NextHop[] {
    return [...this.managed.values()];
  }

  /** Remove every entry this manager made. */
  async stop(): Promise<void> {
    for (const hop of this.managed.values()) await ip(['neigh', 'del', hop.addr, 'dev', hop.dev]).catch(() => undefined);
    this.managed.clear();
  }
}

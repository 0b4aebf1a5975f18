/**
 * Layer 2 ownership through one coordination.k8s.io Lease per service, for
 * the Kubernetes source (as Cilium's L2 announcements and kube-vip do): the
 * holder of a service's Lease answers ARP for all of that service's VIPs.
 *
 * - Each service this node is a candidate for gets a {@link LeaseElector}
 *   on the Lease `xlb-l2-<namespace>-<name>` (shortened with a hash when
 *   too long) in `namespace`; its holder identity is the node name.
 * - Spreading: Lease election is first come, first served, so without care
 *   the fastest node would own everything. A node starts campaigning for a
 *   service after a delay that grows with its rank in the service's
 *   rendezvous order over the candidates it has seen hold that Lease (and
 *   itself): the same hashing as the `peers` strategy (ownership.ts), so
 *   services spread over the nodes that serve them. The delay is only a
 *   preference: any candidate takes a free Lease within one retry period.
 * - A node whose links are down, or that stops being a candidate, stops
 *   its elector, which releases the Lease (holder emptied), so another
 *   candidate takes it at its next retry: a hand-over within about one
 *   retry period. A node that dies keeps the Lease until it expires
 *   (`leaseDurationSeconds`), then the next candidate takes it.
 * - Agent restarts: `stop({ restart: true })` stops the electors without
 *   releasing the Leases (the node keeps answering ARP across the restart);
 *   a Lease outlives a restart shorter than `leaseDurationSeconds` (5 s by
 *   default), since its holder is this node's name, which the next agent
 *   campaigns as and renews at once. The next agent adopts the VIPs it finds
 *   in the ARP map ({@link LeaseOwnership.adopt}) and keeps answering them
 *   until the first renewal of their service's Lease says whether it still
 *   holds it (kept) or another node took it after a longer restart (given
 *   up).
 * - API cost: the holder renews each Lease every retry period (one GET and
 *   one PUT), and every other candidate reads it as often: about
 *   2 × services / retryPeriod requests per second from the holders, as
 *   with Cilium.
 */
import { createHash } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
export { l2LeaseSchema, type L2LeaseConfig } from './config.js';
import type { Logger } from 'pino';
import { kubeLeaseClient, LeaseElector, type LeaseClient } from '../leader/elector.js';
import type { L2LeaseConfig } from './config.js';
import type { LinkHealth } from './ownership.js';
import { rendezvousOrder } from './ownership.js';
import type { PeerStatus } from './heartbeat.js';
import type { CandidateVip, OwnershipStrategy, StrategyCounters, VipOwner } from './strategy.js';

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/**
 * The Lease name of a service (`namespace/name`, or several comma-joined when
 * they share a VIP): `xlb-l2-<namespace>-<name>`, a DNS-1123 subdomain; names
 * over 63 characters keep a prefix and end in a hash of the whole key, so
 * that they stay unique and readable.
 */
export function l2LeaseName(service: string): string {
  const base = `xlb-l2-${service.replace(/\//g, '-').replace(/,/g, '.')}`.toLowerCase().replace(/[^a-z0-9.-]/g, '-');
  if (base.length <= 63 && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(base)) return base;
  const hash = createHash('sha256').update(service).digest('hex').slice(0, 10);
  return `${base.slice(0, 52).replace(/[-.]+$/, '')}-${hash}`;
}

/** Options of {@link LeaseOwnership}. */
export interface LeaseOwnershipOptions {
  /** This node's name: the holder identity. */
  nodeName: string;
  config: L2LeaseConfig;
  log?: Log;
  /** Lease access: a kubeconfig (client-node), or a client (tests). */
  kubeConfig?: KubeConfig;
  leaseClient?: LeaseClient;
}

interface ServiceLease {
  leaseName: string;
  vips: Set<string>;
  elector?: LeaseElector;
  startTimer?: NodeJS.Timeout;
  leading: boolean;
  /** When this node took the Lease (ms since the epoch). */
  since?: number;
  /** The holder as last observed, and since when this node knows it. */
  holder?: string;
  holderSince?: number;
}

/**
 * The electors' Lease access, which a restart stop turns read-and-write-
 * nothing: LeaseElector.stop() releases a held Lease, and a restart must
 * keep it. With `keep` set, reads find no Lease (so the release, which reads
 * first, has nothing to give back) and writes fail.
 */
class KeepableLeaseClient implements LeaseClient {
  keep = false;
  constructor(private readonly inner: LeaseClient) {}
  get(namespace: string, name: string) {
    return this.keep ? Promise.resolve(undefined) : this.inner.get(namespace, name);
  }
  create(namespace: string, lease: Parameters<LeaseClient['create']>[1]) {
    return this.keep ? Promise.reject(new Error('kept across the agent restart: no write')) : this.inner.create(namespace, lease);
  }
  replace(namespace: string, name: string, lease: Parameters<LeaseClient['replace']>[2]) {
    return this.keep ? Promise.reject(new Error('kept across the agent restart: no write')) : this.inner.replace(namespace, name, lease);
  }
}

/** Ownership by one Lease per service. See the module comment. */
export class LeaseOwnership implements OwnershipStrategy {
  readonly kind = 'lease';
  private readonly services = new Map<string, ServiceLease>();
  private readonly client: KeepableLeaseClient;
  /**
   * VIPs found in the ARP map at start, owned until decided: before the
   * first update() all of them; after it, those of a service whose Lease
   * this node may still hold (not yet read, or read with this node as
   * holder). Emptied as each is decided.
   */
  private adopted = new Set<string>();
  private adoptCalled = false;
  private updated = false;
  /** Every holder seen on any of the Leases: the candidates rendezvous ranks this node among. */
  private readonly seenNodes = new Set<string>();
  private owning = new Map<string, number>();
  private readonly listeners: Array<() => void> = [];
  private readonly stats: StrategyCounters = { sent: 0, received: 0, rejected: 0, sendErrors: 0 };
  private health: LinkHealth = 'down';
  private started = false;
  private stopped = false;
  private readonly times: { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number };

  constructor(private readonly opts: LeaseOwnershipOptions) {
    if (!opts.kubeConfig && !opts.leaseClient) throw new Error('l2 lease ownership: needs the Kubernetes source (a kubeconfig)');
    const c = opts.config;
    this.times = { leaseDurationMs: c.leaseDurationSeconds * 1000, renewDeadlineMs: c.renewDeadlineSeconds * 1000, retryPeriodMs: c.retryPeriodSeconds * 1000 };
    this.seenNodes.add(opts.nodeName);
    this.client = new KeepableLeaseClient(opts.leaseClient ?? kubeLeaseClient(opts.kubeConfig as KubeConfig));
  }

  adopt(vips: readonly string[], health: LinkHealth): void {
    if (this.updated || this.stopped) return;
    if (!this.adoptCalled) this.adopted = new Set(vips);
    else for (const vip of [...this.adopted]) if (!vips.includes(vip)) this.adopted.delete(vip);
    this.adoptCalled = true;
    this.health = health;
    if (health === 'down') this.adopted.clear();
    this.recompute();
  }

  async start(): Promise<void> {
    this.started = true;
  }

  update(candidates: readonly CandidateVip[], health: LinkHealth): void {
    if (this.stopped) return;
    this.updated = true;
    this.health = health;
    const want = new Map<string, Set<string>>();
    if (health !== 'down') {
      for (const c of candidates) {
        let vips = want.get(c.service);
        if (!vips) want.set(c.service, (vips = new Set()));
        vips.add(c.vip);
      }
    }
    for (const [service, st] of this.services) {
      if (!want.has(service)) {
        this.services.delete(service);
        void this.retire(st);
      }
    }
    for (const [service, vips] of want) {
      const st = this.services.get(service);
      if (st) st.vips = vips;
      else this.campaign(service, vips);
    }
    this.recompute();
  }

  owned(): ReadonlyMap<string, number> {
    return this.owning;
  }

  ownerOf(vip: string): VipOwner {
    for (const st of this.services.values()) {
      if (!st.vips.has(vip)) continue;
      if (st.leading) return { owner: this.opts.nodeName, since: st.since };
      return st.holder ? { owner: st.holder, since: st.holderSince } : {};
    }
    return {};
  }

  /** The other nodes seen holding a Lease (no liveness of their own in this mode: the Lease is it). */
  peers(): PeerStatus[] {
    return [];
  }

  counters(): StrategyCounters {
    return { ...this.stats };
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /**
   * Release every Lease (hand-over), then stop; with `restart`, stop the
   * electors and keep the Leases (see the module comment). Idempotent.
   */
  async stop(opts: { restart?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (opts.restart) this.client.keep = true;
    const all = [...this.services.values()];
    this.services.clear();
    this.recompute();
    await Promise.all(all.map((st) => this.retire(st)));
    if (opts.restart) this.opts.log?.info({ leases: all.filter((st) => st.leading).length }, 'l2: leases kept for the next agent (not released)');
  }

  // ---------------------------------------------------------------------------

  /** Start competing for a service's Lease, after this node's preference delay. */
  private campaign(service: string, vips: Set<string>): void {
    const st: ServiceLease = { leaseName: l2LeaseName(service), vips, leading: false };
    this.services.set(service, st);
    const rank = rendezvousOrder(service, [...this.seenNodes]).indexOf(this.opts.nodeName);
    const delay = Math.min(rank, 4) * (this.times.retryPeriodMs / 4);
    const begin = () => {
      st.startTimer = undefined;
      if (this.stopped || this.services.get(service) !== st) return;
      st.elector = new LeaseElector(
        {
          kubeConfig: this.opts.kubeConfig as KubeConfig,
          namespace: this.opts.config.namespace,
          name: st.leaseName,
          identity: this.opts.nodeName,
          ...this.times,
          log: this.opts.log ?? silent,
          onStartedLeading: () => {
            st.leading = true;
            st.since = Date.now();
            this.stats.sent++;
            this.recompute();
          },
          onStoppedLeading: () => {
            st.leading = false;
            st.since = undefined;
            this.recompute();
          },
          onNewLeader: (holder) => {
            this.stats.received++;
            st.holder = holder;
            st.holderSince = Date.now();
            if (holder) this.seenNodes.add(holder);
            // An adopted VIP whose Lease another node holds is given up now.
            if (this.adopted.size) this.recompute();
            this.notify();
          },
        },
        this.client,
      );
      st.elector.start();
    };
    if (delay > 0) st.startTimer = setTimeout(begin, delay);
    else begin();
  }

  /** Stop a service's elector (releasing its Lease if held). */
  private async retire(st: ServiceLease): Promise<void> {
    if (st.startTimer) clearTimeout(st.startTimer);
    st.startTimer = undefined;
    const leading = st.leading;
    st.leading = false;
    if (leading) this.recompute();
    try {
      await st.elector?.stop();
    } catch (e) {
      this.stats.sendErrors++;
      this.opts.log?.warn({ lease: st.leaseName, err: (e as Error).message }, 'l2: lease release failed; it expires on its own');
    }
  }

  private recompute(): void {
    const next = new Map<string, number>();
    if (!this.stopped && this.health !== 'down') {
      for (const st of this.services.values()) {
        if (!st.leading) continue;
        for (const vip of st.vips) next.set(vip, this.owning.get(vip) ?? st.since ?? Date.now());
      }
      if (this.updated) {
        // Adopted VIPs stay while their service's Lease may still be ours
        // (not read yet, or read with this node as holder and the renewal
        // under way); a VIP no longer desired, or whose Lease another holds, is given up.
        for (const vip of [...this.adopted]) {
          const st = [...this.services.values()].find((x) => x.vips.has(vip));
          if (!st || st.leading || (st.holder !== undefined && st.holder !== this.opts.nodeName)) this.adopted.delete(vip);
        }
      }
      for (const vip of this.adopted) if (!next.has(vip)) next.set(vip, this.owning.get(vip) ?? Date.now());
    }
    const same = next.size === this.owning.size && [...next.keys()].every((v) => this.owning.has(v));
    this.owning = next;
    if (!same) this.notify();
  }

  private notify(): void {
    if (!this.started) return;
    for (const l of this.listeners) {
      try {
        l();
      } catch (e) {
        this.opts.log?.error({ err: (e as Error).message }, 'l2: ownership listener failed');
      }
    }
  }
}

const silent: Log = { debug() {}, info() {}, warn() {}, error() {} };

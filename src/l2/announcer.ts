/**
 * The layer 2 announcer, after MetalLB's and Cilium's L2 modes: for each VIP
 * it owns, this node answers ARP on its announcing interfaces (through the
 * XDP ARP responder's map, xdp/include/xlb_arp.h) and no other node does.
 *
 * The agent gives it the VIPs this node may announce (setDesired: services
 * with a ready backend it can serve); an OwnershipStrategy (heartbeats
 * between peers, or Kubernetes Leases: strategy.ts) says which of them this
 * node owns; the announcer converges the ARP map to owned VIPs ×
 * interfaces, sends gratuitous ARP when it takes a VIP over, and removes
 * the entries when it loses one.
 *
 * A VIP may be limited to some of the announcing interfaces
 * (AnnouncedVip.interfaces, from an L2AnnouncementPolicy): its entries are
 * written, and its gratuitous ARP sent, on those only. Link health stays the
 * node's (every announcing interface), as it is what peers compare.
 *
 * Links are watched: when every announcing interface has lost carrier the
 * node owns nothing at once (it cannot answer anyway, and must not come back
 * with stale claims); when an interface comes back, the VIPs it still owns
 * are announced on it again. stop() hands the VIPs over (the strategy tells
 * the peers at once) and removes the map entries.
 *
 * Agent restarts keep the VIPs answered: `stop({ restart: true })` leaves
 * this node's entries in the ARP map (XDP keeps answering), hands nothing
 * over, and asks the peers to hold this node's VIPs (or keeps the Leases).
 * The next start over the same map adopts the VIPs it finds there for this
 * node's interfaces: it keeps answering them, and claims them, until its
 * first setDesired decides; entries for interfaces it no longer announces
 * on are removed. A kill -9 leaves the map just the same, but the peers
 * were not told: they take its VIPs after the dead-after window, and the
 * restarted node leaves those to them.
 */
import type { Logger } from 'pino';
import type { Announcer, AnnouncedVip } from '../announce/announcer.js';
import { arpKeyString, type ArpEntry, type L2Maps } from '../datapath/l2maps.js';
import { isIPv4 } from '../util/ip.js';
import type { L2Config } from './config.js';
import { ArpingGarpSender, checkArping, ensureNonlocalBind, type GarpSender } from './garp.js';
import type { PeerStatus } from './heartbeat.js';
import { IpLinkMonitor, linkHealth, resolveInterfaces, type AnnounceInterface, type LinkInfo, type LinkMonitor } from './interfaces.js';
import type { LinkHealth } from './ownership.js';
import { PeerOwnership, type HeartbeatTransport } from './peer-ownership.js';
import type { OwnershipStrategy } from './strategy.js';

/** Retry delay after a failed map write, ms. */
const MAP_RETRY_MS = 500;

/** Runtime options that are not part of the `l2:` config section. */
export interface L2AnnouncerOptions {
  /** This node's name (`node.name`): heartbeats carry it, and `l2.peers` may list it. */
  nodeName: string;
  /** The agent's `interfaces` (they carry the XDP program); the default of `l2.interfaces`. */
  xdpInterfaces: string[];
  /** The ARP responder's map (Datapath's BpfL2Maps; FakeL2Maps in tests). */
  maps: L2Maps;
  /** Default: {@link PeerOwnership} built from the config. */
  strategy?: OwnershipStrategy;
  /** The default strategy's socket; default UDP. */
  transport?: HeartbeatTransport;
  /** Default: {@link ArpingGarpSender} (then arping and ip_nonlocal_bind are checked at start). */
  garp?: GarpSender;
  /** Default: {@link IpLinkMonitor}. */
  links?: LinkMonitor;
  log?: Logger;
}

/** One VIP in {@link L2Status}. */
export interface L2VipStatus {
  vip: string;
  /** `namespace/name` of the service(s), comma-joined. */
  service: string;
  /** The owner node as this node knows it; null when nobody owns it (yet). */
  owner: string | null;
  /** This node answers ARP for it. */
  local: boolean;
  /** Interfaces this node answers on (empty when another node owns it). */
  interfaces: string[];
  /** When the owner took it (or this node first saw it own it), ISO 8601; null without owner. */
  since: string | null;
}

/** One announcing interface in {@link L2Status}. */
export interface L2InterfaceStatus {
  name: string;
  ifindex: number;
  xdpInterface: string;
  vlan: number;
  mac: string;
  up: boolean;
}

/** Counters for metrics (all since start). */
export interface L2Metrics {
  /** VIPs this node answers ARP for now. */
  ownedVips: number;
  /** VIPs this node took over (each time it became owner). */
  takeoversTotal: number;
  /** Gratuitous ARP frames sent / failed. */
  garpSent: number;
  garpFailed: number;
  heartbeatsSent: number;
  heartbeatsReceived: number;
  /** Malformed, stale or from unknown senders. */
  heartbeatsRejected: number;
  heartbeatSendErrors: number;
  mapWriteFailures: number;
}

/** What {@link L2Announcer.status} returns (JSON-serialisable), for `GET /v1/l2`. */
export interface L2Status {
  announcer: 'l2';
  node: string;
  /** The ownership strategy: `peers` (or `lease`). */
  ownership: string;
  health: LinkHealth;
  interfaces: L2InterfaceStatus[];
  vips: L2VipStatus[];
  /**
   * VIPs found in the ARP map at start (left by the previous agent) that
   * this node still answers for while no setDesired has decided; empty
   * after the first one.
   */
  adopted: string[];
  peers: PeerStatus[];
  takeovers: number;
  counters: L2Metrics;
  lastError?: { message: string; at: string };
}

const ipOrder = (ip: string): number => ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);

/** Announces VIPs on layer 2. Create with {@link L2Announcer.start}. */
export class L2Announcer implements Announcer {
  private readonly log?: Logger;
  private readonly maps: L2Maps;
  private readonly strategy: OwnershipStrategy;
  private readonly garp: GarpSender;
  private readonly links: LinkMonitor;
  private readonly names: string[];
  private ifaces: AnnounceInterface[] = [];
  private health: LinkHealth = 'down';
  /** Desired VIP -> service. */
  private services = new Map<string, string>();
  /** Per VIP, the interfaces it is limited to (absent: all of them). */
  private vipInterfaces = new Map<string, ReadonlySet<string>>();
  /**
   * The strategy hears of this node only after the first setDesired: until
   * the agent's first sync, an empty set would mean "wants nothing", and
   * peers would take (and, being sticky, keep) this node's share.
   */
  private desiredKnown = false;
  /** Map entries written, by arpKeyString. */
  private readonly written = new Map<string, ArpEntry>();
  /** VIPs owned at the last reconcile (to see takeovers and losses). */
  private announced = new Set<string>();
  private takeovers = 0;
  private mapWriteFailures = 0;
  private retryTimer?: NodeJS.Timeout;
  private stopped = false;
  /** Stopped for a restart: the map is left as it is. */
  private restarting = false;
  /** VIPs adopted from the ARP map at start, until the first setDesired. */
  private adopted = new Set<string>();
  private lastError?: { message: string; at: string };

  private constructor(
    private readonly config: L2Config,
    private readonly opts: L2AnnouncerOptions,
  ) {
    this.log = opts.log;
    this.maps = opts.maps;
    this.names = config.interfaces ?? opts.xdpInterfaces;
    const self = config.peers.find((p) => p.name === opts.nodeName);
    this.strategy =
      opts.strategy ??
      new PeerOwnership({
        nodeName: opts.nodeName,
        peers: config.peers.map((p) => ({ name: p.name, address: p.address, port: p.port ?? config.port })),
        bindAddress: config.bindAddress ?? self?.address ?? '0.0.0.0',
        port: self?.port ?? config.port,
        intervalMs: config.heartbeat.intervalMs,
        deadAfterMissed: config.heartbeat.deadAfterMissed,
        restartHoldMs: config.heartbeat.restartHoldMs,
        transport: opts.transport,
        log: opts.log,
      });
    this.garp = opts.garp ?? new ArpingGarpSender({ count: config.gratuitousArp.count, intervalMs: config.gratuitousArp.intervalMs, log: opts.log });
    this.links = opts.links ?? new IpLinkMonitor({ log: opts.log });
  }

  /**
   * Check the environment, resolve the interfaces, adopt the ARP map entries
   * an earlier run left for this node's interfaces (the VIPs stay answered
   * until the first setDesired decides; see the module comment) and remove
   * the others, and start the ownership strategy and link watch.
   * @throws Error naming the config key: `l2.interfaces[i]` (missing, no XDP
   *   on it or its parent), `l2.gratuitousArp` (arping, ip_nonlocal_bind),
   *   the heartbeat socket (port in use); the ARP map is left as found then
   *   (the previous agent's VIPs stay answered), but for entries of
   *   interfaces this node does not announce on
   */
  static async start(config: L2Config, opts: L2AnnouncerOptions): Promise<L2Announcer> {
    const a = new L2Announcer(config, opts);
    try {
      await a.init();
      return a;
    } catch (e) {
      await a.stop({ restart: true }).catch(() => {});
      throw e;
    }
  }

  private async init(): Promise<void> {
    if (!this.opts.garp && this.config.gratuitousArp.count > 0) {
      await checkArping();
      if (ensureNonlocalBind(this.config.gratuitousArp.setNonlocalBind))
        this.log?.warn('l2: set net.ipv4.ip_nonlocal_bind=1 so that arping can send gratuitous ARP from VIPs (l2.gratuitousArp.setNonlocalBind)');
    }
    this.ifaces = resolveInterfaces(this.names, await this.links.read(), this.opts.xdpInterfaces);
    this.health = linkHealth(this.ifaces);
    this.adoptEntries();
    this.strategy.onChange(() => this.reconcile());
    try {
      await this.strategy.start();
    } catch (e) {
      throw new Error(`l2.port / l2.bindAddress (default: this node's l2.peers address, else 0.0.0.0): ${(e as Error).message}`);
    }
    await this.links.start((links) => this.onLinks(links));
    // The adopted VIPs on interfaces that had no entry for them yet (l2.interfaces grew).
    this.reconcile();
    this.log?.info({ interfaces: this.ifaces.map((i) => i.name), health: this.health, ownership: this.strategy.kind }, 'l2 announcer started');
  }

  /**
   * Take over the ARP map entries an earlier run left (an agent restart keeps
   * them): an entry for one of this node's announcing interfaces (same XDP
   * ifindex, VLAN and MAC) is kept and its VIP adopted as owned; any other
   * entry is removed.
   */
  private adoptEntries(): void {
    const found = this.maps.list();
    const keep: ArpEntry[] = [];
    const drop: ArpEntry[] = [];
    for (const e of found) {
      const mine = this.ifaces.some((i) => i.xdpIfindex === e.ifindex && i.vlan === e.vlan && i.mac === e.mac);
      (mine ? keep : drop).push(e);
    }
    if (drop.length) {
      this.maps.delete(drop);
      this.log?.info({ entries: drop.length }, 'l2: removed ARP entries left by an earlier run for interfaces this node does not announce on');
    }
    const vips = new Set(keep.map((e) => e.vip));
    if (this.health === 'down') vips.clear();
    for (const e of keep) {
      if (vips.has(e.vip)) this.written.set(arpKeyString(e), e);
      else this.maps.delete([e]);
    }
    this.adopted = vips;
    // Clients already find these VIPs here: no gratuitous ARP for them.
    this.announced = new Set(vips);
    this.strategy.adopt([...vips], this.health);
    if (vips.size) this.log?.info({ vips: [...vips] }, 'l2: answering the VIPs the previous agent left in the ARP map until the first sync decides');
  }

  /**
   * Replace the VIPs this node may announce. Which of them it owns is the
   * strategy's decision; the map follows within one reconcile.
   * @throws Error naming `vips[i].vip` when one is not IPv4; nothing is applied then
   */
  async setDesired(vips: AnnouncedVip[]): Promise<void> {
    const next = new Map<string, string>();
    const ifaces = new Map<string, Set<string> | 'all'>();
    vips.forEach((v, i) => {
      if (typeof v.vip !== 'string' || !isIPv4(v.vip)) throw new Error(`vips[${i}].vip: ${JSON.stringify(v.vip)} is not an IPv4 address (layer 2 mode answers ARP, IPv4 only)`);
      const prev = next.get(v.vip);
      next.set(v.vip, prev && prev !== v.service ? [...new Set([...prev.split(','), v.service])].sort().join(',') : v.service);
      // Two services on one VIP: the union of their interfaces (all, when one has no limit).
      const had = ifaces.get(v.vip);
      if (had === 'all' || v.interfaces === undefined) ifaces.set(v.vip, 'all');
      else ifaces.set(v.vip, new Set([...(had ?? []), ...v.interfaces]));
    });
    const before = this.vipInterfaces;
    this.services = next;
    this.vipInterfaces = new Map([...ifaces].filter((e): e is [string, Set<string>] => e[1] !== 'all'));
    this.desiredKnown = true;
    this.adopted.clear();
    if (this.stopped) return;
    this.strategy.update(this.candidates(), this.health);
    // An owned VIP whose interfaces changed: its entries follow, and the interfaces it gained learn where it is.
    const owned = this.strategy.owned();
    const gainedOn: Array<[string, string]> = [];
    for (const vip of owned.keys()) {
      if (!this.announced.has(vip)) continue;
      for (const i of this.ifaces) if (i.up && this.announcesOn(vip, i.name) && !(before.get(vip)?.has(i.name) ?? true)) gainedOn.push([vip, i.name]);
    }
    this.reconcile();
    for (const [vip, name] of gainedOn) this.garp.announce(vip, name);
  }

  /** Whether `vip` is answered on interface `name` (every interface unless limited). */
  private announcesOn(vip: string, name: string): boolean {
    const only = this.vipInterfaces.get(vip);
    return !only || only.has(name);
  }

  private candidates(): Array<{ vip: string; service: string }> {
    return [...this.services].map(([vip, service]) => ({ vip, service }));
  }

  private onLinks(links: LinkInfo[]): void {
    if (this.stopped) return;
    let next: AnnounceInterface[];
    try {
      next = resolveInterfaces(this.names, links, this.opts.xdpInterfaces);
    } catch (e) {
      // An interface vanished or changed kind: it cannot answer; keep the rest.
      this.setError(`l2: ${(e as Error).message}`);
      const byName = new Map(links.map((l) => [l.ifname, l]));
      next = this.ifaces.map((i) => {
        try {
          return resolveInterfaces([i.name], [...byName.values()], this.opts.xdpInterfaces)[0];
        } catch {
          return { ...i, up: false };
        }
      });
    }
    const cameUp = next.filter((n) => n.up && !this.ifaces.find((o) => o.name === n.name)?.up);
    const wentDown = next.filter((n) => !n.up && this.ifaces.find((o) => o.name === n.name)?.up);
    this.ifaces = next;
    const health = linkHealth(next);
    if (cameUp.length || wentDown.length)
      this.log?.warn({ up: cameUp.map((i) => i.name), down: wentDown.map((i) => i.name), health }, 'l2: announcing interface carrier changed');
    this.health = health;
    if (this.desiredKnown) this.strategy.update(this.candidates(), health);
    else {
      if (health === 'down') this.adopted.clear();
      this.strategy.adopt([...this.adopted], health);
    }
    this.reconcile();
    // VIPs kept through a link flap: tell that segment where they are again.
    for (const vip of this.strategy.owned().keys()) if (this.announced.has(vip)) for (const i of cameUp) if (this.announcesOn(vip, i.name)) this.garp.announce(vip, i.name);
  }

  /** Converge the ARP map to owned VIPs × interfaces; gratuitous ARP for VIPs just taken over. */
  private reconcile(): void {
    // Stopped for a restart: the entries stay for XDP to answer with, and for the next agent.
    if (this.restarting) return;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    const owned = this.stopped ? new Set<string>() : new Set(this.strategy.owned().keys());
    const want = new Map<string, ArpEntry>();
    for (const vip of owned) {
      for (const i of this.ifaces) {
        if (!this.announcesOn(vip, i.name)) continue;
        const e: ArpEntry = { vip, ifindex: i.xdpIfindex, vlan: i.vlan, mac: i.mac };
        want.set(arpKeyString(e), e);
      }
    }
    const put = [...want].filter(([k, e]) => this.written.get(k)?.mac !== e.mac).map(([, e]) => e);
    const del = [...this.written].filter(([k]) => !want.has(k)).map(([, e]) => e);
    try {
      if (put.length) this.maps.put(put);
      for (const e of put) this.written.set(arpKeyString(e), e);
      if (del.length) this.maps.delete(del);
      for (const e of del) this.written.delete(arpKeyString(e));
    } catch (e) {
      this.mapWriteFailures++;
      this.setError(`l2: ARP map write failed: ${(e as Error).message}`);
      if (!this.stopped) {
        this.retryTimer = setTimeout(() => this.reconcile(), MAP_RETRY_MS);
        this.retryTimer.unref();
      }
    }
    const lost = [...this.announced].filter((v) => !owned.has(v));
    const gained = [...owned].filter((v) => !this.announced.has(v));
    for (const vip of lost) this.adopted.delete(vip);
    for (const vip of lost) this.garp.cancel(vip);
    for (const vip of gained) {
      this.takeovers++;
      for (const i of this.ifaces) if (i.up && this.announcesOn(vip, i.name)) this.garp.announce(vip, i.name);
    }
    if (lost.length || gained.length) this.log?.info({ gained, lost, owned: owned.size }, 'l2: VIP ownership changed');
    this.announced = owned;
  }

  private setError(message: string): void {
    this.lastError = { message, at: new Date().toISOString() };
    this.log?.error(message);
  }

  /** A JSON-serialisable snapshot for `GET /v1/l2`. */
  status(): L2Status {
    const owned = this.strategy.owned();
    const s: L2Status = {
      announcer: 'l2',
      node: this.opts.nodeName,
      ownership: this.strategy.kind,
      health: this.health,
      interfaces: this.ifaces.map((i) => ({ name: i.name, ifindex: i.ifindex, xdpInterface: i.xdpInterface, vlan: i.vlan, mac: i.mac, up: i.up })),
      vips: [...this.services]
        .sort(([a], [b]) => ipOrder(a) - ipOrder(b))
        .map(([vip, service]) => {
          const o = this.strategy.ownerOf(vip);
          const local = owned.has(vip);
          const on = local ? this.ifaces.filter((i) => this.announcesOn(vip, i.name)).map((i) => i.name) : [];
          return { vip, service, owner: o.owner ?? null, local, interfaces: on, since: o.since !== undefined ? new Date(o.since).toISOString() : null };
        }),
      adopted: [...this.adopted].filter((v) => owned.has(v)).sort((a, b) => ipOrder(a) - ipOrder(b)),
      peers: this.strategy.peers(),
      takeovers: this.takeovers,
      counters: this.metrics(),
    };
    if (this.lastError) s.lastError = this.lastError;
    return s;
  }

  /** Counters for the agent's metrics (`xlb_l2_owned_vips`, `xlb_l2_takeovers_total`, ...). */
  metrics(): L2Metrics {
    const g = this.garp.counters();
    const h = this.strategy.counters();
    return {
      ownedVips: this.strategy.owned().size,
      takeoversTotal: this.takeovers,
      garpSent: g.sent,
      garpFailed: g.failed,
      heartbeatsSent: h.sent,
      heartbeatsReceived: h.received,
      heartbeatsRejected: h.rejected,
      heartbeatSendErrors: h.sendErrors,
      mapWriteFailures: this.mapWriteFailures,
    };
  }

  /**
   * Stop watching links and sending gratuitous ARP, and stop the strategy.
   * Idempotent (the first call decides).
   *
   * - By default (an uninstall, a node leaving): hand the VIPs over (the
   *   strategy tells the peers, which take over at once) and remove this
   *   node's ARP map entries.
   * - `restart: true` (the agent stops to start again): leave the entries
   *   in the ARP map, so that XDP keeps answering, hand nothing over; the
   *   peers are asked to hold this node's VIPs for `l2.heartbeat.restartHoldMs`
   *   (the Leases are kept). The next {@link L2Announcer.start} over the
   *   same map adopts them.
   */
  async stop(opts: { restart?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.restarting = opts.restart === true;
    this.links.stop();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    try {
      await this.strategy.stop({ restart: this.restarting });
    } finally {
      this.reconcile(); // stopped: wants nothing, deletes everything written (not on a restart)
      await this.garp.stop();
    }
    if (this.restarting) this.log?.info({ vips: [...this.announced] }, 'l2 announcer stopped for a restart: the ARP map keeps answering for its VIPs');
  }
}

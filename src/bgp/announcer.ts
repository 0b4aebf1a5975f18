/**
 * The BGP announcer: announces this node's VIPs as IPv4 /32 routes through one
 * gobgpd, after MetalLB's BGP speaker. The agent sets the desired VIPs; a
 * single serialised reconcile makes gobgpd match them:
 *
 *   GetBgp  → not started (fresh or restarted gobgpd)? StartBgp
 *   ListPeer → AddPeer the missing neighbors, DeletePeer the unknown ones
 *   SetPolicies (once per gobgpd instance) → per-neighbor communities
 *   ListPath → AddPath the missing or changed VIPs, DeletePath the extra
 *
 * It runs when the desired set changes, when gobgpd (re)spawns, every
 * `resyncIntervalMs`, and after a failure with a short backoff. Because it
 * compares with what gobgpd holds rather than remembering what it sent,
 * paths left by a previous agent are withdrawn and a restarted gobgpd gets
 * everything back (StartBgp, peers, paths) within about a second.
 *
 * Agent restarts are hitless for BGP: `stop({ keepRoutes: true })` leaves
 * gobgpd running with its sessions and paths (gobgpd.ts records its pid),
 * and the next start adopts it. Until the agent's first setDesired after
 * that start, nothing is withdrawn: the paths gobgpd holds are the previous
 * agent's decision and stay until this one has made its own (its first
 * sync programmed). A kill -9 of the agent leaves gobgpd running just the
 * same. Routers see nothing: no session flap, no withdraw, no re-advertised
 * route. (Graceful restart, RFC 4724, is the other way; it still flaps the
 * session and needs the router's help, so xlb keeps gobgpd instead.)
 *
 * Neighbors come from `bgp.neighbors` and, with BGPPeer resources
 * (peer-resources.ts), from {@link BgpAnnouncer.setResourcePeers}: added and
 * removed live. A neighbor whose settings change is deleted and added again
 * (its session restarts). With `resourcePeers`, no neighbor unknown to the
 * configuration is removed before the first setResourcePeers: an adopted
 * gobgpd's sessions with resource peers must survive the agent's restart.
 *
 * The announcer owns every locally originated IPv4 unicast /32 in its
 * gobgpd's global RIB, and every peer there: do not share the gobgpd with
 * another writer.
 */
import type { Logger } from 'pino';
import type { Announcer, AnnouncedVip } from '../announce/announcer.js';
import { isIPv4 } from '../util/ip.js';
import { GobgpClient, type NeighborCommunityRule, type PeerConfig, type PeerInfo, type SessionState, type VipPath, type ListedPath } from './client.js';
import { formatCommunity, formatLargeCommunity, parseCommunity, parseLargeCommunity, type LargeCommunity } from './communities.js';
import type { BgpConfig } from './config.js';
import { GobgpdSupervisor, type GobgpdLogLine, type GobgpdOptions } from './gobgpd.js';

/** Periodic resync, ms: catches changes nobody told us about (a gobgpd restarted outside our supervision). */
const DEFAULT_RESYNC_INTERVAL_MS = 2000;

/** Retry delays after a failed reconcile, ms: a restarting gobgpd's API is up within a few hundred ms. */
const RETRY_BACKOFF_MS = [100, 200, 400, 800, 1600, 2000];

/** How long {@link BgpAnnouncer.start} waits for the first successful reconcile, ms. */
const DEFAULT_START_TIMEOUT_MS = 10_000;

/** RFC 4271 section 4.5 NOTIFICATION error codes, for readable peer errors. */
const NOTIFICATION_CODES: Record<number, string> = {
  1: 'message header error',
  2: 'OPEN message error',
  3: 'UPDATE message error',
  4: 'hold timer expired',
  5: 'finite state machine error',
  6: 'cease',
};

/** Runtime options that are not part of the `bgp:` config section. */
export interface BgpAnnouncerOptions {
  /** Next hop when `bgp.nodeAddress` is unset (the agent passes the node's first address). */
  nodeAddress?: string;
  log?: Logger;
  /** Put before gobgpd's argv, e.g. `['ip', 'netns', 'exec', NS]` (tests). */
  commandPrefix?: string[];
  /** Other supervisor settings (restart backoff, stop timeout). */
  gobgpd?: Partial<GobgpdOptions>;
  /** gobgp's API protos; default {@link DEFAULT_PROTO_DIR} of client.ts. */
  protoDir?: string;
  resyncIntervalMs?: number;
  startTimeoutMs?: number;
  /** Neighbors will also come from {@link BgpAnnouncer.setResourcePeers} (BGPPeer resources). */
  resourcePeers?: boolean;
  /** Told when a session changes state (BGPPeer statuses follow it). Must not throw. */
  onPeerState?: (address: string, state: SessionState) => void;
}

/** A neighbor given by a BGPPeer resource. */
export interface ResourcePeer extends PeerConfig {
  /** The BGPPeer's name. */
  resource: string;
}

/** The last error seen on a session, with its time. */
export interface PeerError {
  message: string;
  /** ISO 8601. */
  at: string;
}

/** One neighbor in {@link BgpStatus}. */
export interface BgpPeerStatus {
  address: string;
  asn: number;
  /** The BGPPeer resource it comes from; absent for `bgp.neighbors`. */
  resource?: string;
  state: SessionState;
  /** Seconds since the session became Established; absent when it is not. */
  uptimeSeconds?: number;
  /** IPv4 unicast prefixes received from / accepted from / advertised to the peer. */
  prefixes: { received: number; accepted: number; advertised: number };
  /** NOTIFICATION messages (RFC 4271 section 4.5) since gobgpd started. */
  notifications: { received: number; sent: number };
  /** Times the session left Established since the announcer started (across gobgpd restarts). */
  flaps: number;
  /** Why the session last failed, from gobgpd's log (NOTIFICATION sent/received, session down reason). */
  lastError?: PeerError;
}

/** One announced VIP in {@link BgpStatus}. */
export interface BgpAnnouncedStatus {
  vip: string;
  service: string;
  nextHop: string;
  communities: string[];
  largeCommunities: string[];
  /** LOCAL_PREF, when a BGPAdvertisement sets one. */
  localPref?: number;
}

/** What {@link BgpAnnouncer.status} returns (JSON-serialisable). */
export interface BgpStatus {
  announcer: 'bgp';
  asn: number;
  routerId: string;
  nodeAddress: string;
  gobgpd: {
    target: string;
    external: boolean;
    pid?: number;
    /** The running gobgpd was left by the previous agent and adopted (sessions and paths kept). */
    adopted: boolean;
    /** Where its pid is recorded and its output goes (absent when external). */
    pidFile?: string;
    logFile?: string;
    restarts: number;
    /** gobgpd's last error or fatal log line. */
    lastError?: string;
    lastExit?: { code: number | null; signal: string | null; at: string };
  };
  peers: BgpPeerStatus[];
  /** Desired VIPs that gobgpd holds with the desired attributes. */
  announced: BgpAnnouncedStatus[];
  /** Desired VIPs not (yet) in gobgpd. */
  pending: string[];
  counters: {
    /** StartBgp calls: the first, and one per gobgpd restart. */
    bgpStarts: number;
    gobgpdRestarts: number;
    pathsAdded: number;
    pathsWithdrawn: number;
    peerFlaps: number;
    reconcileFailures: number;
  };
  lastReconcile?: { at: string; durationMs: number; error?: string };
}

interface DesiredVip {
  vip: AnnouncedVip;
  path: VipPath;
}

interface PeerTrack {
  info?: PeerInfo;
  state: SessionState;
  /** When the session became Established, ms since epoch (gobgp's uptime when known, else when we saw it). */
  establishedAt?: number;
  flaps: number;
  lastError?: PeerError;
}

const sortedNums = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);
const sortedLarge = (xs: LargeCommunity[]) => [...new Set(xs.map(formatLargeCommunity))].sort();

/** The settings of a neighbor that, when they change, need it deleted and added again. */
function peerSettings(p: PeerConfig): string {
  return JSON.stringify([p.asn, p.localAsn ?? 0, p.password ?? '', p.holdTime ?? 0, p.keepaliveTime ?? 0, p.multihop ?? 0, p.gracefulRestart ?? false, p.restartTime ?? 0, p.port ?? 0]);
}

/** True when gobgpd's path has exactly the attributes xlb wants. */
function samePath(a: VipPath, b: VipPath): boolean {
  return (
    a.nextHop === b.nextHop &&
    a.localPref === b.localPref &&
    sortedNums(a.communities).join(',') === sortedNums(b.communities).join(',') &&
    sortedLarge(a.largeCommunities).join(',') === sortedLarge(b.largeCommunities).join(',')
  );
}

/**
 * Announces VIPs over BGP through a supervised (or external) gobgpd.
 * Create with {@link BgpAnnouncer.start}.
 */
export class BgpAnnouncer implements Announcer {
  private readonly routerId: string;
  private readonly nodeAddress: string;
  private readonly communities: number[];
  private readonly largeCommunities: LargeCommunity[];
  private readonly configPeers: PeerConfig[];
  /** `bgp.neighbors`, then the resource peers whose address no configured neighbor has. */
  private peers: Array<PeerConfig & { resource?: string }>;
  /** Per neighbor address: the settings it was added with (or found with, adopted); other settings re-add it. */
  private readonly added = new Map<string, string>();
  /** False while resource peers are expected and not known yet: no unknown neighbor is removed then. */
  private peersKnown: boolean;
  private readonly onPeerState?: (address: string, state: SessionState) => void;
  private readonly rules: NeighborCommunityRule[];
  private readonly supervisor: GobgpdSupervisor;
  private readonly client: GobgpClient;
  private readonly log?: Logger;
  private readonly resyncIntervalMs: number;

  private desired = new Map<string, DesiredVip>();
  private held = new Map<string, ListedPath>();
  private track = new Map<string, PeerTrack>();
  private policyApplied = false;
  /**
   * Set by the first setDesired. Until then nothing is withdrawn: the paths
   * an adopted (or external) gobgpd holds are the previous agent's, and stay
   * until this agent has decided (after its first sync).
   */
  private desiredKnown = false;
  private stopWatch?: () => void;
  private running?: Promise<void>;
  private dirty = false;
  /** Callers of kick() waiting for a reconcile that starts after their call. */
  private waiters: Array<() => void> = [];
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private failures = 0;
  private lastExit?: BgpStatus['gobgpd']['lastExit'];
  private lastReconcile?: BgpStatus['lastReconcile'];
  private readonly counters: BgpStatus['counters'] = {
    bgpStarts: 0,
    gobgpdRestarts: 0,
    pathsAdded: 0,
    pathsWithdrawn: 0,
    peerFlaps: 0,
    reconcileFailures: 0,
  };

  private constructor(
    private readonly config: BgpConfig,
    opts: BgpAnnouncerOptions,
  ) {
    const nodeAddress = config.nodeAddress ?? opts.nodeAddress;
    if (!nodeAddress || !isIPv4(nodeAddress)) {
      throw new Error(`bgp.nodeAddress: ${nodeAddress ? `${JSON.stringify(nodeAddress)} is not IPv4` : 'not set and the node has no IPv4 address to use as next hop'}`);
    }
    this.nodeAddress = nodeAddress;
    this.routerId = config.routerId ?? nodeAddress;
    this.communities = config.communities.map((c, i) => parseCommunity(c, `bgp.communities[${i}]`));
    this.largeCommunities = config.largeCommunities.map((c, i) => parseLargeCommunity(c, `bgp.largeCommunities[${i}]`));
    this.configPeers = config.neighbors.map((n) => ({
      address: n.address,
      asn: n.asn,
      password: n.password,
      holdTime: n.holdTime,
      keepaliveTime: n.keepaliveTime,
      multihop: n.multihop,
      gracefulRestart: n.gracefulRestart,
      port: n.port,
    }));
    this.peers = [...this.configPeers];
    this.peersKnown = !opts.resourcePeers;
    this.onPeerState = opts.onPeerState;
    this.rules = config.neighbors
      .map((n, i) => ({
        neighbor: n.address,
        communities: (n.communities ?? []).map((c, j) => parseCommunity(c, `bgp.neighbors[${i}].communities[${j}]`)),
        largeCommunities: (n.largeCommunities ?? []).map((c, j) => parseLargeCommunity(c, `bgp.neighbors[${i}].largeCommunities[${j}]`)),
      }))
      .filter((r) => r.communities.length || r.largeCommunities.length);
    for (const p of this.peers) this.track.set(p.address, { state: 'unknown', flaps: 0 });
    this.log = opts.log;
    this.resyncIntervalMs = opts.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    const g = config.gobgpd;
    this.supervisor = new GobgpdSupervisor({
      ...(g.external
        ? { external: g.external }
        : { binary: g.binary, apiPort: g.apiPort, apiSocket: g.apiSocket, pidFile: g.pidFile, commandPrefix: opts.commandPrefix, logLevel: g.logLevel }),
      // A gobgpd found running is adopted once its gRPC API answers.
      probe: async () => {
        await this.client.getBgp();
      },
      log: opts.log,
      ...opts.gobgpd,
    });
    this.client = new GobgpClient(this.supervisor.target, { protoDir: opts.protoDir });
    this.supervisor.on('adopt', () => void this.kick());
    this.supervisor.on('spawn', ({ restarts }) => {
      this.counters.gobgpdRestarts = restarts;
      void this.kick();
    });
    this.supervisor.on('exit', ({ code, signal }) => {
      this.lastExit = { code, signal, at: new Date().toISOString() };
      // The sessions died with the process; a new gobgpd knows nothing of our policy.
      this.policyApplied = false;
      for (const [address, t] of this.track) this.setState(address, t, 'idle');
      this.held.clear();
    });
    this.supervisor.on('log', (line) => this.onGobgpdLog(line));
  }

  /**
   * Adopt the gobgpd a previous agent left running (same API address: its
   * pid file names a live gobgpd whose API answers), or start one (unless
   * external); configure it and wait for the first successful reconcile.
   * An adopted gobgpd keeps its sessions, and its paths stay until the first
   * {@link BgpAnnouncer.setDesired}.
   * @param config the parsed `bgp:` section ({@link parseBgpConfig})
   * @throws Error naming the field when the config cannot be used (no node
   *   address, gobgpd binary missing), or when gobgpd's API does not answer
   *   within `startTimeoutMs` (the error of the last attempt included); a
   *   gobgpd spawned by this call is stopped then, an adopted one is left
   *   running as it was found
   */
  static async start(config: BgpConfig, opts: BgpAnnouncerOptions = {}): Promise<BgpAnnouncer> {
    const a = new BgpAnnouncer(config, opts);
    try {
      await a.supervisor.start();
      const deadline = Date.now() + (opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      for (;;) {
        await a.kick();
        if (!a.lastReconcile?.error) break;
        if (Date.now() > deadline) {
          const why = a.supervisor.lastError ? ` (gobgpd logged: ${a.supervisor.lastError})` : '';
          throw new Error(`bgp: gobgpd at ${a.supervisor.target} not usable after ${opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS} ms: ${a.lastReconcile.error}${why}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch (e) {
      await a.stop({ keepRoutes: a.supervisor.adopted || a.supervisor.external }).catch(() => {});
      throw e;
    }
    a.schedule(a.resyncIntervalMs);
    return a;
  }

  /**
   * Replace the neighbors that come from BGPPeer resources; gobgpd follows
   * at once (new ones added, gone ones deleted, changed ones re-added). A
   * peer with the address of a configured neighbor is left out (the
   * configured one stays; the caller reports the clash).
   */
  setResourcePeers(peers: ResourcePeer[]): void {
    const configured = new Set(this.configPeers.map((p) => p.address));
    const next: Array<PeerConfig & { resource?: string }> = [...this.configPeers];
    for (const p of peers) if (!configured.has(p.address) && !next.some((q) => q.address === p.address)) next.push(p);
    this.peers = next;
    for (const p of next) if (!this.track.has(p.address)) this.track.set(p.address, { state: 'unknown', flaps: 0 });
    for (const address of [...this.track.keys()]) if (!next.some((p) => p.address === address)) this.track.delete(address);
    this.peersKnown = true;
    void this.kick();
  }

  /**
   * Replace the desired VIP set; reconciling starts at once and continues in
   * the background (see {@link BgpAnnouncer.status}).
   * @throws Error naming `vips[i].<field>` for a non-IPv4 VIP or a bad
   *   community; the previous set stays in force then
   */
  async setDesired(vips: AnnouncedVip[]): Promise<void> {
    const next = new Map<string, DesiredVip>();
    vips.forEach((v, i) => {
      if (!isIPv4(v.vip)) throw new Error(`vips[${i}].vip: ${JSON.stringify(v.vip)} is not an IPv4 address (service ${v.service})`);
      if (v.localPref !== undefined && !(Number.isInteger(v.localPref) && v.localPref >= 0 && v.localPref <= 0xffffffff)) throw new Error(`vips[${i}].localPref: ${v.localPref} is not 0..4294967295 (service ${v.service})`);
      const prev = next.get(v.vip);
      const communities = [...this.communities, ...(v.communities ?? []).map((c, j) => parseCommunity(c, `vips[${i}].communities[${j}]`))];
      const largeCommunities = [
        ...this.largeCommunities,
        ...(v.largeCommunities ?? []).map((c, j) => parseLargeCommunity(c, `vips[${i}].largeCommunities[${j}]`)),
      ];
      // Two services may share a VIP (different ports): one route, the union of their communities.
      if (prev) {
        prev.path.communities = sortedNums([...prev.path.communities, ...communities]);
        prev.path.largeCommunities = sortedLarge([...prev.path.largeCommunities, ...largeCommunities]).map((s) => parseLargeCommunity(s));
        prev.vip = { ...prev.vip, service: `${prev.vip.service},${v.service}` };
        if (v.localPref !== undefined) prev.path.localPref = Math.max(prev.path.localPref ?? 0, v.localPref);
        return;
      }
      next.set(v.vip, {
        vip: v,
        path: {
          vip: v.vip,
          nextHop: this.nodeAddress,
          communities: sortedNums(communities),
          largeCommunities: sortedLarge(largeCommunities).map((s) => parseLargeCommunity(s)),
          ...(v.localPref !== undefined ? { localPref: v.localPref } : {}),
        },
      });
    });
    this.desired = next;
    this.desiredKnown = true;
    void this.kick();
  }

  /**
   * Run a reconcile now, or right after the running one. Resolves when a
   * reconcile that started after this call has finished (even if requests
   * keep coming, so a caller never waits on an endless chain). Never rejects.
   */
  private kick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.dirty = true;
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    if (!this.running) {
      this.running = (async () => {
        while (this.dirty && !this.stopped) {
          this.dirty = false;
          const served = this.waiters.splice(0);
          await this.reconcileOnce();
          for (const resolve of served) resolve();
        }
        this.running = undefined;
        // Stopped with requests outstanding: release their callers.
        for (const resolve of this.waiters.splice(0)) resolve();
      })();
    }
    return done;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.kick().then(() => {
        if (!this.timer) this.schedule(this.lastReconcile?.error ? RETRY_BACKOFF_MS[Math.min(this.failures - 1, RETRY_BACKOFF_MS.length - 1)] : this.resyncIntervalMs);
      });
    }, ms);
  }

  private async reconcileOnce(): Promise<void> {
    const started = Date.now();
    try {
      await this.ensureGlobal();
      await this.ensurePeers();
      if (!this.policyApplied) {
        await this.client.setNeighborCommunityPolicy(this.rules);
        this.policyApplied = true;
      }
      await this.ensurePaths();
      this.ensureWatch();
      this.failures = 0;
      this.lastReconcile = { at: new Date().toISOString(), durationMs: Date.now() - started };
    } catch (e) {
      this.failures++;
      this.counters.reconcileFailures++;
      const error = (e as Error).message;
      this.lastReconcile = { at: new Date().toISOString(), durationMs: Date.now() - started, error };
      // The first failures after a (re)spawn are expected: the API is not listening yet.
      this.log?.[this.failures > 3 ? 'warn' : 'debug']({ err: error, failures: this.failures }, 'bgp reconcile failed; retrying');
      if (!this.stopped) {
        const delay = RETRY_BACKOFF_MS[Math.min(this.failures - 1, RETRY_BACKOFF_MS.length - 1)];
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        this.schedule(delay);
      }
    }
  }

  /** StartBgp on a fresh gobgpd; restart the instance when it runs with other global settings. */
  private async ensureGlobal(): Promise<void> {
    const want = { asn: this.config.asn, routerId: this.routerId, listenPort: this.config.listenPort };
    const g = await this.client.getBgp();
    if (g && g.asn === want.asn && g.routerId === want.routerId && g.listenPort === want.listenPort) return;
    if (g) {
      this.log?.warn({ running: g, want }, 'gobgpd runs with other global settings; restarting its BGP instance');
      await this.client.stopBgp();
    }
    await this.client.startBgp(want);
    this.counters.bgpStarts++;
    this.policyApplied = false;
    this.held.clear();
    this.log?.info({ asn: want.asn, routerId: want.routerId, listenPort: want.listenPort, target: this.client.target }, 'gobgpd BGP instance started');
  }

  private async ensurePeers(): Promise<void> {
    const listed = await this.client.listPeers();
    const byAddress = new Map(listed.map((p) => [p.address, p]));
    for (const p of listed) {
      const want = this.peers.find((c) => c.address === p.address);
      // Before the resource peers are known, a neighbor the configuration lacks may be one of them.
      if (!want && !this.peersKnown) continue;
      const settings = want ? peerSettings(want) : '';
      if (want && want.asn === p.asn && (this.added.get(p.address) ?? settings) === settings) {
        this.added.set(p.address, settings); // an adopted gobgpd's neighbor is taken as it is
        continue;
      }
      await this.client.deletePeer(p.address);
      byAddress.delete(p.address);
      this.added.delete(p.address);
      this.log?.info({ neighbor: p.address, asn: p.asn }, want ? 'neighbor settings changed; re-adding' : 'removed unknown neighbor from gobgpd');
    }
    for (const want of this.peers) {
      const t = this.track.get(want.address)!;
      const info = byAddress.get(want.address);
      if (!info) {
        try {
          await this.client.addPeer(want);
        } catch (e) {
          t.lastError = { message: (e as Error).message, at: new Date().toISOString() };
          throw e;
        }
        this.added.set(want.address, peerSettings(want));
        if (want.resource) this.log?.info({ neighbor: want.address, asn: want.asn, resource: want.resource }, 'neighbor added from BGPPeer');
        this.setState(want.address, t, 'idle');
        continue;
      }
      t.info = info;
      this.setState(want.address, t, info.state, info.establishedAt);
    }
  }

  private async ensurePaths(): Promise<void> {
    const listed = (await this.client.listPaths()).filter((p) => !p.fromPeer && p.prefixLen === 32);
    const held = new Map(listed.map((p) => [p.vip, p]));
    for (const p of listed) {
      // Before the first setDesired the previous agent's paths stay (see desiredKnown).
      if (this.desired.has(p.vip) || !this.desiredKnown) continue;
      await this.client.deletePath(p);
      held.delete(p.vip);
      this.counters.pathsWithdrawn++;
      this.log?.info({ vip: p.vip }, 'VIP withdrawn');
    }
    for (const [vip, d] of this.desired) {
      const have = held.get(vip);
      if (have && samePath(have, d.path)) continue;
      // AddPath with the same prefix replaces our earlier path (implicit withdraw, RFC 4271 section 3.1).
      await this.client.addPath(d.path);
      held.set(vip, { ...d.path, prefixLen: 32, fromPeer: false, best: true });
      this.counters.pathsAdded++;
      this.log?.info({ vip, service: d.vip.service }, 'VIP announced');
    }
    this.held = held;
  }

  /** Follow peer state changes between reconciles, so that flaps and Established are seen at once. */
  private ensureWatch(): void {
    if (this.stopWatch || this.stopped) return;
    this.stopWatch = this.client.watchPeers(
      (e) => {
        const t = this.track.get(e.address);
        if (t) this.setState(e.address, t, e.state);
      },
      () => {
        // gobgpd went away; the next reconcile after its restart watches again.
        this.stopWatch = undefined;
      },
    );
  }

  private setState(address: string, t: PeerTrack, state: SessionState, establishedAt?: number): void {
    if (state === 'established') t.establishedAt = establishedAt ?? t.establishedAt ?? Date.now();
    else t.establishedAt = undefined;
    if (t.state === 'established' && state !== 'established') {
      t.flaps++;
      this.counters.peerFlaps++;
      this.log?.warn({ neighbor: address, state, lastError: t.lastError?.message }, 'BGP session left Established');
    } else if (t.state !== 'established' && state === 'established') {
      this.log?.info({ neighbor: address }, 'BGP session Established');
    }
    const changed = t.state !== state;
    t.state = state;
    if (changed && this.onPeerState) {
      try {
        this.onPeerState(address, state);
      } catch (e) {
        this.log?.error({ err: (e as Error).message }, 'bgp: onPeerState failed');
      }
    }
  }

  /** The session state and last error of a neighbor, if it is one. */
  peerState(address: string): { state: SessionState; lastError?: PeerError } | undefined {
    const t = this.track.get(address);
    return t && { state: t.state, lastError: t.lastError };
  }

  /** Keep the last session error per neighbor from gobgpd's log (the API has no such field). */
  private onGobgpdLog(line: GobgpdLogLine): void {
    const key = typeof line.Key === 'string' ? line.Key : undefined;
    const t = key ? this.track.get(key) : undefined;
    if (!t) return;
    let message: string | undefined;
    if (line.msg === 'sent notification') {
      message = `sent NOTIFICATION: ${typeof line.Data === 'string' ? line.Data : JSON.stringify(line.Data)}`;
    } else if (line.msg === 'received notification') {
      const code = Number(line.Code);
      message = `received NOTIFICATION ${NOTIFICATION_CODES[code] ?? `code ${code}`} (code ${code}, subcode ${Number(line.Subcode)})${line['Communicated-Reason'] ? `: ${line['Communicated-Reason']}` : ''}`;
    } else if (line.msg === 'Peer Down') {
      // "dying": the peer was deleted (by ensurePeers, e.g. its AS changed): no fault of the session.
      if (line.Reason === 'dying') return;
      message = `session down: ${String(line.Reason)}`;
    } else if (line.level === 'warning' || line.level === 'error') {
      message = `${line.msg}${line.Error ? `: ${String(line.Error)}` : ''}`;
    }
    if (message) t.lastError = { message, at: typeof line.time === 'string' ? line.time : new Date().toISOString() };
  }

  /** A snapshot of sessions, announced VIPs and counters. */
  status(): BgpStatus {
    const now = Date.now();
    return {
      announcer: 'bgp',
      asn: this.config.asn,
      routerId: this.routerId,
      nodeAddress: this.nodeAddress,
      gobgpd: {
        target: this.supervisor.target,
        external: this.supervisor.external,
        pid: this.supervisor.pid,
        adopted: this.supervisor.adopted,
        pidFile: this.supervisor.pidFile,
        logFile: this.supervisor.logFile,
        restarts: this.supervisor.restarts,
        lastError: this.supervisor.lastError,
        lastExit: this.lastExit,
      },
      peers: this.peers.map((p) => {
        const t = this.track.get(p.address)!;
        const i = t.info;
        const since = t.state === 'established' ? t.establishedAt : undefined;
        return {
          address: p.address,
          asn: p.asn,
          ...(p.resource ? { resource: p.resource } : {}),
          state: t.state,
          uptimeSeconds: since !== undefined ? Math.max(0, Math.round((now - since) / 1000)) : undefined,
          prefixes: { received: i?.received ?? 0, accepted: i?.accepted ?? 0, advertised: i?.advertised ?? 0 },
          notifications: { received: i?.notificationsReceived ?? 0, sent: i?.notificationsSent ?? 0 },
          flaps: t.flaps,
          lastError: t.lastError,
        };
      }),
      announced: [...this.desired.values()]
        .filter((d) => {
          const h = this.held.get(d.path.vip);
          return h && samePath(h, d.path);
        })
        .map((d) => ({
          vip: d.path.vip,
          service: d.vip.service,
          nextHop: d.path.nextHop,
          communities: d.path.communities.map(formatCommunity),
          largeCommunities: d.path.largeCommunities.map(formatLargeCommunity),
          ...(d.path.localPref !== undefined ? { localPref: d.path.localPref } : {}),
        })),
      pending: [...this.desired.keys()].filter((vip) => {
        const h = this.held.get(vip);
        return !h || !samePath(h, this.desired.get(vip)!.path);
      }),
      counters: { ...this.counters, gobgpdRestarts: this.supervisor.restarts },
      lastReconcile: this.lastReconcile,
    };
  }

  /**
   * Stop announcing.
   *
   * - `keepRoutes: true` (an agent restart: SIGTERM, an upgrade): nothing is
   *   withdrawn. gobgpd is left running with its sessions and paths (its pid
   *   recorded for the next agent to adopt); an external gobgpd keeps the
   *   paths. Only this announcer's timers, watch and API channel end.
   * - otherwise (an uninstall, a node leaving): a supervised gobgpd, spawned
   *   or adopted, is SIGTERMed (it closes every session with a Cease
   *   NOTIFICATION, so routers drop the routes at once) and its socket and
   *   pid file removed; with an external gobgpd our paths are deleted and
   *   its peers left in place.
   *
   * Idempotent (the first call decides).
   */
  async stop(opts: { keepRoutes?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    const keep = opts.keepRoutes === true;
    if (this.supervisor.external && !keep) {
      this.desired = new Map();
      this.desiredKnown = true;
      await this.kick();
    }
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.stopWatch?.();
    this.stopWatch = undefined;
    await this.running;
    if (keep) this.supervisor.detach();
    else await this.supervisor.stop();
    this.client.close();
    this.log?.info({ keepRoutes: keep }, keep ? 'bgp announcer stopped: gobgpd keeps the sessions and routes for the next agent' : 'bgp announcer stopped: routes withdrawn');
  }
}

/**
 * The `peers` ownership strategy: the nodes of a layer 2 group agree on VIP
 * owners with no central store, for the file source. Each node sends every
 * configured peer a heartbeat (heartbeat.ts) each `intervalMs`, with its
 * link health, its candidate VIPs and the VIPs it claims; a peer silent for
 * `deadAfterMissed` intervals is dead; ownership.ts decides from that view.
 *
 * The node re-decides when heartbeats change its view (once per burst of
 * datagrams read together, never halfway through one), when a peer dies,
 * when its own candidates or health change, and when its start-up window
 * ends; after any change of its own claims it sends a heartbeat at once
 * rather than at the next interval, so peers follow within a round trip. A
 * node that stops sends `leaving` (twice: one datagram may be lost) so its
 * peers take its VIPs without waiting for it to time out.
 *
 * Agent restarts: a node that stops to start again (`stop({ restart: true
 * })`) keeps answering ARP (its XDP program and ARP map stay) and sends
 * `restarting` instead, twice, asking its peers to hold it alive with its
 * claims for `restartHoldMs`: they take none of its VIPs meanwhile. The next
 * incarnation adopts the VIPs it finds in the ARP map ({@link
 * PeerOwnership.adopt}) and heartbeats them as claims (and candidates) while
 * `starting`, so the peers go on leaving them alone; its first update()
 * decides as usual. A kill -9 sends nothing: the peers take its VIPs after
 * the dead-after window, and the next incarnation, starting, yields to them
 * (ownership.ts, rule 3).
 *
 * Limits, stated: heartbeats are neither authenticated nor encrypted (keep
 * them on a trusted fabric); under an asymmetric partition (A hears B, B
 * does not hear A) both may claim a VIP until it heals.
 */
import dgram from 'node:dgram';
import type { Logger } from 'pino';
import { decideOwnership, electOwner, rendezvousOrder, type LinkHealth, type NodeView } from './ownership.js';
import { decodeHeartbeat, encodeHeartbeat, PeerTable, type HeartbeatMessage, type PeerEndpoint, type PeerStatus } from './heartbeat.js';
import type { CandidateVip, OwnershipStrategy, StrategyCounters, VipOwner } from './strategy.js';

/** Where datagrams come from. */
export interface DatagramSource {
  address: string;
  port: number;
}

/**
 * The datagram socket under the heartbeats; UDP in the agent, wrappers in
 * tests (to cut a node off the network without stopping it).
 */
export interface HeartbeatTransport {
  /** @throws Error naming the address and port when binding fails (e.g. EADDRINUSE) */
  bind(address: string, port: number): Promise<void>;
  /** @throws Error from the socket (e.g. ENETUNREACH while the link is down) */
  send(buf: Buffer, address: string, port: number): Promise<void>;
  onMessage(listener: (buf: Buffer, from: DatagramSource) => void): void;
  close(): Promise<void>;
}

/** HeartbeatTransport over one IPv4 UDP socket (node:dgram). */
export class UdpTransport implements HeartbeatTransport {
  private readonly socket = dgram.createSocket({ type: 'udp4' });
  private closed = false;

  bind(address: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(new Error(`l2 heartbeat socket: cannot bind ${address}:${port}: ${e.message}`));
      this.socket.once('error', onError);
      this.socket.bind({ address, port, exclusive: true }, () => {
        this.socket.off('error', onError);
        // Errors after bind (ICMP unreachable reported on the socket) must not crash the agent.
        this.socket.on('error', () => {});
        resolve();
      });
    });
  }

  send(buf: Buffer, address: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(buf, port, address, (e) => (e ? reject(e) : resolve())));
  }

  onMessage(listener: (buf: Buffer, from: DatagramSource) => void): void {
    this.socket.on('message', (msg, rinfo) => listener(msg, { address: rinfo.address, port: rinfo.port }));
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/**
 * How often liveness is checked, ms: a quarter of the heartbeat interval
 * (at least 10 ms), which bounds how late after the dead-after window a
 * silent peer is noticed.
 */
export function expiryCheckMs(intervalMs: number): number {
  return Math.max(10, Math.floor(intervalMs / 4));
}

/** Default of `l2.heartbeat.restartHoldMs`: how long peers hold a restarting node's VIPs, ms. */
export const DEFAULT_RESTART_HOLD_MS = 30_000;

/** Settings of {@link PeerOwnership}. */
export interface PeerOwnershipOptions {
  /** This node's name (`node.name`). */
  nodeName: string;
  /** Every node of the group; this node's own entry, if listed, is skipped. */
  peers: readonly PeerEndpoint[];
  bindAddress: string;
  port: number;
  intervalMs: number;
  deadAfterMissed: number;
  /** How long peers hold this node's VIPs for it when it stops for a restart, ms; default {@link DEFAULT_RESTART_HOLD_MS}. */
  restartHoldMs?: number;
  /** Default: a {@link UdpTransport}. */
  transport?: HeartbeatTransport;
  /** Monotonic clock in ms for liveness; default performance.now. */
  now?: () => number;
  /** Wall clock in ms since the epoch for `since` and the incarnation; default Date.now. */
  wallClock?: () => number;
  log?: Logger;
}

/** The `peers` strategy (see the module's doc). */
export class PeerOwnership implements OwnershipStrategy {
  readonly kind = 'peers';
  private readonly table: PeerTable;
  private readonly transport: HeartbeatTransport;
  private readonly now: () => number;
  private readonly wallClock: () => number;
  private readonly incarnation: number;
  private seq = 0;
  private candidateSet = new Set<string>();
  /** When each candidate VIP became one (ms, monotonic), for the patience with new VIPs. */
  private readonly candidateSince = new Map<string, number>();
  /** When the earliest deferred claim may be taken (monotonic ms), if any. */
  private deferredUntil?: number;
  private health: LinkHealth = 'down';
  private readonly ownedSince = new Map<string, number>();
  /** Owner of each VIP this node has seen, and since when (for status). */
  private readonly owners = new Map<string, { owner: string; since: number }>();
  private readonly listeners: Array<() => void> = [];
  private timer?: NodeJS.Timeout;
  private expiryTimer?: NodeJS.Timeout;
  private wasSettled = false;
  private started = false;
  /**
   * Set by the first update(): until then the node heartbeats as `starting`
   * (alive, candidates unknown), and peers that are settling wait for it.
   */
  private announcing = false;
  /** adopt() has been called (the adopted VIPs are in ownedSince). */
  private adopted = false;
  private stopped = false;
  /** A decision is queued for the heartbeats received in this turn of the event loop. */
  private burstPending = false;
  private readonly sendErrors = new Map<string, string>();
  private readonly unknownSenders = new Set<string>();
  private readonly stats: StrategyCounters = { sent: 0, received: 0, rejected: 0, sendErrors: 0 };

  constructor(private readonly opts: PeerOwnershipOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.wallClock = opts.wallClock ?? Date.now;
    this.incarnation = this.wallClock();
    this.transport = opts.transport ?? new UdpTransport();
    this.table = new PeerTable(opts.nodeName, opts.peers, opts.intervalMs * opts.deadAfterMissed, this.now());
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.transport.onMessage((buf, from) => this.receive(buf, from));
    await this.transport.bind(this.opts.bindAddress, this.opts.port);
    this.started = true;
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs);
    this.timer.unref();
    this.expiryTimer = setInterval(() => this.checkLiveness(), expiryCheckMs(this.opts.intervalMs));
    this.expiryTimer.unref();
    this.evaluate();
    this.sendAll('heartbeat');
  }

  adopt(vips: readonly string[], health: LinkHealth): void {
    if (this.announcing || this.stopped) return;
    const wall = this.wallClock();
    if (!this.adopted) for (const vip of vips) this.ownedSince.set(vip, wall);
    else for (const vip of [...this.ownedSince.keys()]) if (!vips.includes(vip)) this.ownedSince.delete(vip);
    this.adopted = true;
    this.health = health;
    if (health === 'down') this.ownedSince.clear();
    if (this.started && !this.evaluate()) this.sendAll('heartbeat');
  }

  update(candidates: readonly CandidateVip[], health: LinkHealth): void {
    const set = new Set(candidates.map((c) => c.vip));
    const changed = health !== this.health || set.size !== this.candidateSet.size || [...set].some((v) => !this.candidateSet.has(v));
    this.candidateSet = set;
    const now = this.now();
    for (const vip of set) if (!this.candidateSince.has(vip)) this.candidateSince.set(vip, now);
    for (const vip of [...this.candidateSince.keys()]) if (!set.has(vip)) this.candidateSince.delete(vip);
    // Links back after being down: this node heard nothing meanwhile, so its
    // view is stale; settle again before taking anything (no stealing back).
    if (this.health === 'down' && health !== 'down' && this.announcing) this.table.unsettle(this.now());
    this.health = health;
    const first = !this.announcing;
    this.announcing = true;
    if ((!changed && !first) || !this.started || this.stopped) return;
    if (!this.evaluate()) this.sendAll('heartbeat'); // evaluate() sent one when the claims changed
  }

  owned(): ReadonlyMap<string, number> {
    return this.ownedSince;
  }

  ownerOf(vip: string): VipOwner {
    const o = this.owners.get(vip);
    return o ? { owner: o.owner, since: o.since } : {};
  }

  peers(): PeerStatus[] {
    return this.table.status(this.now());
  }

  counters(): StrategyCounters {
    return { ...this.stats };
  }

  /** Senders that are not configured peers (a misconfigured group), for status. */
  unknownPeers(): string[] {
    return [...this.unknownSenders].sort();
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /**
   * Stop heartbeating. By default hand over: send `leaving` (twice) and
   * give every VIP up. With `restart`, send `restarting` (twice) with
   * `restartHoldMs` and keep the claims (the ARP map keeps answering).
   */
  async stop(opts: { restart?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    const type = opts.restart ? 'restarting' : 'leaving';
    if (this.started) {
      await this.sendAll(type);
      await this.sendAll(type);
    }
    if (opts.restart) {
      this.opts.log?.info({ claims: this.ownedSince.size, holdMs: this.restartHoldMs }, 'l2: told the peers this node restarts: they hold its VIPs');
    } else {
      const had = this.ownedSince.size > 0;
      this.ownedSince.clear();
      if (had) this.emit();
    }
    await this.transport.close();
  }

  private get restartHoldMs(): number {
    return this.opts.restartHoldMs ?? DEFAULT_RESTART_HOLD_MS;
  }

  /** Every interval: a heartbeat to every peer. */
  private tick(): void {
    if (this.stopped) return;
    this.sendAll('heartbeat');
  }

  /**
   * Every quarter interval: peers silent for the dead-after window die, and
   * the start-up window may end; either can change who owns what. Checked
   * more often than heartbeats are sent so that a death is noticed within a
   * quarter interval of the window's end, not a whole one.
   */
  private checkLiveness(): void {
    if (this.stopped) return;
    const now = this.now();
    const died = this.table.expire(now);
    for (const name of died) {
      if (this.table.restartHeld(name)) this.opts.log?.warn({ peer: name }, 'l2: peer not back within the restart hold it asked for: taking over its VIPs as needed');
      else this.opts.log?.warn({ peer: name }, 'l2: peer silent for the dead-after window: taking over its VIPs as needed');
    }
    const settling = this.table.settled(now) && !this.wasSettled;
    const patienceOver = this.deferredUntil !== undefined && now >= this.deferredUntil;
    if (died.length || settling || patienceOver) this.evaluate();
  }

  private receive(buf: Buffer, from: DatagramSource): void {
    if (this.stopped) return;
    let m: HeartbeatMessage;
    try {
      m = decodeHeartbeat(buf);
    } catch (e) {
      this.stats.rejected++;
      this.opts.log?.debug({ from: from.address, err: (e as Error).message }, 'l2: malformed heartbeat dropped');
      return;
    }
    const r = this.table.receive(m, from.address, this.now());
    if (r === 'unknown') {
      this.stats.rejected++;
      if (!this.unknownSenders.has(m.node)) {
        this.unknownSenders.add(m.node);
        const why = m.node === this.opts.nodeName ? 'carries this node\'s own name (two nodes with one name?)' : 'is not in l2.peers';
        this.opts.log?.warn({ node: m.node, from: from.address }, `l2: heartbeat ignored: sender ${why}`);
      }
      return;
    }
    if (r === 'stale') {
      this.stats.rejected++;
      return;
    }
    this.stats.received++;
    if (m.type === 'leaving') this.opts.log?.info({ peer: m.node }, 'l2: peer is leaving: taking over its VIPs as needed');
    if (m.type === 'restarting') {
      if (this.table.restartHeld(m.node)) this.opts.log?.info({ peer: m.node, holdMs: m.holdMs, claims: m.claims.length }, 'l2: peer is restarting: holding its VIPs for it');
      else this.opts.log?.info({ peer: m.node }, 'l2: peer is restarting but was already dead: its VIPs are taken over');
    }
    if (r === 'changed') this.evaluateAfterBurst();
  }

  /**
   * Decide once for all the heartbeats that arrive together: setImmediate
   * runs after the event loop's poll phase has handed over every datagram
   * the socket held. A peer whose link was down sends heartbeats that the
   * kernel holds in its neighbour entry's queue (ARP for the receiver is not
   * resolved while there is no carrier) and that leave in one burst when the
   * link comes back. The oldest of them was sent before the peer noticed its
   * link go down and still claims the peer's VIPs. Decided one message at a
   * time, the burst made this node give up the VIPs it had taken over and
   * take them back a message later; the peer heard the give-up, took the
   * VIPs, and kept them (captured in the lab: the VIP changed hands three
   * times within 13 ms, and ARP for it went unanswered meanwhile).
   */
  private evaluateAfterBurst(): void {
    if (this.burstPending) return;
    this.burstPending = true;
    setImmediate(() => {
      this.burstPending = false;
      this.evaluate();
    });
  }

  /**
   * Decide again; on a change of this node's claims, record it, send a
   * heartbeat at once and notify the listeners.
   * @returns whether the claims changed
   */
  private evaluate(): boolean {
    if (this.stopped) return false;
    const now = this.now();
    const settled = this.table.settled(now);
    this.wasSettled = settled;
    const live = this.table.live(now);
    let next: Set<string>;
    if (!this.announcing) {
      // Before the first update: the adopted claims stand (no candidates to
      // decide on yet), but one that a peer past its start claims is its
      // (it took the VIP over while this node was down), and links down own nothing.
      next = new Set([...this.ownedSince.keys()].filter((vip) => this.health !== 'down' && !live.some((p) => !p.starting && p.claims.has(vip))));
    } else {
      const self: NodeView = { name: this.opts.nodeName, health: this.health, candidates: this.candidateSet, claims: new Set(this.ownedSince.keys()) };
      const deferred = this.deferredClaims(self, live, now);
      next = decideOwnership({ self, livePeers: live, settled, deferred });
    }
    const wall = this.wallClock();
    let changed = false;
    for (const vip of [...this.ownedSince.keys()]) {
      if (!next.has(vip)) {
        this.ownedSince.delete(vip);
        changed = true;
      }
    }
    for (const vip of next) {
      if (!this.ownedSince.has(vip)) {
        this.ownedSince.set(vip, wall);
        changed = true;
      }
    }
    this.trackOwners(live, wall);
    if (changed) {
      this.sendAll('heartbeat');
      this.emit();
    }
    return changed;
  }

  /**
   * New candidate VIPs (younger than a dead-after window) that nobody claims
   * and whose rendezvous-first live node is a peer that has not listed them
   * yet: that peer may simply not have seen the service yet, so this node
   * waits for its next heartbeats before taking the VIP. Sets when to look
   * again.
   */
  private deferredClaims(self: NodeView, live: readonly NodeView[], now: number): Set<string> {
    const patience = this.opts.intervalMs * this.opts.deadAfterMissed;
    const deferred = new Set<string>();
    this.deferredUntil = undefined;
    const able = live.filter((p) => p.health !== 'down');
    for (const vip of self.candidates) {
      if (self.claims.has(vip)) continue;
      const until = (this.candidateSince.get(vip) ?? now) + patience;
      if (now >= until || live.some((p) => p.claims.has(vip))) continue;
      const first = rendezvousOrder(vip, [self.name, ...able.map((p) => p.name)])[0];
      if (first === self.name || able.find((p) => p.name === first)!.candidates.has(vip)) continue;
      deferred.add(vip);
      this.deferredUntil = Math.min(this.deferredUntil ?? until, until);
    }
    return deferred;
  }

  /** Who claims each of this node's candidate VIPs now (this node, or the winning claimant among live peers). */
  private trackOwners(live: NodeView[], wall: number): void {
    for (const vip of [...this.owners.keys()]) if (!this.candidateSet.has(vip)) this.owners.delete(vip);
    for (const vip of this.candidateSet) {
      const owner = this.ownedSince.has(vip) ? this.opts.nodeName : electOwner(vip, live.filter((p) => p.claims.has(vip)));
      const cur = this.owners.get(vip);
      if (!owner) this.owners.delete(vip);
      else if (cur?.owner !== owner) this.owners.set(vip, { owner, since: owner === this.opts.nodeName ? this.ownedSince.get(vip)! : wall });
    }
  }

  private emit(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch (e) {
        this.opts.log?.error({ err: (e as Error).message }, 'l2: ownership listener failed');
      }
    }
  }

  /** Send one message to every peer; failures are counted and logged once per peer and error. */
  private sendAll(type: HeartbeatMessage['type']): Promise<void> {
    if (!this.started) return Promise.resolve();
    // Sorted so that the datagram is the same for the same state (easier to read in captures).
    const claims = [...this.ownedSince.keys()].sort();
    // Starting with adopted VIPs: it wants them as far as it knows, so that peers see it as their candidate.
    const candidates = this.announcing ? [...this.candidateSet].sort() : claims;
    let buf: Buffer;
    try {
      buf = encodeHeartbeat({
        type,
        node: this.opts.nodeName,
        incarnation: this.incarnation,
        seq: this.seq++,
        starting: !this.announcing,
        health: this.health,
        candidates,
        claims,
        ...(type === 'restarting' ? { holdMs: this.restartHoldMs } : {}),
      });
    } catch (e) {
      this.stats.sendErrors++;
      this.opts.log?.error({ err: (e as Error).message }, 'l2: heartbeat not sent');
      return Promise.resolve();
    }
    const sends = this.table.endpoints().map((p) =>
      this.transport.send(buf, p.address, p.port).then(
        () => {
          this.stats.sent++;
          if (this.sendErrors.delete(p.name)) this.opts.log?.info({ peer: p.name }, 'l2: heartbeats reach the peer again');
        },
        (e: Error) => {
          this.stats.sendErrors++;
          if (this.sendErrors.get(p.name) !== e.message) {
            this.sendErrors.set(p.name, e.message);
            this.opts.log?.warn({ peer: p.name, address: `${p.address}:${p.port}`, err: e.message }, 'l2: heartbeat send failed');
          }
        },
      ),
    );
    return Promise.all(sends).then(() => undefined);
  }
}

/**
 * Layer 2 mode's heartbeat: the datagram every node sends each peer every
 * `l2.heartbeat.intervalMs`, and the table of what each peer said last.
 * No I/O here (peer-ownership.ts sends and receives); times are passed in
 * as milliseconds on one monotonic clock.
 *
 * Wire format: one UDP datagram holding one JSON object,
 *
 *   { "xlb": "l2", "v": 1, "type": "heartbeat" | "leaving" | "restarting",
 *     "node": "node-a", "incarnation": 1718000000000, "seq": 42,
 *     "starting": false, "health": "up",
 *     "candidates": ["192.0.2.10", ...], "claims": ["192.0.2.10", ...],
 *     "holdMs": 30000 }                      (holdMs: restarting only)
 *
 * `incarnation` (the sender's start time, ms since the epoch) and `seq`
 * (per incarnation, from 0) order the datagrams of one node: a restarted node
 * is heard at once, a late duplicate is dropped. `starting` is true until the
 * sender's agent has its first set of VIPs (its first sync): peers that are
 * starting up themselves wait for it (up to a grace period) before claiming,
 * so that VIPs spread when the nodes start together instead of all going,
 * for good, to whichever is ready first. `leaving` is sent by a node
 * that stops cleanly: its peers take its VIPs over without waiting for it to
 * time out. `restarting` is sent by a node whose agent stops to start again
 * (SIGTERM, an upgrade) and keeps answering ARP meanwhile (XDP and its ARP
 * map stay): its peers hold it alive with its last claims for `holdMs`, or
 * until its next incarnation speaks, and take none of its VIPs. A kill -9
 * sends nothing: the dead-after window applies. A node of an older version
 * rejects `restarting` as malformed, and its dead-after window applies too.
 * A datagram must fit in 65507 bytes (UDP over IPv4), about 1800 VIPs per
 * node when each is both candidate and claimed.
 */
import { isIPv4 } from '../util/ip.js';
import type { LinkHealth, NodeView } from './ownership.js';

/** Largest UDP payload over IPv4 (65535 - 20 - 8). */
export const MAX_DATAGRAM_BYTES = 65507;
/**
 * How many dead-after windows a node waits, at start-up or when its links
 * come back, for peers that are alive but still starting (5 × 1 s by
 * default): long enough for agents started together to finish their first
 * sync, short enough that a stuck one delays the VIPs only briefly.
 */
export const STARTING_GRACE_WINDOWS = 5;

/** Protocol version; a node ignores datagrams of another version (and counts them). */
export const HEARTBEAT_VERSION = 1;

/** The longest hold a `restarting` message may ask for, ms (10 minutes): a restart that takes longer is a failure. */
export const MAX_RESTART_HOLD_MS = 600_000;

/** One heartbeat, leaving or restarting message. */
export interface HeartbeatMessage {
  type: 'heartbeat' | 'leaving' | 'restarting';
  /** Sender's node name. */
  node: string;
  /** Sender's start time, ms since the epoch; larger = newer process. */
  incarnation: number;
  /** Sequence number within the incarnation, from 0. */
  seq: number;
  /** The sender does not know its candidate VIPs yet (its agent's first sync is pending). */
  starting: boolean;
  health: LinkHealth;
  /** VIPs the sender wants to announce. */
  candidates: string[];
  /** VIPs the sender announces now. */
  claims: string[];
  /** `restarting` only: how long peers hold the sender's VIPs for it, ms, 1..{@link MAX_RESTART_HOLD_MS}. */
  holdMs?: number;
}

const HEALTH: readonly LinkHealth[] = ['up', 'degraded', 'down'];

/**
 * Encode a message as its datagram.
 * @throws Error when it exceeds {@link MAX_DATAGRAM_BYTES} (too many VIPs for one datagram)
 */
export function encodeHeartbeat(m: HeartbeatMessage): Buffer {
  const buf = Buffer.from(
    JSON.stringify({
      xlb: 'l2',
      v: HEARTBEAT_VERSION,
      type: m.type,
      node: m.node,
      incarnation: m.incarnation,
      seq: m.seq,
      starting: m.starting,
      health: m.health,
      candidates: m.candidates,
      claims: m.claims,
      ...(m.type === 'restarting' ? { holdMs: m.holdMs } : {}),
    }),
  );
  if (buf.length > MAX_DATAGRAM_BYTES)
    throw new Error(`l2 heartbeat of ${m.node}: ${buf.length} bytes (${m.candidates.length} candidate VIPs) exceed one UDP datagram (${MAX_DATAGRAM_BYTES})`);
  return buf;
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/**
 * Decode and check a datagram.
 * @throws Error naming the field that is missing or malformed
 */
export function decodeHeartbeat(buf: Buffer): HeartbeatMessage {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(buf.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new Error('l2 heartbeat: not JSON');
  }
  if (typeof o !== 'object' || o === null || o.xlb !== 'l2') throw new Error('l2 heartbeat: field xlb is not "l2"');
  if (o.v !== HEARTBEAT_VERSION) throw new Error(`l2 heartbeat: version ${JSON.stringify(o.v)}, this node speaks ${HEARTBEAT_VERSION}`);
  if (o.type !== 'heartbeat' && o.type !== 'leaving' && o.type !== 'restarting') throw new Error(`l2 heartbeat: type ${JSON.stringify(o.type)} is not heartbeat, leaving or restarting`);
  if (typeof o.node !== 'string' || !o.node) throw new Error('l2 heartbeat: node is not a non-empty string');
  if (!isCount(o.incarnation)) throw new Error(`l2 heartbeat from ${o.node}: incarnation is not a non-negative integer`);
  if (!isCount(o.seq)) throw new Error(`l2 heartbeat from ${o.node}: seq is not a non-negative integer`);
  if (typeof o.starting !== 'boolean') throw new Error(`l2 heartbeat from ${o.node}: starting is not a boolean`);
  if (!HEALTH.includes(o.health as LinkHealth)) throw new Error(`l2 heartbeat from ${o.node}: health ${JSON.stringify(o.health)} is not up, degraded or down`);
  for (const f of ['candidates', 'claims'] as const) {
    const list = o[f];
    if (!Array.isArray(list) || list.some((x) => typeof x !== 'string' || !isIPv4(x))) throw new Error(`l2 heartbeat from ${o.node}: ${f} is not a list of IPv4 addresses`);
  }
  if (o.type === 'restarting' && (!Number.isSafeInteger(o.holdMs) || (o.holdMs as number) < 1 || (o.holdMs as number) > MAX_RESTART_HOLD_MS))
    throw new Error(`l2 heartbeat from ${o.node}: holdMs of a restarting message is not an integer 1..${MAX_RESTART_HOLD_MS}`);
  return {
    type: o.type,
    node: o.node,
    incarnation: o.incarnation,
    seq: o.seq,
    starting: o.starting,
    health: o.health as LinkHealth,
    candidates: o.candidates as string[],
    claims: o.claims as string[],
    ...(o.type === 'restarting' ? { holdMs: o.holdMs as number } : {}),
  };
}

/** A configured peer. */
export interface PeerEndpoint {
  name: string;
  address: string;
  port: number;
}

/** One peer in status output. */
export interface PeerStatus {
  name: string;
  address: string;
  port: number;
  /** Heard within the dead-after window (or held for its restart) and has not said it is leaving. */
  alive: boolean;
  /** It said it is restarting and its VIPs are held for it: not back yet, hold not over. */
  restarting: boolean;
  /** Milliseconds since its last accepted heartbeat; null if never heard. */
  lastSeenMs: number | null;
  /** It sent `leaving` and nothing since. */
  left: boolean;
  /** Its agent has not had its first sync yet. */
  starting: boolean;
  health: LinkHealth | null;
  /** How many VIPs it claims (its last heartbeat). */
  claims: number;
  /** Source address of its last datagram when that differs from the configured one. */
  seenFrom?: string;
}

/** What {@link PeerTable.receive} did with a message. */
export type ReceiveResult =
  /** The view of the peer changed (liveness, health, candidates or claims): re-decide. */
  | 'changed'
  /** Accepted; nothing the decision looks at changed. */
  | 'refreshed'
  /** Older than (or a duplicate of) what was heard from that peer. */
  | 'stale'
  /** The sender is no configured peer (or is this node's own name). */
  | 'unknown';

interface PeerRecord {
  endpoint: PeerEndpoint;
  /** When any message (heartbeat or leaving) was last accepted from it. */
  lastHeard?: number;
  incarnation: number;
  seq: number;
  lastSeen?: number;
  left: boolean;
  starting: boolean;
  health: LinkHealth;
  candidates: Set<string>;
  claims: Set<string>;
  seenFrom?: string;
  /** Until when (monotonic ms) it is held alive for its restart; cleared when it speaks again. */
  restartUntil?: number;
  /** Whether the last decision counted it alive (to report transitions). */
  wasAlive: boolean;
}

const sameSet = (a: ReadonlySet<string>, b: readonly string[]): boolean => a.size === b.length && b.every((x) => a.has(x));

/**
 * What each configured peer said last, and who is alive. A peer is alive
 * when its last heartbeat is less than `deadAfterMs` old and it has not sent
 * `leaving` since, or while the hold it asked for with `restarting` lasts
 * (with its last view: health, candidates, claims) and it has not spoken
 * since. A `restarting` from a peer already dead holds nothing: its VIPs
 * have been taken over.
 */
export class PeerTable {
  private readonly peers = new Map<string, PeerRecord>();

  /**
   * @param selfName this node's name: an entry with it in `peers` is skipped
   * @param startedAt when this node started (for {@link PeerTable.settled})
   */
  /** Start of the current settling window (start-up, or the links coming back). */
  private settleFrom: number;

  constructor(
    readonly selfName: string,
    peers: readonly PeerEndpoint[],
    private readonly deadAfterMs: number,
    startedAt: number,
  ) {
    this.settleFrom = startedAt;
    for (const p of peers) {
      if (p.name === selfName) continue;
      this.peers.set(p.name, { endpoint: p, incarnation: -1, seq: -1, left: false, starting: false, health: 'down', candidates: new Set(), claims: new Set(), wasAlive: false });
    }
  }

  /** The peers to send heartbeats to. */
  endpoints(): PeerEndpoint[] {
    return [...this.peers.values()].map((p) => p.endpoint);
  }

  /**
   * Take in a message received at `now` from `fromAddress`.
   * Messages are matched to peers by name; the source address is only
   * reported (a node may send from another of its addresses).
   */
  receive(m: HeartbeatMessage, fromAddress: string, now: number): ReceiveResult {
    const p = this.peers.get(m.node);
    if (!p) return 'unknown';
    if (m.incarnation < p.incarnation || (m.incarnation === p.incarnation && m.seq <= p.seq)) return 'stale';
    const aliveBefore = this.isAlive(p, now);
    p.incarnation = m.incarnation;
    p.seq = m.seq;
    p.lastHeard = now;
    p.seenFrom = fromAddress === p.endpoint.address ? undefined : fromAddress;
    if (m.type === 'restarting') {
      if (aliveBefore) p.restartUntil = now + m.holdMs!;
      return 'refreshed';
    }
    p.restartUntil = undefined;
    if (m.type === 'leaving') {
      p.left = true;
      p.claims = new Set();
      p.wasAlive = false;
      return aliveBefore ? 'changed' : 'refreshed';
    }
    p.lastSeen = now;
    p.left = false;
    // Back from the dead (by the clock, or not yet seen dead by expire()) counts as a change too.
    const changed = !aliveBefore || !p.wasAlive || p.starting !== m.starting || p.health !== m.health || !sameSet(p.candidates, m.candidates) || !sameSet(p.claims, m.claims);
    p.health = m.health;
    p.starting = m.starting;
    if (!sameSet(p.candidates, m.candidates)) p.candidates = new Set(m.candidates);
    if (!sameSet(p.claims, m.claims)) p.claims = new Set(m.claims);
    p.wasAlive = true;
    return changed ? 'changed' : 'refreshed';
  }

  private isAlive(p: PeerRecord, now: number): boolean {
    if (p.left) return false;
    if (p.restartUntil !== undefined && now < p.restartUntil) return true;
    return p.lastSeen !== undefined && now - p.lastSeen < this.deadAfterMs;
  }

  /** Whether `name` asked for a restart hold that has not been ended by its return (for logs; the hold may be over). */
  restartHeld(name: string): boolean {
    return this.peers.get(name)?.restartUntil !== undefined;
  }

  /**
   * Mark peers whose heartbeats stopped as dead.
   * @returns the names of the peers that died since the last call
   */
  expire(now: number): string[] {
    const died: string[] = [];
    for (const p of this.peers.values()) {
      if (p.wasAlive && !this.isAlive(p, now)) {
        p.wasAlive = false;
        died.push(p.endpoint.name);
      }
    }
    return died;
  }

  /** The live peers as the ownership decision sees them. */
  live(now: number): NodeView[] {
    const out: NodeView[] = [];
    for (const p of this.peers.values()) {
      if (this.isAlive(p, now)) out.push({ name: p.endpoint.name, health: p.health, candidates: p.candidates, claims: p.claims, starting: p.starting });
    }
    return out;
  }

  /**
   * True once this node can trust its view, counted from the start of the
   * settling window: no live peer is still starting, and every peer has been
   * heard (a heartbeat or leaving) or a whole dead-after window has passed
   * (so any peer still silent is dead). After {@link STARTING_GRACE_WINDOWS}
   * dead-after windows it is settled whatever the peers say, so that a peer
   * stuck before its first sync delays nothing for long.
   */
  settled(now: number): boolean {
    const elapsed = now - this.settleFrom;
    if (elapsed >= this.deadAfterMs * STARTING_GRACE_WINDOWS) return true;
    let allHeard = true;
    for (const p of this.peers.values()) {
      if (p.starting && this.isAlive(p, now)) return false;
      if (p.lastHeard === undefined || p.lastHeard < this.settleFrom) allHeard = false;
    }
    return allHeard || elapsed >= this.deadAfterMs;
  }

  /**
   * Begin a new settling window at `now`: this node was cut off (its links
   * were down), so what it last heard is stale, and a peer it counts as dead
   * may be alive and own VIPs it would otherwise take.
   */
  unsettle(now: number): void {
    this.settleFrom = now;
  }

  /** Every configured peer, for status output, sorted by name. */
  status(now: number): PeerStatus[] {
    return [...this.peers.values()]
      .map((p) => {
        const s: PeerStatus = {
          name: p.endpoint.name,
          address: p.endpoint.address,
          port: p.endpoint.port,
          alive: this.isAlive(p, now),
          restarting: p.restartUntil !== undefined && now < p.restartUntil,
          lastSeenMs: p.lastSeen === undefined ? null : Math.max(0, Math.round(now - p.lastSeen)),
          left: p.left,
          starting: p.starting,
          health: p.lastSeen === undefined ? null : p.health,
          claims: p.claims.size,
        };
        if (p.seenFrom) s.seenFrom = p.seenFrom;
        return s;
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}

/**
 * How a node learns which VIPs it owns in layer 2 mode. The announcer
 * (announcer.ts) does the node-local work (ARP map, gratuitous ARP, link
 * watching) and asks an OwnershipStrategy who owns what:
 *
 * - `peers` (peer-ownership.ts): heartbeats between the nodes listed in
 *   `l2.peers` and rendezvous hashing. It needs no API server, so it is the
 *   one the file source uses.
 * - `lease` (lease-ownership.ts): one coordination.k8s.io Lease per
 *   service, as Cilium and kube-vip do. The agent picks it with the
 *   Kubernetes source (`l2.ownership: auto`, the default), where the API
 *   server already knows every node and no peer list has to be kept.
 *
 * Both take the same inputs (candidates with their services, link health)
 * and report the same outputs, so the announcer works the same with either.
 */
import type { LinkHealth } from './ownership.js';
import type { PeerStatus } from './heartbeat.js';

/** One VIP this node may own, with its service (`namespace/name`, comma-joined when shared). */
export interface CandidateVip {
  vip: string;
  service: string;
}

/** Who owns a VIP as this node knows it. */
export interface VipOwner {
  /** Node name, or undefined when nobody owns it (as far as this node knows). */
  owner?: string;
  /** When that owner took it (or this node first saw it own it), ms since the epoch. */
  since?: number;
}

/** Counters every strategy keeps (exported as metrics by the agent). */
export interface StrategyCounters {
  /** Messages sent to peers (heartbeats, lease renewals). */
  sent: number;
  /** Messages received and accepted. */
  received: number;
  /** Messages dropped: malformed, unknown sender, stale. */
  rejected: number;
  /** Messages that could not be sent. */
  sendErrors: number;
}

/**
 * Decides which VIPs this node owns. Implementations converge in the
 * background and call the change listener whenever {@link owned} changes.
 */
export interface OwnershipStrategy {
  /** `peers` or `lease`: shown in status. */
  readonly kind: string;
  /** Begin (bind sockets, start timers, acquire). @throws Error naming the setting that failed (e.g. the port in use) */
  start(): Promise<void>;
  /**
   * Before the first {@link update}: this node owns `vips`, which it found
   * in its ARP map at start (the previous agent answered for them and
   * stopped for a restart, or was killed), with link `health`. They count
   * as owned (and, with peers, claimed in heartbeats) until the first
   * update() decides, unless a peer has taken one over meanwhile (it keeps
   * it) or the links are down (nothing is owned). Called before start(),
   * and again when the link health changes before the first update(); a
   * VIP given up is not adopted again. Ignored after the first update().
   */
  adopt(vips: readonly string[], health: LinkHealth): void;
  /**
   * This node's candidates (the whole set) and link health: `down` means it
   * cannot answer ARP and must own nothing, at once.
   */
  update(candidates: readonly CandidateVip[], health: LinkHealth): void;
  /** The VIPs this node owns now, with the time (ms since the epoch) it took each. */
  owned(): ReadonlyMap<string, number>;
  /** The owner of `vip` as this node knows it. */
  ownerOf(vip: string): VipOwner;
  /** The other nodes, for status. */
  peers(): PeerStatus[];
  counters(): StrategyCounters;
  /** Register the listener called (synchronously, after the change) when {@link owned} changes. */
  onChange(listener: () => void): void;
  /**
   * Give every VIP up and tell the others at once (hand-over), then release
   * resources. Idempotent.
   * @param opts.restart the agent stops to start again and keeps answering
   *   ARP meanwhile: give nothing up, tell the others to hold this node's
   *   VIPs (peers), keep the Leases (lease); only release resources
   */
  stop(opts?: { restart?: boolean }): Promise<void>;
}

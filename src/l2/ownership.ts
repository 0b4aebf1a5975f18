/**
 * Who answers ARP for a VIP: the pure decision of layer 2 mode's peer
 * ownership, with no I/O and no clock (heartbeats and timers are in
 * peer-ownership.ts). Every node runs it on its own view of the group and,
 * once the views agree (one heartbeat interval), they all reach the same
 * answer, so exactly one node claims each VIP.
 *
 * The rule, for one VIP, over the nodes this node believes alive (itself
 * included):
 *   1. Candidates: the nodes that want the VIP (a service with a ready
 *      backend they can serve) and can answer ARP at all (link health not
 *      `down`).
 *   2. Only the healthiest candidates count: a node with every announcing
 *      interface up beats one with some of them down (it reaches every
 *      client segment).
 *   3. Stickiness: if some of them claim the VIP already, one of those keeps
 *      it, so a node that comes back does not take VIPs back (each move
 *      costs clients a few hundred ms and the switches a MAC move). A
 *      claimant still `starting` (its agent restarted, found the VIP in its
 *      ARP map and answers for it, but has not had its first sync) counts
 *      only when no other claimant is past its start: a peer that took the
 *      VIP over while that node was down (kill -9, a restart longer than
 *      the hold) keeps it.
 *   4. Otherwise, and to settle a conflict between several claimants (after
 *      a partition heals), the node with the highest rendezvous score
 *      hash(node, VIP) wins (Thaler & Ravishankar, "Using name-based mappings
 *      to increase hit rates", IEEE/ACM ToN 6(1), 1998): VIPs spread over
 *      the nodes, and a node leaving moves only its own VIPs.
 *
 * A node that has just started has not heard its peers yet and would think
 * itself alone: until it is `settled` it keeps what it claims (nothing at a
 * first start; after an agent restart, the VIPs it found in its ARP map) and
 * takes nothing new.
 */

/**
 * Link health of a node's announcing interfaces: `up` every one has carrier,
 * `degraded` some do, `down` none does (the node cannot answer ARP).
 */
export type LinkHealth = 'up' | 'degraded' | 'down';

const HEALTH_RANK: Record<LinkHealth, number> = { down: 0, degraded: 1, up: 2 };

/** One node as the decision sees it (this node, or a peer from its last heartbeat). */
export interface NodeView {
  /** The node's name (`node.name`); unique in the group. */
  name: string;
  health: LinkHealth;
  /** VIPs the node wants to announce. */
  candidates: ReadonlySet<string>;
  /** VIPs the node announces now. */
  claims: ReadonlySet<string>;
  /**
   * The node's agent has not had its first sync yet: its claims are the
   * ones it found at start (rule 3). Default false.
   */
  starting?: boolean;
}

/** Input of {@link decideOwnership}. */
export interface OwnershipInput {
  self: NodeView;
  /** The peers this node hears now (alive, not left); dead peers are left out. */
  livePeers: readonly NodeView[];
  /**
   * False while this node may not yet have heard every live peer (start-up):
   * it then keeps its claims but claims nothing new.
   */
  settled: boolean;
  /**
   * VIPs this node must not newly claim yet: new candidates of its own for
   * which a live peer ranks higher and has not said whether it wants them
   * (peer-ownership.ts waits a dead-after window for it). Without this, a
   * node that learns of a new service a heartbeat before its peer takes a
   * VIP that rendezvous hashing gives the peer, and keeps it (stickiness).
   */
  deferred?: ReadonlySet<string>;
}

/** FNV-1a, 32 bits, over the UTF-8 bytes of `s` (http://www.isthe.com/chongo/tech/comp/fnv/). */
function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** MurmurHash3's 32-bit finaliser: FNV alone mixes the last bytes poorly, and VIPs differ in their last octet. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Rendezvous score of `node` for `vip`: an unsigned 32-bit integer, the same
 * on every node (it depends on nothing but the two strings).
 */
export function rendezvousScore(node: string, vip: string): number {
  return fmix32(fnv1a32(`${vip}\n${node}`));
}

/** True when `a` outranks `b` for `vip`: higher score, ties broken by the greater name. */
function outranks(a: string, b: string, vip: string): boolean {
  const sa = rendezvousScore(a, vip);
  const sb = rendezvousScore(b, vip);
  return sa !== sb ? sa > sb : a > b;
}

/**
 * The nodes in rendezvous order for `vip`, best first: who takes the VIP
 * when nobody claims it and all are equally healthy.
 */
export function rendezvousOrder(vip: string, nodes: readonly string[]): string[] {
  return [...nodes].sort((a, b) => (a === b ? 0 : outranks(a, b, vip) ? -1 : 1));
}

/**
 * The owner of `vip` among `nodes` by the rule above (the module's doc), or
 * undefined when no node is a candidate.
 */
export function electOwner(vip: string, nodes: readonly NodeView[]): string | undefined {
  let best = 0;
  for (const n of nodes) if (n.candidates.has(vip)) best = Math.max(best, HEALTH_RANK[n.health]);
  if (best === 0) return undefined;
  const tier = nodes.filter((n) => n.candidates.has(vip) && HEALTH_RANK[n.health] === best);
  const claimants = tier.filter((n) => n.claims.has(vip));
  const settledClaimants = claimants.filter((n) => !n.starting);
  const pool = settledClaimants.length ? settledClaimants : claimants.length ? claimants : tier;
  let winner = pool[0].name;
  for (const n of pool.slice(1)) if (outranks(n.name, winner, vip)) winner = n.name;
  return winner;
}

/**
 * The VIPs this node owns now: those of its candidates for which
 * {@link electOwner} over itself and its live peers names it, restricted to
 * the VIPs it already claims while it is not settled.
 * @returns a new set (the input is not changed)
 */
export function decideOwnership(input: OwnershipInput): Set<string> {
  const { self, livePeers, settled } = input;
  const nodes = [self, ...livePeers.filter((p) => p.name !== self.name)];
  const owned = new Set<string>();
  for (const vip of self.candidates) {
    if (!settled && !self.claims.has(vip)) continue;
    if (input.deferred?.has(vip) && !self.claims.has(vip)) continue;
    if (electOwner(vip, nodes) === self.name) owned.add(vip);
  }
  return owned;
}

/**
 * The one interface every VIP announcer implements (BGP in `src/bgp`, layer 2
 * in `src/l2`), after MetalLB's speaker: the agent says which VIPs this node
 * should announce, and the announcer converges to that set on its own,
 * retrying and re-announcing after its backend (gobgpd, the ARP responder)
 * restarts. The agent never issues add/withdraw commands itself.
 */

/** One VIP this node should announce, with the service that owns it. */
export interface AnnouncedVip {
  /** The VIP, a dotted-quad IPv4 address; BGP announces it as a /32. */
  vip: string;
  /** The owning service, `namespace/name` (for status and logs only). */
  service: string;
  /**
   * Extra RFC 1997 communities for this VIP, `ASN:value` with both halves
   * 0..65535 (e.g. `65000:100`); added to the announcer's configured ones.
   */
  communities?: string[];
  /**
   * Extra RFC 8092 large communities for this VIP, `global:local1:local2`
   * with each part 0..4294967295; added to the announcer's configured ones.
   */
  largeCommunities?: string[];
  /**
   * BGP only: LOCAL_PREF of the route (0..4294967295, from a
   * BGPAdvertisement); absent: none set by xlb. gobgpd sends it to iBGP
   * neighbors only.
   */
  localPref?: number;
  /**
   * Layer 2 only: the names of this node's announcing interfaces to answer
   * ARP for this VIP on (an L2AnnouncementPolicy's `interfaces`); absent:
   * every one of them. BGP ignores it.
   */
  interfaces?: string[];
}

/**
 * A VIP announcer. Implementations converge in the background: a resolved
 * `setDesired` means the new set was accepted, not that peers have it yet;
 * {@link Announcer.status} tells what is announced now.
 */
export interface Announcer {
  /**
   * Replace the desired set of VIPs (the whole set, not a delta). VIPs no
   * longer in the set are withdrawn; VIPs announced before this announcer
   * started (e.g. by a previous agent process) and not in the set are
   * withdrawn too.
   * @throws Error naming `vips[i].<field>` when an entry is malformed
   *   (not IPv4, bad community); nothing of that call is applied then
   */
  setDesired(vips: AnnouncedVip[]): Promise<void>;
  /** A JSON-serialisable snapshot of sessions, announced VIPs and counters. */
  status(): unknown;
  /**
   * Stop. An agent's restart stop keeps the announcements for the next
   * agent (BGP: `{ keepRoutes: true }`, gobgpd keeps running; layer 2:
   * `{ restart: true }`, XDP keeps answering ARP and the peers hold the
   * VIPs); without options (an uninstall) everything is withdrawn and the
   * resources released.
   */
  stop(opts?: { keepRoutes?: boolean; restart?: boolean }): Promise<void>;
}

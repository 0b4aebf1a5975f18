/**
 * BGPAdvertisement resources (xlb.io/v1alpha1, cluster-scoped; CRD in
 * deploy/helm/xlb/crds/xlb.io_bgpadvertisements.yaml): which VIPs the BGP
 * mode advertises, from which nodes, with which communities, after
 * MetalLB's BGPAdvertisement (its documented fields `ipAddressPools`,
 * `serviceSelectors`, `nodeSelectors`, `communities`, `localPref`, `peers`;
 * here `ipPools`, `serviceSelector`, `nodeSelector`, `communities`,
 * `largeCommunities`, `localPref`, `peers`). Followed live by every agent
 * with a `bgp` section and `bgp.customResources`.
 *
 * - While no advertisement is accepted, every VIP is advertised as the `bgp`
 *   section says: the configuration alone keeps working, and one bad
 *   advertisement cannot stop every route.
 * - Once one is, this node advertises a VIP only when an accepted
 *   advertisement selects this node (`nodeSelector` over the Node's labels),
 *   one of the VIP's Services (`serviceSelector` over its labels and the
 *   pseudo-labels `io.kubernetes.service.namespace` /
 *   `io.kubernetes.service.name`) and, when it names `ipPools`, a pool that
 *   holds the VIP. The VIP then carries the union of those advertisements'
 *   `communities` and `largeCommunities` on top of `bgp.communities` /
 *   `bgp.largeCommunities` and the Service annotations, and the highest of
 *   their `localPref`s.
 * - `localPref`: gobgpd puts LOCAL_PREF on the path and sends it to iBGP
 *   neighbors only; toward eBGP neighbors it removes it (gobgp
 *   pkg/server/server.go, filterpath; RFC 4271 section 5.1.5), as MetalLB
 *   documents ("only meaningful with iBGP").
 * - `peers` (which BGPPeers get the VIPs) would need a gobgp export policy
 *   per neighbor set; xlb does not build those yet. An advertisement with
 *   `peers` is accepted with reason AcceptedWithoutPeers, a Warning Event
 *   and an entry in `/v1/issues`: its VIPs go to every neighbor.
 * - Checked beyond the schema: selectors (In/NotIn need values,
 *   Exists/DoesNotExist take none, reason InvalidSelector) and large
 *   community parts over 32 bits (InvalidCommunity). A refused
 *   advertisement gets `conditions[type=Accepted]` False with a message
 *   naming the field, one Warning Event, and `/v1/issues`; the others keep
 *   working. A pool name in `ipPools` that this node does not know is
 *   reported in its `/v1/issues` (it covers no VIP).
 *
 * Until the advertisements are known (listed, or their CRD found missing)
 * and this node's labels are, the agent leaves BGP as it is: the routes of
 * the previous agent stay, and no VIP is withdrawn or added on a guess.
 */
import type { AnnouncedVip } from '../announce/announcer.js';
import type { InputIssue, ServiceModel } from '../model/types.js';
import type { RawObject } from '../sources/kubernetes/informer.js';
import { CUSTOM_RESOURCES } from '../sources/kubernetes/custom.js';
import { NodeSelectedResources, type NodeSelectedOptions } from '../sources/kubernetes/node-selected.js';
import { parseLabelSelector, selectorMatches, type LabelSelector } from '../sources/kubernetes/selector.js';
import { SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL } from '../ipam/pool.js';
import { parseCommunity, parseLargeCommunity } from './communities.js';

/** The kind, as its CRD names it. */
export const ADVERTISEMENT_KIND = CUSTOM_RESOURCES.bgpAdvertisements;

/** `conditions[type=Accepted].reason`. */
export type AdvertisementReason = 'Accepted' | 'AcceptedWithoutPeers' | 'InvalidSelector' | 'InvalidCommunity' | 'InvalidSpec';

/** What xlb made of one BGPAdvertisement (the same on every node). */
export interface ParsedAdvertisement {
  name: string;
  uid?: string;
  resourceVersion?: string;
  accepted: boolean;
  serviceSelector?: LabelSelector;
  nodeSelector?: LabelSelector;
  /** Pool names; absent: VIPs of any pool or of none. */
  ipPools?: string[];
  /** `ASN:value` or well-known names, as written. */
  communities: string[];
  /** `global:local1:local2`, as written. */
  largeCommunities: string[];
  /** LOCAL_PREF, 0..4294967295. */
  localPref?: number;
  /** BGPPeer names (not applied: see the module comment). */
  peers?: string[];
  reason: AdvertisementReason;
  /** `<field>: <why>`; empty when accepted without remark. */
  message: string;
  field?: string;
}

const isNameList = (v: unknown): v is string[] => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 253);

/**
 * Read one BGPAdvertisement. Never throws: what cannot be used makes an
 * advertisement with `accepted: false`, a reason and a message naming the
 * field (e.g. `spec.largeCommunities[1]: ...`).
 */
export function parseAdvertisementResource(obj: RawObject): ParsedAdvertisement {
  const m = obj.metadata;
  const base = { name: m.name, uid: m.uid, resourceVersion: m.resourceVersion, communities: [], largeCommunities: [] };
  const bad = (reason: AdvertisementReason, field: string, message: string): ParsedAdvertisement => ({ ...base, accepted: false, reason, field, message: `${field}: ${message}` });
  const spec = obj.spec as Record<string, unknown> | undefined;
  if (!spec || typeof spec !== 'object') return bad('InvalidSpec', 'spec', 'is required');
  const svc = parseLabelSelector(spec.serviceSelector, 'spec.serviceSelector');
  if (svc.error) return bad('InvalidSelector', svc.error.field, svc.error.message);
  const node = parseLabelSelector(spec.nodeSelector, 'spec.nodeSelector');
  if (node.error) return bad('InvalidSelector', node.error.field, node.error.message);
  const present = (v: unknown) => v !== undefined && v !== null;
  if (present(spec.ipPools) && !isNameList(spec.ipPools)) return bad('InvalidSpec', 'spec.ipPools', 'must list pool names');
  if (present(spec.peers) && !isNameList(spec.peers)) return bad('InvalidSpec', 'spec.peers', 'must list BGPPeer names');
  const communities: string[] = [];
  const largeCommunities: string[] = [];
  for (const [key, out, parse] of [
    ['communities', communities, parseCommunity],
    ['largeCommunities', largeCommunities, parseLargeCommunity],
  ] as const) {
    const list = spec[key];
    if (!present(list)) continue;
    if (!Array.isArray(list)) return bad('InvalidSpec', `spec.${key}`, 'must be a list of strings');
    for (let i = 0; i < list.length; i++) {
      const field = `spec.${key}[${i}]`;
      if (typeof list[i] !== 'string') return bad('InvalidCommunity', field, 'must be a string');
      try {
        parse(list[i], field);
      } catch (e) {
        return bad('InvalidCommunity', field, (e as Error).message.slice(field.length + 2));
      }
      out.push(list[i]);
    }
  }
  const lp = spec.localPref;
  if (present(lp) && !(Number.isInteger(lp) && (lp as number) >= 0 && (lp as number) <= 0xffffffff)) return bad('InvalidSpec', 'spec.localPref', `must be an integer 0..4294967295 (got ${JSON.stringify(lp)})`);
  const peers = present(spec.peers) ? (spec.peers as string[]) : undefined;
  return {
    ...base,
    accepted: true,
    serviceSelector: svc.selector,
    nodeSelector: node.selector,
    ...(present(spec.ipPools) ? { ipPools: spec.ipPools as string[] } : {}),
    communities,
    largeCommunities,
    ...(present(lp) ? { localPref: lp as number } : {}),
    ...(peers ? { peers } : {}),
    reason: peers ? 'AcceptedWithoutPeers' : 'Accepted',
    message: peers ? `spec.peers: limiting the VIPs to some BGP peers is not supported yet; they are advertised to every neighbor of the nodes (${peers.join(', ')} among them)` : '',
    ...(peers ? { field: 'spec.peers' } : {}),
  };
}

/** A pool as the selection needs it: its name and whether it holds an address (ipam's Pool). */
export interface PoolLike {
  name: string;
  contains(ip: string): boolean;
}

/**
 * The VIPs this node advertises under the advertisements (see the module
 * comment), after MetalLB's BGPAdvertisement semantics.
 * @param vips the VIPs this node would announce without advertisements (announcedVips), sorted
 * @param adverts every advertisement, accepted or not (without an accepted one, `vips` are returned as they are)
 * @param services the snapshot's Services, for their labels (`namespace/name` → model)
 * @param nodeLabels this node's labels
 * @param pools the address pools this node knows (ipam.pools and LoadBalancerIPPools); empty without IPAM
 * @returns the VIPs with the advertisements' communities and LOCAL_PREF
 *   added, and per advertisement selecting this node the `ipPools` names no
 *   pool here has
 */
export function applyAdvertisements(
  vips: readonly AnnouncedVip[],
  adverts: readonly ParsedAdvertisement[],
  services: ReadonlyMap<string, Pick<ServiceModel, 'labels'>>,
  nodeLabels: Record<string, string>,
  pools: readonly PoolLike[],
): { vips: AnnouncedVip[]; unknownPools: Map<string, string[]> } {
  const accepted = adverts.filter((a) => a.accepted);
  const unknownPools = new Map<string, string[]>();
  if (!accepted.length) return { vips: [...vips], unknownPools };
  const here = accepted.filter((a) => selectorMatches(a.nodeSelector, nodeLabels));
  for (const a of here) {
    const unknown = (a.ipPools ?? []).filter((n) => !pools.some((p) => p.name === n));
    if (unknown.length) unknownPools.set(a.name, unknown);
  }
  const out: AnnouncedVip[] = [];
  for (const v of vips) {
    const inPool = (a: ParsedAdvertisement) => !a.ipPools || pools.some((p) => a.ipPools!.includes(p.name) && p.contains(v.vip));
    const labelsOf = (key: string) => {
      const i = key.indexOf('/');
      return { ...(services.get(key)?.labels ?? {}), [SERVICE_NAMESPACE_LABEL]: key.slice(0, i), [SERVICE_NAME_LABEL]: key.slice(i + 1) };
    };
    const keys = v.service.split(',');
    const covering = here.filter((a) => inPool(a) && keys.some((k) => selectorMatches(a.serviceSelector, labelsOf(k))));
    if (!covering.length) continue;
    const communities = new Set([...(v.communities ?? []), ...covering.flatMap((a) => a.communities)]);
    const large = new Set([...(v.largeCommunities ?? []), ...covering.flatMap((a) => a.largeCommunities)]);
    const prefs = covering.flatMap((a) => (a.localPref !== undefined ? [a.localPref] : []));
    const { communities: _c, largeCommunities: _l, localPref: _p, ...rest } = v;
    out.push({
      ...rest,
      ...(communities.size ? { communities: [...communities].sort() } : {}),
      ...(large.size ? { largeCommunities: [...large].sort() } : {}),
      ...(prefs.length ? { localPref: Math.max(...prefs) } : v.localPref !== undefined ? { localPref: v.localPref } : {}),
    });
  }
  return { vips: out, unknownPools };
}

/** Options of {@link AdvertisementResources}. */
export interface AdvertisementResourcesOptions extends NodeSelectedOptions {
  nodeName: string;
}

/** Follows the BGPAdvertisements for this node. See the module comment. */
export class AdvertisementResources extends NodeSelectedResources<ParsedAdvertisement> {
  private unknownPools = new Map<string, string[]>();

  constructor(private readonly opts: AdvertisementResourcesOptions) {
    super(opts, {
      kind: ADVERTISEMENT_KIND,
      parse: parseAdvertisementResource,
      acceptedMessage: 'advertising the VIPs of the Services and pools it selects from the nodes it selects',
      logKey: 'advertisement',
      area: 'bgp',
    });
  }

  /** The BGP VIPs of this node under the advertisements (callable once {@link ready}); see {@link applyAdvertisements}. */
  select(vips: readonly AnnouncedVip[], services: ReadonlyMap<string, Pick<ServiceModel, 'labels'>>, pools: readonly PoolLike[]): AnnouncedVip[] {
    const r = applyAdvertisements(vips, this.parsed, services, this.labels ?? {}, pools);
    for (const [name, unknown] of r.unknownPools) {
      if (this.unknownPools.get(name)?.join() !== unknown.join()) this.opts.log.warn({ advertisement: name, pools: unknown }, 'BGPAdvertisement names pools this node does not know; they cover no VIP');
    }
    this.unknownPools = r.unknownPools;
    return r.vips;
  }

  /** The advertisements as read. */
  advertisements(): readonly ParsedAdvertisement[] {
    return this.parsed;
  }

  /** Refused advertisements, `peers` not applied, unknown pools, and why resources are not read: for `/v1/issues`. */
  issues(): InputIssue[] {
    const out = this.baseIssues('this advertisement advertises nothing');
    for (const a of this.parsed) {
      if (a.accepted && a.reason === 'AcceptedWithoutPeers') out.push({ object: `BGPAdvertisement ${a.name}`, field: 'spec.peers', message: a.message.replace(/^[^:]*: /, '') });
    }
    for (const [name, unknown] of this.unknownPools) {
      out.push({ object: `BGPAdvertisement ${name}`, field: 'spec.ipPools', message: `${unknown.join(', ')}: no such pool on ${this.opts.nodeName} (ipam.pools or LoadBalancerIPPool); covers no VIP` });
    }
    return out;
  }
}

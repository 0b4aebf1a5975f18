/**
 * kube-proxy's rules for what one node serves, written out plainly: which
 * Services are proxied, which endpoints make up the two endpoint sets of a
 * service port, which set each frontend's new flows choose from, and
 * {@link translateState}, the whole translation of a snapshot done the
 * simple way. This file is the reference: translate.ts does the same work
 * incrementally and a differential test (test/unit/translate-diff.test.ts)
 * holds the two equal. No caches, no shortcuts here.
 *
 * Source: kube-proxy as of Kubernetes v1.35:
 * - pkg/proxy/util ShouldSkipService and cmd/kube-proxy's informer label
 *   selector: which Services are not proxied at all;
 * - pkg/proxy/serviceport.go: ExternallyAccessible, UsesClusterEndpoints,
 *   UsesLocalEndpoints, ExternalPolicyLocal, InternalPolicyLocal, and the
 *   health check node port (NeedsHealthCheck);
 * - pkg/proxy/topology.go: CategorizeEndpoints and topologyModeFromHints;
 * - pkg/proxy/iptables/proxier.go (and nftables): how each kind of
 *   frontend picks its chain (the internal chain for the cluster IP, the
 *   EXT chain for everything else, pods and the node itself short-
 *   circuited from the EXT chain to the cluster chain).
 *
 * Topology (hints). v1.35 follows an EndpointSlice's hints whenever they are
 * complete, with no opt-in on the Service:
 * - PreferSameNode when every ready endpoint carries a node hint
 *   (`hints.forNodes`) and some endpoint is hinted for this node (KEP-3015;
 *   the PreferSameTrafficDistribution gate was alpha in v1.33, on by default
 *   from v1.34, GA and locked on in v1.35);
 * - else PreferSameZone when every ready endpoint carries a zone hint
 *   (`hints.forZones`) and some endpoint is hinted for the zone in this
 *   node's `topology.kubernetes.io/zone` label;
 * - else no filtering.
 * Older kube-proxy (before `spec.trafficDistribution`, KEP-4444, added in
 * v1.30; its gate was on by default from v1.31 and GA in v1.33) read zone
 * hints only when the TopologyAwareHints gate was on, the Service opted in
 * with the annotation `service.kubernetes.io/topology-mode` (earlier
 * `service.kubernetes.io/topology-aware-hints`) set to anything but '',
 * 'disabled' or 'Disabled' (at first only 'Auto' or 'auto'), and the node
 * had a non-empty zone label; otherwise it ignored hints. Since then the
 * proxy follows the hints whenever they are there (the EndpointSlice
 * controller writes them only for Services that ask). xlb does not read
 * that annotation.
 *
 * Where this module differs from kube-proxy's return values, it says so at
 * the function.
 */
import type { ClusterState, EndpointModel, EndpointSliceModel, InputIssue, NodeInfo, ServiceModel, ServicePort } from '../model/types.js';
import { HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL, TOPOLOGY_ZONE_LABEL } from '../model/types.js';

export { HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL };
import { ipToU32, isIPv4 } from '../util/ip.js';
import type { DesiredBackend, DesiredFrontend, DesiredService, EndpointSet, FrontendKind, ServedProtocol, TopologyMode } from './types.js';



/**
 * Loopback address on which node ports are also served (kube-proxy's
 * iptables mode does, with its default --iptables-localhost-nodeports;
 * Cilium's socket load balancer does too). Only processes on the node reach
 * it, so it has no external set.
 */
export const LOOPBACK = '127.0.0.1';

// ---------------------------------------------------------------------------
// 1. Which Services are served

/**
 * Why a Service is not proxied at all, as an issue naming the field, or
 * undefined when it is. In kube-proxy's order: its informers never see
 * Services labelled with another proxy's name or as headless; then
 * ShouldSkipService drops those without a cluster IP ("None") and
 * ExternalName ones.
 */
export function skipIssue(svc: ServiceModel): InputIssue | undefined {
  const object = `Service ${svc.namespace}/${svc.name}`;
  const proxyName = svc.labels[SERVICE_PROXY_NAME_LABEL];
  if (proxyName !== undefined) {
    return {
      object,
      field: `metadata.labels["${SERVICE_PROXY_NAME_LABEL}"]`,
      message: `names another proxy (${JSON.stringify(proxyName)}); not served (kube-proxy serves only Services without this label)`,
    };
  }
  if (svc.labels[HEADLESS_LABEL] !== undefined) {
    return {
      object,
      field: `metadata.labels["${HEADLESS_LABEL}"]`,
      message: 'labelled headless; not served (kube-proxy ignores objects with this label)',
    };
  }
  if (svc.headless) {
    return { object, field: 'spec.clusterIP', message: '"None" (headless): no virtual IP to serve; clients find the endpoints through DNS' };
  }
  if (svc.type === 'ExternalName') {
    return { object, field: 'spec.type', message: 'ExternalName: a DNS alias (spec.externalName) with nothing to proxy; not served' };
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// 2. The traffic policies of a service port

/** What CategorizeEndpoints needs to know of a service port (kube-proxy's ServicePort). */
export interface ServicePortPolicy {
  /** Reached by something other than its cluster IP (see {@link externallyAccessible}). */
  externallyAccessible: boolean;
  /** `externalTrafficPolicy: Local`. */
  externalPolicyLocal: boolean;
  /** `internalTrafficPolicy: Local`. */
  internalPolicyLocal: boolean;
}

/**
 * kube-proxy's ExternallyAccessible for the IPv4 side: the port has a node
 * port, or the Service has an IPv4 LoadBalancer VIP or an IPv4 external IP.
 * (xlb takes VIPs of type LoadBalancer only, and node ports of types
 * NodePort and LoadBalancer only: normalization rejects others.)
 */
export function externallyAccessible(svc: ServiceModel, port: ServicePort): boolean {
  if ((svc.type === 'NodePort' || svc.type === 'LoadBalancer') && port.nodePort !== undefined) return true;
  if (svc.type === 'LoadBalancer' && svc.loadBalancerIPs.some(isIPv4)) return true;
  return svc.externalIPs.some(isIPv4);
}

/** The {@link ServicePortPolicy} of one port of a Service. */
export function portPolicy(svc: ServiceModel, port: ServicePort): ServicePortPolicy {
  return {
    externallyAccessible: externallyAccessible(svc, port),
    externalPolicyLocal: svc.externalTrafficPolicy === 'Local',
    internalPolicyLocal: svc.internalTrafficPolicy === 'Local',
  };
}

/**
 * kube-proxy's UsesClusterEndpoints: internalTrafficPolicy is Cluster, or
 * the port takes outside traffic at all (even with externalTrafficPolicy
 * Local, pods and the node reach external frontends through the cluster set).
 */
export function usesClusterEndpoints(p: ServicePortPolicy): boolean {
  return !p.internalPolicyLocal || p.externallyAccessible;
}

/** kube-proxy's UsesLocalEndpoints: internalTrafficPolicy Local, or externalTrafficPolicy Local on a port reachable from outside. */
export function usesLocalEndpoints(p: ServicePortPolicy): boolean {
  return p.internalPolicyLocal || (p.externalPolicyLocal && p.externallyAccessible);
}

/**
 * `spec.healthCheckNodePort` when the node answers health checks for the
 * Service: type LoadBalancer with externalTrafficPolicy Local (kube-proxy's
 * NeedsHealthCheck); undefined otherwise, even if the field is set.
 */
export function healthCheckNodePortOf(svc: ServiceModel): number | undefined {
  return svc.type === 'LoadBalancer' && svc.externalTrafficPolicy === 'Local' ? svc.healthCheckNodePort : undefined;
}

// ---------------------------------------------------------------------------
// 3. The two endpoint sets of a service port

/** What the endpoint rules read of an endpoint. */
export type EndpointFacts = Pick<EndpointModel, 'ready' | 'serving' | 'terminating' | 'nodeName' | 'hints'>;

/** The result of {@link categorizeEndpoints}; every list holds input objects, in input order. */
export interface EndpointSets<E> {
  /**
   * The cluster set: undefined when the port never uses it. Ready endpoints
   * (with topology applied), else serving-and-terminating ones anywhere.
   */
  clusterEndpoints?: E[];
  /**
   * The local set: undefined when the port never uses it. Ready endpoints
   * on this node, else serving-and-terminating ones on this node.
   */
  localEndpoints?: E[];
  /** The union of both sets. */
  allReachableEndpoints: E[];
  /**
   * Some endpoint anywhere is usable (ready, or serving and terminating).
   * False: kube-proxy rejects connections; true with an empty set: traffic
   * to that set's frontends is dropped.
   */
  hasAnyEndpoints: boolean;
  /** Topology applied to the cluster set ('' when the port has no cluster set). */
  topology: TopologyMode;
}

/** True when the endpoint runs on node `nodeName` (kube-proxy's IsLocal). */
function isLocal(e: EndpointFacts, nodeName: string): boolean {
  return e.nodeName !== undefined && e.nodeName === nodeName;
}

const NO_HINTS: readonly string[] = [];

/**
 * kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go, v1.35): the
 * endpoints of one service port sorted into its cluster set and its local
 * set.
 *
 * - Cluster set (when the port uses it): the ready endpoints available
 *   under {@link topologyModeFromHints}'s mode; if there are none, every
 *   endpoint that is serving and terminating (topology no longer applies:
 *   a mode is only chosen when a ready endpoint matches it).
 * - Local set (when the port uses it): this node's ready endpoints; if
 *   there are none, this node's serving-and-terminating endpoints.
 *   Topology never applies to it.
 *
 * Differences from kube-proxy's return values, none in meaning: kube-proxy
 * returns nil (not an empty list) for a used local set without usable
 * local endpoints, and for everything when there are no endpoints; here a
 * set is undefined exactly when the port does not use it. The union keeps
 * input order (kube-proxy's is unordered).
 *
 * @param endpoints the port's endpoints (any objects with the conditions, `nodeName` and `hints`)
 * @param svcPort the port's traffic policies
 * @param nodeName this node's name (locality and node hints)
 * @param topologyLabels this node's labels; `topology.kubernetes.io/zone` selects zone hints
 */
export function categorizeEndpoints<E extends EndpointFacts>(
  endpoints: readonly E[],
  svcPort: ServicePortPolicy,
  nodeName: string,
  topologyLabels?: Readonly<Record<string, string>>,
): EndpointSets<E> {
  const zone = topologyLabels?.[TOPOLOGY_ZONE_LABEL] ?? '';
  let topology: TopologyMode = '';
  let clusterEndpoints: E[] | undefined;
  let localEndpoints: E[] | undefined;
  let hasAnyEndpoints = false;

  if (usesClusterEndpoints(svcPort)) {
    topology = topologyModeFromHints(endpoints, nodeName, zone);
    clusterEndpoints = [];
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i];
      if (e.ready && availableForTopology(e, topology, nodeName, zone)) clusterEndpoints.push(e);
    }
    if (clusterEndpoints.length === 0) {
      for (let i = 0; i < endpoints.length; i++) {
        const e = endpoints[i];
        if (e.serving && e.terminating) clusterEndpoints.push(e);
      }
    }
    // A ready endpoint anywhere always lands in the set (see above).
    if (clusterEndpoints.length > 0) hasAnyEndpoints = true;
  }

  if (!usesLocalEndpoints(svcPort)) {
    return { clusterEndpoints, localEndpoints, allReachableEndpoints: clusterEndpoints ?? [], hasAnyEndpoints, topology };
  }

  let hasLocalReady = false;
  let hasLocalServingTerminating = false;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i];
    if (e.ready) {
      hasAnyEndpoints = true;
      if (isLocal(e, nodeName)) hasLocalReady = true;
    } else if (e.serving && e.terminating) {
      hasAnyEndpoints = true;
      if (isLocal(e, nodeName)) hasLocalServingTerminating = true;
    }
  }
  const useServingTerminating = !hasLocalReady && hasLocalServingTerminating;
  localEndpoints = [];
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i];
    if (!isLocal(e, nodeName)) continue;
    if (hasLocalReady ? e.ready : useServingTerminating && e.serving && e.terminating) localEndpoints.push(e);
  }

  if (!clusterEndpoints) {
    return { clusterEndpoints, localEndpoints, allReachableEndpoints: localEndpoints, hasAnyEndpoints, topology };
  }
  if (topology === '' && !useServingTerminating) {
    // The cluster set holds every ready endpoint, the local set only ready local ones.
    return { clusterEndpoints, localEndpoints, allReachableEndpoints: clusterEndpoints, hasAnyEndpoints, topology };
  }
  // The cluster set may miss local endpoints (topology, or terminating ones
  // the local set fell back to): the union, in input order.
  const inCluster = new Set<E>(clusterEndpoints);
  const inLocal = new Set<E>(localEndpoints);
  const allReachableEndpoints = endpoints.filter((e) => inCluster.has(e) || inLocal.has(e));
  return { clusterEndpoints, localEndpoints, allReachableEndpoints, hasAnyEndpoints, topology };
}

/**
 * kube-proxy's topologyModeFromHints (v1.35), over the ready endpoints only:
 * 'PreferSameNode' when every one has a node hint and one is hinted for
 * `nodeName`; else 'PreferSameZone' when every one has a zone hint and one
 * is hinted for `zone`; else '' (no ready endpoint, a missing hint, or
 * none for this node or zone).
 */
export function topologyModeFromHints(endpoints: readonly EndpointFacts[], nodeName: string, zone: string): TopologyMode {
  let hasReady = false;
  let allHaveNodeHints = true;
  let hasEndpointForNode = false;
  let allHaveZoneHints = true;
  let hasEndpointForZone = false;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i];
    if (!e.ready) continue;
    hasReady = true;
    const forNodes = e.hints?.forNodes ?? NO_HINTS;
    if (forNodes.length === 0) allHaveNodeHints = false;
    else if (forNodes.includes(nodeName)) hasEndpointForNode = true;
    const forZones = e.hints?.forZones ?? NO_HINTS;
    if (forZones.length === 0) allHaveZoneHints = false;
    else if (forZones.includes(zone)) hasEndpointForZone = true;
  }
  if (!hasReady) return '';
  if (allHaveNodeHints && hasEndpointForNode) return 'PreferSameNode';
  if (allHaveZoneHints && hasEndpointForZone) return 'PreferSameZone';
  return '';
}

/** Whether an endpoint is in the cluster set under `mode` (kube-proxy's availableForTopology: no fallback here). */
function availableForTopology(e: EndpointFacts, mode: TopologyMode, nodeName: string, zone: string): boolean {
  if (mode === 'PreferSameNode') return (e.hints?.forNodes ?? NO_HINTS).includes(nodeName);
  if (mode === 'PreferSameZone') return (e.hints?.forZones ?? NO_HINTS).includes(zone);
  return true;
}

// ---------------------------------------------------------------------------
// 4. Which set each frontend's new flows choose from

/** The traffic policies of a Service. */
export type TrafficPolicies = Pick<ServiceModel, 'externalTrafficPolicy' | 'internalTrafficPolicy'>;

/**
 * The set that new flows from outside the cluster choose at this frontend:
 * externalTrafficPolicy's set for a LoadBalancer VIP, an external IP or a
 * node port on a node address; undefined for a cluster IP and for a node
 * port on {@link LOOPBACK} (outside traffic does not reach them).
 * (kube-proxy: the EXT chain falls through to the Local or Cluster chain.)
 */
export function externalSet(kind: FrontendKind, addr: string, svc: TrafficPolicies): EndpointSet | undefined {
  if (kind === 'ClusterIP') return undefined;
  if (kind === 'NodePort' && addr === LOOPBACK) return undefined;
  return svc.externalTrafficPolicy === 'Local' ? 'local' : 'cluster';
}

/**
 * The set that new flows from inside the cluster (pods, the node's own
 * processes) choose at this frontend: internalTrafficPolicy's set for a
 * cluster IP; the cluster set for every other frontend, whatever
 * externalTrafficPolicy says (kube-proxy sends pod traffic and traffic of
 * source type LOCAL from the EXT chain to the cluster chain, as if it had
 * gone out to the load balancer and come back; internalTrafficPolicy does
 * not apply to external destinations).
 */
export function internalSet(kind: FrontendKind, svc: TrafficPolicies): EndpointSet {
  if (kind === 'ClusterIP') return svc.internalTrafficPolicy === 'Local' ? 'local' : 'cluster';
  return 'cluster';
}

/** A frontend with its two sets ({@link externalSet}, {@link internalSet}). */
export function frontendOf(addr: string, port: number, protocol: ServedProtocol, kind: FrontendKind, svc: TrafficPolicies): DesiredFrontend {
  const internal = internalSet(kind, svc);
  const external = externalSet(kind, addr, svc);
  return external === undefined ? { addr, port, protocol, kind, internal } : { addr, port, protocol, kind, external, internal };
}

// ---------------------------------------------------------------------------
// 5. Issues (one text for both translations)

/** IPv6 `loadBalancerSourceRanges` of a LoadBalancer Service: recorded, not enforced. */
export function sourceRangesIssue(object: string, anyIPv4: boolean): InputIssue {
  return {
    object,
    field: 'spec.loadBalancerSourceRanges',
    message: `IPv6 ranges are recorded, not enforced (the datapath serves IPv4)${anyIPv4 ? '' : '; with no IPv4 range, IPv4 clients are not restricted (kube-proxy filters ranges per IP family)'}`,
  };
}

/** IPv6 addresses of a dual-stack Service (`list`: `${field} ${address}` each): recorded, not served. */
export function ipv6Issue(object: string, list: string[]): InputIssue {
  return { object, field: 'spec.ipFamilies', message: `IPv6 addresses are recorded, not served (xlb's datapath serves IPv4 for now): ${list.join(', ')}` };
}

/**
 * A Service of type ClusterIP with neither a cluster IP nor an external IP
 * (spec.clusterIP absent or ""): nothing to serve. Never seen in a cluster,
 * where the API server assigns one; easy to write in a manifests file.
 * (kube-proxy's ShouldSkipService skips every Service without a cluster IP;
 * xlb serves a NodePort's node ports and a Service's external IPs and VIPs
 * without one, as a manifests file may mean them.)
 */
export function noClusterIPIssue(svc: ServiceModel, object: string): InputIssue | undefined {
  if (svc.clusterIPs.length || svc.externalIPs.length || svc.type !== 'ClusterIP' || !svc.ports.length) return undefined;
  return { object, field: 'spec.clusterIP', message: 'absent: a ClusterIP Service without a cluster IP (or external IP) has nothing to serve; give it one' };
}

/** An SCTP port, skipped. */
export function sctpIssue(object: string, portIndex: number): InputIssue {
  return { object, field: `spec.ports[${portIndex}].protocol`, message: "SCTP is not supported by xlb's datapath; this port is skipped" };
}

/** The field that names a candidate frontend of port `portIndex` in a conflict issue. */
export function candidateField(kind: FrontendKind, portIndex: number): string {
  if (kind === 'LoadBalancer') return 'status.loadBalancer.ingress';
  return `spec.ports[${portIndex}].${kind === 'NodePort' ? 'nodePort' : 'port'}`;
}

/** A port of Service `serviceKey` lost frontend `frontendKey` (`addr:port/protocol`) to an earlier claimant. */
export function conflictIssue(
  serviceKey: string,
  portIndex: number,
  kind: FrontendKind,
  frontendKey: string,
  owner: { serviceKey: string; portIndex: number; portName: string },
): InputIssue {
  const ownerPort = `spec.ports[${owner.portIndex}]${owner.portName ? ` (${owner.portName})` : ''}`;
  return {
    object: `Service ${serviceKey}`,
    field: candidateField(kind, portIndex),
    message:
      `frontend ${frontendKey} (${kind}) is already claimed by Service ${owner.serviceKey} ${ownerPort}, ` +
      `which was created first (or, created at the same time, sorts first) and keeps it; this port is not reachable there`,
  };
}

// ---------------------------------------------------------------------------
// 6. A whole snapshot

const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Older creation timestamps first; none after any (RFC 3339 strings, compared as instants). */
export function byCreation(a: string | undefined, b: string | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  return Date.parse(a) - Date.parse(b) || 0;
}

/** One service port before conflicts between Services are settled. */
interface PortDraft {
  serviceKey: string;
  portIndex: number;
  portName: string;
  /** Candidate frontends in kind order, with their keys `addr:port/protocol`. */
  candidates: Array<{ f: DesiredFrontend; key: string }>;
  service: Omit<DesiredService, 'frontends'>;
  frontends: DesiredFrontend[];
  claimIssues: InputIssue[];
}

/**
 * One service port as this node programs it, but for its frontends (the
 * claims on frontends are settled across services afterwards): its key,
 * names, policies, backends (with their sets), the sets' facts and the
 * Service's settings. The one place the shape is written, for
 * {@link translateState} and the Translator alike (every field in one
 * literal, in one order: one hidden class for every port).
 * @param key `namespace/name:portName`
 * @param ranges the IPv4 `loadBalancerSourceRanges`
 */
export function servicePort(
  svc: ServiceModel,
  sp: ServicePort,
  key: string,
  protocol: ServedProtocol,
  backends: DesiredBackend[],
  policy: ServicePortPolicy,
  sets: Pick<EndpointSets<unknown>, 'hasAnyEndpoints' | 'topology'>,
  ranges: string[],
): Omit<DesiredService, 'frontends'> {
  const port: Omit<DesiredService, 'frontends'> = {
    key,
    namespace: svc.namespace,
    name: svc.name,
    portName: sp.name,
    protocol,
    type: svc.type,
    backends,
    externalTrafficPolicy: svc.externalTrafficPolicy,
    internalTrafficPolicy: svc.internalTrafficPolicy,
    usesCluster: usesClusterEndpoints(policy),
    usesLocal: usesLocalEndpoints(policy),
    hasAnyEndpoints: sets.hasAnyEndpoints,
    topology: sets.topology,
    sessionAffinity: svc.sessionAffinity,
    loadBalancerSourceRanges: ranges,
  };
  if (svc.sessionAffinityTimeoutSeconds !== undefined) port.sessionAffinityTimeoutSeconds = svc.sessionAffinityTimeoutSeconds;
  const hc = healthCheckNodePortOf(svc);
  if (hc !== undefined) port.healthCheckNodePort = hc;
  if (svc.trafficDistribution !== undefined) port.trafficDistribution = svc.trafficDistribution;
  return port;
}

/**
 * The plain translation of a snapshot into what this node programs (the
 * reference for translate.ts's Translator).
 *
 * Per served Service (see {@link skipIssue}; skipped ones give one issue
 * each), per port (SCTP ports give an issue and are skipped):
 * - candidate frontends, IPv4 only, in kind order: LoadBalancer (each VIP,
 *   type LoadBalancer), ExternalIP, NodePort (each node address, then
 *   {@link LOOPBACK}; types NodePort and LoadBalancer with a node port; a
 *   LoadBalancer with `allocateLoadBalancerNodePorts: false` usually has
 *   none), ClusterIP; each with its sets ({@link frontendOf});
 * - backends: the endpoints of the Service's IPv4 EndpointSlices (by slice
 *   name) whose port has the port's name and protocol, first address each;
 *   the same address and port in several slices is one backend, the copy
 *   with the better condition (ready, then serving) winning, the first on a
 *   tie; sorted by address then port; `inCluster` and `inLocal` from
 *   {@link categorizeEndpoints};
 * - IPv6 addresses and IPv6 source ranges are reported, not served.
 *
 * Two ports claiming one (address, port, protocol): the older Service
 * (`metadata.creationTimestamp`; Services without one after those with),
 * then the first by Service key (`namespace/name`, code-unit order), then
 * port index, keeps it; the other gets an issue. The Service that holds a
 * frontend so keeps it when another claims it later. One port claiming it
 * twice keeps one frontend.
 *
 * @returns service ports sorted by key; issues by Service key (the
 *   Service's own, then each port's conflicts)
 */
export function translateState(state: ClusterState, node: NodeInfo): { services: DesiredService[]; issues: InputIssue[] } {
  // Each Service's IPv4 slices, by slice name.
  const slicesOf = new Map<string, EndpointSliceModel[]>();
  for (const slice of state.endpointSlices.values()) {
    if (slice.addressType !== 'IPv4') continue;
    const key = `${slice.namespace}/${slice.serviceName}`;
    slicesOf.set(key, [...(slicesOf.get(key) ?? []), slice]);
  }
  for (const list of slicesOf.values()) list.sort((a, b) => byCodeUnits(a.name, b.name));

  const perService: Array<{ issues: InputIssue[]; ports: PortDraft[]; createdAt?: string; key: string }> = [];
  for (const key of [...state.services.keys()].sort(byCodeUnits)) {
    const svc = state.services.get(key)!;
    perService.push({ ...draftService(svc, slicesOf.get(key) ?? [], node), createdAt: svc.createdAt, key });
  }

  // Settle who owns each frontend: the first claimant in this order, the
  // oldest Service first (it held the frontend before the newcomer came).
  const owners = new Map<string, PortDraft>();
  for (const { ports } of [...perService].sort((a, b) => byCreation(a.createdAt, b.createdAt) || byCodeUnits(a.key, b.key))) {
    for (const p of ports) {
      for (const { f, key } of p.candidates) {
        const owner = owners.get(key);
        if (!owner) {
          owners.set(key, p);
          p.frontends.push(f);
        } else if (owner !== p) {
          p.claimIssues.push(conflictIssue(p.serviceKey, p.portIndex, f.kind, key, owner));
        }
      }
    }
  }

  const services: DesiredService[] = [];
  const issues: InputIssue[] = [];
  for (const s of perService) {
    issues.push(...s.issues);
    for (const p of s.ports) {
      issues.push(...p.claimIssues);
      services.push(withFrontends(p.service, p.frontends));
    }
  }
  services.sort((a, b) => byCodeUnits(a.key, b.key));
  return { services, issues };
}

/** One Service's ports (before conflicts) and its own issues. */
function draftService(svc: ServiceModel, slices: EndpointSliceModel[], node: NodeInfo): { issues: InputIssue[]; ports: PortDraft[] } {
  const skip = skipIssue(svc);
  if (skip) return { issues: [skip], ports: [] };
  const serviceKey = `${svc.namespace}/${svc.name}`;
  const object = `Service ${serviceKey}`;
  const issues: InputIssue[] = [];

  const ranges = svc.loadBalancerSourceRanges.filter((c) => isIPv4(c.split('/')[0]));
  if (svc.type === 'LoadBalancer' && ranges.length < svc.loadBalancerSourceRanges.length) issues.push(sourceRangesIssue(object, ranges.length > 0));
  const v6 = [
    ...svc.clusterIPs.filter((a) => !isIPv4(a)).map((a) => `spec.clusterIPs ${a}`),
    ...svc.externalIPs.filter((a) => !isIPv4(a)).map((a) => `spec.externalIPs ${a}`),
    ...(svc.type === 'LoadBalancer' ? svc.loadBalancerIPs.filter((a) => !isIPv4(a)).map((a) => `status.loadBalancer.ingress ${a}`) : []),
  ];
  if (v6.length) issues.push(ipv6Issue(object, v6));
  const noClusterIP = noClusterIPIssue(svc, object);
  if (noClusterIP) issues.push(noClusterIP);

  const ports: PortDraft[] = [];
  svc.ports.forEach((sp, portIndex) => {
    if (sp.protocol === 'SCTP') {
      issues.push(sctpIssue(object, portIndex));
      return;
    }
    const protocol: ServedProtocol = sp.protocol;
    const candidates: PortDraft['candidates'] = [];
    const add = (kind: FrontendKind, addrs: string[], port: number | undefined): void => {
      if (port === undefined) return;
      for (const addr of addrs) {
        if (isIPv4(addr)) candidates.push({ f: frontendOf(addr, port, protocol, kind, svc), key: `${addr}:${port}/${protocol}` });
      }
    };
    if (svc.type === 'LoadBalancer') add('LoadBalancer', svc.loadBalancerIPs, sp.port);
    add('ExternalIP', svc.externalIPs, sp.port);
    if (svc.type === 'NodePort' || svc.type === 'LoadBalancer') add('NodePort', [...node.addresses, LOOPBACK], sp.nodePort);
    add('ClusterIP', svc.clusterIPs, sp.port);

    const { backends, endpoints } = backendsOf(slices, sp.name, protocol, node.name);
    const policy = portPolicy(svc, sp);
    const sets = categorizeEndpoints(endpoints, policy, node.name, node.labels);
    backends.forEach((b, i) => {
      b.inCluster = sets.clusterEndpoints?.includes(endpoints[i]) ?? false;
      b.inLocal = sets.localEndpoints?.includes(endpoints[i]) ?? false;
    });

    const service = servicePort(svc, sp, `${serviceKey}:${sp.name}`, protocol, backends, policy, sets, ranges);
    ports.push({ serviceKey, portIndex, portName: sp.name, candidates, service, frontends: [], claimIssues: [] });
  });
  return { issues, ports };
}

/**
 * The backends of one service port and, index for index, the endpoint each
 * came from (the winning copy), with `inCluster` and `inLocal` false.
 */
function backendsOf(slices: EndpointSliceModel[], portName: string, protocol: ServedProtocol, nodeName: string): { backends: DesiredBackend[]; endpoints: EndpointModel[] } {
  const found: Array<{ b: DesiredBackend; e: EndpointModel }> = [];
  for (const slice of slices) {
    const sp = slice.ports.find((p) => p.name === portName && p.protocol === protocol);
    if (!sp) continue;
    for (const e of slice.endpoints) {
      const addr = e.addresses[0];
      if (addr) found.push({ b: backendOf(e, addr, sp.port, protocol, nodeName), e });
    }
  }
  found.sort((x, y) => ipToU32(x.b.addr) - ipToU32(y.b.addr) || x.b.port - y.b.port);
  const kept: typeof found = [];
  for (const f of found) {
    const last = kept[kept.length - 1];
    if (last && last.b.addr === f.b.addr && last.b.port === f.b.port) {
      if (conditionRank(f.b) > conditionRank(last.b)) kept[kept.length - 1] = f;
    } else kept.push(f);
  }
  return { backends: kept.map((f) => f.b), endpoints: kept.map((f) => f.e) };
}

/** Ready beats serving beats neither. */
function conditionRank(b: DesiredBackend): number {
  return b.ready ? 2 : b.serving ? 1 : 0;
}

function backendOf(e: EndpointModel, addr: string, port: number, protocol: ServedProtocol, nodeName: string): DesiredBackend {
  const b: DesiredBackend = {
    addr,
    port,
    protocol,
    local: isLocal(e, nodeName),
    ready: e.ready,
    serving: e.serving,
    terminating: e.terminating,
    inCluster: false,
    inLocal: false,
    weight: 1,
    name: `${addr}:${port}/${protocol}`,
  };
  if (e.nodeName !== undefined) b.nodeName = e.nodeName;
  if (e.targetName !== undefined) b.targetName = e.targetName;
  return b;
}

function withFrontends(service: Omit<DesiredService, 'frontends'>, frontends: DesiredFrontend[]): DesiredService {
  return { ...service, frontends };
}

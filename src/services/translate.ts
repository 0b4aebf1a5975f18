/**
 * Translation of a cluster snapshot into what one node programs: for every
 * service port, its frontends (VIP, external IP, node IP × node port, cluster
 * IP) and its backends (EndpointSlice endpoints) with the flags that decide
 * which of them take new flows.
 *
 * The rules follow kube-proxy (`pkg/proxy`): services without a cluster IP
 * section to proxy (headless, ExternalName) and services that name another
 * proxy (label `service.kubernetes.io/service-proxy-name`) are skipped;
 * endpoints are matched to a service port by port name and protocol; new
 * flows go to ready endpoints, or, when none is ready, to serving-and-
 * terminating ones (`CategorizeEndpoints`); with traffic policy Local only
 * this node's endpoints take new flows.
 *
 * Pure: no I/O; the same snapshot gives the same output, sorted by key.
 */
import type { ClusterState, EndpointSliceModel, InputIssue, NodeInfo, ServiceModel } from '../model/types.js';
import { ipToU32, isIPv4 } from '../util/ip.js';
import { flat } from '../util/flat.js';

/** Label with which a Service opts out of the default proxy (kube-proxy skips it too). */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';

/**
 * How a frontend is reached. LoadBalancer: a VIP from
 * `status.loadBalancer.ingress` (or `spec.loadBalancerIP`); ExternalIP: an
 * address of `spec.externalIPs`; NodePort: a node address and `nodePort`;
 * ClusterIP: the cluster IP (recorded; the XDP datapath does not serve it).
 */
export type FrontendKind = 'LoadBalancer' | 'ExternalIP' | 'NodePort' | 'ClusterIP';

/** Protocols the datapath balances. SCTP service ports are reported and skipped. */
export type ServedProtocol = 'TCP' | 'UDP';

/** One (address, port, protocol) on which a service port is reached. */
export interface DesiredFrontend {
  /** IPv4 dotted quad. */
  addr: string;
  /** 1..65535: the service port, or the node port for kind NodePort. */
  port: number;
  protocol: ServedProtocol;
  kind: FrontendKind;
}

/** One endpoint of a service port. */
export interface DesiredBackend {
  /** IPv4 dotted quad: the endpoint's first address. */
  addr: string;
  /** The EndpointSlice port matching the service port, 1..65535. */
  port: number;
  protocol: ServedProtocol;
  /** Node the endpoint runs on, when the slice says. */
  nodeName?: string;
  /** True when `nodeName` is this node. */
  local: boolean;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /**
   * Whether the Maglev lookup table includes this backend, i.e. whether new
   * flows may go to it (see {@link markNewFlowBackends}). Backends with
   * false are listed so that views can show them and established flows (in
   * conntrack) keep reaching them.
   */
  useForNewFlows: boolean;
  /** Maglev weight; every endpoint counts once. */
  weight: 1;
  /** Stable identity `${addr}:${port}/${protocol}`, e.g. `10.0.0.5:8080/TCP`. */
  name: string;
  /** `targetRef.name`, usually the pod. */
  targetName?: string;
}

/** One service port as this node programs it. */
export interface DesiredService {
  /** `namespace/name:portName`; portName may be '' (`default/web:`). */
  key: string;
  namespace: string;
  name: string;
  portName: string;
  protocol: ServedProtocol;
  type: ServiceModel['type'];
  /** Frontends this service port owns, in kind order LoadBalancer, ExternalIP, NodePort, ClusterIP. */
  frontends: DesiredFrontend[];
  /** All endpoints of the port, sorted by address then port. */
  backends: DesiredBackend[];
  externalTrafficPolicy: 'Cluster' | 'Local';
  internalTrafficPolicy: 'Cluster' | 'Local';
  sessionAffinity: 'None' | 'ClientIP';
  /** Seconds, when sessionAffinity is ClientIP. */
  sessionAffinityTimeoutSeconds?: number;
  /** IPv4 CIDRs of `spec.loadBalancerSourceRanges` (IPv6 ones are reported, not served). */
  loadBalancerSourceRanges: string[];
}

/** A backend before the new-flow rule is applied. */
export type BackendCandidate = Omit<DesiredBackend, 'useForNewFlows'>;

/**
 * kube-proxy's rule for which endpoints take new flows (`CategorizeEndpoints`
 * in kubernetes/pkg/proxy/topology.go):
 *
 * - the candidates are all endpoints, or only local ones when `onlyLocal`
 *   (traffic policy Local);
 * - if any candidate is ready, the ready candidates take new flows;
 * - otherwise candidates that are serving and terminating do (so that a
 *   rolling update of the last pods does not drop traffic while they drain);
 * - otherwise none does (the datapath drops with `no_backend`).
 *
 * @returns the same backends, in the same order, with `useForNewFlows` set
 */
export function markNewFlowBackends(backends: BackendCandidate[], onlyLocal: boolean): DesiredBackend[] {
  const out = backends.map(desiredBackend);
  setNewFlowBackends(out, onlyLocal);
  return out;
}

/** {@link markNewFlowBackends} in place. */
function setNewFlowBackends(backends: DesiredBackend[], onlyLocal: boolean): void {
  // Indexed loops here and in the translation's other per-endpoint and
  // per-service loops: a for...of allocates an iterator result per step
  // until V8 has optimized the loop, and a first sync runs them cold
  // (18 MB of 138 MB allocated by a 10,000-service sync).
  let anyReady = false;
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i];
    if ((!onlyLocal || b.local) && b.ready) anyReady = true;
  }
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i];
    b.useForNewFlows = (!onlyLocal || b.local) && (anyReady ? b.ready : b.serving && b.terminating);
  }
}

/**
 * A DesiredBackend with every field written out in one order (and
 * useForNewFlows false). Not `{ ...b }`: V8 gave each object copied by
 * spread here a hidden class of its own (measured: 22 per service, 9.5 KB
 * of heap per service at 10,000 services, and megamorphic property access
 * downstream).
 */
function desiredBackend(b: BackendCandidate): DesiredBackend {
  const d: DesiredBackend = {
    addr: b.addr,
    port: b.port,
    protocol: b.protocol,
    local: b.local,
    ready: b.ready,
    serving: b.serving,
    terminating: b.terminating,
    useForNewFlows: false,
    weight: 1,
    name: b.name,
  };
  if (b.nodeName !== undefined) d.nodeName = b.nodeName;
  if (b.targetName !== undefined) d.targetName = b.targetName;
  return d;
}

/** A DesiredService from a port's template and its settled frontends (fields written out, see desiredBackend). */
function desiredService(base: Omit<DesiredService, 'frontends'>, frontends: DesiredFrontend[]): DesiredService {
  const d: DesiredService = {
    key: base.key,
    namespace: base.namespace,
    name: base.name,
    portName: base.portName,
    protocol: base.protocol,
    type: base.type,
    frontends,
    backends: base.backends,
    externalTrafficPolicy: base.externalTrafficPolicy,
    internalTrafficPolicy: base.internalTrafficPolicy,
    sessionAffinity: base.sessionAffinity,
    loadBalancerSourceRanges: base.loadBalancerSourceRanges,
  };
  if (base.sessionAffinityTimeoutSeconds !== undefined) d.sessionAffinityTimeoutSeconds = base.sessionAffinityTimeoutSeconds;
  return d;
}

/** True when the service is reachable from outside the cluster (core/v1 `ExternallyAccessible`). */
function externallyAccessible(svc: ServiceModel): boolean {
  return svc.type === 'LoadBalancer' || svc.type === 'NodePort' || svc.externalIPs.length > 0;
}

/** Why a service is not proxied at all, or undefined when it is. */
function skipReason(svc: ServiceModel): string | undefined {
  if (svc.labels[SERVICE_PROXY_NAME_LABEL] !== undefined) return 'handled by another proxy';
  if (svc.type === 'ExternalName') return 'ExternalName';
  if (svc.headless) return 'headless';
  return undefined;
}

/** Better of two copies of one endpoint seen in two slices: ready beats serving beats neither. */
function better(a: DesiredBackend, b: DesiredBackend): DesiredBackend {
  return conditionRank(b) > conditionRank(a) ? b : a;
}

const conditionRank = (x: DesiredBackend): number => (x.ready ? 2 : x.serving ? 1 : 0);

/**
 * The backends of one service port: endpoints of the IPv4 slices of the
 * service whose port has the same name and protocol; the first address of
 * each endpoint. The same `addr:port/protocol` in several slices (during a
 * slice rollover) becomes one backend, the copy with the better condition
 * (first slice by name on a tie).
 */
function backendsOf(slices: EndpointSliceModel[], portName: string, protocol: ServedProtocol, node: NodeInfo): DesiredBackend[] {
  // Every endpoint with its key, address and port (each address parsed
  // once), in slice order; a stable sort by key then puts copies of one
  // endpoint next to each other, in slice order. No Map per service port,
  // and the working arrays are this module's (translation is synchronous):
  // only the result is allocated.
  const found = scratch.found;
  const keys = scratch.keys;
  let n = 0;
  for (let s = 0; s < slices.length; s++) {
    const slice = slices[s];
    const sp = portOf(slice, portName, protocol);
    if (!sp) continue;
    // Names are `${addr}${suffix}`, joined flat (util/flat.ts): one join of
    // two strings costs half of one of five (measured, 100,000 names).
    const suffix = flat(':', sp.port, '/', protocol);
    const endpoints = slice.endpoints;
    for (let k = 0; k < endpoints.length; k++) {
      const e = endpoints[k];
      const addr = e.addresses[0];
      if (!addr) continue;
      const local = e.nodeName !== undefined && e.nodeName === node.name;
      const name = flat(addr, suffix);
      // One literal for the common endpoint (see normalize.ts's endpoints).
      let b: DesiredBackend;
      if (e.nodeName !== undefined && e.targetName !== undefined) {
        b = { addr, port: sp.port, protocol, nodeName: e.nodeName, local, ready: e.ready, serving: e.serving, terminating: e.terminating, useForNewFlows: false, weight: 1, name, targetName: e.targetName };
      } else {
        b = { addr, port: sp.port, protocol, local, ready: e.ready, serving: e.serving, terminating: e.terminating, useForNewFlows: false, weight: 1, name };
        if (e.nodeName !== undefined) b.nodeName = e.nodeName;
        if (e.targetName !== undefined) b.targetName = e.targetName;
      }
      found[n] = b;
      keys[n] = ipToU32(addr) * 65536 + sp.port;
      n++;
    }
  }
  const order = stableOrder(keys, n);
  const out: DesiredBackend[] = [];
  for (let i = 0; i < n; i++) {
    const b = found[order[i]]!;
    if (i > 0 && keys[order[i]] === keys[order[i - 1]]) out[out.length - 1] = better(out[out.length - 1], b);
    else out.push(b);
  }
  // Hold no backend of this port past the call.
  for (let i = 0; i < n; i++) found[i] = undefined;
  return out;
}

/** The slice's port with this name and protocol (a loop: no closure per slice). */
function portOf(slice: EndpointSliceModel, name: string, protocol: ServedProtocol): EndpointSliceModel['ports'][number] | undefined {
  for (let i = 0; i < slice.ports.length; i++) {
    const p = slice.ports[i];
    if (p.name === name && p.protocol === protocol) return p;
  }
  return undefined;
}

/** Working arrays of {@link backendsOf} and {@link stableOrder} (they grow; keys are doubles: address × 65536 + port). */
const scratch = { found: [] as Array<DesiredBackend | undefined>, keys: [] as number[], order: [] as number[] };

/** Up to this many endpoints per service port, {@link stableOrder} is an insertion sort (no comparator calls, no temporary arrays). */
const SMALL_PORT = 64;

/**
 * Indexes of the first `n` keys in ascending key order, equal keys in
 * index order (in a working array, valid until the next call). The common
 * port has a handful of endpoints, often already in order; an insertion
 * sort there allocated a tenth of what Array.prototype.sort with a
 * comparator over {key, backend} pairs did (measured at 10,000 services).
 */
function stableOrder(keys: number[], n: number): number[] {
  if (n > SMALL_PORT) {
    const order: number[] = new Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    return order.sort((x, y) => keys[x] - keys[y] || x - y);
  }
  const order = scratch.order;
  for (let i = 0; i < n; i++) {
    const k = keys[i];
    let j = i;
    for (; j > 0 && keys[order[j - 1]] > k; j--) order[j] = order[j - 1];
    order[j] = i;
  }
  return order;
}

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A candidate frontend of a port, before conflicts between services are settled. */
interface Candidate {
  f: DesiredFrontend;
  /** `addr:port/protocol`. */
  key: string;
}

/** The field that names a candidate of port `portIndex` in a conflict issue. */
function candidateField(kind: FrontendKind, portIndex: number): string {
  if (kind === 'LoadBalancer') return 'status.loadBalancer.ingress';
  return `spec.ports[${portIndex}].${kind === 'NodePort' ? 'nodePort' : 'port'}`;
}

/** One service port as {@link translateService} makes it: everything but the settled frontends. */
interface PortTemplate {
  /** `namespace/name` of the service. */
  serviceKey: string;
  base: Omit<DesiredService, 'frontends'>;
  portIndex: number;
  portName: string;
  candidates: Candidate[];
  /**
   * The settled DesiredService made from this template in the last run (a
   * template lives as long as its service is not translated again).
   */
  desired?: DesiredService;
  /**
   * The candidates this port keeps once conflicts are settled, and the
   * conflicts it lost (set by settleClaims; handed to the next template of
   * the same port when candidates did not change).
   */
  frontends: DesiredFrontend[];
  claimIssues: InputIssue[];
}

/** One service, translated on its own (cacheable: a function of the service, its slices and the node). */
interface ServiceTranslation {
  serviceKey: string;
  ports: PortTemplate[];
  issues: InputIssue[];
}

/**
 * Translate one service with its IPv4 slices (sorted by name): every port's
 * candidate frontends and backends, and the issues of the service alone.
 * Undefined for services xlb does not proxy.
 */
function translateService(svc: ServiceModel, slices: EndpointSliceModel[], node: NodeInfo): ServiceTranslation | undefined {
  if (skipReason(svc)) return undefined;
  const serviceKey = flat(svc.namespace, '/', svc.name);
  const object = `Service ${serviceKey}`;
  const issues: InputIssue[] = [];
  const v4Ranges = svc.loadBalancerSourceRanges.length ? svc.loadBalancerSourceRanges.filter((c) => isIPv4(c.split('/')[0])) : svc.loadBalancerSourceRanges;
  if (svc.type === 'LoadBalancer' && v4Ranges.length < svc.loadBalancerSourceRanges.length) {
    issues.push({
      object,
      field: 'spec.loadBalancerSourceRanges',
      message: `IPv6 ranges are recorded, not enforced (the datapath serves IPv4)${v4Ranges.length ? '' : '; with no IPv4 range, IPv4 clients are not restricted (kube-proxy filters ranges per IP family)'}`,
    });
  }
  // Dual-stack: the IPv6 side is recorded and reported, not served (the datapath is IPv4 for now).
  // Loops, not filter/map/spread: this runs for every service of a sync, and
  // the common service has no IPv6 address (seven temporary arrays each).
  // (No closures here either: tsx, which runs xlb, names each closure as it
  // is made, a defineProperty per closure per service.)
  const v6: string[] = [];
  pushIPv6(v6, svc.clusterIPs, 'spec.clusterIPs');
  pushIPv6(v6, svc.externalIPs, 'spec.externalIPs');
  if (svc.type === 'LoadBalancer') pushIPv6(v6, svc.loadBalancerIPs, 'status.loadBalancer.ingress');
  if (v6.length) {
    issues.push({ object, field: 'spec.ipFamilies', message: `IPv6 addresses are recorded, not served (xlb's datapath serves IPv4 for now): ${v6.join(', ')}` });
  }
  const onlyLocal = externallyAccessible(svc) ? svc.externalTrafficPolicy === 'Local' : svc.internalTrafficPolicy === 'Local';
  const ports: PortTemplate[] = [];
  for (let i = 0; i < svc.ports.length; i++) {
    const sp = svc.ports[i];
    if (sp.protocol === 'SCTP') {
      issues.push({ object, field: `spec.ports[${i}].protocol`, message: 'SCTP is not supported by xlb\'s datapath; this port is skipped' });
      continue;
    }
    const protocol: ServedProtocol = sp.protocol;
    const candidates: Candidate[] = [];
    if (svc.type === 'LoadBalancer') addCandidates(candidates, 'LoadBalancer', svc.loadBalancerIPs, sp.port, protocol);
    addCandidates(candidates, 'ExternalIP', svc.externalIPs, sp.port, protocol);
    if (svc.type === 'NodePort' || svc.type === 'LoadBalancer') addCandidates(candidates, 'NodePort', node.addresses, sp.nodePort, protocol);
    addCandidates(candidates, 'ClusterIP', svc.clusterIPs, sp.port, protocol);
    const backends = backendsOf(slices, sp.name, protocol, node);
    setNewFlowBackends(backends, onlyLocal);
    const base: Omit<DesiredService, 'frontends'> = {
      key: flat(serviceKey, ':', sp.name),
      namespace: svc.namespace,
      name: svc.name,
      portName: sp.name,
      protocol,
      type: svc.type,
      backends,
      externalTrafficPolicy: svc.externalTrafficPolicy,
      internalTrafficPolicy: svc.internalTrafficPolicy,
      sessionAffinity: svc.sessionAffinity,
      loadBalancerSourceRanges: v4Ranges,
    };
    if (svc.sessionAffinityTimeoutSeconds !== undefined) base.sessionAffinityTimeoutSeconds = svc.sessionAffinityTimeoutSeconds;
    ports.push({ serviceKey, portIndex: i, portName: sp.name, candidates, base, desired: undefined, frontends: [], claimIssues: NO_ISSUES });
  }
  return { serviceKey, ports, issues };
}

/** Push `${field} ${a}` for each address of `addrs` that is not IPv4. */
function pushIPv6(out: string[], addrs: string[], field: string): void {
  for (let i = 0; i < addrs.length; i++) if (!isIPv4(addrs[i])) out.push(`${field} ${addrs[i]}`);
}

/** Push a candidate frontend for each IPv4 address of `addrs` on `port` (none when the port is undefined). */
function addCandidates(out: Candidate[], kind: FrontendKind, addrs: string[], port: number | undefined, protocol: ServedProtocol): void {
  if (port === undefined) return;
  for (let i = 0; i < addrs.length; i++) {
    const addr = addrs[i];
    if (isIPv4(addr)) out.push({ f: { addr, port, protocol, kind }, key: flat(addr, ':', port, '/', protocol) });
  }
}

/** What a {@link Translator} produced for one snapshot. */
export interface Translation {
  /** Service ports sorted by key. An unchanged port is the same object as in the previous run. */
  services: DesiredService[];
  issues: InputIssue[];
  /** Keys of service ports that are new or differ from the previous run (by object identity). */
  changed: Set<string>;
  /**
   * False when the ports are the same keys in the same order as in the
   * previous run, and only those in `changed` are new objects (each at its
   * old index): a consumer may then look at those alone.
   */
  structural: boolean;
}

interface CacheEntry {
  svc: ServiceModel;
  slices: EndpointSliceModel[];
  t: ServiceTranslation | undefined;
}

/**
 * Translates snapshot after snapshot, redoing only the services whose
 * Service object or EndpointSlice objects changed (compared by identity: a
 * source that keeps unchanged objects from one snapshot to the next gets
 * work proportional to the change; one that rebuilds every object, such as
 * the manifests file, gets a full translation). Conflicts between services
 * over a frontend are settled again only when some candidate changed.
 */
export class Translator {
  private cache = new Map<string, CacheEntry>();
  private order: string[] = [];
  private lastServices: DesiredService[] = [];
  /** The last run's slices (to see which changed), and IPv4 slices by service key, by slice key. */
  private prevSlices = new Map<string, EndpointSliceModel>();
  /** Whether a run has seen a whole state (hints are relative to it). */
  private ran = false;
  /** Index of each port key in lastServices; the array last handed out (copied before a change). */
  private position = new Map<string, number>();
  private published: DesiredService[] = [];
  private lastIssues: InputIssue[] = [];
  private readonly slicesOf = new Map<string, Map<string, EndpointSliceModel>>();

  /** Add slice `k` to its service's IPv4 slices and mark the service dirty. */
  private index(k: string, slice: EndpointSliceModel, dirty: Set<string>): void {
    const serviceKey = flat(slice.namespace, '/', slice.serviceName);
    dirty.add(serviceKey);
    if (slice.addressType !== 'IPv4') return;
    let m = this.slicesOf.get(serviceKey);
    if (!m) this.slicesOf.set(serviceKey, (m = new Map()));
    m.set(k, slice);
  }

  /** Remove slice `k` (as it was) from its service's slices and mark the service dirty. */
  private unindex(k: string, slice: EndpointSliceModel, dirty: Set<string>): void {
    const serviceKey = flat(slice.namespace, '/', slice.serviceName);
    dirty.add(serviceKey);
    const m = this.slicesOf.get(serviceKey);
    if (!m) return;
    m.delete(k);
    if (!m.size) this.slicesOf.delete(serviceKey);
  }

  constructor(private readonly node: NodeInfo) {}

  /** Translate `state`; see {@link translate} for the rules. */
  run(state: ClusterState): Translation {
    // Which services' IPv4 slices changed since the last run, by object
    // identity per slice key: unchanged services then cost two Map lookups.
    const dirty = new Set<string>();
    // With the source's hint (after a first full run), only the keys it
    // names are looked at: no pass over 10,000 entries for one change. The
    // sizes must then agree, or the hint missed something: look at all.
    const hint = this.ran ? state.changed : undefined;
    if (hint) {
      for (const k of hint.endpointSlices) {
        const slice = state.endpointSlices.get(k);
        const prev = this.prevSlices.get(k);
        if (prev === slice) continue;
        if (prev) this.unindex(k, prev, dirty);
        if (slice) {
          this.index(k, slice, dirty);
          this.prevSlices.set(k, slice);
        } else this.prevSlices.delete(k);
      }
    }
    if (!hint || this.prevSlices.size !== state.endpointSlices.size) {
      let added = 0;
      state.endpointSlices.forEach((slice, k) => {
        const prev = this.prevSlices.get(k);
        if (prev === slice) return;
        if (prev) this.unindex(k, prev, dirty);
        else added++;
        this.index(k, slice, dirty);
      });
      if (added || this.prevSlices.size !== state.endpointSlices.size) {
        for (const [k, prev] of this.prevSlices) if (!state.endpointSlices.has(k)) this.unindex(k, prev, dirty);
      }
      // A copy: a caller may change its Map in place between runs.
      this.prevSlices = new Map(state.endpointSlices);
    }

    // Services whose object or slices changed are translated again; the
    // cache is updated in place, so an unchanged service costs two lookups.
    let candidatesChanged = false;
    const retranslated: string[] = [];
    const previous = new Map<string, CacheEntry>();
    const retranslate = (serviceKey: string, svc: ServiceModel): void => {
      const prev = this.cache.get(serviceKey);
      if (prev && prev.svc === svc && !dirty.has(serviceKey)) return;
      const slices = slicesByName(this.slicesOf.get(serviceKey));
      const t = translateService(svc, slices, this.node);
      if (!prev || candidateSignature(prev.t) !== candidateSignature(t)) candidatesChanged = true;
      if (prev) previous.set(serviceKey, prev);
      this.cache.set(serviceKey, { svc, slices, t });
      retranslated.push(serviceKey);
    };
    let scanned = false;
    if (hint) {
      const keys = new Set<string>([...hint.services, ...dirty]);
      for (const serviceKey of keys) {
        const svc = state.services.get(serviceKey);
        if (svc) retranslate(serviceKey, svc);
        else if (this.cache.delete(serviceKey)) candidatesChanged = true;
      }
    }
    if (!hint || this.cache.size !== state.services.size) {
      scanned = true;
      state.services.forEach((svc, serviceKey) => retranslate(serviceKey, svc));
    }
    if (scanned && this.cache.size !== state.services.size) {
      for (const k of [...this.cache.keys()]) if (!state.services.has(k)) this.cache.delete(k);
    }
    this.ran = true;
    if (candidatesChanged || this.order.length !== this.cache.size || retranslated.some((k) => !previous.has(k))) {
      candidatesChanged = true;
      const order: string[] = [];
      this.cache.forEach((_, k) => order.push(k));
      this.order = order.sort(byCodeUnits);
    }

    if (candidatesChanged) {
      // Who owns which frontend may have changed anywhere: settle and list everything.
      this.settleClaims();
      const services: DesiredService[] = [];
      const changed = new Set<string>();
      for (let s = 0; s < this.order.length; s++) {
        const e = this.cache.get(this.order[s])!;
        if (!e.t) continue;
        for (let k = 0; k < e.t.ports.length; k++) {
          const p = e.t.ports[k];
          const before = p.desired;
          // Reuse the previous object when nothing of this port changed: the controller skips it by identity.
          if (before && sameFrontends(before.frontends, p.frontends)) {
            services.push(before);
            continue;
          }
          const d = desiredService(p.base, p.frontends);
          p.desired = d;
          services.push(d);
          changed.add(d.key);
        }
      }
      services.sort((a, b) => byCodeUnits(a.key, b.key));
      this.lastServices = services;
      this.position = positions(services);
      this.lastIssues = this.collectIssues();
      return { services: this.lastServices, issues: this.lastIssues, changed, structural: true };
    }

    // Same services and candidates as last time: only the retranslated
    // services' ports change, each in its place (no sort, no settling).
    const changed = new Set<string>();
    let issuesChanged = false;
    for (const serviceKey of retranslated) {
      const e = this.cache.get(serviceKey)!;
      const old = previous.get(serviceKey);
      if ((e.t?.issues.length ?? 0) || (old?.t?.issues.length ?? 0)) issuesChanged = true;
      if (!e.t) continue;
      // The same candidates as the old translation's (else this is not
      // reached), port for port: the same settlement.
      const oldPorts = old?.t?.ports ?? [];
      for (let k = 0; k < e.t.ports.length; k++) {
        const p = e.t.ports[k];
        p.frontends = oldPorts[k].frontends;
        p.claimIssues = oldPorts[k].claimIssues;
        const d = desiredService(p.base, p.frontends);
        p.desired = d;
        const i = this.position.get(d.key)!;
        if (this.lastServices === this.published) this.lastServices = [...this.lastServices];
        this.lastServices[i] = d;
        changed.add(d.key);
      }
    }
    this.published = this.lastServices;
    if (issuesChanged) this.lastIssues = this.collectIssues();
    return { services: this.lastServices, issues: this.lastIssues, changed, structural: false };
  }

  /** Every issue of the cached translations and settled claims, in service order. */
  private collectIssues(): InputIssue[] {
    const issues: InputIssue[] = [];
    for (let s = 0; s < this.order.length; s++) {
      const t = this.cache.get(this.order[s])!.t;
      if (!t) continue;
      for (let i = 0; i < t.issues.length; i++) issues.push(t.issues[i]);
      for (let k = 0; k < t.ports.length; k++) {
        const claimIssues = t.ports[k].claimIssues;
        for (let i = 0; i < claimIssues.length; i++) issues.push(claimIssues[i]);
      }
    }
    return issues;
  }

  /** Settle who owns each candidate frontend: the first claimant by service key, then port index. */
  private settleClaims(): void {
    // Owner of each frontend: the port that claimed it first. Ports without
    // a conflict (nearly all) share one empty issue list.
    const claims = new Map<string, PortTemplate>();
    for (let s = 0; s < this.order.length; s++) {
      const serviceKey = this.order[s];
      const t = this.cache.get(serviceKey)!.t;
      if (!t) continue;
      for (let k = 0; k < t.ports.length; k++) {
        const p = t.ports[k];
        const frontends: DesiredFrontend[] = [];
        let issues: InputIssue[] = NO_ISSUES;
        for (let c = 0; c < p.candidates.length; c++) {
          const { f, key: fk } = p.candidates[c];
          const owner = claims.get(fk);
          if (!owner) {
            claims.set(fk, p);
            frontends.push(f);
          } else if (owner === p) {
            // The same port reaches this address twice (say, an external IP that
            // is also its VIP): one frontend serves both.
          } else {
            const ownerPort = `spec.ports[${owner.portIndex}]${owner.portName ? ` (${owner.portName})` : ''}`;
            if (issues === NO_ISSUES) issues = [];
            issues.push({
              object: `Service ${serviceKey}`,
              field: candidateField(f.kind, p.portIndex),
              message:
                `frontend ${fk} (${f.kind}) is already claimed by Service ${owner.serviceKey} ${ownerPort}, ` +
                `which sorts first and keeps it; this port is not reachable there`,
            });
          }
        }
        p.frontends = frontends;
        p.claimIssues = issues;
      }
    }
  }
}

/** The issues of a port without any (shared, never written). */
const NO_ISSUES: InputIssue[] = Object.freeze([]) as unknown as InputIssue[];

/** A service's IPv4 slices sorted by name (most services have one: no sort, no spread). */
function slicesByName(m: Map<string, EndpointSliceModel> | undefined): EndpointSliceModel[] {
  if (!m) return [];
  if (m.size === 1) for (const s of m.values()) return [s];
  const slices = [...m.values()];
  slices.sort((a, b) => byCodeUnits(a.name, b.name));
  return slices;
}

/** Index of each port key in `services`. A loop: no [key, index] pair per port. */
export function positions(services: readonly DesiredService[]): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < services.length; i++) m.set(services[i].key, i);
  return m;
}

function candidateSignature(t: ServiceTranslation | undefined): string {
  return t ? t.ports.map((p) => `${p.base.key}=${p.candidates.map((c) => `${c.key}/${c.f.kind}`).join(',')}`).join(';') : '';
}

function sameFrontends(a: DesiredFrontend[], b: DesiredFrontend[]): boolean {
  return a.length === b.length && a.every((f, i) => f.addr === b[i].addr && f.port === b[i].port && f.protocol === b[i].protocol && f.kind === b[i].kind);
}

/**
 * Translate a snapshot into the service ports this node programs.
 *
 * Frontends per service port (IPv4 only; IPv6 addresses of dual-stack
 * services are recorded in the model but not served):
 * - LoadBalancer (type LoadBalancer): each of `loadBalancerIPs` × port;
 * - ExternalIP: each of `externalIPs` × port;
 * - NodePort (types NodePort and LoadBalancer): each node address × nodePort;
 * - ClusterIP: each IPv4 cluster IP × port.
 *
 * Two service ports claiming the same (address, port, protocol): the service
 * whose `namespace/name` sorts first (then the lower port index) keeps it; the
 * other loses that frontend and gets an issue naming both. TCP and UDP on the
 * same address and port do not conflict.
 *
 * Issues (the rest of the service still applies): SCTP ports (skipped);
 * frontend conflicts; IPv6 addresses of dual-stack services and IPv6
 * `loadBalancerSourceRanges` (recorded, not served or enforced: the
 * datapath serves IPv4).
 *
 * @returns service ports sorted by key, and the issues found
 */
export function translate(state: ClusterState, node: NodeInfo): { services: DesiredService[]; issues: InputIssue[] } {
  const { services, issues } = new Translator(node).run(state);
  return { services, issues };
}

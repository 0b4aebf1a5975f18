/**
 * The incremental translation of cluster snapshots into what one node
 * programs (service ports with frontends and backends, see types.ts). The
 * rules are kube-proxy's, written out plainly in rules.ts; this module
 * applies them service by service, caches each Service's translation by
 * object identity, and settles conflicts between Services only when some
 * candidate frontend changed. A differential test holds {@link Translator}
 * equal to rules.ts's translateState for every snapshot sequence.
 *
 * Why a service's ports are assembled here again (translateService, with
 * working arrays, an insertion sort and one object literal per shape)
 * rather than by rules.ts's own per-service function: with that function
 * in its place, the Kubernetes benchmark's 10,000-service sync took ~140 ms
 * longer warm and ~220 ms longer from a cold start (0.20 of
 * iptables-legacy-restore's time instead of 0.16; the target is 0.15).
 * The differential test is what keeps the two equal.
 *
 * Pure: no I/O; the same snapshot gives the same output, sorted by key.
 */
import type { ClusterState, EndpointModel, EndpointSliceModel, InputIssue, NodeInfo, ServiceModel } from '../model/types.js';
import { TOPOLOGY_ZONE_LABEL } from '../model/types.js';
import { ipToU32, isIPv4 } from '../util/ip.js';
import { flat } from '../util/flat.js';
import {
  LOOPBACK,
  categorizeEndpoints,
  byCreation,
  conflictIssue,
  externalSet,
  externallyAccessible,
  healthCheckNodePortOf,
  internalSet,
  ipv6Issue,
  noClusterIPIssue,
  sctpIssue,
  skipIssue,
  sourceRangesIssue,
  servicePort,
  type ServicePortPolicy,
} from './rules.js';
import type { DesiredBackend, DesiredFrontend, DesiredService, FrontendKind, ServedProtocol } from './types.js';

export type { DesiredBackend, DesiredFrontend, DesiredService, EndpointSet, FrontendKind, ServedProtocol, TopologyMode } from './types.js';
export { SERVICE_PROXY_NAME_LABEL } from './rules.js';

/** A DesiredService from a port's template and its settled frontends (every field written out in one order). */
function desiredService(base: Omit<DesiredService, 'frontends'>, frontends: DesiredFrontend[]): DesiredService {
  // Not `{ ...base, frontends }`: V8 gave objects copied by spread a hidden
  // class of their own (measured on backends: 22 per service, 9.5 KB of
  // heap per service at 10,000 services, megamorphic access downstream).
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
    usesCluster: base.usesCluster,
    usesLocal: base.usesLocal,
    hasAnyEndpoints: base.hasAnyEndpoints,
    topology: base.topology,
    sessionAffinity: base.sessionAffinity,
    loadBalancerSourceRanges: base.loadBalancerSourceRanges,
  };
  if (base.sessionAffinityTimeoutSeconds !== undefined) d.sessionAffinityTimeoutSeconds = base.sessionAffinityTimeoutSeconds;
  if (base.healthCheckNodePort !== undefined) d.healthCheckNodePort = base.healthCheckNodePort;
  if (base.trafficDistribution !== undefined) d.trafficDistribution = base.trafficDistribution;
  return d;
}

const conditionRank = (x: DesiredBackend): number => (x.ready ? 2 : x.serving ? 1 : 0);

/**
 * The backends of one service port: endpoints of the IPv4 slices of the
 * service whose port has the same name and protocol; the first address of
 * each endpoint. The same `addr:port/protocol` in several slices (during a
 * slice rollover) becomes one backend, the copy with the better condition
 * (first slice by name on a tie). `inCluster` and `inLocal` are false.
 *
 * @param models filled, index for index, with the endpoint each backend
 *   came from (the winning copy), for categorizeEndpoints
 */
function backendsOf(slices: EndpointSliceModel[], portName: string, protocol: ServedProtocol, nodeName: string, models: EndpointModel[]): DesiredBackend[] {
  // Every endpoint with its key, address and port (each address parsed
  // once), in slice order; a stable sort by key then puts copies of one
  // endpoint next to each other, in slice order. No Map per service port,
  // and the working arrays are this module's (translation is synchronous):
  // only the result is allocated.
  // Indexed loops here and in the translation's other per-endpoint and
  // per-service loops: a for...of allocates an iterator result per step
  // until V8 has optimized the loop, and a first sync runs them cold
  // (18 MB of 138 MB allocated by a 10,000-service sync).
  const found = scratch.found;
  const from = scratch.from;
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
      const local = e.nodeName !== undefined && e.nodeName === nodeName;
      const name = flat(addr, suffix);
      // One literal for the common endpoint (see normalize.ts's endpoints),
      // every DesiredBackend's fields written in this one order.
      let b: DesiredBackend;
      if (e.nodeName !== undefined && e.targetName !== undefined) {
        b = { addr, port: sp.port, protocol, nodeName: e.nodeName, local, ready: e.ready, serving: e.serving, terminating: e.terminating, inCluster: false, inLocal: false, weight: 1, name, targetName: e.targetName };
      } else {
        b = { addr, port: sp.port, protocol, local, ready: e.ready, serving: e.serving, terminating: e.terminating, inCluster: false, inLocal: false, weight: 1, name };
        if (e.nodeName !== undefined) b.nodeName = e.nodeName;
        if (e.targetName !== undefined) b.targetName = e.targetName;
      }
      found[n] = b;
      from[n] = e;
      keys[n] = ipToU32(addr) * 65536 + sp.port;
      n++;
    }
  }
  const order = stableOrder(keys, n);
  const out: DesiredBackend[] = [];
  for (let i = 0; i < n; i++) {
    const k = order[i];
    if (i > 0 && keys[k] === keys[order[i - 1]]) {
      // A copy of the previous endpoint: the better condition wins, the earlier on a tie.
      const last = out.length - 1;
      if (conditionRank(found[k]!) > conditionRank(out[last])) {
        out[last] = found[k]!;
        models[last] = from[k]!;
      }
    } else {
      out.push(found[k]!);
      models.push(from[k]!);
    }
  }
  // Hold no endpoint of this port past the call.
  for (let i = 0; i < n; i++) {
    found[i] = undefined;
    from[i] = undefined;
  }
  return out;
}

/**
 * Set `inCluster` (or `inLocal`) on the backends whose endpoint is in `set`.
 * `set` is categorizeEndpoints's: a subsequence of `models` in order, chosen
 * by a rule of the endpoint alone, so one pass pairs them.
 */
function markSet(backends: DesiredBackend[], models: EndpointModel[], set: EndpointModel[] | undefined, cluster: boolean): void {
  if (!set) return;
  let j = 0;
  for (let i = 0; i < models.length && j < set.length; i++) {
    if (models[i] !== set[j]) continue;
    if (cluster) backends[i].inCluster = true;
    else backends[i].inLocal = true;
    j++;
  }
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
const scratch = {
  found: [] as Array<DesiredBackend | undefined>,
  from: [] as Array<EndpointModel | undefined>,
  keys: [] as number[],
  order: [] as number[],
};

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
 * candidate frontends and backends, and the issues of the service alone (a
 * service xlb does not proxy has no ports and one issue saying why). The
 * rules are rules.ts's; see translateState there.
 */
function translateService(svc: ServiceModel, slices: EndpointSliceModel[], node: NodeInfo): ServiceTranslation {
  const serviceKey = flat(svc.namespace, '/', svc.name);
  const skip = skipIssue(svc);
  if (skip) return { serviceKey, ports: NO_PORTS, issues: [skip] };
  const object = `Service ${serviceKey}`;
  const issues: InputIssue[] = [];
  const v4Ranges = svc.loadBalancerSourceRanges.length ? svc.loadBalancerSourceRanges.filter((c) => isIPv4(c.split('/')[0])) : svc.loadBalancerSourceRanges;
  if (svc.type === 'LoadBalancer' && v4Ranges.length < svc.loadBalancerSourceRanges.length) issues.push(sourceRangesIssue(object, v4Ranges.length > 0));
  // Dual-stack: the IPv6 side is recorded and reported, not served (the datapath is IPv4 for now).
  // Loops, not filter/map/spread: this runs for every service of a sync, and
  // the common service has no IPv6 address (seven temporary arrays each).
  // (No closures here either: tsx, which runs xlb, names each closure as it
  // is made, a defineProperty per closure per service.)
  const v6: string[] = [];
  pushIPv6(v6, svc.clusterIPs, 'spec.clusterIPs');
  pushIPv6(v6, svc.externalIPs, 'spec.externalIPs');
  if (svc.type === 'LoadBalancer') pushIPv6(v6, svc.loadBalancerIPs, 'status.loadBalancer.ingress');
  if (v6.length) issues.push(ipv6Issue(object, v6));
  const noClusterIP = noClusterIPIssue(svc, object);
  if (noClusterIP) issues.push(noClusterIP);
  const externalPolicyLocal = svc.externalTrafficPolicy === 'Local';
  const internalPolicyLocal = svc.internalTrafficPolicy === 'Local';
  const healthCheckNodePort = healthCheckNodePortOf(svc);
  const ports: PortTemplate[] = [];
  for (let i = 0; i < svc.ports.length; i++) {
    const sp = svc.ports[i];
    if (sp.protocol === 'SCTP') {
      issues.push(sctpIssue(object, i));
      continue;
    }
    const protocol: ServedProtocol = sp.protocol;
    const candidates: Candidate[] = [];
    if (svc.type === 'LoadBalancer') addCandidates(candidates, 'LoadBalancer', svc.loadBalancerIPs, sp.port, protocol, svc);
    addCandidates(candidates, 'ExternalIP', svc.externalIPs, sp.port, protocol, svc);
    if (svc.type === 'NodePort' || svc.type === 'LoadBalancer') {
      addCandidates(candidates, 'NodePort', node.addresses, sp.nodePort, protocol, svc);
      addCandidates(candidates, 'NodePort', LOOPBACK_LIST, sp.nodePort, protocol, svc);
    }
    addCandidates(candidates, 'ClusterIP', svc.clusterIPs, sp.port, protocol, svc);
    const models: EndpointModel[] = [];
    const backends = backendsOf(slices, sp.name, protocol, node.name, models);
    const policy: ServicePortPolicy = { externallyAccessible: externallyAccessible(svc, sp), externalPolicyLocal, internalPolicyLocal };
    const sets = categorizeEndpoints(models, policy, node.name, node.labels);
    markSet(backends, models, sets.clusterEndpoints, true);
    markSet(backends, models, sets.localEndpoints, false);
    const base = servicePort(svc, sp, flat(serviceKey, ':', sp.name), protocol, backends, policy, sets, v4Ranges);
    ports.push({ serviceKey, portIndex: i, portName: sp.name, candidates, base, desired: undefined, frontends: [], claimIssues: NO_ISSUES });
  }
  return { serviceKey, ports, issues };
}

/** Push `${field} ${a}` for each address of `addrs` that is not IPv4. */
function pushIPv6(out: string[], addrs: string[], field: string): void {
  for (let i = 0; i < addrs.length; i++) if (!isIPv4(addrs[i])) out.push(`${field} ${addrs[i]}`);
}

const LOOPBACK_LIST = [LOOPBACK];

/**
 * Push a candidate frontend, with its sets (rules.ts's externalSet and
 * internalSet), for each IPv4 address of `addrs` on `port` (none when the
 * port is undefined). One literal per shape, fields in one order.
 */
function addCandidates(out: Candidate[], kind: FrontendKind, addrs: string[], port: number | undefined, protocol: ServedProtocol, svc: ServiceModel): void {
  if (port === undefined) return;
  for (let i = 0; i < addrs.length; i++) {
    const addr = addrs[i];
    if (!isIPv4(addr)) continue;
    const internal = internalSet(kind, svc);
    const external = externalSet(kind, addr, svc);
    const f: DesiredFrontend = external === undefined ? { addr, port, protocol, kind, internal } : { addr, port, protocol, kind, external, internal };
    out.push({ f, key: flat(addr, ':', port, '/', protocol) });
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
  t: ServiceTranslation;
}

/**
 * Translates snapshot after snapshot, redoing only the services whose
 * Service object or EndpointSlice objects changed (compared by identity: a
 * source that keeps unchanged objects from one snapshot to the next gets
 * work proportional to the change; one that rebuilds every object, such as
 * the manifests file, gets a full translation). Conflicts between services
 * over a frontend are settled again only when some candidate changed. A
 * new node ({@link Translator.setNode}) translates everything again.
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

  /** This node as the translation reads it (a copy: see {@link Translator.setNode}). */
  private node: NodeInfo;
  /** The node changed since the last run: translate every service again. */
  private nodeChanged = false;

  constructor(node: NodeInfo) {
    this.node = copyNode(node);
  }

  /**
   * Translate against `node` from the next run on. When its name, its
   * addresses (NodePort frontends follow them) or its zone label (zone
   * hints follow it) differ from the current node's, the next run
   * translates every service again and returns `structural: true`;
   * otherwise nothing changes. Labels other than the zone are not read.
   */
  setNode(node: NodeInfo): void {
    if (sameNode(this.node, node)) return;
    this.node = copyNode(node);
    this.nodeChanged = true;
  }

  /** Translate `state`; see rules.ts (translateState) for the rules. */
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
    // A new node changes every service (frontends, locality, zone): all are
    // translated again, and the result is structural.
    const all = this.nodeChanged;
    this.nodeChanged = false;
    let candidatesChanged = all;
    const retranslated: string[] = [];
    const previous = new Map<string, CacheEntry>();
    const retranslate = (serviceKey: string, svc: ServiceModel): void => {
      const prev = this.cache.get(serviceKey);
      if (prev && prev.svc === svc && !all && !dirty.has(serviceKey)) return;
      const slices = slicesByName(this.slicesOf.get(serviceKey));
      const t = translateService(svc, slices, this.node);
      if (!prev || candidateSignature(prev.t) !== candidateSignature(t) || prev.svc.createdAt !== svc.createdAt) candidatesChanged = true;
      if (prev) previous.set(serviceKey, prev);
      this.cache.set(serviceKey, { svc, slices, t });
      retranslated.push(serviceKey);
    };
    let scanned = false;
    if (hint && !all) {
      const keys = new Set<string>([...hint.services, ...dirty]);
      for (const serviceKey of keys) {
        const svc = state.services.get(serviceKey);
        if (svc) retranslate(serviceKey, svc);
        else if (this.cache.delete(serviceKey)) candidatesChanged = true;
      }
    }
    if (!hint || all || this.cache.size !== state.services.size) {
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
      // Handed out: a later run copies it before changing a port in place.
      this.published = services;
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
      if (e.t.issues.length || (old?.t.issues.length ?? 0)) issuesChanged = true;
      // The same candidates as the old translation's (else this is not
      // reached), port for port: the same settlement.
      const oldPorts = old?.t.ports ?? [];
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
      for (let i = 0; i < t.issues.length; i++) issues.push(t.issues[i]);
      for (let k = 0; k < t.ports.length; k++) {
        const claimIssues = t.ports[k].claimIssues;
        for (let i = 0; i < claimIssues.length; i++) issues.push(claimIssues[i]);
      }
    }
    return issues;
  }

  /** Settle who owns each candidate frontend: the first claimant by creation time, then service key, then port index (rules.ts). */
  private settleClaims(): void {
    // Owner of each frontend: the port that claimed it first. Ports without
    // a conflict (nearly all) share one empty issue list. Services without a
    // creation time (files) keep key order, after those with one.
    const claims = new Map<string, PortTemplate>();
    let claimOrder = this.order;
    if (this.order.some((k) => this.cache.get(k)!.svc.createdAt !== undefined)) {
      claimOrder = [...this.order].sort((a, b) => byCreation(this.cache.get(a)!.svc.createdAt, this.cache.get(b)!.svc.createdAt) || byCodeUnits(a, b));
    }
    for (let s = 0; s < claimOrder.length; s++) {
      const t = this.cache.get(claimOrder[s])!.t;
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
            if (issues === NO_ISSUES) issues = [];
            issues.push(conflictIssue(p.serviceKey, p.portIndex, f.kind, fk, owner));
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

/** The ports of a service xlb does not serve (shared, never written). */
const NO_PORTS: PortTemplate[] = Object.freeze([]) as unknown as PortTemplate[];

/** What the translation reads of a node, copied (a caller may change its object in place). */
function copyNode(node: NodeInfo): NodeInfo {
  const zone = node.labels?.[TOPOLOGY_ZONE_LABEL];
  return { name: node.name, addresses: [...node.addresses], labels: zone === undefined ? {} : { [TOPOLOGY_ZONE_LABEL]: zone } };
}

/** Whether two nodes translate alike: the same name, addresses in the same order, and zone label. */
function sameNode(a: NodeInfo, b: NodeInfo): boolean {
  if (a.name !== b.name || a.addresses.length !== b.addresses.length) return false;
  for (let i = 0; i < a.addresses.length; i++) if (a.addresses[i] !== b.addresses[i]) return false;
  return a.labels?.[TOPOLOGY_ZONE_LABEL] === b.labels?.[TOPOLOGY_ZONE_LABEL];
}

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

/**
 * Everything of a service's candidates that settlement hands from one
 * translation to the next (keys, kinds and sets: a traffic policy change
 * makes new frontend objects, so it goes through settlement too).
 */
function candidateSignature(t: ServiceTranslation | undefined): string {
  return t ? t.ports.map((p) => `${p.base.key}=${p.candidates.map((c) => `${c.key}/${c.f.kind}/${c.f.external ?? ''}/${c.f.internal}`).join(',')}`).join(';') : '';
}

function sameFrontends(a: DesiredFrontend[], b: DesiredFrontend[]): boolean {
  return (
    a.length === b.length &&
    a.every((f, i) => f.addr === b[i].addr && f.port === b[i].port && f.protocol === b[i].protocol && f.kind === b[i].kind && f.external === b[i].external && f.internal === b[i].internal)
  );
}

/**
 * Translate a snapshot into the service ports this node programs: the same
 * as rules.ts's translateState (see there for the rules), by a fresh
 * {@link Translator}.
 *
 * Frontends per service port (IPv4 only; IPv6 addresses of dual-stack
 * services are recorded in the model but not served), each with the
 * endpoint set its external and internal new flows choose from:
 * - LoadBalancer (type LoadBalancer): each of `loadBalancerIPs` × port;
 * - ExternalIP: each of `externalIPs` × port;
 * - NodePort (types NodePort and LoadBalancer): each node address × nodePort,
 *   and 127.0.0.1 × nodePort (internal only);
 * - ClusterIP: each IPv4 cluster IP × port (internal only).
 *
 * Two service ports claiming the same (address, port, protocol): the service
 * whose `namespace/name` sorts first (then the lower port index) keeps it; the
 * other loses that frontend and gets an issue naming both. TCP and UDP on the
 * same address and port do not conflict.
 *
 * Issues (the rest of the service still applies): services not served
 * (headless, ExternalName, another proxy's); SCTP ports (skipped);
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

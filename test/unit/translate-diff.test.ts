/**
 * Differential test: the incremental Translator (src/services/translate.ts)
 * against the plain reference translation (rules.ts translateState), over
 * many random snapshot sequences: Services of every type and policy, slices
 * with random conditions, hints and nodes, frontend conflicts, additions,
 * removals and changes with and without the source's change hints, and node
 * changes through setNode. Every step must give deep-equal services and
 * issues, and keep the Translator's own contract on `changed`, `structural`
 * and the arrays it handed out before.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Translator } from '../../src/services/translate.js';
import { translateState } from '../../src/services/rules.js';
import type { DesiredService } from '../../src/services/types.js';
import type { ClusterState, EndpointModel, EndpointSliceModel, NodeInfo, Protocol, ServiceModel, ServicePort } from '../../src/model/types.js';
import { prng } from '../helpers/prng.js';

const ZONE = 'topology.kubernetes.io/zone';

/** Random choices from one seeded generator. */
class Gen {
  private readonly r: () => number;
  constructor(seed: number) {
    this.r = prng(seed);
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  /** A random subset, in order. */
  some<T>(xs: readonly T[], p = 0.5): T[] {
    return xs.filter(() => this.chance(p));
  }
}

const NAMESPACES = ['default', 'prod'];
const NAMES = ['web', 'api', 'db', 'dns', 'web-a', 'x'];
const CLUSTER_IPS = ['10.96.0.1', '10.96.0.2', '10.96.0.3', '10.96.0.4', 'fd00::1'];
const EXTERNAL_IPS = ['203.0.113.5', '203.0.113.6', '2001:db8::5'];
const VIPS = ['198.51.100.1', '198.51.100.2', '198.51.100.3', '2001:db8::1'];
const PORT_NAMES = ['', 'http', 'dns', 'metrics'];
const NODE_PORTS = [30001, 30002, 30003];
const POD_IPS = ['10.244.1.1', '10.244.1.2', '10.244.2.1', '10.244.2.2', '10.244.3.1', '10.244.3.2', '10.244.3.10'];
const NODE_NAMES = ['node1', 'node2', 'node3'];
const ZONES = ['a', 'b', ''];

const NODES: NodeInfo[] = [
  { name: 'node1', addresses: ['192.168.0.11', '192.168.1.11'], labels: { [ZONE]: 'a' } },
  { name: 'node1', addresses: ['192.168.0.11'], labels: { [ZONE]: 'b', 'kubernetes.io/os': 'linux' } },
  { name: 'node1', addresses: ['192.168.0.11', '192.168.1.11'] },
  { name: 'node2', addresses: ['192.168.0.12', '127.0.0.1'], labels: { [ZONE]: 'a' } },
  { name: 'node1', addresses: [], labels: { [ZONE]: '' } },
];

function randomService(g: Gen, namespace: string, name: string): ServiceModel {
  const type = g.pick(['ClusterIP', 'ClusterIP', 'NodePort', 'LoadBalancer', 'LoadBalancer', 'ExternalName'] as const);
  const headless = type === 'ClusterIP' && g.chance(0.08);
  const portNames = g.some(PORT_NAMES, 0.45);
  if (!portNames.length) portNames.push(g.pick(PORT_NAMES));
  const ports: ServicePort[] = portNames.map((portName) => {
    const protocol: Protocol = g.chance(0.05) ? 'SCTP' : portName === 'dns' ? g.pick(['UDP', 'TCP'] as const) : 'TCP';
    const p: ServicePort = { name: portName, protocol, port: g.pick([80, 53, 443]), targetPort: 8080 };
    if ((type === 'NodePort' || type === 'LoadBalancer') && g.chance(0.75)) p.nodePort = g.pick(NODE_PORTS);
    return p;
  });
  const labels: Record<string, string> = {};
  if (g.chance(0.04)) labels['service.kubernetes.io/service-proxy-name'] = 'other';
  if (g.chance(0.04)) labels['service.kubernetes.io/headless'] = '';
  const svc: ServiceModel = {
    namespace,
    name,
    type,
    clusterIPs: headless || type === 'ExternalName' ? [] : g.chance(0.9) ? [g.pick(CLUSTER_IPS)] : [g.pick(CLUSTER_IPS), 'fd00::2'],
    headless,
    externalIPs: g.chance(0.25) ? g.some(EXTERNAL_IPS) : [],
    loadBalancerIPs: type === 'LoadBalancer' ? g.some(VIPS, 0.4) : [],
    ports,
    externalTrafficPolicy: g.pick(['Cluster', 'Local'] as const),
    internalTrafficPolicy: g.pick(['Cluster', 'Cluster', 'Local'] as const),
    sessionAffinity: g.pick(['None', 'ClientIP'] as const),
    loadBalancerSourceRanges: g.chance(0.2) ? g.some(['192.0.2.0/24', '2001:db8::/32', '198.18.0.0/15']) : [],
    labels,
    annotations: g.chance(0.1) ? { 'service.kubernetes.io/topology-mode': g.pick(['Auto', 'disabled']) } : {},
  };
  if (svc.sessionAffinity === 'ClientIP') svc.sessionAffinityTimeoutSeconds = g.pick([60, 10800]);
  if (type === 'LoadBalancer' && g.chance(0.5)) svc.healthCheckNodePort = g.pick([32000, 32001]);
  if (type === 'LoadBalancer' && g.chance(0.2)) svc.allocateLoadBalancerNodePorts = false;
  if (g.chance(0.2)) svc.trafficDistribution = g.pick(['PreferClose', 'PreferSameZone', 'PreferSameNode', 'Unknown']);
  // Claims on one frontend are settled by creation time, then key: a few instants, some equal, some missing.
  if (g.chance(0.7)) svc.createdAt = g.pick(['2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-02-01T10:00:00Z', '2025-12-31T23:59:59Z', '2026-03-01T00:00:00+02:00']);
  return svc;
}

function randomEndpoint(g: Gen, ipv6: boolean): EndpointModel {
  const ready = g.chance(0.65);
  const terminating = !ready && g.chance(0.6);
  const serving = ready || (terminating && g.chance(0.6)) || g.chance(0.05);
  const e: EndpointModel = {
    addresses: g.chance(0.03) ? [] : ipv6 ? [`fd00:10::${1 + g.int(4)}`] : [g.pick(POD_IPS)],
    ready,
    serving,
    terminating,
  };
  if (g.chance(0.85)) e.nodeName = g.pick(NODE_NAMES);
  if (g.chance(0.5)) e.targetName = `pod-${g.int(20)}`;
  const hinted = g.int(5);
  if (hinted === 1) e.hints = { forZones: g.some(ZONES), forNodes: [] };
  else if (hinted === 2) e.hints = { forZones: [], forNodes: g.some(NODE_NAMES) };
  else if (hinted === 3) e.hints = { forZones: g.some(ZONES, 0.7), forNodes: g.some(NODE_NAMES, 0.7) };
  return e;
}

/** All endpoint objects made so far: a slice sometimes shares one with another (a source may). */
const shared: EndpointModel[] = [];

function randomSlice(g: Gen, namespace: string, name: string, serviceName: string): EndpointSliceModel {
  const addressType = g.chance(0.08) ? 'IPv6' : 'IPv4';
  const ports = g.some(
    [
      { name: 'http', protocol: 'TCP' as const, port: 8080 },
      { name: 'http', protocol: 'UDP' as const, port: 8080 },
      { name: 'dns', protocol: 'UDP' as const, port: 53 },
      { name: 'dns', protocol: 'TCP' as const, port: 5353 },
      { name: '', protocol: 'TCP' as const, port: 80 },
      { name: 'metrics', protocol: 'TCP' as const, port: g.pick([9090, 9091]) },
    ],
    0.5,
  );
  const endpoints: EndpointModel[] = [];
  const n = g.int(7);
  for (let i = 0; i < n; i++) {
    if (addressType === 'IPv4' && shared.length && g.chance(0.1)) endpoints.push(g.pick(shared));
    else {
      const e = randomEndpoint(g, addressType === 'IPv6');
      if (addressType === 'IPv4') shared.push(e);
      endpoints.push(e);
    }
  }
  if (shared.length > 200) shared.splice(0, 100);
  return { namespace, name, serviceName, addressType, ports, endpoints };
}

interface World {
  services: Map<string, ServiceModel>;
  slices: Map<string, EndpointSliceModel>;
}

/** One random edit; returns the keys it changed. */
function edit(g: Gen, w: World): { services: string[]; slices: string[] } {
  const namespace = g.pick(NAMESPACES);
  const name = g.pick(NAMES);
  const serviceKey = `${namespace}/${name}`;
  const r = g.int(10);
  if (r < 3) {
    if (w.services.has(serviceKey) && g.chance(0.3)) w.services.delete(serviceKey);
    else if (w.services.has(serviceKey) && g.chance(0.2)) w.services.set(serviceKey, { ...w.services.get(serviceKey)! }); // same content, new object
    else if (w.services.has(serviceKey) && g.chance(0.3)) {
      // Only a traffic policy changes: the same frontends with other sets.
      const svc = w.services.get(serviceKey)!;
      const flip = (p: 'Cluster' | 'Local') => (p === 'Local' ? 'Cluster' : 'Local');
      w.services.set(serviceKey, g.chance(0.5) ? { ...svc, externalTrafficPolicy: flip(svc.externalTrafficPolicy) } : { ...svc, internalTrafficPolicy: flip(svc.internalTrafficPolicy) });
    }
    else w.services.set(serviceKey, randomService(g, namespace, name));
    return { services: [serviceKey], slices: [] };
  }
  const sliceName = `${name}-${g.pick(['a', 'b', 'c'])}`;
  const sliceKey = `${namespace}/${sliceName}`;
  if (w.slices.has(sliceKey) && g.chance(0.25)) w.slices.delete(sliceKey);
  else {
    // Mostly the service of its name; sometimes another one (a slice moving between services).
    const owner = g.chance(0.1) ? g.pick(NAMES) : name;
    w.slices.set(sliceKey, randomSlice(g, namespace, sliceName, owner));
  }
  return { services: [], slices: [sliceKey] };
}

function runSequence(seed: number, steps: number): void {
  const g = new Gen(seed);
  const w: World = { services: new Map(), slices: new Map() };
  for (let i = 0; i < 12; i++) edit(g, w);
  let node = g.pick(NODES);
  const t = new Translator(node);
  let prev: { services: DesiredService[]; copy: DesiredService[] } | undefined;

  for (let step = 0; step < steps; step++) {
    const changedServices: string[] = [];
    const changedSlices: string[] = [];
    if (step > 0) {
      const edits = g.int(4);
      for (let e = 0; e < edits; e++) {
        const c = edit(g, w);
        changedServices.push(...c.services);
        changedSlices.push(...c.slices);
      }
      // Spurious keys in a hint are allowed (and a key may be named twice).
      if (g.chance(0.2)) changedServices.push(`${g.pick(NAMESPACES)}/${g.pick(NAMES)}`);
      if (g.chance(0.2)) changedSlices.push(`${g.pick(NAMESPACES)}/${g.pick(NAMES)}-a`);
    }
    let nodeChanged = false;
    if (step > 0 && g.chance(0.08)) {
      const next = g.pick(NODES);
      // Sometimes an equal node in a new object.
      node = g.chance(0.3) ? { ...node, addresses: [...node.addresses], labels: { ...node.labels } } : next;
      t.setNode(node);
      nodeChanged = true;
    }
    // The same Maps changed in place, or fresh copies; with a complete hint or none.
    const st: ClusterState = g.chance(0.5) ? { services: w.services, endpointSlices: w.slices } : { services: new Map(w.services), endpointSlices: new Map(w.slices) };
    if (g.chance(0.6)) st.changed = { services: changedServices, endpointSlices: changedSlices };

    const got = t.run(st);
    const want = translateState(st, node);
    const where = `seed ${seed} step ${step}`;
    assert.deepStrictEqual({ services: got.services, issues: got.issues }, want, `${where}: incremental and reference translations differ`);

    // The contract on `changed` and `structural`, against the previous run.
    if (prev) {
      assert.deepStrictEqual(prev.services, prev.copy, `${where}: an earlier result was changed in place`);
      const before = new Map(prev.services.map((d) => [d.key, d]));
      for (const d of got.services) {
        if (got.changed.has(d.key)) assert.notEqual(before.get(d.key), d, `${where}: ${d.key} is in changed but is the old object`);
        else assert.equal(before.get(d.key), d, `${where}: ${d.key} is not in changed but is a new object`);
      }
      if (!got.structural) {
        assert.deepEqual(got.services.map((d) => d.key), prev.services.map((d) => d.key), `${where}: not structural, yet the keys moved`);
      }
      if (nodeChanged && !sameNodeForTranslation(node, prevNode)) assert.equal(got.structural, true, `${where}: a new node must be structural`);
    }
    prev = { services: got.services, copy: [...got.services] };
    prevNode = node;
  }
}

let prevNode: NodeInfo | undefined;

/** What the translation reads of a node: name, addresses in order, zone label. */
function sameNodeForTranslation(a: NodeInfo, b: NodeInfo | undefined): boolean {
  return !!b && a.name === b.name && a.addresses.join() === b.addresses.join() && a.labels?.[ZONE] === b.labels?.[ZONE];
}

describe('Translator equals rules.translateState over random snapshot sequences', () => {
  for (let batch = 0; batch < 6; batch++) {
    it(`seeds ${batch * 10 + 1}..${batch * 10 + 10}, 80 steps each`, () => {
      for (let seed = batch * 10 + 1; seed <= batch * 10 + 10; seed++) {
        prevNode = undefined;
        runSequence(seed, 80);
      }
    });
  }
});

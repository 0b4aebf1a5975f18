/**
 * src/services/rules: kube-proxy's rules, as tables taken from kube-proxy's
 * own tests (Kubernetes v1.35 and earlier):
 * - pkg/proxy/topology_test.go TestCategorizeEndpoints, every case (those
 *   of older releases that depended on the hints-annotation gate or the
 *   ProxyTerminatingEndpoints gate say so in their names and expect today's
 *   behaviour), plus PreferSameNode cases written from
 *   topologyModeFromHints;
 * - pkg/proxy/nftables/proxier_test.go and iptables/proxier_test.go packet
 *   flow tests on traffic policies, expressed as the endpoints of the set
 *   that a frontend's external (from outside) or internal (pod, node) new
 *   flows choose from;
 * - which Services are not served (ExternalName, headless, labels).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  categorizeEndpoints,
  externalSet,
  internalSet,
  skipIssue,
  topologyModeFromHints,
  translateState,
  type EndpointFacts,
  type ServicePortPolicy,
} from '../../src/services/rules.js';
import type { DesiredService } from '../../src/services/types.js';
import type { EndpointModel, EndpointSliceModel, NodeInfo, ServiceModel } from '../../src/model/types.js';
import { clusterState as state, serviceModel } from '../helpers/model.js';

const TEST_NODE = 'test-node';
const TEST_NODE_IP = '192.168.0.2';
const ZONE = 'topology.kubernetes.io/zone';

// ---------------------------------------------------------------------------
// TestCategorizeEndpoints

/** An endpoint of kube-proxy's table: BaseEndpointInfo's fields (conditions default false, as there). */
interface TableEndpoint {
  ep: string;
  zoneHints?: string[];
  nodeHints?: string[];
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  isLocal?: boolean;
}

interface CategorizeCase {
  name: string;
  nodeLabels?: Record<string, string>;
  /** kube-proxy's BaseServicePortInfo: a nodePort makes the port externally accessible. */
  serviceInfo: { internalPolicyLocal?: boolean; externalPolicyLocal?: boolean; nodePort?: number };
  endpoints: TableEndpoint[];
  /** undefined: the port does not use that set; [] : it uses it and it is empty. */
  clusterEndpoints?: string[];
  localEndpoints?: string[];
  /** Needed only when both sets are used. */
  allEndpoints?: string[];
  /** hasAnyEndpoints although allEndpoints is empty. */
  onlyRemoteEndpoints?: boolean;
  /** Topology the cluster set ends up with (checked when given). */
  topology?: string;
}

const zoneEps = (zones: Array<[string, string[] | undefined, boolean?]>): TableEndpoint[] =>
  zones.map(([ep, zoneHints, ready = true]) => ({ ep, zoneHints, ready }));
const FOUR_ZONED = zoneEps([
  ['10.1.2.3:80', ['zone-a']],
  ['10.1.2.4:80', ['zone-b']],
  ['10.1.2.5:80', ['zone-c']],
  ['10.1.2.6:80', ['zone-a']],
]);
const ZONE_A = { [ZONE]: 'zone-a' };

const categorizeCases: CategorizeCase[] = [
  {
    name: "should use topology since all endpoints have hints, node has a zone label and and there are endpoints for the node's zone",
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: FOUR_ZONED,
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'],
    topology: 'PreferSameZone',
  },
  // Cases of older releases that set the hints annotation: today's kube-proxy reads no annotation.
  { name: 'hints enabled, hints annotation == auto', nodeLabels: ZONE_A, serviceInfo: {}, endpoints: FOUR_ZONED, clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'] },
  {
    name: 'hints, hints annotation == disabled (old annotation gate ignored hints; today hints apply)',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: FOUR_ZONED,
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'],
  },
  {
    name: 'hints, hints annotation == aUto (old annotation gate ignored hints; today hints apply)',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: FOUR_ZONED,
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'],
  },
  {
    name: 'hints, hints annotation empty (old annotation gate ignored hints; today hints apply)',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: FOUR_ZONED,
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'],
  },
  { name: 'normal endpoint filtering, auto annotation', nodeLabels: ZONE_A, serviceInfo: {}, endpoints: FOUR_ZONED, clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'] },
  { name: 'normal endpoint filtering, Auto annotation', nodeLabels: ZONE_A, serviceInfo: {}, endpoints: FOUR_ZONED, clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'] },
  {
    name: 'hintsAnnotation empty (old annotation gate: no filtering; today hints apply)',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: FOUR_ZONED,
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'],
  },
  {
    name: 'hintsAnnotation disabled (old annotation gate: no filtering; today hints apply)',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: FOUR_ZONED,
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'],
  },
  {
    name: 'externalTrafficPolicy: Local, topology ignored for Local endpoints',
    nodeLabels: ZONE_A,
    serviceInfo: { externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.1.2.3:80', zoneHints: ['zone-a'], ready: true, isLocal: true },
      { ep: '10.1.2.4:80', zoneHints: ['zone-b'], ready: true, isLocal: true },
      { ep: '10.1.2.5:80', zoneHints: ['zone-c'], ready: true },
      { ep: '10.1.2.6:80', zoneHints: ['zone-a'], ready: true },
    ],
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'],
    localEndpoints: ['10.1.2.3:80', '10.1.2.4:80'],
    allEndpoints: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.6:80'],
  },
  {
    name: 'internalTrafficPolicy: Local, topology ignored for Local endpoints',
    nodeLabels: ZONE_A,
    serviceInfo: { internalPolicyLocal: true, externalPolicyLocal: false, nodePort: 8080 },
    endpoints: [
      { ep: '10.1.2.3:80', zoneHints: ['zone-a'], ready: true, isLocal: true },
      { ep: '10.1.2.4:80', zoneHints: ['zone-b'], ready: true, isLocal: true },
      { ep: '10.1.2.5:80', zoneHints: ['zone-c'], ready: true },
      { ep: '10.1.2.6:80', zoneHints: ['zone-a'], ready: true },
    ],
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.6:80'],
    localEndpoints: ['10.1.2.3:80', '10.1.2.4:80'],
    allEndpoints: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.6:80'],
  },
  { name: 'empty node labels', nodeLabels: {}, serviceInfo: {}, endpoints: zoneEps([['10.1.2.3:80', ['zone-a']]]), clusterEndpoints: ['10.1.2.3:80'], topology: '' },
  { name: 'empty zone label', nodeLabels: { [ZONE]: '' }, serviceInfo: {}, endpoints: zoneEps([['10.1.2.3:80', ['zone-a']]]), clusterEndpoints: ['10.1.2.3:80'] },
  {
    name: 'node in different zone, no endpoint filtering',
    nodeLabels: { [ZONE]: 'zone-b' },
    serviceInfo: {},
    endpoints: zoneEps([['10.1.2.3:80', ['zone-a']]]),
    clusterEndpoints: ['10.1.2.3:80'],
  },
  {
    name: 'unready endpoint',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: zoneEps([
      ['10.1.2.3:80', ['zone-a']],
      ['10.1.2.4:80', ['zone-b']],
      ['10.1.2.5:80', ['zone-c']],
      ['10.1.2.6:80', ['zone-a'], false],
    ]),
    clusterEndpoints: ['10.1.2.3:80'],
  },
  {
    name: 'only unready endpoints in same zone (should not filter)',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: zoneEps([
      ['10.1.2.3:80', ['zone-a'], false],
      ['10.1.2.4:80', ['zone-b']],
      ['10.1.2.5:80', ['zone-c']],
      ['10.1.2.6:80', ['zone-a'], false],
    ]),
    clusterEndpoints: ['10.1.2.4:80', '10.1.2.5:80'],
    topology: '',
  },
  {
    name: 'missing hints, no filtering applied',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: zoneEps([
      ['10.1.2.3:80', ['zone-a']],
      ['10.1.2.4:80', ['zone-b']],
      ['10.1.2.5:80', undefined],
      ['10.1.2.6:80', ['zone-a']],
    ]),
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.5:80', '10.1.2.6:80'],
  },
  {
    name: 'multiple hints per endpoint, filtering includes any endpoint with zone included',
    nodeLabels: { [ZONE]: 'zone-c' },
    serviceInfo: {},
    endpoints: zoneEps([
      ['10.1.2.3:80', ['zone-a', 'zone-b', 'zone-c']],
      ['10.1.2.4:80', ['zone-b', 'zone-c']],
      ['10.1.2.5:80', ['zone-b', 'zone-d']],
      ['10.1.2.6:80', ['zone-c']],
    ]),
    clusterEndpoints: ['10.1.2.3:80', '10.1.2.4:80', '10.1.2.6:80'],
  },
  {
    name: 'conflicting topology and localness require merging allEndpoints',
    nodeLabels: ZONE_A,
    serviceInfo: { internalPolicyLocal: false, externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', zoneHints: ['zone-a'], ready: true, isLocal: true },
      { ep: '10.0.0.1:80', zoneHints: ['zone-b'], ready: true, isLocal: true },
      { ep: '10.0.0.2:80', zoneHints: ['zone-a'], ready: true, isLocal: false },
      { ep: '10.0.0.3:80', zoneHints: ['zone-b'], ready: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.2:80'],
    localEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    allEndpoints: ['10.0.0.0:80', '10.0.0.1:80', '10.0.0.2:80'],
  },
  { name: 'internalTrafficPolicy: Local, with empty endpoints', serviceInfo: { internalPolicyLocal: true }, endpoints: [], clusterEndpoints: undefined, localEndpoints: [] },
  {
    name: 'internalTrafficPolicy: Local, but all endpoints are remote',
    serviceInfo: { internalPolicyLocal: true },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: false },
      { ep: '10.0.0.1:80', ready: true, isLocal: false },
    ],
    clusterEndpoints: undefined,
    localEndpoints: [],
    onlyRemoteEndpoints: true,
  },
  {
    name: 'internalTrafficPolicy: Local, all endpoints are local',
    serviceInfo: { internalPolicyLocal: true },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: true },
      { ep: '10.0.0.1:80', ready: true, isLocal: true },
    ],
    clusterEndpoints: undefined,
    localEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'internalTrafficPolicy: Local, some endpoints are local',
    serviceInfo: { internalPolicyLocal: true },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: true },
      { ep: '10.0.0.1:80', ready: true, isLocal: false },
    ],
    clusterEndpoints: undefined,
    localEndpoints: ['10.0.0.0:80'],
  },
  {
    name: 'Cluster traffic policy, endpoints not Ready',
    serviceInfo: {},
    endpoints: [
      { ep: '10.0.0.0:80', ready: false },
      { ep: '10.0.0.1:80', ready: false },
    ],
    clusterEndpoints: [],
    localEndpoints: undefined,
  },
  {
    name: 'Cluster traffic policy, some endpoints are Ready',
    serviceInfo: {},
    endpoints: [
      { ep: '10.0.0.0:80', ready: false },
      { ep: '10.0.0.1:80', ready: true },
    ],
    clusterEndpoints: ['10.0.0.1:80'],
  },
  {
    name: 'Cluster traffic policy, all endpoints are terminating',
    serviceInfo: {},
    endpoints: [
      { ep: '10.0.0.0:80', ready: false, serving: true, terminating: true, isLocal: true },
      { ep: '10.0.0.1:80', ready: false, serving: true, terminating: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'Cluster traffic policy, PTE disabled, all endpoints are terminating (ProxyTerminatingEndpoints is GA: today terminating endpoints are used)',
    serviceInfo: {},
    endpoints: [
      { ep: '10.0.0.0:80', ready: false, serving: true, terminating: true, isLocal: true },
      { ep: '10.0.0.1:80', ready: false, serving: true, terminating: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'iTP: Local, eTP: Cluster, some endpoints local',
    serviceInfo: { internalPolicyLocal: true, externalPolicyLocal: false, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: true },
      { ep: '10.0.0.1:80', ready: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    localEndpoints: ['10.0.0.0:80'],
    allEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'iTP: Cluster, eTP: Local, some endpoints local',
    serviceInfo: { internalPolicyLocal: false, externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: true },
      { ep: '10.0.0.1:80', ready: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    localEndpoints: ['10.0.0.0:80'],
    allEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'iTP: Local, eTP: Local, some endpoints local',
    serviceInfo: { internalPolicyLocal: true, externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: true },
      { ep: '10.0.0.1:80', ready: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    localEndpoints: ['10.0.0.0:80'],
    allEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'iTP: Local, eTP: Local, all endpoints remote',
    serviceInfo: { internalPolicyLocal: true, externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: false },
      { ep: '10.0.0.1:80', ready: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    localEndpoints: [],
    allEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'iTP: Local, eTP: Local, all endpoints remote and terminating',
    serviceInfo: { internalPolicyLocal: true, externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', ready: false, serving: true, terminating: true, isLocal: false },
      { ep: '10.0.0.1:80', ready: false, serving: true, terminating: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    localEndpoints: [],
    allEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    onlyRemoteEndpoints: true,
  },
  {
    name: 'iTP: Local, eTP: Local, PTE disabled, all endpoints remote and terminating (ProxyTerminatingEndpoints is GA: today as with PTE)',
    serviceInfo: { internalPolicyLocal: true, externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', ready: false, serving: true, terminating: true, isLocal: false },
      { ep: '10.0.0.1:80', ready: false, serving: true, terminating: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    localEndpoints: [],
    allEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    onlyRemoteEndpoints: true,
  },
  {
    name: 'iTP: Cluster, eTP: Local, with terminating endpoints',
    serviceInfo: { internalPolicyLocal: false, externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: false },
      { ep: '10.0.0.1:80', ready: false, serving: false, isLocal: true },
      { ep: '10.0.0.2:80', ready: false, serving: true, terminating: true, isLocal: true },
      { ep: '10.0.0.3:80', ready: false, serving: true, terminating: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80'],
    localEndpoints: ['10.0.0.2:80'],
    allEndpoints: ['10.0.0.0:80', '10.0.0.2:80'],
  },
  {
    name: 'iTP: Cluster, eTP: Local, PTE disabled, with terminating endpoints (ProxyTerminatingEndpoints is GA: today the local terminating endpoint is used)',
    serviceInfo: { internalPolicyLocal: false, externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: false },
      { ep: '10.0.0.1:80', ready: false, serving: false, isLocal: true },
      { ep: '10.0.0.2:80', ready: false, serving: true, terminating: true, isLocal: true },
      { ep: '10.0.0.3:80', ready: false, serving: true, terminating: true, isLocal: false },
    ],
    clusterEndpoints: ['10.0.0.0:80'],
    localEndpoints: ['10.0.0.2:80'],
    allEndpoints: ['10.0.0.0:80', '10.0.0.2:80'],
  },
  {
    name: 'externalTrafficPolicy ignored if not externally accessible',
    serviceInfo: { externalPolicyLocal: true },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: false },
      { ep: '10.0.0.1:80', ready: true, isLocal: true },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    localEndpoints: undefined,
    allEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
  },
  {
    name: 'no cluster endpoints for iTP:Local internal-only service',
    serviceInfo: { internalPolicyLocal: true },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: false },
      { ep: '10.0.0.1:80', ready: true, isLocal: true },
    ],
    clusterEndpoints: undefined,
    localEndpoints: ['10.0.0.1:80'],
    allEndpoints: ['10.0.0.1:80'],
  },

  // PreferSameNode (not in the stored kube-proxy table; written from topologyModeFromHints, v1.35).
  {
    name: 'PreferSameNode: every ready endpoint has a node hint and one is for this node: only those',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: true, nodeHints: [TEST_NODE], zoneHints: ['zone-a'] },
      { ep: '10.0.0.1:80', ready: true, nodeHints: ['node-b'], zoneHints: ['zone-a'] },
      { ep: '10.0.0.2:80', ready: false, zoneHints: ['zone-b'] },
    ],
    clusterEndpoints: ['10.0.0.0:80'],
    topology: 'PreferSameNode',
  },
  {
    name: 'PreferSameNode: node hints for other nodes only: zone hints apply',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, nodeHints: ['node-b'], zoneHints: ['zone-a'] },
      { ep: '10.0.0.1:80', ready: true, nodeHints: ['node-c'], zoneHints: ['zone-b'] },
    ],
    clusterEndpoints: ['10.0.0.0:80'],
    topology: 'PreferSameZone',
  },
  {
    name: 'PreferSameNode: a ready endpoint without a node hint: zone hints apply',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, nodeHints: [TEST_NODE], zoneHints: ['zone-b'] },
      { ep: '10.0.0.1:80', ready: true, zoneHints: ['zone-a'] },
    ],
    clusterEndpoints: ['10.0.0.1:80'],
    topology: 'PreferSameZone',
  },
  {
    name: 'PreferSameNode: node hints without zone hints, none for this node: no filtering',
    nodeLabels: ZONE_A,
    serviceInfo: {},
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, nodeHints: ['node-b'] },
      { ep: '10.0.0.1:80', ready: true, nodeHints: ['node-c'] },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    topology: '',
  },
  {
    name: 'PreferSameNode with externalTrafficPolicy Local: the local set ignores hints',
    serviceInfo: { externalPolicyLocal: true, nodePort: 8080 },
    endpoints: [
      { ep: '10.0.0.0:80', ready: true, isLocal: true, nodeHints: ['node-b'] },
      { ep: '10.0.0.1:80', ready: true, nodeHints: [TEST_NODE] },
    ],
    clusterEndpoints: ['10.0.0.1:80'],
    localEndpoints: ['10.0.0.0:80'],
    allEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    topology: 'PreferSameNode',
  },
  {
    name: 'PreferSameNode: no ready endpoint: serving-and-terminating ones anywhere, no topology',
    serviceInfo: {},
    endpoints: [
      { ep: '10.0.0.0:80', ready: false, serving: true, terminating: true, nodeHints: ['node-b'] },
      { ep: '10.0.0.1:80', ready: false, serving: true, terminating: true, nodeHints: [TEST_NODE] },
    ],
    clusterEndpoints: ['10.0.0.0:80', '10.0.0.1:80'],
    topology: '',
  },
];

type CaseEndpoint = EndpointFacts & { ep: string };

function caseEndpoint(e: TableEndpoint): CaseEndpoint {
  const out: CaseEndpoint = { ep: e.ep, ready: e.ready ?? false, serving: e.serving ?? false, terminating: e.terminating ?? false };
  if (e.isLocal) out.nodeName = TEST_NODE;
  if (e.zoneHints || e.nodeHints) out.hints = { forZones: e.zoneHints ?? [], forNodes: e.nodeHints ?? [] };
  return out;
}

function casePolicy(c: CategorizeCase): ServicePortPolicy {
  return {
    externallyAccessible: (c.serviceInfo.nodePort ?? 0) !== 0,
    externalPolicyLocal: c.serviceInfo.externalPolicyLocal ?? false,
    internalPolicyLocal: c.serviceInfo.internalPolicyLocal ?? false,
  };
}

/** kube-proxy's expectation for the union: the only set used, or allEndpoints. */
function expectedAll(c: CategorizeCase): string[] {
  if (c.clusterEndpoints && !c.localEndpoints) return c.clusterEndpoints;
  if (c.localEndpoints && !c.clusterEndpoints) return c.localEndpoints;
  return c.allEndpoints ?? [];
}

const names = (eps: CaseEndpoint[] | undefined) => (eps ? eps.map((e) => e.ep).sort() : undefined);
const sorted = (xs: string[] | undefined) => (xs ? [...xs].sort() : undefined);

describe('categorizeEndpoints: kube-proxy TestCategorizeEndpoints', () => {
  for (const c of categorizeCases) {
    it(c.name, () => {
      const got = categorizeEndpoints(c.endpoints.map(caseEndpoint), casePolicy(c), TEST_NODE, c.nodeLabels);
      assert.deepEqual(names(got.clusterEndpoints), sorted(c.clusterEndpoints), 'cluster endpoints');
      assert.deepEqual(names(got.localEndpoints), sorted(c.localEndpoints), 'local endpoints');
      const all = expectedAll(c);
      assert.deepEqual(names(got.allReachableEndpoints), sorted(all), 'all reachable endpoints');
      assert.equal(got.hasAnyEndpoints, all.length > 0 || (c.onlyRemoteEndpoints ?? false), 'hasAnyEndpoints');
      if (c.topology !== undefined) assert.equal(got.topology, c.topology);
    });
  }
});

describe('translateState: the TestCategorizeEndpoints table through a whole Service', () => {
  // Each case as a Service (NodePort when the table gives a node port) with
  // one slice; the backends' inCluster and inLocal must be the sets. The
  // old hints-annotation cases carry the annotation on the Service: today
  // it changes nothing.
  for (const c of categorizeCases) {
    it(c.name, () => {
      const nodePort = c.serviceInfo.nodePort;
      const service = svc('ns1', 'svc1', {
        type: nodePort ? 'NodePort' : 'ClusterIP',
        ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 80, ...(nodePort ? { nodePort } : {}) }],
        externalTrafficPolicy: c.serviceInfo.externalPolicyLocal ? 'Local' : 'Cluster',
        internalTrafficPolicy: c.serviceInfo.internalPolicyLocal ? 'Local' : 'Cluster',
        annotations: /annotation/i.test(c.name) ? { 'service.kubernetes.io/topology-mode': 'disabled' } : {},
      });
      const endpoints: EndpointModel[] = c.endpoints.map((e) => {
        const { ep: _ep, ...facts } = caseEndpoint(e);
        return { addresses: [e.ep.split(':')[0]], ...facts };
      });
      const r = translateState(state([service], [slice('ns1', 'svc1-1', 'svc1', endpoints, [{ name: '', protocol: 'TCP', port: 80 }])]), {
        name: TEST_NODE,
        addresses: [TEST_NODE_IP],
        labels: c.nodeLabels,
      });
      const d = r.services[0];
      const inSet = (flag: 'inCluster' | 'inLocal') => d.backends.filter((b) => b[flag]).map((b) => `${b.addr}:${b.port}`).sort();
      assert.deepEqual(inSet('inCluster'), sorted(c.clusterEndpoints ?? []));
      assert.deepEqual(inSet('inLocal'), sorted(c.localEndpoints ?? []));
      assert.equal(d.usesCluster, c.clusterEndpoints !== undefined);
      assert.equal(d.usesLocal, c.localEndpoints !== undefined);
      assert.equal(d.hasAnyEndpoints, expectedAll(c).length > 0 || (c.onlyRemoteEndpoints ?? false));
      if (c.topology !== undefined) assert.equal(d.topology, c.topology);
    });
  }
});

describe('topologyModeFromHints', () => {
  const e = (ready: boolean, forZones: string[], forNodes: string[]): EndpointFacts => ({ ready, serving: ready, terminating: false, hints: { forZones, forNodes } });
  const cases: Array<[string, EndpointFacts[], string, string, string]> = [
    ['no endpoints', [], 'n1', 'a', ''],
    ['only unready endpoints, all hinted for here', [e(false, ['a'], ['n1'])], 'n1', 'a', ''],
    ['node hints, one for this node', [e(true, ['b'], ['n1']), e(true, ['b'], ['n2'])], 'n1', 'a', 'PreferSameNode'],
    ['empty node-hint lists count as missing', [e(true, ['a'], []), e(true, ['a'], ['n1'])], 'n1', 'a', 'PreferSameZone'],
    ['zone hints, none for this zone', [e(true, ['b'], []), e(true, ['c'], [])], 'n1', 'a', ''],
    ['zone hint for the empty zone matches a node without a zone label (as kube-proxy)', [e(true, [''], [])], 'n1', '', 'PreferSameZone'],
  ];
  for (const [name, eps, node, zone, want] of cases) it(name, () => assert.equal(topologyModeFromHints(eps, node, zone), want));
});

// ---------------------------------------------------------------------------
// Which set each frontend uses

describe('externalSet and internalSet: the set each frontend\'s new flows choose from', () => {
  const cases: Array<[string, Parameters<typeof externalSet>[0], string, 'Cluster' | 'Local', 'Cluster' | 'Local', string | undefined, string]> = [
    ['ClusterIP, iTP Cluster', 'ClusterIP', '172.30.0.41', 'Local', 'Cluster', undefined, 'cluster'],
    ['ClusterIP, iTP Local (eTP never applies)', 'ClusterIP', '172.30.0.41', 'Local', 'Local', undefined, 'local'],
    ['LoadBalancer, eTP Local, iTP Local', 'LoadBalancer', '1.2.3.4', 'Local', 'Local', 'local', 'cluster'],
    ['LoadBalancer, eTP Cluster', 'LoadBalancer', '1.2.3.4', 'Cluster', 'Local', 'cluster', 'cluster'],
    ['ExternalIP, eTP Local', 'ExternalIP', '192.168.99.11', 'Local', 'Cluster', 'local', 'cluster'],
    ['NodePort on a node address, eTP Local', 'NodePort', TEST_NODE_IP, 'Local', 'Cluster', 'local', 'cluster'],
    ['NodePort on loopback, eTP Local: internal only, cluster set', 'NodePort', '127.0.0.1', 'Local', 'Local', undefined, 'cluster'],
  ];
  for (const [name, kind, addr, eTP, iTP, external, internal] of cases) {
    it(name, () => {
      const policies = { externalTrafficPolicy: eTP, internalTrafficPolicy: iTP };
      assert.equal(externalSet(kind, addr, policies), external);
      assert.equal(internalSet(kind, policies), internal);
    });
  }
});

// ---------------------------------------------------------------------------
// Packet-flow tables of nftables/iptables proxier_test.go, as sets

/** A ClusterIP Service on 172.30.1.1 with one unnamed port 80 -> 80/TCP. */
function svc(namespace: string, name: string, over: Partial<ServiceModel> = {}): ServiceModel {
  return serviceModel({ namespace, name, clusterIPs: ['172.30.1.1'], ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 80 }], ...over });
}

function slice(namespace: string, name: string, serviceName: string, endpoints: EndpointModel[], ports: EndpointSliceModel['ports']): EndpointSliceModel {
  return { namespace, name, serviceName, addressType: 'IPv4', ports, endpoints };
}

/** An endpoint with kube-proxy's API defaults: ready unless said otherwise, serving = ready. */
function ep(addr: string, nodeName: string | undefined, cond: { ready?: boolean; serving?: boolean; terminating?: boolean } = {}): EndpointModel {
  const ready = cond.ready ?? true;
  const e: EndpointModel = { addresses: [addr], ready, serving: cond.serving ?? ready, terminating: cond.terminating ?? false };
  if (nodeName !== undefined) e.nodeName = nodeName;
  return e;
}

const NODE: NodeInfo = { name: TEST_NODE, addresses: [TEST_NODE_IP] };
const POD = 'pod';
const HOST = 'node';
const EXTERNAL = 'external';
type Source = typeof POD | typeof HOST | typeof EXTERNAL;

/**
 * What a new flow from `source` to `addr:port` gets, in the words of
 * kube-proxy's packet-flow tests: the endpoints of the set the frontend's
 * external (outside sources) or internal (pods, the node) flows choose
 * from; REJECT when the service has no usable endpoint anywhere; DROP when
 * that set is empty; '' when xlb serves no such frontend for that source.
 */
function flow(services: DesiredService[], source: Source, addr: string, port: number): string {
  for (const d of services) {
    const f = d.frontends.find((x) => x.addr === addr && x.port === port);
    if (!f) continue;
    const set = source === EXTERNAL ? f.external : f.internal;
    if (set === undefined) return '';
    if (!d.hasAnyEndpoints) return 'REJECT';
    const eps = d.backends.filter((b) => (set === 'cluster' ? b.inCluster : b.inLocal)).map((b) => `${b.addr}:${b.port}`);
    return eps.length ? eps.join(', ') : 'DROP';
  }
  return '';
}

interface FlowTest {
  name: string;
  source: Source;
  dest: string;
  port: number;
  output: string;
}

function runFlows(services: DesiredService[], tests: FlowTest[]): void {
  for (const t of tests) assert.equal(flow(services, t.source, t.dest, t.port), t.output, t.name);
}

const noEndpointsAfterDelete = (tests: FlowTest[]): FlowTest[] => tests.map((t) => ({ ...t, name: `${t.name} after endpoints deleted`, output: 'REJECT' }));

describe('TestInternalTrafficPolicy (pod to ClusterIP)', () => {
  const cases: Array<{ name: string; iTP: 'Cluster' | 'Local'; endpoints: Array<[string, string]>; output: string }> = [
    { name: 'internalTrafficPolicy is cluster', iTP: 'Cluster', endpoints: [['10.0.1.1', TEST_NODE], ['10.0.1.2', 'node1'], ['10.0.1.3', 'node2']], output: '10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80' },
    { name: 'internalTrafficPolicy is local and there is one local endpoint', iTP: 'Local', endpoints: [['10.0.1.1', TEST_NODE], ['10.0.1.2', 'node1'], ['10.0.1.3', 'node2']], output: '10.0.1.1:80' },
    { name: 'internalTrafficPolicy is local and there are multiple local endpoints', iTP: 'Local', endpoints: [['10.0.1.1', TEST_NODE], ['10.0.1.2', TEST_NODE], ['10.0.1.3', 'node2']], output: '10.0.1.1:80, 10.0.1.2:80' },
    { name: 'internalTrafficPolicy is local and there are no local endpoints', iTP: 'Local', endpoints: [['10.0.1.1', 'node0'], ['10.0.1.2', 'node1'], ['10.0.1.3', 'node2']], output: 'DROP' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const service = svc('ns1', 'svc1', { internalTrafficPolicy: c.iTP });
      const eps = c.endpoints.map(([a, n]) => ep(a, n));
      const tests: FlowTest[] = [{ name: 'pod to ClusterIP', source: POD, dest: '172.30.1.1', port: 80, output: c.output }];
      runFlows(translateState(state([service], [slice('ns1', 'svc1-1', 'svc1', eps, [{ name: '', protocol: 'TCP', port: 80 }])]), NODE).services, tests);
      runFlows(translateState(state([service], []), NODE).services, noEndpointsAfterDelete(tests));
    });
  }
});

/** The LoadBalancer of the TestTerminatingEndpoints* tables (no node port). */
const terminatingService = (eTP: 'Cluster' | 'Local') =>
  svc('ns1', 'svc1', { type: 'LoadBalancer', externalTrafficPolicy: eTP, loadBalancerIPs: ['1.2.3.4'], healthCheckNodePort: 30000 });
const EXT_CLIENT = '203.0.113.2';

function terminatingCases(
  eTP: 'Cluster' | 'Local',
  cases: Array<{ name: string; endpoints: EndpointModel[]; podToClusterIP: string; externalToLB: string }>,
): void {
  for (const c of cases) {
    it(c.name, () => {
      const service = terminatingService(eTP);
      const tests: FlowTest[] = [
        { name: 'pod to clusterIP', source: POD, dest: '172.30.1.1', port: 80, output: c.podToClusterIP },
        { name: 'external to LB', source: EXTERNAL, dest: '1.2.3.4', port: 80, output: c.externalToLB },
      ];
      runFlows(translateState(state([service], [slice('ns1', 'svc1-1', 'svc1', c.endpoints, [{ name: '', protocol: 'TCP', port: 80 }])]), NODE).services, tests);
      runFlows(translateState(state([service], []), NODE).services, noEndpointsAfterDelete(tests));
    });
  }
}

const R = { ready: true, serving: true, terminating: false };
const ST = { ready: false, serving: true, terminating: true };
const T = { ready: false, serving: false, terminating: true };

describe('TestTerminatingEndpointsTrafficPolicyLocal (LoadBalancer, externalTrafficPolicy Local)', () => {
  terminatingCases('Local', [
    {
      name: 'ready endpoints exist',
      endpoints: [ep('10.0.1.1', TEST_NODE, R), ep('10.0.1.2', TEST_NODE, R), ep('10.0.1.3', TEST_NODE, ST), ep('10.0.1.4', TEST_NODE, T), ep('10.0.1.5', 'node-1', R)],
      podToClusterIP: '10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80',
      externalToLB: '10.0.1.1:80, 10.0.1.2:80',
    },
    {
      name: 'only terminating endpoints exist',
      endpoints: [ep('10.0.1.2', TEST_NODE, ST), ep('10.0.1.3', TEST_NODE, ST), ep('10.0.1.4', TEST_NODE, T), ep('10.0.1.5', 'node-1', R)],
      podToClusterIP: '10.0.1.5:80',
      externalToLB: '10.0.1.2:80, 10.0.1.3:80',
    },
    { name: 'terminating endpoints on remote node', endpoints: [ep('10.0.1.5', 'node-1', ST)], podToClusterIP: '10.0.1.5:80', externalToLB: 'DROP' },
    {
      // The table lists 10.0.1.5 twice (local and remote); xlb keeps one backend per address and port.
      name: 'no usable endpoints on any node',
      endpoints: [ep('10.0.1.5', TEST_NODE, T), ep('10.0.1.5', 'node-1', T)],
      podToClusterIP: 'REJECT',
      externalToLB: 'REJECT',
    },
  ]);
});

describe('TestTerminatingEndpointsTrafficPolicyCluster (LoadBalancer, externalTrafficPolicy Cluster)', () => {
  terminatingCases('Cluster', [
    {
      name: 'ready endpoints exist',
      endpoints: [ep('10.0.1.1', TEST_NODE, R), ep('10.0.1.2', TEST_NODE, R), ep('10.0.1.3', 'another-node', ST), ep('10.0.1.4', 'another-node', T), ep('10.0.1.5', 'another-node', R)],
      podToClusterIP: '10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80',
      externalToLB: '10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80',
    },
    {
      name: 'only terminating endpoints exist',
      endpoints: [ep('10.0.1.2', TEST_NODE, ST), ep('10.0.1.3', TEST_NODE, ST), ep('10.0.1.4', 'another-node', T), ep('10.0.1.5', 'another-node', ST)],
      podToClusterIP: '10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80',
      externalToLB: '10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80',
    },
    { name: 'terminating endpoints on remote node', endpoints: [ep('10.0.1.5', 'node-1', ST)], podToClusterIP: '10.0.1.5:80', externalToLB: '10.0.1.5:80' },
    { name: 'no usable endpoints on any node', endpoints: [ep('10.0.1.5', TEST_NODE, T), ep('10.0.1.5', 'node-1', T)], podToClusterIP: 'REJECT', externalToLB: 'REJECT' },
  ]);
});

/** The Service of TestExternalTrafficPolicyLocal / ...Cluster: every kind of frontend. */
function allFrontendsService(eTP: 'Cluster' | 'Local'): ServiceModel {
  return svc('ns1', 'svc1', {
    type: 'LoadBalancer',
    externalTrafficPolicy: eTP,
    clusterIPs: ['172.30.0.41'],
    externalIPs: ['192.168.99.11'],
    loadBalancerIPs: ['1.2.3.4'],
    ports: [{ name: 'p80', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 3001 }],
    healthCheckNodePort: 30000,
  });
}
const twoEndpoints = [slice('ns1', 'svc1-1', 'svc1', [ep('10.180.0.1', undefined), ep('10.180.2.1', TEST_NODE)], [{ name: 'p80', protocol: 'TCP', port: 80 }])];
const BOTH = '10.180.0.1:80, 10.180.2.1:80';

describe('TestExternalTrafficPolicyLocal: outside traffic to local endpoints only, inside traffic to all', () => {
  it('every frontend', () => {
    runFlows(translateState(state([allFrontendsService('Local')], twoEndpoints), NODE).services, [
      { name: 'pod to cluster IP hits both endpoints', source: POD, dest: '172.30.0.41', port: 80, output: BOTH },
      { name: 'pod to external IP hits both endpoints', source: POD, dest: '192.168.99.11', port: 80, output: BOTH },
      { name: 'external to external IP hits only local endpoint', source: EXTERNAL, dest: '192.168.99.11', port: 80, output: '10.180.2.1:80' },
      { name: 'pod to LB IP hits both endpoints', source: POD, dest: '1.2.3.4', port: 80, output: BOTH },
      { name: 'external to LB IP hits only local endpoint', source: EXTERNAL, dest: '1.2.3.4', port: 80, output: '10.180.2.1:80' },
      { name: 'pod to NodePort hits both endpoints', source: POD, dest: TEST_NODE_IP, port: 3001, output: BOTH },
      { name: 'external to NodePort hits only local endpoint', source: EXTERNAL, dest: TEST_NODE_IP, port: 3001, output: '10.180.2.1:80' },
    ]);
  });
});

describe('TestExternalTrafficPolicyCluster: every source to all endpoints', () => {
  it('every frontend', () => {
    runFlows(translateState(state([allFrontendsService('Cluster')], twoEndpoints), NODE).services, [
      { name: 'pod to cluster IP hits both endpoints', source: POD, dest: '172.30.0.41', port: 80, output: BOTH },
      { name: 'pod to external IP hits both endpoints', source: POD, dest: '192.168.99.11', port: 80, output: BOTH },
      { name: 'external to external IP hits both endpoints', source: EXTERNAL, dest: '192.168.99.11', port: 80, output: BOTH },
      { name: 'pod to LB IP hits both endpoints', source: POD, dest: '1.2.3.4', port: 80, output: BOTH },
      { name: 'external to LB IP hits both endpoints', source: EXTERNAL, dest: '1.2.3.4', port: 80, output: BOTH },
      { name: 'pod to NodePort hits both endpoints', source: POD, dest: TEST_NODE_IP, port: 3001, output: BOTH },
      { name: 'external to NodePort hits both endpoints', source: EXTERNAL, dest: TEST_NODE_IP, port: 3001, output: BOTH },
    ]);
  });
});

describe('TestNoEndpointsReject: no endpoints: every frontend rejects', () => {
  it('every frontend', () => {
    runFlows(translateState(state([allFrontendsService('Cluster')], []), NODE).services, [
      { name: 'pod to cluster IP with no endpoints', source: POD, dest: '172.30.0.41', port: 80, output: 'REJECT' },
      { name: 'external to external IP with no endpoints', source: EXTERNAL, dest: '192.168.99.11', port: 80, output: 'REJECT' },
      { name: 'pod to NodePort with no endpoints', source: POD, dest: TEST_NODE_IP, port: 3001, output: 'REJECT' },
      { name: 'external to NodePort with no endpoints', source: EXTERNAL, dest: TEST_NODE_IP, port: 3001, output: 'REJECT' },
      { name: 'pod to LoadBalancer IP with no endpoints', source: POD, dest: '1.2.3.4', port: 80, output: 'REJECT' },
      { name: 'external to LoadBalancer IP with no endpoints', source: EXTERNAL, dest: '1.2.3.4', port: 80, output: 'REJECT' },
    ]);
  });
});

describe('TestInternalExternalMasquerade (base case): which endpoints, for each source and destination', () => {
  const lb = (ns: string, n: number, over: Partial<ServiceModel>) =>
    svc(ns, `svc${n}`, {
      type: 'LoadBalancer',
      clusterIPs: [`172.30.0.4${n}`],
      ports: [{ name: 'p80', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 3000 + n }],
      healthCheckNodePort: 30000 + n,
      ...over,
    });
  const services = [
    lb('ns1', 1, { loadBalancerIPs: ['1.2.3.4'] }),
    lb('ns2', 2, { loadBalancerIPs: ['5.6.7.8'], externalTrafficPolicy: 'Local' }),
    lb('ns3', 3, { loadBalancerIPs: ['9.10.11.12'], internalTrafficPolicy: 'Local' }),
  ];
  const slices = [1, 2, 3].map((n) =>
    slice(`ns${n}`, `svc${n}-1`, `svc${n}`, [ep(`10.180.0.${n}`, TEST_NODE), ep(`10.180.1.${n}`, 'remote')], [{ name: 'p80', protocol: 'TCP', port: 80 }]),
  );
  const all = (n: number) => `10.180.0.${n}:80, 10.180.1.${n}:80`;
  const local = (n: number) => `10.180.0.${n}:80`;
  const tests: FlowTest[] = [
    { name: 'pod to ClusterIP', source: POD, dest: '172.30.0.41', port: 80, output: all(1) },
    { name: 'pod to NodePort', source: POD, dest: TEST_NODE_IP, port: 3001, output: all(1) },
    { name: 'pod to LB', source: POD, dest: '1.2.3.4', port: 80, output: all(1) },
    { name: 'node to ClusterIP', source: HOST, dest: '172.30.0.41', port: 80, output: all(1) },
    { name: 'node to NodePort', source: HOST, dest: TEST_NODE_IP, port: 3001, output: all(1) },
    { name: 'node to LB', source: HOST, dest: '1.2.3.4', port: 80, output: all(1) },
    { name: 'external to NodePort', source: EXTERNAL, dest: TEST_NODE_IP, port: 3001, output: all(1) },
    { name: 'external to LB', source: EXTERNAL, dest: '1.2.3.4', port: 80, output: all(1) },
    { name: 'pod to ClusterIP with eTP:Local', source: POD, dest: '172.30.0.42', port: 80, output: all(2) },
    { name: 'pod to NodePort with eTP:Local', source: POD, dest: TEST_NODE_IP, port: 3002, output: all(2) },
    { name: 'pod to LB with eTP:Local', source: POD, dest: '5.6.7.8', port: 80, output: all(2) },
    { name: 'node to ClusterIP with eTP:Local', source: HOST, dest: '172.30.0.42', port: 80, output: all(2) },
    // The table's case sends to 3001 (svc1's port) and expects svc1's endpoints; this is the case it means.
    { name: 'node to NodePort with eTP:Local', source: HOST, dest: TEST_NODE_IP, port: 3002, output: all(2) },
    { name: 'node to LB with eTP:Local', source: HOST, dest: '5.6.7.8', port: 80, output: all(2) },
    { name: 'external to NodePort with eTP:Local', source: EXTERNAL, dest: TEST_NODE_IP, port: 3002, output: local(2) },
    { name: 'external to LB with eTP:Local', source: EXTERNAL, dest: '5.6.7.8', port: 80, output: local(2) },
    { name: 'pod to ClusterIP with iTP:Local', source: POD, dest: '172.30.0.43', port: 80, output: local(3) },
    { name: 'pod to NodePort with iTP:Local', source: POD, dest: TEST_NODE_IP, port: 3003, output: all(3) },
    { name: 'pod to LB with iTP:Local', source: POD, dest: '9.10.11.12', port: 80, output: all(3) },
    { name: 'node to ClusterIP with iTP:Local', source: HOST, dest: '172.30.0.43', port: 80, output: local(3) },
    { name: 'node to NodePort with iTP:Local', source: HOST, dest: TEST_NODE_IP, port: 3003, output: all(3) },
    { name: 'node to LB with iTP:Local', source: HOST, dest: '9.10.11.12', port: 80, output: all(3) },
    { name: 'external to NodePort with iTP:Local', source: EXTERNAL, dest: TEST_NODE_IP, port: 3003, output: all(3) },
    { name: 'external to LB with iTP:Local', source: EXTERNAL, dest: '9.10.11.12', port: 80, output: all(3) },
    // kube-proxy also routes outside traffic that reaches a cluster IP (through
    // the internal chain); xlb's cluster IP frontends have no external set:
    // its XDP program does not serve them.
    { name: 'external to ClusterIP (not served from outside by xlb)', source: EXTERNAL, dest: '172.30.0.41', port: 80, output: '' },
    { name: 'external to ClusterIP with iTP:Local (not served from outside by xlb)', source: EXTERNAL, dest: '172.30.0.43', port: 80, output: '' },
  ];
  for (const t of tests) it(t.name, () => runFlows(translateState(state(services, slices), NODE).services, [t]));
});

describe('TestOnlyLocalNodePorts: NodePort with externalTrafficPolicy Local', () => {
  const service = svc('ns1', 'svc1', {
    type: 'NodePort',
    clusterIPs: ['172.30.0.41'],
    externalTrafficPolicy: 'Local',
    ports: [{ name: 'p80', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 3001 }],
  });
  it('every source', () => {
    runFlows(translateState(state([service], twoEndpoints), NODE).services, [
      { name: 'pod to cluster IP hit both endpoints', source: POD, dest: '172.30.0.41', port: 80, output: BOTH },
      { name: 'external to NodePort hits only local endpoint', source: EXTERNAL, dest: TEST_NODE_IP, port: 3001, output: '10.180.2.1:80' },
      { name: 'pod to NodePort hits both endpoints', source: POD, dest: TEST_NODE_IP, port: 3001, output: BOTH },
      // The table turns --iptables-localhost-nodeports off ("doesn't work");
      // with kube-proxy's default (TestNodePorts: "localhost to nodePort gets
      // masqueraded"), as in xlb, localhost reaches every endpoint.
      { name: 'localhost to NodePort hits both endpoints', source: HOST, dest: '127.0.0.1', port: 3001, output: BOTH },
      { name: 'nothing from outside on loopback', source: EXTERNAL, dest: '127.0.0.1', port: 3001, output: '' },
    ]);
  });
});

describe('TestHealthCheckNodePort and TestBuildServiceMapAddRemove: health check node ports', () => {
  it('only LoadBalancer Services with externalTrafficPolicy Local carry theirs', () => {
    const base = { type: 'LoadBalancer' as const, ports: [{ name: 'p80', protocol: 'TCP' as const, port: 80, targetPort: 80, nodePort: 3000 }] };
    const r = translateState(
      state(
        [
          svc('ns1', 'valid-svc1', { ...base, clusterIPs: ['10.20.30.41'], externalTrafficPolicy: 'Local', healthCheckNodePort: 30000 }),
          svc('ns1', 'valid-svc2', { ...base, clusterIPs: ['10.20.30.42'], ports: [{ ...base.ports[0], nodePort: 3002 }], externalTrafficPolicy: 'Local', healthCheckNodePort: 30001 }),
          // "make svc3 invalid by setting external traffic policy to cluster"
          svc('ns1', 'invalid-svc3', { ...base, clusterIPs: ['10.20.30.43'], ports: [{ ...base.ports[0], nodePort: 3003 }], externalTrafficPolicy: 'Cluster', healthCheckNodePort: 30002 }),
          svc('ns1', 'node-port', { type: 'NodePort', clusterIPs: ['10.20.30.44'], ports: [{ ...base.ports[0], nodePort: 3004 }], externalTrafficPolicy: 'Local', healthCheckNodePort: 30003 }),
        ],
        [],
      ),
      NODE,
    );
    assert.deepEqual(
      r.services.map((d) => `${d.name} ${d.healthCheckNodePort ?? '-'}`),
      ['invalid-svc3 -', 'node-port -', 'valid-svc1 30000', 'valid-svc2 30001'],
    );
  });
});

describe('Services that are not served (TestBuildServiceMapServiceHeadless, ...TypeExternalName, the informers\' label selector)', () => {
  const cases: Array<{ name: string; service: ServiceModel; field: string }> = [
    { name: 'headless', service: svc('somewhere-else', 'headless', { headless: true, clusterIPs: [], ports: [{ name: 'rpc', protocol: 'UDP', port: 1234, targetPort: 0 }] }), field: 'spec.clusterIP' },
    { name: 'headless-without-port', service: svc('somewhere-else', 'headless-without-port', { headless: true, clusterIPs: [], ports: [] }), field: 'spec.clusterIP' },
    {
      name: 'external-name (its cluster IP "should be ignored")',
      service: svc('somewhere-else', 'external-name', { type: 'ExternalName', clusterIPs: ['172.30.55.4'], ports: [{ name: 'blah', protocol: 'UDP', port: 1235, targetPort: 5321 }] }),
      field: 'spec.type',
    },
    {
      name: 'labelled with another proxy\'s name',
      service: svc('ns1', 'other-proxy', { labels: { 'service.kubernetes.io/service-proxy-name': 'foo-bar' } }),
      field: 'metadata.labels["service.kubernetes.io/service-proxy-name"]',
    },
    {
      name: 'labelled headless',
      service: svc('ns1', 'labelled', { labels: { 'service.kubernetes.io/headless': '' } }),
      field: 'metadata.labels["service.kubernetes.io/headless"]',
    },
  ];
  for (const c of cases) {
    it(`${c.name}: no port, one issue naming ${c.field}`, () => {
      const slices = [slice(c.service.namespace, `${c.service.name}-1`, c.service.name, [ep('10.0.0.1', TEST_NODE)], [{ name: 'rpc', protocol: 'UDP', port: 1234 }])];
      const r = translateState(state([c.service], slices), NODE);
      assert.deepEqual(r.services, []);
      assert.deepEqual(r.issues.map((i) => `${i.object} ${i.field}`), [`Service ${c.service.namespace}/${c.service.name} ${c.field}`]);
      assert.deepEqual(skipIssue(c.service), r.issues[0]);
    });
  }

  it('a served Service has no skip issue', () => {
    assert.equal(skipIssue(svc('ns1', 'svc1')), undefined);
  });
});

// ---------------------------------------------------------------------------
// Two Services claiming one frontend (issue 21)

describe('frontend conflicts: the older Service keeps the frontend', () => {
  const lb = (name: string, createdAt?: string) =>
    svc('default', name, { type: 'LoadBalancer', clusterIPs: [name === 'zeta' ? '172.30.1.1' : '172.30.1.2'], loadBalancerIPs: ['203.0.113.10'], ...(createdAt ? { createdAt } : {}) });
  const owner = (services: ServiceModel[]) => {
    const r = translateState(state(services, []), NODE);
    const holder = r.services.find((s) => s.frontends.some((f) => f.addr === '203.0.113.10'))!;
    return { holder: holder.key.split(':')[0], issues: r.issues };
  };

  it('a Service created later does not take the VIP over, even when its name sorts first', () => {
    const r = owner([lb('zeta', '2026-01-01T00:00:00Z'), lb('alpha', '2026-06-01T00:00:00Z')]);
    assert.equal(r.holder, 'default/zeta');
    assert.equal(r.issues.length, 1);
    assert.match(`${r.issues[0].object} ${r.issues[0].field}: ${r.issues[0].message}`, /^Service default\/alpha status\.loadBalancer\.ingress: frontend 203\.0\.113\.10:80\/TCP .* claimed by Service default\/zeta .*created first/);
  });

  it('created at the same instant (time zones aside), or without creation times, the name decides', () => {
    assert.equal(owner([lb('zeta', '2026-01-01T02:00:00+02:00'), lb('alpha', '2026-01-01T00:00:00Z')]).holder, 'default/alpha');
    assert.equal(owner([lb('zeta'), lb('alpha')]).holder, 'default/alpha');
  });

  it('a Service with a creation time comes before one without', () => {
    assert.equal(owner([lb('zeta', '2026-01-01T00:00:00Z'), lb('alpha')]).holder, 'default/zeta');
  });
});

/**
 * src/services/translate: which frontends and backends a node programs for
 * each service port (kube-proxy's rules, see rules.test.ts for the tables),
 * conflicts, skips, ordering, and the incremental Translator's own contract
 * (change hints, node changes, reuse of unchanged objects).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ipToU32 } from '../../src/util/ip.js';
import { translate, Translator, type DesiredService } from '../../src/services/translate.js';
import type { ClusterState, EndpointModel, EndpointSliceModel, NodeInfo, ServiceModel } from '../../src/model/types.js';
import { prng } from '../helpers/prng.js';
import { clusterState as state, serviceModel } from '../helpers/model.js';

const NODE: NodeInfo = { name: 'node1', addresses: ['198.18.0.11', '198.18.0.12'] };

/** A ClusterIP Service `default/name` on 198.19.0.10 with port http 80 -> 8080/TCP. */
function svc(name: string, over: Partial<ServiceModel> = {}): ServiceModel {
  return serviceModel({ namespace: 'default', name, clusterIPs: ['198.19.0.10'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }], ...over });
}

function ep(addr: string, over: Partial<EndpointModel> = {}): EndpointModel {
  return { addresses: [addr], ready: true, serving: true, terminating: false, ...over };
}

function slice(name: string, service: string, endpoints: EndpointModel[], over: Partial<EndpointSliceModel> = {}): EndpointSliceModel {
  return {
    namespace: 'default',
    name,
    serviceName: service,
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    endpoints,
    ...over,
  };
}

const frontends = (s: DesiredService | undefined) => (s?.frontends ?? []).map((f) => `${f.kind} ${f.addr}:${f.port}/${f.protocol}`);
/** Each frontend with the sets its external and internal new flows choose from. */
const frontendSets = (s: DesiredService | undefined) =>
  (s?.frontends ?? []).map((f) => `${f.kind} ${f.addr}:${f.port} external=${f.external ?? '-'} internal=${f.internal}`);
/** Each backend with its locality and the sets it is in. */
const backends = (s: DesiredService | undefined) =>
  (s?.backends ?? []).map((b) => `${b.name}${b.local ? ' local' : ''}${b.inCluster ? ' C' : ''}${b.inLocal ? ' L' : ''}`);

describe('translate: frontends', () => {
  const cases: Array<{ what: string; service: ServiceModel; want: string[]; issues?: unknown[] }> = [
    {
      what: 'ClusterIP service: only the cluster IP, recorded with kind ClusterIP',
      service: svc('a'),
      want: ['ClusterIP 198.19.0.10:80/TCP'],
    },
    {
      what: 'LoadBalancer: each VIP × port, each node address and loopback × nodePort, then the cluster IP',
      service: svc('a', {
        type: 'LoadBalancer',
        loadBalancerIPs: ['203.0.113.1', '203.0.113.2'],
        ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }],
      }),
      want: [
        'LoadBalancer 203.0.113.1:80/TCP',
        'LoadBalancer 203.0.113.2:80/TCP',
        'NodePort 198.18.0.11:30080/TCP',
        'NodePort 198.18.0.12:30080/TCP',
        'NodePort 127.0.0.1:30080/TCP',
        'ClusterIP 198.19.0.10:80/TCP',
      ],
    },
    {
      what: 'LoadBalancer without an allocated nodePort: no NodePort frontends',
      service: svc('a', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'] }),
      want: ['LoadBalancer 203.0.113.1:80/TCP', 'ClusterIP 198.19.0.10:80/TCP'],
    },
    {
      what: 'LoadBalancer with allocateLoadBalancerNodePorts false (no node port allocated): no NodePort frontends',
      service: svc('a', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'], allocateLoadBalancerNodePorts: false }),
      want: ['LoadBalancer 203.0.113.1:80/TCP', 'ClusterIP 198.19.0.10:80/TCP'],
    },
    {
      what: 'NodePort: node addresses × nodePort, no VIPs even if some are recorded',
      service: svc('a', {
        type: 'NodePort',
        loadBalancerIPs: ['203.0.113.1'],
        ports: [{ name: 'http', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 30053 }],
      }),
      want: ['NodePort 198.18.0.11:30053/UDP', 'NodePort 198.18.0.12:30053/UDP', 'NodePort 127.0.0.1:30053/UDP', 'ClusterIP 198.19.0.10:53/UDP'],
    },
    {
      what: 'ExternalIP: each external IP × port',
      service: svc('a', { externalIPs: ['203.0.113.5', '203.0.113.6'] }),
      want: ['ExternalIP 203.0.113.5:80/TCP', 'ExternalIP 203.0.113.6:80/TCP', 'ClusterIP 198.19.0.10:80/TCP'],
    },
    {
      what: 'IPv6 addresses of a dual-stack service are not frontends, and are reported as recorded, not served',
      service: svc('a', { type: 'LoadBalancer', clusterIPs: ['198.19.0.10', 'fd00::10'], loadBalancerIPs: ['203.0.113.1', '2001:db8::1'], externalIPs: ['2001:db8::2'] }),
      want: ['LoadBalancer 203.0.113.1:80/TCP', 'ClusterIP 198.19.0.10:80/TCP'],
      issues: [
        {
          object: 'Service default/a',
          field: 'spec.ipFamilies',
          message: "IPv6 addresses are recorded, not served (xlb's datapath serves IPv4 for now): spec.clusterIPs fd00::10, spec.externalIPs 2001:db8::2, status.loadBalancer.ingress 2001:db8::1",
        },
      ],
    },
    {
      what: 'a VIP that is also an external IP of the same port becomes one frontend',
      service: svc('a', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'], externalIPs: ['203.0.113.1'] }),
      want: ['LoadBalancer 203.0.113.1:80/TCP', 'ClusterIP 198.19.0.10:80/TCP'],
    },
  ];
  for (const c of cases) {
    it(c.what, () => {
      const r = translate(state([c.service]), NODE);
      assert.deepEqual(r.issues, c.issues ?? []);
      assert.equal(r.services.length, 1);
      assert.deepEqual(frontends(r.services[0]), c.want);
    });
  }

  it('one DesiredService per port, keyed namespace/name:portName (unnamed port gives a trailing colon)', () => {
    const r = translate(
      state([
        svc('multi', { ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 80 }, { name: 'dns', protocol: 'UDP', port: 53, targetPort: 53 }] }),
        svc('single', { clusterIPs: ['198.19.0.11'], ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 80 }] }),
      ]),
      NODE,
    );
    assert.deepEqual(
      r.services.map((s) => `${s.key} ${s.protocol}`),
      ['default/multi:dns UDP', 'default/multi:http TCP', 'default/single: TCP'],
    );
  });
});

describe('translate: frontends and the sets their new flows choose from', () => {
  const np = [{ name: 'http', protocol: 'TCP' as const, port: 80, targetPort: 8080, nodePort: 30080 }];
  const cases: Array<{ what: string; service: ServiceModel; want: string[] }> = [
    {
      what: 'ClusterIP, internalTrafficPolicy Cluster: internal = cluster set, no external',
      service: svc('a'),
      want: ['ClusterIP 198.19.0.10:80 external=- internal=cluster'],
    },
    {
      what: 'ClusterIP, internalTrafficPolicy Local: internal = local set',
      service: svc('a', { internalTrafficPolicy: 'Local' }),
      want: ['ClusterIP 198.19.0.10:80 external=- internal=local'],
    },
    {
      what: 'LoadBalancer, externalTrafficPolicy Cluster: every external frontend uses the cluster set both ways; loopback internal only',
      service: svc('a', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'], externalIPs: ['203.0.113.9'], ports: np }),
      want: [
        'LoadBalancer 203.0.113.1:80 external=cluster internal=cluster',
        'ExternalIP 203.0.113.9:80 external=cluster internal=cluster',
        'NodePort 198.18.0.11:30080 external=cluster internal=cluster',
        'NodePort 198.18.0.12:30080 external=cluster internal=cluster',
        'NodePort 127.0.0.1:30080 external=- internal=cluster',
        'ClusterIP 198.19.0.10:80 external=- internal=cluster',
      ],
    },
    {
      what: 'LoadBalancer, externalTrafficPolicy Local: outside traffic to the local set, pods and the node still to the cluster set',
      service: svc('a', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'], externalIPs: ['203.0.113.9'], ports: np, externalTrafficPolicy: 'Local' }),
      want: [
        'LoadBalancer 203.0.113.1:80 external=local internal=cluster',
        'ExternalIP 203.0.113.9:80 external=local internal=cluster',
        'NodePort 198.18.0.11:30080 external=local internal=cluster',
        'NodePort 198.18.0.12:30080 external=local internal=cluster',
        'NodePort 127.0.0.1:30080 external=- internal=cluster',
        'ClusterIP 198.19.0.10:80 external=- internal=cluster',
      ],
    },
    {
      what: 'NodePort, internalTrafficPolicy Local: only the cluster IP follows it',
      service: svc('a', { type: 'NodePort', ports: np, internalTrafficPolicy: 'Local' }),
      want: [
        'NodePort 198.18.0.11:30080 external=cluster internal=cluster',
        'NodePort 198.18.0.12:30080 external=cluster internal=cluster',
        'NodePort 127.0.0.1:30080 external=- internal=cluster',
        'ClusterIP 198.19.0.10:80 external=- internal=local',
      ],
    },
  ];
  for (const c of cases) {
    it(c.what, () => {
      const r = translate(state([c.service]), NODE);
      assert.deepEqual(frontendSets(r.services[0]), c.want);
    });
  }

  it('usesCluster and usesLocal follow the policies and whether the port is reachable from outside (kube-proxy UsesClusterEndpoints / UsesLocalEndpoints)', () => {
    const uses = (s: ServiceModel) => {
      const d = translate(state([s]), NODE).services[0];
      return `${d.usesCluster ? 'C' : '-'}${d.usesLocal ? 'L' : '-'}`;
    };
    assert.equal(uses(svc('a')), 'C-');
    assert.equal(uses(svc('a', { internalTrafficPolicy: 'Local' })), '-L');
    assert.equal(uses(svc('a', { externalTrafficPolicy: 'Local' })), 'C-', 'eTP ignored when not externally accessible');
    assert.equal(uses(svc('a', { externalTrafficPolicy: 'Local', externalIPs: ['203.0.113.9'] })), 'CL');
    assert.equal(uses(svc('a', { internalTrafficPolicy: 'Local', externalIPs: ['203.0.113.9'] })), 'CL');
    assert.equal(uses(svc('a', { internalTrafficPolicy: 'Local', externalIPs: ['2001:db8::9'] })), '-L', 'an IPv6 external IP does not make the IPv4 side reachable');
    assert.equal(uses(svc('a', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' })), 'C-', 'a LoadBalancer without VIP or node port is not reachable from outside');
  });

  it('healthCheckNodePort is carried for LoadBalancer with externalTrafficPolicy Local only; trafficDistribution as written', () => {
    const lb = (over: Partial<ServiceModel>) => translate(state([svc('a', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'], healthCheckNodePort: 30999, ...over })]), NODE).services[0];
    assert.equal(lb({ externalTrafficPolicy: 'Local' }).healthCheckNodePort, 30999);
    assert.equal(lb({}).healthCheckNodePort, undefined);
    assert.equal(lb({ trafficDistribution: 'PreferSameZone' }).trafficDistribution, 'PreferSameZone');
    assert.equal('trafficDistribution' in lb({}), false);
  });
});

describe('translate: skipped services and ports', () => {
  const cases: Array<{ what: string; service: ServiceModel; field: string; message: RegExp }> = [
    { what: 'headless service', service: svc('a', { headless: true, clusterIPs: [] }), field: 'spec.clusterIP', message: /headless/ },
    { what: 'ExternalName service', service: svc('a', { type: 'ExternalName', clusterIPs: [] }), field: 'spec.type', message: /ExternalName/ },
    {
      what: 'service labelled for another proxy',
      service: svc('a', { labels: { 'service.kubernetes.io/service-proxy-name': 'other' } }),
      field: 'metadata.labels["service.kubernetes.io/service-proxy-name"]',
      message: /another proxy \("other"\)/,
    },
    {
      what: 'service labelled headless',
      service: svc('a', { labels: { 'service.kubernetes.io/headless': '' } }),
      field: 'metadata.labels["service.kubernetes.io/headless"]',
      message: /labelled headless/,
    },
    { what: 'SCTP port', service: svc('a', { ports: [{ name: 'sig', protocol: 'SCTP', port: 3868, targetPort: 3868 }] }), field: 'spec.ports[0].protocol', message: /SCTP is not supported/ },
  ];
  for (const c of cases) {
    it(`${c.what}: no service port is programmed, and an issue says why`, () => {
      const r = translate(state([c.service], [slice('a-1', 'a', [ep('198.18.1.1')])]), NODE);
      assert.deepEqual(r.services, []);
      assert.equal(r.issues.length, 1);
      assert.equal(r.issues[0].object, 'Service default/a');
      assert.equal(r.issues[0].field, c.field);
      assert.match(r.issues[0].message, c.message);
    });
  }

  it('an SCTP port is skipped while the TCP port of the same service is programmed', () => {
    const r = translate(
      state([svc('a', { ports: [{ name: 'sig', protocol: 'SCTP', port: 3868, targetPort: 3868 }, { name: 'http', protocol: 'TCP', port: 80, targetPort: 80 }] })]),
      NODE,
    );
    assert.deepEqual(r.services.map((s) => s.key), ['default/a:http']);
    assert.equal(r.issues[0].field, 'spec.ports[0].protocol');
  });

  it('source ranges and ClientIP affinity are carried to the controller; IPv6 ranges are reported, not served', () => {
    const r = translate(
      state([svc('a', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'], loadBalancerSourceRanges: ['192.0.2.0/24', '2001:db8::/32'], sessionAffinity: 'ClientIP', sessionAffinityTimeoutSeconds: 60 })]),
      NODE,
    );
    assert.deepEqual(r.issues.map((i) => i.field), ['spec.loadBalancerSourceRanges']);
    assert.match(r.issues[0].message, /IPv6 ranges are recorded, not enforced/);
    assert.deepEqual(r.services[0].loadBalancerSourceRanges, ['192.0.2.0/24']);
    assert.equal(r.services[0].sessionAffinity, 'ClientIP');
    assert.equal(r.services[0].sessionAffinityTimeoutSeconds, 60);
  });
});

describe('translate: backends', () => {
  it('endpoints of the slices of the service, matched by port name and protocol, with the slice port', () => {
    const r = translate(
      state(
        [svc('web', { ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'web' }, { name: 'metrics', protocol: 'TCP', port: 9090, targetPort: 9090 }] })],
        [
          slice('web-1', 'web', [ep('198.18.1.2', { nodeName: 'node2', targetName: 'web-b' }), ep('198.18.1.1', { nodeName: 'node1', targetName: 'web-a' })], {
            ports: [
              { name: 'http', protocol: 'TCP', port: 8080 },
              { name: 'metrics', protocol: 'TCP', port: 9100 },
            ],
          }),
          // Same name, other protocol: not the port of this service.
          slice('web-2', 'web', [ep('198.18.1.3')], { ports: [{ name: 'http', protocol: 'UDP', port: 8080 }] }),
          // Another service's slice.
          slice('api-1', 'api', [ep('198.18.1.4')]),
          // IPv6 slice of the same service.
          slice('web-v6', 'web', [ep('fd00::5')], { addressType: 'IPv6' }),
        ],
      ),
      NODE,
    );
    const http = r.services.find((s) => s.key === 'default/web:http')!;
    assert.deepEqual(http.backends, [
      { addr: '198.18.1.1', port: 8080, protocol: 'TCP', nodeName: 'node1', local: true, ready: true, serving: true, terminating: false, inCluster: true, inLocal: false, weight: 1, name: '198.18.1.1:8080/TCP', targetName: 'web-a' },
      { addr: '198.18.1.2', port: 8080, protocol: 'TCP', nodeName: 'node2', local: false, ready: true, serving: true, terminating: false, inCluster: true, inLocal: false, weight: 1, name: '198.18.1.2:8080/TCP', targetName: 'web-b' },
    ]);
    assert.deepEqual(backends(r.services.find((s) => s.key === 'default/web:metrics')), ['198.18.1.1:9100/TCP local C', '198.18.1.2:9100/TCP C']);
  });

  it('endpoints of a slice without the service port are not backends', () => {
    const r = translate(state([svc('web')], [slice('web-1', 'web', [ep('198.18.1.1')], { ports: [{ name: 'other', protocol: 'TCP', port: 1 }] })]), NODE);
    assert.deepEqual(r.services[0].backends, []);
  });

  it('only the first address of an endpoint is used', () => {
    const r = translate(state([svc('web')], [slice('web-1', 'web', [{ ...ep('198.18.1.1'), addresses: ['198.18.1.1', '198.18.1.9'] }])]), NODE);
    assert.deepEqual(backends(r.services[0]), ['198.18.1.1:8080/TCP C']);
  });

  it('the same endpoint in two slices is one backend, the ready copy winning', () => {
    const r = translate(
      state([svc('web')], [slice('web-a', 'web', [ep('198.18.1.1', { ready: false, serving: false })]), slice('web-b', 'web', [ep('198.18.1.1'), ep('198.18.1.2')])]),
      NODE,
    );
    assert.deepEqual(backends(r.services[0]), ['198.18.1.1:8080/TCP C', '198.18.1.2:8080/TCP C']);
    assert.equal(r.services[0].backends[0].ready, true);
  });

  for (const n of [12, 70]) {
    it(`${n} endpoints in two slices, out of order and some in both: sorted by address, one backend each, the better copy winning`, () => {
      // 12 endpoints take the insertion sort, 70 the general one.
      const addrs = Array.from({ length: n }, (_, i) => `198.18.${i % 3}.${(i * 37) % 251}`);
      const inBoth = new Set(addrs.filter((_, i) => i % 5 === 0));
      const a = [...addrs].reverse().map((x) => ep(x, inBoth.has(x) ? { ready: false, serving: false } : {}));
      const b = addrs.filter((x) => inBoth.has(x)).map((x) => ep(x));
      const r = translate(state([svc('web')], [slice('web-a', 'web', a), slice('web-b', 'web', b)]), NODE);
      const want = [...addrs].sort((x, y) => ipToU32(x) - ipToU32(y)).map((x) => `${x}:8080/TCP C`);
      assert.deepEqual(backends(r.services[0]), want);
      assert.ok(r.services[0].backends.every((x) => x.ready), 'a not-ready copy beat a ready one');
    });
  }

  it('non-ready and terminating endpoints are listed with their flags but are in no set while one is ready', () => {
    const r = translate(
      state(
        [svc('web')],
        [
          slice('web-1', 'web', [
            ep('198.18.1.1'),
            ep('198.18.1.2', { ready: false, serving: true, terminating: true }),
            ep('198.18.1.3', { ready: false, serving: false, terminating: false }),
          ]),
        ],
      ),
      NODE,
    );
    assert.deepEqual(
      r.services[0].backends.map((b) => [b.addr, b.ready, b.serving, b.terminating, b.inCluster, b.inLocal]),
      [
        ['198.18.1.1', true, true, false, true, false],
        ['198.18.1.2', false, true, true, false, false],
        ['198.18.1.3', false, false, false, false, false],
      ],
    );
    assert.equal(r.services[0].hasAnyEndpoints, true);
  });

  it('the same endpoint in two slices, local in the losing copy only: locality and sets follow the winning copy', () => {
    const r = translate(
      state(
        [svc('web', { internalTrafficPolicy: 'Local' })],
        [
          slice('web-a', 'web', [ep('198.18.1.1', { nodeName: 'node1', ready: false, serving: false })]),
          slice('web-b', 'web', [ep('198.18.1.1', { nodeName: 'node2' })]),
        ],
      ),
      NODE,
    );
    assert.deepEqual(backends(r.services[0]), ['198.18.1.1:8080/TCP']);
    assert.equal(r.services[0].hasAnyEndpoints, true, 'ready on node2');
  });

  it('zone hints of this node\'s zone narrow the cluster set (the node\'s topology.kubernetes.io/zone label)', () => {
    const hinted = (addr: string, zone: string) => ep(addr, { nodeName: 'node2', hints: { forZones: [zone], forNodes: [] } });
    const st = state([svc('web')], [slice('web-1', 'web', [hinted('198.18.1.1', 'a'), hinted('198.18.1.2', 'b')])]);
    const inA = translate(st, { ...NODE, labels: { 'topology.kubernetes.io/zone': 'a' } }).services[0];
    assert.deepEqual(backends(inA), ['198.18.1.1:8080/TCP C', '198.18.1.2:8080/TCP']);
    assert.equal(inA.topology, 'PreferSameZone');
    const unlabelled = translate(st, NODE).services[0];
    assert.deepEqual(backends(unlabelled), ['198.18.1.1:8080/TCP C', '198.18.1.2:8080/TCP C'], 'no zone label: hints ignored');
    assert.equal(unlabelled.topology, '');
  });
});

describe('translate: traffic policies pick the sets (kube-proxy CategorizeEndpoints)', () => {
  const slices = [slice('web-1', 'web', [ep('198.18.1.1', { nodeName: 'node1' }), ep('198.18.1.2', { nodeName: 'node2' })])];

  it('externalTrafficPolicy Local on an external service: a local set of this node\'s endpoints beside the cluster set', () => {
    const local = translate(state([svc('web', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'], externalTrafficPolicy: 'Local' })], slices), NODE);
    assert.deepEqual(backends(local.services[0]), ['198.18.1.1:8080/TCP local C L', '198.18.1.2:8080/TCP C']);
    const cluster = translate(state([svc('web', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'] })], slices), NODE);
    assert.deepEqual(backends(cluster.services[0]), ['198.18.1.1:8080/TCP local C', '198.18.1.2:8080/TCP C'], 'no local set');
  });

  it('internalTrafficPolicy Local: a local set only, unless the service is reachable from outside', () => {
    const r = translate(state([svc('web', { internalTrafficPolicy: 'Local', externalTrafficPolicy: 'Local' })], slices), NODE);
    assert.deepEqual(backends(r.services[0]), ['198.18.1.1:8080/TCP local L', '198.18.1.2:8080/TCP']);
    const ext = translate(state([svc('web', { internalTrafficPolicy: 'Local', externalIPs: ['203.0.113.7'] })], slices), NODE);
    assert.deepEqual(backends(ext.services[0]), ['198.18.1.1:8080/TCP local C L', '198.18.1.2:8080/TCP C'], 'external frontends need the cluster set');
  });

  it('no usable endpoint anywhere: hasAnyEndpoints false (connections are refused)', () => {
    const r = translate(state([svc('web')], [slice('web-1', 'web', [ep('198.18.1.1', { ready: false, serving: false, terminating: true })])]), NODE);
    assert.equal(r.services[0].hasAnyEndpoints, false);
    assert.deepEqual(backends(r.services[0]), ['198.18.1.1:8080/TCP']);
  });
});

describe('translate: frontend conflicts', () => {
  it('two services on the same VIP and port: the one sorting first keeps it, the other gets an issue naming both', () => {
    const lb = (name: string) => svc(name, { type: 'LoadBalancer', clusterIPs: [], loadBalancerIPs: ['203.0.113.1'] });
    // Inserted in reverse order: the result must not depend on it.
    const r = translate(state([lb('zeta'), lb('alpha')]), NODE);
    assert.deepEqual(frontends(r.services.find((s) => s.name === 'alpha')), ['LoadBalancer 203.0.113.1:80/TCP']);
    assert.deepEqual(frontends(r.services.find((s) => s.name === 'zeta')), []);
    assert.equal(r.issues.length, 1);
    const i = r.issues[0];
    assert.equal(i.object, 'Service default/zeta');
    assert.equal(i.field, 'status.loadBalancer.ingress');
    assert.match(i.message, /203\.0\.113\.1:80\/TCP .*claimed by Service default\/alpha/);
  });

  it('namespaces sort before names: b/a loses to a/z', () => {
    const r = translate(state([svc('a', { namespace: 'b', externalIPs: ['203.0.113.2'], clusterIPs: [] }), svc('z', { namespace: 'a', externalIPs: ['203.0.113.2'], clusterIPs: [] })]), NODE);
    assert.equal(r.issues[0].object, 'Service b/a');
    assert.equal(r.issues[0].field, 'spec.ports[0].port');
  });

  it('node port conflicts name spec.ports[i].nodePort', () => {
    const np = (name: string, port: number) =>
      svc(name, { type: 'NodePort', clusterIPs: [], ports: [{ name: 'x', protocol: 'TCP', port, targetPort: port }, { name: 'http', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 30080 }] });
    const r = translate(state([np('a', 1), np('b', 2)]), NODE);
    // Two node addresses and loopback.
    assert.deepEqual(
      r.issues.map((i) => `${i.object} ${i.field}`),
      ['Service default/b spec.ports[1].nodePort', 'Service default/b spec.ports[1].nodePort', 'Service default/b spec.ports[1].nodePort'],
    );
    assert.deepEqual(frontends(r.services.find((s) => s.key === 'default/b:http')), []);
  });

  it('TCP and UDP on the same VIP and port are not a conflict', () => {
    const r = translate(
      state([
        svc('dns-tcp', { type: 'LoadBalancer', clusterIPs: [], loadBalancerIPs: ['203.0.113.53'], ports: [{ name: 'dns', protocol: 'TCP', port: 53, targetPort: 53 }] }),
        svc('dns-udp', { type: 'LoadBalancer', clusterIPs: [], loadBalancerIPs: ['203.0.113.53'], ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 53 }] }),
      ]),
      NODE,
    );
    assert.deepEqual(r.issues, []);
    assert.deepEqual(r.services.map(frontends), [['LoadBalancer 203.0.113.53:53/TCP'], ['LoadBalancer 203.0.113.53:53/UDP']]);
  });

  it('a losing service keeps its frontends that do not conflict', () => {
    const r = translate(
      state([
        svc('a', { type: 'LoadBalancer', clusterIPs: ['198.19.0.1'], loadBalancerIPs: ['203.0.113.1'] }),
        svc('b', { type: 'LoadBalancer', clusterIPs: ['198.19.0.2'], loadBalancerIPs: ['203.0.113.1', '203.0.113.2'] }),
      ]),
      NODE,
    );
    assert.deepEqual(frontends(r.services.find((s) => s.name === 'b')), ['LoadBalancer 203.0.113.2:80/TCP', 'ClusterIP 198.19.0.2:80/TCP']);
  });
});

describe('translate: determinism', () => {
  it('the output is sorted by key and does not depend on the order of the input maps', () => {
    const services = ['web', 'api', 'db'].map((n, i) => svc(n, { clusterIPs: [`198.19.0.${i + 1}`] }));
    const slices = [slice('web-2', 'web', [ep('198.18.1.9'), ep('198.18.1.10')]), slice('web-1', 'web', [ep('198.18.1.2')])];
    const a = translate(state(services, slices), NODE);
    const b = translate(state([...services].reverse(), [...slices].reverse()), NODE);
    assert.deepEqual(a, b);
    assert.deepEqual(a.services.map((s) => s.key), ['default/api:http', 'default/db:http', 'default/web:http']);
    assert.deepEqual(a.services[2].backends.map((x) => x.addr), ['198.18.1.2', '198.18.1.9', '198.18.1.10'], 'numeric address order');
  });
});

describe('translate: change hints (ClusterState.changed)', () => {
  it('a translator given only the changed keys ends where one that compares everything ends, over 300 random edits', () => {
    const rand = prng(20261123);
    const pick = <T,>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    const services = new Map<string, ServiceModel>();
    const slices = new Map<string, EndpointSliceModel>();
    const names = Array.from({ length: 12 }, (_, i) => `s${i}`);
    const lbService = (name: string, vip: number) =>
      svc(name, { type: 'LoadBalancer', loadBalancerIPs: [`203.0.113.${vip}`], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30000 + vip }] });
    for (const n of names.slice(0, 8)) services.set(`default/${n}`, lbService(n, 1 + Math.floor(rand() * 6)));
    const hinted = new Translator(NODE);
    const plain = new Translator(NODE);
    hinted.run({ services: new Map(services), endpointSlices: new Map(slices) });
    plain.run({ services: new Map(services), endpointSlices: new Map(slices) });
    for (let step = 0; step < 300; step++) {
      const changedServices: string[] = [];
      const changedSlices: string[] = [];
      const edits = 1 + Math.floor(rand() * 3);
      for (let e = 0; e < edits; e++) {
        const n = pick(names);
        const r = rand();
        if (r < 0.25) {
          // a service appears, moves to another VIP (frontends may collide) or goes
          if (services.has(`default/${n}`) && rand() < 0.4) services.delete(`default/${n}`);
          else services.set(`default/${n}`, lbService(n, 1 + Math.floor(rand() * 6)));
          changedServices.push(`default/${n}`);
        } else {
          // a slice of service n appears, changes endpoints, moves to another service, or goes
          const sliceName = `${n}-${Math.floor(rand() * 2)}`;
          const key = `default/${sliceName}`;
          if (slices.has(key) && rand() < 0.3) slices.delete(key);
          else {
            const owner = rand() < 0.1 ? pick(names) : n;
            const eps = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => ep(`198.19.${Math.floor(rand() * 4)}.${1 + Math.floor(rand() * 20)}`, { nodeName: rand() < 0.5 ? 'node1' : 'node2', ready: rand() < 0.8 }));
            slices.set(key, slice(sliceName, owner, eps));
          }
          changedSlices.push(key);
        }
      }
      const a = hinted.run({ services: new Map(services), endpointSlices: new Map(slices), changed: { services: changedServices, endpointSlices: changedSlices } });
      const b = plain.run({ services: new Map(services), endpointSlices: new Map(slices) });
      // And a translator with no past at all: both above reuse what did not change.
      const c = translate({ services: new Map(services), endpointSlices: new Map(slices) }, NODE);
      const view = (t: { services: unknown; issues: unknown }) => JSON.stringify({ services: t.services, issues: t.issues });
      assert.equal(view(a), view(b), `step ${step}: hinted and full translations differ`);
      assert.equal(view(a), view(c), `step ${step}: the incremental translation differs from a fresh one`);
    }
  });

  it('a conflict a port lost stays reported when its endpoints change with another service\'s that has issues of its own', () => {
    const t = new Translator(NODE);
    const a = svc('a', { type: 'LoadBalancer', clusterIPs: ['198.19.0.1'], loadBalancerIPs: ['203.0.113.1'] });
    const b = svc('b', { type: 'LoadBalancer', clusterIPs: ['198.19.0.2'], loadBalancerIPs: ['203.0.113.1'] });
    // c has an issue of its own (an IPv6 source range), so a change to it makes the issues be listed again.
    const c = svc('c', { type: 'LoadBalancer', clusterIPs: ['198.19.0.3'], loadBalancerIPs: ['203.0.113.3'], loadBalancerSourceRanges: ['2001:db8::/32'] });
    const slicesOf = (n: number) => [slice('b-1', 'b', [ep(`198.18.1.${n}`)]), slice('c-1', 'c', [ep(`198.18.2.${n}`)])];
    const first = t.run(state([a, b, c], slicesOf(1)));
    const conflict = (r: { issues: Array<{ object: string; field: string }> }) => r.issues.filter((i) => i.object === 'Service default/b' && i.field === 'status.loadBalancer.ingress');
    assert.equal(conflict(first).length, 1, 'b lost 203.0.113.1:80 to a');
    const next = t.run({ ...state([a, b, c], slicesOf(2)), changed: { services: [], endpointSlices: ['default/b-1', 'default/c-1'] } });
    assert.equal(next.structural, false, 'an endpoint change only');
    assert.deepEqual(next.issues, translate(state([a, b, c], slicesOf(2)), NODE).issues, 'the same issues as a fresh translation');
    assert.equal(conflict(next).length, 1, 'b still reported');
    assert.deepEqual(frontends(next.services.find((s) => s.name === 'b')), ['ClusterIP 198.19.0.2:80/TCP']);
  });

  it('a hint that misses an added service is caught by the sizes, and everything is compared', () => {
    const t = new Translator(NODE);
    const one = svc('a', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.1'] });
    const two = svc('b', { type: 'LoadBalancer', loadBalancerIPs: ['203.0.113.2'] });
    t.run(state([one]));
    const r = t.run({ ...state([one, two]), changed: { services: [], endpointSlices: [] } });
    assert.deepEqual(r.services.map((d) => d.key).sort(), ['default/a:http', 'default/b:http']);
  });
});

describe('Translator: node changes (setNode)', () => {
  const lb = svc('web', { type: 'NodePort', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] });
  const hinted = (addr: string, zone: string, node: string) => ep(addr, { nodeName: node, hints: { forZones: [zone], forNodes: [] } });
  const slices = [slice('web-1', 'web', [hinted('198.18.1.1', 'a', 'node1'), hinted('198.18.1.2', 'b', 'node2')])];

  it('new node addresses: the next run moves the NodePort frontends and is structural', () => {
    const t = new Translator(NODE);
    const first = t.run(state([lb], slices));
    t.setNode({ ...NODE, addresses: ['198.18.0.13'] });
    const next = t.run({ ...state([lb], slices), changed: { services: [], endpointSlices: [] } });
    assert.equal(next.structural, true);
    assert.deepEqual(frontends(next.services[0]), ['NodePort 198.18.0.13:30080/TCP', 'NodePort 127.0.0.1:30080/TCP', 'ClusterIP 198.19.0.10:80/TCP']);
    assert.deepEqual([...next.changed], ['default/web:http']);
    assert.notEqual(next.services[0], first.services[0]);
  });

  it('a new zone label: the next run applies the hints of the new zone', () => {
    const t = new Translator({ ...NODE, labels: { 'topology.kubernetes.io/zone': 'a' } });
    assert.deepEqual(backends(t.run(state([lb], slices)).services[0]), ['198.18.1.1:8080/TCP local C', '198.18.1.2:8080/TCP']);
    t.setNode({ ...NODE, labels: { 'topology.kubernetes.io/zone': 'b' } });
    const r = t.run(state([lb], slices));
    assert.equal(r.structural, true);
    assert.deepEqual(backends(r.services[0]), ['198.18.1.1:8080/TCP local', '198.18.1.2:8080/TCP C']);
  });

  it('the same node again (other labels aside) changes nothing; a node object changed in place and set again is seen', () => {
    const node: NodeInfo = { name: 'node1', addresses: ['198.18.0.11'], labels: { 'topology.kubernetes.io/zone': 'a' } };
    const t = new Translator(node);
    const first = t.run(state([lb], slices));
    t.setNode({ ...node, labels: { ...node.labels, 'kubernetes.io/os': 'linux' } });
    const same = t.run(state([lb], slices));
    assert.equal(same.structural, false);
    assert.equal(same.changed.size, 0);
    assert.equal(same.services[0], first.services[0]);
    node.addresses.push('198.18.0.12');
    const beforeSet = t.run(state([lb], slices));
    assert.equal(beforeSet.services[0], first.services[0], 'the translator keeps its own copy of the node');
    t.setNode(node);
    assert.deepEqual(frontends(t.run(state([lb], slices)).services[0]).slice(0, 2), ['NodePort 198.18.0.11:30080/TCP', 'NodePort 198.18.0.12:30080/TCP']);
  });
});

describe('Translator: results handed out stay as they were', () => {
  it('a later run does not change an earlier run\'s services array in place', () => {
    const t = new Translator(NODE);
    const a = svc('a', { clusterIPs: ['198.19.0.1'] });
    const b = svc('b', { clusterIPs: ['198.19.0.2'] });
    const first = t.run(state([a, b], [slice('a-1', 'a', [ep('198.18.1.1')])]));
    const kept = [...first.services];
    const next = t.run({ ...state([a, b], [slice('a-1', 'a', [ep('198.18.1.2')])]), changed: { services: [], endpointSlices: ['default/a-1'] } });
    assert.equal(next.structural, false);
    assert.deepEqual([...next.changed], ['default/a:http']);
    assert.deepEqual(first.services, kept, 'the first result is unchanged');
    assert.notEqual(next.services[0], first.services[0]);
    assert.equal(next.services[1], first.services[1], 'the unchanged port is the same object');
  });
});

/**
 * src/announce/desired.ts: which VIPs a node announces, from the service
 * ports it programmed (MetalLB's and Cilium's rules), as a table of cases.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { announcedVips, COMMUNITIES_ANNOTATION, LARGE_COMMUNITIES_ANNOTATION } from '../../src/announce/desired.js';
import { normalizeObjects } from '../../src/sources/normalize.js';
import { translate } from '../../src/services/translate.js';

const node1 = { name: 'node1', addresses: ['198.18.0.11'] };

interface Svc {
  name: string;
  vip?: string;
  externalIPs?: string[];
  policy?: 'Cluster' | 'Local';
  protocol?: 'TCP' | 'UDP';
  /** Endpoints as `node:ready`, e.g. `node2:true`. */
  endpoints: string[];
  annotations?: Record<string, string>;
}

function objects(svcs: Svc[]) {
  return svcs.flatMap((s, i) => [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: s.name, namespace: 'default', annotations: s.annotations ?? {} },
      spec: {
        type: s.vip ? 'LoadBalancer' : 'ClusterIP',
        clusterIP: `198.18.128.${10 + i}`,
        externalIPs: s.externalIPs,
        externalTrafficPolicy: s.vip ? (s.policy ?? 'Cluster') : undefined,
        ports: [{ name: 'p', protocol: s.protocol ?? 'TCP', port: 80, targetPort: 8080, ...(s.vip ? { nodePort: 30000 + i } : {}) }],
      },
      status: s.vip ? { loadBalancer: { ingress: [{ ip: s.vip }] } } : {},
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${s.name}-x`, namespace: 'default', labels: { 'kubernetes.io/service-name': s.name } },
      addressType: 'IPv4',
      ports: [{ name: 'p', port: 8080, protocol: s.protocol ?? 'TCP' }],
      endpoints: s.endpoints.map((e, j) => {
        const [nodeName, ready] = e.split(':');
        return { addresses: [`198.19.${i + 1}.${10 + j}`], nodeName, conditions: { ready: ready === 'true', serving: ready === 'true', terminating: false } };
      }),
    },
  ]);
}

function announced(svcs: Svc[], externalIPs = false) {
  const { state, issues } = normalizeObjects(objects(svcs));
  assert.deepEqual(issues, []);
  return announcedVips(translate(state, node1).services, state, { externalIPs });
}

describe('which VIPs a node announces', () => {
  const cases: Array<[string, Svc[], string[], boolean?]> = [
    ['a LoadBalancer VIP with a ready backend anywhere (Cluster)', [{ name: 'a', vip: '192.0.2.1', endpoints: ['node2:true'] }], ['192.0.2.1']],
    ['no ready backend: not announced', [{ name: 'a', vip: '192.0.2.1', endpoints: ['node1:false', 'node2:false'] }], []],
    ['no endpoints at all: not announced', [{ name: 'a', vip: '192.0.2.1', endpoints: [] }], []],
    ['Local with a ready backend on this node', [{ name: 'a', vip: '192.0.2.1', policy: 'Local', endpoints: ['node1:true', 'node2:true'] }], ['192.0.2.1']],
    ['Local with ready backends on other nodes only: not announced here', [{ name: 'a', vip: '192.0.2.1', policy: 'Local', endpoints: ['node2:true', 'node1:false'] }], []],
    ['ExternalIPs: not announced by default', [{ name: 'a', externalIPs: ['203.0.113.5'], endpoints: ['node1:true'] }], []],
    ['ExternalIPs: announced when configured', [{ name: 'a', externalIPs: ['203.0.113.5'], endpoints: ['node1:true'] }], ['203.0.113.5'], true],
    [
      'a TCP and a UDP service sharing a VIP: announced once, if either qualifies',
      [
        { name: 'tcp', vip: '192.0.2.7', endpoints: ['node1:false'] },
        { name: 'udp', vip: '192.0.2.7', protocol: 'UDP', endpoints: ['node2:true'] },
      ],
      ['192.0.2.7'],
    ],
    ['a ClusterIP service: never announced', [{ name: 'a', endpoints: ['node1:true'] }], []],
    [
      'sorted by address',
      [
        { name: 'b', vip: '192.0.2.100', endpoints: ['node1:true'] },
        { name: 'a', vip: '192.0.2.9', endpoints: ['node1:true'] },
      ],
      ['192.0.2.9', '192.0.2.100'],
    ],
  ];
  for (const [what, svcs, want, ext] of cases) it(what, () => assert.deepEqual(announced(svcs, ext).vips.map((v) => v.vip), want));

  it('names the services that share a VIP', () => {
    const r = announced([
      { name: 'tcp', vip: '192.0.2.7', endpoints: ['node1:true'] },
      { name: 'udp', vip: '192.0.2.7', protocol: 'UDP', endpoints: ['node1:true'] },
    ]);
    assert.deepEqual(r.vips, [{ vip: '192.0.2.7', service: 'default/tcp,default/udp' }]);
  });

  it('takes communities from annotations and reports a bad one by service and annotation, still announcing', () => {
    const r = announced([
      { name: 'a', vip: '192.0.2.1', endpoints: ['node1:true'], annotations: { [COMMUNITIES_ANNOTATION]: '65000:1, 65000:70000', [LARGE_COMMUNITIES_ANNOTATION]: '64513:1:2' } },
    ]);
    assert.deepEqual(r.vips, [{ vip: '192.0.2.1', service: 'default/a', communities: ['65000:1'], largeCommunities: ['64513:1:2'] }]);
    assert.equal(r.issues.length, 1);
    assert.equal(r.issues[0].object, 'Service default/a');
    assert.equal(r.issues[0].field, `metadata.annotations["${COMMUNITIES_ANNOTATION}"]`);
    assert.match(r.issues[0].message, /65000:70000.*announced without it/);
  });
});

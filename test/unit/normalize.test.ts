/**
 * src/sources/normalize: Kubernetes objects as `kubectl get -o yaml` prints
 * them → the model, with the API's defaults, endpoints read as kube-proxy
 * reads them, and issues naming object and field. A problem costs its unit
 * only (a port, an address, a field), the rest of the object still applies.
 * Cases marked "kube-proxy" come from kubernetes/kubernetes pkg/proxy tests
 * (endpointslicecache_test.go, service_test.go, topology_test.go), those
 * marked "API" from pkg/apis/core/validation.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseManifests } from '../../src/sources/file/parse.js';
import {
  normalizeEndpointSlice,
  normalizeObjects,
  normalizeService,
  normalizeSourceRange,
  parseCIDRSloppy,
  parseIPSloppy,
  plainEndpointSlice,
} from '../../src/sources/normalize.js';
import type { EndpointModel, EndpointSliceModel, InputIssue, ServiceModel } from '../../src/model/types.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/manifests');

function fixture(name: string) {
  const { objects, positions } = parseManifests(fs.readFileSync(path.join(FIXTURES, name), 'utf8'), name);
  return normalizeObjects(objects, undefined, (i) => positions[i]);
}

/** A minimal valid Service, with `spec` fields merged in. */
function service(spec: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'default' },
    spec: { clusterIP: '198.19.0.10', ports: [{ name: 'http', port: 80 }], ...spec },
    ...extra,
  };
}

/** A minimal valid EndpointSlice of service `web`. */
function slice(fields: Record<string, unknown>): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc12', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: [{ addresses: ['198.18.1.1'] }],
    ...fields,
  };
}

/** `field: message` of each issue, for compact assertions. */
const lines = (issues: InputIssue[]) => issues.map((i) => `${i.field}: ${i.message}`);

describe('normalize: kubectl output', () => {
  it('a `kubectl get -o yaml` List becomes services and slices with every field carried over', () => {
    const r = fixture('kubectl-get.yaml');
    assert.deepEqual(r.issues, []);
    assert.deepEqual(r.ignored, []);
    const expected: ServiceModel = {
      namespace: 'shop',
      name: 'web',
      type: 'LoadBalancer',
      clusterIPs: ['198.19.0.10'],
      headless: false,
      externalIPs: [],
      loadBalancerIPs: ['203.0.113.10'],
      ports: [
        { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 },
        { name: 'https', protocol: 'TCP', port: 443, targetPort: 'https', nodePort: 30443 },
      ],
      externalTrafficPolicy: 'Cluster',
      internalTrafficPolicy: 'Cluster',
      sessionAffinity: 'None',
      loadBalancerSourceRanges: [],
      labels: { app: 'web' },
      annotations: r.state.services.get('shop/web')!.annotations,
      allocateLoadBalancerNodePorts: true,
      createdAt: '2024-05-02T09:14:31Z',
    };
    assert.deepEqual(r.state.services.get('shop/web'), expected);
    assert.match(expected.annotations['kubectl.kubernetes.io/last-applied-configuration'], /"name":"web"/);
    assert.deepEqual(r.state.services.get('shop/dns')!.ports.map((p) => `${p.name} ${p.port}/${p.protocol}`), ['dns-udp 53/UDP', 'dns-tcp 53/TCP']);

    const expectedSlice: EndpointSliceModel = {
      namespace: 'shop',
      name: 'web-x7k2p',
      serviceName: 'web',
      addressType: 'IPv4',
      ports: [
        { name: 'https', protocol: 'TCP', port: 8443 },
        { name: 'http', protocol: 'TCP', port: 8080 },
      ],
      endpoints: [
        { addresses: ['198.18.1.11'], ready: true, serving: true, terminating: false, nodeName: 'node1', zone: 'zone-a', targetName: 'web-7d4b9c8f6-abcde' },
        { addresses: ['198.18.2.12'], ready: false, serving: true, terminating: true, nodeName: 'node2', targetName: 'web-7d4b9c8f6-fghij' },
      ],
    };
    assert.deepEqual(r.state.endpointSlices.get('shop/web-x7k2p'), expectedSlice);
    assert.deepEqual(r.state.endpointSlices.get('shop/dns-q9r8s'), { namespace: 'shop', name: 'dns-q9r8s', serviceName: 'dns', addressType: 'IPv4', ports: [], endpoints: [] });
  });

  it('multi-document YAML: defaults applied, namespace "default", other kinds listed as ignored, empty documents skipped', () => {
    const r = fixture('multi-doc.yaml');
    assert.deepEqual(r.issues, []);
    assert.deepEqual(r.ignored, ['Deployment default/echo']);
    assert.deepEqual(r.state.services.get('default/echo')!.ports, [{ name: '', protocol: 'TCP', port: 7, targetPort: 7, nodePort: 30007 }]);
    const s = r.state.endpointSlices.get('default/echo-1')!;
    assert.deepEqual(s.ports, [{ name: '', protocol: 'TCP', port: 7007 }]);
    // ready: false alone leaves serving nil, which kube-proxy reads as true.
    assert.deepEqual(
      s.endpoints.map((e) => [e.ready, e.serving, e.terminating]),
      [
        [true, true, false],
        [false, true, false],
      ],
    );
  });

  it('dual-stack: IPv6 cluster IPs, ingress IPs and IPv6 slices are accepted and recorded', () => {
    const r = fixture('dual-stack.yaml');
    assert.deepEqual(r.issues, []);
    const svc = r.state.services.get('default/api')!;
    assert.deepEqual(svc.clusterIPs, ['198.19.0.30', 'fd00:10:96::30']);
    assert.deepEqual(svc.loadBalancerIPs, ['203.0.113.30', '2001:db8::30']);
    const v6 = r.state.endpointSlices.get('default/api-v6')!;
    assert.equal(v6.addressType, 'IPv6');
    assert.deepEqual(v6.endpoints[0].addresses, ['fd00:10:244::5']);
  });

  it('a mistake costs its unit: bad parts are reported and dropped, objects without anything usable are skipped, the rest applies', () => {
    const r = fixture('invalid.yaml');
    assert.deepEqual([...r.state.services.keys()], ['default/badport', 'default/good']);
    assert.deepEqual(r.state.services.get('default/badport')!.ports.map((p) => p.name), ['a']);
    assert.deepEqual([...r.state.endpointSlices.keys()], ['default/good-1']);
    assert.deepEqual(r.state.endpointSlices.get('default/good-1')!.endpoints.map((e) => e.addresses), [['198.18.1.43']]);
    assert.deepEqual(
      r.issues.map((i) => `${i.object} ${i.field}`),
      [
        'Service default/typo spec.potrs',
        'Service default/typo spec.ports',
        'Service default/badport spec.ports[1].port',
        'Service default/badip spec.ports[0].protocol',
        'Service default/badip spec.externalIPs[0]',
        'Service default/badip spec.ports',
        'EndpointSlice default/orphan metadata.labels["kubernetes.io/service-name"]',
        'EndpointSlice default/orphan endpoints[0].addresses[0]',
        'EndpointSlice default/orphan endpoints[0].addresses',
        'EndpointSlice default/good-1 endpoints[1].addresses[0]',
        'EndpointSlice default/good-1 endpoints[1].addresses',
      ],
    );
    assert.match(r.issues[0].message, /^unknown field \(got \[\{"port":80\}\]\); ignored$/);
    assert.match(r.issues[1].message, /^required: a service of type ClusterIP needs at least one port; the Service is skipped$/);
    assert.match(r.issues[2].message, /got 70000\); this port is skipped$/);
    assert.match(r.issues[5].message, /^no usable port left: .*; the Service is skipped$/);
    assert.match(r.issues[6].message, /; the EndpointSlice is skipped$/);
  });
});

describe('normalize: Kubernetes defaults', () => {
  it('a Service without optional fields gets type ClusterIP, protocol TCP, targetPort = port, policies Cluster, affinity None', () => {
    const r = normalizeService({ kind: 'Service', metadata: { name: 'a' }, spec: { ports: [{ port: 8080 }] } });
    assert.deepEqual(r.issues, []);
    assert.deepEqual(r.value, {
      namespace: 'default',
      name: 'a',
      type: 'ClusterIP',
      clusterIPs: [],
      headless: false,
      externalIPs: [],
      loadBalancerIPs: [],
      ports: [{ name: '', protocol: 'TCP', port: 8080, targetPort: 8080 }],
      externalTrafficPolicy: 'Cluster',
      internalTrafficPolicy: 'Cluster',
      sessionAffinity: 'None',
      loadBalancerSourceRanges: [],
      labels: {},
      annotations: {},
    });
  });

  it('ClientIP affinity defaults its timeout to 10800 s and keeps a given one', () => {
    assert.equal(normalizeService(service({ sessionAffinity: 'ClientIP' })).value!.sessionAffinityTimeoutSeconds, 10800);
    const r = normalizeService(service({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }));
    assert.equal(r.value!.sessionAffinityTimeoutSeconds, 60);
  });

  it('clusterIP None is headless with no cluster IPs; clusterIP alone fills clusterIPs', () => {
    const headless = normalizeService(service({ clusterIP: 'None', clusterIPs: ['None'] })).value!;
    assert.deepEqual([headless.headless, headless.clusterIPs], [true, []]);
    const single = normalizeService(service({ clusterIP: '198.19.0.7' })).value!;
    assert.deepEqual([single.headless, single.clusterIPs], [false, ['198.19.0.7']]);
  });

  it('load balancer IPs come from status ingress (VIP mode), else from spec.loadBalancerIP', () => {
    const fromStatus = normalizeService(
      service(
        { type: 'LoadBalancer', loadBalancerIP: '203.0.113.1' },
        { status: { loadBalancer: { ingress: [{ ip: '203.0.113.2', ipMode: 'VIP' }, { ip: '203.0.113.3', ipMode: 'Proxy' }, { hostname: 'lb.example' }] } } },
      ),
    );
    assert.deepEqual(fromStatus.value!.loadBalancerIPs, ['203.0.113.2']);
    const fromSpec = normalizeService(service({ type: 'LoadBalancer', loadBalancerIP: '203.0.113.1' }, { status: { loadBalancer: {} } }));
    assert.deepEqual(fromSpec.value!.loadBalancerIPs, ['203.0.113.1']);
  });

  it('with loadBalancerIPs "status" (the Kubernetes source), a requested spec.loadBalancerIP is not served until it is in the status', () => {
    const requested = service({ type: 'LoadBalancer', loadBalancerIP: '203.0.113.1' }, { status: { loadBalancer: {} } });
    assert.deepEqual(normalizeService(requested, { loadBalancerIPs: 'status' }).value!.loadBalancerIPs, []);
    const assigned = service({ type: 'LoadBalancer', loadBalancerIP: '203.0.113.1' }, { status: { loadBalancer: { ingress: [{ ip: '203.0.113.1' }] } } });
    assert.deepEqual(normalizeService(assigned, { loadBalancerIPs: 'status' }).value!.loadBalancerIPs, ['203.0.113.1']);
  });
});

describe('normalize: endpoints as kube-proxy reads them (pkg/proxy/endpointslicecache.go)', () => {
  // kube-proxy: ready nil → true, serving nil → true (not "ready"), terminating nil → false.
  const conditionCases: Array<[string, Record<string, unknown> | undefined, [boolean, boolean, boolean]]> = [
    ['no conditions', undefined, [true, true, false]],
    ['empty conditions', {}, [true, true, false]],
    ['explicit nulls mean absent', { ready: null, serving: null, terminating: null }, [true, true, false]],
    ['ready false, serving nil → serving true', { ready: false }, [false, true, false]],
    ['ready true, nothing else', { ready: true }, [true, true, false]],
    ['serving false alone', { serving: false }, [true, false, false]],
    ['terminating alone', { terminating: true }, [true, true, true]],
    // generateEndpointSlice's three kinds (endpointslicecache_test.go).
    ['kube-proxy: ready endpoint', { ready: true, serving: true, terminating: false }, [true, true, false]],
    ['kube-proxy: unready endpoint', { ready: false, serving: false, terminating: false }, [false, false, false]],
    ['kube-proxy: terminating and still serving', { ready: false, serving: true, terminating: true }, [false, true, true]],
    ['kube-proxy: terminating, no longer serving', { ready: false, serving: false, terminating: true }, [false, false, true]],
  ];
  for (const [what, conditions, [ready, serving, terminating]] of conditionCases) {
    it(`endpoint conditions, ${what} → ready=${ready} serving=${serving} terminating=${terminating}`, () => {
      for (const fastPath of [true, false]) {
        const r = normalizeEndpointSlice(slice({ endpoints: [{ addresses: ['198.18.1.1'], ...(conditions ? { conditions } : {}) }] }), { unknownFields: 'ignore', fastPath });
        assert.deepEqual(r.issues, []);
        const e = r.value!.endpoints[0];
        assert.deepEqual([e.ready, e.serving, e.terminating], [ready, serving, terminating], `fastPath ${fastPath}`);
      }
    });
  }

  const addressCases: Array<{ what: string; addressType?: string; addresses: unknown[]; expect?: string[]; issues: string[] }> = [
    { what: 'the first address is the one kube-proxy uses; all are kept', addresses: ['198.18.1.1', '198.18.1.2'], expect: ['198.18.1.1', '198.18.1.2'], issues: [] },
    { what: 'leading zeros are decimal (ParseIPSloppy), kept in Go\'s text', addresses: ['010.001.002.003'], expect: ['10.1.2.3'], issues: [] },
    {
      what: 'an address of the wrong family is skipped, the next one is used',
      addresses: ['fd00::1', '198.18.1.2'],
      expect: ['198.18.1.2'],
      issues: ['endpoints[0].addresses[0]: not an IPv4 address (got "fd00::1"); this address is skipped'],
    },
    {
      what: 'no address left: the endpoint is skipped',
      addresses: ['198.18.1.999'],
      issues: ['endpoints[0].addresses[0]: not an IPv4 address (got "198.18.1.999"); this address is skipped', 'endpoints[0].addresses: no usable address left; this endpoint is skipped'],
    },
    {
      what: 'kube-proxy: an endpoint with no addresses is skipped',
      addresses: [],
      issues: ['endpoints[0].addresses: required: at least one address; this endpoint is skipped (kube-proxy ignores it too)'],
    },
    { what: 'IPv6 in RFC 5952 text', addressType: 'IPv6', addresses: ['FD00:0:0:0:0:0:0:0001'], expect: ['fd00::1'], issues: [] },
    {
      what: 'IPv4-mapped is not an IPv6 address (API)',
      addressType: 'IPv6',
      addresses: ['::ffff:198.18.1.1', 'fd00::2'],
      expect: ['fd00::2'],
      issues: ['endpoints[0].addresses[0]: not an IPv6 address (got "::ffff:198.18.1.1"); this address is skipped'],
    },
    { what: 'an IPv4 address in an IPv6 slice', addressType: 'IPv6', addresses: ['198.18.1.1'], issues: ['endpoints[0].addresses[0]: not an IPv6 address (got "198.18.1.1"); this address is skipped', 'endpoints[0].addresses: no usable address left; this endpoint is skipped'] },
    { what: 'FQDN slices take names', addressType: 'FQDN', addresses: ['db.example.com'], expect: ['db.example.com'], issues: [] },
    { what: 'a non-string address', addresses: [7, '198.18.1.2'], expect: ['198.18.1.2'], issues: ['endpoints[0].addresses[0]: not an IPv4 address (got 7); this address is skipped'] },
  ];
  for (const c of addressCases) {
    it(`addresses: ${c.what}`, () => {
      for (const fastPath of [true, false]) {
        const r = normalizeEndpointSlice(slice({ addressType: c.addressType ?? 'IPv4', endpoints: [{ addresses: c.addresses }, { addresses: ['198.18.9.9', 'fd00::9'].filter((a) => (c.addressType === 'IPv6' ? a.includes(':') : !a.includes(':'))) }] }), {
          unknownFields: 'ignore',
          fastPath,
        });
        assert.deepEqual(lines(r.issues), c.issues, `fastPath ${fastPath}`);
        const kept = r.value!.endpoints;
        // The second endpoint is always kept: one bad endpoint never costs the others.
        assert.equal(kept.length, c.expect ? 2 : 1);
        if (c.expect) assert.deepEqual(kept[0].addresses, c.expect);
      }
    });
  }

  it('kube-proxy: a port without a number is skipped ("Nil port should not break anything"); the endpoints stay', () => {
    const r = normalizeEndpointSlice(slice({ ports: [{ name: 'port-0', protocol: 'TCP' }] }));
    assert.deepEqual(lines(r.issues), ['ports[0].port: required; this port is skipped']);
    assert.deepEqual(r.value!.ports, []);
    assert.equal(r.value!.endpoints.length, 1);
  });

  // Hints (pkg/proxy/topology_test.go builds endpoints with zone and node hints).
  const hintCases: Array<[string, unknown, EndpointModel['hints'] | undefined]> = [
    ['no hints field: no hints', undefined, undefined],
    ['hints null: no hints', null, undefined],
    ['empty hints: both lists empty', {}, { forZones: [], forNodes: [] }],
    ['one zone', { forZones: [{ name: 'zone-a' }] }, { forZones: ['zone-a'], forNodes: [] }],
    ['several zones', { forZones: [{ name: 'zone-a' }, { name: 'zone-b' }] }, { forZones: ['zone-a', 'zone-b'], forNodes: [] }],
    ['PreferSameNode: node and zone hints', { forNodes: [{ name: 'node-1' }], forZones: [{ name: 'zone-a' }] }, { forZones: ['zone-a'], forNodes: ['node-1'] }],
    ['node hints only', { forNodes: [{ name: 'node-1' }] }, { forZones: [], forNodes: ['node-1'] }],
  ];
  for (const [what, hints, expected] of hintCases) {
    it(`hints: ${what}`, () => {
      for (const fastPath of [true, false]) {
        const endpoint: Record<string, unknown> = { addresses: ['198.18.1.1'], zone: 'zone-a', nodeName: 'node-1', targetRef: { name: 'p' } };
        if (hints !== undefined) endpoint.hints = hints;
        const r = normalizeEndpointSlice(slice({ endpoints: [endpoint] }), { unknownFields: 'ignore', fastPath });
        assert.deepEqual(r.issues, []);
        const e = r.value!.endpoints[0];
        assert.deepEqual(e.hints, expected, `fastPath ${fastPath}`);
        assert.equal('hints' in e, expected !== undefined);
      }
    });
  }

  it('hints that cannot be read are dropped (the endpoint stays, without hints)', () => {
    const r = normalizeEndpointSlice(slice({ endpoints: [{ addresses: ['198.18.1.1'], hints: { forZones: [{ zone: 'a' }] } }] }), { unknownFields: 'ignore' });
    assert.deepEqual(lines(r.issues), ["endpoints[0].hints.forZones[0].name: required; this endpoint's hints are ignored"]);
    assert.equal(r.value!.endpoints[0].hints, undefined);
  });

  it('the input is never changed (kube-proxy: cacheMutationCheck)', () => {
    const input = slice({ endpoints: [{ addresses: ['010.0.0.1', 'x'], conditions: { ready: true, redy: 1 } }, { addresses: [] }], ports: [{ port: 0 }, { name: 'a', port: 1 }] });
    const before = structuredClone(input);
    for (const unknownFields of ['reject', 'ignore'] as const) normalizeEndpointSlice(input, { unknownFields });
    assert.deepEqual(input, before);
    const svc = service({ ports: [{ name: 'a', port: 80, nodePort: 99999, extra: 1 }], sessionAffinity: 'Sticky' }, { bogus: 1 });
    const svcBefore = structuredClone(svc);
    normalizeService(svc);
    assert.deepEqual(svc, svcBefore);
  });
});

describe('normalize: issues name the object and the field; a problem costs its unit only', () => {
  /**
   * `kept` extracts what is left of the object (undefined: the object is
   * skipped); `left` is what it must be.
   */
  const cases: Array<{
    what: string;
    obj: Record<string, unknown>;
    kind?: 'EndpointSlice';
    issue: { object?: string; field?: string; message: RegExp };
    kept?: (v: ServiceModel & EndpointSliceModel) => unknown;
    left?: unknown;
    opts?: { unknownFields: 'ignore' };
  }> = [
    // Identity: the object goes.
    { what: 'missing metadata.name', obj: service({}, { metadata: { namespace: 'shop' } }), issue: { object: 'Service shop/<no name>', field: 'metadata.name', message: /^required; the Service is skipped$/ } },
    { what: 'bad name', obj: service({}, { metadata: { name: 'Web:80' } }), issue: { object: 'Service default/Web:80', field: 'metadata.name', message: /DNS-1123.*; the Service is skipped$/ } },
    { what: 'wrong apiVersion', obj: service({}, { apiVersion: 'v2' }), issue: { field: 'apiVersion', message: /must be v1.*; the Service is skipped$/ } },
    { what: 'bad type', obj: service({ type: 'Ingress' }), issue: { field: 'spec.type', message: /one of ClusterIP, NodePort, LoadBalancer, ExternalName \(got "Ingress"\); the Service is skipped$/ } },
    { what: 'no ports on a ClusterIP service', obj: service({ ports: [] }), issue: { field: 'spec.ports', message: /needs at least one port; the Service is skipped$/ } },
    { what: 'port 0, the only port', obj: service({ ports: [{ port: 0 }] }), issue: { object: 'Service default/web', field: 'spec.ports[0].port', message: /1\.\.65535 \(got 0\); this port is skipped$/ } },
    { what: 'port as a string, the only port', obj: service({ ports: [{ port: '80' }] }), issue: { field: 'spec.ports[0].port', message: /got "80"/ } },
    { what: 'missing port, the only port', obj: service({ ports: [{ name: 'http' }] }), issue: { field: 'spec.ports[0].port', message: /^required; this port is skipped$/ } },
    { what: 'bad protocol, the only port', obj: service({ ports: [{ port: 80, protocol: 'tcp' }] }), issue: { field: 'spec.ports[0].protocol', message: /TCP, UDP or SCTP \(got "tcp"\); this port is skipped$/ } },
    { what: 'ports not a list', obj: service({ ports: { port: 80 } }), issue: { field: 'spec.ports', message: /must be a list.*; the ports are skipped$/ } },
    { kind: 'EndpointSlice', what: 'slice without service-name label', obj: slice({ metadata: { name: 'x', namespace: 'default' } }), issue: { object: 'EndpointSlice default/x', field: 'metadata.labels["kubernetes.io/service-name"]', message: /^required: .*; the EndpointSlice is skipped$/ } },
    { kind: 'EndpointSlice', what: 'bad addressType', obj: slice({ addressType: 'IPv5' }), issue: { field: 'addressType', message: /IPv4, IPv6, FQDN.*; the EndpointSlice is skipped$/ } },
    { kind: 'EndpointSlice', what: 'wrong kind', obj: slice({ kind: 'Endpoints' }), issue: { field: 'kind', message: /must be EndpointSlice/ } },

    // A list element: that element goes.
    { what: 'port 70000 on the second port', obj: service({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 70000 }] }), issue: { field: 'spec.ports[1].port', message: /got 70000\); this port is skipped$/ }, kept: (v) => v.ports.map((p) => p.name), left: ['a'] },
    { what: 'bad targetPort', obj: service({ ports: [{ name: 'a', port: 80, targetPort: 'Not_A_Name' }, { name: 'b', port: 81 }] }), issue: { field: 'spec.ports[0].targetPort', message: /this port is skipped$/ }, kept: (v) => v.ports.map((p) => p.name), left: ['b'] },
    { what: 'duplicate port names', obj: service({ ports: [{ name: 'http', port: 80 }, { name: 'http', port: 81 }] }), issue: { field: 'spec.ports[1].name', message: /duplicate port name "http" \(also spec.ports\[0\].name\); this port is skipped$/ }, kept: (v) => v.ports.map((p) => p.port), left: [80] },
    { what: 'two unnamed ports', obj: service({ ports: [{ port: 80 }, { port: 81 }] }), issue: { field: 'spec.ports[1].name', message: /duplicate port name ""/ }, kept: (v) => v.ports.map((p) => p.port), left: [80] },
    { what: 'duplicate port and protocol', obj: service({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80 }] }), issue: { field: 'spec.ports[1].port', message: /duplicate port 80\/TCP/ }, kept: (v) => v.ports.map((p) => p.name), left: ['a'] },
    { what: 'bad clusterIPs entry', obj: service({ clusterIP: '198.19.0.10', clusterIPs: ['198.19.0.10', '1.2.3'] }), issue: { field: 'spec.clusterIPs[1]', message: /got "1.2.3"\); this address is skipped$/ }, kept: (v) => v.clusterIPs, left: ['198.19.0.10'] },
    { what: 'two addresses of one family', obj: service({ clusterIP: '198.19.0.10', clusterIPs: ['198.19.0.10', '198.19.0.11'] }), issue: { field: 'spec.clusterIPs[1]', message: /at most one address per IP family.*; this address is skipped$/ }, kept: (v) => v.clusterIPs, left: ['198.19.0.10'] },
    { what: 'bad clusterIPs[0]: the secondary and spec.clusterIP stay', obj: service({ clusterIP: '198.19.0.10', clusterIPs: ['198.19.0.300', 'fd00::10'] }), issue: { field: 'spec.clusterIPs[0]', message: /this address is skipped$/ }, kept: (v) => v.clusterIPs, left: ['198.19.0.10', 'fd00::10'] },
    { what: 'bad externalIP', obj: service({ externalIPs: ['203.0.113.5', '203.0.113.256'] }), issue: { field: 'spec.externalIPs[1]', message: /not an IPv4 or IPv6 address \(got "203.0.113.256"\); this address is skipped$/ }, kept: (v) => v.externalIPs, left: ['203.0.113.5'] },
    { what: 'bad ingress IP', obj: service({ type: 'LoadBalancer' }, { status: { loadBalancer: { ingress: [{ ip: '203.0.113.999' }, { ip: '203.0.113.9' }] } } }), issue: { field: 'status.loadBalancer.ingress[0].ip', message: /got "203.0.113.999"\); this ingress point is skipped$/ }, kept: (v) => v.loadBalancerIPs, left: ['203.0.113.9'] },
    { what: 'unknown ipMode: not captured (kube-proxy IsVIPMode)', obj: service({ type: 'LoadBalancer' }, { status: { loadBalancer: { ingress: [{ ip: '203.0.113.8', ipMode: 'Tunnel' }] } } }), issue: { field: 'status.loadBalancer.ingress[0].ipMode', message: /VIP, Proxy.*; this ingress point is skipped$/ }, kept: (v) => v.loadBalancerIPs, left: [] },
    { what: 'bad source range', obj: service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['203.0.113.0/33', '198.51.100.0/24'] }), issue: { field: 'spec.loadBalancerSourceRanges[0]', message: /CIDR.*\(got "203.0.113.0\/33"\); this range is skipped$/ }, kept: (v) => v.loadBalancerSourceRanges, left: ['198.51.100.0/24'] },
    { kind: 'EndpointSlice', what: 'bad IPv4 endpoint address', obj: slice({ endpoints: [{ addresses: ['198.18.1.1'] }, { addresses: ['fd00::1'] }] }), issue: { object: 'EndpointSlice default/web-abc12', field: 'endpoints[1].addresses[0]', message: /not an IPv4 address \(got "fd00::1"\); this address is skipped$/ }, kept: (v) => v.endpoints.map((e) => e.addresses[0]), left: ['198.18.1.1'] },
    { kind: 'EndpointSlice', what: 'endpoint without addresses', obj: slice({ endpoints: [{ addresses: [] }, { addresses: ['198.18.1.2'] }] }), issue: { field: 'endpoints[0].addresses', message: /this endpoint is skipped/ }, kept: (v) => v.endpoints.length, left: 1 },
    { kind: 'EndpointSlice', what: 'endpoint with bad conditions: the endpoint goes (no default may make it ready)', obj: slice({ endpoints: [{ addresses: ['198.18.1.1'], conditions: { ready: 'no' } }] }), issue: { field: 'endpoints[0].conditions.ready', message: /true or false \(got "no"\); this endpoint is skipped$/ }, kept: (v) => v.endpoints.length, left: 0 },
    { kind: 'EndpointSlice', what: 'slice port without a number', obj: slice({ ports: [{ name: 'http' }, { name: 'b', port: 9 }] }), issue: { field: 'ports[0].port', message: /^required; this port is skipped$/ }, kept: (v) => v.ports.map((p) => p.name), left: ['b'] },
    { kind: 'EndpointSlice', what: 'duplicate slice port names', obj: slice({ ports: [{ name: 'a', port: 1 }, { name: 'a', port: 2 }] }), issue: { field: 'ports[1].name', message: /duplicate port name "a" \(also ports\[0\].name\); this port is skipped$/ }, kept: (v) => v.ports.map((p) => p.port), left: [1] },
    { kind: 'EndpointSlice', what: 'endpoint not a map', obj: slice({ endpoints: ['198.18.1.1', { addresses: ['198.18.1.2'] }] }), issue: { field: 'endpoints[0]', message: /must be a map.*; this endpoint is skipped$/ }, kept: (v) => v.endpoints.length, left: 1 },

    // A field: it falls back to its default, or is ignored.
    { what: 'bad externalTrafficPolicy', obj: service({ type: 'NodePort', externalTrafficPolicy: 'Global' }), issue: { field: 'spec.externalTrafficPolicy', message: /Cluster, Local \(got "Global"\); using the default Cluster$/ }, kept: (v) => v.externalTrafficPolicy, left: 'Cluster' },
    { what: 'bad internalTrafficPolicy', obj: service({ internalTrafficPolicy: 'local' }), issue: { field: 'spec.internalTrafficPolicy', message: /using the default Cluster$/ }, kept: (v) => v.internalTrafficPolicy, left: 'Cluster' },
    { what: 'bad sessionAffinity', obj: service({ sessionAffinity: 'Sticky' }), issue: { field: 'spec.sessionAffinity', message: /None, ClientIP \(got "Sticky"\); using the default None$/ }, kept: (v) => v.sessionAffinity, left: 'None' },
    { what: 'bad affinity timeout', obj: service({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } }), issue: { field: 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', message: /1\.\.86400.*; using the default timeout of 10800 s$/ }, kept: (v) => [v.sessionAffinity, v.sessionAffinityTimeoutSeconds], left: ['ClientIP', 10800] },
    { what: 'bad clusterIP: no ClusterIP, the rest is served', obj: service({ type: 'NodePort', clusterIP: '198.19.0.300', ports: [{ port: 80, nodePort: 30080 }] }), issue: { field: 'spec.clusterIP', message: /got "198.19.0.300"\); ignored: no ClusterIP from this field$/ }, kept: (v) => [v.clusterIPs, v.ports[0].nodePort], left: [[], 30080] },
    { what: 'clusterIPs[0] differs from clusterIP: clusterIPs is used', obj: service({ clusterIP: '198.19.0.10', clusterIPs: ['198.19.0.11'] }), issue: { field: 'spec.clusterIPs[0]', message: /must equal spec.clusterIP.*; spec.clusterIPs is used, as kube-proxy does$/ }, kept: (v) => v.clusterIPs, left: ['198.19.0.11'] },
    { what: 'headless NodePort: stays headless (kube-proxy skips it)', obj: service({ type: 'NodePort', clusterIP: 'None' }), issue: { field: 'spec.clusterIP', message: /not allowed for type NodePort; the service stays headless/ }, kept: (v) => [v.headless, v.clusterIPs], left: [true, []] },
    { what: 'bad loadBalancerIP', obj: service({ type: 'LoadBalancer', loadBalancerIP: 'lb' }), issue: { field: 'spec.loadBalancerIP', message: /got "lb"\); ignored$/ }, kept: (v) => v.loadBalancerIPs, left: [] },
    { what: 'nodePort out of range: the port stays, without a node port', obj: service({ type: 'NodePort', ports: [{ port: 80, nodePort: 70000 }] }), issue: { field: 'spec.ports[0].nodePort', message: /got 70000\); this port gets no node port$/ }, kept: (v) => v.ports, left: [{ name: '', protocol: 'TCP', port: 80, targetPort: 80 }] },
    { what: 'nodePort on a ClusterIP service', obj: service({ ports: [{ port: 80, nodePort: 30080 }] }), issue: { field: 'spec.ports[0].nodePort', message: /only allowed for types NodePort and LoadBalancer.*; this port gets no node port$/ }, kept: (v) => v.ports[0].nodePort, left: undefined },
    { what: 'duplicate node port', obj: service({ type: 'NodePort', ports: [{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 81, nodePort: 30080 }] }), issue: { field: 'spec.ports[1].nodePort', message: /duplicate node port 30080\/TCP.*; this port gets no node port$/ }, kept: (v) => v.ports.map((p) => [p.name, p.nodePort]), left: [['a', 30080], ['b', undefined]] },
    { what: 'label value not a string', obj: service({}, { metadata: { name: 'web', labels: { tier: 1, app: 'web' } } }), issue: { field: 'metadata.labels.tier', message: /must be a string \(got 1\); this label is ignored$/ }, kept: (v) => v.labels, left: { app: 'web' } },
    { what: 'status not a map', obj: service({}, { status: 'up' }), issue: { field: 'status', message: /must be a map.*; ignored$/ }, kept: (v) => v.loadBalancerIPs, left: [] },
    { kind: 'EndpointSlice', what: 'nodeName not a string: local to no node', obj: slice({ endpoints: [{ addresses: ['198.18.1.1'], nodeName: 7 }] }), issue: { field: 'endpoints[0].nodeName', message: /got 7\); ignored$/ }, kept: (v) => v.endpoints[0], left: { addresses: ['198.18.1.1'], ready: true, serving: true, terminating: false } },

    // Unknown fields (unknownFields "reject"): reported, ignored, the object kept.
    { what: 'typo in spec', obj: service({ potrs: [{ port: 81 }] }), issue: { field: 'spec.potrs', message: /^unknown field \(got \[\{"port":81\}\]\); ignored$/ }, kept: (v) => v.ports.map((p) => p.port), left: [80] },
    { what: 'typo in a port', obj: service({ ports: [{ port: 80, targetport: 8080 }] }), issue: { field: 'spec.ports[0].targetport', message: /^unknown field \(got 8080\); ignored$/ }, kept: (v) => v.ports[0].targetPort, left: 80 },
    { what: 'unknown metadata field', obj: service({}, { metadata: { name: 'web', lables: { a: 'b' } } }), issue: { field: 'metadata.lables', message: /^unknown field/ }, kept: (v) => v.labels, left: {} },
    { what: 'unknown top-level field', obj: service({}, { specs: {} }), issue: { field: 'specs', message: /^unknown field/ }, kept: (v) => v.name, left: 'web' },
    { kind: 'EndpointSlice', what: 'typo in conditions', obj: slice({ endpoints: [{ addresses: ['198.18.1.1'], conditions: { redy: false } }] }), issue: { field: 'endpoints[0].conditions.redy', message: /^unknown field \(got false\); ignored$/ }, kept: (v) => v.endpoints[0].ready, left: true },
  ];
  for (const c of cases) {
    it(`${c.kind ?? 'Service'}: ${c.what}${c.kept ? '' : ' (skipped)'}`, () => {
      const r = c.kind === 'EndpointSlice' ? normalizeEndpointSlice(c.obj, c.opts) : normalizeService(c.obj, c.opts);
      const hit = r.issues.find((i) => (c.issue.field === undefined || i.field === c.issue.field) && c.issue.message.test(i.message));
      assert.ok(hit, `no issue ${c.issue.field} ~ ${c.issue.message} in ${JSON.stringify(r.issues)}`);
      assert.equal(hit.object, c.issue.object ?? (c.kind === 'EndpointSlice' ? hit.object : 'Service default/web'));
      if (!c.kept) return assert.equal(r.value, undefined, 'the object is skipped');
      assert.ok(r.value, 'the object is kept');
      assert.deepEqual(c.kept(r.value as ServiceModel & EndpointSliceModel), c.left);
    });
  }

  it('fields Kubernetes defines but xlb does not use are accepted', () => {
    const r = normalizeService(
      service(
        {
          type: 'LoadBalancer',
          sessionAffinity: 'None',
          sessionAffinityConfig: { clientIP: { timeoutSeconds: 10800 } },
          ipFamilies: ['IPv4', 'IPv6'],
          ipFamilyPolicy: 'PreferDualStack',
          allocateLoadBalancerNodePorts: false,
          internalTrafficPolicy: 'Local',
          externalTrafficPolicy: 'Local',
          loadBalancerSourceRanges: ['203.0.113.0/24', '2001:db8::/32'],
          loadBalancerClass: 'xlb.example/lb',
          publishNotReadyAddresses: true,
          healthCheckNodePort: 32000,
          selector: { app: 'web' },
          trafficDistribution: 'PreferClose',
          ports: [{ name: 'http', port: 80, targetPort: 'http-alt', appProtocol: 'http', nodePort: 31000, protocol: 'TCP' }],
        },
        {
          metadata: {
            name: 'web',
            namespace: 'default',
            uid: 'u',
            resourceVersion: '1',
            generation: 2,
            creationTimestamp: new Date('2024-01-01T00:00:00Z'),
            managedFields: [{ manager: 'kubectl' }],
            labels: { app: 'web' },
            annotations: { note: 'x' },
            ownerReferences: [{ kind: 'Thing', name: 'o' }],
            finalizers: ['service.kubernetes.io/load-balancer-cleanup'],
          },
          status: { loadBalancer: { ingress: [{ ip: '203.0.113.9', ipMode: 'VIP', ports: [{ port: 80, protocol: 'TCP' }] }] }, conditions: [] },
        },
      ),
    );
    assert.deepEqual(r.issues, []);
    assert.equal(r.value!.loadBalancerClass, 'xlb.example/lb');
    assert.equal(r.value!.externalTrafficPolicy, 'Local');
    assert.deepEqual(r.value!.ports[0].targetPort, 'http-alt');
  });

  it('unknownFields "ignore" takes fields xlb does not know silently; "reject" reports them and keeps the object', () => {
    const obj = service({ futureField: true });
    const rejected = normalizeService(obj);
    assert.deepEqual(lines(rejected.issues), ['spec.futureField: unknown field (got true); ignored']);
    assert.deepEqual(rejected.value, normalizeService(service({})).value);
    assert.deepEqual(normalizeService(obj, { unknownFields: 'ignore' }), { value: rejected.value, issues: [] });
  });

  it('informer-style objects without kind and apiVersion are accepted', () => {
    const { apiVersion: _a, kind: _k, ...bare } = service({});
    assert.deepEqual(normalizeService(bare).issues, []);
    const { apiVersion: _b, kind: _l, ...bareSlice } = slice({});
    assert.deepEqual(normalizeEndpointSlice(bareSlice).issues, []);
  });

  it('one malformed field never takes another service down, nor the rest of its own', () => {
    const bad = service({ type: 'LoadBalancer', ports: [{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 'x' }], externalTrafficPolicy: 7, loadBalancerSourceRanges: ['nope'] }, { metadata: { name: 'bad' } });
    const r = normalizeObjects([bad, service({}, { metadata: { name: 'good' } })]);
    assert.deepEqual([...r.state.services.keys()], ['default/bad', 'default/good']);
    const v = r.state.services.get('default/bad')!;
    assert.deepEqual([v.ports.map((p) => p.name), v.externalTrafficPolicy, v.loadBalancerSourceRanges], [['a'], 'Cluster', []]);
    assert.deepEqual(
      r.issues.map((i) => `${i.object} ${i.field}`),
      [
        'Service default/bad spec.externalTrafficPolicy',
        'Service default/bad spec.ports[1].port',
        'Service default/bad spec.loadBalancerSourceRanges[0]',
        'Service default/bad spec.loadBalancerSourceRanges',
      ],
    );
  });
});

describe('normalize: fields recorded for the translator', () => {
  it('Service addresses are read as kube-proxy reads them (ParseIPSloppy): leading zeros decimal, IPv4-mapped IPv6 as IPv4, in canonical text', () => {
    const r = normalizeService(
      service(
        { type: 'LoadBalancer', clusterIP: '198.019.000.010', clusterIPs: ['198.019.000.010'], externalIPs: ['203.0.113.05', '::ffff:192.0.2.32', 'FD00:0::1'] },
        { status: { loadBalancer: { ingress: [{ ip: '192.000.002.010' }] } } },
      ),
    );
    assert.deepEqual(r.issues, []);
    assert.deepEqual([r.value!.clusterIPs, r.value!.externalIPs, r.value!.loadBalancerIPs], [['198.19.0.10'], ['203.0.113.5', '192.0.2.32', 'fd00::1'], ['192.0.2.10']]);
  });

  it('spec.trafficDistribution: any string as written (kube-proxy does not read it)', () => {
    for (const t of ['PreferClose', 'PreferSameZone', 'PreferSameNode', 'SomethingNew']) {
      const r = normalizeService(service({ trafficDistribution: t }));
      assert.deepEqual([r.value!.trafficDistribution, r.issues], [t, []]);
    }
    assert.equal('trafficDistribution' in normalizeService(service({})).value!, false);
    const bad = normalizeService(service({ trafficDistribution: 1 }));
    assert.deepEqual([bad.value!.trafficDistribution, lines(bad.issues)], [undefined, ['spec.trafficDistribution: must be a string (got 1); ignored']]);
  });

  // API: healthCheckNodePort "may only be set when `type` is 'LoadBalancer' and
  // `externalTrafficPolicy` is 'Local'"; kube-proxy reads it only then (NeedsHealthCheck).
  const healthCases: Array<[string, Record<string, unknown>, number | undefined, RegExp | undefined]> = [
    ['LoadBalancer with Local: kept (kube-proxy service_test "only local traffic policy")', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 345 }, 345, undefined],
    ['absent: none (the health check module reports the missing port)', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' }, undefined, undefined],
    ['0 is Go\'s "not set"', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 0 }, undefined, undefined],
    ['LoadBalancer with Cluster: ignored', { type: 'LoadBalancer', externalTrafficPolicy: 'Cluster', healthCheckNodePort: 32000 }, undefined, /may only be set when type is LoadBalancer and externalTrafficPolicy is Local, not LoadBalancer with Cluster \(got 32000\); ignored/],
    ['NodePort with Local: ignored', { type: 'NodePort', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000 }, undefined, /not NodePort with Local/],
    ['ClusterIP: ignored', { healthCheckNodePort: 32000 }, undefined, /not ClusterIP with Cluster/],
    ['out of range: ignored', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 70000 }, undefined, /1\.\.65535 \(got 70000\); ignored/],
  ];
  for (const [what, spec, expected, issue] of healthCases) {
    it(`spec.healthCheckNodePort, ${what}`, () => {
      const r = normalizeService(service(spec));
      assert.equal(r.value!.healthCheckNodePort, expected);
      if (!issue) assert.deepEqual(r.issues, []);
      else assert.deepEqual(r.issues.map((i) => [i.field, issue.test(i.message)]), [['spec.healthCheckNodePort', true]], JSON.stringify(r.issues));
    });
  }

  it('spec.allocateLoadBalancerNodePorts: kept for LoadBalancer; elsewhere reported and ignored (API)', () => {
    assert.equal(normalizeService(service({ type: 'LoadBalancer', allocateLoadBalancerNodePorts: false })).value!.allocateLoadBalancerNodePorts, false);
    assert.equal(normalizeService(service({ type: 'LoadBalancer' })).value!.allocateLoadBalancerNodePorts, undefined);
    const r = normalizeService(service({ type: 'NodePort', allocateLoadBalancerNodePorts: true }));
    assert.deepEqual([r.value!.allocateLoadBalancerNodePorts, lines(r.issues)], [undefined, ['spec.allocateLoadBalancerNodePorts: may only be used when type is LoadBalancer, not NodePort; ignored']]);
  });

  it('ingress ipMode Proxy addresses go to proxyModeIPs, not loadBalancerIPs, and spec.loadBalancerIP does not stand in for them', () => {
    const r = normalizeService(
      service({ type: 'LoadBalancer', loadBalancerIP: '203.0.113.3' }, { status: { loadBalancer: { ingress: [{ ip: '203.0.113.3', ipMode: 'Proxy' }, { hostname: 'lb.example', ipMode: 'Proxy' }] } } }),
    );
    assert.deepEqual(r.issues, []);
    assert.deepEqual([r.value!.loadBalancerIPs, r.value!.proxyModeIPs], [[], ['203.0.113.3']]);
    const mixed = normalizeService(service({ type: 'LoadBalancer' }, { status: { loadBalancer: { ingress: [{ ip: '203.0.113.2' }, { ip: '203.0.113.3', ipMode: 'Proxy' }] } } })).value!;
    assert.deepEqual([mixed.loadBalancerIPs, mixed.proxyModeIPs], [['203.0.113.2'], ['203.0.113.3']]);
    assert.equal('proxyModeIPs' in normalizeService(service({})).value!, false);
  });
});

describe('normalize: loadBalancerSourceRanges as kube-proxy reads them', () => {
  // ParseCIDRSloppy after strings.TrimSpace (pkg/proxy/serviceport.go).
  const rangeCases: Array<[string, string | undefined]> = [
    ['10.1.2.0/28', '10.1.2.0/28'],
    [' 10.1.2.0/28', '10.1.2.0/28'], // kube-proxy service_test "extra space in LoadBalancerSourceRanges"
    ['\t203.0.113.0/24 \n', '203.0.113.0/24'],
    ['0.0.0.0/1', '0.0.0.0/1'], // kube-proxy service_test
    ['2001:db8::/32', '2001:db8::/32'], // kube-proxy service_test
    ['10.0.0.1/8', '10.0.0.0/8'], // host bits set: the network
    ['1.2.3.4/28', '1.2.3.0/28'], // kube-proxy proxier tests' " 1.2.3.4/28"
    ['192.168.1.255/31', '192.168.1.254/31'],
    ['010.001.002.003/24', '10.1.2.0/24'], // leading zeros are decimal, never octal
    ['10.0.0.0/08', '10.0.0.0/8'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['2001:DB8:0:0:1::1/64', '2001:db8::/64'],
    ['2001:db8::1/128', '2001:db8::1/128'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001/48', '2001:db8::/48'],
    ['::/0', '::/0'],
    ['1:0:0:2:0:0:0:3/128', '1:0:0:2::3/128'], // the longer zero run is compressed
    ['::ffff:1.2.3.4/120', '1.2.3.0/24'], // Go makes an IPv4-mapped network IPv4
    ['10.0.0.0/33', undefined],
    ['2001:db8::/129', undefined],
    ['10.0.0.0', undefined],
    ['10.0.0.0/', undefined],
    ['10.0.0.0/8/9', undefined],
    ['10.0.0.0/-8', undefined],
    ['10.0.0.0/+8', undefined],
    ['256.0.0.0/8', undefined],
    ['10.0.0/8', undefined],
    ['10.0.0.0.0/8', undefined],
    ['fe80::1%eth0/64', undefined],
    ['2001:db8:::/32', undefined],
    ['1::2::3/64', undefined],
    ['', undefined],
    ['  ', undefined],
    ['10.0.0.0 /8', undefined],
  ];
  for (const [input, expected] of rangeCases) {
    it(`${JSON.stringify(input)} → ${expected ?? 'not a CIDR'}`, () => {
      assert.equal(normalizeSourceRange(input), expected);
    });
  }

  it('parseCIDRSloppy does not trim (the caller does, as kube-proxy does); parseIPSloppy reads addresses the same way', () => {
    assert.equal(parseCIDRSloppy(' 10.0.0.0/8'), undefined);
    assert.equal(parseIPSloppy('010.000.000.001'), '10.0.0.1');
    assert.equal(parseIPSloppy('FD00:0::0001'), 'fd00::1');
    assert.equal(parseIPSloppy('::ffff:10.0.0.1'), '10.0.0.1');
    assert.equal(parseIPSloppy('10.0.0.256'), undefined);
  });

  it('entries are stored normalized; a bad entry is skipped and the others still apply', () => {
    const r = normalizeService(service({ type: 'LoadBalancer', loadBalancerSourceRanges: [' 10.1.2.3/28', 'nope', '2001:DB8::1/32', 7] }));
    assert.deepEqual(r.value!.loadBalancerSourceRanges, ['10.1.2.0/28', '2001:db8::/32']);
    assert.deepEqual(lines(r.issues), [
      'spec.loadBalancerSourceRanges[1]: not a CIDR (ADDRESS/PREFIX) (got "nope"); this range is skipped',
      'spec.loadBalancerSourceRanges[3]: not a CIDR (ADDRESS/PREFIX) (got 7); this range is skipped',
    ]);
  });

  it('all entries bad: no range, every source accepted, as kube-proxy does with what is left; reported', () => {
    const r = normalizeService(service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/40'] }));
    assert.deepEqual(r.value!.loadBalancerSourceRanges, []);
    assert.deepEqual(lines(r.issues), [
      'spec.loadBalancerSourceRanges[0]: not a CIDR (ADDRESS/PREFIX) (got "10.0.0.0/40"); this range is skipped',
      'spec.loadBalancerSourceRanges: no usable range left: every source address is accepted, as kube-proxy does with no range',
    ]);
  });

  it('the source-ranges annotation is not read (kube-proxy reads only the field); a LoadBalancer that has only the annotation is reported', () => {
    const annotations = { 'service.beta.kubernetes.io/load-balancer-source-ranges': '10.0.0.0/8, 192.168.0.0/16' };
    const only = normalizeService(service({ type: 'LoadBalancer' }, { metadata: { name: 'web', annotations } }));
    assert.deepEqual(only.value!.loadBalancerSourceRanges, []);
    assert.deepEqual(
      only.issues.map((i) => i.field),
      ['metadata.annotations["service.beta.kubernetes.io/load-balancer-source-ranges"]'],
    );
    assert.match(only.issues[0].message, /^not applied: kube-proxy reads only spec.loadBalancerSourceRanges/);
    // With the field set, the field is what applies, and nothing is reported.
    const both = normalizeService(service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['203.0.113.0/24'] }, { metadata: { name: 'web', annotations } }));
    assert.deepEqual([both.value!.loadBalancerSourceRanges, both.issues], [['203.0.113.0/24'], []]);
    // A blank annotation says nothing.
    const blank = normalizeService(service({ type: 'LoadBalancer' }, { metadata: { name: 'web', annotations: { 'service.beta.kubernetes.io/load-balancer-source-ranges': ' ' } } }));
    assert.deepEqual(blank.issues, []);
  });
});

describe('normalize: objects kube-proxy does not list (cmd/kube-proxy/app/server.go)', () => {
  const labelled = (label: string, extra: Record<string, unknown> = {}) =>
    slice({ metadata: { name: 'x-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'x', [label]: '' } }, ...extra });

  for (const label of ['service.kubernetes.io/headless', 'service.kubernetes.io/service-proxy-name']) {
    it(`an EndpointSlice labelled ${label} is ignored, not an issue, even when malformed`, () => {
      const r = normalizeEndpointSlice(labelled(label, { addressType: 'IPv5', endpoints: 'x' }));
      assert.deepEqual([r.value, r.issues], [undefined, []]);
      assert.match(r.ignored!, new RegExp(`^label ${label.replace(/\./g, '\\.')}: .*kube-proxy does not read it$`));
      const all = normalizeObjects([labelled(label)]);
      assert.deepEqual([all.state.endpointSlices.size, all.issues], [0, []]);
      assert.deepEqual(all.ignored, [`EndpointSlice shop/x-1 (${r.ignored})`]);
    });
  }

  it('a Service with those labels still reaches the model (the translator says why it is not served)', () => {
    for (const label of ['service.kubernetes.io/headless', 'service.kubernetes.io/service-proxy-name']) {
      const r = normalizeObjects([service({}, { metadata: { name: 'web', labels: { [label]: 'other' } } })]);
      assert.deepEqual([[...r.state.services.keys()], r.issues, r.ignored], [['default/web'], [], []]);
      assert.equal(r.state.services.get('default/web')!.labels[label], 'other');
    }
  });
});

describe('normalizeObjects', () => {
  it('expands List and typed lists, and reports non-objects and objects without kind', () => {
    const r = normalizeObjects([
      { apiVersion: 'v1', kind: 'List', items: [service({})] },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSliceList', items: [slice({})] },
      null,
      'hello',
      { metadata: { name: 'x' } },
    ]);
    assert.deepEqual([...r.state.services.keys()], ['default/web']);
    assert.deepEqual([...r.state.endpointSlices.keys()], ['default/web-abc12']);
    assert.deepEqual(
      r.issues.map((i) => `${i.object}|${i.field}`),
      ['item 3|', 'object at item 4|kind'],
    );
  });

  it('a second object with the same name is an issue and the first one is kept', () => {
    const r = normalizeObjects([service({ clusterIP: '198.19.0.1' }), service({ clusterIP: '198.19.0.2' })]);
    assert.deepEqual(r.state.services.get('default/web')!.clusterIPs, ['198.19.0.1']);
    assert.equal(r.issues.length, 1);
    assert.match(r.issues[0].message, /duplicate Service default\/web at item 1/);
  });

  it('an object kept with parts dropped is in the state and its issues in the result', () => {
    const r = normalizeObjects([slice({ endpoints: [{ addresses: ['198.18.1.1'] }, { addresses: ['x'] }] })]);
    assert.equal(r.state.endpointSlices.get('default/web-abc12')!.endpoints.length, 1);
    assert.deepEqual(
      r.issues.map((i) => i.field),
      ['endpoints[1].addresses[0]', 'endpoints[1].addresses'],
    );
  });

  it('objects of other kinds are ignored without an issue', () => {
    const r = normalizeObjects([{ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'web', namespace: 'shop' } }, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } }]);
    assert.deepEqual(r.issues, []);
    assert.deepEqual(r.ignored, ['Endpoints shop/web', 'Pod default/p']);
  });

  it('an unnamed object is located by the position the caller gives', () => {
    const r = normalizeObjects([service({}, { metadata: {} })], undefined, () => 'm.yaml:12');
    assert.equal(r.issues[0].object, 'Service default/<no name at m.yaml:12>');
  });
});

describe('EndpointSlice fast path (unknown fields ignored)', () => {
  /** A slice as the API server sends it, with every field the schema reads. */
  const base = () => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: 'web-abcde',
      namespace: 'shop',
      labels: { 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
      annotations: { note: 'x' },
      resourceVersion: '42',
      managedFields: [{ manager: 'kube-controller-manager' }],
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080, appProtocol: 'http' }, { name: 'dns', protocol: 'UDP', port: 53 }],
    endpoints: [
      { addresses: ['198.18.0.10'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-a', zone: 'z1', targetRef: { kind: 'Pod', name: 'web-0', namespace: 'shop' } },
      { addresses: ['198.18.0.11'], conditions: { ready: false, serving: true, terminating: true }, hints: { forZones: [{ name: 'z1' }], forNodes: [{ name: 'node-a' }] } },
      { addresses: ['198.18.0.12'] },
    ],
  });

  /** Values to put anywhere: right types, wrong types, edge values. */
  const oddValues: unknown[] = [null, undefined, '', 'x', 'UPPER', 'a'.repeat(64), 0, 1, -1, 65535, 65536, 1.5, true, false, [], [1], {}, { a: 1 }, '198.18.0.1', '010.0.0.1', 'TCP', 'SCTP', 'IPv6', 'FQDN', '::1'];

  /** Every path to a leaf or container of `obj`. */
  function paths(obj: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
    const out: Array<Array<string | number>> = [prefix];
    if (obj && typeof obj === 'object') for (const [k, v] of Object.entries(obj)) out.push(...paths(v, [...prefix, Array.isArray(obj) ? Number(k) : k]));
    return out;
  }
  function setAt(obj: Record<string, unknown>, path: Array<string | number>, v: unknown): unknown {
    if (!path.length) return v;
    let o = obj as Record<string | number, unknown>;
    for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
    const last = path[path.length - 1];
    if (v === undefined && !Array.isArray(o)) delete o[last];
    else o[last] = v;
    return obj;
  }

  const fast = (o: unknown) => normalizeEndpointSlice(o, { unknownFields: 'ignore' });
  const schema = (o: unknown) => normalizeEndpointSlice(o, { unknownFields: 'ignore', fastPath: false });

  it('takes the plain shape, with the same model as the schema', () => {
    assert.equal(plainEndpointSlice(base()), true);
    const r = fast(base());
    assert.ok(r.value);
    assert.deepEqual(r.value.endpoints[1].hints, { forZones: ['z1'], forNodes: ['node-a'] });
    assert.deepEqual(r, schema(base()));
  });

  it('gives the same result as the schema for every field set to every odd value', () => {
    let tried = 0;
    let fastTaken = 0;
    let partial = 0;
    for (const path of paths(base())) {
      for (const v of oddValues) {
        const o = setAt(base(), path, v);
        if (plainEndpointSlice(o)) fastTaken++;
        // Equal results (model and issues): the fast checks never accept
        // what the schema rejects, and what they accept becomes the same model.
        const f = fast(o);
        assert.deepEqual(f, schema(o), `${path.join('.') || '(root)'} = ${JSON.stringify(v)}`);
        if (f.value && f.issues.length) partial++;
        tried++;
      }
    }
    assert.ok(tried > 1000 && fastTaken > 100 && partial > 100, `${tried} variants, ${fastTaken} through the fast path, ${partial} kept with parts dropped`);
  });

  it('Services too, in both modes: the same result as the schema for every field set to every odd value', () => {
    const svc = () => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'shop', labels: { app: 'web' }, annotations: { note: 'x' }, creationTimestamp: '2026-12-06T10:00:00Z', resourceVersion: '7' },
      spec: {
        type: 'LoadBalancer',
        clusterIP: '198.18.128.10',
        clusterIPs: ['198.18.128.10'],
        externalIPs: ['192.0.2.7'],
        ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }, { name: 'dns', protocol: 'UDP', port: 53, targetPort: 'dns' }],
        externalTrafficPolicy: 'Local',
        healthCheckNodePort: 32000,
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
        loadBalancerSourceRanges: ['203.0.113.0/24'],
        selector: { app: 'web' },
      },
      status: { loadBalancer: { ingress: [{ ip: '192.0.2.10', ipMode: 'VIP' }, { ip: '192.0.2.11', ipMode: 'Proxy' }] } },
    });
    let tried = 0;
    for (const unknownFields of ['ignore', 'reject'] as const) {
      for (const path of paths(svc())) {
        for (const v of oddValues) {
          const o = setAt(svc(), path, v);
          assert.deepEqual(
            normalizeService(o, { unknownFields }),
            normalizeService(o, { unknownFields, fastPath: false }),
            `${unknownFields}: ${path.join('.') || '(root)'} = ${JSON.stringify(v)}`,
          );
          tried++;
        }
      }
    }
    assert.ok(tried > 2000, `${tried} variants`);
  });

  it('is not used when unknown fields are rejected (manifests files report them, and keep the object)', () => {
    const o = base() as Record<string, unknown>;
    o.extra = 1;
    const r = normalizeEndpointSlice(o, { unknownFields: 'reject' });
    assert.deepEqual(lines(r.issues), ['extra: unknown field (got 1); ignored']);
    assert.deepEqual(r.value, fast(base()).value);
  });
});

describe('normalize: the API server\'s size limits (issue 21)', () => {
  const endpoints = (n: number) => Array.from({ length: n }, (_, i) => ({ addresses: [`198.19.${i >> 8}.${i & 255}`], conditions: { ready: true } }));
  it('a slice of 1000 endpoints is read; one of 1001 is skipped with an issue naming the field', () => {
    const ok = normalizeObjects([slice({ endpoints: endpoints(1000) })]);
    assert.deepEqual(ok.issues, []);
    assert.equal([...ok.state.endpointSlices.values()][0].endpoints.length, 1000);
    const big = normalizeObjects([slice({ endpoints: endpoints(1001) })]);
    assert.equal(big.state.endpointSlices.size, 0);
    assert.deepEqual(big.issues.map((i) => [i.field, i.message]), [['endpoints', '1001 endpoints, more than the 1000 an EndpointSlice may hold; the EndpointSlice is skipped']]);
  });
  it('a slice of more than 100 ports is skipped', () => {
    const ports = Array.from({ length: 101 }, (_, i) => ({ name: `p${i}`, port: 1000 + i, protocol: 'TCP' }));
    const r = normalizeObjects([slice({ ports })]);
    assert.equal(r.state.endpointSlices.size, 0);
    assert.match(r.issues[0].message, /^101 ports, more than the 100/);
  });
});

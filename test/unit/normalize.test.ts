/**
 * src/sources/normalize: Kubernetes objects as `kubectl get -o yaml` prints
 * them → the model, with the API's defaults and issues naming object and field.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseManifests } from '../../src/sources/file/parse.js';
import { normalizeEndpointSlice, normalizeObjects, normalizeService, plainEndpointSlice } from '../../src/sources/normalize.js';
import type { EndpointSliceModel, ServiceModel } from '../../src/model/types.js';

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
    assert.deepEqual(
      s.endpoints.map((e) => [e.ready, e.serving, e.terminating]),
      [
        [true, true, false],
        [false, false, false],
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

  it('an invalid object is skipped with its issues; the valid ones still apply', () => {
    const r = fixture('invalid.yaml');
    assert.deepEqual([...r.state.services.keys()], ['default/good']);
    assert.equal(r.state.endpointSlices.size, 0);
    assert.deepEqual(
      r.issues.map((i) => `${i.object} ${i.field}`),
      [
        'Service default/typo spec.potrs',
        'Service default/badport spec.ports[1].port',
        'Service default/badip spec.externalIPs[0]',
        'Service default/badip spec.ports[0].protocol',
        'EndpointSlice default/orphan metadata.labels["kubernetes.io/service-name"]',
        'EndpointSlice default/orphan endpoints[0].addresses[0]',
      ],
    );
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

  const conditionCases: Array<[string, Record<string, unknown> | undefined, [boolean, boolean, boolean]]> = [
    ['no conditions', undefined, [true, true, false]],
    ['empty conditions', {}, [true, true, false]],
    ['ready false: serving follows ready', { ready: false }, [false, false, false]],
    ['ready true, nothing else', { ready: true }, [true, true, false]],
    ['terminating and still serving', { ready: false, serving: true, terminating: true }, [false, true, true]],
    ['terminating, no longer serving', { ready: false, serving: false, terminating: true }, [false, false, true]],
    ['explicit nulls mean absent', { ready: null, serving: null, terminating: null }, [true, true, false]],
  ];
  for (const [what, conditions, [ready, serving, terminating]] of conditionCases) {
    it(`endpoint conditions, ${what} → ready=${ready} serving=${serving} terminating=${terminating}`, () => {
      const r = normalizeEndpointSlice(slice({ endpoints: [{ addresses: ['198.18.1.1'], ...(conditions ? { conditions } : {}) }] }));
      assert.deepEqual(r.issues, []);
      const e = r.value!.endpoints[0];
      assert.deepEqual([e.ready, e.serving, e.terminating], [ready, serving, terminating]);
    });
  }

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

describe('normalize: issues name the object and the field', () => {
  const cases: Array<{ what: string; obj: Record<string, unknown>; kind?: 'EndpointSlice'; issue: { object?: string; field?: string; message: RegExp } }> = [
    { what: 'missing metadata.name', obj: service({}, { metadata: { namespace: 'shop' } }), issue: { object: 'Service shop/<no name>', field: 'metadata.name', message: /^required$/ } },
    { what: 'port 0', obj: service({ ports: [{ port: 0 }] }), issue: { object: 'Service default/web', field: 'spec.ports[0].port', message: /1\.\.65535 \(got 0\)/ } },
    { what: 'port 70000 on the second port', obj: service({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 70000 }] }), issue: { field: 'spec.ports[1].port', message: /got 70000/ } },
    { what: 'port as a string', obj: service({ ports: [{ port: '80' }] }), issue: { field: 'spec.ports[0].port', message: /got "80"/ } },
    { what: 'missing port', obj: service({ ports: [{ name: 'http' }] }), issue: { field: 'spec.ports[0].port', message: /^required$/ } },
    { what: 'bad protocol', obj: service({ ports: [{ port: 80, protocol: 'tcp' }] }), issue: { field: 'spec.ports[0].protocol', message: /TCP, UDP or SCTP \(got "tcp"\)/ } },
    { what: 'bad clusterIP', obj: service({ clusterIP: '198.19.0.300' }), issue: { field: 'spec.clusterIP', message: /got "198.19.0.300"/ } },
    { what: 'bad clusterIPs entry', obj: service({ clusterIP: '198.19.0.10', clusterIPs: ['198.19.0.10', '1.2.3'] }), issue: { field: 'spec.clusterIPs[1]', message: /got "1.2.3"/ } },
    { what: 'clusterIPs[0] differs from clusterIP', obj: service({ clusterIP: '198.19.0.10', clusterIPs: ['198.19.0.11'] }), issue: { field: 'spec.clusterIPs[0]', message: /must equal spec.clusterIP/ } },
    { what: 'bad externalIP', obj: service({ externalIPs: ['203.0.113.5', '203.0.113.05'] }), issue: { field: 'spec.externalIPs[1]', message: /not an IPv4 or IPv6 address \(got "203.0.113.05"\)/ } },
    { what: 'bad loadBalancerIP', obj: service({ type: 'LoadBalancer', loadBalancerIP: 'lb' }), issue: { field: 'spec.loadBalancerIP', message: /got "lb"/ } },
    { what: 'bad ingress IP', obj: service({ type: 'LoadBalancer' }, { status: { loadBalancer: { ingress: [{ ip: '203.0.113.999' }] } } }), issue: { field: 'status.loadBalancer.ingress[0].ip', message: /got "203.0.113.999"/ } },
    { what: 'nodePort out of range', obj: service({ type: 'NodePort', ports: [{ port: 80, nodePort: 70000 }] }), issue: { field: 'spec.ports[0].nodePort', message: /got 70000/ } },
    { what: 'nodePort on a ClusterIP service', obj: service({ ports: [{ port: 80, nodePort: 30080 }] }), issue: { field: 'spec.ports[0].nodePort', message: /only allowed for types NodePort and LoadBalancer/ } },
    { what: 'duplicate node port', obj: service({ type: 'NodePort', ports: [{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 81, nodePort: 30080 }] }), issue: { field: 'spec.ports[1].nodePort', message: /duplicate node port 30080\/TCP/ } },
    { what: 'duplicate port names', obj: service({ ports: [{ name: 'http', port: 80 }, { name: 'http', port: 81 }] }), issue: { field: 'spec.ports[1].name', message: /duplicate port name "http" \(also spec.ports\[0\].name\)/ } },
    { what: 'two unnamed ports', obj: service({ ports: [{ port: 80 }, { port: 81 }] }), issue: { field: 'spec.ports[1].name', message: /duplicate port name ""/ } },
    { what: 'duplicate port and protocol', obj: service({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80 }] }), issue: { field: 'spec.ports[1].port', message: /duplicate port 80\/TCP/ } },
    { what: 'no ports on a ClusterIP service', obj: service({ ports: [] }), issue: { field: 'spec.ports', message: /needs at least one port/ } },
    { what: 'bad type', obj: service({ type: 'Ingress' }), issue: { field: 'spec.type', message: /one of ClusterIP, NodePort, LoadBalancer, ExternalName/ } },
    { what: 'bad externalTrafficPolicy', obj: service({ externalTrafficPolicy: 'Global' }), issue: { field: 'spec.externalTrafficPolicy', message: /Cluster, Local/ } },
    { what: 'typo in spec', obj: service({ potrs: [{ port: 80 }] }), issue: { field: 'spec.potrs', message: /^unknown field/ } },
    { what: 'typo in a port', obj: service({ ports: [{ port: 80, targetport: 8080 }] }), issue: { field: 'spec.ports[0].targetport', message: /^unknown field \(got 8080\)/ } },
    { what: 'unknown metadata field', obj: service({}, { metadata: { name: 'web', lables: { a: 'b' } } }), issue: { field: 'metadata.lables', message: /^unknown field/ } },
    { what: 'unknown top-level field', obj: service({}, { specs: {} }), issue: { field: 'specs', message: /^unknown field/ } },
    { what: 'wrong apiVersion', obj: service({}, { apiVersion: 'v2' }), issue: { field: 'apiVersion', message: /must be v1/ } },
    { what: 'label value not a string', obj: service({}, { metadata: { name: 'web', labels: { tier: 1 } } }), issue: { field: 'metadata.labels.tier', message: /must be a string \(got 1\)/ } },
    { what: 'bad name', obj: service({}, { metadata: { name: 'Web:80' } }), issue: { object: 'Service default/Web:80', field: 'metadata.name', message: /DNS-1123/ } },
    { what: 'bad source range', obj: service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['203.0.113.0/33'] }), issue: { field: 'spec.loadBalancerSourceRanges[0]', message: /CIDR/ } },
    { kind: 'EndpointSlice', what: 'slice without service-name label', obj: slice({ metadata: { name: 'x', namespace: 'default' } }), issue: { object: 'EndpointSlice default/x', field: 'metadata.labels["kubernetes.io/service-name"]', message: /required/ } },
    { kind: 'EndpointSlice', what: 'bad IPv4 endpoint address', obj: slice({ endpoints: [{ addresses: ['198.18.1.1'] }, { addresses: ['fd00::1'] }] }), issue: { object: 'EndpointSlice default/web-abc12', field: 'endpoints[1].addresses[0]', message: /not an IPv4 address \(got "fd00::1"\)/ } },
    { kind: 'EndpointSlice', what: 'bad IPv6 endpoint address', obj: slice({ addressType: 'IPv6', endpoints: [{ addresses: ['198.18.1.1'] }] }), issue: { field: 'endpoints[0].addresses[0]', message: /not an IPv6 address/ } },
    { kind: 'EndpointSlice', what: 'endpoint without addresses', obj: slice({ endpoints: [{ addresses: [] }] }), issue: { field: 'endpoints[0].addresses', message: /1\.\.100 addresses/ } },
    { kind: 'EndpointSlice', what: 'slice port without a number', obj: slice({ ports: [{ name: 'http' }] }), issue: { field: 'ports[0].port', message: /^required$/ } },
    { kind: 'EndpointSlice', what: 'bad addressType', obj: slice({ addressType: 'IPv5' }), issue: { field: 'addressType', message: /IPv4, IPv6, FQDN/ } },
    { kind: 'EndpointSlice', what: 'typo in conditions', obj: slice({ endpoints: [{ addresses: ['198.18.1.1'], conditions: { redy: true } }] }), issue: { field: 'endpoints[0].conditions.redy', message: /^unknown field/ } },
    { kind: 'EndpointSlice', what: 'duplicate slice port names', obj: slice({ ports: [{ name: 'a', port: 1 }, { name: 'a', port: 2 }] }), issue: { field: 'ports[1].name', message: /duplicate port name "a"/ } },
  ];
  for (const c of cases) {
    it(`${c.kind ?? 'Service'}: ${c.what}`, () => {
      const r = c.kind === 'EndpointSlice' ? normalizeEndpointSlice(c.obj) : normalizeService(c.obj);
      assert.equal(r.value, undefined, 'the object is rejected');
      const hit = r.issues.find((i) => (c.issue.field === undefined || i.field === c.issue.field) && c.issue.message.test(i.message));
      assert.ok(hit, `no issue ${c.issue.field} ~ ${c.issue.message} in ${JSON.stringify(r.issues)}`);
      assert.equal(hit.object, c.issue.object ?? (c.kind === 'EndpointSlice' ? hit.object : 'Service default/web'));
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

  it('unknownFields "ignore" accepts an object with fields xlb does not know', () => {
    const obj = service({ futureField: true });
    assert.equal(normalizeService(obj).value, undefined);
    assert.deepEqual(normalizeService(obj, { unknownFields: 'ignore' }).issues, []);
  });

  it('informer-style objects without kind and apiVersion are accepted', () => {
    const { apiVersion: _a, kind: _k, ...bare } = service({});
    assert.deepEqual(normalizeService(bare).issues, []);
    const { apiVersion: _b, kind: _l, ...bareSlice } = slice({});
    assert.deepEqual(normalizeEndpointSlice(bareSlice).issues, []);
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
      { addresses: ['198.18.0.11'], conditions: { ready: false, serving: true, terminating: true }, hints: { forZones: [{ name: 'z1' }] } },
      { addresses: ['198.18.0.12'] },
    ],
  });

  /** Values to put anywhere: right types, wrong types, edge values. */
  const oddValues: unknown[] = [null, undefined, '', 'x', 'UPPER', 'a'.repeat(64), 0, 1, -1, 65535, 65536, 1.5, true, false, [], [1], {}, { a: 1 }, '198.18.0.1', 'TCP', 'SCTP', 'IPv6', 'FQDN', '::1'];

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
    assert.deepEqual(r, schema(base()));
  });

  it('gives the same result as the schema for every field set to every odd value', () => {
    let tried = 0;
    let fastTaken = 0;
    for (const path of paths(base())) {
      for (const v of oddValues) {
        const o = setAt(base(), path, v);
        if (plainEndpointSlice(o)) fastTaken++;
        // Equal results: the fast check never accepts what the schema
        // rejects, and what it accepts becomes the same model.
        assert.deepEqual(fast(o), schema(o), `${path.join('.') || '(root)'} = ${JSON.stringify(v)}`);
        tried++;
      }
    }
    assert.ok(tried > 1000 && fastTaken > 100, `${tried} variants, ${fastTaken} through the fast path`);
  });

  it('is not used when unknown fields are rejected (manifests files report them)', () => {
    const o = base() as Record<string, unknown>;
    o.extra = 1;
    const r = normalizeEndpointSlice(o, { unknownFields: 'reject' });
    assert.equal(r.value, undefined);
    assert.deepEqual(r.issues.map((i) => i.field), ['extra']);
  });
});

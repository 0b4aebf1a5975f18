/**
 * The synthetic cluster of the Kubernetes benchmark, and the child process
 * that serves it: the in-test API server (test/helpers/fake-apiserver.ts)
 * runs in its own process so that its JSON encoding does not share the
 * agent's thread (a real API server is another machine).
 *
 * Shape: `services` LoadBalancer Services, each one TCP port 80 → 8080 with
 * a VIP in status.loadBalancer.ingress, and one EndpointSlice per Service
 * with `endpoints` ready endpoints on 8080. Every address is in
 * 198.18.0.0/15 (RFC 2544 benchmarking space): endpoints from 198.18.0.0,
 * VIPs from 198.19.160.0, cluster IPs from 198.19.200.0.
 *
 * Protocol (process messages): the child sends `{ ready, kubeconfig, url }`;
 * the parent sends `{ cmd: 'flip', service }` to replace endpoint 0 of that
 * service's slice (alternating between its own address and 198.19.250.1),
 * answered `{ flipped, service }` once the watch events are written; and
 * `{ cmd: 'exit' }`. After each list response the child sends
 * `{ listSent, at }`: the resource, and when its last byte went out.
 */
import { FakeApiServer } from '../../test/helpers/fake-apiserver.js';
import { u32ToIp } from '../../src/util/ip.js';
import type { BenchService } from '../convergence/manifests.js';

const BASE_ENDPOINT = 0xc6120000; // 198.18.0.0
const BASE_VIP = 0xc613a000; // 198.19.160.0
const BASE_CLUSTER_IP = 0xc613c800; // 198.19.200.0
/** Where endpoint 0 of a flipped slice goes and comes back from. */
export const FLIP_ADDRESS = '198.19.250.1';

/** Service i of the cluster. */
export function benchService(i: number) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `svc-${i}`, namespace: `ns-${i % 50}`, labels: { app: `svc-${i}` } },
    spec: {
      type: 'LoadBalancer',
      clusterIP: u32ToIp(BASE_CLUSTER_IP + i),
      clusterIPs: [u32ToIp(BASE_CLUSTER_IP + i)],
      allocateLoadBalancerNodePorts: false,
      ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }],
      selector: { app: `svc-${i}` },
      sessionAffinity: 'None',
      externalTrafficPolicy: 'Cluster',
      internalTrafficPolicy: 'Cluster',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
    },
    status: { loadBalancer: { ingress: [{ ip: u32ToIp(BASE_VIP + i), ipMode: 'VIP' }] } },
  };
}

/** The EndpointSlice of service i with `n` endpoints (endpoint 0 at `first0` when given). */
export function benchSlice(i: number, n: number, first0?: string) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `svc-${i}-abcde`,
      namespace: `ns-${i % 50}`,
      labels: { 'kubernetes.io/service-name': `svc-${i}`, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    endpoints: Array.from({ length: n }, (_, k) => ({
      addresses: [k === 0 && first0 ? first0 : u32ToIp(BASE_ENDPOINT + i * n + k)],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: `node-${k % 3}`,
      targetRef: { kind: 'Pod', namespace: `ns-${i % 50}`, name: `svc-${i}-pod-${k}` },
    })),
  };
}

/**
 * The same cluster as kube-proxy's rule generator takes it
 * (bench/convergence/kubeproxy.ts), read from benchService and benchSlice.
 */
export function kubeProxyServices(services: number, n: number): BenchService[] {
  return Array.from({ length: services }, (_, i) => {
    const svc = benchService(i);
    const slice = benchSlice(i, n);
    const port = svc.spec.ports[0];
    return {
      namespace: svc.metadata.namespace,
      name: svc.metadata.name,
      portName: port.name,
      vip: svc.status.loadBalancer.ingress[0].ip,
      port: port.port,
      endpoints: slice.endpoints.map((e) => ({ ip: e.addresses[0], port: slice.ports[0].port, nodeName: e.nodeName })),
    };
  });
}

/** Messages from the child. */
export type ChildMessage =
  | { ready: true; kubeconfig: string; url: string; objects: number }
  | { flipped: true; service: number }
  /** A list response's last byte went out (FakeApiServerOptions.onListSent): `at` on the shared wall clock, ms. */
  | { listSent: string; at: number };

async function child(): Promise<void> {
  const services = Number(process.env.XLB_BENCH_SERVICES ?? 10000);
  const endpoints = Number(process.env.XLB_BENCH_ENDPOINTS ?? 10);
  if (services * endpoints > 100_000 || services > 10_000) throw new Error(`bench cluster: at most 10,000 services and 100,000 endpoints fit the address plan (got ${services} × ${endpoints})`);
  const server = await FakeApiServer.start({ onListSent: (resource, at) => process.send!({ listSent: resource, at } satisfies ChildMessage) });
  server.upsert('nodes', { metadata: { name: 'node-0' }, status: { addresses: [{ type: 'InternalIP', address: '198.19.255.1' }] } });
  server.upsertMany('services', Array.from({ length: services }, (_, i) => benchService(i)));
  server.upsertMany('endpointslices', Array.from({ length: services }, (_, i) => benchSlice(i, endpoints)));
  const flipped = new Set<number>();
  process.on('message', (m: { cmd: string; service?: number }) => {
    if (m.cmd === 'flip') {
      const i = m.service!;
      const on = !flipped.has(i);
      if (on) flipped.add(i);
      else flipped.delete(i);
      server.upsert('endpointslices', benchSlice(i, endpoints, on ? FLIP_ADDRESS : undefined));
      process.send!({ flipped: true, service: i } satisfies ChildMessage);
    } else if (m.cmd === 'exit') {
      void server.close().then(() => process.exit(0));
    }
  });
  process.send!({ ready: true, kubeconfig: server.kubeconfigPath, url: server.url, objects: 2 * services } satisfies ChildMessage);
}

if (process.env.XLB_BENCH_CLUSTER_CHILD === '1') {
  child().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

/**
 * The cluster of bench/convergence and bench/e2e: N LoadBalancer services of
 * `endpointsPerService` ready endpoints each, as `kubectl get -o json`
 * prints a v1 List (Services and discovery.k8s.io/v1 EndpointSlices), and
 * the same cluster as plain data for the iptables and nftables generators.
 *
 * Addresses (RFC 2544 benchmarking space): service i (0-based) has VIP
 * 198.18.64.0 + i (198.18.64.0/18: up to 16,384 services) unless the caller
 * places it, cluster IP 198.18.128.0 + i; endpoints are numbered e = i ×
 * endpointsPerService + j and get pod IP 198.19.0.0 + (e mod 65536) and
 * target port 8080 + ⌊e / 65536⌋, so every backend is distinct.
 */
import { ipToU32, u32ToIp } from '../../src/util/ip.js';

/** One service port with its endpoints, as the firewall generators need it. */
export interface BenchService {
  namespace: string;
  name: string;
  portName: string;
  vip: string;
  port: number;
  endpoints: Array<{ ip: string; port: number; nodeName: string }>;
}

/** Options of {@link benchServices}. */
export interface ClusterOptions {
  services: number;
  endpointsPerService: number;
  /** Node names endpoints are spread over (round robin); default node-a, node-b. */
  nodes?: string[];
  /** VIP and port of service i; default 198.18.64.0 + i, port 80. */
  frontend?: (i: number) => { vip: string; port: number };
  /** Pod IP and target port of endpoint j of service i; default as the module comment says. */
  endpoint?: (i: number, j: number) => { ip: string; port: number };
}

/** The cluster as plain data, services in order (the last one is last in every chain). */
export function benchServices(o: ClusterOptions): BenchService[] {
  const nodes = o.nodes ?? ['node-a', 'node-b'];
  if (o.services > 16384 && !o.frontend) throw new Error(`bench cluster: ${o.services} services do not fit in 198.18.64.0/18`);
  return Array.from({ length: o.services }, (_, i) => {
    const fe = o.frontend ? o.frontend(i) : { vip: u32ToIp(ipToU32('198.18.64.0') + i), port: 80 };
    return {
      namespace: 'bench',
      name: `svc-${i}`,
      portName: 'http',
      vip: fe.vip,
      port: fe.port,
      endpoints: Array.from({ length: o.endpointsPerService }, (_, j) => {
        const ep = o.endpoint ? o.endpoint(i, j) : defaultEndpoint(i, j, o.endpointsPerService);
        return { ...ep, nodeName: nodes[j % nodes.length] };
      }),
    };
  });
}

/** Services come in blocks that fill 198.19.0.0/16; each block has its own target port. */
function defaultEndpoint(i: number, j: number, perService: number): { ip: string; port: number } {
  const block = Math.floor(65536 / perService);
  return { ip: u32ToIp(ipToU32('198.19.0.0') + (i % block) * perService + j), port: 8080 + Math.floor(i / block) };
}

/** The Service and EndpointSlice objects of `services` (kubectl's JSON shapes). */
export function manifestObjects(services: BenchService[]): unknown[] {
  const items: unknown[] = [];
  services.forEach((s, i) => {
    items.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: s.name, namespace: s.namespace, labels: { app: s.name } },
      spec: {
        type: 'LoadBalancer',
        allocateLoadBalancerNodePorts: false,
        clusterIP: u32ToIp(ipToU32('198.18.128.0') + i),
        clusterIPs: [u32ToIp(ipToU32('198.18.128.0') + i)],
        externalTrafficPolicy: 'Cluster',
        ipFamilies: ['IPv4'],
        ipFamilyPolicy: 'SingleStack',
        sessionAffinity: 'None',
        selector: { app: s.name },
        ports: [{ name: s.portName, protocol: 'TCP', port: s.port, targetPort: s.endpoints[0]?.port ?? 8080 }],
      },
      status: { loadBalancer: { ingress: [{ ip: s.vip, ipMode: 'VIP' }] } },
    });
    items.push(endpointSliceObject(s));
  });
  return items;
}

/** The service's one EndpointSlice (its endpoints share one target port). @throws Error naming the service otherwise */
export function endpointSliceObject(s: BenchService): unknown {
  const port = s.endpoints[0]?.port ?? 8080;
  if (s.endpoints.some((e) => e.port !== port)) throw new Error(`bench cluster: service ${s.name}: endpoints with different ports`);
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${s.name}-bench`, namespace: s.namespace, labels: { 'kubernetes.io/service-name': s.name, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4',
    ports: [{ name: s.portName, protocol: 'TCP', port }],
    endpoints: s.endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: e.nodeName })),
  };
}

/** The manifests file text: a v1 List in JSON (the file source parses JSON and YAML). */
export function manifestsJson(services: BenchService[]): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items: manifestObjects(services) });
}

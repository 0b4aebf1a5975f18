/**
 * The Services `xlb connectivity test` deploys for its checks, as specs over
 * the environment's pods (env.ts): what the environment does not have
 * already. Every name starts with {@link TEST_PREFIX}.
 *
 *   xlb-ct-echo      LoadBalancer, TCP http 80→8080 and UDP echo 53→5353, every server:
 *                    ClusterIP, NodePorts and the VIP from inside and outside
 *   xlb-ct-affinity  NodePort, sessionAffinity ClientIP, every server
 *   xlb-ct-denied    LoadBalancer, loadBalancerSourceRanges a range without the outside client
 *   xlb-ct-allowed   LoadBalancer, loadBalancerSourceRanges the outside client's /32
 *   xlb-ct-local     LoadBalancer, externalTrafficPolicy Local, the servers of the first node only
 *   xlb-ct-hairpin   ClusterIP whose only backend is the first client itself
 */
import { BlockList } from 'node:net';
import type { ConnectivityEnv, DeployedService, TestServicePort, TestServiceSpec } from './env.js';

/** The prefix of every test service's name. */
export const TEST_PREFIX = 'xlb-ct-';

/** The HTTP and UDP echo ports of the test services (the servers listen on 8080 and 5353). */
export const HTTP_PORT: TestServicePort = { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 };
export const UDP_PORT: TestServicePort = { name: 'udp', protocol: 'UDP', port: 53, targetPort: 5353 };

/** Ranges that `xlb-ct-denied` allows: documentation ranges (RFC 5737), the first that does not hold the outside client. */
const DENIED_RANGES = ['203.0.113.0/24', '198.51.100.0/24'];

/** Whether IPv4 `ip` is inside `cidr` (`a.b.c.d/n`), by node's own net.BlockList. */
export function inCidr(ip: string, cidr: string): boolean {
  const [base, len] = cidr.split('/');
  const list = new BlockList();
  list.addSubnet(base, Number(len), 'ipv4');
  return list.check(ip, 'ipv4');
}

/** The test services for `env` (see the file's comment). */
export function testServiceSpecs(env: Pick<ConnectivityEnv, 'servers' | 'clients' | 'nodes' | 'outside'>): TestServiceSpec[] {
  const firstNode = env.nodes[0]?.name;
  const denied = DENIED_RANGES.find((r) => !inCidr(env.outside.ip, r))!;
  const local = env.servers.filter((p) => p.node === firstNode);
  return [
    { name: `${TEST_PREFIX}echo`, type: 'LoadBalancer', ports: [HTTP_PORT, UDP_PORT], backends: env.servers },
    { name: `${TEST_PREFIX}affinity`, type: 'NodePort', ports: [HTTP_PORT], backends: env.servers, sessionAffinity: 'ClientIP' },
    { name: `${TEST_PREFIX}denied`, type: 'LoadBalancer', ports: [HTTP_PORT], backends: env.servers, sourceRanges: [denied] },
    { name: `${TEST_PREFIX}allowed`, type: 'LoadBalancer', ports: [HTTP_PORT], backends: env.servers, sourceRanges: [`${env.outside.ip}/32`] },
    { name: `${TEST_PREFIX}local`, type: 'LoadBalancer', ports: [HTTP_PORT], backends: local.length ? local : env.servers.slice(0, 1), externalTrafficPolicy: 'Local' },
    { name: `${TEST_PREFIX}hairpin`, type: 'ClusterIP', ports: [HTTP_PORT], backends: env.clients.slice(0, 1) },
  ];
}

/** The deployed test service `name` (without the prefix). @throws Error when it was not deployed */
export function deployed(services: DeployedService[], name: string): DeployedService {
  const s = services.find((x) => x.spec.name === `${TEST_PREFIX}${name}`);
  if (!s) throw new Error(`test service ${TEST_PREFIX}${name} was not deployed`);
  return s;
}

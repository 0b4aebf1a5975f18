/**
 * The lab's Kubernetes manifests, as `kubectl get -o yaml` prints a List:
 * Services and discovery.k8s.io/v1 EndpointSlices for the lab's pods. The
 * committed examples/lab-services.yaml is this generator's output for the
 * default lab (a unit test keeps them equal).
 */
import { stringify } from 'yaml';

/** A pod of the lab, as manifests need it. */
export interface LabPod {
  name: string;
  ip: string;
  node: string;
  /** The pod's namespace; default `default` (the cluster DNS pods are in `kube-system`). */
  namespace?: string;
}

/** The lab's VIPs and ports (192.0.2.0/24 is TEST-NET-1, RFC 5737). */
export const LAB_SERVICES = {
  web: { vip: '192.0.2.10', port: 80, targetPort: 8080 },
  dnsEcho: { vip: '192.0.2.11', port: 53, targetPort: 5353 },
  nodePort: { nodePort: 30080, port: 80, targetPort: 8080 },
  mixed: { vip: '192.0.2.12', port: 7000 },
} as const;

/**
 * The cluster DNS, as kubeadm sets it up: Service kube-system/kube-dns at a
 * fixed ClusterIP (kubeadm takes the tenth address of the service range; the
 * lab's range is 198.18.128.0/24, so .53 is free and easy to spot), ports
 * `dns` 53/UDP and `dns-tcp` 53/TCP, and the cluster domain `cluster.local`
 * (the kubelet's `clusterDomain` default).
 */
export const LAB_CLUSTER_DNS = { clusterIP: '198.18.128.53', port: 53, domain: 'cluster.local' } as const;

/**
 * The cluster DNS pod of node `i` (1-based): `nIdns` in namespace
 * kube-system, at 198.19.I.2 in the node's pod CIDR (workload pods start at
 * .11, the gateway is .1).
 */
export function labDnsPod(i: number): LabPod {
  return { name: `n${i}dns`, ip: `198.19.${i}.2`, node: `node${i}`, namespace: 'kube-system' };
}

/** A v1 Service in namespace default, selector app=NAME; `status` is its `status.loadBalancer`. */
export function service(name: string, spec: Record<string, unknown>, status: Record<string, unknown> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default', labels: { app: name } },
    spec: { selector: { app: name }, sessionAffinity: 'None', ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', ...spec },
    status: { loadBalancer: status },
  };
}

/** The EndpointSlice `NAME-lab` of service `service` (in `namespace`, default `default`) over `pods`, every endpoint ready. */
export function slice(service: string, ports: Array<{ name: string; port: number; protocol: string }>, pods: LabPod[], namespace = 'default') {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${service}-lab`, namespace, labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4',
    ports,
    endpoints: pods.map((p) => ({
      addresses: [p.ip],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: p.node,
      targetRef: { kind: 'Pod', namespace: p.namespace ?? namespace, name: p.name },
    })),
  };
}

/**
 * Service kube-system/kube-dns as kubeadm's CoreDNS addon writes it (labels,
 * selector `k8s-app: kube-dns`, type ClusterIP), without the metrics port.
 */
export function kubeDnsService() {
  const { clusterIP, port } = LAB_CLUSTER_DNS;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns', 'kubernetes.io/cluster-service': 'true', 'kubernetes.io/name': 'CoreDNS' } },
    spec: {
      type: 'ClusterIP',
      selector: { 'k8s-app': 'kube-dns' },
      clusterIP,
      clusterIPs: [clusterIP],
      internalTrafficPolicy: 'Cluster',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      sessionAffinity: 'None',
      ports: [
        { name: 'dns', protocol: 'UDP', port, targetPort: port },
        { name: 'dns-tcp', protocol: 'TCP', port, targetPort: port },
      ],
    },
    status: { loadBalancer: {} },
  };
}

/**
 * The lab's services over `backends` (the pods that serve; spare pods stay
 * out), and the cluster DNS service kube-system/kube-dns over `dnsPods`.
 * @returns YAML text of a v1 List
 */
export function labManifests(backends: LabPod[], dnsPods: LabPod[]): string {
  const { web, dnsEcho, nodePort, mixed } = LAB_SERVICES;
  const items = [
    service('web', { type: 'LoadBalancer', clusterIP: '198.18.128.10', clusterIPs: ['198.18.128.10'], externalTrafficPolicy: 'Cluster', ports: [{ name: 'http', protocol: 'TCP', port: web.port, targetPort: web.targetPort, nodePort: 31080 }] }, { ingress: [{ ip: web.vip, ipMode: 'VIP' }] }),
    slice('web', [{ name: 'http', port: web.targetPort, protocol: 'TCP' }], backends),
    service('dns-echo', { type: 'LoadBalancer', clusterIP: '198.18.128.11', clusterIPs: ['198.18.128.11'], externalTrafficPolicy: 'Cluster', ports: [{ name: 'dns', protocol: 'UDP', port: dnsEcho.port, targetPort: dnsEcho.targetPort, nodePort: 31053 }] }, { ingress: [{ ip: dnsEcho.vip, ipMode: 'VIP' }] }),
    slice('dns-echo', [{ name: 'dns', port: dnsEcho.targetPort, protocol: 'UDP' }], backends),
    service('web-nodeport', { type: 'NodePort', clusterIP: '198.18.128.12', clusterIPs: ['198.18.128.12'], externalTrafficPolicy: 'Cluster', ports: [{ name: 'http', protocol: 'TCP', port: nodePort.port, targetPort: nodePort.targetPort, nodePort: nodePort.nodePort }] }),
    slice('web-nodeport', [{ name: 'http', port: nodePort.targetPort, protocol: 'TCP' }], backends),
    service(
      'mixed',
      {
        type: 'LoadBalancer',
        clusterIP: '198.18.128.13',
        clusterIPs: ['198.18.128.13'],
        externalTrafficPolicy: 'Cluster',
        ports: [
          { name: 'tcp', protocol: 'TCP', port: mixed.port, targetPort: 8080, nodePort: 31700 },
          { name: 'udp', protocol: 'UDP', port: mixed.port, targetPort: 5353, nodePort: 31700 },
        ],
      },
      { ingress: [{ ip: mixed.vip, ipMode: 'VIP' }] },
    ),
    slice('mixed', [{ name: 'tcp', port: 8080, protocol: 'TCP' }, { name: 'udp', port: 5353, protocol: 'UDP' }], backends),
    kubeDnsService(),
    slice(
      'kube-dns',
      [
        { name: 'dns', port: LAB_CLUSTER_DNS.port, protocol: 'UDP' },
        { name: 'dns-tcp', port: LAB_CLUSTER_DNS.port, protocol: 'TCP' },
      ],
      dnsPods,
      'kube-system',
    ),
  ];
  return `# xlb lab services: generated by src/lab/manifests.ts (xlb lab up copies this file and the agents watch the copy).\n${stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items })}`;
}

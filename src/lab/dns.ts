/**
 * The lab's cluster DNS: one dnsmasq per node, in that node's DNS pod, as
 * the backends of Service kube-system/kube-dns; and the resolv.conf every
 * pod gets.
 *
 * What it answers follows the Kubernetes DNS-based service discovery
 * specification (kubernetes/dns docs/specification.md; the older copy is
 * kubernetes/kubernetes cmd/kube-dns/SPEC.md), for services with a ClusterIP:
 *
 *   <svc>.<ns>.svc.<zone>.                 A    <ClusterIP>
 *   <d>.<c>.<b>.<a>.in-addr.arpa.          PTR  <svc>.<ns>.svc.<zone>.
 *   _<port>._<proto>.<svc>.<ns>.svc.<zone>. SRV  0 100 <port> <svc>.<ns>.svc.<zone>.   (named ports only)
 *   dns-version.<zone>.                    TXT  "1.1.0"
 *
 * Other names in <zone> get NXDOMAIN; names outside it are refused (there
 * is no upstream). Not served: headless services, ExternalName services and
 * pod records. One name is the lab's own: `whoami.lab. TXT "<pod>"` names
 * the DNS pod that answered, so a test can see queries spread over the
 * kube-dns backends.
 */
import { LAB_CLUSTER_DNS } from './manifests.js';

/** A record of one service: `<svc>.<ns>.svc.<zone>` → its ClusterIP. */
export interface ServiceARecord {
  name: string;
  ip: string;
}

/** An SRV record of a named service port. */
export interface ServiceSrvRecord {
  /** `_<port>._<proto>.<svc>.<ns>.svc.<zone>` */
  name: string;
  /** `<svc>.<ns>.svc.<zone>` */
  target: string;
  port: number;
}

/** What the cluster DNS answers for the services of a manifests file. */
export interface ClusterDnsRecords {
  a: ServiceARecord[];
  srv: ServiceSrvRecord[];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
/** A DNS label as Kubernetes names are (RFC 1123 label, lower case). */
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * The records of the Services among `objects` (Kubernetes objects as parsed
 * from YAML): for each Service with an IPv4 ClusterIP, an A record per
 * ClusterIP and an SRV record per named port. Services without one (headless,
 * ExternalName), with names that are not DNS labels, and non-IPv4 ClusterIPs
 * give no record.
 * @param zone the cluster domain (default `cluster.local`)
 */
export function clusterDnsRecords(objects: Obj[], zone: string = LAB_CLUSTER_DNS.domain): ClusterDnsRecords {
  const out: ClusterDnsRecords = { a: [], srv: [] };
  for (const svc of objects) {
    if (svc?.kind !== 'Service') continue;
    const name = svc.metadata?.name;
    const ns = svc.metadata?.namespace ?? 'default';
    if (typeof name !== 'string' || !LABEL.test(name) || typeof ns !== 'string' || !LABEL.test(ns)) continue;
    if (svc.spec?.type === 'ExternalName') continue;
    const ips: string[] = (svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((ip: unknown) => typeof ip === 'string' && IPV4.test(ip));
    if (!ips.length) continue;
    const fqdn = `${name}.${ns}.svc.${zone}`;
    for (const ip of ips) out.a.push({ name: fqdn, ip });
    for (const p of svc.spec?.ports ?? []) {
      if (typeof p?.name !== 'string' || !LABEL.test(p.name) || typeof p.port !== 'number') continue;
      out.srv.push({ name: `_${p.name}._${String(p.protocol ?? 'TCP').toLowerCase()}.${fqdn}`, target: fqdn, port: p.port });
    }
  }
  return out;
}

/** Options of {@link dnsmasqArgv}. */
export interface DnsmasqOptions {
  /** The pod IP to listen on (UDP and TCP). */
  listen: string;
  /** The DNS pod's name: the answer to `whoami.lab TXT`. */
  pod: string;
  records: ClusterDnsRecords;
  /** Where dnsmasq writes its pid. */
  pidFile: string;
  /** The cluster domain (default `cluster.local`). */
  zone?: string;
  /** Port (default 53). */
  port?: number;
}

/**
 * The command line of one cluster DNS server (dnsmasq 2.90's options, man 8
 * dnsmasq): in the foreground, logging to stderr, reading no configuration,
 * resolv.conf or hosts file, bound to the pod IP only, authoritative for the
 * zone (`--local`), TTL 5 s (CoreDNS's kubernetes plugin default).
 */
export function dnsmasqArgv(o: DnsmasqOptions): string[] {
  const zone = o.zone ?? LAB_CLUSTER_DNS.domain;
  return [
    'dnsmasq',
    '--keep-in-foreground',
    '--log-facility=-',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--no-ident',
    `--pid-file=${o.pidFile}`,
    '--user=nobody',
    '--group=nogroup',
    `--listen-address=${o.listen}`,
    '--bind-interfaces',
    `--port=${o.port ?? LAB_CLUSTER_DNS.port}`,
    `--local=/${zone}/`,
    '--local=/lab/',
    '--local-ttl=5',
    `--txt-record=dns-version.${zone},1.1.0`,
    `--txt-record=whoami.lab,${o.pod}`,
    ...o.records.a.map((r) => `--host-record=${r.name},${r.ip}`),
    ...o.records.srv.map((r) => `--srv-host=${r.name},${r.target},${r.port},0,100`),
  ];
}

/**
 * A pod's /etc/resolv.conf as the kubelet writes it for dnsPolicy
 * ClusterFirst: the cluster DNS ClusterIP, the search list of the pod's
 * namespace, `options ndots:5`.
 */
export function podResolvConf(namespace = 'default', nameserver: string = LAB_CLUSTER_DNS.clusterIP, zone: string = LAB_CLUSTER_DNS.domain): string {
  return `search ${namespace}.svc.${zone} svc.${zone} ${zone}\nnameserver ${nameserver}\noptions ndots:5\n`;
}

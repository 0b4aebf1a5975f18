/**
 * kube-proxy's rules for the bench cluster, generated the way kube-proxy
 * lays them out, so that iptables-restore and nft can be timed on them:
 *
 * - iptables mode (pkg/proxy/iptables): the nat table's KUBE-SERVICES chain
 *   holds one rule per service frontend, in service order (a packet walks it
 *   top to bottom); a LoadBalancer IP jumps to KUBE-EXT-<hash> (mark for
 *   masquerade, then KUBE-SVC-<hash>), which picks an endpoint with
 *   `-m statistic --mode random --probability 1/(n-k)` rules, each to a
 *   KUBE-SEP-<hash> chain that DNATs to the pod; KUBE-POSTROUTING
 *   masquerades marked packets. A full sync is one `iptables-restore`; a
 *   change is one `iptables-restore --noflush` that rewrites KUBE-SERVICES
 *   (kube-proxy always rewrites it) and the changed service's chains, and
 *   deletes the endpoint chain that went away (kube-proxy's partial sync,
 *   1.28+).
 * - nftables mode (pkg/proxy/nftables): a verdict map from (VIP, protocol,
 *   port) to a per-service chain, and in it `numgen random mod N vmap` to
 *   the endpoint chains; one `nft -f` transaction for a full sync, and for a
 *   change a transaction that rewrites the service chain and swaps one
 *   endpoint chain.
 *
 * Chain names take kube-proxy's shape (prefix + 16 base32 characters of a
 * SHA-256 of the service port name, protocol and endpoint); the filter
 * table's rules (KUBE-FIREWALL and the like) are left out.
 *
 * ClusterIP services (bench/clusterip: pods connecting to a ClusterIP) have
 * their own generators, `iptablesClusterIP` and `nftClusterIP`: there the
 * frontend rule jumps straight to the service chain, whose first rule marks
 * for masquerade only traffic from outside the cluster CIDR
 * (`! -s <cluster CIDR>`, kube-proxy's --cluster-cidr), so a pod's
 * connection is DNATed and not masqueraded; ports may be TCP or UDP.
 */
import { createHash } from 'node:crypto';
import type { BenchService } from './manifests.js';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** 16 characters of base32(sha256(text)) (RFC 4648 alphabet), as kube-proxy names chains. */
function hash16(text: string): string {
  const d = createHash('sha256').update(text).digest();
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of d) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 16) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length >= 16) break;
  }
  return out;
}

const portName = (s: BenchService) => `${s.namespace}/${s.name}:${s.portName}`;
/** Protocol of a service port as kube-proxy spells it in chain hashes and rules (lower case). */
type Proto = 'tcp' | 'udp';
const svcChain = (s: BenchService, proto: Proto = 'tcp') => `KUBE-SVC-${hash16(`${portName(s)}${proto}`)}`;
const extChain = (s: BenchService) => `KUBE-EXT-${hash16(`${portName(s)}tcp`)}`;
const sepChain = (s: BenchService, e: { ip: string; port: number }, proto: Proto = 'tcp') => `KUBE-SEP-${hash16(`${portName(s)}${proto}${e.ip}:${e.port}`)}`;

/** KUBE-SERVICES' last rule: node ports, for packets to the node's own addresses. */
const NODEPORTS_RULE = '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS';

function servicesRules(services: BenchService[]): string[] {
  const out = services.map(
    (s) => `-A KUBE-SERVICES -d ${s.vip}/32 -p tcp -m comment --comment "${portName(s)} loadbalancer IP" -m tcp --dport ${s.port} -j ${extChain(s)}`,
  );
  out.push(NODEPORTS_RULE);
  return out;
}

function serviceChainRules(s: BenchService): string[] {
  const n = s.endpoints.length;
  const out = [
    `-A ${extChain(s)} -m comment --comment "masquerade traffic for ${portName(s)} external destinations" -j KUBE-MARK-MASQ`,
    `-A ${extChain(s)} -j ${svcChain(s)}`,
  ];
  s.endpoints.forEach((e, k) => {
    const stat = k < n - 1 ? ` -m statistic --mode random --probability ${(1 / (n - k)).toFixed(11)}` : '';
    out.push(`-A ${svcChain(s)} -m comment --comment "${portName(s)} -> ${e.ip}:${e.port}"${stat} -j ${sepChain(s, e)}`);
  });
  return out;
}

function endpointChainRules(s: BenchService, e: { ip: string; port: number }): string[] {
  const c = sepChain(s, e);
  return [`-A ${c} -s ${e.ip}/32 -m comment --comment ${portName(s)} -j KUBE-MARK-MASQ`, `-A ${c} -p tcp -m comment --comment ${portName(s)} -m tcp -j DNAT --to-destination ${e.ip}:${e.port}`];
}

/** The nat table's hooks and masquerade chains, the same in every layout. */
const NAT_BASE_CHAINS = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ'];
const NAT_BASE_RULES = [
  '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
  '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
  '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
  '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
  '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
];

/** An iptables-restore input of the nat table: built-in chains, then `chains`, then `rules`. */
function natTable(chains: string[], rules: string[]): string {
  return ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ...chains.map((c) => `:${c} - [0:0]`), ...rules, 'COMMIT', ''].join('\n');
}

/** The whole nat table for `services`: input of a full `iptables-restore`. */
export function iptablesFull(services: BenchService[]): string {
  const chains = [...NAT_BASE_CHAINS];
  const rules: string[] = [...NAT_BASE_RULES, ...servicesRules(services)];
  for (const s of services) {
    chains.push(extChain(s), svcChain(s), ...s.endpoints.map((e) => sepChain(s, e)));
    rules.push(...serviceChainRules(s));
    for (const e of s.endpoints) rules.push(...endpointChainRules(s, e));
  }
  return natTable(chains, rules);
}

/**
 * A ClusterIP service port for {@link iptablesClusterIP} and
 * {@link nftClusterIP}: `vip` is the ClusterIP, `port` the service port,
 * `protocol` TCP (default) or UDP.
 */
export interface ClusterIPService extends BenchService {
  protocol?: 'TCP' | 'UDP';
}

const protoOf = (s: ClusterIPService): Proto => (s.protocol === 'UDP' ? 'udp' : 'tcp');

/**
 * The whole nat table of kube-proxy's iptables mode for ClusterIP services
 * (internalTrafficPolicy Cluster, kube-proxy run with --cluster-cidr and
 * without --masquerade-all), services in order: per service port
 *
 *   -A KUBE-SERVICES -d <ClusterIP>/32 -p tcp ... "ns/svc:port cluster IP" -m tcp --dport <port> -j KUBE-SVC-<hash>
 *   -A KUBE-SVC-<hash> ! -s <cluster CIDR> -d <ClusterIP>/32 -p tcp ... --dport <port> -j KUBE-MARK-MASQ
 *   -A KUBE-SVC-<hash> ... -m statistic --mode random --probability 1/(n-k) -j KUBE-SEP-<hash>   (last endpoint unconditional)
 *   -A KUBE-SEP-<hash> -s <pod IP>/32 ... -j KUBE-MARK-MASQ                                       (hairpin)
 *   -A KUBE-SEP-<hash> -p tcp ... -m tcp -j DNAT --to-destination <pod IP>:<port>
 *
 * as kube-proxy's pkg/proxy/iptables/proxier_test.go expects them for a
 * ClusterIP service, in iptables-save's word order.
 * @param clusterCidr the pods' range (kube-proxy's --cluster-cidr), e.g. `198.19.0.0/16`
 * @returns the input of a full `iptables-restore`
 */
export function iptablesClusterIP(services: ClusterIPService[], clusterCidr: string): string {
  const chains = [...NAT_BASE_CHAINS];
  const rules: string[] = [...NAT_BASE_RULES];
  for (const s of services) {
    const p = protoOf(s);
    rules.push(`-A KUBE-SERVICES -d ${s.vip}/32 -p ${p} -m comment --comment "${portName(s)} cluster IP" -m ${p} --dport ${s.port} -j ${svcChain(s, p)}`);
  }
  rules.push(NODEPORTS_RULE);
  for (const s of services) {
    const p = protoOf(s);
    const n = s.endpoints.length;
    chains.push(svcChain(s, p), ...s.endpoints.map((e) => sepChain(s, e, p)));
    rules.push(`-A ${svcChain(s, p)} ! -s ${clusterCidr} -d ${s.vip}/32 -p ${p} -m comment --comment "${portName(s)} cluster IP" -m ${p} --dport ${s.port} -j KUBE-MARK-MASQ`);
    s.endpoints.forEach((e, k) => {
      const stat = k < n - 1 ? ` -m statistic --mode random --probability ${(1 / (n - k)).toFixed(11)}` : '';
      rules.push(`-A ${svcChain(s, p)} -m comment --comment "${portName(s)} -> ${e.ip}:${e.port}"${stat} -j ${sepChain(s, e, p)}`);
    });
    for (const e of s.endpoints) {
      const c = sepChain(s, e, p);
      rules.push(`-A ${c} -s ${e.ip}/32 -m comment --comment ${portName(s)} -j KUBE-MARK-MASQ`, `-A ${c} -p ${p} -m comment --comment ${portName(s)} -m ${p} -j DNAT --to-destination ${e.ip}:${e.port}`);
    }
  }
  return natTable(chains, rules);
}

/**
 * The `iptables-restore --noflush` input of kube-proxy's partial sync after
 * service `before` became `after` (same name, one endpoint replaced):
 * KUBE-SERVICES rewritten whole, the service's chains rewritten, the new
 * endpoint chain added and the old one deleted.
 */
export function iptablesChange(services: BenchService[], before: BenchService, after: BenchService): string {
  const gone = before.endpoints.filter((e) => !after.endpoints.some((x) => x.ip === e.ip && x.port === e.port));
  const added = after.endpoints.filter((e) => !before.endpoints.some((x) => x.ip === e.ip && x.port === e.port));
  const lines = ['*nat', ':KUBE-SERVICES - [0:0]', `:${extChain(after)} - [0:0]`, `:${svcChain(after)} - [0:0]`];
  for (const e of [...added, ...gone]) lines.push(`:${sepChain(after, e)} - [0:0]`);
  lines.push(...servicesRules(services), ...serviceChainRules(after));
  for (const e of added) lines.push(...endpointChainRules(after, e));
  for (const e of gone) lines.push(`-X ${sepChain(before, e)}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Name of the service chain that `iptablesChange` rewrites (to check the change landed). */
export function iptablesServiceChain(s: BenchService): string {
  return svcChain(s);
}

/** An endpoint's DNAT target as `iptables -S` prints it. */
export function iptablesDnatTarget(e: { ip: string; port: number }): string {
  return `--to-destination ${e.ip}:${e.port}`;
}

/** The nat table emptied (user chains deleted): what runs between full-restore runs. */
export const IPTABLES_EMPTY = '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n';

const NFT_TABLE = 'kube-proxy';
const nftSvc = (s: BenchService, proto: Proto = 'tcp') => `service-${hash16(`${portName(s)}${proto}`).slice(0, 8)}-${s.namespace}/${s.name}/${proto}/${s.portName}`;
const nftExt = (s: BenchService) => `external-${hash16(`${portName(s)}tcp`).slice(0, 8)}-${s.namespace}/${s.name}/tcp/${s.portName}`;
const nftEp = (s: BenchService, e: { ip: string; port: number }, proto: Proto = 'tcp') =>
  `endpoint-${hash16(`${portName(s)}${proto}${e.ip}:${e.port}`).slice(0, 8)}-${s.namespace}/${s.name}/${proto}/${s.portName}__${e.ip}/${e.port}`;
/** Chain names as bare words: nft 1.0.6 (Debian 12) takes no quoted chain names, so '/', '.' and ':' become '_'. */
const q = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, '_');

function nftServiceRule(s: BenchService, proto: Proto = 'tcp'): string {
  const vmap = s.endpoints.map((e, k) => `${k} : goto ${q(nftEp(s, e, proto))}`).join(' , ');
  return `add rule ip ${NFT_TABLE} ${q(nftSvc(s, proto))} numgen random mod ${s.endpoints.length} vmap { ${vmap} }`;
}

function nftEndpoint(s: BenchService, e: { ip: string; port: number }, proto: Proto = 'tcp'): string[] {
  const c = q(nftEp(s, e, proto));
  return [`add chain ip ${NFT_TABLE} ${c}`, `add rule ip ${NFT_TABLE} ${c} ip saddr ${e.ip} jump mark-for-masquerade`, `add rule ip ${NFT_TABLE} ${c} meta l4proto ${proto} dnat to ${e.ip}:${e.port}`];
}

/** The kube-proxy table's skeleton: masquerade chains, the service-ips verdict map, the nat hooks. */
function nftBase(): string[] {
  return [
    `add table ip ${NFT_TABLE}`,
    `delete table ip ${NFT_TABLE}`,
    `add table ip ${NFT_TABLE}`,
    `add chain ip ${NFT_TABLE} mark-for-masquerade`,
    `add rule ip ${NFT_TABLE} mark-for-masquerade meta mark set meta mark or 0x4000`,
    `add chain ip ${NFT_TABLE} masquerading`,
    `add rule ip ${NFT_TABLE} masquerading meta mark and 0x4000 == 0 return`,
    `add rule ip ${NFT_TABLE} masquerading meta mark set meta mark xor 0x4000`,
    `add rule ip ${NFT_TABLE} masquerading masquerade fully-random`,
    `add map ip ${NFT_TABLE} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }`,
    `add chain ip ${NFT_TABLE} services`,
    `add rule ip ${NFT_TABLE} services ip daddr . meta l4proto . th dport vmap @service-ips`,
    `add chain ip ${NFT_TABLE} nat-prerouting { type nat hook prerouting priority dstnat ; policy accept ; }`,
    `add rule ip ${NFT_TABLE} nat-prerouting jump services`,
    `add chain ip ${NFT_TABLE} nat-output { type nat hook output priority -100 ; policy accept ; }`,
    `add rule ip ${NFT_TABLE} nat-output jump services`,
    `add chain ip ${NFT_TABLE} nat-postrouting { type nat hook postrouting priority srcnat ; policy accept ; }`,
    `add rule ip ${NFT_TABLE} nat-postrouting jump masquerading`,
  ];
}

/** The whole kube-proxy table for `services`: one `nft -f` transaction that replaces it. */
export function nftFull(services: BenchService[]): string {
  const lines = nftBase();
  for (const s of services) {
    lines.push(`add chain ip ${NFT_TABLE} ${q(nftSvc(s))}`, `add chain ip ${NFT_TABLE} ${q(nftExt(s))}`);
    for (const e of s.endpoints) lines.push(...nftEndpoint(s, e));
    lines.push(nftServiceRule(s));
    lines.push(`add rule ip ${NFT_TABLE} ${q(nftExt(s))} jump mark-for-masquerade`, `add rule ip ${NFT_TABLE} ${q(nftExt(s))} goto ${q(nftSvc(s))}`);
    lines.push(`add element ip ${NFT_TABLE} service-ips { ${s.vip} . tcp . ${s.port} : goto ${q(nftExt(s))} }`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The kube-proxy table of nftables mode for ClusterIP services (as
 * {@link iptablesClusterIP}: cluster CIDR known, no masquerade-all), one
 * `nft -f` transaction that replaces it: per service port a chain
 *
 *   ip daddr <ClusterIP> tcp dport <port> ip saddr != <cluster CIDR> jump mark-for-masquerade
 *   numgen random mod N vmap { 0 : goto <endpoint chain>, ... }
 *
 * endpoint chains that mark hairpin traffic and DNAT, and the element
 * `<ClusterIP> . tcp . <port> : goto <service chain>` of the service-ips
 * map, as kube-proxy's pkg/proxy/nftables/proxier_test.go expects them for
 * a ClusterIP service. The cluster-ips set and the filter chains
 * (no-endpoint rejects, firewall checks) are left out, as in {@link nftFull}.
 * @param clusterCidr the pods' range (kube-proxy's --cluster-cidr)
 */
export function nftClusterIP(services: ClusterIPService[], clusterCidr: string): string {
  const lines = nftBase();
  for (const s of services) {
    const p = protoOf(s);
    const chain = q(nftSvc(s, p));
    lines.push(`add chain ip ${NFT_TABLE} ${chain}`);
    for (const e of s.endpoints) lines.push(...nftEndpoint(s, e, p));
    lines.push(`add rule ip ${NFT_TABLE} ${chain} ip daddr ${s.vip} ${p} dport ${s.port} ip saddr != ${clusterCidr} jump mark-for-masquerade`);
    lines.push(nftServiceRule(s, p));
    lines.push(`add element ip ${NFT_TABLE} service-ips { ${s.vip} . ${p} . ${s.port} : goto ${chain} }`);
  }
  return `${lines.join('\n')}\n`;
}

/** The `nft -f` transaction of one endpoint change of service `before` → `after`. */
export function nftChange(before: BenchService, after: BenchService): string {
  const gone = before.endpoints.filter((e) => !after.endpoints.some((x) => x.ip === e.ip && x.port === e.port));
  const added = after.endpoints.filter((e) => !before.endpoints.some((x) => x.ip === e.ip && x.port === e.port));
  const lines: string[] = [];
  for (const e of added) lines.push(...nftEndpoint(after, e));
  lines.push(`flush chain ip ${NFT_TABLE} ${q(nftSvc(after))}`, nftServiceRule(after));
  for (const e of gone) lines.push(`flush chain ip ${NFT_TABLE} ${q(nftEp(before, e))}`, `delete chain ip ${NFT_TABLE} ${q(nftEp(before, e))}`);
  return `${lines.join('\n')}\n`;
}

/** `nft list chain` arguments of the service chain `nftChange` rewrites, and the text its new endpoint adds. */
export function nftServiceChain(s: BenchService): string[] {
  return ['list', 'chain', 'ip', NFT_TABLE, q(nftSvc(s))];
}

/** Remove the kube-proxy table (between runs and at the end). */
export const NFT_EMPTY = `add table ip ${NFT_TABLE}\ndelete table ip ${NFT_TABLE}\n`;

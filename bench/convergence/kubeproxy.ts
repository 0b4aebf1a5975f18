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
const svcChain = (s: BenchService) => `KUBE-SVC-${hash16(`${portName(s)}tcp`)}`;
const extChain = (s: BenchService) => `KUBE-EXT-${hash16(`${portName(s)}tcp`)}`;
const sepChain = (s: BenchService, e: { ip: string; port: number }) => `KUBE-SEP-${hash16(`${portName(s)}tcp${e.ip}:${e.port}`)}`;

function servicesRules(services: BenchService[]): string[] {
  const out = services.map(
    (s) => `-A KUBE-SERVICES -d ${s.vip}/32 -p tcp -m comment --comment "${portName(s)} loadbalancer IP" -m tcp --dport ${s.port} -j ${extChain(s)}`,
  );
  out.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
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

/** The whole nat table for `services`: input of a full `iptables-restore`. */
export function iptablesFull(services: BenchService[]): string {
  const chains = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ'];
  const rules: string[] = [
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ...servicesRules(services),
  ];
  for (const s of services) {
    chains.push(extChain(s), svcChain(s), ...s.endpoints.map((e) => sepChain(s, e)));
    rules.push(...serviceChainRules(s));
    for (const e of s.endpoints) rules.push(...endpointChainRules(s, e));
  }
  return ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ...chains.map((c) => `:${c} - [0:0]`), ...rules, 'COMMIT', ''].join('\n');
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
const nftSvc = (s: BenchService) => `service-${hash16(`${portName(s)}tcp`).slice(0, 8)}-${s.namespace}/${s.name}/tcp/${s.portName}`;
const nftExt = (s: BenchService) => `external-${hash16(`${portName(s)}tcp`).slice(0, 8)}-${s.namespace}/${s.name}/tcp/${s.portName}`;
const nftEp = (s: BenchService, e: { ip: string; port: number }) => `endpoint-${hash16(`${portName(s)}tcp${e.ip}:${e.port}`).slice(0, 8)}-${s.namespace}/${s.name}/tcp/${s.portName}__${e.ip}/${e.port}`;
/** Chain names as bare words: nft 1.0.6 (Debian 12) takes no quoted chain names, so '/', '.' and ':' become '_'. */
const q = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, '_');

function nftServiceRule(s: BenchService): string {
  const vmap = s.endpoints.map((e, k) => `${k} : goto ${q(nftEp(s, e))}`).join(' , ');
  return `add rule ip ${NFT_TABLE} ${q(nftSvc(s))} numgen random mod ${s.endpoints.length} vmap { ${vmap} }`;
}

function nftEndpoint(s: BenchService, e: { ip: string; port: number }): string[] {
  const c = q(nftEp(s, e));
  return [`add chain ip ${NFT_TABLE} ${c}`, `add rule ip ${NFT_TABLE} ${c} ip saddr ${e.ip} jump mark-for-masquerade`, `add rule ip ${NFT_TABLE} ${c} meta l4proto tcp dnat to ${e.ip}:${e.port}`];
}

/** The whole kube-proxy table for `services`: one `nft -f` transaction that replaces it. */
export function nftFull(services: BenchService[]): string {
  const lines = [
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
  for (const s of services) {
    lines.push(`add chain ip ${NFT_TABLE} ${q(nftSvc(s))}`, `add chain ip ${NFT_TABLE} ${q(nftExt(s))}`);
    for (const e of s.endpoints) lines.push(...nftEndpoint(s, e));
    lines.push(nftServiceRule(s));
    lines.push(`add rule ip ${NFT_TABLE} ${q(nftExt(s))} jump mark-for-masquerade`, `add rule ip ${NFT_TABLE} ${q(nftExt(s))} goto ${q(nftSvc(s))}`);
    lines.push(`add element ip ${NFT_TABLE} service-ips { ${s.vip} . tcp . ${s.port} : goto ${q(nftExt(s))} }`);
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

/**
 * The node's own addresses from its v1 Node object (`status.addresses`), as
 * kube-proxy's NodePort address selection reads them: InternalIP first, then
 * ExternalIP. xlb's datapath serves IPv4, so only IPv4 addresses are kept;
 * IPv6 ones are returned apart so that the caller can report them.
 */
import net from 'node:net';

/** Node address types that reach NodePorts (core/v1 NodeAddressType). */
export const NODEPORT_ADDRESS_TYPES = ['InternalIP', 'ExternalIP'] as const;

/** Addresses of one Node. */
export interface NodeAddresses {
  /** IPv4 InternalIP addresses, then IPv4 ExternalIP ones; no duplicates. */
  ipv4: string[];
  /** IPv6 addresses of those types: recorded, not served. */
  ipv6: string[];
}

/**
 * Read `status.addresses` of a raw Node object. Entries of other types
 * (Hostname, InternalDNS, ExternalDNS) and malformed entries are ignored.
 */
export function nodeAddresses(node: unknown): NodeAddresses {
  const list = (node as { status?: { addresses?: unknown } } | undefined)?.status?.addresses;
  const out: NodeAddresses = { ipv4: [], ipv6: [] };
  if (!Array.isArray(list)) return out;
  for (const type of NODEPORT_ADDRESS_TYPES) {
    for (const a of list as Array<{ type?: unknown; address?: unknown }>) {
      if (!a || a.type !== type || typeof a.address !== 'string') continue;
      if (net.isIPv4(a.address) && !out.ipv4.includes(a.address)) out.ipv4.push(a.address);
      else if (net.isIPv6(a.address) && !out.ipv6.includes(a.address)) out.ipv6.push(a.address);
    }
  }
  return out;
}

/**
 * The Service annotations LB IPAM reads: xlb's own, and the ones users bring
 * from MetalLB and Cilium, each either honoured (it has a clear equivalent)
 * or reported — never silently ignored.
 *
 * | annotation                                         | what xlb does                                     |
 * | -------------------------------------------------- | ------------------------------------------------- |
 * | `xlb.io/load-balancer-ips`                         | honoured: the address to assign                   |
 * | `metallb.io/loadBalancerIPs` (and `metallb.universe.tf/`) | honoured, same (MetalLB "Requesting specific IPs") |
 * | `lbipam.cilium.io/ips`, `io.cilium/lb-ipam-ips`    | honoured, same (Cilium LB IPAM "Requesting IPs")  |
 * | `xlb.io/address-pool`                              | honoured: the pool to allocate from               |
 * | `metallb.io/address-pool` (and `metallb.universe.tf/`) | honoured, same                                |
 * | `*allow-shared-ip`, `*sharing-key`, `*sharing-cross-namespace` | reported: xlb gives each service its own address |
 * | `*ip-allocated-from-pool`                          | reported: MetalLB's output, not read              |
 * | any other under these prefixes (and `xlb.io/`)     | reported: unknown                                 |
 *
 * Several address annotations on one Service must agree (a service moved
 * from MetalLB may keep its old annotation next to xlb's); when they do
 * not, the service gets no address and the reason names both. An address
 * annotation takes precedence over the deprecated `spec.loadBalancerIP`.
 * Values are comma-separated lists; xlb assigns one IPv4 address per
 * service, so a list must hold exactly one (an IPv6 entry is refused: the
 * datapath serves IPv4).
 */
import net from 'node:net';
import { isIPv4 } from '../util/ip.js';
import type { InputIssue } from '../model/types.js';

/** xlb's annotation requesting an address: one IPv4 address (a comma-separated list may hold it). */
export const LB_IPS_ANNOTATION = 'xlb.io/load-balancer-ips';
/** xlb's annotation naming the pool to allocate from. */
export const POOL_ANNOTATION = 'xlb.io/address-pool';

/** Annotations that request addresses, in the order they are read. */
export const ADDRESS_ANNOTATIONS = [
  LB_IPS_ANNOTATION,
  'metallb.io/loadBalancerIPs',
  'metallb.universe.tf/loadBalancerIPs',
  'lbipam.cilium.io/ips',
  'io.cilium/lb-ipam-ips',
] as const;

/** Annotations that name a pool, in the order they are read. */
export const POOL_ANNOTATIONS = [POOL_ANNOTATION, 'metallb.io/address-pool', 'metallb.universe.tf/address-pool'] as const;

/** xlb.io annotations on Services that some part of xlb reads (the others are reported as unknown). */
export const KNOWN_XLB_ANNOTATIONS = new Set<string>([LB_IPS_ANNOTATION, POOL_ANNOTATION, 'xlb.io/bgp-communities', 'xlb.io/bgp-large-communities']);

const SHARING = 'sharing one address between services is not supported: this service gets an address of its own';
const ALLOCATED = "written by MetalLB's controller, not read by xlb (xlb's IPAllocated Event names the pool)";

/** Annotations with no xlb equivalent, and why. */
export const REPORTED_ANNOTATIONS: Readonly<Record<string, string>> = {
  'metallb.io/allow-shared-ip': SHARING,
  'metallb.universe.tf/allow-shared-ip': SHARING,
  'lbipam.cilium.io/sharing-key': SHARING,
  'io.cilium/lb-ipam-sharing-key': SHARING,
  'lbipam.cilium.io/sharing-cross-namespace': SHARING,
  'io.cilium/lb-ipam-sharing-cross-namespace': SHARING,
  'metallb.io/ip-allocated-from-pool': ALLOCATED,
  'metallb.universe.tf/ip-allocated-from-pool': ALLOCATED,
};

/** Prefixes whose annotations concern LB IPAM: one that is neither honoured nor listed above is reported as unknown. */
export const IPAM_ANNOTATION_PREFIXES = ['xlb.io/', 'metallb.io/', 'metallb.universe.tf/', 'lbipam.cilium.io/', 'io.cilium/lb-ipam-'] as const;

/**
 * The address a service's annotations ask for.
 * @returns `{}` when none asks, `{ ip, from }` (from: the annotation), or `{ error }` naming the annotation
 */
export function annotatedAddress(annotations: Record<string, string>): { ip?: string; from?: string; error?: string } {
  let chosen: { ip: string; from: string } | undefined;
  for (const ann of ADDRESS_ANNOTATIONS) {
    const value = annotations[ann];
    if (value === undefined) continue;
    const parts = value.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = parts.find((p) => !isIPv4(p) && !net.isIPv6(p));
    if (bad !== undefined) return { error: `annotation ${ann}: ${JSON.stringify(bad)} is not an IP address` };
    const v6 = parts.filter((p) => net.isIPv6(p));
    if (v6.length) return { error: `annotation ${ann}: IPv6 ${v6.join(', ')} cannot be assigned yet (the datapath serves IPv4)` };
    if (parts.length > 1) return { error: `annotation ${ann}: one IPv4 address per service (got ${parts.join(', ')})` };
    if (parts.length === 0) continue;
    if (chosen && chosen.ip !== parts[0]) return { error: `annotations ${chosen.from} (${chosen.ip}) and ${ann} (${parts[0]}) ask for different addresses` };
    chosen ??= { ip: parts[0], from: ann };
  }
  return chosen ?? {};
}

/**
 * The pool a service's annotations name.
 * @returns `{}` when none does, `{ name, from }`, or `{ error }` when two name different pools
 */
export function annotatedPool(annotations: Record<string, string>): { name?: string; from?: string; error?: string } {
  let chosen: { name: string; from: string } | undefined;
  for (const ann of POOL_ANNOTATIONS) {
    const value = annotations[ann]?.trim();
    if (!value) continue;
    if (chosen && chosen.name !== value) return { error: `annotations ${chosen.from} (${chosen.name}) and ${ann} (${value}) name different pools` };
    chosen ??= { name: value, from: ann };
  }
  return chosen ?? {};
}

/**
 * The annotations of a Service LB IPAM manages that it does not honour,
 * each as an issue naming the Service and the annotation (the agent lists
 * them in `/v1/issues`; the IPAM leader records them as Events).
 * @param object `Service namespace/name`
 */
export function annotationIssues(object: string, annotations: Record<string, string>): InputIssue[] {
  const out: InputIssue[] = [];
  for (const ann of Object.keys(annotations).sort()) {
    if (!IPAM_ANNOTATION_PREFIXES.some((p) => ann.startsWith(p))) continue;
    if ((ADDRESS_ANNOTATIONS as readonly string[]).includes(ann) || (POOL_ANNOTATIONS as readonly string[]).includes(ann) || KNOWN_XLB_ANNOTATIONS.has(ann)) continue;
    const why = REPORTED_ANNOTATIONS[ann];
    out.push({
      object,
      field: `metadata.annotations["${ann}"]`,
      message: why ? `not supported: ${why}` : `unknown annotation, ignored (honoured: ${[...ADDRESS_ANNOTATIONS, ...POOL_ANNOTATIONS].join(', ')})`,
    });
  }
  return out;
}

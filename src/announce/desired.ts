/**
 * Which VIPs this node announces, from the service ports it programmed: the
 * rule every announcer (BGP, layer 2) shares, after MetalLB's speaker and
 * Cilium's BGP control plane.
 *
 * - A LoadBalancer VIP (`status.loadBalancer.ingress[].ip` or
 *   `spec.loadBalancerIP`) is announced while one of its service ports has
 *   at least one ready backend; ExternalIPs likewise when `externalIPs` is on.
 * - With `externalTrafficPolicy: Local`, only by nodes that host a ready
 *   backend of it: other nodes would have nothing to send the traffic to
 *   without SNAT, which Local exists to avoid.
 * - One VIP shared by several service ports (TCP and UDP on one address, the
 *   users' favourite) is announced once, if any of them qualifies.
 * - Per-service communities come from annotations; a bad annotation is an
 *   input issue naming the service and the annotation, and the VIP is still
 *   announced with the configured communities only.
 */
import type { AnnouncedVip } from './announcer.js';
import type { ClusterState, InputIssue } from '../model/types.js';
import type { DesiredService } from '../services/translate.js';
import { parseCommunity, parseLargeCommunity } from '../bgp/communities.js';

/** Annotation: extra RFC 1997 communities for a service's VIPs, comma-separated `ASN:value`. */
export const COMMUNITIES_ANNOTATION = 'xlb.io/bgp-communities';
/** Annotation: extra RFC 8092 large communities, comma-separated `global:local1:local2`. */
export const LARGE_COMMUNITIES_ANNOTATION = 'xlb.io/bgp-large-communities';

/** Options of {@link announcedVips}. */
export interface AnnounceOptions {
  /** Announce `spec.externalIPs` too (default: LoadBalancer VIPs only). */
  externalIPs: boolean;
}

/** What {@link announcedVips} returns: the VIPs sorted by address, and the annotations it could not use. */
export interface AnnouncedSet {
  vips: AnnouncedVip[];
  issues: InputIssue[];
}

function splitList(v: string | undefined): string[] {
  return (v ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

/**
 * The entries of the comma-separated `annotation` of Service `objKey` that
 * `parse` accepts, in order. One it refuses (it throws) is left out and, when
 * `issues` is given, reported there naming the service and the annotation.
 */
function annotatedCommunities(
  objKey: string,
  annotations: Record<string, string>,
  annotation: string,
  parse: (s: string) => unknown,
  issues: InputIssue[] | undefined,
): string[] {
  const out: string[] = [];
  for (const c of splitList(annotations[annotation])) {
    try {
      parse(c);
      out.push(c);
    } catch (e) {
      issues?.push({ object: `Service ${objKey}`, field: `metadata.annotations["${annotation}"]`, message: `${(e as Error).message}; announced without it` });
    }
  }
  return out;
}

/**
 * The VIPs this node should announce now.
 * @param services the controller's translated service ports (readiness and locality of each backend)
 * @param state the snapshot they came from (for annotations)
 */
export function announcedVips(services: DesiredService[], state: ClusterState, opts: AnnounceOptions): AnnouncedSet {
  const byVip = new Map<string, { services: Set<string>; communities: Set<string>; large: Set<string> }>();
  const issues: InputIssue[] = [];
  const annotationsChecked = new Set<string>();
  for (const svc of services) {
    const kinds = opts.externalIPs ? ['LoadBalancer', 'ExternalIP'] : ['LoadBalancer'];
    const vips = svc.frontends.filter((f) => kinds.includes(f.kind)).map((f) => f.addr);
    if (!vips.length) continue;
    const local = svc.externalTrafficPolicy === 'Local';
    if (!svc.backends.some((b) => b.ready && (!local || b.local))) continue;

    const objKey = `${svc.namespace}/${svc.name}`;
    const annotations = state.services.get(objKey)?.annotations ?? {};
    // A service with several ports comes once per port: its annotations are reported once.
    const report = annotationsChecked.has(objKey) ? undefined : issues;
    annotationsChecked.add(objKey);
    const communities = annotatedCommunities(objKey, annotations, COMMUNITIES_ANNOTATION, parseCommunity, report);
    const large = annotatedCommunities(objKey, annotations, LARGE_COMMUNITIES_ANNOTATION, parseLargeCommunity, report);
    for (const vip of vips) {
      let e = byVip.get(vip);
      if (!e) byVip.set(vip, (e = { services: new Set(), communities: new Set(), large: new Set() }));
      e.services.add(objKey);
      for (const c of communities) e.communities.add(c);
      for (const c of large) e.large.add(c);
    }
  }
  const vips = [...byVip]
    .sort(([a], [b]) => ipOrder(a) - ipOrder(b))
    .map(([vip, e]) => {
      const v: AnnouncedVip = { vip, service: [...e.services].sort().join(',') };
      if (e.communities.size) v.communities = [...e.communities].sort();
      if (e.large.size) v.largeCommunities = [...e.large].sort();
      return v;
    });
  return { vips, issues };
}

function ipOrder(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

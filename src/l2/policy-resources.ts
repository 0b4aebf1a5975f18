/**
 * L2AnnouncementPolicy resources (xlb.io/v1alpha1, cluster-scoped; CRD in
 * deploy/helm/xlb/crds/xlb.io_l2announcementpolicies.yaml): which VIPs layer
 * 2 mode announces, from which nodes and on which interfaces, after Cilium's
 * CiliumL2AnnouncementPolicy (`serviceSelector`, `nodeSelector`,
 * `interfaces`), followed live by every agent with an `l2` section.
 *
 * - While no policy is accepted, every VIP is announced as the `l2` section
 *   says (every node a candidate, on every `l2.interfaces`): the
 *   configuration alone keeps working, and a single bad policy cannot stop
 *   every announcement.
 * - Once one is, a VIP is announced by this node only when a policy selects
 *   both its Service (`serviceSelector` over its labels and the pseudo-labels
 *   `io.kubernetes.service.namespace` / `io.kubernetes.service.name`) and
 *   this node (`nodeSelector` over the Node's labels); this node then is a
 *   candidate for it (the ownership strategy still picks one owner among the
 *   candidates). It is answered on the union of those policies'
 *   `interfaces` (all of `l2.interfaces` for a policy without them). A VIP
 *   of several Services is announced when a policy selects any of them.
 * - A policy's interface that is not one of this node's `l2.interfaces` is
 *   skipped on this node and reported in its `/v1/issues`; a policy left with
 *   none of them here announces nothing here.
 * - Checked beyond the schema: the selectors (In/NotIn need values,
 *   Exists/DoesNotExist take none). A bad policy is refused with
 *   `conditions[type=Accepted]` False (reason InvalidSelector or
 *   InvalidSpec, a message naming the field), one Warning Event, and
 *   `/v1/issues`; the others keep working.
 *
 * Until the policies are known (listed, or their CRD found missing) the
 * agent does not update layer 2 at all: the VIPs the previous agent
 * answered stay answered, and no node becomes a candidate it should not be.
 */
import type { AnnouncedVip } from '../announce/announcer.js';
import type { InputIssue, ServiceModel } from '../model/types.js';
import type { RawObject } from '../sources/kubernetes/informer.js';
import { CUSTOM_RESOURCES } from '../sources/kubernetes/custom.js';
import { NodeSelectedResources, type NodeSelectedOptions } from '../sources/kubernetes/node-selected.js';
import { parseLabelSelector, selectorMatches, type LabelSelector } from '../sources/kubernetes/selector.js';
import { SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL } from '../ipam/pool.js';

/** The kind, as its CRD names it. */
export const POLICY_KIND = CUSTOM_RESOURCES.l2Policies;

/** `conditions[type=Accepted].reason`. */
export type PolicyReason = 'Accepted' | 'InvalidSelector' | 'InvalidSpec';

/** What xlb made of one L2AnnouncementPolicy (the same on every node). */
export interface ParsedPolicy {
  name: string;
  uid?: string;
  resourceVersion?: string;
  accepted: boolean;
  serviceSelector?: LabelSelector;
  nodeSelector?: LabelSelector;
  /** Absent: every announcing interface. */
  interfaces?: string[];
  reason: PolicyReason;
  message: string;
  field?: string;
}

/** Read one L2AnnouncementPolicy. */
export function parsePolicyResource(obj: RawObject): ParsedPolicy {
  const m = obj.metadata;
  const base = { name: m.name, uid: m.uid, resourceVersion: m.resourceVersion };
  const bad = (reason: PolicyReason, field: string, message: string): ParsedPolicy => ({ ...base, accepted: false, reason, field, message: `${field}: ${message}` });
  const spec = obj.spec as Record<string, unknown> | undefined;
  if (!spec || typeof spec !== 'object') return bad('InvalidSpec', 'spec', 'is required');
  const svc = parseLabelSelector(spec.serviceSelector, 'spec.serviceSelector');
  if (svc.error) return bad('InvalidSelector', svc.error.field, svc.error.message);
  const node = parseLabelSelector(spec.nodeSelector, 'spec.nodeSelector');
  if (node.error) return bad('InvalidSelector', node.error.field, node.error.message);
  let interfaces: string[] | undefined;
  if (spec.interfaces !== undefined && spec.interfaces !== null) {
    if (!Array.isArray(spec.interfaces) || spec.interfaces.length === 0 || spec.interfaces.some((i) => typeof i !== 'string' || !/^[^/:\s]{1,15}$/.test(i))) {
      return bad('InvalidSpec', 'spec.interfaces', 'must list interface names (1..15 characters, no "/", ":" or spaces)');
    }
    interfaces = spec.interfaces as string[];
  }
  return { ...base, accepted: true, serviceSelector: svc.selector, nodeSelector: node.selector, ...(interfaces ? { interfaces } : {}), reason: 'Accepted', message: '' };
}

/**
 * The VIPs this node announces under the policies (see the module comment).
 * @param policies every policy, accepted or not (without an accepted one, `vips` are returned as they are)
 * @param services the snapshot's Services, for their labels
 * @param nodeLabels this node's labels
 * @param nodeInterfaces this node's announcing interfaces (`l2.interfaces`)
 * @returns the VIPs, each limited to its interfaces, and the policy interfaces missing on this node (`policy` → names)
 */
export function applyPolicies(
  vips: readonly AnnouncedVip[],
  policies: readonly ParsedPolicy[],
  services: ReadonlyMap<string, Pick<ServiceModel, 'labels'>>,
  nodeLabels: Record<string, string>,
  nodeInterfaces: readonly string[],
): { vips: AnnouncedVip[]; missing: Map<string, string[]> } {
  const accepted = policies.filter((p) => p.accepted);
  const missing = new Map<string, string[]>();
  if (!accepted.length) return { vips: [...vips], missing };
  const here = accepted.filter((p) => selectorMatches(p.nodeSelector, nodeLabels));
  for (const p of here) {
    const absent = (p.interfaces ?? []).filter((i) => !nodeInterfaces.includes(i));
    if (absent.length) missing.set(p.name, absent);
  }
  const out: AnnouncedVip[] = [];
  for (const v of vips) {
    let all = false;
    const on = new Set<string>();
    for (const key of v.service.split(',')) {
      const i = key.indexOf('/');
      const labels = { ...(services.get(key)?.labels ?? {}), [SERVICE_NAMESPACE_LABEL]: key.slice(0, i), [SERVICE_NAME_LABEL]: key.slice(i + 1) };
      for (const p of here) {
        if (!selectorMatches(p.serviceSelector, labels)) continue;
        if (!p.interfaces) all = true;
        else for (const n of p.interfaces) if (nodeInterfaces.includes(n)) on.add(n);
      }
    }
    if (all) {
      const { interfaces: _, ...every } = v;
      out.push(every);
    } else if (on.size) out.push({ ...v, interfaces: nodeInterfaces.filter((n) => on.has(n)) });
  }
  return { vips: out, missing };
}

/** Options of {@link PolicyResources}. */
export interface PolicyResourcesOptions extends NodeSelectedOptions {
  nodeName: string;
  /** This node's announcing interfaces (`l2.interfaces`, default the agent's). */
  interfaces: string[];
}

/** Follows the L2AnnouncementPolicies for this node. See the module comment. */
export class PolicyResources extends NodeSelectedResources<ParsedPolicy> {
  private missing = new Map<string, string[]>();

  constructor(private readonly opts: PolicyResourcesOptions) {
    super(opts, {
      kind: POLICY_KIND,
      parse: parsePolicyResource,
      acceptedMessage: 'announcing the VIPs of the Services it selects from the nodes it selects',
      logKey: 'policy',
      area: 'l2',
    });
  }

  /** The layer 2 VIPs of this node under the policies (callable once {@link ready}). */
  select(vips: readonly AnnouncedVip[], services: ReadonlyMap<string, Pick<ServiceModel, 'labels'>>): AnnouncedVip[] {
    const r = applyPolicies(vips, this.parsed, services, this.labels ?? {}, this.opts.interfaces);
    for (const [name, absent] of r.missing) {
      if (this.missing.get(name)?.join() !== absent.join()) this.opts.log.warn({ policy: name, interfaces: absent }, 'L2AnnouncementPolicy names interfaces this node does not announce on; skipped here');
    }
    this.missing = r.missing;
    return r.vips;
  }

  /** The policies as read. */
  policies(): readonly ParsedPolicy[] {
    return this.parsed;
  }

  /** Refused policies, interfaces missing here, and why resources are not read: for `/v1/issues`. */
  issues(): InputIssue[] {
    const out = this.baseIssues('this policy announces nothing');
    for (const [name, absent] of this.missing) {
      out.push({ object: `L2AnnouncementPolicy ${name}`, field: 'spec.interfaces', message: `${absent.join(', ')}: not among this node's announcing interfaces (${this.opts.interfaces.join(', ')}); skipped on ${this.opts.nodeName}` });
    }
    return out;
  }
}

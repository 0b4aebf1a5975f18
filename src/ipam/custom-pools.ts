/**
 * LoadBalancerIPPool resources (xlb.io/v1alpha1, cluster-scoped; CRD in
 * deploy/helm/xlb/crds/xlb.io_loadbalancerippools.yaml): address pools
 * added, changed and deleted while the agents run, merged with the pools of
 * the configuration (`ipam.pools`).
 *
 * Rules, after Cilium's LB IPAM ("Conflicts") and MetalLB:
 * - The configured pools come first, in their order; then the resources,
 *   oldest first (creationTimestamp, then name). Pools are tried in that
 *   order for a service that asks for no address.
 * - A resource is checked on its own first: every address must parse
 *   (an IPv4 address, CIDR without host bits, or range FIRST-LAST with
 *   FIRST <= LAST) and its entries must not overlap one another; its
 *   selector must be a valid label selector. What the CRD's schema already
 *   refuses cannot reach xlb through the API server, but is checked again.
 * - Then against the pools before it: a resource named like a configured
 *   pool (NameConflict), or overlapping a pool before it (Overlap), is
 *   refused. So the older pool keeps working and the newer one is marked,
 *   as Cilium marks "the last added pool" Conflicting. A refused pool takes
 *   no part in later checks.
 * - A refused pool serves no address; what it had assigned is released and
 *   the services are assigned again from the other pools (controller.ts).
 *   The same happens when a pool is deleted or no longer holds an address
 *   (Cilium does the same; MetalLB too, on its next reconcile).
 *
 * Reporting: each resource's `status` (written by the IPAM leader only):
 * `conditions[type=Ready]` True (reason `Allocating`) or False (reason
 * `InvalidAddress`, `InvalidSelector`, `Overlap`, `NameConflict`, with a
 * message that names the field), `addresses` {total, used, available} and
 * `observedGeneration`; a Warning Event on the resource when it is refused
 * (once per distinct message), a Normal `PoolReady` when a refused pool
 * is accepted again; and, on every agent, an issue in `/v1/issues`.
 */
import { isDeepStrictEqual } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { InputIssue } from '../model/types.js';
import type { RawObject } from '../sources/kubernetes/informer.js';
import {
  CUSTOM_RESOURCES,
  CustomResourceWatch,
  XLB_API_VERSION,
  mergeConditions,
  type CustomStatusApi,
} from '../sources/kubernetes/custom.js';
import type { EventSink, ObjectRef } from '../sources/kubernetes/events.js';
import { parseLabelSelector } from '../sources/kubernetes/selector.js';
import { apiErrorInfo, formatApiError } from '../sources/kubernetes/kubeconfig.js';
import { Backoff, type BackoffOptions } from '../sources/kubernetes/backoff.js';
import { Pool, overlap, parseAddressEntry, type AddressRange, type PoolScope } from './pool.js';

/** The kind, as its CRD names it. */
export const POOL_KIND = CUSTOM_RESOURCES.pools;

/** Why a pool resource serves addresses or not (`conditions[type=Ready].reason`). */
export type PoolReason = 'Allocating' | 'InvalidAddress' | 'InvalidSelector' | 'InvalidSpec' | 'Overlap' | 'NameConflict';

/** What xlb made of one LoadBalancerIPPool. */
export interface PoolVerdict {
  name: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  /** The pool, when it serves addresses. */
  pool?: Pool;
  reason: PoolReason;
  /** Empty when the pool serves addresses. */
  message: string;
  /** The field at fault (`spec.addresses[1]`), when refused. */
  field?: string;
}

type Spec = {
  addresses?: unknown;
  avoidNetworkAndBroadcast?: unknown;
  autoAssign?: unknown;
  namespaces?: unknown;
  serviceSelector?: unknown;
};

/**
 * Read one LoadBalancerIPPool on its own (no comparison with other pools).
 * @returns the pool, or the reason, field and message of its first problem
 */
export function parsePoolResource(obj: RawObject): { pool?: Pool; error?: { reason: PoolReason; field: string; message: string } } {
  const name = obj.metadata.name;
  const spec = (obj.spec ?? undefined) as Spec | undefined;
  const bad = (reason: PoolReason, field: string, message: string) => ({ error: { reason, field, message } });
  if (!spec || typeof spec !== 'object') return bad('InvalidSpec', 'spec', 'is required');
  if (!Array.isArray(spec.addresses) || spec.addresses.length === 0) return bad('InvalidSpec', 'spec.addresses', 'must list at least one CIDR, range or address');
  const avoid = spec.avoidNetworkAndBroadcast === undefined || spec.avoidNetworkAndBroadcast === null ? true : spec.avoidNetworkAndBroadcast;
  if (typeof avoid !== 'boolean') return bad('InvalidSpec', 'spec.avoidNetworkAndBroadcast', 'must be true or false');
  const autoAssign = spec.autoAssign === undefined || spec.autoAssign === null ? true : spec.autoAssign;
  if (typeof autoAssign !== 'boolean') return bad('InvalidSpec', 'spec.autoAssign', 'must be true or false');
  const ranges: AddressRange[] = [];
  for (const [i, a] of (spec.addresses as unknown[]).entries()) {
    const field = `spec.addresses[${i}]`;
    if (typeof a !== 'string') return bad('InvalidAddress', field, `must be a CIDR, a range FIRST-LAST or an address (got ${JSON.stringify(a)})`);
    let r: AddressRange;
    try {
      r = parseAddressEntry(a, avoid);
    } catch (e) {
      return bad('InvalidAddress', field, (e as Error).message);
    }
    const clash = overlap([r], ranges);
    if (clash) return bad('InvalidAddress', field, `${JSON.stringify(a)} overlaps an earlier entry of the same pool (at ${clash})`);
    ranges.push(r);
  }
  const scope: PoolScope = { autoAssign };
  if (spec.namespaces !== undefined && spec.namespaces !== null) {
    if (!Array.isArray(spec.namespaces) || spec.namespaces.some((n) => typeof n !== 'string')) return bad('InvalidSpec', 'spec.namespaces', 'must be a list of namespace names');
    scope.namespaces = spec.namespaces as string[];
  }
  const sel = parseLabelSelector(spec.serviceSelector, 'spec.serviceSelector');
  if (sel.error) return bad('InvalidSelector', sel.error.field, sel.error.message);
  if (sel.selector?.matchLabels) scope.matchLabels = sel.selector.matchLabels;
  if (sel.selector?.matchExpressions) scope.matchExpressions = sel.selector.matchExpressions;
  return { pool: new Pool(name, ranges, scope) };
}

/** Oldest first (creationTimestamp, then name): the order pool resources are tried and checked in. */
function olderFirst(a: RawObject, b: RawObject): number {
  const ta = String(a.metadata.creationTimestamp ?? '');
  const tb = String(b.metadata.creationTimestamp ?? '');
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

/** The index of the first entry of `pool` that overlaps `other`, and one shared address. */
function overlappingEntry(pool: Pool, other: Pool): { index: number; at: string } | undefined {
  for (const [i, r] of pool.ranges.entries()) {
    const at = overlap([r], other.ranges);
    if (at) return { index: i, at };
  }
  return undefined;
}

/**
 * Merge the configured pools with the pool resources (see the module comment).
 * @returns the pools to allocate from, in order, and a verdict per resource
 */
export function mergePools(configPools: readonly Pool[], resources: readonly RawObject[]): { pools: Pool[]; verdicts: PoolVerdict[] } {
  const pools: Pool[] = [...configPools];
  const verdicts: PoolVerdict[] = [];
  for (const obj of [...resources].sort(olderFirst)) {
    const m = obj.metadata;
    const base = { name: m.name, uid: m.uid, resourceVersion: m.resourceVersion, generation: typeof m.generation === 'number' ? m.generation : undefined };
    const r = parsePoolResource(obj);
    if (r.error) {
      verdicts.push({ ...base, reason: r.error.reason, field: r.error.field, message: `${r.error.field}: ${r.error.message}` });
      continue;
    }
    const pool = r.pool!;
    if (configPools.some((p) => p.name === pool.name)) {
      verdicts.push({ ...base, reason: 'NameConflict', field: 'metadata.name', message: `metadata.name: the agent configuration (ipam.pools) has a pool named ${pool.name}; that one is used` });
      continue;
    }
    let conflict: PoolVerdict | undefined;
    for (const other of pools) {
      const o = overlappingEntry(pool, other);
      if (!o) continue;
      const field = `spec.addresses[${o.index}]`;
      const what = configPools.includes(other) ? `pool ${other.name} of the agent configuration (ipam.pools)` : `LoadBalancerIPPool ${other.name}`;
      conflict = { ...base, reason: 'Overlap', field, message: `${field}: overlaps ${what} at ${o.at}; an address belongs to one pool, and the older pool keeps it` };
      break;
    }
    if (conflict) {
      verdicts.push(conflict);
      continue;
    }
    pools.push(pool);
    verdicts.push({ ...base, pool, reason: 'Allocating', message: '' });
  }
  return { pools, verdicts };
}

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** Options of {@link PoolResources}. */
export interface PoolResourcesOptions {
  kubeConfig: KubeConfig;
  log: Log;
  /** The pools of `ipam.pools`, in order. */
  configPools: Pool[];
  /** Told the merged pools after every change (IpamController.setPools). Must not throw. */
  onPools: (pools: Pool[]) => void;
  /** Addresses used per pool name (IpamController.stats().pools), for the status counts. */
  usage: () => Array<{ pool: string; used: number }>;
  status: CustomStatusApi;
  events: EventSink;
  /** Status writes wait this long for more changes, ms (default 500): a burst of assignments makes one write per pool. */
  flushDelayMs?: number;
  /** Informer backoff, and the retry of failed status writes (default 500 ms doubling to 30 s). */
  backoff?: BackoffOptions;
  watchTimeoutSeconds?: () => number;
}

/**
 * Follows the LoadBalancerIPPool resources on every agent, hands the merged
 * pools to IPAM, reports refused pools as issues, and — on the IPAM leader
 * ({@link PoolResources.setLeading}) — writes their statuses and Events.
 */
export class PoolResources {
  private readonly watch: CustomResourceWatch;
  private verdictList: PoolVerdict[] = [];
  /** The pools last handed on, as a comparable string. */
  private lastPools?: string;
  private leading = false;
  private flushTimer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private flushAgain = false;
  private readonly retry: Backoff;
  private stopped = false;
  /** Per pool name: the message of the last Warning Event sent (cleared when it is accepted again, with a Normal Event). */
  private readonly warned = new Map<string, string>();
  private st = { statusWrites: 0, statusErrors: 0 };

  constructor(private readonly opts: PoolResourcesOptions) {
    this.retry = new Backoff({ initialMs: 500, maxMs: 30_000, ...opts.backoff });
    this.watch = new CustomResourceWatch({
      kubeConfig: opts.kubeConfig,
      kind: POOL_KIND,
      log: opts.log,
      backoff: opts.backoff,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      onChange: () => this.reconcile(),
    });
  }

  /** Start following the resources; see {@link whenReady}. */
  start(): void {
    this.watch.start();
  }

  /**
   * Resolves once the resources are known (listed, or their CRD found
   * missing) and the merged pools were handed on: IPAM must not start
   * before, or it would release the addresses of pools it has not read yet.
   */
  whenReady(): Promise<void> {
    return this.watch.whenReady();
  }

  /** Stop following; no status write starts after this. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.leading = false;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.watch.stop();
    await this.flushing;
  }

  /** Whether this agent writes the statuses (it leads IPAM); leading writes every status that differs at once. */
  setLeading(leading: boolean): void {
    this.leading = leading;
    if (leading) {
      this.warned.clear();
      this.scheduleFlush(0);
    }
  }

  /** Addresses were assigned or released: the counts in the statuses follow. */
  assignmentsChanged(): void {
    if (this.leading) this.scheduleFlush();
  }

  /** What xlb made of each resource, oldest first. */
  verdicts(): readonly PoolVerdict[] {
    return this.verdictList;
  }

  /** Refused pools, and why resources are not read (CRD missing, list refused): for `/v1/issues`. */
  issues(): InputIssue[] {
    const out = this.watch.issues();
    for (const v of this.verdictList) if (!v.pool) out.push({ object: `LoadBalancerIPPool ${v.name}`, field: v.field ?? 'spec', message: `${v.message.replace(/^[^:]*: /, '')} (${v.reason}); this pool serves no address` });
    return out;
  }

  /** Counters and the watch's state. */
  stats() {
    return { state: this.watch.state(), resources: this.verdictList.length, refused: this.verdictList.filter((v) => !v.pool).length, ...this.st };
  }

  // ---------------------------------------------------------------------------

  private reconcile(): void {
    if (this.stopped) return;
    const { pools, verdicts } = mergePools(this.opts.configPools, this.watch.objects());
    const before = new Map(this.verdictList.map((v) => [v.name, v]));
    for (const v of verdicts) {
      const was = before.get(v.name);
      if (!v.pool && (!was || was.message !== v.message)) this.opts.log.warn({ pool: v.name, reason: v.reason, message: v.message }, 'LoadBalancerIPPool refused');
      if (v.pool && (!was || !was.pool || was.generation !== v.generation)) this.opts.log.info({ pool: v.name, size: v.pool.size }, 'LoadBalancerIPPool serving');
    }
    for (const name of before.keys()) if (!verdicts.some((v) => v.name === name)) this.opts.log.info({ pool: name }, 'LoadBalancerIPPool deleted');
    this.verdictList = verdicts;
    // A status write (the counts) changes no pool: IPAM decides every service again only when one did.
    const key = JSON.stringify(pools.map((p) => [p.name, p.ranges, p.scope]));
    if (key !== this.lastPools) {
      this.lastPools = key;
      try {
        this.opts.onPools(pools);
      } catch (e) {
        this.opts.log.error({ err: (e as Error).message }, 'ipam: applying the pools failed');
      }
    }
    if (this.leading) this.scheduleFlush();
  }

  private scheduleFlush(delay = this.opts.flushDelayMs ?? 500): void {
    if (this.stopped || !this.leading) return;
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    if (this.flushTimer) {
      if (delay > 0) return; // one is due already
      clearTimeout(this.flushTimer);
    }
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
        if (this.flushAgain) {
          this.flushAgain = false;
          this.scheduleFlush();
        }
      });
    }, delay);
  }

  /** Write every status that differs from the one the cache shows, and the Events of new refusals. */
  private async flush(): Promise<void> {
    const used = new Map(this.opts.usage().map((u) => [u.pool, u.used]));
    const objects = new Map(this.watch.objects().map((o) => [o.metadata.name, o]));
    let failed = false;
    for (const v of this.verdictList) {
      if (!this.leading || this.stopped) return;
      const obj = objects.get(v.name);
      if (!obj) continue;
      const ref: ObjectRef = { apiVersion: XLB_API_VERSION, kind: POOL_KIND.kind, name: v.name, uid: v.uid, resourceVersion: v.resourceVersion };
      this.sendEvents(v, ref);
      const current = (obj.status ?? {}) as Record<string, unknown>;
      const desired = this.desiredStatus(v, current, used.get(v.name) ?? 0);
      if (isDeepStrictEqual(pick(current, Object.keys(desired)), desired)) continue;
      try {
        await this.opts.status.patchStatus(POOL_KIND, v.name, desired);
        this.st.statusWrites++;
      } catch (e) {
        if (apiErrorInfo(e).code === 404) continue; // deleted meanwhile
        this.st.statusErrors++;
        failed = true;
        this.opts.log.warn({ pool: v.name, err: formatApiError(e) }, 'LoadBalancerIPPool status write failed; retrying after backoff');
      }
    }
    if (failed) this.scheduleFlush(this.retry.next());
    else this.retry.reset();
  }

  private desiredStatus(v: PoolVerdict, current: Record<string, unknown>, used: number): Record<string, unknown> {
    const total = v.pool?.size ?? 0;
    const inUse = v.pool ? used : 0;
    const ready = v.pool !== undefined;
    return {
      ...(v.generation !== undefined ? { observedGeneration: v.generation } : {}),
      addresses: { total, used: inUse, available: total - inUse },
      conditions: mergeConditions(current.conditions, [
        {
          type: 'Ready',
          status: ready ? 'True' : 'False',
          ...(v.generation !== undefined ? { observedGeneration: v.generation } : {}),
          reason: v.reason,
          message: ready ? `serving ${total} addresses` : v.message,
        },
      ]),
    };
  }

  private sendEvents(v: PoolVerdict, ref: ObjectRef): void {
    const last = this.warned.get(v.name);
    if (!v.pool) {
      if (last === v.message) return;
      this.warned.set(v.name, v.message);
      void this.opts.events.event(ref, 'Warning', v.reason, v.message);
    } else if (last !== undefined) {
      this.warned.delete(v.name);
      void this.opts.events.event(ref, 'Normal', 'PoolReady', `serving ${v.pool.size} addresses`);
    }
  }
}

/** The entries of `o` under `keys` (the fields xlb writes; others are left as they are). */
function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

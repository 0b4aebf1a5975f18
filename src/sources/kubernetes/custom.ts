/**
 * xlb's custom resources (group `xlb.io`, version `v1alpha1`, all
 * cluster-scoped; the CustomResourceDefinitions are in
 * deploy/helm/xlb/crds/): a watch over one kind, the status writes, and
 * status conditions as meta/v1 Condition (Kubernetes API conventions,
 * "Typical status properties").
 *
 * {@link CustomResourceWatch} is an {@link Informer} that also tells "the
 * kind does not exist" apart: a 404 on the list means the CRD is not
 * installed, which is read as "no objects of this kind" (the watch is ready,
 * and keeps retrying after its backoff, so a CRD installed later is followed
 * without a restart). Any other error before the first list (403: the RBAC
 * rules lack the kind) keeps it not ready, and is reported as an issue:
 * consumers must not act on a set of objects they could not read.
 *
 * Status is written through the `status` subresource with a JSON merge patch
 * (RFC 7386): the fields written replace what was there, conditions as a
 * whole list, and a map's keys one by one (each agent writes its own entry of
 * a BGPPeer's `status.nodes`). Without a resourceVersion precondition by
 * default: a status is recomputed from every change of the object, so a
 * write that raced one is followed by the right one. Where several agents
 * compute the same value, the write carries one, so that one of them wins
 * and the others, refused with 409, find it written.
 */
import { isDeepStrictEqual } from 'node:util';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { InputIssue } from '../../model/types.js';
import { Informer, type RawObject } from './informer.js';
import { apiErrorInfo, formatApiError } from './kubeconfig.js';
import type { BackoffOptions } from './backoff.js';

/** API group of xlb's custom resources. */
export const XLB_GROUP = 'xlb.io';
/** Their version. */
export const XLB_VERSION = 'v1alpha1';
/** `apiVersion` of xlb's custom resources. */
export const XLB_API_VERSION = `${XLB_GROUP}/${XLB_VERSION}`;

/** One kind of xlb custom resource. */
export interface CustomResourceKind {
  kind: string;
  /** Lower-case plural: the URL path segment and the CRD name's first part. */
  plural: string;
}

/** The kinds xlb defines. */
export const CUSTOM_RESOURCES = {
  pools: { kind: 'LoadBalancerIPPool', plural: 'loadbalancerippools' },
  bgpPeers: { kind: 'BGPPeer', plural: 'bgppeers' },
  l2Policies: { kind: 'L2AnnouncementPolicy', plural: 'l2announcementpolicies' },
  bgpAdvertisements: { kind: 'BGPAdvertisement', plural: 'bgpadvertisements' },
} as const satisfies Record<string, CustomResourceKind>;

/** Collection path of a cluster-scoped xlb kind. */
export function customResourcePath(kind: CustomResourceKind): string {
  return `/apis/${XLB_GROUP}/${XLB_VERSION}/${kind.plural}`;
}

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** Where a {@link CustomResourceWatch} stands. */
export type CustomWatchState = 'pending' | 'synced' | 'absent';

/** Options of {@link CustomResourceWatch}. */
export interface CustomResourceWatchOptions {
  kubeConfig: KubeConfig;
  kind: CustomResourceKind;
  log: Log;
  /** After every change of the set of objects (and when the kind appears or disappears). Must not throw. */
  onChange: () => void;
  backoff?: BackoffOptions;
  watchTimeoutSeconds?: () => number;
}

/** Follows every object of one xlb kind. See the module comment. */
export class CustomResourceWatch {
  private readonly informer: Informer;
  private st: CustomWatchState = 'pending';
  private lastError?: { code: number; message: string };
  private readyWaiters: Array<() => void> = [];

  constructor(private readonly opts: CustomResourceWatchOptions) {
    const crd = `${opts.kind.plural}.${XLB_GROUP}`;
    this.informer = new Informer({
      kubeConfig: opts.kubeConfig,
      path: customResourcePath(opts.kind),
      kind: opts.kind.kind,
      log: opts.log,
      backoff: opts.backoff,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      onEvent: () => {
        if (this.st === 'synced') this.changed();
      },
      onListed: () => {
        const was = this.st;
        this.st = 'synced';
        this.lastError = undefined;
        if (was === 'absent') opts.log.info({ kind: opts.kind.kind }, `CustomResourceDefinition ${crd} found: following ${opts.kind.kind} resources`);
        this.ready();
        this.changed();
      },
      onError: (err) => {
        const info = apiErrorInfo(err);
        this.lastError = { code: info.code, message: formatApiError(err) };
        // Only a list answers 404 for a missing kind; a watch that ends with
        // 404 (the CRD was deleted) is followed by a list that says so too.
        if (info.code === 404 && this.st !== 'absent') {
          opts.log.warn({ kind: opts.kind.kind }, `CustomResourceDefinition ${crd} is not installed: no ${opts.kind.kind} resources (install deploy/helm/xlb/crds to use them)`);
          this.st = 'absent';
          this.ready();
          this.changed();
        }
      },
    });
  }

  /** Begin listing and watching; see {@link whenReady}. */
  start(): void {
    this.informer.start();
  }

  /** Stop; no change is reported after this resolves. */
  async stop(): Promise<void> {
    await this.informer.stop();
    for (const w of this.readyWaiters.splice(0)) w();
  }

  /** Resolves once the objects are known: listed, or the kind found absent (404). */
  whenReady(): Promise<void> {
    if (this.st !== 'pending') return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  /** See {@link CustomWatchState}. */
  state(): CustomWatchState {
    return this.st;
  }

  /** Every object (none while the kind is absent or not listed yet). */
  objects(): RawObject[] {
    return this.st === 'synced' ? [...this.informer.list()] : [];
  }

  /**
   * Why the objects are not followed, if they are not: the CRD is missing,
   * or the API server refuses the list (reported until a list succeeds).
   */
  issues(): InputIssue[] {
    const object = `${this.opts.kind.kind} list`;
    if (this.st === 'absent') {
      return [{ object, field: '(resource)', message: `CustomResourceDefinition ${this.opts.kind.plural}.${XLB_GROUP} is not installed: no ${this.opts.kind.kind} is read (install deploy/helm/xlb/crds)` }];
    }
    if (this.st === 'pending' && this.lastError) {
      const hint = this.lastError.code === 403 ? `; the agent's ClusterRole needs list and watch on ${this.opts.kind.plural}.${XLB_GROUP}` : '';
      return [{ object, field: '(resource)', message: `cannot list ${this.opts.kind.kind} resources: ${this.lastError.message}${hint}; waiting` }];
    }
    return [];
  }

  /** Informer counters. */
  stats() {
    return this.informer.stats();
  }

  private ready(): void {
    for (const w of this.readyWaiters.splice(0)) w();
  }

  private changed(): void {
    try {
      this.opts.onChange();
    } catch (e) {
      this.opts.log.error({ kind: this.opts.kind.kind, err: (e as Error).message }, 'custom resource change handler failed');
    }
  }
}

/** A meta/v1 Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  /** metadata.generation the condition was computed from. */
  observedGeneration?: number;
  /** RFC 3339, seconds: when `status` last changed. */
  lastTransitionTime: string;
  /** CamelCase. */
  reason: string;
  message: string;
}

/** Now, as metav1.Time serializes (RFC 3339, whole seconds, UTC). */
export function conditionTime(now = Date.now()): string {
  return new Date(now).toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * The conditions to write: `next`, each keeping the `lastTransitionTime` of
 * the current condition of its type when its status did not change (the
 * API conventions: the time of the last transition, not of the last write).
 */
export function mergeConditions(current: unknown, next: Array<Omit<Condition, 'lastTransitionTime'>>, now = Date.now()): Condition[] {
  const cur = Array.isArray(current) ? (current as Array<Partial<Condition>>) : [];
  return next.map((c) => {
    const prev = cur.find((p) => p && p.type === c.type);
    const at = prev && prev.status === c.status && typeof prev.lastTransitionTime === 'string' ? prev.lastTransitionTime : conditionTime(now);
    return { type: c.type, status: c.status, ...(c.observedGeneration !== undefined ? { observedGeneration: c.observedGeneration } : {}), lastTransitionTime: at, reason: c.reason, message: c.message };
  });
}

/**
 * Write a condition that every agent computes alike (a resource accepted or
 * refused), with `observedGeneration`, unless the object shows it already.
 * The write carries the object's resourceVersion: of the agents that
 * computed it from the same version, one writes and the others get 409,
 * which this returns as not written (the next change of the object brings
 * the written status to them).
 * @returns whether this call wrote it (the caller then records the Event, once in the cluster)
 * @throws the API error of the write, but 409
 */
export async function writeSharedCondition(
  api: CustomStatusApi,
  kind: CustomResourceKind,
  obj: RawObject,
  condition: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>,
): Promise<boolean> {
  const current = (obj.status ?? {}) as { conditions?: unknown; observedGeneration?: unknown };
  const generation = typeof obj.metadata.generation === 'number' ? obj.metadata.generation : undefined;
  const gen = generation !== undefined ? { observedGeneration: generation } : {};
  const desired = { ...gen, conditions: mergeConditions(current.conditions, [{ ...condition, ...gen }]) };
  if (isDeepStrictEqual({ observedGeneration: current.observedGeneration, conditions: current.conditions }, { observedGeneration: desired.observedGeneration, conditions: desired.conditions })) return false;
  try {
    await api.patchStatus(kind, obj.metadata.name, desired, obj.metadata.resourceVersion);
    return true;
  } catch (e) {
    if (apiErrorInfo(e).code === 409) return false;
    throw e;
  }
}

/** Writes the status of xlb's custom resources; a fake stands in for it in unit tests. */
export interface CustomStatusApi {
  /**
   * Merge `status` into the object's status (status subresource).
   * @param resourceVersion precondition: the write fails with 409 when the object has changed since
   * @throws an error whose {@link apiErrorInfo} code is the HTTP status (404: the object is gone; 409: see resourceVersion)
   */
  patchStatus(kind: CustomResourceKind, name: string, status: Record<string, unknown>, resourceVersion?: string): Promise<void>;
}

/** {@link CustomStatusApi} over client-node's CustomObjectsApi. */
export class KubeCustomStatusApi implements CustomStatusApi {
  private readonly api: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  async patchStatus(kind: CustomResourceKind, name: string, status: Record<string, unknown>, resourceVersion?: string): Promise<void> {
    const body = resourceVersion ? { metadata: { resourceVersion }, status } : { status };
    await this.api.patchClusterCustomObjectStatus(
      { group: XLB_GROUP, version: XLB_VERSION, plural: kind.plural, name, body },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
}

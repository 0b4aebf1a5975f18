/**
 * The Kubernetes source: informers on Services, EndpointSlices and this
 * node's Node object, normalized into the same model as the manifests file
 * (src/sources/normalize.ts), delivered as whole snapshots.
 *
 * - Objects are normalized as they arrive (one Service or slice per event;
 *   a listed slice as soon as it is parsed, before the list is applied),
 *   so a snapshot costs no pass over every object; its Maps are shared
 *   with the source and copied by shard when the next change comes
 *   (copy-on-write, src/util/cowmap.ts), and it names the keys that changed
 *   (ClusterState.changed).
 *   An unchanged object is handed on as the same model object, and so is
 *   one whose update normalizes to an equal model (a managedFields or
 *   resourceVersion-only change): the service controller compares by
 *   identity and redoes only what changed.
 * - Events are coalesced ({@link Coalescer}: `debounceMs` of quiet, at most
 *   `maxDelayMs` after the first event), so the 10 000 ADDs of a relist make
 *   one snapshot; by default (0) the events of one read are delivered right
 *   after it, and a single endpoint change does not wait for a timer.
 * - An object that fails normalization is skipped and reported in every
 *   snapshot's `issues` until it is fixed or deleted; unknown fields are
 *   ignored (an API server newer than xlb adds fields). Watch input no
 *   object owns (an event without metadata.name) is logged and counted in
 *   {@link KubernetesSource.stats}.
 * - EndpointSlices are joined to their Service downstream by the
 *   `kubernetes.io/service-name` label (translate.ts), several per service.
 * - The Node informer watches only `metadata.name=<nodeName>`; its InternalIP
 *   and ExternalIP IPv4 addresses are this node's NodePort addresses
 *   ({@link KubernetesSource.nodeAddresses}). A change calls `onNode` and
 *   then delivers a snapshot, so the consumer re-syncs with the new addresses.
 * - Raw Service objects are shared with LB IPAM through
 *   {@link KubernetesSource.serviceFeed}: one watch serves both.
 *
 * `start()` resolves after every informer has listed once and the first
 * snapshot was delivered; it rejects after `startTimeoutMs` without a sync,
 * naming the API server and each informer's last error.
 */
import type { Logger } from 'pino';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Snapshot, Source } from '../source.js';
import type { EndpointSliceModel, InputIssue, ServiceModel } from '../../model/types.js';
import { normalizeEndpointSlice, normalizeService, type NormalizeOptions, type ObjectResult } from '../normalize.js';
import { Informer, type InformerEventType, type InformerStats, type RawObject } from './informer.js';
import { Coalescer } from './coalesce.js';
import { loadKubeConfig } from './kubeconfig.js';
import { nodeAddresses } from './nodes.js';
import { CowMap } from '../../util/cowmap.js';
import { flat } from '../../util/flat.js';
import type { BackoffOptions } from './backoff.js';

export { loadKubeConfig, apiErrorInfo, formatApiError } from './kubeconfig.js';
export { Informer, type RawObject, type InformerStats, type InformerEventType } from './informer.js';
export { nodeAddresses, type NodeAddresses } from './nodes.js';
export { Backoff, type BackoffOptions } from './backoff.js';

/**
 * Default quiet time before a snapshot, ms. 0: the events of one turn of
 * the event loop (one watch read, one list) make one snapshot, delivered
 * right after it (coalesce.ts); a burst spread over several reads makes a
 * few snapshots, each a cheap incremental sync. It was 2 ms, which added
 * 2-3 ms (timer granularity) to every endpoint change.
 */
export const DEFAULT_DEBOUNCE_MS = 0;
/** Default bound of a burst, ms: a steady stream of events still yields a snapshot this often. */
export const DEFAULT_MAX_DELAY_MS = 50;
/** Default wait for the first sync, ms (then start() rejects and the agent exits, visibly). */
export const DEFAULT_START_TIMEOUT_MS = 120_000;

/**
 * How the source normalizes objects unless told otherwise: fields newer than
 * xlb are ignored, and VIPs come only from `status.loadBalancer` (normalize.ts).
 */
export const K8S_NORMALIZE: NormalizeOptions = { unknownFields: 'ignore', loadBalancerIPs: 'status' };

/** API paths of the informers (all namespaces). */
export const PATHS = {
  services: '/api/v1/services',
  endpointSlices: '/apis/discovery.k8s.io/v1/endpointslices',
  nodes: '/api/v1/nodes',
} as const;

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** Options of {@link KubernetesSource}. */
export interface KubernetesSourceOptions {
  /** Kubeconfig file; without it in-cluster, then KUBECONFIG / ~/.kube/config (kubeconfig.ts). */
  kubeconfig?: string;
  /** An already loaded config (tests, benchmarks); takes precedence over `kubeconfig`. */
  kubeConfig?: KubeConfig;
  /** This node's name (its Node object; `endpoints[].nodeName` of local endpoints). */
  nodeName: string;
  log: Log;
  /**
   * This node's IPv4 NodePort addresses (InternalIP, then ExternalIP) and
   * its labels (the zone label decides topology hints), called before the
   * first snapshot and again before the snapshot that follows a change of
   * either; `[]` and `{}` when the Node object is missing.
   */
  onNode?: (addresses: string[], labels: Record<string, string>) => void;
  /** Quiet time before a snapshot, ms (default {@link DEFAULT_DEBOUNCE_MS}). */
  debounceMs?: number;
  /** Longest delay of a snapshot after the first event of a burst, ms (default {@link DEFAULT_MAX_DELAY_MS}). */
  maxDelayMs?: number;
  /** Wait for the first sync, ms (default {@link DEFAULT_START_TIMEOUT_MS}); 0 waits forever. */
  startTimeoutMs?: number;
  /** Items per list page (default 500). */
  pageSize?: number;
  /**
   * Most objects of each kind (Services, EndpointSlices) the source holds
   * (default 100,000, informer.ts DEFAULT_MAX_OBJECTS): a list with more is
   * refused whole and retried, the last good state staying applied; an
   * object added beyond the limit is skipped. Reported as an issue of the
   * object `<Kind> list`, field `items`.
   */
  maxObjects?: number;
  /** Informer restart backoff (default: client-go's reflector). */
  backoff?: BackoffOptions;
  /** Server-side watch timeout, seconds (default random 300..600). */
  watchTimeoutSeconds?: () => number;
  /** Passed to the normalizer (default {@link K8S_NORMALIZE}). */
  normalize?: NormalizeOptions;
}

/**
 * What changed between two snapshots, for a consumer that syncs only what
 * changed: `namespace/name` keys of Services and EndpointSlices that were
 * added, updated or deleted. `full` for the first snapshot (everything is new).
 * A node address change shows as a snapshot with no keys.
 */
export interface SnapshotChanges {
  full: boolean;
  services: string[];
  endpointSlices: string[];
}

/** A change to a raw Service, as IPAM consumes it. */
export type ServiceFeedListener = (type: InformerEventType, service: RawObject) => void;

/**
 * Read access to the raw Service objects the source watches, and their
 * changes (LB IPAM needs `status` and `spec` as written, which the model
 * folds together).
 */
export interface ServiceFeed {
  /** Every Service in the cache. */
  list(): ReadonlyArray<RawObject>;
  /** One Service, or undefined. */
  get(namespace: string, name: string): RawObject | undefined;
  /** Be told of every change after this call; returns the unsubscribe function. */
  subscribe(listener: ServiceFeedListener): () => void;
}

/** Follows an API server. See the module comment. */
export class KubernetesSource implements Source {
  readonly kubeConfig: KubeConfig;
  private readonly log: Log;
  private readonly services: Informer;
  private readonly slices: Informer;
  private readonly nodes: Informer;
  /**
   * The models, copy-on-write by shard (src/util/cowmap.ts): a snapshot
   * shares them, and the first change after it copies the one shard it
   * changes, so a delivered snapshot never changes.
   */
  private readonly serviceModels = new CowMap<ServiceModel>();
  private readonly sliceModels = new CowMap<EndpointSliceModel>();
  /** Issues per object (`Service ns/name`), replaced on every event for that object. */
  private readonly objectIssues = new Map<string, InputIssue[]>();
  private readonly coalescer: Coalescer;
  private readonly serviceListeners = new Set<ServiceFeedListener>();
  private onSnapshot?: (s: Snapshot) => void;
  private addresses: string[] = [];
  /** This node's labels as last read from its Node object. */
  private labels: Record<string, string> = {};
  private readonly pending = { services: new Set<string>(), endpointSlices: new Set<string>() };
  private lastChanges: SnapshotChanges = { full: true, services: [], endpointSlices: [] };
  private nodeSeen = false;
  private stopped = false;
  private snapshots = 0;

  constructor(private readonly opts: KubernetesSourceOptions) {
    this.log = opts.log;
    this.kubeConfig = opts.kubeConfig ?? loadKubeConfig(opts.kubeconfig);
    this.coalescer = new Coalescer(() => this.emit(), opts.debounceMs ?? DEFAULT_DEBOUNCE_MS, opts.maxDelayMs ?? DEFAULT_MAX_DELAY_MS);
    const common = {
      kubeConfig: this.kubeConfig,
      log: this.log,
      pageSize: opts.pageSize,
      backoff: opts.backoff,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      maxObjects: opts.maxObjects,
    };
    const onLimit = (kind: string) => (message: string | undefined) => {
      const label = `${kind} list`;
      if (this.setIssues(label, message ? [{ object: label, field: 'items', message }] : [])) this.poke();
    };
    this.services = new Informer({
      ...common,
      path: PATHS.services,
      kind: 'Service',
      onLimit: onLimit('Service'),
      // Normalized as soon as parsed, while the rest of the list is still
      // arriving. prepare must not throw: an object that makes normalize
      // throw is left to onService, which reports it as before.
      prepare: (o) => {
        try {
          return normalizeService(o, this.opts.normalize ?? K8S_NORMALIZE);
        } catch {
          return undefined;
        }
      },
      onEvent: (t, o, prepared) => this.onService(t, o, prepared as ObjectResult<ServiceModel> | undefined),
    });
    this.slices = new Informer({
      ...common,
      path: PATHS.endpointSlices,
      kind: 'EndpointSlice',
      onLimit: onLimit('EndpointSlice'),
      // Slices are read once into their model; nothing needs them raw. A
      // listed slice is normalized as soon as it is parsed, then trimmed.
      metadataOnly: true,
      prepare: (o) => normalizeEndpointSlice(o, this.opts.normalize ?? K8S_NORMALIZE),
      onEvent: (t, o, prepared) => this.onSlice(t, o, prepared as ObjectResult<EndpointSliceModel> | undefined),
    });
    this.nodes = new Informer({
      ...common,
      path: PATHS.nodes,
      kind: 'Node',
      fieldSelector: `metadata.name=${opts.nodeName}`,
      onEvent: (t, o) => this.onNodeEvent(t, o),
      onListed: () => {
        if (!this.nodeSeen) this.log.warn({ node: opts.nodeName }, 'Node object not found: no NodePort addresses from the API (check node.name)');
      },
    });
  }

  /**
   * Start the informers, wait for all of them to sync, call `onNode`, then
   * deliver the first snapshot.
   * @throws Error naming the API server and each informer's last error when
   *   no sync happened within `startTimeoutMs`
   */
  async start(onSnapshot: (s: Snapshot) => void): Promise<void> {
    if (this.onSnapshot) throw new Error('kubernetes source: already started');
    this.onSnapshot = onSnapshot;
    const server = this.kubeConfig.getCurrentCluster()?.server;
    this.log.info({ server, node: this.opts.nodeName }, 'kubernetes source: listing Services, EndpointSlices and the Node');
    const all = [this.services, this.slices, this.nodes];
    for (const i of all) i.start();
    const timeoutMs = this.opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const synced = Promise.all(all.map((i) => i.whenSynced()));
    try {
      await (timeoutMs > 0
        ? Promise.race([
            synced,
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => {
                const why = all
                  .filter((i) => !i.synced())
                  .map((i) => `${i.kind}: ${i.stats().lastError ?? 'no answer yet'}`)
                  .join('; ');
                reject(new Error(`kubernetes source: API server ${server} not synced after ${timeoutMs} ms (${why})`));
              }, timeoutMs);
            }),
          ])
        : synced);
    } catch (e) {
      await this.stop();
      throw e;
    } finally {
      if (timer) clearTimeout(timer);
    }
    if (this.stopped) throw new Error('kubernetes source: stopped before the first sync');
    this.coalescer.cancel();
    this.opts.onNode?.(this.addresses, { ...this.labels });
    this.emit();
  }

  /** Stop the informers; no snapshot is delivered after this resolves. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.coalescer.stop();
    await Promise.all([this.services.stop(), this.slices.stop(), this.nodes.stop()]);
  }

  /** Whether every informer has listed once (for `/readyz`). */
  synced(): boolean {
    return this.services.synced() && this.slices.synced() && this.nodes.synced();
  }

  /** This node's IPv4 NodePort addresses as last read from its Node object. */
  nodeAddresses(): string[] {
    return [...this.addresses];
  }

  /** Informer counters, for the API and logs. */
  stats(): { informers: InformerStats[]; snapshots: number } {
    return { informers: [this.services.stats(), this.slices.stats(), this.nodes.stats()], snapshots: this.snapshots };
  }

  /**
   * The keys that changed in the snapshot being (or last) delivered: call it
   * from `onSnapshot`.
   */
  changes(): SnapshotChanges {
    return this.lastChanges;
  }

  /** The raw Services, for LB IPAM (see {@link ServiceFeed}). */
  serviceFeed(): ServiceFeed {
    return {
      list: () => this.services.list(),
      get: (namespace, name) => this.services.get(namespace, name),
      subscribe: (listener) => {
        this.serviceListeners.add(listener);
        return () => this.serviceListeners.delete(listener);
      },
    };
  }

  // ---------------------------------------------------------------------------

  private poke(): void {
    if (this.onSnapshot && this.synced()) this.coalescer.poke();
  }

  private onService(type: InformerEventType, obj: RawObject, prepared?: ObjectResult<ServiceModel>): void {
    const key = flat(obj.metadata.namespace ?? 'default', '/', obj.metadata.name);
    const label = `Service ${key}`;
    let changed = true;
    if (type === 'delete') {
      this.serviceModels.delete(key);
      this.objectIssues.delete(label);
    } else {
      const r = prepared ?? normalizeService(obj, this.opts.normalize ?? K8S_NORMALIZE);
      // A service with parts dropped is kept, and its issues recorded; a
      // change of issues alone still makes a snapshot (they are part of it).
      const issuesChanged = this.setIssues(label, r.issues);
      if (r.value) {
        if (sameModel(this.serviceModels.get(key), r.value)) changed = false;
        else this.serviceModels.set(key, r.value);
        if (r.issues.length && issuesChanged) this.log.warn({ object: label, issues: r.issues.map((i) => `${i.field}: ${i.message}`) }, 'Service served with parts dropped');
      } else {
        this.serviceModels.delete(key);
        this.log.warn({ object: label, issues: r.issues.map((i) => `${i.field}: ${i.message}`) }, 'invalid Service skipped');
      }
      if (issuesChanged && !changed) this.poke();
    }
    for (const l of this.serviceListeners) {
      try {
        l(type, obj);
      } catch (e) {
        this.log.error({ object: label, err: (e as Error).message }, 'service feed listener failed');
      }
    }
    if (changed) {
      this.pending.services.add(key);
      this.poke();
    }
  }

  /** @param prepared the slice's normalization, when it was done as the slice was listed */
  private onSlice(type: InformerEventType, obj: RawObject, prepared?: ObjectResult<EndpointSliceModel>): void {
    const key = flat(obj.metadata.namespace ?? 'default', '/', obj.metadata.name);
    let changed = true;
    if (type === 'delete') {
      this.sliceModels.delete(key);
      this.clearIssues('EndpointSlice', key);
    } else {
      const r = prepared ?? normalizeEndpointSlice(obj, this.opts.normalize ?? K8S_NORMALIZE);
      if (r.ignored !== undefined) {
        // Not for kube-proxy (its informers select these labels away): as if deleted.
        changed = this.sliceModels.delete(key);
        this.clearIssues('EndpointSlice', key);
        this.log.debug({ object: `EndpointSlice ${key}`, reason: r.ignored }, 'EndpointSlice ignored');
      } else if (!r.issues.length) {
        // The common case, without a label string (10,000 slices a list).
        if (sameModel(this.sliceModels.get(key), r.value)) changed = false;
        else this.sliceModels.set(key, r.value!);
        this.clearIssues('EndpointSlice', key);
      } else {
        const label = `EndpointSlice ${key}`;
        const issuesChanged = this.setIssues(label, r.issues);
        const lines = r.issues.map((i) => `${i.field}: ${i.message}`);
        if (r.value) {
          if (sameModel(this.sliceModels.get(key), r.value)) changed = false;
          else this.sliceModels.set(key, r.value);
          if (issuesChanged) this.log.warn({ object: label, issues: lines }, 'EndpointSlice served with parts dropped');
        } else {
          this.sliceModels.delete(key);
          this.log.warn({ object: label, issues: lines }, 'invalid EndpointSlice skipped');
        }
        if (issuesChanged && !changed) this.poke();
      }
    }
    if (changed) {
      this.pending.endpointSlices.add(key);
      this.poke();
    }
  }

  /** Forget the issues of object `kind key` (no label is built while no object has any: a list of 10,000 slices). */
  private clearIssues(kind: string, key: string): void {
    if (this.objectIssues.size) this.objectIssues.delete(`${kind} ${key}`);
  }

  /** Record (or, with none, forget) the issues of object `label`; whether they differ from the ones recorded. */
  private setIssues(label: string, issues: InputIssue[]): boolean {
    const before = this.objectIssues.get(label);
    if (issues.length) this.objectIssues.set(label, issues);
    else this.objectIssues.delete(label);
    return JSON.stringify(before ?? []) !== JSON.stringify(issues);
  }

  private onNodeEvent(type: InformerEventType, obj: RawObject): void {
    if (obj.metadata.name !== this.opts.nodeName) return;
    this.nodeSeen = type !== 'delete';
    const a = type === 'delete' ? { ipv4: [], ipv6: [] } : nodeAddresses(obj);
    const raw = type === 'delete' ? undefined : (obj.metadata as { labels?: unknown }).labels;
    const labels: Record<string, string> = {};
    if (raw && typeof raw === 'object') for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') labels[k] = v;
    if (type === 'delete') this.log.warn({ node: this.opts.nodeName }, 'Node object deleted: no NodePort addresses');
    if (a.ipv6.length) this.log.info({ node: this.opts.nodeName, ipv6: a.ipv6 }, 'IPv6 node addresses recorded, not served (the datapath serves IPv4)');
    const sameLabels = JSON.stringify(Object.entries(labels).sort()) === JSON.stringify(Object.entries(this.labels).sort());
    if (a.ipv4.join(',') === this.addresses.join(',') && sameLabels) return;
    this.addresses = a.ipv4;
    this.labels = labels;
    this.log.info({ node: this.opts.nodeName, addresses: a.ipv4 }, 'node addresses');
    // Before the first sync start() reports them; afterwards the consumer
    // learns them first, then gets a snapshot to re-sync with.
    if (this.onSnapshot && this.synced()) {
      try {
        this.opts.onNode?.(this.nodeAddresses(), { ...this.labels });
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'onNode handler failed');
      }
      this.poke();
    }
  }

  private emit(): void {
    if (this.stopped || !this.onSnapshot) return;
    const issues: InputIssue[] = [];
    for (const list of this.objectIssues.values()) for (const i of list) issues.push(i);
    this.lastChanges = { full: this.snapshots === 0, services: [...this.pending.services], endpointSlices: [...this.pending.endpointSlices] };
    const snap: Snapshot = {
      state: {
        services: this.serviceModels.snapshot(),
        endpointSlices: this.sliceModels.snapshot(),
        // Relative to the previous snapshot; the first has none (everything is new).
        ...(this.lastChanges.full ? {} : { changed: { services: this.lastChanges.services, endpointSlices: this.lastChanges.endpointSlices } }),
      },
      issues,
    };
    this.pending.services.clear();
    this.pending.endpointSlices.clear();
    this.snapshots++;
    try {
      this.onSnapshot(snap);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'snapshot consumer failed');
    }
  }
}

/** Whether two models are equal (normalize builds them with a fixed key order). */
function sameModel(a: unknown, b: unknown): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

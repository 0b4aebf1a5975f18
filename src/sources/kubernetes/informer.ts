/**
 * A resilient informer over client-node's `ListWatch` (what `makeInformer`
 * builds): list, then watch from the list's resourceVersion; on 410 Gone,
 * list again and replace the cache (ListWatch deletes what the new list
 * lacks); after any other error, start again after a backoff with jitter.
 *
 * What client-node 1.4's ListWatch does not do, and this adds:
 * - It stops for good after a list error or a watch error other than 410
 *   (it calls the 'error' handlers and returns): here the 'error' handler
 *   schedules `start()` after {@link Backoff}, which resumes the watch from
 *   the last resourceVersion (no event is missed) or lists when there is none.
 * - `makeInformer` builds its own `Watch`, which asks for no bookmarks and no
 *   `timeoutSeconds`; here the informer passes a {@link ResilientWatch} (a
 *   `Watch` subclass) to ListWatch's constructor exactly as makeInformer
 *   does, so watches ask for bookmarks (the resourceVersion stays fresh on
 *   quiet resources, and a reconnect after a compaction resumes instead of
 *   relisting), end after a randomised 5..10 min as client-go's do, are
 *   aborted on the client side when the server goes silent past that, and
 *   reconnect with backoff when the server keeps closing them at once.
 * - A list is fetched raw and whole (rest.ts: chunked, consistent; the
 *   first one with resourceVersion=0 as client-go does), and an
 *   object without `metadata.name` (which ListWatch's cache cannot hold) is
 *   reported and skipped instead of crashing the informer. With `prepare`,
 *   its items are parsed and prepared one at a time (client-go's informers
 *   have a transform for the same reason: a large list is never held whole).
 * - Errors are logged with the resource and the server's Status; stopping is
 *   not reported as an error.
 */
import { ListWatch, Watch, type KubeConfig, type KubernetesObject, type KubernetesListObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Backoff, type BackoffOptions } from './backoff.js';
import { listAll, ListTooLargeError } from './rest.js';
import { formatApiError, apiErrorInfo } from './kubeconfig.js';

/** A Kubernetes object as the API server sends it (plain JSON). */
export interface RawObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown };
  [k: string]: unknown;
}

/** What happened to an object. */
export type InformerEventType = 'add' | 'update' | 'delete';

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** Options of {@link Informer}. */
export interface InformerOptions {
  kubeConfig: KubeConfig;
  /** Collection path, e.g. `/api/v1/services`, `/apis/discovery.k8s.io/v1/endpointslices`. */
  path: string;
  /** Kind, for logs and reports (`Service`). */
  kind: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Items per list page (default 500, client-go's). */
  pageSize?: number;
  /** Server-side watch timeout, seconds; default a random 300..600 per watch (client-go's reflector). */
  watchTimeoutSeconds?: () => number;
  /** Restart backoff (defaults: client-go's reflector, see backoff.ts). */
  backoff?: BackoffOptions;
  log: Log;
  /**
   * Every change to the cache, in order. Must not throw (errors are logged).
   * `prepared`: what {@link InformerOptions.prepare} made of this object,
   * for objects that came in a list (undefined for watch events).
   */
  onEvent: (type: InformerEventType, obj: RawObject, prepared?: unknown) => void;
  /**
   * Work on each listed object done as soon as it is parsed, one object at
   * a time while the list is still arriving (rest.ts, ListStreamParser),
   * before the list is applied: with
   * `metadataOnly`, the object is replaced by a trimmed copy right after,
   * so a large list is never alive whole. Its result comes back with the
   * object's event.
   * Must not throw (an error fails the list, which is retried).
   */
  prepare?: (obj: RawObject) => unknown;
  /** After each complete list has been applied (first sync and every relist). */
  onListed?: () => void;
  /** An object the cache cannot hold (no metadata.name), or a watch line that is not an event. */
  onInvalid?: (what: string) => void;
  /**
   * A list or watch failed (the informer restarts after its backoff). For a
   * consumer that tells errors apart: a 404 on a custom resource's list
   * means its CustomResourceDefinition is not installed. Must not throw.
   */
  onError?: (err: unknown) => void;
  /**
   * Most objects the cache holds (default {@link DEFAULT_MAX_OBJECTS}). A
   * list with more is refused whole (read no further than the limit, then
   * retried after the backoff, the cache keeping what it had); a watch
   * ADDED event beyond it is skipped. Either way `onLimit` is told.
   */
  maxObjects?: number;
  /**
   * Told why objects are being refused over `maxObjects` (a message naming
   * the kind and the limit), and `undefined` once a list fits again.
   */
  onLimit?: (message: string | undefined) => void;
  /**
   * Keep only apiVersion, kind and metadata's name, namespace,
   * resourceVersion and uid of each object in the cache, once `onEvent` has
   * seen it (all ListWatch needs to tell adds, updates and deletes apart).
   * For a consumer that keeps its own model of each object: 10,000
   * EndpointSlices are ~33 MB of heap as JSON objects, which every full
   * garbage collection would walk. {@link Informer.list} then returns the
   * trimmed objects.
   */
  metadataOnly?: boolean;
}

/**
 * Default {@link InformerOptions.maxObjects}: ten times Kubernetes' tested
 * limit of 10,000 Services a cluster (Kubernetes scalability thresholds),
 * and far above the EndpointSlices such a cluster has.
 */
export const DEFAULT_MAX_OBJECTS = 100_000;

/** Counters of one informer, for logs, metrics and tests. */
export interface InformerStats {
  kind: string;
  synced: boolean;
  lists: number;
  listPages: number;
  watches: number;
  restarts: number;
  bookmarks: number;
  events: number;
  invalid: number;
  resourceVersion: string;
  lastError?: string;
  /** performance.now() when the last list's final page had been received, ms (0: none yet). */
  lastListReceivedAt: number;
  /** performance.now() when the last watch event naming an object had been received and parsed, ms (0: none yet). */
  lastEventAt: number;
}

/** Trim a cached object in place to what ListWatch's cache reads (see InformerOptions.metadataOnly). */
function trimToMetadata(obj: RawObject): void {
  for (const k of Object.keys(obj)) if (k !== 'apiVersion' && k !== 'kind' && k !== 'metadata') delete obj[k];
  obj.metadata = keptMetadata(obj.metadata);
}

/**
 * What {@link trimToMetadata} leaves of `obj`, as a new object: for listed
 * objects, which nothing else holds yet. Deleting fields (in place) turns
 * an object into a slower and larger dictionary; 10,000 listed slices each
 * became one.
 */
function trimmedCopy(obj: RawObject): RawObject {
  const metadata = keptMetadata(obj.metadata);
  if (typeof obj.apiVersion === 'string' && typeof obj.kind === 'string') return { apiVersion: obj.apiVersion, kind: obj.kind, metadata };
  const t = {} as RawObject;
  if (Object.hasOwn(obj, 'apiVersion')) t.apiVersion = obj.apiVersion;
  if (Object.hasOwn(obj, 'kind')) t.kind = obj.kind;
  t.metadata = metadata;
  return t;
}

function keptMetadata(m: RawObject['metadata']): RawObject['metadata'] {
  const kept: RawObject['metadata'] = { name: m.name };
  if (m.namespace !== undefined) kept.namespace = m.namespace;
  if (m.resourceVersion !== undefined) kept.resourceVersion = m.resourceVersion;
  if (m.uid !== undefined) kept.uid = m.uid;
  return kept;
}

/** Ignore parse failures of one line, as client-node's Watch does, but count them. */
type WatchCallback = (phase: string, obj: unknown, watchObj?: unknown) => void;

/**
 * The Watch given to ListWatch: adds `allowWatchBookmarks` and
 * `timeoutSeconds`, screens events, and backs off when connections keep
 * ending early.
 */
class ResilientWatch extends Watch {
  private shortCloses = 0;
  private readonly reconnect: Backoff;
  /** Dead-connection timers of open watches (each holds the informer, and with it its cache, until it fires). */
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    kc: KubeConfig,
    private readonly owner: Informer,
    backoff: BackoffOptions | undefined,
  ) {
    super(kc);
    this.reconnect = new Backoff(backoff);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: WatchCallback,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // A server that accepts watches and ends them at once (or a proxy in
    // between that does) must not turn this into a request loop.
    if (this.shortCloses > 1) await this.owner.pause(this.reconnect.next());
    if (this.owner.isStopped()) return new AbortController();
    const timeoutSeconds = this.owner.nextWatchTimeout();
    const started = performance.now();
    let clientTimeout = false;
    let timer: NodeJS.Timeout | undefined;
    this.owner.onWatchStarting();
    const controller = await super.watch(
      path,
      { ...queryParams, allowWatchBookmarks: true, timeoutSeconds },
      (phase, obj, watchObj) => this.owner.screen(phase, obj, watchObj, callback),
      (err) => {
        if (timer) {
          clearTimeout(timer);
          this.timers.delete(timer);
        }
        const lived = performance.now() - started;
        if (lived < 1000) this.shortCloses++;
        else {
          this.shortCloses = 0;
          this.reconnect.reset();
        }
        // Our own abort of a silent watch is a normal end: resume from the resourceVersion.
        done(clientTimeout ? null : err);
      },
    );
    // Stopped while the watch was connecting: no timer (it would hold the
    // informer, and its cache, for the watch's whole timeout).
    if (this.owner.isStopped()) {
      controller.abort();
      return controller;
    }
    // The server ends the watch after timeoutSeconds; if it has not a minute
    // later, the connection is dead without a reset (a lost peer): abort it.
    timer = setTimeout(() => {
      this.timers.delete(timer!);
      clientTimeout = true;
      this.owner.log.warn({ kind: this.owner.kind, timeoutSeconds }, 'watch outlived its timeout; the connection is presumed dead, reconnecting');
      controller.abort();
    }, (timeoutSeconds + 60) * 1000);
    timer.unref();
    this.timers.add(timer);
    return controller;
  }

  /** Clear every timer (the informer stops: an aborted watch need not call done). */
  clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

/** One resource's informer. See the module comment. */
export class Informer {
  readonly kind: string;
  readonly log: Log;
  private readonly lw: ListWatch<KubernetesObject>;
  private readonly watch: ResilientWatch;
  private readonly backoff: Backoff;
  private stopped = false;
  private started = false;
  private listedPendingWatch = false;
  private isSynced = false;
  private syncWaiters: Array<() => void> = [];
  private restartTimer?: NodeJS.Timeout;
  private readonly pauses = new AbortController();
  private readonly st: InformerStats;
  /**
   * What `prepare` made of each listed object, until its event has been
   * handed on; cleared once a list has been applied (an object ListWatch
   * had already, at the same resourceVersion, gets no event). A Map, not a
   * WeakMap: every young-generation collection during a list walks a
   * WeakMap's 10,000 entries as ephemerons.
   */
  private readonly prepared = new Map<object, unknown>();
  /** Objects in the cache (ListWatch's own count is a walk). */
  private objects = 0;
  /** Whether objects are being refused over maxObjects (onLimit was told so). */
  private overLimit = false;

  constructor(private readonly opts: InformerOptions) {
    this.kind = opts.kind;
    this.log = opts.log;
    this.backoff = new Backoff(opts.backoff);
    this.st = { kind: opts.kind, synced: false, lists: 0, listPages: 0, watches: 0, restarts: 0, bookmarks: 0, events: 0, invalid: 0, resourceVersion: '', lastListReceivedAt: 0, lastEventAt: 0 };
    const watch = new ResilientWatch(opts.kubeConfig, this, opts.backoff);
    this.watch = watch;
    this.lw = new ListWatch<KubernetesObject>(opts.path, watch, () => this.listOnce(), false, opts.labelSelector, opts.fieldSelector);
    const forward = (type: InformerEventType) => (obj: KubernetesObject) => {
      this.st.events++;
      if (type === 'add') this.objects++;
      else if (type === 'delete') this.objects--;
      const prepared = this.prepared.get(obj);
      if (prepared !== undefined) this.prepared.delete(obj);
      try {
        opts.onEvent(type, obj as RawObject, prepared);
      } catch (e) {
        this.log.error({ kind: this.kind, err: (e as Error).message }, 'informer event handler failed');
      }
      // The cache holds this very object (ListWatch stores what it passes on).
      // A listed object that was prepared is a trimmed copy already.
      if (opts.metadataOnly && type !== 'delete' && prepared === undefined) trimToMetadata(obj as RawObject);
    };
    this.lw.on('add', forward('add'));
    this.lw.on('update', forward('update'));
    this.lw.on('delete', forward('delete'));
    this.lw.on('error', (err) => this.onError(err));
  }

  /** Begin listing and watching; returns at once (see {@link whenSynced}). */
  start(): void {
    if (this.started) throw new Error(`${this.kind} informer: already started`);
    this.started = true;
    this.run();
  }

  /** Resolves after the first complete list has been applied. */
  whenSynced(): Promise<void> {
    if (this.isSynced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  /** Whether the first list has been applied. */
  synced(): boolean {
    return this.isSynced;
  }

  /** Counters and the last error. */
  stats(): InformerStats {
    return { ...this.st, synced: this.isSynced, resourceVersion: this.lw.latestResourceVersion() };
  }

  /** Every cached object. */
  list(): ReadonlyArray<RawObject> {
    return this.lw.list() as ReadonlyArray<RawObject>;
  }

  /** A cached object. */
  get(namespace: string | undefined, name: string): RawObject | undefined {
    return this.lw.get(name, namespace) as RawObject | undefined;
  }

  /** Stop watching; no event is delivered after this resolves. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.pauses.abort();
    await this.lw.stop();
    this.watch.clearTimers();
  }

  // ---- used by ResilientWatch ---------------------------------------------

  /** @internal */
  isStopped(): boolean {
    return this.stopped;
  }

  /** @internal Wait before a reconnect, cut short by stop(). */
  pause(ms: number): Promise<void> {
    this.log.warn({ kind: this.kind, delayMs: Math.round(ms) }, 'watch connections keep ending at once; backing off before reconnecting');
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.pauses.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
    });
  }

  /** @internal */
  nextWatchTimeout(): number {
    return this.opts.watchTimeoutSeconds ? this.opts.watchTimeoutSeconds() : Math.floor(300 * (1 + Math.random()));
  }

  /** @internal ListWatch starts a watch right after applying a list: that is the sync point. */
  onWatchStarting(): void {
    this.st.watches++;
    this.prepared.clear();
    if (!this.listedPendingWatch) return;
    this.listedPendingWatch = false;
    if (!this.isSynced) {
      this.isSynced = true;
      this.log.info({ kind: this.kind, objects: this.lw.list().length, resourceVersion: this.lw.latestResourceVersion() }, 'informer synced');
      for (const w of this.syncWaiters.splice(0)) w();
    }
    try {
      this.opts.onListed?.();
    } catch (e) {
      this.log.error({ kind: this.kind, err: (e as Error).message }, 'informer onListed handler failed');
    }
  }

  /** @internal Check one watch event before ListWatch sees it. */
  screen(phase: string, obj: unknown, watchObj: unknown, next: WatchCallback): void {
    if (this.stopped) return;
    if (phase === 'BOOKMARK') this.st.bookmarks++;
    if (phase === 'ERROR') {
      const st = (obj ?? {}) as { code?: number; reason?: string; message?: string };
      if (st.code === 410) this.log.info({ kind: this.kind, message: st.message }, 'watch: resourceVersion too old (410 Gone); listing again');
      else this.log.warn({ kind: this.kind, code: st.code, reason: st.reason, message: st.message }, 'watch: error event');
      next(phase, obj ?? {}, watchObj);
      return;
    }
    if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') {
      this.st.lastEventAt = performance.now();
      const name = (obj as RawObject | undefined)?.metadata?.name;
      if (!obj || typeof obj !== 'object' || typeof name !== 'string' || !name) {
        this.invalid(`watch ${phase} event with an object without metadata.name (got ${JSON.stringify(obj)?.slice(0, 120)})`);
        return;
      }
      if (phase === 'ADDED' && this.objects >= this.maxObjects() && !this.lw.get(name, (obj as RawObject).metadata.namespace)) {
        const ns = (obj as RawObject).metadata.namespace;
        this.refuse(`${this.kind} ${ns ? `${ns}/` : ''}${name} not added: ${this.objects} ${this.kind} objects are held already, the limit (source.kubernetes.maxObjects)`);
        return;
      }
    } else if (phase !== 'BOOKMARK') {
      this.invalid(`watch event of unknown type ${JSON.stringify(phase)}`);
      return;
    }
    next(phase, obj, watchObj);
  }

  // ---- internals ------------------------------------------------------------

  private maxObjects(): number {
    return this.opts.maxObjects ?? DEFAULT_MAX_OBJECTS;
  }

  /** Objects are refused over maxObjects: say why (logged once until it changes). */
  private refuse(message: string): void {
    this.st.invalid++;
    if (!this.overLimit) this.log.warn({ kind: this.kind, maxObjects: this.maxObjects() }, message);
    this.overLimit = true;
    try {
      this.opts.onLimit?.(message);
    } catch (e) {
      this.log.error({ kind: this.kind, err: (e as Error).message }, 'informer onLimit handler failed');
    }
  }

  private invalid(what: string): void {
    this.st.invalid++;
    this.log.warn({ kind: this.kind }, `skipped: ${what}`);
    this.opts.onInvalid?.(what);
  }

  private run(): void {
    if (this.stopped) return;
    this.lw.start().catch((e) => this.onError(e));
  }

  private async listOnce(): Promise<KubernetesListObject<KubernetesObject>> {
    this.st.lists++;
    // client-go's reflector: the first list may be served from the API
    // server's watch cache (resourceVersion=0: cheap for the server when
    // every node lists at once, and one response); a relist after 410 Gone
    // reads the latest version, so that it is never older than what was seen.
    const prepare = this.opts.prepare;
    const r = await listAll(this.opts.kubeConfig, this.opts.path, {
      resourceVersion: this.isSynced ? undefined : '0',
      limit: this.opts.pageSize ?? 500,
      maxItems: this.maxObjects(),
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
      eachItem: prepare && ((it) => {
        const name = (it as RawObject | null)?.metadata?.name;
        if (!it || typeof it !== 'object' || typeof name !== 'string' || !name) return it; // reported below
        const obj = it as RawObject;
        const prepared = prepare(obj);
        const kept = this.opts.metadataOnly ? trimmedCopy(obj) : obj;
        this.prepared.set(kept, prepared);
        return kept;
      }),
    });
    this.st.listPages += r.pages;
    this.st.lastListReceivedAt = r.receivedAt;
    const items: KubernetesObject[] = [];
    for (const it of r.items) {
      const name = (it as RawObject | null)?.metadata?.name;
      if (!it || typeof it !== 'object' || typeof name !== 'string' || !name) {
        this.invalid(`list item without metadata.name (got ${JSON.stringify(it)?.slice(0, 120)})`);
        continue;
      }
      items.push(it as KubernetesObject);
    }
    if (this.stopped) throw new Error('stopped');
    this.listedPendingWatch = true;
    if (this.overLimit) {
      this.overLimit = false;
      this.log.info({ kind: this.kind, items: items.length }, 'list within source.kubernetes.maxObjects again');
      try {
        this.opts.onLimit?.(undefined);
      } catch (e) {
        this.log.error({ kind: this.kind, err: (e as Error).message }, 'informer onLimit handler failed');
      }
    }
    this.log.debug({ kind: this.kind, items: items.length, pages: r.pages, resourceVersion: r.resourceVersion }, 'listed');
    return { metadata: { resourceVersion: r.resourceVersion }, items };
  }

  private onError(err: unknown): void {
    if (this.stopped) return; // stop() aborts the watch: not an error
    if (err instanceof ListTooLargeError) {
      this.refuse(`${this.kind} list refused: it has more than ${err.maxItems} objects, the limit (source.kubernetes.maxObjects); the last list stays applied`);
    }
    this.listedPendingWatch = false;
    this.prepared.clear();
    this.st.restarts++;
    this.st.lastError = formatApiError(err);
    const delay = this.backoff.next();
    const info = apiErrorInfo(err);
    this.log.warn({ kind: this.kind, code: info.code || undefined, reason: info.reason, err: this.st.lastError, retryInMs: Math.round(delay) }, 'list/watch failed; restarting after backoff');
    try {
      this.opts.onError?.(err);
    } catch (e) {
      this.log.error({ kind: this.kind, err: (e as Error).message }, 'informer onError handler failed');
    }
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.run();
    }, delay);
  }
}

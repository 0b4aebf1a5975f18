/**
 * The LB IPAM controller: runs on the leader only (src/leader), reads
 * Services from the Kubernetes source's feed, decides addresses with the
 * {@link Allocator} and writes `status.loadBalancer.ingress`.
 *
 * Shape of a Kubernetes controller (a work queue of `namespace/name` keys):
 * - every Service event enqueues its key; a key is processed by one worker
 *   at a time, from the latest cached object, so a burst of events for one
 *   service costs one decision;
 * - at {@link IpamController.start} the allocator first takes over the
 *   addresses the statuses show (oldest service first), then every service
 *   is enqueued;
 * - a service that gets no address (pool exhausted, conflict, address
 *   outside the pools) gets a Warning Event once per distinct message and
 *   waits: it is tried again when it changes or when an address is released
 *   — never in a loop;
 * - a failed status write is retried for that key after a backoff with
 *   jitter (409 Conflict: the cache will bring the newer object; the retry
 *   decides on it);
 * - the pools can be replaced while running ({@link IpamController.setPools}:
 *   LoadBalancerIPPool resources, custom-pools.ts): assignments outside the
 *   new pools are dropped and every service is decided again;
 * - annotations of a managed service that xlb does not honour (MetalLB's
 *   and Cilium's sharing keys, unknown ones: annotations.ts) get a Warning
 *   Event once per distinct set.
 */
import type { Logger } from 'pino';
import type { ServiceFeed } from '../sources/kubernetes/index.js';
import type { RawObject } from '../sources/kubernetes/informer.js';
import { Backoff, type BackoffOptions } from '../sources/kubernetes/backoff.js';
import { apiErrorInfo, formatApiError } from '../sources/kubernetes/kubeconfig.js';
import { Allocator, lbServiceFromRaw, managedByXlb, type Decision, type LbService } from './allocator.js';
import type { IpamApi, ServiceRef } from './api.js';
import type { Pool } from './pool.js';
import { annotationIssues } from './annotations.js';

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** Event reasons (core/v1 Event `reason`). */
export const EVENT_REASONS = { allocated: 'IPAllocated', failed: 'AllocationFailed', released: 'IPReleased', annotation: 'UnsupportedAnnotation' } as const;

/** Options of {@link IpamController}. */
export interface IpamControllerOptions {
  feed: ServiceFeed;
  api: IpamApi;
  pools: Pool[];
  log: Log;
  /** Status writes in flight at once (default 8). */
  concurrency?: number;
  /** Retry of failed writes (default 500 ms doubling to 30 s, jitter up to +100 %). */
  backoff?: BackoffOptions;
  /** Told after an address was assigned or released (pool statuses count them). Must not throw. */
  onAssignmentsChanged?: () => void;
}

/** Counters, for the API, metrics and tests. */
export interface IpamStats {
  running: boolean;
  assigned: number;
  /** Managed services without an address, with the reason. */
  failed: Record<string, string>;
  /** Decisions made, per key (tests assert that nothing loops). */
  decisions: number;
  statusWrites: number;
  writeErrors: number;
  pools: Array<{ pool: string; size: number; used: number }>;
}

/** LB IPAM. See the module comment. */
export class IpamController {
  private allocator: Allocator;
  private readonly queue = new Set<string>();
  private readonly inFlight = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly retryBackoff = new Map<string, Backoff>();
  /** Managed services that got no address: key → message of the last Warning sent. */
  private readonly failed = new Map<string, string>();
  private readonly perKeyDecisions = new Map<string, number>();
  /** Managed services with annotations xlb does not honour: key → the messages of the last Warning sent. */
  private readonly annotationWarned = new Map<string, string>();
  private pools: Pool[];
  private unsubscribe?: () => void;
  private workers = 0;
  private idleWaiters: Array<() => void> = [];
  private generation = 0;
  private st = { decisions: 0, statusWrites: 0, writeErrors: 0 };

  constructor(private readonly opts: IpamControllerOptions) {
    this.pools = opts.pools;
    this.allocator = new Allocator(opts.pools);
  }

  /**
   * Replace the pools (the configured ones merged with LoadBalancerIPPool
   * resources). While running, assignments outside the new pools are
   * dropped and every service is decided again; the services that lost
   * their address get another one or a Warning Event.
   */
  setPools(pools: Pool[]): void {
    this.pools = pools;
    if (!this.unsubscribe) {
      this.allocator = new Allocator(pools);
      return;
    }
    const dropped = this.allocator.setPools(pools);
    this.opts.log.info({ pools: pools.map((p) => p.name), dropped }, dropped.length ? 'ipam: pools changed; services outside them are assigned again' : 'ipam: pools changed');
    if (dropped.length) this.notifyAssignments();
    for (const o of this.opts.feed.list()) this.enqueue(keyOf(o));
  }

  /** The pools in use, in the order they are tried. */
  currentPools(): readonly Pool[] {
    return this.pools;
  }

  /** Whether the controller runs (this agent leads). */
  running(): boolean {
    return this.unsubscribe !== undefined;
  }

  /**
   * Begin: take over the addresses in the statuses, then decide every
   * service. Call when this agent becomes the leader, after the source synced.
   */
  start(): void {
    if (this.unsubscribe) return;
    this.generation++;
    this.allocator = new Allocator(this.pools);
    this.failed.clear();
    this.annotationWarned.clear();
    this.unsubscribe = this.opts.feed.subscribe((_type, obj) => this.enqueue(keyOf(obj)));
    const all = this.opts.feed.list().map((o) => lbServiceFromRaw(o));
    this.allocator.restore(all);
    this.opts.log.info({ services: all.filter(managedByXlb).length, restored: this.allocator.assignments().size }, 'ipam: started; addresses in service statuses taken over');
    this.notifyAssignments();
    for (const s of all) this.enqueue(s.key);
  }

  /** Stop (leadership lost or agent stopping): no write starts after this. */
  stop(): void {
    if (!this.unsubscribe) return;
    this.unsubscribe();
    this.unsubscribe = undefined;
    this.generation++;
    this.queue.clear();
    this.dirty.clear();
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.retryBackoff.clear();
    this.opts.log.info('ipam: stopped');
    this.checkIdle();
  }

  /** Current assignments, `namespace/name` → address. */
  assignments(): Map<string, string> {
    return this.allocator.assignments();
  }

  /** How many times a key has been decided (for tests). */
  decisionsFor(key: string): number {
    return this.perKeyDecisions.get(key) ?? 0;
  }

  stats(): IpamStats {
    return {
      running: this.running(),
      assigned: this.allocator.assignments().size,
      failed: Object.fromEntries(this.failed),
      ...this.st,
      pools: this.allocator.usage(),
    };
  }

  /** Resolves when no key is queued or being processed (retries may still be scheduled). */
  idle(): Promise<void> {
    if (!this.queue.size && !this.inFlight.size) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---------------------------------------------------------------------------

  private enqueue(key: string): void {
    if (!this.unsubscribe) return;
    if (this.inFlight.has(key)) {
      this.dirty.add(key);
      return;
    }
    this.queue.add(key);
    this.pump();
  }

  private pump(): void {
    const max = this.opts.concurrency ?? 8;
    while (this.workers < max && this.queue.size) {
      const key = this.queue.values().next().value as string;
      this.queue.delete(key);
      this.inFlight.add(key);
      this.workers++;
      const gen = this.generation;
      this.process(key, gen)
        .catch((e) => this.opts.log.error({ service: key, err: (e as Error).message }, 'ipam: processing failed'))
        .finally(() => {
          this.workers--;
          this.inFlight.delete(key);
          if (this.dirty.delete(key)) this.enqueue(key);
          this.pump();
          this.checkIdle();
        });
    }
  }

  private notifyAssignments(): void {
    try {
      this.opts.onAssignmentsChanged?.();
    } catch (e) {
      this.opts.log.error({ err: (e as Error).message }, 'ipam: onAssignmentsChanged failed');
    }
  }

  /** A Warning Event for the annotations of a managed service that xlb does not honour, once per distinct set. */
  private warnAnnotations(key: string, svc: LbService, ref: ServiceRef): void {
    const issues = managedByXlb(svc) ? annotationIssues(`Service ${key}`, svc.annotations) : [];
    const text = issues.map((i) => `${i.field}: ${i.message}`).join('; ');
    if (!text) {
      this.annotationWarned.delete(key);
      return;
    }
    if (this.annotationWarned.get(key) === text) return;
    this.annotationWarned.set(key, text);
    void this.opts.api.event(ref, 'Warning', EVENT_REASONS.annotation, text);
  }

  private checkIdle(): void {
    if (this.queue.size || this.inFlight.size) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Services that wait for an address get another chance. */
  private retryFailed(): void {
    for (const key of this.failed.keys()) this.enqueue(key);
  }

  private scheduleRetry(key: string, gen: number): void {
    if (gen !== this.generation || this.retryTimers.has(key)) return;
    let b = this.retryBackoff.get(key);
    if (!b) this.retryBackoff.set(key, (b = new Backoff({ initialMs: 500, maxMs: 30_000, ...this.opts.backoff })));
    const delay = b.next();
    const t = setTimeout(() => {
      this.retryTimers.delete(key);
      if (gen === this.generation) this.enqueue(key);
    }, delay);
    this.retryTimers.set(key, t);
  }

  private async process(key: string, gen: number): Promise<void> {
    const [namespace, name] = splitKey(key);
    const raw = this.opts.feed.get(namespace, name);
    if (!raw) {
      this.failed.delete(key);
      this.perKeyDecisions.delete(key);
      this.annotationWarned.delete(key);
      if (this.allocator.release(key) !== undefined) {
        this.opts.log.info({ service: key }, 'ipam: service deleted; address released');
        this.notifyAssignments();
        this.retryFailed();
      }
      return;
    }
    const svc = lbServiceFromRaw(raw);
    const before = this.allocator.assignedTo(key);
    const d: Decision = this.allocator.ensure(svc);
    this.st.decisions++;
    this.perKeyDecisions.set(key, (this.perKeyDecisions.get(key) ?? 0) + 1);
    const ref: ServiceRef = { namespace, name, uid: raw.metadata.uid, resourceVersion: raw.metadata.resourceVersion };
    const released = before !== undefined && (d.kind !== 'assigned' || d.ip !== before);
    if (released || (d.kind === 'assigned' && d.ip !== before)) this.notifyAssignments();
    this.warnAnnotations(key, svc, ref);

    let desired: string[] | undefined;
    if (d.kind === 'assigned') {
      desired = [d.ip];
      this.failed.delete(key);
    } else if (d.kind === 'failed') {
      desired = [];
      if (this.failed.get(key) !== d.message) {
        this.failed.set(key, d.message);
        this.opts.log.warn({ service: key, reason: d.reason, message: d.message }, 'ipam: no address assigned');
        void this.opts.api.event(ref, 'Warning', EVENT_REASONS.failed, `${d.reason}: ${d.message}`);
      }
    } else {
      this.failed.delete(key);
      // No longer a LoadBalancer of xlb's class: clear what xlb wrote. A
      // service of another class is that implementation's to write.
      desired = svc.type !== 'LoadBalancer' && svc.loadBalancerClass === undefined && before !== undefined ? [] : undefined;
    }
    if (released) this.retryFailed();
    if (desired === undefined || sameAddresses(svc, desired)) {
      this.retryBackoff.delete(key);
      return;
    }
    if (gen !== this.generation) return;
    try {
      await this.opts.api.setIngress(ref, desired);
      this.st.statusWrites++;
      this.retryBackoff.delete(key);
      if (d.kind === 'assigned') {
        this.opts.log.info({ service: key, ip: d.ip, pool: d.pool }, 'ipam: address assigned');
        void this.opts.api.event(ref, 'Normal', EVENT_REASONS.allocated, `Assigned IP ${d.ip} from pool ${d.pool}`);
      } else if (before !== undefined) {
        void this.opts.api.event(ref, 'Normal', EVENT_REASONS.released, `Released IP ${before}`);
      }
    } catch (e) {
      this.st.writeErrors++;
      const info = apiErrorInfo(e);
      if (info.code === 404) return; // deleted meanwhile: the DELETE event releases the address
      (info.code === 409 ? this.opts.log.debug : this.opts.log.warn).call(this.opts.log, { service: key, err: formatApiError(e) }, 'ipam: status write failed; retrying after backoff');
      this.scheduleRetry(key, gen);
    }
  }
}

function keyOf(obj: RawObject): string {
  return `${obj.metadata.namespace ?? 'default'}/${obj.metadata.name}`;
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

/** Whether the status already shows exactly these addresses. */
function sameAddresses(svc: LbService, ips: string[]): boolean {
  return svc.ingressIPs.length === ips.length && svc.ingressIPs.every((ip, i) => ip === ips[i]);
}

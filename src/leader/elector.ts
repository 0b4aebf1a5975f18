/**
 * Leader election over a coordination.k8s.io/v1 Lease, with client-go's
 * rules (tools/leaderelection):
 *
 * - A candidate reads the Lease. It may take it when nobody holds it
 *   (`holderIdentity` empty, as after a clean release), when it holds it
 *   itself, or when the record has not changed for `leaseDurationSeconds`
 *   (the holder's, from the record) measured on this candidate's monotonic
 *   clock from when it first saw that record: no clock in the cluster has to
 *   agree with another, only run at about the same rate.
 * - Taking or renewing writes holderIdentity, renewTime (and, on a change of
 *   holder, acquireTime and leaseTransitions + 1) with the read
 *   resourceVersion: two candidates that read the same version cannot both
 *   win (the second write gets 409 Conflict).
 * - The leader renews every `retryPeriod`; when it has not renewed for
 *   `renewDeadline` it stops leading (before any other candidate can
 *   consider the lease expired, since renewDeadline < leaseDuration).
 * - A clean {@link LeaseElector.stop} releases the lease (holder emptied,
 *   leaseDurationSeconds 1), so another candidate takes over at its next
 *   retry instead of after a whole lease duration.
 *
 * Generic: IPAM uses one cluster-wide Lease; the L2 announcer can use one
 * Lease per service with the same class. Times are milliseconds in options,
 * seconds on the Lease.
 */
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { apiErrorInfo, formatApiError } from '../sources/kubernetes/kubeconfig.js';

/** client-go's defaults (LeaseDuration 15 s, RenewDeadline 10 s, RetryPeriod 2 s). */
export const DEFAULT_LEASE_DURATION_MS = 15_000;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;
export { JITTER_FACTOR } from './config.js';
import { JITTER_FACTOR } from './config.js';

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** Options of {@link LeaseElector}. */
export interface LeaseElectorOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** The Lease's name (e.g. `xlb-ipam`, or one per service for L2). */
  name: string;
  /** This candidate's identity, unique among candidates (node name, pod name). */
  identity: string;
  /** How long a silent holder keeps the lease, ms (whole seconds on the Lease; default 15 000). */
  leaseDurationMs?: number;
  /** How long the leader keeps trying to renew before it gives up, ms (default 10 000). */
  renewDeadlineMs?: number;
  /** Time between attempts, ms (default 2 000). */
  retryPeriodMs?: number;
  log: Log;
  /** This candidate became the leader. */
  onStartedLeading?: () => void;
  /** This candidate stopped leading (lost the lease, or stop()). Called once per onStartedLeading. */
  onStoppedLeading?: () => void;
  /** The observed holder changed (undefined: nobody). */
  onNewLeader?: (identity: string | undefined) => void;
}

/** The Lease operations the elector needs; the default uses client-node's CoordinationV1Api. */
export interface LeaseClient {
  /** The Lease, or undefined when it does not exist. */
  get(namespace: string, name: string): Promise<V1Lease | undefined>;
  /** Create; throws with code 409 when it exists. */
  create(namespace: string, lease: V1Lease): Promise<V1Lease>;
  /** Replace with the resourceVersion in `lease.metadata`; throws with code 409 on a newer version. */
  replace(namespace: string, name: string, lease: V1Lease): Promise<V1Lease>;
}

/** A {@link LeaseClient} over client-node's typed API. */
export function kubeLeaseClient(kc: KubeConfig): LeaseClient {
  const api = kc.makeApiClient(CoordinationV1Api);
  return {
    async get(namespace, name) {
      try {
        return await api.readNamespacedLease({ namespace, name });
      } catch (e) {
        if (apiErrorInfo(e).code === 404) return undefined;
        throw e;
      }
    },
    create: (namespace, body) => api.createNamespacedLease({ namespace, body }),
    replace: (namespace, name, body) => api.replaceNamespacedLease({ namespace, name, body }),
  };
}

/** Reject after `ms` (the request itself may still complete; resourceVersion keeps that safe). */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** Leader election on one Lease. See the module comment. */
export class LeaseElector {
  private readonly client: LeaseClient;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Log;
  private leading = false;
  private stopped = false;
  private loop?: Promise<void>;
  private wake?: () => void;
  /** The last Lease read or written, and when (monotonic ms) its record was first seen. */
  private observed?: V1Lease;
  private observedAt = 0;
  private lastRenew = 0;
  private holder?: string;

  /**
   * @param client Lease access (default: client-node's CoordinationV1Api on `opts.kubeConfig`)
   * @throws Error when the times are inconsistent (client-go's checks)
   */
  constructor(
    private readonly opts: LeaseElectorOptions,
    client?: LeaseClient,
  ) {
    this.client = client ?? kubeLeaseClient(opts.kubeConfig);
    this.log = opts.log;
    this.leaseDurationMs = opts.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? DEFAULT_RENEW_DEADLINE_MS;
    this.retryPeriodMs = opts.retryPeriodMs ?? DEFAULT_RETRY_PERIOD_MS;
    const where = `leader election ${opts.namespace}/${opts.name}`;
    if (!opts.identity) throw new Error(`${where}: identity must not be empty`);
    if (this.leaseDurationMs < 1000 || this.leaseDurationMs % 1000) throw new Error(`${where}: leaseDurationMs must be whole seconds >= 1000 (got ${this.leaseDurationMs})`);
    if (!(this.leaseDurationMs > this.renewDeadlineMs)) {
      throw new Error(`${where}: leaseDurationMs ${this.leaseDurationMs} must be greater than renewDeadlineMs ${this.renewDeadlineMs}`);
    }
    if (!(this.renewDeadlineMs > JITTER_FACTOR * this.retryPeriodMs) || !(this.retryPeriodMs > 0)) {
      throw new Error(`${where}: renewDeadlineMs ${this.renewDeadlineMs} must be greater than ${JITTER_FACTOR} × retryPeriodMs ${this.retryPeriodMs}`);
    }
  }

  /** Whether this candidate currently leads. */
  isLeader(): boolean {
    return this.leading;
  }

  /** The holder as last observed (undefined: none or not yet read). */
  leader(): string | undefined {
    return this.holder;
  }

  /** Start campaigning (and renewing once leading). Returns at once. */
  start(): void {
    if (this.loop) throw new Error(`leader election ${this.opts.namespace}/${this.opts.name}: already started`);
    this.loop = this.run().catch((e) => this.log.error({ lease: this.opts.name, err: (e as Error).message }, 'leader election loop failed'));
  }

  /**
   * Stop: stop leading (onStoppedLeading first, so the work stops before
   * anyone else can start it), then release the lease if held. Idempotent.
   */
  async stop(): Promise<void> {
    if (this.stopped) return this.loop;
    this.stopped = true;
    this.wake?.();
    await this.loop;
    if (this.leading) {
      this.setLeading(false);
      await this.release();
    }
  }

  // ---------------------------------------------------------------------------

  private now(): number {
    return performance.now();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (!this.leading) {
        if (await this.tryAcquireOrRenew()) {
          if (this.stopped) {
            // Won while stopping: never start the work, give the lease back.
            await this.release();
            break;
          }
          this.lastRenew = this.now();
          this.setLeading(true);
          continue;
        }
        await this.sleep(this.retryPeriodMs * (1 + (JITTER_FACTOR - 1) * Math.random()));
        continue;
      }
      await this.sleep(this.retryPeriodMs);
      if (this.stopped) break;
      if (await this.tryAcquireOrRenew()) {
        this.lastRenew = this.now();
      } else if (this.now() - this.lastRenew >= this.renewDeadlineMs) {
        this.log.warn({ lease: this.opts.name, identity: this.opts.identity, renewDeadlineMs: this.renewDeadlineMs }, 'lease not renewed within the renew deadline: stopping leading');
        this.setLeading(false);
      }
    }
  }

  private setLeading(on: boolean): void {
    if (this.leading === on) return;
    this.leading = on;
    this.log.info({ lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity }, on ? 'started leading' : 'stopped leading');
    try {
      if (on) this.opts.onStartedLeading?.();
      else this.opts.onStoppedLeading?.();
    } catch (e) {
      this.log.error({ lease: this.opts.name, err: (e as Error).message }, `${on ? 'onStartedLeading' : 'onStoppedLeading'} failed`);
    }
  }

  private observe(lease: V1Lease): void {
    const prev = this.observed;
    if (!prev || prev.metadata?.resourceVersion !== lease.metadata?.resourceVersion) this.observedAt = this.now();
    this.observed = lease;
    const holder = lease.spec?.holderIdentity || undefined;
    if (holder !== this.holder) {
      this.holder = holder;
      this.log.info({ lease: `${this.opts.namespace}/${this.opts.name}`, holder: holder ?? null }, 'lease holder changed');
      try {
        this.opts.onNewLeader?.(holder);
      } catch (e) {
        this.log.error({ lease: this.opts.name, err: (e as Error).message }, 'onNewLeader failed');
      }
    }
  }

  /** One attempt; true when this candidate holds the lease afterwards. Never throws. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const timeout = Math.max(this.retryPeriodMs, this.renewDeadlineMs - this.retryPeriodMs);
    const nowTime = new V1MicroTime();
    const durationSeconds = this.leaseDurationMs / 1000;
    try {
      const cur = await withTimeout(this.client.get(namespace, name), timeout, `GET lease ${namespace}/${name}`);
      if (!cur) {
        const created = await withTimeout(
          this.client.create(namespace, {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name, namespace },
            spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: nowTime, renewTime: nowTime, leaseTransitions: 0 },
          }),
          timeout,
          `create lease ${namespace}/${name}`,
        );
        this.observe(created);
        return true;
      }
      this.observe(cur);
      const spec = cur.spec ?? {};
      const holder = spec.holderIdentity || undefined;
      const ttlMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (holder && holder !== identity && this.observedAt + ttlMs > this.now()) return false;
      const same = holder === identity;
      const updated = await withTimeout(
        this.client.replace(namespace, name, {
          ...cur,
          spec: {
            ...spec,
            holderIdentity: identity,
            leaseDurationSeconds: durationSeconds,
            renewTime: nowTime,
            acquireTime: same && spec.acquireTime ? spec.acquireTime : nowTime,
            leaseTransitions: same ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
          },
        }),
        timeout,
        `update lease ${namespace}/${name}`,
      );
      this.observe(updated);
      return true;
    } catch (e) {
      const info = apiErrorInfo(e);
      // 409: another candidate wrote first; the next read shows who.
      if (info.code === 409) this.log.debug({ lease: name, identity }, 'lease write conflict');
      else this.log.warn({ lease: `${namespace}/${name}`, identity, err: formatApiError(e) }, 'lease request failed');
      return false;
    }
  }

  /** Give the lease up so another candidate takes it at once (client-go's ReleaseOnCancel). */
  private async release(): Promise<void> {
    const { namespace, name, identity } = this.opts;
    try {
      const cur = await withTimeout(this.client.get(namespace, name), this.renewDeadlineMs, `GET lease ${namespace}/${name}`);
      if (!cur || cur.spec?.holderIdentity !== identity) return;
      const now = new V1MicroTime();
      await withTimeout(
        this.client.replace(namespace, name, {
          ...cur,
          spec: { ...cur.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: now, acquireTime: now },
        }),
        this.renewDeadlineMs,
        `release lease ${namespace}/${name}`,
      );
      this.log.info({ lease: `${namespace}/${name}`, identity }, 'lease released');
    } catch (e) {
      this.log.warn({ lease: `${namespace}/${name}`, identity, err: formatApiError(e) }, 'lease release failed; others take over when it expires');
    }
  }
}

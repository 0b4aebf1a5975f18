/**
 * The API writes of LB IPAM: `status.loadBalancer.ingress` through the
 * services/status subresource, and core/v1 Events on the service.
 *
 * Status is written with a JSON merge patch (RFC 7386) carrying the
 * resourceVersion the decision was made on: the API server answers 409
 * Conflict when the service changed since, and the controller decides again
 * on the newer object instead of overwriting it (a deposed leader's late
 * write fails the same way).
 *
 * Events follow client-go's recorder: named `<service>.<hex nanoseconds>`,
 * and an identical event (same object, type, reason, message) within
 * {@link EVENT_AGGREGATION_MS} patches `count` and `lastTimestamp` of the
 * first one instead of creating another. Events are best effort: a failure
 * is logged, never thrown.
 */
import { CoreV1Api, PatchStrategy, setHeaderOptions, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { apiErrorInfo, formatApiError } from '../sources/kubernetes/kubeconfig.js';

/** Identical events within this window are counted on one Event object, ms (client-go: 10 min). */
export const EVENT_AGGREGATION_MS = 10 * 60 * 1000;
/** `source.component` and `reportingComponent` of xlb's Events. */
export const EVENT_COMPONENT = 'xlb-ipam';

/** The service an event is about. */
export interface ServiceRef {
  namespace: string;
  name: string;
  uid?: string;
  resourceVersion?: string;
}

/** The writes IPAM makes; a fake stands in for it in unit tests. */
export interface IpamApi {
  /**
   * Set `status.loadBalancer.ingress` to these addresses (`[]` removes it).
   * @param resourceVersion precondition; a newer object fails with code 409
   * @throws an error whose {@link apiErrorInfo} code is the HTTP status
   */
  setIngress(ref: ServiceRef, ips: string[]): Promise<void>;
  /** Record an Event on the service. Never throws. */
  event(ref: ServiceRef, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
}

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** {@link IpamApi} over client-node's CoreV1Api. */
export class KubeIpamApi implements IpamApi {
  private readonly api: CoreV1Api;
  private readonly recent = new Map<string, { name: string; count: number; first: number; firstTimestamp: Date }>();

  /**
   * @param identity this agent (the node name): Events' `reportingInstance` and `source.host`
   */
  constructor(
    kc: KubeConfig,
    private readonly identity: string,
    private readonly log: Log,
  ) {
    this.api = kc.makeApiClient(CoreV1Api);
  }

  async setIngress(ref: ServiceRef, ips: string[]): Promise<void> {
    const body = {
      metadata: ref.resourceVersion ? { resourceVersion: ref.resourceVersion } : {},
      status: { loadBalancer: { ingress: ips.length ? ips.map((ip) => ({ ip })) : null } },
    };
    await this.api.patchNamespacedServiceStatus({ namespace: ref.namespace, name: ref.name, body }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  }

  async event(ref: ServiceRef, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const now = Date.now();
    const key = `${ref.namespace}/${ref.name}/${ref.uid ?? ''}|${type}|${reason}|${message}`;
    for (const [k, v] of this.recent) if (now - v.first > EVENT_AGGREGATION_MS) this.recent.delete(k);
    const prev = this.recent.get(key);
    try {
      if (prev) {
        try {
          prev.count++;
          await this.api.patchNamespacedEvent(
            { namespace: ref.namespace, name: prev.name, body: { count: prev.count, lastTimestamp: new Date(now).toISOString() } },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          );
          return;
        } catch (e) {
          if (apiErrorInfo(e).code !== 404) throw e;
          this.recent.delete(key); // expired on the server: create a new one
        }
      }
      const name = `${ref.name}.${(BigInt(now) * 1_000_000n + BigInt(Math.floor(Math.random() * 1e6))).toString(16)}`;
      const at = new Date(now);
      const ev: CoreV1Event = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace: ref.namespace },
        involvedObject: { apiVersion: 'v1', kind: 'Service', namespace: ref.namespace, name: ref.name, uid: ref.uid, resourceVersion: ref.resourceVersion },
        type,
        reason,
        message,
        count: 1,
        firstTimestamp: at,
        lastTimestamp: at,
        source: { component: EVENT_COMPONENT, host: this.identity },
        reportingComponent: EVENT_COMPONENT,
        reportingInstance: this.identity,
      };
      await this.api.createNamespacedEvent({ namespace: ref.namespace, body: ev });
      this.recent.set(key, { name, count: 1, first: now, firstTimestamp: at });
    } catch (e) {
      this.log.warn({ service: `${ref.namespace}/${ref.name}`, reason, err: formatApiError(e) }, 'could not record event');
    }
  }
}

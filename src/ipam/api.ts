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
 * Events go through the shared recorder (src/sources/kubernetes/events.ts:
 * client-go's naming and aggregation); they are best effort: a failure is
 * logged, never thrown.
 */
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { EventRecorder, EVENT_AGGREGATION_MS } from '../sources/kubernetes/events.js';

export { EVENT_AGGREGATION_MS };
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
  /** Events on Services and on LoadBalancerIPPools, from this agent. */
  readonly events: EventRecorder;

  /**
   * @param identity this agent (the node name): Events' `reportingInstance` and `source.host`
   */
  constructor(
    kc: KubeConfig,
    identity: string,
    log: Log,
  ) {
    this.api = kc.makeApiClient(CoreV1Api);
    this.events = new EventRecorder(kc, EVENT_COMPONENT, identity, log);
  }

  async setIngress(ref: ServiceRef, ips: string[]): Promise<void> {
    const body = {
      metadata: ref.resourceVersion ? { resourceVersion: ref.resourceVersion } : {},
      status: { loadBalancer: { ingress: ips.length ? ips.map((ip) => ({ ip })) : null } },
    };
    await this.api.patchNamespacedServiceStatus({ namespace: ref.namespace, name: ref.name, body }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  }

  event(ref: ServiceRef, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    return this.events.event({ apiVersion: 'v1', kind: 'Service', ...ref }, type, reason, message);
  }
}

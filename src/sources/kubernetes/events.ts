/**
 * core/v1 Events on any object, as client-go's event recorder writes them
 * (k8s.io/client-go/tools/record): named `<object>.<hex nanoseconds>`, in the
 * object's namespace, or in `default` for a cluster-scoped object (what
 * client-go does with an empty namespace); an identical event (same object,
 * type, reason, message) within {@link EVENT_AGGREGATION_MS} patches
 * `count` and `lastTimestamp` of the first one instead of creating another.
 *
 * Events are best effort: a failure is logged, never thrown.
 */
import { CoreV1Api, PatchStrategy, setHeaderOptions, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { apiErrorInfo, formatApiError } from './kubeconfig.js';

/** Identical events within this window are counted on one Event object, ms (client-go: 10 min). */
export const EVENT_AGGREGATION_MS = 10 * 60 * 1000;

/** Namespace of Events about cluster-scoped objects (client-go's metav1.NamespaceDefault). */
export const CLUSTER_EVENT_NAMESPACE = 'default';

/** The object an Event is about (an Event's `involvedObject`). */
export interface ObjectRef {
  /** `v1`, `xlb.io/v1alpha1`, ... */
  apiVersion: string;
  kind: string;
  /** Absent for cluster-scoped objects. */
  namespace?: string;
  name: string;
  uid?: string;
  resourceVersion?: string;
}

/** Event type (core/v1 Event `type`). */
export type EventType = 'Normal' | 'Warning';

/** Records Events; a fake stands in for it in unit tests. */
export interface EventSink {
  /** Record an Event on `ref`. Never throws. */
  event(ref: ObjectRef, type: EventType, reason: string, message: string): Promise<void>;
}

type Log = Pick<Logger, 'warn'>;

/** {@link EventSink} over client-node's CoreV1Api. See the module comment. */
export class EventRecorder implements EventSink {
  private readonly api: CoreV1Api;
  private readonly recent = new Map<string, { name: string; namespace: string; count: number; first: number }>();

  /**
   * @param component `source.component` and `reportingComponent` (`xlb-ipam`)
   * @param identity this agent (the node name): `reportingInstance` and `source.host`
   */
  constructor(
    kc: KubeConfig,
    private readonly component: string,
    private readonly identity: string,
    private readonly log: Log,
  ) {
    this.api = kc.makeApiClient(CoreV1Api);
  }

  async event(ref: ObjectRef, type: EventType, reason: string, message: string): Promise<void> {
    const now = Date.now();
    const namespace = ref.namespace || CLUSTER_EVENT_NAMESPACE;
    const key = `${ref.apiVersion}/${ref.kind}/${ref.namespace ?? ''}/${ref.name}/${ref.uid ?? ''}|${type}|${reason}|${message}`;
    for (const [k, v] of this.recent) if (now - v.first > EVENT_AGGREGATION_MS) this.recent.delete(k);
    const prev = this.recent.get(key);
    try {
      if (prev) {
        try {
          prev.count++;
          await this.api.patchNamespacedEvent(
            { namespace: prev.namespace, name: prev.name, body: { count: prev.count, lastTimestamp: new Date(now).toISOString() } },
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
        metadata: { name, namespace },
        involvedObject: { apiVersion: ref.apiVersion, kind: ref.kind, namespace: ref.namespace, name: ref.name, uid: ref.uid, resourceVersion: ref.resourceVersion },
        type,
        reason,
        message,
        count: 1,
        firstTimestamp: at,
        lastTimestamp: at,
        source: { component: this.component, host: this.identity },
        reportingComponent: this.component,
        reportingInstance: this.identity,
      };
      await this.api.createNamespacedEvent({ namespace, body: ev });
      this.recent.set(key, { name, namespace, count: 1, first: now });
    } catch (e) {
      this.log.warn({ object: `${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`, reason, err: formatApiError(e) }, 'could not record event');
    }
  }
}

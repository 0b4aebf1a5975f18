/**
 * Following a kind of xlb's cluster-scoped resources whose effect on this
 * node depends on the node's labels (BGPAdvertisement, L2AnnouncementPolicy):
 * the watch, each object read the same way on every node, this node's
 * labels, the consumer told when either changes in meaning, and each
 * object's `conditions[type=Accepted]` written (the same on every node: one
 * agent's write wins and records the Warning Event of a refusal or remark).
 *
 * What the objects mean for this node (which VIPs, which interfaces) is the
 * subclass's: src/bgp/advertisement-resources.ts, src/l2/policy-resources.ts.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { InputIssue } from '../../model/types.js';
import type { RawObject } from './informer.js';
import { CustomResourceWatch, XLB_API_VERSION, writeSharedCondition, type CustomResourceKind, type CustomStatusApi } from './custom.js';
import type { EventSink } from './events.js';
import { apiErrorInfo, formatApiError } from './kubeconfig.js';
import { Backoff, type BackoffOptions } from './backoff.js';

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** What is read from one object, the same on every node: reason `Accepted` when accepted without remark. */
export interface NodeSelectedObject {
  name: string;
  uid?: string;
  resourceVersion?: string;
  accepted: boolean;
  reason: string;
  /** `<field>: <why>`; empty when accepted without remark. */
  message: string;
  /** The field a refusal names. */
  field?: string;
}

/** Options of {@link NodeSelectedResources}. */
export interface NodeSelectedOptions {
  kubeConfig: KubeConfig;
  log: Log;
  /** The objects changed in meaning, or this node's labels did: decide again. Must not throw. */
  onChange: () => void;
  status: CustomStatusApi;
  events: EventSink;
  backoff?: BackoffOptions;
  watchTimeoutSeconds?: () => number;
}

/** The kind followed and what its objects are read as. */
export interface NodeSelectedKind<P extends NodeSelectedObject> {
  kind: CustomResourceKind;
  parse: (o: RawObject) => P;
  /** The Accepted condition's message for an object accepted without remark. */
  acceptedMessage: string;
  /** The log field naming an object (`advertisement`, `policy`). */
  logKey: string;
  /** The log prefix of the consumer (`bgp`, `l2`). */
  area: string;
}

/** Follows one kind for this node; see the module comment. */
export class NodeSelectedResources<P extends NodeSelectedObject> {
  private readonly watch: CustomResourceWatch;
  /** The objects as read. */
  protected parsed: P[] = [];
  /** This node's labels; undefined until its Node has been read. */
  protected labels?: Record<string, string>;
  private writing?: Promise<void>;
  private writeAgain = false;
  private retryTimer?: NodeJS.Timeout;
  private readonly retry: Backoff;
  private stopped = false;
  /** The consumer has been told once (it waits for that before deciding anything). */
  private notified = false;
  private st = { statusWrites: 0, statusErrors: 0 };

  constructor(
    protected readonly base: NodeSelectedOptions,
    private readonly what: NodeSelectedKind<P>,
  ) {
    this.retry = new Backoff({ initialMs: 500, maxMs: 30_000, ...base.backoff });
    this.watch = new CustomResourceWatch({
      kubeConfig: base.kubeConfig,
      kind: what.kind,
      log: base.log,
      backoff: base.backoff,
      watchTimeoutSeconds: base.watchTimeoutSeconds,
      onChange: () => this.changed(),
    });
  }

  /** Start following; see {@link ready}. */
  start(): void {
    this.watch.start();
  }

  /** Stop following; no status write starts after this resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.watch.stop();
    await this.writing;
  }

  /** Whether the objects and this node's labels are known: until then the consumer leaves things as they are. */
  ready(): boolean {
    return this.watch.state() !== 'pending' && this.labels !== undefined;
  }

  /** This node's labels (from its Node object). */
  setNodeLabels(labels: Record<string, string>): void {
    const same = this.labels !== undefined && JSON.stringify(Object.entries(labels).sort()) === JSON.stringify(Object.entries(this.labels).sort());
    this.labels = { ...labels };
    if (!same) this.notify();
  }

  /** The watch's state and counters (objects read, accepted; status writes). */
  stats() {
    return { state: this.watch.state(), resources: this.parsed.length, accepted: this.parsed.filter((p) => p.accepted).length, ...this.st };
  }

  /** Why the objects are not read (the watch's), and each refused one: for `/v1/issues`. */
  protected baseIssues(consequence: string): InputIssue[] {
    const out = this.watch.issues();
    for (const p of this.parsed) {
      if (!p.accepted) out.push({ object: `${this.what.kind.kind} ${p.name}`, field: p.field ?? 'spec', message: `${p.message.replace(/^[^:]*: /, '')} (${p.reason}); ${consequence}` });
    }
    return out;
  }

  private changed(): void {
    if (this.stopped) return;
    const before = new Map(this.parsed.map((p) => [p.name, p]));
    const meaning = (ps: P[]) => JSON.stringify(ps.map(({ resourceVersion: _rv, uid: _uid, ...rest }) => rest).sort((a, b) => (a.name < b.name ? -1 : 1)));
    const was = meaning(this.parsed);
    this.parsed = this.watch.objects().map(this.what.parse);
    for (const p of this.parsed) {
      if (p.reason !== 'Accepted' && before.get(p.name)?.message !== p.message) {
        this.base.log.warn({ [this.what.logKey]: p.name, reason: p.reason, message: p.message }, `${this.what.kind.kind} ${p.accepted ? 'accepted with a remark' : 'refused'}`);
      }
    }
    // A status write (by any node) changes nothing here: the consumer decides again only when an object's meaning changed.
    if (meaning(this.parsed) !== was || !this.notified) this.notify();
    this.writeStatuses();
  }

  private notify(): void {
    if (!this.ready()) return;
    this.notified = true;
    try {
      this.base.onChange();
    } catch (e) {
      this.base.log.error({ err: (e as Error).message }, `${this.what.area}: applying the ${this.what.kind.kind} resources failed`);
    }
  }

  /** The Accepted conditions, with a Warning Event for a refusal or a remark. */
  private writeStatuses(): void {
    if (this.stopped || this.watch.state() !== 'synced') return;
    if (this.writing) {
      this.writeAgain = true;
      return;
    }
    this.writing = (async () => {
      let failed = false;
      const objects = new Map(this.watch.objects().map((o) => [o.metadata.name, o]));
      for (const p of this.parsed) {
        const obj = objects.get(p.name);
        if (!obj || this.stopped) continue;
        try {
          const written = await writeSharedCondition(this.base.status, this.what.kind, obj, {
            type: 'Accepted',
            status: p.accepted ? 'True' : 'False',
            reason: p.reason,
            message: p.message || this.what.acceptedMessage,
          });
          if (!written) continue;
          this.st.statusWrites++;
          if (p.reason !== 'Accepted') {
            void this.base.events.event({ apiVersion: XLB_API_VERSION, kind: this.what.kind.kind, name: p.name, uid: p.uid, resourceVersion: p.resourceVersion }, 'Warning', p.reason, p.message);
          }
        } catch (e) {
          if (apiErrorInfo(e).code === 404) continue;
          failed = true;
          this.st.statusErrors++;
          this.base.log.warn({ [this.what.logKey]: p.name, err: formatApiError(e) }, `${this.what.kind.kind} status write failed; retrying after backoff`);
        }
      }
      if (failed && !this.stopped) {
        this.retryTimer = setTimeout(() => this.writeStatuses(), this.retry.next());
        this.retryTimer.unref();
      } else this.retry.reset();
    })().finally(() => {
      this.writing = undefined;
      if (this.writeAgain) {
        this.writeAgain = false;
        this.writeStatuses();
      }
    });
  }
}

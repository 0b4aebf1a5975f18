/**
 * Flows as an operator reads them (`xlb observe`, GET /v1/flows), in the
 * shape of Hubble's: each datapath event (src/datapath/flow_events.ts) with
 * its verdict, wall-clock time, and names from the model: the service a
 * packet was for, the pods behind the addresses. The agent keeps the last
 * flows in a ring ({@link FlowBuffer}).
 */
import type { FlowEvent } from '../datapath/flow_events.js';
import type { ClusterState } from '../model/types.js';

/** One flow, enriched. */
export interface Flow {
  /** RFC 3339, milliseconds. */
  time: string;
  /** The same, ms since the epoch (for `since`). */
  timeMs: number;
  /** The node whose datapath saw it. */
  node: string;
  verdict: 'FORWARDED' | 'DROPPED';
  /** Why it was dropped (the drop counter's reason: `no_backend`, `source_range`, ...). */
  dropReason?: string;
  protocol: 'TCP' | 'UDP';
  source: { ip: string; port: number; pod?: string };
  /** What the client sent to, and the service port it is (`namespace/name:port`). */
  destination: { ip: string; port: number; service?: string };
  /** The backend a new flow was placed on, and its pod (`namespace/name`) and node when known. */
  backend?: { ip: string; port: number; pod?: string; node?: string };
  /** The node's source port towards a remote backend. */
  snatPort?: number;
  /**
   * How a new flow's backend was chosen: `affinity` (ClientIP: the client's
   * previous backend), or `maglev` with the lookup table's slot (hash % M,
   * M as programmed when the agent read the event).
   */
  selection?: { by: 'maglev'; slot?: number } | { by: 'affinity' };
  /** TCP flags by name (SYN, ACK, FIN, RST, PSH, URG). */
  tcpFlags: string[];
  /** Where the datapath saw the packet (xdp, tc-egress, tc-pod, sock). */
  point: string;
  /** The client closed the flow here (its first FIN or RST); `backend` is the flow's. Left out for a new flow or a drop. */
  closed?: true;
}

const TCP_FLAG_NAMES: Array<[number, string]> = [
  [0x02, 'SYN'],
  [0x10, 'ACK'],
  [0x01, 'FIN'],
  [0x04, 'RST'],
  [0x08, 'PSH'],
  [0x20, 'URG'],
];

/** A pod by address: `namespace/name` and its node. */
export interface PodRef {
  pod: string;
  node?: string;
}

/** How long a pod that left the model still names its address (late events still get names), ms. */
export const POD_MEMORY_MS = 5 * 60_000;

/**
 * Pods by address, from the EndpointSlices' endpoints (their `targetRef`
 * names and `nodeName`). A pod that left the model is remembered for
 * {@link POD_MEMORY_MS}.
 */
export class PodDirectory {
  private current = new Map<string, PodRef>();
  private gone = new Map<string, { ref: PodRef; untilMs: number }>();

  /** Read the pods of `state` (at `nowMs`, ms since the epoch). */
  update(state: ClusterState, nowMs: number): void {
    const next = new Map<string, PodRef>();
    for (const slice of state.endpointSlices.values()) {
      for (const e of slice.endpoints) {
        if (!e.targetName) continue;
        const ref: PodRef = { pod: `${slice.namespace}/${e.targetName}` };
        if (e.nodeName) ref.node = e.nodeName;
        for (const a of e.addresses) next.set(a, ref);
      }
    }
    for (const [ip, ref] of this.current) if (!next.has(ip)) this.gone.set(ip, { ref, untilMs: nowMs + POD_MEMORY_MS });
    for (const [ip, g] of this.gone) if (next.has(ip) || g.untilMs < nowMs) this.gone.delete(ip);
    this.current = next;
  }

  /** The pod at `ip`, if known (or remembered). */
  lookup(ip: string): PodRef | undefined {
    return this.current.get(ip) ?? this.gone.get(ip)?.ref;
  }
}

/** What {@link enrich} needs besides the event. */
export interface EnrichContext {
  node: string;
  /** Wall clock minus CLOCK_MONOTONIC, ns. */
  wallOffsetNs: bigint;
  serviceOf: (serviceId: number) => string | undefined;
  /** The size M of a service's Maglev lookup table, when it has one. */
  tableSizeOf?: (serviceId: number) => number | undefined;
  pods: PodDirectory;
}

/** A datapath event as a {@link Flow}. */
export function enrich(e: FlowEvent, ctx: EnrichContext): Flow {
  const timeMs = Number((e.monotonicNs + ctx.wallOffsetNs) / 1_000_000n);
  const flow: Flow = {
    time: new Date(timeMs).toISOString(),
    timeMs,
    node: ctx.node,
    verdict: e.type === 'drop' ? 'DROPPED' : 'FORWARDED',
    protocol: e.protocol,
    source: { ...e.source },
    destination: { ...e.destination },
    tcpFlags: e.protocol === 'TCP' ? TCP_FLAG_NAMES.filter(([bit]) => e.tcpFlags & bit).map(([, name]) => name) : [],
    point: e.point,
  };
  if (e.dropReason) flow.dropReason = e.dropReason;
  if (e.type === 'flow-end') flow.closed = true;
  const srcPod = ctx.pods.lookup(e.source.ip);
  if (srcPod) flow.source.pod = srcPod.pod;
  const service = e.serviceId ? ctx.serviceOf(e.serviceId) : undefined;
  if (service) flow.destination.service = service;
  if (e.backend) {
    flow.backend = { ...e.backend };
    const p = ctx.pods.lookup(e.backend.ip);
    if (p) {
      flow.backend.pod = p.pod;
      if (p.node) flow.backend.node = p.node;
    }
  }
  if (e.snatPort) flow.snatPort = e.snatPort;
  if (e.selection) {
    if (e.selection.by === 'affinity') flow.selection = { by: 'affinity' };
    else {
      const m = ctx.tableSizeOf?.(e.serviceId);
      flow.selection = m ? { by: 'maglev', slot: e.selection.hash % m } : { by: 'maglev' };
    }
  }
  return flow;
}

/** Which flows {@link FlowBuffer.query} returns; every field given must match. */
export interface FlowQuery {
  /** At most this many, the newest (after the other filters). */
  last?: number;
  /** Only flows at or after this time, ms since the epoch. */
  sinceMs?: number;
  fromIp?: string;
  toIp?: string;
  /** `namespace/name` of the source pod. */
  fromPod?: string;
  /** `namespace/name` of the destination service. */
  toService?: string;
  verdict?: Flow['verdict'];
  protocol?: Flow['protocol'];
  /** Source or destination port. */
  port?: number;
  /** The node that saw it. */
  node?: string;
}

/**
 * The last flows, oldest first, in a ring of fixed capacity; listeners
 * (`xlb observe --follow` through the Hubble API) hear each flow added.
 */
export class FlowBuffer {
  private readonly ring: Flow[] = [];
  private next = 0;
  private readonly listeners = new Set<(f: Flow) => void>();
  /** Flows added since the buffer was made (Hubble's seen_flows). */
  seen = 0;

  /** @param capacity flows kept (flows.buffer) */
  constructor(readonly capacity: number) {}

  add(flow: Flow): void {
    if (this.ring.length < this.capacity) this.ring.push(flow);
    else this.ring[this.next] = flow;
    this.next = (this.next + 1) % this.capacity;
    this.seen++;
    for (const l of this.listeners) l(flow);
  }

  /** Call `listener` with every flow added from now on; returns the call that stops it. */
  subscribe(listener: (f: Flow) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Every flow held, oldest first. */
  all(): Flow[] {
    return this.ring.length < this.capacity ? [...this.ring] : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }

  /** Flows held. */
  get size(): number {
    return this.ring.length;
  }

  /** The flows matching `q`, oldest first. */
  query(q: FlowQuery): Flow[] {
    const ordered = this.ring.length < this.capacity ? this.ring : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
    const out = ordered.filter(
      (f) =>
        (q.sinceMs === undefined || f.timeMs >= q.sinceMs) &&
        (q.fromIp === undefined || f.source.ip === q.fromIp) &&
        (q.toIp === undefined || f.destination.ip === q.toIp) &&
        (q.fromPod === undefined || f.source.pod === q.fromPod) &&
        (q.toService === undefined || (f.destination.service ?? '').split(':')[0] === q.toService) &&
        (q.verdict === undefined || f.verdict === q.verdict) &&
        (q.protocol === undefined || f.protocol === q.protocol) &&
        (q.port === undefined || f.source.port === q.port || f.destination.port === q.port) &&
        (q.node === undefined || f.node === q.node),
    );
    return q.last === undefined ? out : out.slice(Math.max(0, out.length - q.last));
  }
}

/**
 * One flow on one line, as `hubble observe` prints one: time (UTC), node,
 * source, destination (service), backend, verdict, TCP flags.
 */
export function formatFlow(f: Flow): string {
  const t = new Date(f.timeMs);
  const time = `${t.toLocaleString('en', { month: 'short', timeZone: 'UTC' })} ${String(t.getUTCDate()).padStart(2)} ${t.toISOString().slice(11, 23)}`;
  // A socket hook sees a connect() before the kernel has chosen its source.
  const src = f.source.ip === '0.0.0.0' ? `socket${f.source.pod ? ` (${f.source.pod})` : ''}` : `${f.source.ip}:${f.source.port}${f.source.pod ? ` (${f.source.pod})` : ''}`;
  const dst = `${f.destination.ip}:${f.destination.port}${f.destination.service ? ` (${f.destination.service})` : ''}`;
  const how = f.selection?.by === 'affinity' ? ' by affinity' : f.selection?.by === 'maglev' && f.selection.slot !== undefined ? ` by Maglev slot ${f.selection.slot}` : '';
  const backend = f.backend ? ` to ${f.backend.ip}:${f.backend.port}${f.backend.pod ? ` (${f.backend.pod})` : ''}${how}${f.snatPort ? ` via SNAT port ${f.snatPort}` : ''}` : '';
  const what = f.verdict === 'DROPPED' ? `DROPPED (${f.dropReason ?? 'unknown'})` : f.closed ? 'FORWARDED, closed' : 'FORWARDED';
  const flags = f.protocol === 'TCP' ? `TCP Flags: ${f.tcpFlags.join(', ') || 'none'}` : 'UDP';
  return `${time} [${f.node}]: ${src} -> ${dst}${backend} ${what} (${flags})`;
}

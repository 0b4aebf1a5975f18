/**
 * The service map (GET /v1/servicemap, drawn by the page at /ui): the
 * services this agent programs as a graph, frontend → service → backend,
 * with the flows of a recent window counted on its edges, and the newest
 * flows for a table.
 *
 * What the counts are: the datapath reports one flow event per new flow it
 * places and one per packet of a new flow it drops (src/datapath/flow_events.ts),
 * so an edge's `flows` are new connections (TCP) or new 5-tuples (UDP) in
 * the window, not packets; established traffic adds nothing. The events are
 * rate-limited per CPU (flows.eventsPerSecond; the rest are counted in
 * `suppressed`), and the agent keeps the last flows.buffer of them: past
 * either limit the counts are low. Each agent sees only the flows its own
 * node handled.
 */
import type { BackendView, ServiceView } from '../services/controller.js';
import type { Flow, PodRef } from '../flows/flows.js';
import type { ServiceMapQuery } from './errors.js';

/** A node of the graph: a service, one of its frontends, or a backend. */
export interface ServiceMapNode {
  /**
   * `service:NAMESPACE/NAME`, `frontend:NAMESPACE/NAME:PORTNAME@ADDR:PORT/PROTO`
   * (the frontend of one service port), or `backend:ADDR:PORT/PROTO` (one node
   * for an endpoint that backs several services).
   */
  id: string;
  kind: 'service' | 'frontend' | 'backend';
  /** What the page writes on the node (lines separated by `\n`). */
  label: string;
  /** The service's namespace; for a backend, that of the first service it backs. */
  namespace: string;
  /** The service, `namespace/name`; for a backend, the first service it backs. */
  service: string;
  /** Frontends and backends: address, port and protocol. */
  addr?: string;
  port?: number;
  protocol?: 'TCP' | 'UDP';
  /** Frontends: LoadBalancer, ExternalIP, NodePort or ClusterIP. */
  frontendKind?: string;
  /** Frontends: programmed in the datapath. */
  served?: boolean;
  /** Backends: the pod, `namespace/name`, and its node, when the EndpointSlice names them. */
  pod?: string;
  node?: string;
  /** Backends: ready (takes new flows), serving-terminating, terminating, not-ready. */
  state?: BackendView['state'];
  /** Services: their ports, `PORTNAME/PROTO` (`/TCP` for an unnamed port). */
  ports?: string[];
}

/** An edge: frontend → service, or service → backend. */
export interface ServiceMapEdge {
  /** `SOURCE->TARGET` (node ids). */
  id: string;
  source: string;
  target: string;
  /** New flows forwarded over the edge in the window. */
  flows: number;
  /** Packets of new flows dropped in the window (frontend → service edges only: a drop has no backend). */
  drops: number;
  /** `flows` and `drops` per second over the window. */
  flowRate: number;
  dropRate: number;
}

/** The flows part of the map: off when the agent records none. */
export type ServiceMapFlows =
  | { enabled: false }
  | {
      enabled: true;
      /** The window the edges count, s. */
      windowSeconds: number;
      /** Flows in the window (after the namespace filter) by verdict. */
      forwarded: number;
      dropped: number;
      /** Events the datapath's rate limit left out since the agent started (a decimal count). */
      suppressed: string;
      /** Flows the agent keeps (flows.buffer). */
      capacity: number;
      /** The newest flows (after the namespace filter), newest first, at most `last`. */
      recent: Flow[];
    };

/** GET /v1/servicemap. */
export interface ServiceMap {
  /** The agent's node: the flows are those this node handled. */
  node?: string;
  /** Every namespace with a programmed service, sorted (for a filter; not narrowed by `namespace`). */
  namespaces: string[];
  /** The namespace filter applied, if any. */
  namespace?: string;
  nodes: ServiceMapNode[];
  edges: ServiceMapEdge[];
  flows: ServiceMapFlows;
}

/** What {@link serviceMap} reads besides the services. */
export interface ServiceMapSource {
  /** The flows the agent keeps, oldest first; undefined when it records none. */
  flows?: { flows: Flow[]; suppressed: string; capacity: number };
  /** The pod at an address (names backends). */
  podOf?: (ip: string) => PodRef | undefined;
  node?: string;
}

const endpointKey = (addr: string, port: number, protocol: string) => `${addr}:${port}/${protocol}`;
/** `namespace/name` of a service port key `namespace/name:portName`. */
const serviceOfKey = (key: string) => key.split(':')[0];

/**
 * Build the service map of `services` (as the controller programs them)
 * and the flows of `src`, filtered and windowed by `q`.
 * @param nowMs the end of the window, ms since the epoch
 */
export function serviceMap(services: ServiceView[], src: ServiceMapSource, q: ServiceMapQuery, nowMs: number): ServiceMap {
  const namespaces = [...new Set(services.map((s) => s.namespace))].sort();
  const nodes = new Map<string, ServiceMapNode>();
  const edges = new Map<string, ServiceMapEdge>();
  // Every frontend of every service, filtered or not: a flow is named by the frontend it was sent to.
  const frontendOf = new Map<string, { id: string; service: string }>();
  const edge = (source: string, target: string) => {
    const id = `${source}->${target}`;
    if (!edges.has(id)) edges.set(id, { id, source, target, flows: 0, drops: 0, flowRate: 0, dropRate: 0 });
  };

  const sorted = [...services].sort((a, b) => a.key.localeCompare(b.key) || a.protocol.localeCompare(b.protocol));
  for (const s of sorted) {
    const service = `${s.namespace}/${s.name}`;
    const serviceId = `service:${service}`;
    const shown = q.namespace === undefined || q.namespace === s.namespace;
    for (const f of s.frontends) {
      const id = `frontend:${s.key}@${endpointKey(f.addr, f.port, s.protocol)}`;
      if (!frontendOf.has(endpointKey(f.addr, f.port, s.protocol))) frontendOf.set(endpointKey(f.addr, f.port, s.protocol), { id, service });
      if (!shown) continue;
      nodes.set(id, {
        id,
        kind: 'frontend',
        label: `${f.addr}:${f.port}/${s.protocol}\n${f.kind}`,
        namespace: s.namespace,
        service,
        addr: f.addr,
        port: f.port,
        protocol: s.protocol,
        frontendKind: f.kind,
        served: f.served,
      });
      edge(id, serviceId);
    }
    if (!shown) continue;
    const svc = nodes.get(serviceId) ?? { id: serviceId, kind: 'service' as const, label: service, namespace: s.namespace, service, ports: [] };
    svc.ports!.push(`${s.portName}/${s.protocol}`);
    nodes.set(serviceId, svc);
    for (const b of s.backends) {
      const id = `backend:${endpointKey(b.addr, b.port, s.protocol)}`;
      if (!nodes.has(id)) {
        const pod = src.podOf?.(b.addr);
        const node: ServiceMapNode = {
          id,
          kind: 'backend',
          label: `${pod ? `${pod.pod.split('/')[1]}\n` : ''}${b.addr}:${b.port}/${s.protocol}`,
          namespace: s.namespace,
          service,
          addr: b.addr,
          port: b.port,
          protocol: s.protocol,
          state: b.state,
        };
        if (pod) node.pod = pod.pod;
        const where = b.nodeName ?? pod?.node;
        if (where) node.node = where;
        nodes.set(id, node);
      }
      edge(serviceId, id);
    }
  }

  if (!src.flows) return { ...(src.node ? { node: src.node } : {}), namespaces, ...(q.namespace ? { namespace: q.namespace } : {}), nodes: [...nodes.values()], edges: [...edges.values()], flows: { enabled: false } };

  // The service a flow was for: as the datapath named it, else by the frontend it was sent to.
  const flowService = (f: Flow) => (f.destination.service ? serviceOfKey(f.destination.service) : frontendOf.get(endpointKey(f.destination.ip, f.destination.port, f.protocol))?.service);
  const inNamespace = (service: string | undefined) => q.namespace === undefined || (service !== undefined && service.split('/')[0] === q.namespace);
  const sinceMs = nowMs - q.windowMs;
  let forwarded = 0;
  let dropped = 0;
  for (const f of src.flows.flows) {
    // A flow's close is the same flow again: the edges count new flows and drops.
    if (f.timeMs < sinceMs || f.closed) continue;
    const service = flowService(f);
    if (!inNamespace(service)) continue;
    if (f.verdict === 'DROPPED') dropped++;
    else forwarded++;
    if (!service) continue;
    const frontend = frontendOf.get(endpointKey(f.destination.ip, f.destination.port, f.protocol));
    const serviceId = `service:${service}`;
    const front = frontend ? edges.get(`${frontend.id}->${serviceId}`) : undefined;
    if (front) {
      if (f.verdict === 'DROPPED') front.drops++;
      else front.flows++;
    }
    if (f.verdict === 'FORWARDED' && f.backend) {
      const back = edges.get(`${serviceId}->backend:${endpointKey(f.backend.ip, f.backend.port, f.protocol)}`);
      if (back) back.flows++;
    }
  }
  const seconds = q.windowMs / 1000;
  for (const e of edges.values()) {
    e.flowRate = e.flows / seconds;
    e.dropRate = e.drops / seconds;
  }
  const recent: Flow[] = [];
  const all = src.flows.flows;
  for (let i = all.length - 1; i >= 0 && recent.length < q.last; i--) if (inNamespace(flowService(all[i]))) recent.push(all[i]);
  // The buffer holds flows as read, CPU by CPU: by time, newest first.
  recent.sort((a, b) => b.timeMs - a.timeMs);
  return {
    ...(src.node ? { node: src.node } : {}),
    namespaces,
    ...(q.namespace ? { namespace: q.namespace } : {}),
    nodes: [...nodes.values()],
    edges: [...edges.values()],
    flows: { enabled: true, windowSeconds: seconds, forwarded, dropped, suppressed: src.flows.suppressed, capacity: src.flows.capacity, recent },
  };
}

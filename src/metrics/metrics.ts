/**
 * Prometheus metrics of the agent (prom-client). One registry, passed in;
 * names carry their unit (`_seconds`, `_bytes`, `_total`) and every metric has
 * help text; the exposition passes `promtool check metrics`. Datapath
 * counters (per-CPU BPF maps) are read at scrape time, so a scrape always
 * shows the kernel's current figures; the conntrack table is counted at most
 * once every {@link CONNTRACK_COUNT_MAX_AGE_MS}. Per-service flow and drop
 * counts are derived from flow events as they are read (as Hubble derives
 * its metrics from flows), so they are sampled as the events are.
 *
 * Labels are bounded: a service port is `{namespace,name,port}` (only ports
 * programmed now: a removed one's series go), reasons and verdicts are
 * enums, peers, VIPs, pools and resources come from the configuration or
 * the programmed services.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { packageVersion } from '../util/package-root.js';
import type { ServiceView } from '../services/controller.js';
import type { LBMaps } from '../datapath/lbmaps.js';
import type { MapRestore } from '../datapath/datapath.js';
import type { ConntrackCounts } from '../datapath/conntrack_list.js';
import type { BgpStatus } from '../bgp/announcer.js';
import type { SessionState } from '../bgp/client.js';
import type { L2Status } from '../l2/announcer.js';
import type { IpamStats } from '../ipam/controller.js';
import type { InformerStats } from '../sources/kubernetes/informer.js';
import type { Flow } from '../flows/flows.js';

/** What metrics read from the agent at scrape time. */
export interface MetricsSource {
  services(): ServiceView[];
  maps(): LBMaps | undefined;
  issueCount(): number;
  /** The BGP announcer's status, when BGP is configured. */
  bgp?(): BgpStatus | undefined;
  /** The layer 2 announcer's status, when L2 is configured. */
  l2?(): L2Status | undefined;
  /** What became of each pinned map when the datapath started (src/datapath/datapath.ts). */
  restored?(): MapRestore[];
  /** New flows the SYN-flood guard placed without conntrack state, all CPUs (Datapath.floodStateless). */
  floodStateless?(): bigint | undefined;
  /** Next-hop generation bumps since the agent started (NextHopWatcher.changes). */
  nextHopChanges?(): number | undefined;
  /** Flow events the datapath sent and the agent read, and those it kept back (rate limit, ring full); undefined when events are off. */
  flowEvents?(): { read: number; suppressed: bigint } | undefined;
  /** Whether the agent is ready, as `/readyz` answers. */
  ready?(): boolean;
  /** The programs attached: hook (`xdp`, `tc-egress`, `cgroup/connect4`, ...) and interface or cgroup. */
  attachments?(): Array<{ hook: string; interface?: string }>;
  /**
   * The conntrack table's totals (Datapath.conntrackCounts: one batched
   * walk of the table); left out without a datapath.
   */
  conntrack?(): Promise<ConntrackCounts>;
  /**
   * The datapath's sizes, with `conntrack`: entries the conntrack table
   * holds at most (`datapath.conntrackSize`), SNAT ports each remote
   * backend `IP:PORT` can be given (`datapath.snatPorts`, max - min + 1).
   */
  sizes?: { conntrackEntries: number; snatPortsPerBackend: number };
  /** The Kubernetes source's informers; left out with the file source. */
  informers?(): InformerStats[] | undefined;
  /** LB IPAM, when configured: whether this agent leads it, and its counters; undefined before it exists. */
  ipam?(): { leader: boolean; stats: IpamStats } | undefined;
}

/** The agent's metrics; `observeSync` is called after every sync, `observeFlow` for each flow event read. */
export interface AgentMetrics {
  registry: Registry;
  observeSync(seconds: number, ok: boolean): void;
  /** Count a flow event (enriched) in `xlb_flows_total` and, when dropped, `xlb_flow_drops_total`. */
  observeFlow(flow: Pick<Flow, 'verdict' | 'dropReason' | 'destination' | 'closed'>): void;
}

/**
 * How long a count of the conntrack table serves, ms: the gauges of one
 * scrape, and scrapes closer together (several Prometheus servers), share
 * one walk of the table (docs/operations.md, "Metrics", has its cost).
 */
export const CONNTRACK_COUNT_MAX_AGE_MS = 5000;

/** BGP session states (gobgpd's, RFC 4271 section 8.2.2), each a value of `xlb_bgp_session_state{state}`. */
const BGP_STATES: readonly SessionState[] = ['idle', 'connect', 'active', 'opensent', 'openconfirm', 'established', 'unknown'];

/** What `xlb_build_info` says: this build of xlb and the runtime it runs on. */
export interface BuildInfo {
  /** package.json's version. */
  version: string;
  /** The commit the image was built from (`XLB_REVISION`, a build argument of the Dockerfile), or `unknown`. */
  revision: string;
  /** process.versions.node. */
  nodejsVersion: string;
}

/**
 * This build's version, from xlb's package.json (src/util/package-root.ts:
 * the same from `src/`, `dist/` and the image); `unknown` when it cannot be
 * read. The revision comes from XLB_REVISION (the image's build argument).
 */
export function buildInfo(env: NodeJS.ProcessEnv = process.env): BuildInfo {
  const version = packageVersion();
  return { version, revision: env.XLB_REVISION || 'unknown', nodejsVersion: process.versions.node };
}

/** The `port` label of a service port: its name, or its first frontend's number for an unnamed port. */
const portLabel = (s: ServiceView): string => s.portName || String(s.frontends[0]?.port ?? '');

/**
 * `read` shared for `maxAgeMs`: calls within that time get the same
 * result, and a call while a read runs waits for it. A failed read is not
 * kept (the next call reads again) and resolves to undefined.
 */
function sharedFor<T>(read: () => Promise<T>, maxAgeMs: number): () => Promise<T | undefined> {
  let last: { at: number; value: Promise<T | undefined> } | undefined;
  return () => {
    const now = performance.now();
    if (last && now - last.at < maxAgeMs) return last.value;
    const value = read().catch(() => {
      last = undefined;
      return undefined;
    });
    last = { at: now, value };
    return value;
  };
}

/**
 * prom-client's default gauges that end in `_total`, which the exposition
 * format keeps for counters (`promtool check metrics` rejects them); each is
 * the sum over the `type` label of the gauge of the same name without it.
 */
const DEFAULT_GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * The process and runtime metrics under the names every Prometheus client
 * library and Node.js dashboard uses (`process_cpu_seconds_total`,
 * `process_resident_memory_bytes`, `nodejs_eventloop_lag_seconds`, ...),
 * without the gauges {@link DEFAULT_GAUGES_NAMED_TOTAL}.
 */
function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of DEFAULT_GAUGES_NAMED_TOTAL) registry.removeSingleMetric(name);
}

/** Create the registry and metrics. @param source read at each scrape */
export function createMetrics(source: MetricsSource): AgentMetrics {
  const registry = new Registry();
  registerProcessMetrics(registry);

  const syncDuration = new Histogram({
    name: 'xlb_sync_duration_seconds',
    help: 'Time to program one snapshot of services and endpoints into the datapath.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const syncErrors = new Counter({ name: 'xlb_sync_errors_total', help: 'Syncs that failed to write the datapath maps (retried).', registers: [registry] });
  const build = buildInfo();
  new Gauge({
    name: 'xlb_build_info',
    help: 'Always 1: the labels say which xlb (package version, the commit the image was built from) runs on which Node.js.',
    labelNames: ['version', 'revision', 'nodejs_version'],
    registers: [registry],
  }).set({ version: build.version, revision: build.revision, nodejs_version: build.nodejsVersion }, 1);
  if (source.ready) {
    const ready = source.ready.bind(source);
    new Gauge({
      name: 'xlb_agent_ready',
      help: 'Whether the agent is ready (1) or not (0), as /readyz answers: the source synced, the first full sync programmed, its next hops resolved.',
      registers: [registry],
      collect() {
        this.set(ready() ? 1 : 0);
      },
    });
  }
  new Gauge({
    name: 'xlb_datapath_map_restore',
    help: 'What became of each pinned map at this agent\'s start (1 per map): reused from the previous agent, created, migrated to a new layout or size, or started fresh (its entries lost).',
    labelNames: ['map', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of source.restored?.() ?? []) this.set({ map: r.map, outcome: r.outcome }, 1);
    },
  });
  if (source.attachments) {
    const attachments = source.attachments.bind(source);
    new Gauge({
      name: 'xlb_datapath_programs_attached',
      help: 'The datapath\'s programs attached, by hook (xdp, tc-egress, tc-ingress, cgroup/connect4, ...): one per interface or cgroup.',
      labelNames: ['hook'],
      registers: [registry],
      collect() {
        this.reset();
        const byHook = new Map<string, number>();
        for (const a of attachments()) byHook.set(a.hook, (byHook.get(a.hook) ?? 0) + 1);
        for (const [hook, n] of byHook) this.set({ hook }, n);
      },
    });
  }
  new Gauge({
    name: 'xlb_services',
    help: 'Service ports programmed into the datapath.',
    registers: [registry],
    collect() {
      this.set(source.services().filter((s) => s.serviceId > 0).length);
    },
  });
  new Gauge({
    name: 'xlb_backends',
    help: 'Backends of programmed services, by state.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of source.services()) for (const b of s.backends) this.inc({ state: b.state });
    },
  });
  new Gauge({
    name: 'xlb_input_issues',
    help: 'Input objects or fields skipped in the last sync because they were invalid or conflicting.',
    registers: [registry],
    collect() {
      this.set(source.issueCount());
    },
  });
  const labelNames = ['namespace', 'name', 'port'] as const;
  const perService = (field: 'packets' | 'bytes') =>
    function (this: Counter<(typeof labelNames)[number]>) {
      this.reset();
      const maps = source.maps();
      if (!maps) return;
      const svcs = source.services().filter((s) => s.serviceId > 0);
      // A port's two endpoint sets count separately in the datapath: summed here.
      const ids = svcs.flatMap((s) => [s.serviceIds.cluster, s.serviceIds.local].filter((id) => id > 0));
      const stats = maps.readServiceStats(ids);
      for (const s of svcs) {
        let n = 0;
        for (const id of [s.serviceIds.cluster, s.serviceIds.local]) n += id ? Number(stats.get(id)?.[field] ?? 0n) : 0;
        this.inc({ namespace: s.namespace, name: s.name, port: portLabel(s) }, n);
      }
    };
  new Counter({ name: 'xlb_service_packets_total', help: 'Packets the datapath load-balanced or reverse-translated, per service port.', labelNames, registers: [registry], collect: perService('packets') });
  new Counter({ name: 'xlb_service_bytes_total', help: 'Bytes the datapath load-balanced or reverse-translated, per service port.', labelNames, registers: [registry], collect: perService('bytes') });
  new Counter({
    name: 'xlb_drops_total',
    help: 'Packets the datapath dropped, by reason (enum xlb_drop_reason).',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      const maps = source.maps();
      if (!maps) return;
      for (const [reason, n] of Object.entries(maps.readDrops())) this.inc({ reason }, Number(n));
    },
  });
  if (source.floodStateless) {
    const read = source.floodStateless.bind(source);
    new Counter({
      name: 'xlb_datapath_flows_stateless_total',
      help: 'New flows placed without a conntrack entry because the SYN-flood guard\'s rate (datapath.synFloodGuard) was exceeded.',
      registers: [registry],
      collect() {
        this.reset();
        const n = read();
        if (n !== undefined) this.inc(Number(n));
      },
    });
  }
  if (source.flowEvents) {
    const read = source.flowEvents.bind(source);
    new Counter({
      name: 'xlb_flow_events_total',
      help: 'Flow events (a new flow placed, a packet dropped) read from the datapath (flows.eventsPerSecond).',
      registers: [registry],
      collect() {
        this.reset();
        const n = read();
        if (n) this.inc(n.read);
      },
    });
    new Counter({
      name: 'xlb_flow_events_suppressed_total',
      help: 'Flow events the datapath did not send: over flows.eventsPerSecond on a CPU, or the ring buffer full.',
      registers: [registry],
      collect() {
        this.reset();
        const n = read();
        if (n) this.inc(Number(n.suppressed));
      },
    });
  }
  const flows = registerFlowMetrics(registry, source);
  if (source.conntrack && source.sizes) registerConntrackMetrics(registry, source.conntrack.bind(source), source.sizes);
  if (source.nextHopChanges) {
    const read = source.nextHopChanges.bind(source);
    new Counter({
      name: 'xlb_datapath_next_hop_invalidations_total',
      help: 'Times the next hops cached in conntrack entries were invalidated (neighbour, route or link changes).',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read() ?? 0);
      },
    });
  }
  if (source.bgp) registerBgpMetrics(registry, source.bgp.bind(source));
  if (source.l2) registerL2Metrics(registry, source.l2.bind(source));
  if (source.informers) registerInformerMetrics(registry, source.informers.bind(source));
  if (source.ipam) registerIpamMetrics(registry, source.ipam.bind(source));
  return {
    registry,
    observeSync(seconds, ok) {
      syncDuration.observe(seconds);
      if (!ok) syncErrors.inc();
    },
    observeFlow: flows.observe,
  };
}

/**
 * Flows and drops per service port, counted from flow events as the agent
 * reads them: `xlb_flows_total{namespace,name,port,verdict}` and
 * `xlb_flow_drops_total{namespace,name,port,reason}`. Events are rate
 * limited (flows.eventsPerSecond a CPU; `xlb_flow_events_suppressed_total`
 * counts those not sent), so these are a sample under load; the datapath's
 * own `xlb_drops_total{reason}` counts every drop. An event whose service
 * is not known (a packet dropped before its service was found: truncated,
 * bad checksum) is not counted here, so every series names a service;
 * nor is a flow's close (flow-end), which is not a new flow.
 * Series of a service port no longer programmed are dropped at the next
 * scrape, so the label sets stay those of the programmed services.
 * @returns `observe`, to call for each event
 */
function registerFlowMetrics(registry: Registry, source: MetricsSource): { observe: AgentMetrics['observeFlow'] } {
  // Counts by service port key (namespace/name:port), then verdict or reason.
  const byVerdict = new Map<string, Map<string, number>>();
  const byReason = new Map<string, Map<string, number>>();
  const bump = (m: Map<string, Map<string, number>>, key: string, what: string) => {
    let inner = m.get(key);
    if (!inner) m.set(key, (inner = new Map()));
    inner.set(what, (inner.get(what) ?? 0) + 1);
  };
  const collectFrom = (m: Map<string, Map<string, number>>, label: 'verdict' | 'reason') =>
    function (this: Counter<'namespace' | 'name' | 'port' | 'verdict' | 'reason'>) {
      this.reset();
      const labelsOf = new Map(source.services().map((s) => [s.key, { namespace: s.namespace, name: s.name, port: portLabel(s) }]));
      for (const [key, counts] of m) {
        const labels = labelsOf.get(key);
        if (!labels) {
          m.delete(key);
          continue;
        }
        for (const [what, n] of counts) this.inc({ ...labels, [label]: what }, n);
      }
    };
  new Counter({
    name: 'xlb_flows_total',
    help: 'Flow events per service port and verdict: FORWARDED, a new flow placed; DROPPED, a packet of a new flow dropped. A sample under load: at most flows.eventsPerSecond events a second per CPU are sent (xlb_flow_events_suppressed_total counts the rest).',
    labelNames: ['namespace', 'name', 'port', 'verdict'],
    registers: [registry],
    collect: collectFrom(byVerdict, 'verdict'),
  });
  new Counter({
    name: 'xlb_flow_drops_total',
    help: 'Dropped packets per service port and reason, from flow events (sampled as xlb_flows_total is). xlb_drops_total counts every drop, by reason only, those before a service was known included.',
    labelNames: ['namespace', 'name', 'port', 'reason'],
    registers: [registry],
    collect: collectFrom(byReason, 'reason'),
  });
  return {
    observe(flow) {
      const key = flow.destination.service;
      // A flow's close is not a new flow.
      if (key === undefined || flow.closed) return;
      bump(byVerdict, key, flow.verdict);
      if (flow.verdict === 'DROPPED') bump(byReason, key, flow.dropReason ?? 'unknown');
    },
  };
}

/**
 * The conntrack table and SNAT ports, counted from the table at most once
 * every {@link CONNTRACK_COUNT_MAX_AGE_MS}: `xlb_conntrack_entries`,
 * `xlb_conntrack_max_entries`, `xlb_snat_ports_in_use`,
 * `xlb_snat_ports_in_use_busiest_backend`, `xlb_snat_ports_per_backend`.
 * A count that fails leaves the counted gauges at their last value.
 */
function registerConntrackMetrics(registry: Registry, count: () => Promise<ConntrackCounts>, sizes: NonNullable<MetricsSource['sizes']>): void {
  const counts = sharedFor(count, CONNTRACK_COUNT_MAX_AGE_MS);
  const counted = (name: string, help: string, pick: (c: ConntrackCounts) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const c = await counts();
        if (c) this.set(pick(c));
      },
    });
  counted('xlb_conntrack_entries', 'Flows in the conntrack table (counted at most every 5 s).', (c) => c.entries);
  new Gauge({ name: 'xlb_conntrack_max_entries', help: 'Flows the conntrack table holds at most (datapath.conntrackSize); past it the least recently used are evicted.', registers: [registry] }).set(sizes.conntrackEntries);
  counted('xlb_snat_ports_in_use', 'SNAT ports held by flows in the conntrack table, towards all remote backends (counted at most every 5 s).', (c) => c.snatPorts);
  counted(
    'xlb_snat_ports_in_use_busiest_backend',
    'SNAT ports held towards the remote backend IP:port that holds the most (counted at most every 5 s); new flows to it drop (reason snat_exhausted) as it nears xlb_snat_ports_per_backend.',
    (c) => c.snatPortsMaxPerBackend,
  );
  new Gauge({ name: 'xlb_snat_ports_per_backend', help: 'SNAT ports each remote backend IP:port can be given (datapath.snatPorts, max - min + 1).', registers: [registry] }).set(sizes.snatPortsPerBackend);
}

/**
 * BGP metrics, read from the announcer's status at scrape time:
 * `xlb_bgp_peer_up{peer}`, `xlb_bgp_session_state{peer,state}`,
 * `xlb_bgp_announced_prefixes`, `xlb_bgp_session_flaps_total{peer}`,
 * `xlb_bgp_gobgpd_restarts_total`.
 */
function registerBgpMetrics(registry: Registry, status: () => BgpStatus | undefined): void {
  new Gauge({
    name: 'xlb_bgp_session_state',
    help: 'The BGP session\'s state with each peer: 1 for the state it is in, 0 for the others (idle, connect, active, opensent, openconfirm, established; unknown before gobgpd answers).',
    labelNames: ['peer', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of status()?.peers ?? []) for (const state of BGP_STATES) this.set({ peer: p.address, state }, p.state === state ? 1 : 0);
    },
  });
  new Gauge({
    name: 'xlb_bgp_peer_up',
    help: 'Whether the BGP session with the peer is Established (1) or not (0).',
    labelNames: ['peer'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of status()?.peers ?? []) this.set({ peer: p.address }, p.state === 'established' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'xlb_bgp_announced_prefixes',
    help: 'VIP /32 prefixes gobgpd holds for this node, as desired.',
    registers: [registry],
    collect() {
      this.set(status()?.announced.length ?? 0);
    },
  });
  new Counter({
    name: 'xlb_bgp_session_flaps_total',
    help: 'Times a BGP session left Established since the agent started.',
    labelNames: ['peer'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of status()?.peers ?? []) this.inc({ peer: p.address }, p.flaps);
    },
  });
  new Counter({
    name: 'xlb_bgp_gobgpd_restarts_total',
    help: 'Times the supervised gobgpd exited and was restarted.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(status()?.counters.gobgpdRestarts ?? 0);
    },
  });
}

/**
 * Layer 2 metrics, read from the announcer's status at scrape time:
 * `xlb_l2_owned_vips`, `xlb_l2_vip_owned{vip,service}`,
 * `xlb_l2_takeovers_total`, `xlb_l2_peer_alive{peer}`,
 * `xlb_l2_gratuitous_arp_sent_total`.
 */
function registerL2Metrics(registry: Registry, status: () => L2Status | undefined): void {
  new Gauge({
    name: 'xlb_l2_vip_owned',
    help: 'For each VIP this node would announce: 1 while this node owns it (answers ARP for it), else 0. Over all nodes, a VIP whose maximum is 0 has no owner; one whose sum is above 1 has two.',
    labelNames: ['vip', 'service'],
    registers: [registry],
    collect() {
      this.reset();
      for (const v of status()?.vips ?? []) this.set({ vip: v.vip, service: v.service }, v.local ? 1 : 0);
    },
  });
  new Gauge({
    name: 'xlb_l2_owned_vips',
    help: 'VIPs this node answers ARP for.',
    registers: [registry],
    collect() {
      this.set(status()?.counters.ownedVips ?? 0);
    },
  });
  new Counter({
    name: 'xlb_l2_takeovers_total',
    help: 'Times this node took a VIP over (became its owner).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(status()?.counters.takeoversTotal ?? 0);
    },
  });
  new Gauge({
    name: 'xlb_l2_peer_alive',
    help: 'Whether a layer 2 peer is alive by its heartbeats (1) or not (0).',
    labelNames: ['peer'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of status()?.peers ?? []) this.set({ peer: p.name }, p.alive ? 1 : 0);
    },
  });
  new Counter({
    name: 'xlb_l2_gratuitous_arp_sent_total',
    help: 'Gratuitous ARP frames sent on taking VIPs over.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(status()?.counters.garpSent ?? 0);
    },
  });
}

/**
 * Kubernetes informer metrics, per resource (Service, EndpointSlice,
 * Node), read at scrape time: `xlb_kubernetes_informer_synced`,
 * `xlb_kubernetes_informer_relists_total` (lists after the first: after a
 * 410 Gone, or to recover from an error), `..._restarts_total` (list or
 * watch failures, each restarted after backoff), `..._events_total`.
 */
function registerInformerMetrics(registry: Registry, informers: () => InformerStats[] | undefined): void {
  const per = (name: string, help: string, value: (i: InformerStats) => number, kind: 'gauge' | 'counter') => {
    const collect = function (this: Gauge<'resource'> | Counter<'resource'>) {
      this.reset();
      for (const i of informers() ?? []) {
        if (this instanceof Gauge) this.set({ resource: i.kind }, value(i));
        else this.inc({ resource: i.kind }, value(i));
      }
    };
    if (kind === 'gauge') new Gauge({ name, help, labelNames: ['resource'], registers: [registry], collect });
    else new Counter({ name, help, labelNames: ['resource'], registers: [registry], collect });
  };
  per('xlb_kubernetes_informer_synced', 'Whether the informer has listed its resource once (1) or not yet (0).', (i) => (i.synced ? 1 : 0), 'gauge');
  per('xlb_kubernetes_informer_relists_total', 'Lists of the resource after the first: after 410 Gone (the watch fell too far behind) or to recover from an error.', (i) => Math.max(0, i.lists - 1), 'counter');
  per('xlb_kubernetes_informer_restarts_total', 'Times listing or watching the resource failed and was restarted after backoff.', (i) => i.restarts, 'counter');
  per('xlb_kubernetes_informer_events_total', 'Objects added, updated or deleted as the informer saw them (lists and watch events).', (i) => i.events, 'counter');
}

/**
 * LB IPAM metrics: `xlb_ipam_leader` on every agent with `ipam`; pool
 * usage and unassigned services only from the leader, the one agent that
 * assigns (the others' figures would be stale): `xlb_ipam_pool_addresses{pool}`,
 * `xlb_ipam_pool_addresses_allocated{pool}` (no series on the others),
 * `xlb_ipam_services_unassigned` (0 on the others, so a sum over agents is the leader's).
 */
function registerIpamMetrics(registry: Registry, ipam: () => { leader: boolean; stats: IpamStats } | undefined): void {
  new Gauge({
    name: 'xlb_ipam_leader',
    help: 'Whether this agent holds the IPAM Lease and assigns LoadBalancer addresses (1) or not (0).',
    registers: [registry],
    collect() {
      this.set(ipam()?.leader ? 1 : 0);
    },
  });
  const leading = () => {
    const i = ipam();
    return i?.leader && i.stats.running ? i.stats : undefined;
  };
  new Gauge({
    name: 'xlb_ipam_pool_addresses',
    help: 'Addresses in each LB IPAM pool (from the leader only).',
    labelNames: ['pool'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of leading()?.pools ?? []) this.set({ pool: p.pool }, p.size);
    },
  });
  new Gauge({
    name: 'xlb_ipam_pool_addresses_allocated',
    help: 'Addresses of each LB IPAM pool assigned to services (from the leader only).',
    labelNames: ['pool'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of leading()?.pools ?? []) this.set({ pool: p.pool }, p.used);
    },
  });
  new Gauge({
    name: 'xlb_ipam_services_unassigned',
    help: 'LoadBalancer services LB IPAM manages that have no address (pool exhausted, address taken or outside every pool); 0 on the agents that do not lead.',
    registers: [registry],
    collect() {
      this.set(Object.keys(leading()?.failed ?? {}).length);
    },
  });
}

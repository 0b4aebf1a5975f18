/**
 * Prometheus metrics of the agent (prom-client). One registry, passed in;
 * names carry their unit (`_seconds`, `_bytes`, `_total`) and every metric has
 * help text. Datapath counters (per-CPU BPF maps) are read at scrape time, so
 * a scrape always shows the kernel's current figures.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ServiceView } from '../services/controller.js';
import type { LBMaps } from '../datapath/lbmaps.js';
import type { MapRestore } from '../datapath/datapath.js';
import type { BgpStatus } from '../bgp/announcer.js';
import type { L2Status } from '../l2/announcer.js';

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
}

/** The agent's metrics; `observeSync` is called after every sync. */
export interface AgentMetrics {
  registry: Registry;
  observeSync(seconds: number, ok: boolean): void;
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
        this.inc({ namespace: s.namespace, name: s.name, port: s.portName || String(s.frontends[0]?.port ?? '') }, n);
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
  return {
    registry,
    observeSync(seconds, ok) {
      syncDuration.observe(seconds);
      if (!ok) syncErrors.inc();
    },
  };
}

/**
 * BGP metrics, read from the announcer's status at scrape time:
 * `xlb_bgp_peer_up{peer}`, `xlb_bgp_announced_prefixes`,
 * `xlb_bgp_session_flaps_total{peer}`, `xlb_bgp_gobgpd_restarts_total`.
 */
function registerBgpMetrics(registry: Registry, status: () => BgpStatus | undefined): void {
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
 * `xlb_l2_owned_vips`, `xlb_l2_takeovers_total`, `xlb_l2_peer_alive{peer}`,
 * `xlb_l2_gratuitous_arp_sent_total`.
 */
function registerL2Metrics(registry: Registry, status: () => L2Status | undefined): void {
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

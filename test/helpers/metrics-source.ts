/**
 * A {@link MetricsSource} with every optional part present (datapath
 * counters, conntrack counts, BGP, layer 2, Kubernetes informers, LB IPAM)
 * and figures the tests can change, for checking the exposition
 * (`promtool check metrics`) and the names dashboards and alert rules may
 * use. The BGP, L2 and IPAM statuses hold only the fields metrics read.
 */
import type { Registry } from 'prom-client';
import type { MetricsSource } from '../../src/metrics/metrics.js';
import type { ServiceView } from '../../src/services/controller.js';
import type { LBMaps } from '../../src/datapath/lbmaps.js';
import type { ConntrackCounts } from '../../src/datapath/conntrack_list.js';
import type { BgpStatus } from '../../src/bgp/announcer.js';
import type { L2Status } from '../../src/l2/announcer.js';
import type { IpamStats } from '../../src/ipam/controller.js';
import type { InformerStats } from '../../src/sources/kubernetes/informer.js';

/** A programmed service port as the metrics read it (key `namespace/name:port`). */
export function serviceView(namespace: string, name: string, portName: string, serviceId: number, port = 80): ServiceView {
  return {
    key: `${namespace}/${name}:${portName}`,
    namespace,
    name,
    portName,
    protocol: 'TCP',
    serviceId,
    serviceIds: { cluster: serviceId, local: 0 },
    frontends: [{ port }],
    backends: [{ state: 'ready' }, { state: 'ready' }, { state: 'terminating' }],
  } as unknown as ServiceView;
}

/** An informer's counters; `lists` 1 means the first list only. */
export function informer(kind: string, lists: number, restarts = 0): InformerStats {
  return { kind, synced: lists > 0, lists, listPages: lists, watches: lists, restarts, bookmarks: 0, events: 10 * lists, invalid: 0, resourceVersion: '1', lastListReceivedAt: 0, lastEventAt: 0 };
}

/** What the fake source answers; change a field and scrape again. */
export interface FakeFigures {
  services: ServiceView[];
  ready: boolean;
  conntrack: ConntrackCounts;
  /** Conntrack counts made (each one walk of the table in the agent). */
  conntrackCounts: number;
  bgpPeers: Array<{ address: string; state: BgpStatus['peers'][number]['state']; flaps: number }>;
  l2Vips: Array<{ vip: string; service: string; local: boolean }>;
  informers: InformerStats[];
  ipamLeader: boolean;
  pools: IpamStats['pools'];
  unassigned: Record<string, string>;
}

/** A source with every optional part and its figures. */
export function fakeMetricsSource(): { source: MetricsSource; figures: FakeFigures } {
  const figures: FakeFigures = {
    services: [serviceView('default', 'web', 'http', 1), serviceView('default', 'dns', '', 2, 53)],
    ready: true,
    conntrack: { entries: 1200, snatPorts: 300, snatBackends: 3, snatPortsMaxPerBackend: 150 },
    conntrackCounts: 0,
    bgpPeers: [{ address: '198.18.0.1', state: 'established', flaps: 1 }, { address: '198.18.0.2', state: 'active', flaps: 0 }],
    l2Vips: [{ vip: '192.0.2.10', service: 'default/web', local: true }, { vip: '192.0.2.11', service: 'default/dns', local: false }],
    informers: [informer('Service', 1), informer('EndpointSlice', 3, 2), informer('Node', 1)],
    ipamLeader: true,
    pools: [{ pool: 'default', size: 254, used: 12 }],
    unassigned: { 'default/big': 'pool default is exhausted' },
  };
  const maps = {
    readServiceStats: (ids: number[]) => new Map(ids.map((id) => [id, { packets: 10n * BigInt(id), bytes: 1000n * BigInt(id) }])),
    readDrops: () => ({ no_backend: 3n, snat_exhausted: 0n }),
  } as unknown as LBMaps;
  const source: MetricsSource = {
    services: () => figures.services,
    maps: () => maps,
    issueCount: () => 2,
    restored: () => [{ map: 'xlb_conntrack', outcome: 'reused' }] as never,
    floodStateless: () => 0n,
    nextHopChanges: () => 4,
    flowEvents: () => ({ read: 7, suppressed: 1n }),
    ready: () => figures.ready,
    conntrack: async () => {
      figures.conntrackCounts++;
      return { ...figures.conntrack };
    },
    sizes: { conntrackEntries: 131072, snatPortsPerBackend: 4536 },
    bgp: () =>
      ({
        peers: figures.bgpPeers.map((p) => ({ address: p.address, asn: 64512, state: p.state, flaps: p.flaps, prefixes: { received: 0, accepted: 0, advertised: 1 }, notifications: { received: 0, sent: 0 } })),
        announced: [{ vip: '192.0.2.10', service: 'default/web', nextHop: '198.18.0.11' }],
        counters: { bgpStarts: 1, gobgpdRestarts: 0, pathsAdded: 1, pathsWithdrawn: 0, peerFlaps: 1, reconcileFailures: 0 },
      }) as unknown as BgpStatus,
    l2: () =>
      ({
        vips: figures.l2Vips.map((v) => ({ ...v, owner: v.local ? 'node1' : 'node2', interfaces: [], since: null })),
        peers: [{ name: 'node2', alive: true }],
        counters: { ownedVips: figures.l2Vips.filter((v) => v.local).length, takeoversTotal: 1, garpSent: 3, garpFailed: 0, heartbeatsSent: 0, heartbeatsReceived: 0, heartbeatsRejected: 0, heartbeatSendErrors: 0, mapWriteFailures: 0 },
      }) as unknown as L2Status,
    informers: () => figures.informers,
    ipam: () => ({
      leader: figures.ipamLeader,
      stats: { running: figures.ipamLeader, assigned: 12, failed: figures.unassigned, decisions: 13, statusWrites: 12, writeErrors: 0, pools: figures.pools },
    }),
  };
  return { source, figures };
}

/**
 * The sample names a Prometheus server stores from `registry`: each
 * metric's name, and for histograms and summaries the `_bucket`, `_sum`
 * and `_count` series (and summaries' quantiles under the name itself).
 */
export function exportedNames(registry: Registry): Set<string> {
  return new Set(exportedLabels(registry).keys());
}

/**
 * The label names each metric declares in `registry`, by the sample names
 * of {@link exportedNames} (histogram and summary series add `le` to
 * `_bucket`, `quantile` to the name itself).
 */
export function exportedLabels(registry: Registry): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const m of registry.getMetricsAsArray()) {
    const declared = (m as unknown as { labelNames?: string[] }).labelNames ?? [];
    const type = (m as unknown as { type?: string }).type;
    const name = (m as unknown as { name: string }).name;
    if (type === 'histogram') {
      out.set(name, new Set(declared));
      out.set(`${name}_bucket`, new Set([...declared, 'le']));
      for (const s of ['_sum', '_count']) out.set(`${name}${s}`, new Set(declared));
    } else if (type === 'summary') {
      out.set(name, new Set([...declared, 'quantile']));
      for (const s of ['_sum', '_count']) out.set(`${name}${s}`, new Set(declared));
    } else out.set(name, new Set(declared));
  }
  return out;
}

/**
 * The service controller: turns a snapshot of the cluster (services and
 * EndpointSlices) into the datapath's frontends, backends and Maglev lookup
 * tables, diffs that against what it has applied, and writes only the
 * difference (kube-proxy's change-tracker-and-sync, Cilium's reconciler).
 *
 * Identity is stable: a service port keeps its service ID and each of its
 * backends (`IP:port/proto` within that service port) its backend ID for as
 * long as they exist, so conntrack entries stay valid across syncs and a table is rebuilt only when its
 * backend set changes. IDs are not reused until the allocator wraps, so a
 * flow pinned to a removed backend cannot land on a new one by accident.
 *
 * Write order keeps the datapath consistent at every step: new backends, then
 * tables, then frontends; removals in the reverse order.
 */
import type { ClusterState, InputIssue, NodeInfo } from '../model/types.js';
import { type BackendValue, type FrontendKey, type LBMaps, type RestoredMaps, type ServiceValue } from '../datapath/lbmaps.js';
import { frontendKeyString } from '../datapath/lbmaps.js';
import { enums, IPPROTO } from '../datapath/codec.js';
import { ipToU32 } from '../util/ip.js';
import { buildMaglevTable, slotCount, startMaglevTables, startMaglevPool, tableSizeFor, type MaglevBackend, type MaglevSizing } from '../maglev/index.js';
import { positions, Translator } from './translate.js';
import type { DesiredBackend, DesiredFrontend, DesiredService, EndpointSet, TopologyMode } from './types.js';
import { IdAllocator } from './ids.js';
import { DEFAULT_AFFINITY_TIMEOUT_SECONDS } from '../sources/normalize.js';

/** Largest service ID: sizes of xlb_maglev and xlb_service_stats. */
export const MAX_SERVICE_ID = 131071;
/** Largest backend ID: size of xlb_backends. */
export const MAX_BACKEND_ID = 262143;

/** A backend of a service as the API shows it. */
export interface BackendView {
  id: number;
  addr: string;
  port: number;
  nodeName?: string;
  local: boolean;
  /** ready: takes new flows; terminating/serving: keeps existing flows only; not-ready. */
  state: 'ready' | 'serving-terminating' | 'terminating' | 'not-ready';
  /** Whether some Maglev table of the port includes it (new flows may go to it). */
  inTable: boolean;
  /** In the cluster set (kube-proxy's clusterEndpoints). */
  inCluster: boolean;
  /** In the local set (kube-proxy's localEndpoints). */
  inLocal: boolean;
  /** Fraction of the cluster set's Maglev slots (0..1). */
  share: number;
  /** Fraction of the local set's Maglev slots (0..1). */
  localShare: number;
}

/** Where new flows to a frontend go, from one side of the cluster's edge. */
export interface FrontendPathView {
  /** The endpoint set they choose from. */
  set: EndpointSet;
  /** That set's service ID (its Maglev table, affinity and counters). */
  serviceId: number;
  /** The endpoints that take new flows, `addr:port`; empty: connections are refused (no endpoint anywhere) or dropped. */
  endpoints: string[];
}

/** A frontend of a service port as programmed. */
export interface FrontendView {
  addr: string;
  port: number;
  kind: string;
  /** Programmed in the datapath. */
  served: boolean;
  /** New flows from outside the cluster (XDP); absent when the frontend is not served to them (ClusterIP, loopback node ports). */
  fromOutside?: FrontendPathView;
  /** New flows from pods and the node's own processes (socket hooks, tc on pod interfaces). */
  fromInside: FrontendPathView;
}

/** The settings of a service that decide where its flows go. */
export interface ServiceSettingsView {
  type: DesiredService['type'];
  externalTrafficPolicy: 'Cluster' | 'Local';
  internalTrafficPolicy: 'Cluster' | 'Local';
  sessionAffinity: 'None' | 'ClientIP';
  /** Seconds, with ClientIP affinity. */
  sessionAffinityTimeoutSeconds?: number;
  loadBalancerSourceRanges: string[];
  /** Topology applied to the cluster set ('' none). */
  topology: TopologyMode;
  trafficDistribution?: string;
  healthCheckNodePort?: number;
  /** Some endpoint anywhere takes flows (else connections are refused). */
  hasAnyEndpoints: boolean;
}

/** One service port as programmed, for the API and the CLI. */
export interface ServiceView {
  key: string;
  namespace: string;
  name: string;
  portName: string;
  protocol: 'TCP' | 'UDP';
  /** The cluster set's service ID, else the local set's; 0 when the port is not served. */
  serviceId: number;
  /** Service IDs of the two sets (0: the set is not in use). */
  serviceIds: { cluster: number; local: number };
  frontends: FrontendView[];
  backends: BackendView[];
  /** Maglev table size M (prime) of the cluster set, 0 when it has no table. */
  tableSize: number;
  /** Maglev table size of the local set, 0 when it has no table. */
  localTableSize: number;
  settings: ServiceSettingsView;
}

/** What one sync did. */
export interface SyncResult {
  services: number;
  backends: number;
  frontends: number;
  /** Map writes by kind, to see that only the difference was written. */
  writes: { frontends: number; frontendDeletes: number; backends: number; backendDeletes: number; tables: number; tableDeletes: number; sourceRanges: number };
  issues: InputIssue[];
  durationMs: number;
}

/** What one service port wants in the maps. */
interface PortWant {
  /** The translated port it was made from. */
  desired: DesiredService;
  /** Service ID of the cluster set, 0 when no frontend uses it. */
  clusterId: number;
  /** Service ID of the local set, 0 when no frontend uses it. */
  localId: number;
  /**
   * Its frontends with their key strings (`fk`), each once (the translator
   * settles one frontend per address, port and protocol of a port). An
   * array: a port has a handful, and a Map per port was 10,000 Maps at
   * 10,000 services.
   */
  frontends: Array<{ fk: string; key: FrontendKey; service: ServiceValue }>;
  /**
   * Backend ID of each of `desired.backends`, in that order (empty when the
   * port is not served). An ID's allocator name is (port key, backend name).
   */
  backendIds: number[];
  /** The `xlb_backends` flags of each (XLB_BE_F_*), in the same order. */
  backendFlags: number[];
  /** The Maglev table of each set in use that has a backend, by service ID. */
  tables: Array<{ serviceId: number; inputs: TableInputs }>;
  /** loadBalancerSourceRanges to enforce, sorted, and the service IDs (LoadBalancer frontends' outside sets) they apply to. */
  ranges: string[];
  rangeIds: number[];
}

/**
 * What a Maglev table is built from: M and the backends in table-input
 * order (the port's backends are sorted by address and port, so the same
 * set always comes in the same order). A table is rebuilt only when these
 * change.
 */
interface TableInputs {
  size: number;
  inputs: MaglevBackend[];
}

/** A table in the maps: its inputs and the slots each backend ID got. */
interface AppliedTable extends TableInputs {
  /** Slots per backend ID, flat (pool.ts's MaglevBuilt.counts). */
  counts: number[];
}

const protoNumber = (p: 'TCP' | 'UDP'): number => IPPROTO[p];

function sameTable(a: TableInputs | undefined, b: TableInputs): boolean {
  if (!a || a.size !== b.size || a.inputs.length !== b.inputs.length) return false;
  for (let i = 0; i < b.inputs.length; i++) {
    const x = a.inputs[i];
    const y = b.inputs[i];
    if (x.id !== y.id || x.weight !== y.weight || x.name !== y.name) return false;
  }
  return true;
}

/**
 * The `xlb_backends` entries written, by backend ID, in flat arrays (IDs
 * are at most MAX_BACKEND_ID): 100,000 backends are then no 100,000
 * objects for the garbage collector to walk.
 */
class AppliedBackends {
  private readonly addr = new Uint32Array(MAX_BACKEND_ID + 1);
  private readonly port = new Uint16Array(MAX_BACKEND_ID + 1);
  private readonly proto = new Uint8Array(MAX_BACKEND_ID + 1);
  private readonly flags = new Uint8Array(MAX_BACKEND_ID + 1);
  private readonly owner = new Uint32Array(MAX_BACKEND_ID + 1);
  private readonly present = new Uint8Array(MAX_BACKEND_ID + 1);
  size = 0;

  /** Whether backend `id` is written with exactly these values (addr: IPv4 in host order). */
  holds(id: number, addr: number, port: number, proto: number, flags: number, owner: number): boolean {
    return this.present[id] === 1 && this.port[id] === port && this.proto[id] === proto && this.flags[id] === flags && this.addr[id] === addr && this.owner[id] === owner;
  }

  /** Record that backend `id` holds these values. */
  record(id: number, addr: number, port: number, proto: number, flags: number, owner: number): void {
    if (!this.present[id]) this.size++;
    this.present[id] = 1;
    this.addr[id] = addr;
    this.port[id] = port;
    this.proto[id] = proto;
    this.flags[id] = flags;
    this.owner[id] = owner;
  }

  delete(id: number): void {
    if (this.present[id]) this.size--;
    this.present[id] = 0;
  }
}

/** Whether a backend is in the Maglev table of `set` (takes new flows there). */
const inSet = (b: DesiredBackend, set: EndpointSet): boolean => (set === 'cluster' ? b.inCluster : b.inLocal) && b.weight > 0;

/** The service IDs a port uses (one or two). */
const idsOf = (w: PortWant): number[] => (w.clusterId ? (w.localId ? [w.clusterId, w.localId] : [w.clusterId]) : w.localId ? [w.localId] : []);

/** Allocator name of a port's local set (its cluster set is named by the port key). */
const localName = (key: string): string => `${key}#local`;

function backendState(b: DesiredBackend): BackendView['state'] {
  if (b.ready) return 'ready';
  if (b.serving && b.terminating) return 'serving-terminating';
  if (b.terminating) return 'terminating';
  return 'not-ready';
}

/**
 * The controller of one node. Not thread-safe; the agent serialises syncs.
 */
export class ServiceController {
  private readonly serviceIds = new IdAllocator(MAX_SERVICE_ID);
  private readonly backendIds = new IdAllocator(MAX_BACKEND_ID);
  private readonly appliedFrontends = new Map<string, { key: FrontendKey; service: ServiceValue }>();
  private readonly appliedBackends = new AppliedBackends();
  private readonly appliedTables = new Map<number, AppliedTable>();
  /** loadBalancerSourceRanges written per service ID, as a sorted, joined signature. */
  private readonly appliedRanges = new Map<number, string>();
  /** Which port a frontend in the maps belongs to (a frontend may move between ports in one sync). */
  private readonly frontendOwner = new Map<string, string>();
  /** What each service port wants (and has in the maps), by port key. */
  private readonly ports = new Map<string, PortWant>();
  /** Ports whose last sync failed half-way: redone on the next sync even if unchanged. */
  private readonly failed = new Set<string>();
  private readonly translator: Translator;
  /**
   * Views are built when asked for (the API, metrics), not by every sync:
   * at 10,000 services they are 110,000 objects nobody may read. Cached per
   * port until the port changes; the list until any port changes.
   */
  private readonly viewCache = new Map<string, ServiceView>();
  private viewList?: ServiceView[];
  /** Index of each port key in the last desired list; how many ports are served. */
  private position = new Map<string, number>();
  private served = 0;
  /** Service IDs allocated in this sync, whose counters are zeroed in one batch. */
  private statsToReset: number[] = [];
  private lastDesired: DesiredService[] = [];
  private lastIssues: InputIssue[] = [];
  /** An earlier agent's maps, until the first sync has adopted them. */
  private restored?: RestoredMaps;

  constructor(
    private readonly maps: LBMaps,
    private readonly node: NodeInfo,
    private readonly sizing: MaglevSizing,
  ) {
    this.translator = new Translator(node);
    // Table builds of large syncs use every core; the threads take tens of
    // ms to start, so they start now rather than in the first sync.
    startMaglevPool();
    const kept = maps.restore?.();
    if (kept) this.takeOver(kept);
  }

  /**
   * Take over what an earlier agent left in the maps (a restart): it is the
   * applied state the first sync diffs against, so that sync writes only
   * the difference, and every ID in use is held until that sync gives it
   * back to the name it had (see adopt) or removes its entries (see
   * dropUnadopted). Until then the datapath serves with these entries as
   * they are.
   */
  private takeOver(kept: RestoredMaps): void {
    this.restored = kept;
    for (const f of kept.frontends) {
      const fk = frontendKeyString(f.key);
      this.appliedFrontends.set(fk, f);
      this.serviceIds.reserve(f.service.id);
      this.serviceIds.reserve(f.service.internal_id ?? 0);
    }
    const byId = new Map<number, { addr: number; port: number; proto: number; name: string }>();
    for (const { id, backend: b } of kept.backends) {
      const addr = ipToU32(b.addr);
      this.appliedBackends.record(id, addr, b.port, b.proto, b.flags, b.service_id ?? 0);
      this.backendIds.reserve(id);
      this.serviceIds.reserve(b.service_id ?? 0);
      byId.set(id, { addr, port: b.port, proto: b.proto, name: `${b.addr}:${b.port}/${b.proto === IPPROTO.UDP ? 'UDP' : 'TCP'}` });
    }
    for (const [serviceId, table] of kept.tables) {
      this.serviceIds.reserve(serviceId);
      // The inputs the controller would build the same table from: its backends in address, port order.
      const ids = [...new Set(table)].filter((id) => byId.has(id));
      ids.sort((a, b) => byId.get(a)!.addr - byId.get(b)!.addr || byId.get(a)!.port - byId.get(b)!.port);
      const counts: number[] = [];
      const slots = new Map<number, number>();
      for (const id of table) slots.set(id, (slots.get(id) ?? 0) + 1);
      for (const id of ids) counts.push(id, slots.get(id) ?? 0);
      this.appliedTables.set(serviceId, { size: table.length, inputs: ids.map((id) => ({ name: byId.get(id)!.name, id, weight: 1 })), counts });
    }
    for (const [serviceId, cidrs] of kept.sourceRanges) {
      this.serviceIds.reserve(serviceId);
      this.appliedRanges.set(serviceId, [...cidrs].sort().join(','));
    }
  }

  /**
   * Give the IDs an earlier agent used back to the names they had: a port's
   * set gets the service ID its frontends had for that set (the frontend's
   * outside and inside IDs, with the EXT_LOCAL and INT_LOCAL flags saying
   * which set each is), and its backends the IDs whose entries name that
   * service as their owner and the same address, port and protocol. So a
   * restarted agent keeps every conntrack entry valid.
   */
  private adopt(services: readonly DesiredService[]): void {
    const kept = this.restored!;
    const frontends = new Map(kept.frontends.map((f) => [frontendKeyString(f.key), f.service]));
    const F = enums.xlb_service_flags;
    const owned = new Map<number, Array<{ id: number; name: string }>>();
    for (const { id, backend: b } of kept.backends) {
      const list = owned.get(b.service_id ?? 0) ?? [];
      list.push({ id, name: `${b.addr}:${b.port}/${b.proto === IPPROTO.UDP ? 'UDP' : 'TCP'}` });
      owned.set(b.service_id ?? 0, list);
    }
    for (const d of services) {
      const ids: Record<EndpointSet, number> = { cluster: 0, local: 0 };
      for (const f of d.frontends) {
        const had = frontends.get(frontendKeyString({ addr: f.addr, port: f.port, proto: protoNumber(d.protocol) }));
        if (!had) continue;
        if (f.external && had.id) ids[had.flags & F.XLB_SVC_F_EXT_LOCAL ? 'local' : 'cluster'] ||= had.id;
        if (had.internal_id) ids[had.flags & F.XLB_SVC_F_INT_LOCAL ? 'local' : 'cluster'] ||= had.internal_id;
      }
      if (ids.cluster) this.serviceIds.claim('', d.key, ids.cluster);
      if (ids.local) this.serviceIds.claim('', localName(d.key), ids.local);
      const owner = ids.cluster || ids.local;
      if (!owner) continue;
      const names = new Set(d.backends.map((b) => b.name));
      for (const b of owned.get(owner) ?? []) if (names.has(b.name)) this.backendIds.claim(d.key, b.name, b.id);
    }
  }

  /**
   * After the first sync over restored maps: remove what no service claimed
   * (frontends of services deleted while no agent ran, their tables, source
   * ranges and backends) and free their IDs.
   */
  private dropUnadopted(writes: SyncResult['writes']): void {
    const frontends: string[] = [];
    for (const fk of this.appliedFrontends.keys()) if (!this.frontendOwner.has(fk)) frontends.push(fk);
    this.maps.deleteFrontends(frontends.map((fk) => this.appliedFrontends.get(fk)!.key));
    for (const fk of frontends) this.appliedFrontends.delete(fk);
    writes.frontendDeletes += frontends.length;
    const serviceIds = this.serviceIds.takeUnclaimed();
    const tables = serviceIds.filter((id) => this.appliedTables.has(id));
    this.maps.deleteMaglevTables(tables);
    for (const id of tables) this.appliedTables.delete(id);
    writes.tableDeletes += tables.length;
    for (const id of serviceIds) {
      if (!this.appliedRanges.has(id)) continue;
      this.maps.putSourceRanges(id, []);
      this.appliedRanges.delete(id);
      writes.sourceRanges++;
    }
    const backends = this.backendIds.takeUnclaimed();
    this.maps.deleteBackends(backends);
    for (const id of backends) this.appliedBackends.delete(id);
    writes.backendDeletes += backends.length;
    this.restored = undefined;
  }

  /**
   * This node changed (its addresses: NodePort frontends; its labels: the
   * zone of topology hints). The next sync translates every service against
   * it and writes the difference.
   */
  setNode(node: NodeInfo): void {
    this.translator.setNode(node);
  }

  /**
   * The port key (`namespace/name:port`) whose cluster or local set has
   * service ID `id`, as last programmed; undefined for none. An index built
   * on the first question after a sync (flow events ask for every event).
   */
  serviceKeyOf(id: number): string | undefined {
    if (!this.keyById) {
      this.keyById = new Map();
      for (const [key, w] of this.ports) {
        if (w.clusterId) this.keyById.set(w.clusterId, key);
        if (w.localId) this.keyById.set(w.localId, key);
      }
    }
    return this.keyById.get(id);
  }
  /**
   * The size M of the Maglev lookup table programmed for service ID `id`
   * (cluster or local set), or undefined when it has none: a flow's slot is
   * its hash modulo M.
   */
  tableSizeOf(id: number): number | undefined {
    return this.appliedTables.get(id)?.size;
  }

  private keyById?: Map<number, string>;

  /** The services as last programmed, sorted by key. */
  services(): ServiceView[] {
    if (!this.viewList) this.viewList = this.lastDesired.map((d) => this.viewOf(d.key));
    return this.viewList;
  }

  /**
   * The translated service ports of the last successful sync (traffic
   * policies and every backend's readiness and locality): what announcers
   * decide from.
   */
  desiredServices(): DesiredService[] {
    return this.lastDesired;
  }

  /** Problems found in the input of the last sync (objects skipped, conflicts). */
  issues(): InputIssue[] {
    return this.lastIssues;
  }

  /**
   * Program `state` (plus issues the source already found). Throws only when
   * a map write fails; what was written stays recorded, so the next sync
   * writes the remaining difference.
   *
   * Work is proportional to what changed: the translator hands back the
   * same DesiredService object for a port whose inputs did not change
   * (src/services/translate.ts), and such a port is skipped whole.
   */
  sync(state: ClusterState, sourceIssues: InputIssue[] = []): SyncResult {
    const t0 = performance.now();
    const { services, issues, changed, structural } = this.translator.run(state);
    const writes = { frontends: 0, frontendDeletes: 0, backends: 0, backendDeletes: 0, tables: 0, tableDeletes: 0, sourceRanges: 0 };
    // The first sync over an earlier agent's maps: its IDs go back to their names first.
    const adopting = this.restored !== undefined;
    if (adopting) this.adopt(services);

    // 1. The ports to redo: new or changed objects, and ports that are gone.
    // Same ports in the same order as the last sync, nothing failed: only the
    // changed ones (work proportional to the change). Otherwise compare all.
    const fast = !structural && !this.failed.size && this.lastDesired.length === services.length && this.position.size === services.length;
    const redo: Array<{ key: string; want?: PortWant; desired?: DesiredService; old?: PortWant }> = [];
    if (fast) {
      for (const key of changed) {
        const d = services[this.position.get(key)!];
        const cur = this.ports.get(key);
        if (cur && cur.desired === d) continue;
        redo.push({ key, desired: d, old: cur });
      }
    } else {
      // Which ports are gone: only when there are ports to lose (not on a first sync).
      const present = this.ports.size ? new Set<string>() : undefined;
      // Indexed loops in sync() and wantOf(): a for...of allocates an
      // iterator result per step until V8 has optimized the loop, and a
      // first sync runs them cold (see translate.ts, setNewFlowBackends).
      for (let i = 0; i < services.length; i++) {
        const d = services[i];
        present?.add(d.key);
        const cur = this.ports.get(d.key);
        if (cur && cur.desired === d && !this.failed.has(d.key)) continue;
        redo.push({ key: d.key, desired: d, old: cur });
      }
      if (present) for (const [key, cur] of this.ports) if (!present.has(key)) redo.push({ key, old: cur });
    }
    for (let i = 0; i < redo.length; i++) {
      const r = redo[i];
      if (r.desired) r.want = this.wantOf(r.desired);
    }

    // 2. Writes that add: backends, tables, source ranges, frontends.
    // The tables of one sync are built together, on every core for a large
    // sync, into one buffer (dropped after the writes: the maps hold them).
    // The workers start on them while this thread lists and writes the backends.
    const tableJobs: Array<{ serviceId: number; inputs: TableInputs }> = [];
    for (let i = 0; i < redo.length; i++) {
      const r = redo[i];
      const w = r.want;
      if (!w) continue;
      this.failed.add(r.key); // until every write below succeeds
      for (let t = 0; t < w.tables.length; t++) {
        const { serviceId, inputs } = w.tables[t];
        if (!sameTable(this.appliedTables.get(serviceId), inputs)) tableJobs.push({ serviceId, inputs });
      }
    }
    const batch = startMaglevTables(tableJobs.map((j) => ({ backends: j.inputs.inputs, tableSize: j.inputs.size })));

    const putBackends: Array<{ id: number; backend: BackendValue }> = [];
    const putFrontends: Array<{ fk: string; port: string; entry: { key: FrontendKey; service: ServiceValue } }> = [];
    for (let k = 0; k < redo.length; k++) {
      const r = redo[k];
      const w = r.want;
      if (!w) continue;
      for (let i = 0; i < w.backendIds.length; i++) {
        const b = w.desired.backends[i];
        const id = w.backendIds[i];
        const addr = ipToU32(b.addr);
        const proto = protoNumber(b.protocol);
        const owner = w.clusterId || w.localId;
        if (!this.appliedBackends.holds(id, addr, b.port, proto, w.backendFlags[i], owner)) {
          putBackends.push({ id, backend: { addr: b.addr, port: b.port, proto, flags: w.backendFlags[i], service_id: owner } });
        }
      }
      for (let i = 0; i < w.frontends.length; i++) {
        const f = w.frontends[i];
        const fk = f.fk;
        const cur = this.appliedFrontends.get(fk);
        if (
          !cur ||
          cur.service.id !== f.service.id ||
          (cur.service.internal_id ?? 0) !== (f.service.internal_id ?? 0) ||
          cur.service.flags !== f.service.flags ||
          (cur.service.affinity_timeout ?? 0) !== (f.service.affinity_timeout ?? 0)
        ) {
          putFrontends.push({ fk, port: r.key, entry: f });
        } else this.frontendOwner.set(fk, r.key);
      }
    }
    this.maps.putBackends(putBackends);
    for (const { id, backend: b } of putBackends) this.appliedBackends.record(id, ipToU32(b.addr), b.port, b.proto, b.flags, b.service_id ?? 0);
    writes.backends = putBackends.length;

    const built = batch.finish();
    const newTables = tableJobs.map((j, i) => ({ serviceId: j.serviceId, inputs: j.inputs, table: built[i].table, counts: built[i].counts }));

    this.maps.putMaglevTables(newTables);
    for (let i = 0; i < newTables.length; i++) {
      const t = newTables[i];
      this.appliedTables.set(t.serviceId, { size: t.inputs.size, inputs: t.inputs.inputs, counts: t.counts });
    }
    writes.tables = newTables.length;

    // Source ranges before the frontends that consult them.
    for (let i = 0; i < redo.length; i++) {
      const r = redo[i];
      if (!r.want || !r.want.ranges.length) continue;
      const sig = r.want.ranges.join(',');
      for (const id of r.want.rangeIds) {
        if (this.appliedRanges.get(id) === sig) continue;
        this.maps.putSourceRanges(id, r.want.ranges);
        this.appliedRanges.set(id, sig);
        writes.sourceRanges++;
      }
    }

    // Counters of newly allocated service IDs start at zero (an ID may be reused), before any frontend leads there.
    this.maps.resetServiceStats(this.statsToReset.splice(0));
    this.maps.putFrontends(putFrontends.map((f) => f.entry));
    for (let i = 0; i < putFrontends.length; i++) {
      const f = putFrontends[i];
      this.appliedFrontends.set(f.fk, f.entry);
      this.frontendOwner.set(f.fk, f.port);
    }
    writes.frontends = putFrontends.length;

    // 3. Writes that remove: frontends, tables, source ranges, backends; what
    // an old port had and its new self (if any) does not. A frontend that
    // moved to another port in this sync is that port's now: not removed.
    const dropFrontends: string[] = [];
    const dropTables: number[] = [];
    const dropRanges: number[] = [];
    const dropBackends: Array<{ id: number; port: string; name: string }> = [];
    const releaseServices: string[] = [];
    for (let i = 0; i < redo.length; i++) {
      const r = redo[i];
      const old = r.old;
      if (!old) continue;
      const now = r.want;
      for (const { fk } of old.frontends) if (!now?.frontends.some((f) => f.fk === fk) && this.frontendOwner.get(fk) === r.key) dropFrontends.push(fk);
      for (const t of old.tables) if (!now?.tables.some((x) => x.serviceId === t.serviceId)) dropTables.push(t.serviceId);
      for (const id of old.rangeIds) if (!now?.ranges.length || !now.rangeIds.includes(id)) dropRanges.push(id);
      if (old.backendIds.length) {
        const kept = now?.backendIds.length ? new Set(now.backendIds) : undefined;
        old.backendIds.forEach((id, i) => {
          if (!kept?.has(id)) dropBackends.push({ id, port: r.key, name: old.desired.backends[i].name });
        });
      }
      if (old.clusterId && !now?.clusterId) releaseServices.push(r.key);
      if (old.localId && !now?.localId) releaseServices.push(localName(r.key));
    }
    this.maps.deleteFrontends(dropFrontends.map((fk) => this.appliedFrontends.get(fk)!.key));
    for (const fk of dropFrontends) {
      this.appliedFrontends.delete(fk);
      this.frontendOwner.delete(fk);
    }
    writes.frontendDeletes = dropFrontends.length;

    this.maps.deleteMaglevTables(dropTables);
    for (const id of dropTables) this.appliedTables.delete(id);
    writes.tableDeletes = dropTables.length;

    for (const id of dropRanges) {
      this.maps.putSourceRanges(id, []);
      this.appliedRanges.delete(id);
      writes.sourceRanges++;
    }

    this.maps.deleteBackends(dropBackends.map((b) => b.id));
    for (const b of dropBackends) this.appliedBackends.delete(b.id);
    writes.backendDeletes = dropBackends.length;

    // 4. Release identities that are gone (after the maps no longer use them), record the ports.
    for (const b of dropBackends) this.backendIds.release(b.port, b.name);
    for (const key of releaseServices) this.serviceIds.release('', key);
    for (let i = 0; i < redo.length; i++) {
      const r = redo[i];
      this.viewCache.delete(r.key);
      this.failed.delete(r.key);
      this.served -= r.old && idsOf(r.old).length ? 1 : 0;
      if (!r.want) {
        this.ports.delete(r.key);
        continue;
      }
      this.ports.set(r.key, r.want);
      this.served += idsOf(r.want).length ? 1 : 0;
    }
    if (adopting) this.dropUnadopted(writes);
    if (!fast) this.position = positions(services);
    if (redo.length || !fast) {
      this.viewList = undefined;
      this.keyById = undefined;
    }
    this.lastDesired = services;
    this.lastIssues = sourceIssues.length ? [...sourceIssues, ...issues] : issues;
    return {
      services: this.served,
      backends: this.appliedBackends.size,
      frontends: this.appliedFrontends.size,
      writes,
      issues: this.lastIssues,
      durationMs: performance.now() - t0,
    };
  }

  /**
   * What one service port wants in the maps, with stable IDs (allocated
   * here): a service ID for each endpoint set some frontend chooses from
   * (src/services/types.ts), a Maglev table for each such set with a
   * backend, one backend ID per endpoint shared by both sets, and each
   * frontend's two service IDs (from outside, from inside).
   */
  private wantOf(svc: DesiredService): PortWant {
    const want: PortWant = { desired: svc, clusterId: 0, localId: 0, frontends: [], backendIds: [], backendFlags: [], tables: [], ranges: [], rangeIds: [] };
    if (!svc.frontends.length) return want;
    let usesCluster = false;
    let usesLocal = false;
    for (let i = 0; i < svc.frontends.length; i++) {
      const f = svc.frontends[i];
      if (f.external === 'cluster' || f.internal === 'cluster') usesCluster = true;
      if (f.external === 'local' || f.internal === 'local') usesLocal = true;
    }
    if (usesCluster) want.clusterId = this.serviceIds.idFor('', svc.key, (id) => this.statsToReset.push(id));
    if (usesLocal) want.localId = this.serviceIds.idFor('', localName(svc.key), (id) => this.statsToReset.push(id));
    const BF = enums.xlb_backend_flags;
    const clusterInputs: MaglevBackend[] = [];
    const localInputs: MaglevBackend[] = [];
    let remote = false;
    for (let i = 0; i < svc.backends.length; i++) {
      const b = svc.backends[i];
      if (!b.local) remote = true;
      // A backend ID belongs to one service port (both its sets): removing a
      // backend from a service must invalidate that service's conntrack
      // entries even when the same IP:port still serves another service,
      // and a backend that moves between the sets keeps its flows.
      const id = this.backendIds.idFor(svc.key, b.name);
      want.backendIds.push(id);
      // Out of a set: keeps its flows, and ClientIP affinity of that set must not send new ones to it.
      want.backendFlags.push(
        (b.local ? BF.XLB_BE_F_LOCAL : 0) | (usesCluster && !b.inCluster ? BF.XLB_BE_F_DRAINING : 0) | (usesLocal && !b.inLocal ? BF.XLB_BE_F_NOT_LOCAL_SET : 0),
      );
      if (usesCluster && inSet(b, 'cluster')) clusterInputs.push({ name: b.name, id, weight: b.weight });
      if (usesLocal && inSet(b, 'local')) localInputs.push({ name: b.name, id, weight: b.weight });
    }
    if (clusterInputs.length) want.tables.push({ serviceId: want.clusterId, inputs: { size: tableSizeFor(clusterInputs.length, this.sizing), inputs: clusterInputs } });
    if (localInputs.length) want.tables.push({ serviceId: want.localId, inputs: { size: tableSizeFor(localInputs.length, this.sizing), inputs: localInputs } });
    const idOf = (set: EndpointSet): number => (set === 'cluster' ? want.clusterId : want.localId);
    const F = enums.xlb_service_flags;
    const affinity = svc.sessionAffinity === 'ClientIP';
    // kube-proxy restricts LoadBalancer ingress IPs only, not NodePorts or ExternalIPs.
    const ranges = svc.type === 'LoadBalancer' ? svc.loadBalancerSourceRanges : [];
    want.ranges = ranges.length ? [...ranges].sort() : [];
    const proto = protoNumber(svc.protocol);
    for (let i = 0; i < svc.frontends.length; i++) {
      const f = svc.frontends[i];
      const id = f.external ? idOf(f.external) : 0;
      let flags = f.kind === 'NodePort' ? F.XLB_SVC_F_NODEPORT : f.kind === 'ClusterIP' ? 0 : F.XLB_SVC_F_EXTERNAL;
      if (affinity) flags |= F.XLB_SVC_F_AFFINITY;
      if (f.external === 'local') flags |= F.XLB_SVC_F_EXT_LOCAL;
      if (f.internal === 'local') flags |= F.XLB_SVC_F_INT_LOCAL;
      // Flows from outside to a backend on another node are SNATed: the datapath
      // looks for them in xlb_snat_sets (the local set has no such backend).
      if (remote && f.external === 'cluster') flags |= F.XLB_SVC_F_REMOTE;
      if (want.ranges.length && f.kind === 'LoadBalancer' && id) {
        flags |= F.XLB_SVC_F_SOURCE_RANGES;
        if (!want.rangeIds.includes(id)) want.rangeIds.push(id);
      }
      const key: FrontendKey = { addr: f.addr, port: f.port, proto };
      const service: ServiceValue = { id, flags, internal_id: idOf(f.internal) };
      if (affinity) service.affinity_timeout = svc.sessionAffinityTimeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
      want.frontends.push({ fk: frontendKeyString(key), key, service });
    }
    return want;
  }

  /**
   * The Maglev lookup table a service port has in the maps for new flows
   * from outside the cluster (the set its outside-facing frontends choose
   * from; else its cluster set), rebuilt from the same inputs (tables are
   * not kept in memory: M x 4 bytes each).
   */
  tableOf(key: string): { serviceId: number; table: Uint32Array } | undefined {
    const want = this.ports.get(key);
    if (!want) return undefined;
    const outside = want.desired.frontends.find((f) => f.external)?.external;
    const serviceId = outside === 'local' ? want.localId : want.clusterId || want.localId;
    const applied = serviceId ? this.appliedTables.get(serviceId) : undefined;
    if (!serviceId || !applied) return undefined;
    return { serviceId, table: buildMaglevTable(applied.inputs, applied.size) };
  }

  /** The view of port `key` (cached until the port changes). */
  private viewOf(key: string): ServiceView {
    const cached = this.viewCache.get(key);
    if (cached) return cached;
    const want = this.ports.get(key)!;
    const svc = want.desired;
    const served = idsOf(want).length > 0;
    const clusterTable = want.clusterId ? this.appliedTables.get(want.clusterId) : undefined;
    const localTable = want.localId ? this.appliedTables.get(want.localId) : undefined;
    const takers = (set: EndpointSet): string[] => svc.backends.filter((b) => inSet(b, set)).map((b) => `${b.addr}:${b.port}`);
    const path = (set: EndpointSet): FrontendPathView => ({ set, serviceId: set === 'cluster' ? want.clusterId : want.localId, endpoints: takers(set) });
    const view: ServiceView = {
      key: svc.key,
      namespace: svc.namespace,
      name: svc.name,
      portName: svc.portName,
      protocol: svc.protocol,
      serviceId: want.clusterId || want.localId,
      serviceIds: { cluster: want.clusterId, local: want.localId },
      frontends: svc.frontends.map((f: DesiredFrontend) => {
        const v: FrontendView = { addr: f.addr, port: f.port, kind: f.kind, served, fromInside: path(f.internal) };
        if (f.external) v.fromOutside = path(f.external);
        return v;
      }),
      backends: svc.backends.map((b, i) => {
        const id = want.backendIds[i] ?? 0;
        return {
          id,
          addr: b.addr,
          port: b.port,
          nodeName: b.nodeName,
          local: b.local,
          state: backendState(b),
          inTable: served && ((want.clusterId > 0 && inSet(b, 'cluster')) || (want.localId > 0 && inSet(b, 'local'))),
          inCluster: b.inCluster,
          inLocal: b.inLocal,
          share: clusterTable && id ? slotCount(clusterTable.counts, id) / clusterTable.size : 0,
          localShare: localTable && id ? slotCount(localTable.counts, id) / localTable.size : 0,
        };
      }),
      tableSize: clusterTable?.size ?? 0,
      localTableSize: localTable?.size ?? 0,
      settings: {
        type: svc.type,
        externalTrafficPolicy: svc.externalTrafficPolicy,
        internalTrafficPolicy: svc.internalTrafficPolicy,
        sessionAffinity: svc.sessionAffinity,
        ...(svc.sessionAffinity === 'ClientIP' ? { sessionAffinityTimeoutSeconds: svc.sessionAffinityTimeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS } : {}),
        loadBalancerSourceRanges: svc.loadBalancerSourceRanges,
        topology: svc.topology,
        ...(svc.trafficDistribution !== undefined ? { trafficDistribution: svc.trafficDistribution } : {}),
        ...(svc.healthCheckNodePort !== undefined ? { healthCheckNodePort: svc.healthCheckNodePort } : {}),
        hasAnyEndpoints: svc.hasAnyEndpoints,
      },
    };
    this.viewCache.set(key, view);
    return view;
  }
}

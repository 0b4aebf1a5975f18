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
import { BackendBatch, type FrontendKey, type LBMaps, type ServiceValue } from '../datapath/lbmaps.js';
import { frontendKeyString } from '../datapath/lbmaps.js';
import { enums, IPPROTO } from '../datapath/codec.js';
import { ipToU32 } from '../util/ip.js';
import { buildMaglevTable, startMaglevTables, startMaglevPool, tableSizeFor, type MaglevBackend, type MaglevSizing } from '../maglev/index.js';
import { slotCount } from '../maglev/pool.js';
import { positions, Translator, type DesiredBackend, type DesiredService } from './translate.js';
import { IdAllocator } from './ids.js';
import { DEFAULT_AFFINITY_TIMEOUT_SECONDS } from '../sources/normalize.js';

/** Frontend kinds the XDP datapath serves (ClusterIP is recorded, served by a later hook). */
const SERVED_KINDS = new Set(['LoadBalancer', 'ExternalIP', 'NodePort']);

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
  /** Whether the Maglev table includes it (new flows go to it). */
  inTable: boolean;
  /** Fraction of Maglev slots (0..1). */
  share: number;
}

/** One service port as programmed, for the API and the CLI. */
export interface ServiceView {
  key: string;
  namespace: string;
  name: string;
  portName: string;
  protocol: 'TCP' | 'UDP';
  serviceId: number;
  frontends: Array<{ addr: string; port: number; kind: string; served: boolean }>;
  backends: BackendView[];
  /** Maglev table size M (prime), 0 when no backend takes new flows. */
  tableSize: number;
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
  /** 0 when the port has no frontend the datapath serves. */
  serviceId: number;
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
  table?: TableInputs;
  /** loadBalancerSourceRanges to enforce, sorted. */
  ranges: string[];
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
  private readonly present = new Uint8Array(MAX_BACKEND_ID + 1);
  size = 0;

  /** Whether backend `id` is written with exactly these values (addr: IPv4 in host order). */
  holds(id: number, addr: number, port: number, proto: number, flags: number): boolean {
    return this.present[id] === 1 && this.port[id] === port && this.proto[id] === proto && this.flags[id] === flags && this.addr[id] === addr;
  }

  /** Record what entry i of a written batch holds. */
  set(b: BackendBatch, i: number): void {
    const id = b.ids[i];
    if (!this.present[id]) this.size++;
    this.present[id] = 1;
    this.addr[id] = b.addrs[i];
    this.port[id] = b.ports[i];
    this.proto[id] = b.protos[i];
    this.flags[id] = b.flags[i];
  }

  delete(id: number): void {
    if (this.present[id]) this.size--;
    this.present[id] = 0;
  }
}

/** Whether a backend of a served port is in its Maglev table (takes new flows). */
const inTable = (b: DesiredBackend): boolean => b.useForNewFlows && b.weight > 0;

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

  constructor(
    private readonly maps: LBMaps,
    private readonly node: NodeInfo,
    private readonly sizing: MaglevSizing,
  ) {
    this.translator = new Translator(node);
    // Table builds of large syncs use every core; the threads take tens of
    // ms to start, so they start now rather than in the first sync.
    startMaglevPool();
  }

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
      if (w.table && !sameTable(this.appliedTables.get(w.serviceId), w.table)) tableJobs.push({ serviceId: w.serviceId, inputs: w.table });
    }
    const batch = startMaglevTables(tableJobs.map((j) => ({ backends: j.inputs.inputs, tableSize: j.inputs.size })));
    // Room for them in the maps now, while the pool builds them.
    this.maps.reserveMaglevTables(
      tableJobs.length,
      tableJobs.reduce((sum, j) => sum + j.inputs.size, 0),
    );

    const putBackends = new BackendBatch(this.appliedBackends.size ? 64 : 1024);
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
        if (!this.appliedBackends.holds(id, addr, b.port, proto, w.backendFlags[i])) putBackends.push(id, addr, b.port, proto, w.backendFlags[i]);
      }
      for (let i = 0; i < w.frontends.length; i++) {
        const f = w.frontends[i];
        const fk = f.fk;
        const cur = this.appliedFrontends.get(fk);
        if (!cur || cur.service.id !== f.service.id || cur.service.flags !== f.service.flags || (cur.service.affinity_timeout ?? 0) !== (f.service.affinity_timeout ?? 0)) {
          putFrontends.push({ fk, port: r.key, entry: f });
        } else this.frontendOwner.set(fk, r.key);
      }
    }
    this.maps.putBackends(putBackends);
    for (let i = 0; i < putBackends.count; i++) this.appliedBackends.set(putBackends, i);
    writes.backends = putBackends.count;

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
      if (this.appliedRanges.get(r.want.serviceId) === sig) continue;
      this.maps.putSourceRanges(r.want.serviceId, r.want.ranges);
      this.appliedRanges.set(r.want.serviceId, sig);
      writes.sourceRanges++;
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
      if (old.serviceId && old.table && (!now || now.serviceId !== old.serviceId || !now.table)) dropTables.push(old.serviceId);
      if (old.serviceId && old.ranges.length && (!now || now.serviceId !== old.serviceId || !now.ranges.length)) dropRanges.push(old.serviceId);
      if (old.backendIds.length) {
        const kept = now?.backendIds.length ? new Set(now.backendIds) : undefined;
        old.backendIds.forEach((id, i) => {
          if (!kept?.has(id)) dropBackends.push({ id, port: r.key, name: old.desired.backends[i].name });
        });
      }
      if (old.serviceId && (!now || !now.serviceId)) releaseServices.push(r.key);
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
      this.served -= r.old?.serviceId ? 1 : 0;
      if (!r.want) {
        this.ports.delete(r.key);
        continue;
      }
      this.ports.set(r.key, r.want);
      this.served += r.want.serviceId ? 1 : 0;
    }
    if (!fast) this.position = positions(services);
    if (redo.length || !fast) this.viewList = undefined;
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

  /** What one service port wants in the maps, with stable IDs (allocated here). */
  private wantOf(svc: DesiredService): PortWant {
    const want: PortWant = { desired: svc, serviceId: 0, frontends: [], backendIds: [], backendFlags: [], ranges: [] };
    let served = false;
    for (let i = 0; i < svc.frontends.length; i++) if (SERVED_KINDS.has(svc.frontends[i].kind)) served = true;
    if (!served) return want;
    const serviceId = this.serviceIds.idFor('', svc.key, (id) => this.statsToReset.push(id));
    want.serviceId = serviceId;
    const inputs: MaglevBackend[] = [];
    for (let i = 0; i < svc.backends.length; i++) {
      const b = svc.backends[i];
      // A backend ID belongs to one service port: removing a backend from a
      // service must invalidate that service's conntrack entries even when
      // the same IP:port still serves another service.
      const id = this.backendIds.idFor(svc.key, b.name);
      want.backendIds.push(id);
      want.backendFlags.push(
        (b.local ? enums.xlb_backend_flags.XLB_BE_F_LOCAL : 0) |
          // Terminating: keeps its flows; ClientIP affinity must not send new ones to it.
          (b.useForNewFlows ? 0 : enums.xlb_backend_flags.XLB_BE_F_DRAINING),
      );
      if (inTable(b)) inputs.push({ name: b.name, id, weight: b.weight });
    }
    if (inputs.length) want.table = { size: tableSizeFor(inputs.length, this.sizing), inputs };
    const F = enums.xlb_service_flags;
    const affinity = svc.sessionAffinity === 'ClientIP';
    // kube-proxy restricts LoadBalancer ingress IPs only, not NodePorts or ExternalIPs.
    const ranges = svc.type === 'LoadBalancer' ? svc.loadBalancerSourceRanges : [];
    want.ranges = ranges.length ? [...ranges].sort() : [];
    const proto = protoNumber(svc.protocol);
    for (let i = 0; i < svc.frontends.length; i++) {
      const f = svc.frontends[i];
      if (!SERVED_KINDS.has(f.kind)) continue;
      let flags = f.kind === 'NodePort' ? F.XLB_SVC_F_NODEPORT : F.XLB_SVC_F_EXTERNAL;
      if (affinity) flags |= F.XLB_SVC_F_AFFINITY;
      if (ranges.length && f.kind === 'LoadBalancer') flags |= F.XLB_SVC_F_SOURCE_RANGES;
      const key: FrontendKey = { addr: f.addr, port: f.port, proto };
      const service: ServiceValue = { id: serviceId, flags };
      if (affinity) service.affinity_timeout = svc.sessionAffinityTimeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
      want.frontends.push({ fk: frontendKeyString(key), key, service });
    }
    return want;
  }

  /**
   * The Maglev lookup table a service port has in the maps, rebuilt from
   * the same inputs (tables are not kept in memory: M × 4 bytes each).
   */
  tableOf(key: string): { serviceId: number; table: Uint32Array } | undefined {
    const serviceId = this.ports.get(key)?.serviceId;
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
    const served = want.serviceId > 0;
    const table = served ? this.appliedTables.get(want.serviceId) : undefined;
    const view: ServiceView = {
      key: svc.key,
      namespace: svc.namespace,
      name: svc.name,
      portName: svc.portName,
      protocol: svc.protocol,
      serviceId: want.serviceId,
      frontends: svc.frontends.map((f) => ({ addr: f.addr, port: f.port, kind: f.kind, served: served && SERVED_KINDS.has(f.kind) })),
      backends: svc.backends.map((b, i) => {
        const id = want.backendIds[i] ?? 0;
        return {
          id,
          addr: b.addr,
          port: b.port,
          nodeName: b.nodeName,
          local: b.local,
          state: backendState(b),
          inTable: served && inTable(b),
          share: table && id ? slotCount(table.counts, id) / table.size : 0,
        };
      }),
      tableSize: want.table?.size ?? 0,
    };
    this.viewCache.set(key, view);
    return view;
  }
}

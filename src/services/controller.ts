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
import type { BackendValue, FrontendKey, LBMaps, ServiceValue } from '../datapath/lbmaps.js';
import { frontendKeyString } from '../datapath/lbmaps.js';
import { enums, IPPROTO } from '../datapath/codec.js';
import { buildMaglevTable, tableSizeFor, type MaglevSizing } from '../maglev/index.js';
import { translate, type DesiredBackend, type DesiredService } from './translate.js';
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

interface AppliedTable {
  signature: string;
  size: number;
  shares: Map<number, number>;
}

const protoNumber = (p: 'TCP' | 'UDP'): number => IPPROTO[p];

/** Stable signature of a table's inputs: rebuild only when it changes. */
function tableSignature(size: number, backends: Array<{ name: string; id: number; weight: number }>): string {
  return `${size}|${backends.map((b) => `${b.name}#${b.id}*${b.weight}`).sort().join(',')}`;
}

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
  private readonly appliedBackends = new Map<number, { value: BackendValue; sig: string }>();
  private readonly appliedTables = new Map<number, AppliedTable>();
  /** loadBalancerSourceRanges written per service ID, as a sorted, joined signature. */
  private readonly appliedRanges = new Map<number, string>();
  private views: ServiceView[] = [];
  private lastDesired: DesiredService[] = [];
  private lastIssues: InputIssue[] = [];

  constructor(
    private readonly maps: LBMaps,
    private readonly node: NodeInfo,
    private readonly sizing: MaglevSizing,
  ) {}

  /** The services as last programmed, sorted by key. */
  services(): ServiceView[] {
    return this.views;
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
   */
  sync(state: ClusterState, sourceIssues: InputIssue[] = []): SyncResult {
    const t0 = performance.now();
    const { services, issues } = translate(state, this.node);
    const writes = { frontends: 0, frontendDeletes: 0, backends: 0, backendDeletes: 0, tables: 0, tableDeletes: 0, sourceRanges: 0 };

    // 1. Desired state, with stable IDs.
    const wantFrontends = new Map<string, { key: FrontendKey; service: ServiceValue }>();
    const wantBackends = new Map<number, { value: BackendValue; sig: string }>();
    const wantTables = new Map<number, { signature: string; size: number; inputs: Array<{ name: string; id: number; weight: number }> }>();
    const wantRanges = new Map<number, string[]>();
    const views: ServiceView[] = [];
    const liveServiceKeys = new Set<string>();
    const liveBackendNames = new Set<string>();

    for (const svc of services) {
      const served = svc.frontends.filter((f) => SERVED_KINDS.has(f.kind));
      const view = this.describe(svc, served.length > 0);
      views.push(view);
      if (!served.length) continue;
      liveServiceKeys.add(svc.key);
      const serviceId = this.serviceIds.idFor(svc.key, (id) => this.maps.resetServiceStats(id));
      view.serviceId = serviceId;
      const inputs: Array<{ name: string; id: number; weight: number }> = [];
      for (const b of svc.backends) {
        // A backend ID belongs to one service port: removing a backend from a
        // service must invalidate that service's conntrack entries even when
        // the same IP:port still serves another service.
        const identity = `${svc.key}|${b.name}`;
        liveBackendNames.add(identity);
        const id = this.backendIds.idFor(identity);
        const value: BackendValue = {
          addr: b.addr,
          port: b.port,
          proto: protoNumber(b.protocol),
          flags:
            (b.local ? enums.xlb_backend_flags.XLB_BE_F_LOCAL : 0) |
            // Terminating: keeps its flows; ClientIP affinity must not send new ones to it.
            (b.useForNewFlows ? 0 : enums.xlb_backend_flags.XLB_BE_F_DRAINING),
        };
        wantBackends.set(id, { value, sig: `${value.addr}:${value.port}/${value.proto}/${value.flags}` });
        if (b.useForNewFlows && b.weight > 0) inputs.push({ name: b.name, id, weight: b.weight });
        const bv = view.backends.find((x) => x.addr === b.addr && x.port === b.port);
        if (bv) {
          bv.id = id;
          bv.inTable = b.useForNewFlows && b.weight > 0;
        }
      }
      const size = inputs.length ? tableSizeFor(inputs.length, this.sizing) : 0;
      if (size) wantTables.set(serviceId, { signature: tableSignature(size, inputs), size, inputs });
      view.tableSize = size;
      const F = enums.xlb_service_flags;
      const affinity = svc.sessionAffinity === 'ClientIP';
      // kube-proxy restricts LoadBalancer ingress IPs only, not NodePorts or ExternalIPs.
      const ranges = svc.type === 'LoadBalancer' ? svc.loadBalancerSourceRanges : [];
      if (ranges.length) wantRanges.set(serviceId, [...ranges].sort());
      for (const f of served) {
        let flags = f.kind === 'NodePort' ? F.XLB_SVC_F_NODEPORT : F.XLB_SVC_F_EXTERNAL;
        if (affinity) flags |= F.XLB_SVC_F_AFFINITY;
        if (ranges.length && f.kind === 'LoadBalancer') flags |= F.XLB_SVC_F_SOURCE_RANGES;
        const key: FrontendKey = { addr: f.addr, port: f.port, proto: protoNumber(svc.protocol) };
        const service: ServiceValue = { id: serviceId, flags };
        if (affinity) service.affinity_timeout = svc.sessionAffinityTimeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
        wantFrontends.set(frontendKeyString(key), { key, service });
      }
    }

    // 2. Writes that add: backends, tables, frontends.
    const putBackends = [...wantBackends].filter(([id, b]) => this.appliedBackends.get(id)?.sig !== b.sig);
    this.maps.putBackends(putBackends.map(([id, b]) => ({ id, backend: b.value })));
    for (const [id, b] of putBackends) this.appliedBackends.set(id, b);
    writes.backends = putBackends.length;

    const newTables: Array<{ serviceId: number; table: Uint32Array; signature: string; size: number }> = [];
    for (const [serviceId, t] of wantTables) {
      if (this.appliedTables.get(serviceId)?.signature === t.signature) continue;
      newTables.push({ serviceId, table: buildMaglevTable(t.inputs, t.size), signature: t.signature, size: t.size });
    }
    this.maps.putMaglevTables(newTables);
    for (const t of newTables) this.appliedTables.set(t.serviceId, { signature: t.signature, size: t.size, shares: countShares(t.table) });
    writes.tables = newTables.length;

    // Source ranges before the frontends that consult them.
    for (const [serviceId, ranges] of wantRanges) {
      const sig = ranges.join(',');
      if (this.appliedRanges.get(serviceId) === sig) continue;
      this.maps.putSourceRanges(serviceId, ranges);
      this.appliedRanges.set(serviceId, sig);
      writes.sourceRanges++;
    }

    const putFrontends = [...wantFrontends].filter(([k, f]) => {
      const cur = this.appliedFrontends.get(k);
      return !cur || cur.service.id !== f.service.id || cur.service.flags !== f.service.flags || (cur.service.affinity_timeout ?? 0) !== (f.service.affinity_timeout ?? 0);
    });
    this.maps.putFrontends(putFrontends.map(([, f]) => f));
    for (const [k, f] of putFrontends) this.appliedFrontends.set(k, f);
    writes.frontends = putFrontends.length;

    // 3. Writes that remove: frontends, tables, backends.
    const dropFrontends = [...this.appliedFrontends.keys()].filter((k) => !wantFrontends.has(k));
    this.maps.deleteFrontends(dropFrontends.map((k) => this.appliedFrontends.get(k)!.key));
    for (const k of dropFrontends) this.appliedFrontends.delete(k);
    writes.frontendDeletes = dropFrontends.length;

    const dropTables = [...this.appliedTables.keys()].filter((id) => !wantTables.has(id));
    this.maps.deleteMaglevTables(dropTables);
    for (const id of dropTables) this.appliedTables.delete(id);
    writes.tableDeletes = dropTables.length;

    for (const serviceId of [...this.appliedRanges.keys()]) {
      if (wantRanges.has(serviceId)) continue;
      this.maps.putSourceRanges(serviceId, []);
      this.appliedRanges.delete(serviceId);
      writes.sourceRanges++;
    }

    const dropBackends = [...this.appliedBackends.keys()].filter((id) => !wantBackends.has(id));
    this.maps.deleteBackends(dropBackends);
    for (const id of dropBackends) this.appliedBackends.delete(id);
    writes.backendDeletes = dropBackends.length;

    // 4. Release identities that are gone (after the maps no longer use them).
    this.serviceIds.releaseExcept(liveServiceKeys);
    this.backendIds.releaseExcept(liveBackendNames);

    for (const v of views) {
      const t = this.appliedTables.get(v.serviceId);
      for (const b of v.backends) b.share = t && b.id ? (t.shares.get(b.id) ?? 0) / t.size : 0;
    }
    this.views = views;
    this.lastDesired = services;
    this.lastIssues = [...sourceIssues, ...issues];
    return {
      services: liveServiceKeys.size,
      backends: wantBackends.size,
      frontends: wantFrontends.size,
      writes,
      issues: this.lastIssues,
      durationMs: performance.now() - t0,
    };
  }

  /**
   * The Maglev lookup table a service currently uses, rebuilt from the same
   * inputs (tables are not kept in memory: M × 4 bytes each).
   */
  tableOf(key: string): { serviceId: number; table: Uint32Array } | undefined {
    const view = this.views.find((v) => v.key === key);
    if (!view || !view.tableSize) return undefined;
    const inputs = view.backends.filter((b) => b.inTable).map((b) => ({ name: `${b.addr}:${b.port}/${view.protocol}`, id: b.id, weight: 1 }));
    return { serviceId: view.serviceId, table: buildMaglevTable(inputs, view.tableSize) };
  }

  private describe(svc: DesiredService, served: boolean): ServiceView {
    return {
      key: svc.key,
      namespace: svc.namespace,
      name: svc.name,
      portName: svc.portName,
      protocol: svc.protocol,
      serviceId: 0,
      frontends: svc.frontends.map((f) => ({ addr: f.addr, port: f.port, kind: f.kind, served: served && SERVED_KINDS.has(f.kind) })),
      backends: svc.backends.map((b) => ({
        id: 0,
        addr: b.addr,
        port: b.port,
        nodeName: b.nodeName,
        local: b.local,
        state: backendState(b),
        inTable: false,
        share: 0,
      })),
      tableSize: 0,
    };
  }
}

function countShares(table: Uint32Array): Map<number, number> {
  const out = new Map<number, number>();
  for (let i = 0; i < table.length; i++) out.set(table[i], (out.get(table[i]) ?? 0) + 1);
  return out;
}

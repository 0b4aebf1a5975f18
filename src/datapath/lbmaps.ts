/**
 * LBMaps: the service controller's view of the datapath's maps, as Cilium's
 * `LBMaps` is for its reconciler. The controller only ever talks to this
 * interface; the real implementation (maps.ts) writes BPF maps through libbpf,
 * the fakes here keep them in memory so the controller is tested without
 * privileges, and can inject faults.
 *
 * Shapes follow xdp/include/xlb_types.h (see codec.ts for the conventions).
 */
import type { StructValue } from './codec.js';
import { flat } from '../util/flat.js';

/** `struct xlb_frontend_key`: (VIP or node IP, port, IP protocol number). */
export type FrontendKey = Pick<StructValue<'xlb_frontend_key'>, 'addr' | 'port' | 'proto'>;
/**
 * `struct xlb_service`: `id` for traffic from outside the cluster (0: not
 * served to it), `internal_id` for traffic from inside (0 or absent: not
 * served to it); `affinity_timeout` (seconds) only with XLB_SVC_F_AFFINITY.
 */
export type ServiceValue = Pick<StructValue<'xlb_service'>, 'id' | 'flags'> & { affinity_timeout?: number; internal_id?: number };
/** `struct xlb_backend`; `service_id` (the owning service port's ID, for a restarted agent) defaults to 0. */
export type BackendValue = Pick<StructValue<'xlb_backend'>, 'addr' | 'port' | 'proto' | 'flags'> & { service_id?: number };

/** Per-service counters summed over CPUs. */
export interface ServiceCounters {
  packets: bigint;
  bytes: bigint;
}

/** How full one map is. */
export interface MapFill {
  name: string;
  maxEntries: number;
  /** Entries in use; undefined where counting would be too costly. */
  entries?: number;
}

/**
 * What the maps held when this agent started: an earlier agent's work,
 * still serving (src/services/controller.ts restores its IDs and its
 * applied state from it, so that the first sync writes only the
 * difference).
 */
export interface RestoredMaps {
  frontends: Array<{ key: FrontendKey; service: ServiceValue }>;
  /** Every backend written (non-zero entries), with its owner (`service_id`). */
  backends: Array<{ id: number; backend: BackendValue }>;
  /** Service ID → its Maglev table (backend IDs). */
  tables: Map<number, Uint32Array>;
  /** Service ID → its loadBalancerSourceRanges (`a.b.c.d/n`). */
  sourceRanges: Map<number, string[]>;
}

/**
 * Writes and reads of the load-balancing maps. Every write method applies the
 * whole batch or throws (an Error naming the map and operation); the
 * controller then retries the difference on its next sync.
 */
export interface LBMaps {
  /**
   * What the maps held at start, when they were kept from an earlier agent
   * (undefined: they started empty). Read once, before the first sync.
   */
  restore?(): RestoredMaps | undefined;
  /** Insert or replace frontends (one batched update). */
  putFrontends(entries: Array<{ key: FrontendKey; service: ServiceValue }>): void;
  /** Delete frontends that exist. */
  deleteFrontends(keys: FrontendKey[]): void;
  /** Insert or replace backends by ID (ID 0 is reserved for "none"); one batched update. */
  putBackends(entries: ReadonlyArray<{ id: number; backend: BackendValue }>): void;
  /** Remove backends by ID: established flows on them are re-picked. */
  deleteBackends(ids: number[]): void;
  /**
   * Install services' Maglev lookup tables (backend IDs, length M, M prime)
   * atomically per table: the datapath sees either the old or the new table
   * of a service, whole. One call for many tables: new slabs for them, if
   * any, go into the datapath with one update (docs/datapath.md, "Maglev
   * tables").
   */
  putMaglevTables(tables: Array<{ serviceId: number; table: Uint32Array }>): void;
  /** Remove services' tables (packets to them then drop with no_backend). */
  deleteMaglevTables(serviceIds: number[]): void;
  /**
   * Replace the loadBalancerSourceRanges of a service ID (IPv4 CIDRs
   * `a.b.c.d/n`); `[]` removes them. Only frontends flagged
   * XLB_SVC_F_SOURCE_RANGES consult them.
   */
  putSourceRanges(serviceId: number, cidrs: string[]): void;
  /** Zero a service ID's counters (before an ID is reused). */
  resetServiceStats(serviceIds: number[]): void;
  /** Counters of the given service IDs, summed over CPUs. */
  readServiceStats(serviceIds: number[]): Map<number, ServiceCounters>;
  /** Drop counters by reason name (see codec.dropReasonNames), summed over CPUs. */
  readDrops(): Record<string, bigint>;
  /** Fill level of each map. */
  fill(): MapFill[];
}

/** Canonical string of a frontend key, for maps and sets. */
export function frontendKeyString(k: FrontendKey): string {
  return flat(k.addr, ':', k.port, '/', k.proto);
}

/**
 * An in-memory LBMaps for unit tests and scenario tests: the same contract,
 * with a dump that tests compare against expectations.
 */
export class FakeLBMaps implements LBMaps {
  readonly frontends = new Map<string, { key: FrontendKey; service: ServiceValue }>();
  readonly backends = new Map<number, BackendValue>();
  readonly tables = new Map<number, Uint32Array>();
  readonly sourceRanges = new Map<number, string[]>();
  /** Number of write calls by method, to assert minimal writes. */
  readonly writes: Record<string, number> = {};
  /** When set, called before every write; throw from it to inject a fault. */
  fault?: (method: string) => void;

  /**
   * What the maps hold now, as a datapath kept across a restart would give
   * it: for a controller that takes these maps over (tests of restarts).
   */
  restore(): RestoredMaps | undefined {
    if (!this.frontends.size && !this.backends.size) return undefined;
    return {
      frontends: [...this.frontends.values()].map((f) => ({ key: { ...f.key }, service: { ...f.service } })),
      backends: [...this.backends.entries()].map(([id, b]) => ({ id, backend: { ...b } })),
      tables: new Map([...this.tables.entries()].map(([id, t]) => [id, t.slice()])),
      sourceRanges: new Map([...this.sourceRanges.entries()].map(([id, r]) => [id, [...r]])),
    };
  }

  private count(method: string): void {
    this.fault?.(method);
    this.writes[method] = (this.writes[method] ?? 0) + 1;
  }
  putFrontends(entries: Array<{ key: FrontendKey; service: ServiceValue }>): void {
    if (!entries.length) return;
    this.count('putFrontends');
    for (const e of entries) this.frontends.set(frontendKeyString(e.key), { key: { ...e.key }, service: { ...e.service } });
  }
  deleteFrontends(keys: FrontendKey[]): void {
    if (!keys.length) return;
    this.count('deleteFrontends');
    for (const k of keys) this.frontends.delete(frontendKeyString(k));
  }
  putBackends(entries: ReadonlyArray<{ id: number; backend: BackendValue }>): void {
    if (!entries.length) return;
    this.count('putBackends');
    for (const e of entries) this.backends.set(e.id, { service_id: 0, ...e.backend });
  }
  deleteBackends(ids: number[]): void {
    if (!ids.length) return;
    this.count('deleteBackends');
    for (const id of ids) this.backends.delete(id);
  }
  putMaglevTables(tables: Array<{ serviceId: number; table: Uint32Array }>): void {
    if (!tables.length) return;
    this.count('putMaglevTables');
    for (const t of tables) this.tables.set(t.serviceId, t.table.slice());
  }
  deleteMaglevTables(serviceIds: number[]): void {
    if (!serviceIds.length) return;
    this.count('deleteMaglevTables');
    for (const id of serviceIds) this.tables.delete(id);
  }
  putSourceRanges(serviceId: number, cidrs: string[]): void {
    this.count('putSourceRanges');
    if (cidrs.length) this.sourceRanges.set(serviceId, [...cidrs].sort());
    else this.sourceRanges.delete(serviceId);
  }
  resetServiceStats(): void {}
  readServiceStats(serviceIds: number[]): Map<number, ServiceCounters> {
    return new Map(serviceIds.map((id) => [id, { packets: 0n, bytes: 0n }]));
  }
  readDrops(): Record<string, bigint> {
    return {};
  }
  fill(): MapFill[] {
    return [
      { name: 'xlb_frontends', maxEntries: Infinity, entries: this.frontends.size },
      { name: 'xlb_backends', maxEntries: Infinity, entries: this.backends.size },
      { name: 'xlb_maglev', maxEntries: Infinity, entries: this.tables.size },
    ];
  }
  /** A stable, readable dump of the maps, for scenario tests. */
  dump(): { frontends: string[]; backends: string[]; tables: Record<number, number> } {
    return {
      frontends: [...this.frontends.values()]
        .map(
          (e) =>
            `${frontendKeyString(e.key)} -> svc ${e.service.id}${e.service.internal_id ? ` internal ${e.service.internal_id}` : ''} flags ${e.service.flags}${e.service.affinity_timeout ? ` affinity ${e.service.affinity_timeout}s` : ''}`,
        )
        .sort(),
      backends: [...this.backends.entries()].map(([id, b]) => `${id}: ${b.addr}:${b.port}/${b.proto} flags ${b.flags}`).sort(),
      tables: Object.fromEntries([...this.tables.entries()].map(([id, t]) => [id, t.length])),
    };
  }
}

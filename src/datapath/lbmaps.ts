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
import { ipToU32, u32ToIp } from '../util/ip.js';

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

/**
 * Backends to write, as parallel arrays rather than an object per backend (a
 * first sync writes 100,000 of them, and every object there lives through
 * the whole sync: work for the garbage collector). Entry i (0 <= i < count):
 * backend ID ids[i], IPv4 address addrs[i] in host order (as ipToU32),
 * ports[i], IP protocol number protos[i], XLB_BE_F_* flags[i], owning
 * service port's ID services[i].
 */
export class BackendBatch {
  count = 0;
  ids: Uint32Array;
  addrs: Uint32Array;
  ports: Uint16Array;
  protos: Uint8Array;
  flags: Uint8Array;
  services: Uint32Array;

  /** @param capacity entries before the arrays grow (they double) */
  constructor(capacity = 16) {
    const n = Math.max(1, capacity);
    this.ids = new Uint32Array(n);
    this.addrs = new Uint32Array(n);
    this.ports = new Uint16Array(n);
    this.protos = new Uint8Array(n);
    this.flags = new Uint8Array(n);
    this.services = new Uint32Array(n);
  }

  /** A batch of these backends (addresses as dotted quads). @throws Error naming the address when it is not IPv4 */
  static of(entries: Array<{ id: number; backend: BackendValue }>): BackendBatch {
    const b = new BackendBatch(entries.length);
    for (const e of entries) b.push(e.id, ipToU32(e.backend.addr), e.backend.port, e.backend.proto, e.backend.flags, e.backend.service_id ?? 0);
    return b;
  }

  /** Append one backend. */
  push(id: number, addr: number, port: number, proto: number, flags: number, service = 0): void {
    if (this.count === this.ids.length) this.grow();
    const i = this.count++;
    this.ids[i] = id;
    this.addrs[i] = addr;
    this.ports[i] = port;
    this.protos[i] = proto;
    this.flags[i] = flags;
    this.services[i] = service;
  }

  /** Entry i as a BackendValue. */
  value(i: number): BackendValue {
    return { addr: u32ToIp(this.addrs[i]), port: this.ports[i], proto: this.protos[i], flags: this.flags[i], service_id: this.services[i] };
  }

  private grow(): void {
    const n = this.ids.length * 2;
    const grown = <T extends Uint32Array | Uint16Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.ids = grown(this.ids, (k) => new Uint32Array(k));
    this.addrs = grown(this.addrs, (k) => new Uint32Array(k));
    this.ports = grown(this.ports, (k) => new Uint16Array(k));
    this.protos = grown(this.protos, (k) => new Uint8Array(k));
    this.flags = grown(this.flags, (k) => new Uint8Array(k));
    this.services = grown(this.services, (k) => new Uint32Array(k));
  }
}

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
  putBackends(batch: BackendBatch): void;
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
  /**
   * Make room now for `tables` tables of `slots` slots in all that a later
   * putMaglevTables will install, so that the work it takes (new slabs, and
   * the grace period of putting them into the datapath) overlaps with
   * building the tables. Only a hint: putMaglevTables makes whatever room
   * is still missing.
   */
  reserveMaglevTables(tables: number, slots: number): void;
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
  putBackends(batch: BackendBatch): void {
    if (!batch.count) return;
    this.count('putBackends');
    for (let i = 0; i < batch.count; i++) this.backends.set(batch.ids[i], batch.value(i));
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
  reserveMaglevTables(): void {}
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

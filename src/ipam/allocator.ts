/**
 * The address allocation rules of LB IPAM, pure (no I/O): which services xlb
 * assigns, which address each gets, and why one gets none. The controller
 * (controller.ts) feeds it services and writes what it decides.
 *
 * Rules, close to MetalLB's controller:
 * - Managed: `spec.type: LoadBalancer` and `spec.loadBalancerClass` unset or
 *   {@link XLB_LB_CLASS}. Other classes belong to another implementation.
 * - A requested address (annotation {@link LB_IPS_ANNOTATION} or its MetalLB
 *   and Cilium equivalents, annotations.ts; else the deprecated
 *   `spec.loadBalancerIP`) is assigned when it lies in a pool open
 *   to the service and no other service holds it; otherwise the service gets
 *   nothing and a reason (AddressConflict, AddressOutsidePools).
 * - Otherwise the service keeps its address while it stays in an open pool,
 *   adopts the address its status already shows when that is free (a new
 *   leader takes over the old one's assignments), else gets the first free
 *   address of the first open pool with one (PoolExhausted when none has).
 * - An address has one owner. When several services claim the same status
 *   address at a leader's start, the oldest (creationTimestamp, then
 *   namespace/name) keeps it.
 * - A failure releases what the service held (its status is then cleared):
 *   a service never shows an address xlb does not stand behind.
 * - Pools change while running ({@link Allocator.setPools}): an assignment
 *   whose pool is gone, or no longer holds its address, is dropped, and the
 *   service is decided again (a new address from an open pool, or a
 *   failure), as Cilium's LB IPAM does when a pool is deleted or shrunk.
 */
import { isIPv4 } from '../util/ip.js';
import type { Pool } from './pool.js';
import { LB_IPS_ANNOTATION, POOL_ANNOTATION, annotatedAddress, annotatedPool } from './annotations.js';

export { LB_IPS_ANNOTATION, POOL_ANNOTATION };

/** The `spec.loadBalancerClass` that names xlb (services without a class are xlb's too). */
export const XLB_LB_CLASS = 'xlb.io/lb';

/** What the allocator reads of a Service. */
export interface LbService {
  /** `namespace/name`. */
  key: string;
  namespace: string;
  name: string;
  type?: string;
  loadBalancerClass?: string;
  loadBalancerIP?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** `status.loadBalancer.ingress[].ip`, in order. */
  ingressIPs: string[];
  /** RFC 3339, for the oldest-wins rule. */
  creationTimestamp?: string;
}

/** Why a managed service has no address. */
export type FailureReason = 'InvalidRequest' | 'AddressConflict' | 'AddressOutsidePools' | 'PoolExhausted' | 'NoPool';

/** The allocator's decision for one service. */
export type Decision =
  | { kind: 'unmanaged' }
  | { kind: 'assigned'; ip: string; pool: string; changed: boolean }
  | { kind: 'failed'; reason: FailureReason; message: string };

const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);
const strMap = (v: unknown): Record<string, string> => {
  const out: Record<string, string> = {};
  if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
};

/** Read the fields the allocator needs from a raw Service; tolerant of anything malformed. */
export function lbServiceFromRaw(raw: unknown): LbService {
  const o = (raw ?? {}) as { metadata?: Record<string, unknown>; spec?: Record<string, unknown>; status?: { loadBalancer?: { ingress?: unknown } } };
  const m = o.metadata ?? {};
  const spec = o.spec ?? {};
  const namespace = str(m.namespace) ?? 'default';
  const name = str(m.name) ?? '';
  const ingress = o.status?.loadBalancer?.ingress;
  return {
    key: `${namespace}/${name}`,
    namespace,
    name,
    type: str(spec.type),
    loadBalancerClass: str(spec.loadBalancerClass),
    loadBalancerIP: str(spec.loadBalancerIP),
    labels: strMap(m.labels),
    annotations: strMap(m.annotations),
    ingressIPs: Array.isArray(ingress) ? ingress.map((g) => str((g as { ip?: unknown })?.ip)).filter((x): x is string => !!x) : [],
    creationTimestamp: str(m.creationTimestamp),
  };
}

/** Whether xlb assigns this service's address. */
export function managedByXlb(svc: Pick<LbService, 'type' | 'loadBalancerClass'>): boolean {
  return svc.type === 'LoadBalancer' && (svc.loadBalancerClass === undefined || svc.loadBalancerClass === XLB_LB_CLASS);
}

/** The address a service asks for: undefined (none), an address, or an error message (annotations.ts). */
export function requestedAddress(svc: LbService): { ip?: string; error?: string } {
  const ann = annotatedAddress(svc.annotations);
  if (ann.error) return { error: ann.error };
  if (ann.ip !== undefined) return { ip: ann.ip };
  const ip = svc.loadBalancerIP;
  if (ip === undefined) return {};
  if (!isIPv4(ip)) return { error: `spec.loadBalancerIP ${JSON.stringify(ip)}: only IPv4 addresses can be assigned` };
  return { ip };
}

/** Oldest first (creationTimestamp, then key): who keeps a contested address. */
export function olderFirst(a: LbService, b: LbService): number {
  const ta = a.creationTimestamp ?? '';
  const tb = b.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** Address assignments over a set of pools. See the module comment. */
export class Allocator {
  private readonly byKey = new Map<string, { ip: string; pool: string }>();
  private readonly byIp = new Map<string, string>();

  constructor(private pools: Pool[]) {}

  /** The pools, in the order they are tried. */
  currentPools(): readonly Pool[] {
    return this.pools;
  }

  /**
   * Replace the pools (a pool added, changed or deleted while running).
   * Assignments whose pool is gone or no longer holds their address are
   * dropped; the caller decides those services again ({@link ensure}).
   * @returns the keys of the services that lost their address
   */
  setPools(pools: Pool[]): string[] {
    this.pools = pools;
    const dropped: string[] = [];
    for (const [key, a] of this.byKey) {
      const p = pools.find((x) => x.name === a.pool);
      if (p && p.contains(a.ip)) continue;
      this.byKey.delete(key);
      this.byIp.delete(a.ip);
      dropped.push(key);
    }
    return dropped;
  }

  /** The address assigned to a service, if any. */
  assignedTo(key: string): string | undefined {
    return this.byKey.get(key)?.ip;
  }

  /** The service holding an address, if any. */
  ownerOf(ip: string): string | undefined {
    return this.byIp.get(ip);
  }

  /** Every assignment, `namespace/name` → address. */
  assignments(): Map<string, string> {
    return new Map([...this.byKey].map(([k, v]) => [k, v.ip]));
  }

  /** Addresses used and available per pool. */
  usage(): Array<{ pool: string; size: number; used: number }> {
    const used = new Map<string, number>();
    for (const v of this.byKey.values()) used.set(v.pool, (used.get(v.pool) ?? 0) + 1);
    return this.pools.map((p) => ({ pool: p.name, size: p.size, used: used.get(p.name) ?? 0 }));
  }

  /** Free a service's address; returns it, or undefined when it held none. */
  release(key: string): string | undefined {
    const cur = this.byKey.get(key);
    if (!cur) return undefined;
    this.byKey.delete(key);
    this.byIp.delete(cur.ip);
    this.pools.find((p) => p.name === cur.pool)?.rewind();
    return cur.ip;
  }

  private assign(key: string, ip: string, pool: string): void {
    this.release(key);
    this.byKey.set(key, { ip, pool });
    this.byIp.set(ip, key);
  }

  /**
   * Pools open to a service: the one its pool annotation names
   * ({@link POOL_ANNOTATION} or MetalLB's; an error when it does not exist),
   * else every pool that admits it and auto-assigns (or any that admits it
   * when it requests an address).
   */
  openPools(svc: LbService, requesting: boolean): Pool[] | { error: string } {
    const named = annotatedPool(svc.annotations);
    if (named.error) return { error: named.error };
    if (named.name !== undefined) {
      const p = this.pools.find((x) => x.name === named.name);
      if (!p) return { error: `annotation ${named.from}: no pool named ${JSON.stringify(named.name)} (pools: ${this.pools.map((x) => x.name).join(', ') || 'none'})` };
      if (!p.admits(svc.namespace, svc.labels, svc.name)) return { error: `pool ${named.name} does not admit this service (its namespaces or serviceSelector exclude it)` };
      return [p];
    }
    return this.pools.filter((p) => p.admits(svc.namespace, svc.labels, svc.name) && (requesting || p.scope.autoAssign));
  }

  /**
   * Take over the addresses that services' statuses show (a leader's start):
   * oldest first, each only when it is valid for that service and free.
   */
  restore(services: LbService[]): void {
    for (const svc of [...services].sort(olderFirst)) {
      if (!managedByXlb(svc) || this.byKey.has(svc.key)) continue;
      const req = requestedAddress(svc);
      if (req.error) continue;
      const open = this.openPools(svc, req.ip !== undefined);
      if (!Array.isArray(open)) continue;
      for (const ip of svc.ingressIPs) {
        if (req.ip !== undefined && ip !== req.ip) continue;
        const pool = open.find((p) => p.contains(ip));
        if (pool && !this.byIp.has(ip)) {
          this.assign(svc.key, ip, pool.name);
          break;
        }
      }
    }
  }

  /** Decide (and record) the address of one service. */
  ensure(svc: LbService): Decision {
    if (!managedByXlb(svc)) {
      this.release(svc.key);
      return { kind: 'unmanaged' };
    }
    const fail = (reason: FailureReason, message: string): Decision => {
      this.release(svc.key);
      return { kind: 'failed', reason, message };
    };
    const req = requestedAddress(svc);
    if (req.error) return fail('InvalidRequest', req.error);
    const open = this.openPools(svc, req.ip !== undefined);
    if (!Array.isArray(open)) return fail('NoPool', open.error);
    const cur = this.byKey.get(svc.key);

    if (req.ip !== undefined) {
      if (cur?.ip === req.ip) return { kind: 'assigned', ip: cur.ip, pool: cur.pool, changed: false };
      const pool = open.find((p) => p.contains(req.ip!));
      if (!pool) {
        return fail(
          'AddressOutsidePools',
          `requested address ${req.ip} is outside every pool open to this service${open.length ? ` (${open.map((p) => p.name).join(', ')})` : ' (none admits it)'}`,
        );
      }
      const owner = this.byIp.get(req.ip);
      if (owner !== undefined && owner !== svc.key) return fail('AddressConflict', `requested address ${req.ip} is already assigned to Service ${owner}`);
      this.assign(svc.key, req.ip, pool.name);
      return { kind: 'assigned', ip: req.ip, pool: pool.name, changed: true };
    }

    if (cur && open.some((p) => p.name === cur.pool && p.contains(cur.ip))) return { kind: 'assigned', ip: cur.ip, pool: cur.pool, changed: false };
    if (!open.length) return fail('NoPool', `no address pool admits this service (namespace ${svc.namespace}, its labels; pools with autoAssign: false need ${POOL_ANNOTATION} or an address request)`);
    for (const ip of svc.ingressIPs) {
      const pool = open.find((p) => p.contains(ip));
      if (pool && (this.byIp.get(ip) ?? svc.key) === svc.key) {
        this.assign(svc.key, ip, pool.name);
        return { kind: 'assigned', ip, pool: pool.name, changed: cur?.ip !== ip };
      }
    }
    for (const pool of open) {
      const ip = pool.firstFree((a) => this.byIp.has(a));
      if (ip) {
        this.assign(svc.key, ip, pool.name);
        return { kind: 'assigned', ip, pool: pool.name, changed: true };
      }
    }
    return fail('PoolExhausted', `no free address in ${open.map((p) => `pool ${p.name} (${p.size} addresses)`).join(', ')}`);
  }
}

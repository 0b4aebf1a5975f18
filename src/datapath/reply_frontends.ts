/**
 * xlb_reply_frontends, kept by the BPF implementation of LBMaps
 * (docs/datapath.md, "Replies and SNAT ports"): for each local backend
 * (address, port, protocol), the frontends from outside whose services may
 * send it flows. tc egress restores a reply from that backend by looking up
 * the conntrack entry of (client, each frontend) in turn, so that placing a
 * flow to a local backend writes nothing but its conntrack entry.
 *
 * The map is derived from what the control plane writes anyway: frontends
 * (key -> service ID), backends (ID -> address, port, locality) and Maglev
 * tables (service ID -> the backend IDs in its table). A backend's list
 * keeps the frontends it had while they exist and the backend stays local
 * (a flow placed through a frontend must find its way back for as long as
 * the flow lives), and takes new ones up to XLB_REPLY_FRONTENDS; a flow
 * through a frontend that is not listed has its reply stored the other way
 * (an element of xlb_replies), so the cap costs speed, never correctness.
 */
import { BpfMap } from './bpf.js';
import { decode, structs } from './codec.js';
import { ipToU32, u32ToIp } from '../util/ip.js';

/** Frontends one entry lists (XLB_REPLY_FRONTENDS of xlb_types.h: the length of the value's address array). */
export const REPLY_FRONTENDS = structs.xlb_reply_frontends.fields.addr.count!;
const VALUE = structs.xlb_reply_frontends;
const KEY = structs.xlb_backend_key;
// encodeKey writes these fields by hand: a change to the key's layout must fail here.
if (KEY.fields.addr.type !== '__be32' || KEY.fields.port.type !== '__be16' || KEY.fields.proto.size !== 1) {
  throw new Error('reply_frontends.ts: struct xlb_backend_key changed its field types; update encodeKey');
}

/** The numbers of `set` in ascending order (most sets here hold one). */
function sorted(set: Set<number> | undefined): Iterable<number> {
  if (!set || set.size < 2) return set ?? [];
  return [...set].sort((a, b) => a - b);
}

interface Frontend {
  addr: string;
  port: number;
  proto: number;
}
interface Backend {
  addr: string;
  port: number;
  proto: number;
}

const keyOf = (x: { addr: string; port: number; proto: number }) => `${x.addr}:${x.port}:${x.proto}`;

/** Changed lists one flush writes at once; more are written on the next turn of the event loop (see ReplyFrontends.flush). */
export const FLUSH_AT_ONCE = 4096;

/** Per backend ID, the number of the last table {@link distinctIds} saw it in. */
let seenIn = new Uint32Array(1024);
let tablesSeen = 0;

/**
 * The backend IDs a Maglev table holds (0, "no backend", left out). One
 * typed-array read per slot: a Set.add per slot cost ~50 ns, half a second
 * for the 10,000 tables of a large sync.
 */
function distinctIds(table: Uint32Array | undefined): Set<number> {
  const ids = new Set<number>();
  if (!table) return ids;
  if (++tablesSeen === 0xffffffff) {
    seenIn.fill(0);
    tablesSeen = 1;
  }
  for (let i = 0; i < table.length; i++) {
    const id = table[i];
    if (id === 0) continue;
    if (id >= seenIn.length) {
      const grown = new Uint32Array(Math.max(id + 1, 2 * seenIn.length));
      grown.set(seenIn);
      seenIn = grown;
    }
    if (seenIn[id] === tablesSeen) continue;
    seenIn[id] = tablesSeen;
    ids.add(id);
  }
  return ids;
}

/** The derived xlb_reply_frontends map and the indexes it is derived from. */
export class ReplyFrontends {
  /** Frontend key -> its service ID (outside traffic's; 0 frontends are not kept). */
  private readonly frontendService = new Map<string, number>();
  /** Service ID -> its frontends. */
  private readonly serviceFrontends = new Map<number, Map<string, Frontend>>();
  /** Local backend ID -> address, port, protocol. */
  private readonly localBackends = new Map<number, Backend & { key: string }>();
  /** Backend key -> local backend IDs with that address, port and protocol. */
  private readonly idsByKey = new Map<string, Set<number>>();
  /** Service ID -> backend IDs in its Maglev table. */
  private readonly tableIds = new Map<number, Set<number>>();
  /** Backend ID -> services whose tables hold it. */
  private readonly servicesOf = new Map<number, Set<number>>();
  /** What the map holds, by backend key. */
  private readonly written = new Map<string, Frontend[]>();
  /** Frontend key -> backend keys whose written lists name it. */
  private readonly listedIn = new Map<string, Set<string>>();
  private readonly dirty = new Set<string>();
  /** A flush waiting for the next turn of the event loop (see {@link flush}). */
  private later?: NodeJS.Immediate;
  /** Why the last flush made on a later turn failed; undefined once one succeeds. */
  lastError?: Error;

  /** @param map the pinned xlb_reply_frontends; what it holds (an earlier agent's) is read back and kept where still right */
  constructor(private readonly map: BpfMap) {
    for (const k of map.keys()) {
      const v = map.lookup(k);
      if (!v) continue;
      const key = decode('xlb_backend_key', k);
      const count = Math.min(v.readUInt32LE(VALUE.fields.count.offset), REPLY_FRONTENDS);
      const list: Frontend[] = [];
      for (let i = 0; i < count; i++) {
        list.push({ addr: u32ToIp(v.readUInt32BE(VALUE.fields.addr.offset + 4 * i)), port: v.readUInt16BE(VALUE.fields.port.offset + 2 * i), proto: key.proto });
      }
      this.setWritten(keyOf(key), list);
      this.dirty.add(keyOf(key));
    }
  }

  /** Frontend `f` now sends outside traffic to service `serviceId` (0: none). */
  putFrontend(f: Frontend, serviceId: number): void {
    const k = keyOf(f);
    const was = this.frontendService.get(k);
    if (was === serviceId) return;
    if (was !== undefined) this.dropFrontend(f);
    if (!serviceId) return;
    this.frontendService.set(k, serviceId);
    if (!this.serviceFrontends.has(serviceId)) this.serviceFrontends.set(serviceId, new Map());
    this.serviceFrontends.get(serviceId)!.set(k, { addr: f.addr, port: f.port, proto: f.proto });
    this.markService(serviceId);
  }

  /** Frontend `f` is gone. */
  dropFrontend(f: Frontend): void {
    const k = keyOf(f);
    const svc = this.frontendService.get(k);
    if (svc === undefined) return;
    this.frontendService.delete(k);
    const fs = this.serviceFrontends.get(svc);
    fs?.delete(k);
    if (fs && !fs.size) this.serviceFrontends.delete(svc);
    this.markService(svc);
    // Lists that name it lose it (it no longer exists: no flow can come through it).
    for (const bk of this.listedIn.get(k) ?? []) this.dirty.add(bk);
  }

  /** Backend `id` is now `b`, local or not. */
  putBackend(id: number, b: Backend, local: boolean): void {
    const old = this.localBackends.get(id);
    const k = keyOf(b);
    if (old && local && old.key === k) return;
    if (old) this.dropBackend(id);
    if (!local) return;
    this.localBackends.set(id, { addr: b.addr, port: b.port, proto: b.proto, key: k });
    if (!this.idsByKey.has(k)) this.idsByKey.set(k, new Set());
    this.idsByKey.get(k)!.add(id);
    this.dirty.add(k);
  }

  /** Backend `id` is gone. */
  dropBackend(id: number): void {
    const old = this.localBackends.get(id);
    if (!old) return;
    const k = old.key;
    this.localBackends.delete(id);
    const ids = this.idsByKey.get(k);
    ids?.delete(id);
    if (ids && !ids.size) this.idsByKey.delete(k);
    this.dirty.add(k);
  }

  /** Service `serviceId`'s table now holds backend IDs `table` (undefined: the table is gone). */
  putTable(serviceId: number, table: Uint32Array | undefined): void {
    const next = distinctIds(table);
    const prev = this.tableIds.get(serviceId) ?? new Set<number>();
    for (const id of prev) {
      if (next.has(id)) continue;
      this.servicesOf.get(id)?.delete(serviceId);
      this.markBackendId(id);
    }
    for (const id of next) {
      if (prev.has(id)) continue;
      if (!this.servicesOf.has(id)) this.servicesOf.set(id, new Set());
      this.servicesOf.get(id)!.add(serviceId);
      this.markBackendId(id);
    }
    if (next.size) this.tableIds.set(serviceId, next);
    else this.tableIds.delete(serviceId);
  }

  private markService(serviceId: number): void {
    for (const id of this.tableIds.get(serviceId) ?? []) this.markBackendId(id);
  }

  private markBackendId(id: number): void {
    const b = this.localBackends.get(id);
    if (b) this.dirty.add(b.key);
  }

  /**
   * Write what changed to the map: one batched update (and the deletes).
   * Up to {@link FLUSH_AT_ONCE} changed lists now; more (a large sync) on
   * the next turn of the event loop, so that the sync that caused them is
   * programmed without waiting for them: until a backend's list is written
   * a new flow to it has its reply stored in an element of xlb_replies
   * (slower, not wrong), and a list only ever loses a frontend that no
   * flow can come through any more (see the module comment).
   * @throws BpfError when the map refuses an update made now (the lists
   *   stay to be written at the next flush); a later write's error is kept
   *   in {@link lastError}
   */
  flush(): void {
    if (this.dirty.size <= FLUSH_AT_ONCE) return this.flushNow();
    this.later ??= setImmediate(() => {
      this.later = undefined;
      try {
        this.flushNow();
        this.lastError = undefined;
      } catch (e) {
        this.lastError = e as Error;
      }
    });
  }

  /**
   * Write every changed list now, a flush waiting for the next turn
   * included (a benchmark that measures the state the agent reaches once
   * that turn has come, without giving the event loop a turn).
   * @throws BpfError as {@link flush}
   */
  flushAll(): void {
    this.cancel();
    this.flushNow();
  }

  /** Stop a flush that is waiting for the next turn (the maps are closing). */
  cancel(): void {
    if (this.later) clearImmediate(this.later);
    this.later = undefined;
  }

  private flushNow(): void {
    const updates: Array<{ k: string; key: Buffer; value: Buffer }> = [];
    for (const k of this.dirty) {
      const w = this.writeKey(k);
      if (w) updates.push({ k, ...w });
    }
    this.dirty.clear();
    if (!updates.length) return;
    try {
      this.map.updateBatch(
        Buffer.concat(updates.map((u) => u.key)),
        Buffer.concat(updates.map((u) => u.value)),
        updates.length,
      );
    } catch {
      // A batch that fails part way (the map full) says little: write one
      // by one, so that the error names the entry it stops at; the lists
      // not written are written again at the next flush.
      for (let i = 0; i < updates.length; i++) {
        try {
          this.map.update(updates[i].key, updates[i].value);
        } catch (e) {
          for (const u of updates.slice(i)) {
            this.setWritten(u.k, undefined);
            this.dirty.add(u.k);
          }
          throw e;
        }
      }
    }
  }

  /** The list backend key `k` should have now: recorded, deleted from the map when empty, returned as the key and value to write when it changed. */
  private writeKey(k: string): { key: Buffer; value: Buffer } | undefined {
    const ids = this.idsByKey.get(k);
    const prev = this.written.get(k) ?? [];
    if (!ids) {
      if (this.setWritten(k, undefined)) this.map.delete(this.encodeKey(k));
      return undefined;
    }
    // Nothing listed and nothing to list (a sync writes backends and tables
    // before the frontends that lead to them): the common case, made cheap.
    if (!prev.length && !this.hasFrontends(ids)) return undefined;
    // Those it had, while they exist; then new ones, in a stable order.
    const next = prev.length ? prev.filter((f) => this.frontendService.has(keyOf(f))) : [];
    const proto = this.localBackends.get(ids.values().next().value!)!.proto;
    for (const id of sorted(ids)) {
      for (const svc of sorted(this.servicesOf.get(id))) {
        for (const f of this.serviceFrontends.get(svc)?.values() ?? []) {
          if (next.length >= REPLY_FRONTENDS) break;
          if (f.proto !== proto || next.some((x) => x.addr === f.addr && x.port === f.port)) continue;
          next.push(f);
        }
      }
    }
    if (next.length === prev.length && next.every((f, i) => f.addr === prev[i].addr && f.port === prev[i].port)) return undefined;
    if (!next.length) {
      if (this.setWritten(k, undefined)) this.map.delete(this.encodeKey(k));
      return undefined;
    }
    const v = Buffer.alloc(VALUE.size);
    next.forEach((f, i) => {
      v.writeUInt32BE(ipToU32(f.addr), VALUE.fields.addr.offset + 4 * i);
      v.writeUInt16BE(f.port, VALUE.fields.port.offset + 2 * i);
    });
    v.writeUInt32LE(next.length, VALUE.fields.count.offset);
    this.setWritten(k, next);
    return { key: this.encodeKey(k), value: v };
  }

  /** Whether a service whose table holds one of backend IDs `ids` has a frontend. */
  private hasFrontends(ids: Set<number>): boolean {
    for (const id of ids) for (const svc of this.servicesOf.get(id) ?? []) if (this.serviceFrontends.get(svc)?.size) return true;
    return false;
  }

  /** Record what backend key `k` lists (undefined: nothing); whether it listed anything before. */
  private setWritten(k: string, list: Frontend[] | undefined): boolean {
    const prev = this.written.get(k);
    for (const f of prev ?? []) this.listedIn.get(keyOf(f))?.delete(k);
    if (list) {
      this.written.set(k, list);
      for (const f of list) {
        const fk = keyOf(f);
        if (!this.listedIn.has(fk)) this.listedIn.set(fk, new Set());
        this.listedIn.get(fk)!.add(k);
      }
    } else this.written.delete(k);
    return prev !== undefined;
  }

  private encodeKey(k: string): Buffer {
    const [addr, port, proto] = k.split(':');
    const key = Buffer.alloc(KEY.size);
    key.writeUInt32BE(ipToU32(addr), KEY.fields.addr.offset);
    key.writeUInt16BE(Number(port), KEY.fields.port.offset);
    key.writeUInt8(Number(proto), KEY.fields.proto.offset);
    return key;
  }

  /** What the map should hold, for tests: backend key -> frontends ("addr:port"). */
  entries(): Map<string, string[]> {
    return new Map([...this.written].map(([k, l]) => [k, l.map((f) => `${f.addr}:${f.port}`)]));
  }
}

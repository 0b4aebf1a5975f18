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
import { encode, decode, structs } from './codec.js';
import { ipToU32, u32ToIp } from '../util/ip.js';

/** Frontends one entry lists (XLB_REPLY_FRONTENDS of xlb_types.h: the length of the value's address array). */
export const REPLY_FRONTENDS = structs.xlb_reply_frontends.fields.addr.count!;
const VALUE = structs.xlb_reply_frontends;

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

/** The derived xlb_reply_frontends map and the indexes it is derived from. */
export class ReplyFrontends {
  /** Frontend key -> its service ID (outside traffic's; 0 frontends are not kept). */
  private readonly frontendService = new Map<string, number>();
  /** Service ID -> its frontends. */
  private readonly serviceFrontends = new Map<number, Map<string, Frontend>>();
  /** Local backend ID -> address, port, protocol. */
  private readonly localBackends = new Map<number, Backend>();
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
    if (old && local && keyOf(old) === keyOf(b)) return;
    if (old) this.dropBackend(id);
    if (!local) return;
    const k = keyOf(b);
    this.localBackends.set(id, { addr: b.addr, port: b.port, proto: b.proto });
    if (!this.idsByKey.has(k)) this.idsByKey.set(k, new Set());
    this.idsByKey.get(k)!.add(id);
    this.dirty.add(k);
  }

  /** Backend `id` is gone. */
  dropBackend(id: number): void {
    const old = this.localBackends.get(id);
    if (!old) return;
    const k = keyOf(old);
    this.localBackends.delete(id);
    const ids = this.idsByKey.get(k);
    ids?.delete(id);
    if (ids && !ids.size) this.idsByKey.delete(k);
    this.dirty.add(k);
  }

  /** Service `serviceId`'s table now holds backend IDs `table` (undefined: the table is gone). */
  putTable(serviceId: number, table: Uint32Array | undefined): void {
    const next = new Set<number>(table ?? []);
    next.delete(0);
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
    if (b) this.dirty.add(keyOf(b));
  }

  /** Write what changed to the map. */
  flush(): void {
    for (const k of this.dirty) this.writeKey(k);
    this.dirty.clear();
  }

  private writeKey(k: string): void {
    const ids = this.idsByKey.get(k);
    const prev = this.written.get(k) ?? [];
    if (!ids) {
      if (this.setWritten(k, undefined)) this.map.delete(this.encodeKey(k));
      return;
    }
    // Those it had, while they exist; then new ones, in a stable order.
    const next = prev.filter((f) => this.frontendService.has(keyOf(f)));
    const have = new Set(next.map(keyOf));
    for (const id of [...ids].sort((a, b) => a - b)) {
      for (const svc of [...(this.servicesOf.get(id) ?? [])].sort((a, b) => a - b)) {
        for (const [fk, f] of this.serviceFrontends.get(svc) ?? []) {
          if (next.length >= REPLY_FRONTENDS) break;
          if (f.proto !== this.localBackends.get(id)!.proto || have.has(fk)) continue;
          have.add(fk);
          next.push(f);
        }
      }
    }
    if (next.length === prev.length && next.every((f, i) => keyOf(f) === keyOf(prev[i]))) return;
    if (!next.length) {
      if (this.setWritten(k, undefined)) this.map.delete(this.encodeKey(k));
      return;
    }
    const v = Buffer.alloc(VALUE.size);
    next.forEach((f, i) => {
      v.writeUInt32BE(ipToU32(f.addr), VALUE.fields.addr.offset + 4 * i);
      v.writeUInt16BE(f.port, VALUE.fields.port.offset + 2 * i);
    });
    v.writeUInt32LE(next.length, VALUE.fields.count.offset);
    this.map.update(this.encodeKey(k), v);
    this.setWritten(k, next);
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
    return encode('xlb_backend_key', { addr, port: Number(port), proto: Number(proto) });
  }

  /** What the map should hold, for tests: backend key -> frontends ("addr:port"). */
  entries(): Map<string, string[]> {
    return new Map([...this.written].map(([k, l]) => [k, l.map((f) => `${f.addr}:${f.port}`)]));
  }
}

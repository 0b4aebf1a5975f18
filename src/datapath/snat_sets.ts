/**
 * SNATed flows in xlb_snat_sets (xdp/include/xlb_snat.h), read and written
 * the way the datapath does: a flow lives in the set its hash names, its
 * SNAT port is one of a set's ports (min + set + k * sets), and a flow that
 * holds another set's port leaves a pointer there. Used to list and count
 * SNATed flows (`xlb ct list`, metrics), to move flows into the sets when
 * an upgrade finds them in an older layout, and by tests to predict and set
 * up the datapath.
 */
import type { BpfMap } from './bpf.js';
import { decode, encode, enums, type StructValue } from './codec.js';
import { structs } from './layouts.generated.js';
import { jhash3Words } from '../maglev/flowhash.js';
import { ipToU32 } from '../util/ip.js';

/** Ways of a set (XLB_SNAT_WAYS). */
export const SNAT_WAYS = enums.xlb_limits.XLB_SNAT_WAYS;
/** Ports of one set a flow may take (XLB_SNAT_LANES). */
export const SNAT_LANES = enums.xlb_limits.XLB_SNAT_LANES;
const SEED = 0x736e6174; // XLB_SNAT_SEED, "snat"
const SET = structs.xlb_snat_set;
const WAY_SIZE = structs.xlb_snat_flow.size;
const FLOW_AT = structs.xlb_snat_flow.fields.flow.offset;
const CT_AT = structs.xlb_snat_flow.fields.ct.offset;
const POINTER = enums.xlb_ct_flags.XLB_CT_F_POINTER;

/** A flow as it arrived (client -> frontend); ports in host order. */
export interface SnatFlowKey {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
}

/** The SNAT port range's default (datapath.snatPorts; XLB_SNAT_PORT_MIN/MAX_DEFAULT). */
export const SNAT_PORTS_DEFAULT = { min: enums.xlb_limits.XLB_SNAT_PORT_MIN_DEFAULT, max: enums.xlb_limits.XLB_SNAT_PORT_MAX_DEFAULT } as const;

/** The sizes the datapath was loaded with: sets, and the SNAT port range (host order, inclusive). */
export interface SnatSizes {
  sets: number;
  portMin: number;
  portMax: number;
}

/** One used way of a set. */
export interface SnatWay {
  set: number;
  way: number;
  flow: SnatFlowKey;
  ct: StructValue<'xlb_ct_entry'>;
  /** A pointer: the flow lives in its own set and holds this set's port. */
  pointer: boolean;
}

function wire32(addr: string): number {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ipToU32(addr));
  return b.readUInt32LE(0);
}
const wire16 = (port: number): number => ((port & 0xff) << 8) | (port >> 8);

/**
 * Sets for a table of `flows` SNATed flows: 32 ways each, a power of two
 * (the datapath masks instead of dividing), at most one set per port of the
 * range (a set's ports are min + set + k * sets).
 */
export function snatSetCount(flows: number, portMin: number, portMax: number): number {
  const pow2Floor = (n: number) => 2 ** Math.floor(Math.log2(Math.max(1, n)));
  const pow2Ceil = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
  return Math.min(pow2Floor(portMax - portMin + 1), pow2Ceil(Math.ceil(flows / SNAT_WAYS)));
}

/** xlb_snat_flow_hash: names a flow's set (hash % sets) and tag. */
export function snatFlowHash(f: SnatFlowKey): number {
  return jhash3Words(wire32(f.saddr), wire32(f.daddr), ((wire16(f.sport) << 16) | wire16(f.dport)) >>> 0, (SEED + f.proto) >>> 0);
}

/** xlb_snat_reply_hash: a reply's tag, from backend:bport -> SNAT port. */
export function snatReplyHash(backend: string, bport: number, port: number, proto: number): number {
  return jhash3Words(wire32(backend), ((wire16(bport) << 16) | wire16(port)) >>> 0, proto, SEED);
}

/** xlb_snat_tag: one byte of a hash, never 0. */
export function snatTag(hash: number): number {
  return hash >>> 24 || 1;
}

/** The set a flow lives in. */
export function snatSetOfFlow(f: SnatFlowKey, sets: number): number {
  return snatFlowHash(f) % sets;
}

/** The set of SNAT port `port` (host order). */
export function snatSetOfPort(port: number, s: SnatSizes): number {
  return (port - s.portMin) % s.sets;
}

/** The ports of set `set`, in the order the datapath tries them. */
export function snatPortsOfSet(set: number, s: SnatSizes): number[] {
  const out: number[] = [];
  for (let k = 0; k < SNAT_LANES; k++) {
    const port = s.portMin + set + k * s.sets;
    if (port > s.portMax) break;
    out.push(port);
  }
  return out;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function decodeWay(buf: Buffer, set: number, way: number): SnatWay | undefined {
  if (!buf[SET.fields.tag.offset + way]) return undefined;
  const at = SET.fields.way.offset + way * WAY_SIZE;
  const ct = decode('xlb_ct_entry', buf, at + CT_AT);
  if (!ct.seen) return undefined;
  const k = decode('xlb_flow_key', buf, at + FLOW_AT);
  return { set, way, flow: { saddr: k.saddr, daddr: k.daddr, sport: k.sport, dport: k.dport, proto: k.proto }, ct, pointer: (ct.flags & POINTER) !== 0 };
}

/** The used ways of set `set` as read from `buf` (one value of xlb_snat_sets). */
export function waysOf(buf: Buffer, set: number): SnatWay[] {
  const out: SnatWay[] = [];
  for (let w = 0; w < SNAT_WAYS; w++) {
    const e = decodeWay(buf, set, w);
    if (e) out.push(e);
  }
  return out;
}

/**
 * Every used way of the map (flows and pointers), read in batches.
 * @param batch sets per batched lookup
 */
export function readSnatWays(map: BpfMap, batch = 256): SnatWay[] {
  const out: SnatWay[] = [];
  for (const { key, value } of map.entries(batch)) out.push(...waysOf(value, key.readUInt32LE(0)));
  return out;
}

/** The SNATed flow `flow`, where the datapath finds it, or undefined. */
export function findSnatFlow(map: BpfMap, flow: SnatFlowKey, sizes: SnatSizes): SnatWay | undefined {
  const hash = snatFlowHash(flow);
  const set = hash % sizes.sets;
  const buf = map.lookup(u32(set));
  if (!buf) return undefined;
  const tag = snatTag(hash);
  for (let w = 0; w < SNAT_WAYS; w++) {
    if (buf[SET.fields.tag.offset + w] !== tag) continue;
    const e = decodeWay(buf, set, w);
    if (e && !e.pointer && sameFlow(e.flow, flow)) return e;
  }
  return undefined;
}

const sameFlow = (a: SnatFlowKey, b: SnatFlowKey): boolean => a.saddr === b.saddr && a.daddr === b.daddr && a.sport === b.sport && a.dport === b.dport && a.proto === b.proto;

function writeWay(buf: Buffer, way: number, flow: SnatFlowKey, ct: Partial<StructValue<'xlb_ct_entry'>>, tag: number): void {
  const at = SET.fields.way.offset + way * WAY_SIZE;
  encode('xlb_flow_key', flow, buf, at + FLOW_AT);
  encode('xlb_ct_entry', ct, buf, at + CT_AT);
  buf[SET.fields.rtag.offset + way] = snatTag(snatReplyHash(String(ct.backend_addr), ct.backend_port ?? 0, ct.snat_port ?? 0, flow.proto));
  buf[SET.fields.tag.offset + way] = tag;
}

/**
 * Put SNATed flow `flow` with conntrack state `ct` (snat_port set: the port
 * it holds) where the datapath finds it, keeping its port: an empty way of
 * its set, and when the port is another set's, a pointer in an empty way
 * there. Nothing is evicted: a flow that finds no empty way, or its port
 * held towards its backend, is left out (as when the table is full).
 * Not for a map the datapath writes at the same time (an upgrade fills the
 * new map before its programs are attached; tests).
 * @returns whether it was placed
 */
export function placeSnatFlow(map: BpfMap, sizes: SnatSizes, flow: SnatFlowKey, ct: Partial<StructValue<'xlb_ct_entry'>>): boolean {
  const port = ct.snat_port ?? 0;
  if (!ct.seen || port < sizes.portMin || port > sizes.portMax) return false;
  const hash = snatFlowHash(flow);
  const home = hash % sizes.sets;
  const portSet = snatSetOfPort(port, sizes);
  const homeBuf = map.lookup(u32(home));
  if (!homeBuf) return false;
  const held = (buf: Buffer, set: number) => waysOf(buf, set).some((w) => w.ct.snat_port === port && w.ct.backend_addr === ct.backend_addr && w.ct.backend_port === ct.backend_port && w.flow.proto === flow.proto);
  const emptyWay = (buf: Buffer) => [...Array(SNAT_WAYS).keys()].find((w) => !buf[SET.fields.tag.offset + w]);
  const flags = (ct.flags ?? 0) & ~POINTER;
  if (portSet === home) {
    const w = emptyWay(homeBuf);
    if (w === undefined || held(homeBuf, home)) return false;
    writeWay(homeBuf, w, flow, { ...ct, flags }, snatTag(hash));
    map.update(u32(home), homeBuf);
    return true;
  }
  const portBuf = map.lookup(u32(portSet));
  if (!portBuf) return false;
  const w = emptyWay(homeBuf);
  const p = emptyWay(portBuf);
  if (w === undefined || p === undefined || held(portBuf, portSet)) return false;
  writeWay(portBuf, p, flow, { ...ct, flags: flags | POINTER }, snatTag(hash));
  map.update(u32(portSet), portBuf);
  writeWay(homeBuf, w, flow, { ...ct, flags }, snatTag(hash));
  map.update(u32(home), homeBuf);
  return true;
}

/**
 * Remove SNATed flow `flow` and its pointer, as the datapath forgets a flow
 * (tests: a flow whose state was lost).
 * @returns whether it was there
 */
export function removeSnatFlow(map: BpfMap, sizes: SnatSizes, flow: SnatFlowKey): boolean {
  const w = findSnatFlow(map, flow, sizes);
  if (!w) return false;
  const clear = (set: number, way: number) => {
    const buf = map.lookup(u32(set))!;
    buf[SET.fields.tag.offset + way] = 0;
    buf[SET.fields.rtag.offset + way] = 0;
    buf.writeUInt32LE(0, SET.fields.way.offset + way * WAY_SIZE + CT_AT + structs.xlb_ct_entry.fields.seen.offset);
    map.update(u32(set), buf);
  };
  const portSet = snatSetOfPort(w.ct.snat_port, sizes);
  if (portSet !== w.set) {
    const buf = map.lookup(u32(portSet));
    const p = buf && waysOf(buf, portSet).find((x) => x.pointer && sameFlow(x.flow, flow));
    if (p) clear(portSet, p.way);
  }
  clear(w.set, w.way);
  return true;
}

/**
 * The datapath under BPF_PROG_TEST_RUN: loads xdp/build/xlb_xdp.bpf.o and
 * xlb_tc.bpf.o with one private pin root (`/sys/fs/bpf/xlb/test-<random>`,
 * so both programs share their maps exactly as the agent loads them), and
 * gives the tests map writes in the model's terms (frontends, backends,
 * Maglev tables) and counter reads summed over CPUs.
 *
 * Needs root and `make -C xdp`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { BpfObject, BpfMap, BpfProgram, ensureBpffs, PIN_BASE, removePins } from '../../src/datapath/bpf.js';
import { encode, decode, u32Key, enums, structs, type StructValue } from '../../src/datapath/codec.js';
import { BpfLBMaps, lbMapSetOf } from '../../src/datapath/maps.js';
import { ipToU32 } from '../../src/util/ip.js';
import { REPLY_WAYS, replyHash } from '../../src/datapath/replies.js';
import { findSnatFlow, placeSnatFlow, readSnatWays, removeSnatFlow, snatSetOfPort, snatPortsOfSet, snatSetOfFlow, SNAT_PORTS_DEFAULT, type SnatSizes } from '../../src/datapath/snat_sets.js';
import { replySizing } from '../../src/datapath/datapath.js';
import { ClockProbe, clockRodata, kernelHz, secondsToTicks, DEFAULT_CONNTRACK_LIFETIMES, type ConntrackLifetimes } from '../../src/datapath/clock.js';
import { ipIn } from '../helpers/system.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Paths of the built objects. */
export const OBJ = {
  xdp: path.join(root, 'xdp/build/xlb_xdp.bpf.o'),
  tc: path.join(root, 'xdp/build/xlb_tc.bpf.o'),
  sock: path.join(root, 'xdp/build/xlb_sock.bpf.o'),
  floor: path.join(root, 'xdp/build/xlb_bench_floor.bpf.o'),
  pass: path.join(root, 'xdp/build/xlb_xdp_pass.bpf.o'),
  clock: path.join(root, 'xdp/build/xlb_clock.bpf.o'),
};

/** Build the objects if needed (make is incremental). */
export function buildObjects(): void {
  execFileSync('make', ['-s', '-C', path.join(root, 'xdp')], { stdio: 'inherit' });
}

/** XDP verdicts (enum xdp_action) and TC_ACT_OK. */
export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
export const TC_ACT_OK = 0;

/** Drop reasons by name (from xlb_types.h via BTF). */
export const DROP = enums.xlb_drop_reason;
export type DropReason = Exclude<keyof typeof DROP, 'XLB_DROP_REASON_MAX'>;

/** Service flags: XLB_SVC_F_REMOTE, and a harness-only bit that leaves it out (a service whose backends are all local). */
export const SVC_REMOTE = enums.xlb_service_flags.XLB_SVC_F_REMOTE;
export const SVC_LOCAL_ONLY = 1 << 30;
/** Backend flags. */
export const BE_LOCAL = enums.xlb_backend_flags.XLB_BE_F_LOCAL;
export const CT_SNAT = enums.xlb_ct_flags.XLB_CT_F_SNAT;
export const CT_ESTABLISHED = enums.xlb_ct_flags.XLB_CT_F_ESTABLISHED;
export const CT_CLOSING = enums.xlb_ct_flags.XLB_CT_F_CLOSING;

/** Seconds as ticks of the datapath's lifetime clock (about 1 s; xlb_clock.h), rounded up, as the loader converts lifetimes. */
export function ticks(seconds: number): number {
  return secondsToTicks(seconds, kernelHz(OBJ.clock));
}

/** A 4-byte host-order u32. */
const u32le = (n: number): Buffer => u32Key(n);

/** Options of {@link Datapath.load}. */
export interface LoadOptions {
  nodeAddr?: string;
  snatPortMin?: number;
  snatPortMax?: number;
  /** max_entries overrides of the XDP object's maps. */
  maxEntries?: Record<string, number>;
  /** Load the tc program too (default true). */
  withTc?: boolean;
  /** Conntrack lifetimes (s); left out, the datapath's defaults. */
  conntrackLifetimes?: ConntrackLifetimes;
  /** The tc object's hairpin address (datapath.hairpinAddress); left out, hairpin flows are not served. */
  hairpinAddr?: string;
  /** The SYN-flood guard: new flows per tick and CPU with conntrack state (xlb_flood_limit); left out, no guard. */
  floodLimit?: number;
  /** Flow events per tick and CPU (xlb_events_per_tick); left out, no events. */
  eventsPerTick?: number;
  /** Cache next hops in conntrack entries (xlb_nh_gen starts at 1; default true); false leaves the generation 0 (no caching). */
  nextHopCache?: boolean;
  /**
   * Load the socket hooks too (xlb_sock.bpf.o); `hostNetnsCookie` turns on
   * socketLB.hostNamespaceOnly with that namespace as the host's.
   */
  withSock?: { hostNetnsCookie?: bigint };
}

/** Both programs of one datapath instance and its maps. */
export class Datapath {
  readonly ingress: BpfProgram;
  readonly egress?: BpfProgram;
  /** tc ingress of pod interfaces (with the tc object). */
  readonly podIngress?: BpfProgram;
  /** The socket hooks by their ELF section (with `withSock`). */
  readonly sock?: Record<'cgroup/connect4' | 'cgroup/sendmsg4' | 'cgroup/recvmsg4' | 'cgroup/getpeername4', BpfProgram>;
  /** The control plane's own map writer: tests exercise the code the agent runs. */
  readonly lbmaps: BpfLBMaps;
  private constructor(
    readonly pinRoot: string,
    private readonly xdpObj: BpfObject,
    private readonly tcObj: BpfObject | undefined,
    private readonly sockObj: BpfObject | undefined,
    /** Sets of xlb_replies, and of xlb_snat_sets with the SNAT port range, as loaded. */
    readonly replySets: number,
    readonly snat: SnatSizes,
  ) {
    this.ingress = xdpObj.program('xlb_xdp_ingress');
    this.egress = tcObj?.program('xlb_tc_egress');
    this.podIngress = tcObj?.program('xlb_tc_pod_ingress');
    if (sockObj) {
      this.sock = {
        'cgroup/connect4': sockObj.program('xlb_sock_connect4'),
        'cgroup/sendmsg4': sockObj.program('xlb_sock_sendmsg4'),
        'cgroup/recvmsg4': sockObj.program('xlb_sock_recvmsg4'),
        'cgroup/getpeername4': sockObj.program('xlb_sock_getpeername4'),
      };
    }
    const m = (name: string) => xdpObj.map(name);
    this.lbmaps = new BpfLBMaps(lbMapSetOf(xdpObj));
  }

  /** Load a fresh instance with private pins. */
  static load(opts: LoadOptions = {}): Datapath {
    ensureBpffs();
    const pinRoot = `${PIN_BASE}/test-${randomBytes(4).toString('hex')}`;
    const rodata: Record<string, number | Buffer> = {};
    if (opts.nodeAddr) {
      const be32 = Buffer.alloc(4);
      be32.writeUInt32BE(ipToU32(opts.nodeAddr));
      rodata.xlb_node_addr = be32;
    }
    if (opts.snatPortMin !== undefined) rodata.xlb_snat_port_min = opts.snatPortMin;
    if (opts.snatPortMax !== undefined) rodata.xlb_snat_port_max = opts.snatPortMax;
    const hz = kernelHz(OBJ.clock);
    Object.assign(rodata, clockRodata(hz, opts.conntrackLifetimes ?? DEFAULT_CONNTRACK_LIFETIMES));
    // Replies are placed by hash modulo these (xlb_replies.h); the harness reads them back the same way.
    const sizing = replySizingOf(opts.maxEntries, { min: opts.snatPortMin ?? SNAT_MIN_DEFAULT, max: opts.snatPortMax ?? SNAT_MAX_DEFAULT });
    Object.assign(rodata, sizing.rodata);
    if (opts.floodLimit) rodata.xlb_flood_limit = opts.floodLimit;
    if (opts.eventsPerTick) rodata.xlb_events_per_tick = opts.eventsPerTick;
    let xdpObj: BpfObject | undefined;
    let tcObj: BpfObject | undefined;
    let sockObj: BpfObject | undefined;
    try {
      xdpObj = BpfObject.open(OBJ.xdp, { pinRoot, rodata, maxEntries: sizing.maxEntries });
      xdpObj.load();
      if (opts.nextHopCache !== false) xdpObj.map('xlb_nh_gen').update(u32le(0), u32le(1));
      if (opts.withTc !== false) {
        const tcRodata: Record<string, number | Buffer> = { ...clockRodata(hz, opts.conntrackLifetimes ?? DEFAULT_CONNTRACK_LIFETIMES), xlb_reply_sets: sizing.rodata.xlb_reply_sets };
        if (opts.floodLimit) tcRodata.xlb_flood_limit = opts.floodLimit;
        if (opts.hairpinAddr) {
          tcRodata.xlb_hairpin_addr = Buffer.alloc(4);
          (tcRodata.xlb_hairpin_addr as Buffer).writeUInt32BE(ipToU32(opts.hairpinAddr));
        }
        if (opts.eventsPerTick) tcRodata.xlb_events_per_tick = opts.eventsPerTick;
        tcObj = BpfObject.open(OBJ.tc, { pinRoot, maxEntries: sizing.maxEntries, rodata: tcRodata });
        // One ring of flow events for every program, as the agent loads them.
        for (const m of ['xlb_events', 'xlb_event_limit']) tcObj.reuseMap(m, xdpObj.map(m));
        tcObj.load();
      }
      if (opts.withSock) {
        const cookie = opts.withSock.hostNetnsCookie;
        const sockRodata: Record<string, number | bigint> = { xlb_tick_shift: clockRodata(hz).xlb_tick_shift };
        if (cookie !== undefined) Object.assign(sockRodata, { xlb_sock_host_only: 1, xlb_host_netns_cookie: cookie });
        if (opts.eventsPerTick) sockRodata.xlb_events_per_tick = opts.eventsPerTick;
        sockObj = BpfObject.open(OBJ.sock, { pinRoot, maxEntries: sizing.maxEntries, rodata: sockRodata });
        for (const m of ['xlb_events', 'xlb_event_limit']) sockObj.reuseMap(m, xdpObj.map(m));
        sockObj.load();
      }
      return new Datapath(pinRoot, xdpObj, tcObj, sockObj, sizing.rodata.xlb_reply_sets, { sets: sizing.rodata.xlb_snat_set_count, portMin: Number(rodata.xlb_snat_port_min ?? SNAT_MIN_DEFAULT), portMax: Number(rodata.xlb_snat_port_max ?? SNAT_MAX_DEFAULT) });
    } catch (e) {
      sockObj?.close();
      tcObj?.close();
      xdpObj?.close();
      removePins(pinRoot);
      throw e;
    }
  }

  /** A map of the instance by name. */
  map(name: string): BpfMap {
    return this.xdpObj.map(name);
  }

  /**
   * Add (or replace) frontend addr:port/proto -> service `serviceId` for
   * traffic from outside, and `internalId` for traffic from inside the
   * cluster (default none).
   */
  addFrontend(addr: string, port: number, proto: number, serviceId: number, flags = 0, internalId = 0, affinityTimeout?: number): void {
    // XLB_SVC_F_REMOTE unless told otherwise (`local: true` in flags' place: SVC_LOCAL_ONLY): SNATed flows are looked for first.
    const service: { id: number; flags: number; internal_id: number; affinity_timeout?: number } = { id: serviceId, flags: serviceId && !(flags & SVC_LOCAL_ONLY) ? flags | SVC_REMOTE : flags & ~SVC_LOCAL_ONLY, internal_id: internalId };
    if (affinityTimeout !== undefined) service.affinity_timeout = affinityTimeout;
    this.lbmaps.putFrontends([{ key: { addr, port, proto }, service }]);
  }

  /** Write backend `id`. */
  setBackend(id: number, b: { addr: string; port: number; proto: number; flags?: number }): void {
    this.lbmaps.putBackends([{ id, backend: { addr: b.addr, port: b.port, proto: b.proto, flags: b.flags ?? 0 } }]);
  }

  /** Zero backend `id` (how the control plane removes one). */
  removeBackend(id: number): void {
    this.lbmaps.deleteBackends([id]);
  }

  /**
   * Install service `serviceId`'s Maglev table, a 0-based list of M backend
   * IDs, as the agent does (free slots of a slab, then the descriptor).
   */
  setTable(serviceId: number, table: number[]): void {
    this.lbmaps.putMaglevTables([{ serviceId, table: Uint32Array.from(table) }]);
  }

  /** Write service `serviceId`'s table descriptor in xlb_maglev as given (slab << 20 | first slot). */
  setDescriptor(serviceId: number, descriptor: number): void {
    this.map('xlb_maglev').update(u32le(serviceId), u32le(descriptor));
  }

  /** Remove service `serviceId`'s table. */
  removeTable(serviceId: number): void {
    this.lbmaps.deleteMaglevTables([serviceId]);
  }

  /** The conntrack entry of a flow as stored: in xlb_conntrack, or for a SNATed flow in its set of xlb_snat_sets. */
  private ctValue(flow: FlowKey): StructValue<'xlb_ct_entry'> | undefined {
    const v = this.map('xlb_conntrack').lookup(flowKey(flow));
    if (v) return decode('xlb_ct_entry', v);
    return findSnatFlow(this.map('xlb_snat_sets'), flow, this.snat)?.ct;
  }

  /** Conntrack entry of a client -> frontend flow, if any (without its cached next hop, {@link nextHop}, and reply_seen, {@link replySeen}). */
  conntrack(flow: FlowKey): Omit<StructValue<'xlb_ct_entry'>, NextHopField> | undefined {
    const v = this.ctValue(flow);
    if (!v) return undefined;
    const { nh_gen, nh_ifindex, nh_dmac, nh_smac, nh_mtu, pad, reply_seen, ...rest } = v;
    return rest;
  }

  /** When a reply last found the flow's conntrack entry (through xlb_reply_frontends, or a SNATed flow's own) (ticks; 0: never), if it has an entry. */
  replySeen(flow: FlowKey): number | undefined {
    return this.ctValue(flow)?.reply_seen;
  }

  /** The next hop cached in a flow's conntrack entry (MACs as aa:bb:.. strings), if it has an entry. */
  nextHop(flow: FlowKey): { gen: number; ifindex: number; dmac: string; smac: string; mtu: number } | undefined {
    let v = this.map('xlb_conntrack').lookup(flowKey(flow));
    if (!v) {
      const w = findSnatFlow(this.map('xlb_snat_sets'), flow, this.snat);
      if (!w) return undefined;
      const buf = this.map('xlb_snat_sets').lookup(u32le(w.set))!;
      const at = structs.xlb_snat_set.fields.way.offset + w.way * structs.xlb_snat_flow.size + structs.xlb_snat_flow.fields.ct.offset;
      v = buf.subarray(at, at + structs.xlb_ct_entry.size);
    }
    const off = structs.xlb_ct_entry.fields;
    const mac = (o: number) => [...v.subarray(o, o + 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    return { gen: v.readUInt32LE(off.nh_gen.offset), ifindex: v.readUInt32LE(off.nh_ifindex.offset), dmac: mac(off.nh_dmac.offset), smac: mac(off.nh_smac.offset), mtu: v.readUInt16LE(off.nh_mtu.offset) };
  }

  /** Every SNATed flow in xlb_snat_sets (not the pointers). */
  snatFlows(): Array<{ flow: FlowKey; ct: StructValue<'xlb_ct_entry'>; set: number }> {
    return readSnatWays(this.map('xlb_snat_sets')).filter((w) => !w.pointer).map((w) => ({ flow: w.flow, ct: w.ct, set: w.set }));
  }

  /** The set of xlb_snat_sets a flow lives in, and the SNAT ports that set gives (xlb_snat.h). */
  snatHome(flow: FlowKey): { set: number; ports: number[] } {
    const set = snatSetOfFlow(flow, this.snat.sets);
    return { set, ports: snatPortsOfSet(set, this.snat) };
  }

  /** Forget a SNATed flow (and its pointer), as if its state were lost; whether it was there. */
  dropSnatFlow(flow: FlowKey): boolean {
    return removeSnatFlow(this.map('xlb_snat_sets'), this.snat, flow);
  }

  /** The set of xlb_snat_sets SNAT port `port` belongs to. */
  snatSetOfPort(port: number): number {
    return snatSetOfPort(port, this.snat);
  }

  /** Set the next-hop generation (xlb_nh_gen), as the agent bumps it. */
  setNextHopGeneration(gen: number): void {
    this.map('xlb_nh_gen').update(u32le(0), u32le(gen));
  }

  /**
   * How the reply with this 5-tuple is restored, if it is: a reply to a
   * SNAT port by its flow in xlb_snat_sets (xlb_snat.h; given in the shape
   * of a reply element: SNAT, REPLIED once answered, `seen` its last
   * reply or else its creation), else its element of its xlb_replies set, or
   * its xlb_rnat entry (a set that was full).
   */
  rnat(reply: FlowKey): Omit<StructValue<'xlb_reply_slot'>, ReplyTupleField> | undefined {
    const w = this.snatReply(reply);
    if (w) {
      return {
        vip: w.flow.daddr,
        client_addr: w.flow.saddr,
        vip_port: w.flow.dport,
        client_port: w.flow.sport,
        service_id: w.ct.service_id,
        flags: CT_SNAT | (w.ct.reply_seen ? CT_REPLIED : 0) | (w.ct.flags & enums.xlb_ct_flags.XLB_CT_F_CLOSING),
        seen: w.ct.reply_seen || w.ct.seen,
      };
    }
    const at = this.replyPlace(reply);
    if (!at) return undefined;
    const { reply_saddr, reply_daddr, reply_sport, reply_dport, reply_proto, pad, ...rest } = decode('xlb_reply_slot', at.map.lookup(at.key)!);
    return rest;
  }

  /** The SNATed flow a reply to a SNAT port restores to (through a pointer too), if any. */
  snatReply(reply: FlowKey): { flow: FlowKey; ct: StructValue<'xlb_ct_entry'> } | undefined {
    if (reply.dport < this.snat.portMin || reply.dport > this.snat.portMax) return undefined;
    const set = snatSetOfPort(reply.dport, this.snat);
    const w = readSnatWays(this.map('xlb_snat_sets')).find((x) => x.set === set && x.ct.snat_port === reply.dport && x.ct.backend_addr === reply.saddr && x.ct.backend_port === reply.sport && x.flow.proto === reply.proto);
    if (!w) return undefined;
    if (!w.pointer) return w;
    const home = findSnatFlow(this.map('xlb_snat_sets'), w.flow, this.snat);
    return home && home.ct.snat_port === reply.dport ? home : undefined;
  }

  /** Where the element restoring a (not SNATed) `reply` is: map and key, or undefined. */
  replyPlace(reply: FlowKey): { map: BpfMap; key: Buffer } | undefined {
    const is = (v: Buffer | undefined) => {
      if (!v) return false;
      const e = decode('xlb_reply_slot', v);
      return e.seen !== 0 && e.reply_saddr === reply.saddr && e.reply_daddr === reply.daddr && e.reply_sport === reply.sport && e.reply_dport === reply.dport && e.reply_proto === reply.proto;
    };
    for (const key of this.replyWays(reply)) if (is(this.map('xlb_replies').lookup(key))) return { map: this.map('xlb_replies'), key };
    const v = this.map('xlb_rnat').lookup(flowKey(reply));
    if (v && decode('xlb_reply_slot', v).seen !== 0) return { map: this.map('xlb_rnat'), key: flowKey(reply) };
    return undefined;
  }

  /** Keys of the ways of the xlb_replies set of `reply`. */
  replyWays(reply: FlowKey): Buffer[] {
    const set = replyHash(reply) % this.replySets;
    return Array.from({ length: REPLY_WAYS }, (_, i) => u32le(set * REPLY_WAYS + i));
  }

  /**
   * Write a conntrack entry directly (to age a flow in tests): a SNATed
   * one (flags SNAT) over its flow in xlb_snat_sets, or placed there with
   * its port when it has none; others into xlb_conntrack.
   */
  putConntrack(flow: FlowKey, entry: Partial<StructValue<'xlb_ct_entry'>>): void {
    if ((entry.flags ?? 0) & CT_SNAT) {
      const sets = this.map('xlb_snat_sets');
      const w = findSnatFlow(sets, flow, this.snat);
      if (!w) {
        if (!placeSnatFlow(sets, this.snat, flow, { seen: this.nowTicks(), ...entry })) throw new Error(`no way for SNATed flow ${JSON.stringify(flow)}`);
        return;
      }
      const buf = sets.lookup(u32le(w.set))!;
      const at = structs.xlb_snat_set.fields.way.offset + w.way * structs.xlb_snat_flow.size + structs.xlb_snat_flow.fields.ct.offset;
      encode('xlb_ct_entry', { ...w.ct, ...entry }, buf, at);
      sets.update(u32le(w.set), buf);
      return;
    }
    this.map('xlb_conntrack').update(flowKey(flow), encode('xlb_ct_entry', entry));
  }

  /**
   * Write how the reply `reply` is restored, where the datapath looks for
   * it: where it is already, else a SNAT flow's element of xlb_snat (which
   * then holds the port), else the first empty way of its xlb_replies set
   * (way 0 when none is). `seen` defaults to now.
   */
  putRnat(reply: FlowKey, entry: Partial<StructValue<'xlb_reply_slot'>>): void {
    const value = encode('xlb_reply_slot', {
      seen: this.nowTicks(),
      ...entry,
      reply_saddr: reply.saddr,
      reply_daddr: reply.daddr,
      reply_sport: reply.sport,
      reply_dport: reply.dport,
      reply_proto: reply.proto,
    });
    if ((entry.flags ?? 0) & CT_SNAT) throw new Error('putRnat: a SNATed flow has no reply element (putConntrack with its snat_port)');
    const at = this.replyPlace(reply);
    if (at) return at.map.update(at.key, value);
    const ways = this.replyWays(reply);
    const free = ways.find((k) => decode('xlb_reply_slot', this.map('xlb_replies').lookup(k)!).seen === 0) ?? ways[0];
    this.map('xlb_replies').update(free, value);
  }

  /** Packets and bytes of service `id`, summed over CPUs. */
  serviceStats(id: number): { packets: bigint; bytes: bigint } {
    return this.lbmaps.readServiceStats([id]).get(id)!;
  }

  /** Drop counters by reason, summed over CPUs. */
  drops(): Record<DropReason, bigint> {
    const byName = this.lbmaps.readDrops();
    const out = {} as Record<DropReason, bigint>;
    for (const name of Object.keys(DROP)) {
      if (name !== 'XLB_DROP_REASON_MAX') out[name as DropReason] = byName[name.replace(/^XLB_DROP_/, '').toLowerCase()];
    }
    return out;
  }

  private clock?: ClockProbe;
  /** Now in the datapath's ticks (the unit of `seen`), read through xlb_clock.bpf.o. */
  nowTicks(): number {
    this.clock ??= new ClockProbe(OBJ.clock, kernelHz(OBJ.clock));
    return this.clock.now();
  }

  /** Close both objects and remove the pins. */
  close(): void {
    this.clock?.close();
    this.lbmaps.close();
    this.sockObj?.close();
    this.tcObj?.close();
    this.xdpObj.close();
    removePins(this.pinRoot);
  }
}

type NextHopField = 'nh_gen' | 'nh_ifindex' | 'nh_dmac' | 'nh_smac' | 'nh_mtu' | 'pad' | 'reply_seen';
type ReplyTupleField = 'reply_saddr' | 'reply_daddr' | 'reply_sport' | 'reply_dport' | 'reply_proto' | 'pad';
export const CT_REPLIED = enums.xlb_ct_flags.XLB_CT_F_REPLIED;

export { REPLY_WAYS, replyHash };

/**
 * The sizes and knobs the loader derives from the conntrack size
 * (replySizing, src/datapath/datapath.ts), with `over` on top; the flood
 * guard stays off unless a test sets it.
 */
function replySizingOf(over: Record<string, number> = {}, snatPorts: { min: number; max: number }): { rodata: { xlb_reply_sets: number; xlb_snat_set_count: number }; maxEntries: Record<string, number> } {
  const fromLoader = replySizing(over.xlb_conntrack ?? XLB_CONNTRACK_DEFAULT, kernelHz(OBJ.clock), 0, snatPorts);
  const maxEntries = { ...fromLoader.maxEntries, ...over };
  return { rodata: { xlb_reply_sets: Math.floor(maxEntries.xlb_replies / REPLY_WAYS), xlb_snat_set_count: maxEntries.xlb_snat_sets }, maxEntries };
}
/** The SNAT port range's default. */
const SNAT_MIN_DEFAULT = SNAT_PORTS_DEFAULT.min;
const SNAT_MAX_DEFAULT = SNAT_PORTS_DEFAULT.max;
/** xlb_conntrack's size in the object (XLB_CONNTRACK_MAX of xdp/include/xlb_consts.h). */
const XLB_CONNTRACK_DEFAULT = 131072;

/** A 5-tuple as the maps key it. */
export interface FlowKey {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
}

/** Encode a 5-tuple as `struct xlb_flow_key`. */
export function flowKey(f: FlowKey): Buffer {
  return encode('xlb_flow_key', { saddr: f.saddr, daddr: f.daddr, sport: f.sport, dport: f.dport, proto: f.proto });
}

/** Difference of two drop-counter snapshots, only the reasons that moved. */
export function dropsDelta(before: Record<DropReason, bigint>, after: Record<DropReason, bigint>): Partial<Record<DropReason, number>> {
  const out: Partial<Record<DropReason, number>> = {};
  for (const k of Object.keys(after) as DropReason[]) {
    const d = Number(after[k] - before[k]);
    if (d) out[k] = d;
  }
  return out;
}

/** MACs of the two veth pairs of {@link wireForwardingNetns}. */
export const NETNS_MAC = { A: '02:00:00:00:0a:01', B: '02:00:00:00:0b:01', C: '02:00:00:00:0c:01', D: '02:00:00:00:0d:01' } as const;

/**
 * Make network namespace `ns` a node that forwards, for the remote-backend
 * tests: xlbA `node`/24 (the ingress interface) <-> xlbB, gateway 198.18.0.1;
 * xlbC 198.18.1.11/24 with MTU 1280 <-> xlbD, gateway 198.18.1.1; both
 * gateways with permanent neighbour entries (so bpf_fib_lookup resolves
 * MACs), forwarding on (bpf_fib_lookup refuses to forward from an interface
 * without it), and `routes` as [destination, gateway] pairs.
 */
export function wireForwardingNetns(ns: string, node: string, routes: Array<[string, string]>): void {
  const ip = (...args: string[]) => ipIn(ns, ...args);
  const M = NETNS_MAC;
  execFileSync('ip', ['netns', 'add', ns]);
  ip('link', 'add', 'xlbA', 'address', M.A, 'type', 'veth', 'peer', 'name', 'xlbB', 'address', M.B);
  ip('link', 'add', 'xlbC', 'address', M.C, 'mtu', '1280', 'type', 'veth', 'peer', 'name', 'xlbD', 'address', M.D, 'mtu', '1280');
  for (const dev of ['lo', 'xlbA', 'xlbB', 'xlbC', 'xlbD']) ip('link', 'set', dev, 'up');
  ip('addr', 'add', `${node}/24`, 'dev', 'xlbA');
  ip('addr', 'add', '198.18.1.11/24', 'dev', 'xlbC');
  for (const [dst, via] of routes) ip('route', 'add', dst, 'via', via, 'dev', via.startsWith('198.18.1.') ? 'xlbC' : 'xlbA');
  ip('neigh', 'add', '198.18.0.1', 'lladdr', M.B, 'dev', 'xlbA', 'nud', 'permanent');
  ip('neigh', 'add', '198.18.1.1', 'lladdr', M.D, 'dev', 'xlbC', 'nud', 'permanent');
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1']);
}

/** An `xdp_md` for BPF_PROG_TEST_RUN's ctx_in: data_end = frame length, ingress ifindex. */
export function xdpCtx(frameLength: number, ingressIfindex: number): Buffer {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(0, 0); // data
  ctx.writeUInt32LE(frameLength, 4); // data_end
  ctx.writeUInt32LE(0, 8); // data_meta
  ctx.writeUInt32LE(ingressIfindex, 12);
  return ctx;
}

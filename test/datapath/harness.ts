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
import { encode, decode, u32Key, enums, type StructValue } from '../../src/datapath/codec.js';
import { BpfLBMaps, lbMapSetOf } from '../../src/datapath/maps.js';
import { BackendBatch } from '../../src/datapath/lbmaps.js';
import { ipToU32 } from '../../src/util/ip.js';
import { ClockProbe, clockRodata, kernelHz, secondsToTicks, DEFAULT_CONNTRACK_LIFETIMES, type ConntrackLifetimes } from '../../src/datapath/clock.js';

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
    private readonly sockObj?: BpfObject,
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
    let xdpObj: BpfObject | undefined;
    let tcObj: BpfObject | undefined;
    let sockObj: BpfObject | undefined;
    try {
      xdpObj = BpfObject.open(OBJ.xdp, { pinRoot, rodata, maxEntries: opts.maxEntries });
      xdpObj.load();
      if (opts.withTc !== false) {
        const tcRodata: Record<string, number | Buffer> = clockRodata(hz, opts.conntrackLifetimes ?? DEFAULT_CONNTRACK_LIFETIMES);
        if (opts.hairpinAddr) {
          tcRodata.xlb_hairpin_addr = Buffer.alloc(4);
          (tcRodata.xlb_hairpin_addr as Buffer).writeUInt32BE(ipToU32(opts.hairpinAddr));
        }
        tcObj = BpfObject.open(OBJ.tc, { pinRoot, maxEntries: opts.maxEntries, rodata: tcRodata });
        tcObj.load();
      }
      if (opts.withSock) {
        const cookie = opts.withSock.hostNetnsCookie;
        sockObj = BpfObject.open(OBJ.sock, { pinRoot, maxEntries: opts.maxEntries, rodata: cookie === undefined ? {} : { xlb_sock_host_only: 1, xlb_host_netns_cookie: cookie } });
        sockObj.load();
      }
      return new Datapath(pinRoot, xdpObj, tcObj, sockObj);
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
    const service: { id: number; flags: number; internal_id: number; affinity_timeout?: number } = { id: serviceId, flags, internal_id: internalId };
    if (affinityTimeout !== undefined) service.affinity_timeout = affinityTimeout;
    this.lbmaps.putFrontends([{ key: { addr, port, proto }, service }]);
  }

  /** Write backend `id`. */
  setBackend(id: number, b: { addr: string; port: number; proto: number; flags?: number }): void {
    this.lbmaps.putBackends(BackendBatch.of([{ id, backend: { addr: b.addr, port: b.port, proto: b.proto, flags: b.flags ?? 0 } }]));
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

  /** Conntrack entry of a client -> frontend flow, if any. */
  conntrack(flow: FlowKey): StructValue<'xlb_ct_entry'> | undefined {
    const v = this.map('xlb_conntrack').lookup(flowKey(flow));
    return v && decode('xlb_ct_entry', v);
  }

  /** Reverse NAT entry keyed by a reply tuple, if any. */
  rnat(reply: FlowKey): StructValue<'xlb_rnat_entry'> | undefined {
    const v = this.map('xlb_rnat').lookup(flowKey(reply));
    return v && decode('xlb_rnat_entry', v);
  }

  /** Write a conntrack entry directly (to age a flow in tests). */
  putConntrack(flow: FlowKey, entry: Partial<StructValue<'xlb_ct_entry'>>): void {
    this.map('xlb_conntrack').update(flowKey(flow), encode('xlb_ct_entry', entry));
  }

  /** Write a reverse NAT entry directly (to occupy SNAT ports in tests). */
  putRnat(reply: FlowKey, entry: Partial<StructValue<'xlb_rnat_entry'>>): void {
    this.map('xlb_rnat').update(flowKey(reply), encode('xlb_rnat_entry', entry));
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

/** An `xdp_md` for BPF_PROG_TEST_RUN's ctx_in: data_end = frame length, ingress ifindex. */
export function xdpCtx(frameLength: number, ingressIfindex: number): Buffer {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(0, 0); // data
  ctx.writeUInt32LE(frameLength, 4); // data_end
  ctx.writeUInt32LE(0, 8); // data_meta
  ctx.writeUInt32LE(ingressIfindex, 12);
  return ctx;
}

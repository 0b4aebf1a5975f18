/**
 * The datapath's lifecycle on one node: open the BPF objects, set their
 * run-time knobs, load them with maps pinned under /sys/fs/bpf/xlb/<instance>
 * (shared by the XDP and tc objects through LIBBPF_PIN_BY_NAME), check that
 * the map layouts match xlb_types.h, attach XDP (native, generic only as a
 * logged fallback) and tc egress to the external interfaces, and undo all of
 * it on shutdown. docs/datapath.md describes what the programs do.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  attachCgroup,
  attachTc,
  attachXdp,
  BpfObject,
  CGROUP_ATTACH_TYPE,
  detachCgroup,
  detachTc,
  detachXdp,
  ensureBpffs,
  ifIndex,
  interfaceNames,
  netnsCookie,
  PIN_BASE,
  removePins,
  xdpProgramId,
  type BpfMap,
  type CgroupHook,
  type XdpMode,
} from './bpf.js';
import { sizeOf, type StructName } from './codec.js';
import { clockRodata, kernelHz, probeObjectIn, DEFAULT_CONNTRACK_LIFETIMES, type ConntrackLifetimes } from './clock.js';
import { BpfLBMaps, lbMapSetOf } from './maps.js';
import { ARP_VIPS_MAP, BpfL2Maps } from './l2maps.js';
import { ipToU32 } from '../util/ip.js';

/** Where `make -C xdp` puts the objects. */
export const DEFAULT_OBJECT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../xdp/build');
/** Root of every xlb pin directory. */
export { PIN_BASE };

/** Settings of one node's datapath. */
export interface DatapathOptions {
  /** Pin directory name: /sys/fs/bpf/xlb/<instance>. */
  instance: string;
  /** External interfaces: XDP ingress and tc egress on each. */
  interfaces: string[];
  /** The node IP: SNAT source, and how replies to SNATed flows are recognised. */
  nodeAddress: string;
  /** 'auto' tries native XDP and falls back to generic with a warning. */
  xdpMode: 'native' | 'generic' | 'auto';
  snatPorts: { min: number; max: number };
  /** Entries of xlb_conntrack and xlb_rnat. */
  conntrackSize: number;
  /** Source of a pod's flow to a service it backs itself, on pod interfaces (datapath.hairpinAddress); default 169.254.42.1. */
  hairpinAddress?: string;
  /**
   * Conntrack lifetimes in seconds (the xlb_ct_timeout_* knobs of
   * xlb_conntrack.h, set in ticks); left out, the datapath's defaults.
   */
  conntrackLifetimes?: ConntrackLifetimes;
  objectDir?: string;
  /**
   * Socket-level load balancing: the socket hooks (xlb_sock.bpf.c) attached
   * at cgroup v2 directory `cgroupRoot`, serving every process in it and
   * below; with `hostNamespaceOnly`, only sockets of the calling process's
   * network namespace (the node's). Left out: not attached.
   */
  socketLB?: { cgroupRoot: string; hostNamespaceOnly: boolean };
  /** Called for warnings (fallbacks); defaults to console.warn. */
  warn?: (msg: string) => void;
}

/** What is attached where, for /v1/datapath. */
export interface Attachment {
  /** Interface name, or for a socket hook the cgroup directory. */
  interface: string;
  /** 0 for a socket hook. */
  ifindex: number;
  hook: 'xdp' | 'tc-egress' | 'tc-ingress' | CgroupHook;
  program: string;
  mode?: XdpMode;
  /** A pod interface (tc both ways), attached because it matched `podInterfaces`. */
  pod?: boolean;
}

/** The socket hooks and their programs in xlb_sock.bpf.c. */
const SOCKET_PROGRAMS: Array<[CgroupHook, string]> = [
  ['cgroup/connect4', 'xlb_sock_connect4'],
  ['cgroup/sendmsg4', 'xlb_sock_sendmsg4'],
  ['cgroup/recvmsg4', 'xlb_sock_recvmsg4'],
  ['cgroup/getpeername4', 'xlb_sock_getpeername4'],
];

/**
 * Whether interface `name` matches a `podInterfaces` pattern (`*` any run
 * of characters, everything else literal).
 */
export function matchesInterfacePattern(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => new RegExp(`^${p.split('*').map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`).test(name));
}

/** Map key/value sizes that must equal the header's (map name → [key, value]). */
const LAYOUT_CHECKS: Record<string, [StructName | number, StructName | number]> = {
  xlb_frontends: ['xlb_frontend_key', 'xlb_service'],
  xlb_backends: [4, 'xlb_backend'],
  xlb_conntrack: ['xlb_flow_key', 'xlb_ct_entry'],
  xlb_rnat: ['xlb_flow_key', 'xlb_rnat_entry'],
  xlb_service_stats: [4, 'xlb_service_stats'],
  xlb_drops: [4, 8],
  xlb_affinity: ['xlb_affinity_key', 'xlb_affinity_entry'],
  xlb_source_ranges: ['xlb_source_range_key', 4],
  xlb_arp_vips: ['xlb_arp_key', 'xlb_arp_answer'],
  xlb_sock_rnat: ['xlb_sock_rnat_key', 'xlb_sock_rnat_entry'],
  xlb_sock_affinity: ['xlb_sock_affinity_key', 'xlb_affinity_entry'],
};

/**
 * A loaded, attached datapath. Create with {@link Datapath.start}; always
 * {@link Datapath.stop} (detaches programs and removes the pin directory).
 */
export class Datapath {
  readonly attachments: Attachment[] = [];
  readonly lbmaps: BpfLBMaps;
  /** The ARP responder's map (layer 2 mode). */
  readonly l2maps: BpfL2Maps;
  private createdQdisc = new Set<number>();
  /** Pod interfaces with tc attached, by name → ifindex. */
  private readonly podInterfaces = new Map<string, number>();

  private constructor(
    readonly options: DatapathOptions,
    readonly pinDir: string,
    private readonly xdpObj: BpfObject,
    private readonly tcObj: BpfObject,
    private readonly sockObj: BpfObject | undefined,
  ) {
    this.lbmaps = new BpfLBMaps(lbMapSetOf(xdpObj));
    this.l2maps = new BpfL2Maps(xdpObj.map(ARP_VIPS_MAP));
  }

  /**
   * Load and attach. Any interface missing is an error naming it, before
   * anything is attached. A previous instance's pins are removed first
   * (stale maps from a crash must not leak old services into the new run).
   * @throws Error / BpfError naming the interface, map or object
   */
  static start(opts: DatapathOptions): Datapath {
    const ifindexes = opts.interfaces.map((name) => ({ name, index: ifIndex(name) }));
    ensureBpffs();
    const pinDir = path.join(PIN_BASE, opts.instance);
    removePins(pinDir);
    const dir = opts.objectDir ?? DEFAULT_OBJECT_DIR;
    const hz = kernelHz(probeObjectIn(dir));
    const rodata = {
      xlb_node_addr: Buffer.from(ipToU32(opts.nodeAddress).toString(16).padStart(8, '0'), 'hex'),
      xlb_snat_port_min: opts.snatPorts.min,
      xlb_snat_port_max: opts.snatPorts.max,
      ...clockRodata(hz, opts.conntrackLifetimes ?? DEFAULT_CONNTRACK_LIFETIMES),
    };
    const maxEntries = { xlb_conntrack: opts.conntrackSize, xlb_rnat: opts.conntrackSize, xlb_sock_rnat: opts.conntrackSize };
    const lifetimes = clockRodata(hz, opts.conntrackLifetimes ?? DEFAULT_CONNTRACK_LIFETIMES);
    const xdpObj = BpfObject.open(path.join(dir, 'xlb_xdp.bpf.o'), { pinRoot: pinDir, rodata, maxEntries });
    let tcObj: BpfObject | undefined;
    let sockObj: BpfObject | undefined;
    let dp: Datapath | undefined;
    try {
      xdpObj.load();
      const hairpin = Buffer.alloc(4);
      hairpin.writeUInt32BE(ipToU32(opts.hairpinAddress ?? '169.254.42.1'));
      tcObj = BpfObject.open(path.join(dir, 'xlb_tc.bpf.o'), { pinRoot: pinDir, maxEntries, rodata: { ...lifetimes, xlb_hairpin_addr: hairpin } });
      tcObj.load();
      if (opts.socketLB) {
        const sockRodata: Record<string, number | bigint> = { xlb_sock_host_only: opts.socketLB.hostNamespaceOnly ? 1 : 0 };
        if (opts.socketLB.hostNamespaceOnly) sockRodata.xlb_host_netns_cookie = netnsCookie();
        sockObj = BpfObject.open(path.join(dir, 'xlb_sock.bpf.o'), { pinRoot: pinDir, maxEntries, rodata: sockRodata });
        sockObj.load();
      }
      dp = new Datapath(opts, pinDir, xdpObj, tcObj, sockObj);
      dp.checkLayouts();
      dp.attach(ifindexes);
      return dp;
    } catch (e) {
      for (const { name, index } of ifindexes) {
        detachXdp(index, name, 'native');
        detachXdp(index, name, 'generic');
        detachTc(index, name, 'egress', false);
      }
      if (dp) dp.detachSocketHooks();
      dp?.lbmaps.close();
      sockObj?.close();
      tcObj?.close();
      xdpObj.close();
      removePins(pinDir);
      throw e;
    }
  }

  private checkLayouts(): void {
    const size = (s: StructName | number): number => (typeof s === 'number' ? s : sizeOf(s));
    for (const [name, [k, v]] of Object.entries(LAYOUT_CHECKS)) {
      const m = this.xdpObj.map(name);
      if (m.keySize !== size(k) || m.valueSize !== size(v))
        throw new Error(
          `map ${name}: key/value sizes ${m.keySize}/${m.valueSize} differ from xlb_types.h (${size(k)}/${size(v)}); rebuild with make -C xdp and npm run gen:layouts`,
        );
    }
  }

  private attach(ifindexes: Array<{ name: string; index: number }>): void {
    const xdp = this.xdpObj.program('xlb_xdp_ingress');
    const tc = this.tcObj.program('xlb_tc_egress');
    const warn = this.options.warn ?? ((m: string) => console.warn(m));
    for (const { name, index } of ifindexes) {
      let mode: XdpMode = this.options.xdpMode === 'generic' ? 'generic' : 'native';
      try {
        attachXdp(index, name, xdp.fd, mode);
      } catch (e) {
        if (this.options.xdpMode !== 'auto') throw e;
        warn(`native XDP on ${name} failed (${(e as Error).message.split('\n')[0]}); falling back to generic XDP`);
        mode = 'generic';
        attachXdp(index, name, xdp.fd, mode);
      }
      this.attachments.push({ interface: name, ifindex: index, hook: 'xdp', program: 'xlb_xdp_ingress', mode });
      if (attachTc(index, name, tc.fd, 'egress')) this.createdQdisc.add(index);
      this.attachments.push({ interface: name, ifindex: index, hook: 'tc-egress', program: 'xlb_tc_egress' });
    }
    const sock = this.options.socketLB;
    if (this.sockObj && sock) {
      for (const [hook, program] of SOCKET_PROGRAMS) {
        const prog = this.sockObj.program(program);
        // A program of this object cannot be on the hook yet; one left by a
        // crashed agent is another program (its own fd) and stays beside it.
        attachCgroup(prog.fd, sock.cgroupRoot, hook);
        this.attachments.push({ interface: sock.cgroupRoot, ifindex: 0, hook, program });
      }
    }
  }

  /** Detach the socket hooks this datapath attached (idempotent). */
  detachSocketHooks(): void {
    const sock = this.options.socketLB;
    if (!this.sockObj || !sock) return;
    for (const a of this.attachments) {
      if (!(a.hook in CGROUP_ATTACH_TYPE)) continue;
      try {
        detachCgroup(this.sockObj.program(a.program).fd, sock.cgroupRoot, a.hook as CgroupHook);
      } catch {
        /* the cgroup may be gone already */
      }
    }
    for (let i = this.attachments.length - 1; i >= 0; i--) if (this.attachments[i].hook in CGROUP_ATTACH_TYPE) this.attachments.splice(i, 1);
  }

  /**
   * Attach tc to the host side of every pod interface of this network
   * namespace whose name matches `patterns` (ingress: xlb_tc_pod_ingress,
   * per-packet service translation of what pods send; egress: xlb_tc_egress,
   * reverse NAT of replies into the pod), except the external interfaces.
   * Interfaces that went away are forgotten (their filters went with them).
   * Called again whenever interfaces may have changed.
   * @returns the names newly attached and the failures (name and message); one failure does not stop the others
   */
  syncPodInterfaces(patterns: readonly string[]): { attached: string[]; failed: Array<{ name: string; error: string }> } {
    const attached: string[] = [];
    const failed: Array<{ name: string; error: string }> = [];
    const names = patterns.length ? interfaceNames() : [];
    const present = new Set(names);
    for (const [name] of this.podInterfaces) {
      if (present.has(name)) continue;
      this.podInterfaces.delete(name);
      for (let i = this.attachments.length - 1; i >= 0; i--) if (this.attachments[i].pod && this.attachments[i].interface === name) this.attachments.splice(i, 1);
    }
    for (const name of names) {
      if (this.podInterfaces.has(name) || this.options.interfaces.includes(name) || name === 'lo' || !matchesInterfacePattern(name, patterns)) continue;
      try {
        const index = ifIndex(name);
        attachTc(index, name, this.tcObj.program('xlb_tc_pod_ingress').fd, 'ingress');
        attachTc(index, name, this.tcObj.program('xlb_tc_egress').fd, 'egress');
        this.podInterfaces.set(name, index);
        this.attachments.push({ interface: name, ifindex: index, hook: 'tc-ingress', program: 'xlb_tc_pod_ingress', pod: true });
        this.attachments.push({ interface: name, ifindex: index, hook: 'tc-egress', program: 'xlb_tc_egress', pod: true });
        attached.push(name);
      } catch (e) {
        failed.push({ name, error: (e as Error).message.split('\n')[0] });
      }
    }
    return { attached, failed };
  }

  /** Whether each XDP attachment is still in place (the kernel's program ID is non-zero). */
  attachedProgramIds(): Array<Attachment & { programId?: number }> {
    return this.attachments.map((a) => (a.hook === 'xdp' ? { ...a, programId: xdpProgramId(a.ifindex, a.mode!) } : a));
  }

  /** Detach everything, close the objects and remove the pin directory. Idempotent. */
  stop(): void {
    this.detachSocketHooks();
    for (const a of this.attachments) {
      try {
        if (a.hook === 'xdp') detachXdp(a.ifindex, a.interface, a.mode!);
        else if (a.hook === 'tc-egress' || a.hook === 'tc-ingress') {
          // A pod interface's clsact may be shared with its CNI: only xlb's filters go.
          detachTc(a.ifindex, a.interface, a.hook === 'tc-egress' ? 'egress' : 'ingress', !a.pod && this.createdQdisc.has(a.ifindex));
        }
      } catch {
        /* the interface may be gone already */
      }
    }
    this.attachments.length = 0;
    this.podInterfaces.clear();
    this.lbmaps.close();
    this.sockObj?.close();
    this.tcObj.close();
    this.xdpObj.close();
    removePins(this.pinDir);
  }
}

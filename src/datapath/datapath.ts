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
  attachTc,
  attachXdp,
  BpfObject,
  detachTc,
  detachXdp,
  ensureBpffs,
  ifIndex,
  PIN_BASE,
  removePins,
  xdpProgramId,
  type BpfMap,
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
  /**
   * Conntrack lifetimes in seconds (the xlb_ct_timeout_* knobs of
   * xlb_conntrack.h, set in ticks); left out, the datapath's defaults.
   */
  conntrackLifetimes?: ConntrackLifetimes;
  objectDir?: string;
  /** Called for warnings (fallbacks); defaults to console.warn. */
  warn?: (msg: string) => void;
}

/** What is attached where, for /v1/datapath. */
export interface Attachment {
  interface: string;
  ifindex: number;
  hook: 'xdp' | 'tc-egress';
  program: string;
  mode?: XdpMode;
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

  private constructor(
    readonly options: DatapathOptions,
    readonly pinDir: string,
    private readonly xdpObj: BpfObject,
    private readonly tcObj: BpfObject,
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
    const maxEntries = { xlb_conntrack: opts.conntrackSize, xlb_rnat: opts.conntrackSize };
    const xdpObj = BpfObject.open(path.join(dir, 'xlb_xdp.bpf.o'), { pinRoot: pinDir, rodata, maxEntries });
    let tcObj: BpfObject | undefined;
    let dp: Datapath | undefined;
    try {
      xdpObj.load();
      tcObj = BpfObject.open(path.join(dir, 'xlb_tc.bpf.o'), { pinRoot: pinDir, maxEntries, rodata: clockRodata(hz) });
      tcObj.load();
      dp = new Datapath(opts, pinDir, xdpObj, tcObj);
      dp.checkLayouts();
      dp.attach(ifindexes);
      return dp;
    } catch (e) {
      for (const { name, index } of ifindexes) {
        detachXdp(index, name, 'native');
        detachXdp(index, name, 'generic');
        detachTc(index, name, 'egress', false);
      }
      dp?.lbmaps.close();
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
  }

  /** Whether each XDP attachment is still in place (the kernel's program ID is non-zero). */
  attachedProgramIds(): Array<Attachment & { programId?: number }> {
    return this.attachments.map((a) => (a.hook === 'xdp' ? { ...a, programId: xdpProgramId(a.ifindex, a.mode!) } : a));
  }

  /** Detach everything, close the objects and remove the pin directory. Idempotent. */
  stop(): void {
    for (const a of this.attachments) {
      try {
        if (a.hook === 'xdp') detachXdp(a.ifindex, a.interface, a.mode!);
        else detachTc(a.ifindex, a.interface, 'egress', this.createdQdisc.has(a.ifindex));
      } catch {
        /* the interface may be gone already */
      }
    }
    this.attachments.length = 0;
    this.lbmaps.close();
    this.tcObj.close();
    this.xdpObj.close();
    removePins(this.pinDir);
  }
}

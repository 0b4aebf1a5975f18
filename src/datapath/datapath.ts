/**
 * The datapath's lifecycle on one node: open the BPF objects, set their
 * run-time knobs, load them with maps pinned under /sys/fs/bpf/xlb/<instance>
 * (shared by the XDP and tc objects through LIBBPF_PIN_BY_NAME), check that
 * the map layouts match xlb_types.h, attach XDP (native, generic only as a
 * logged fallback) and tc egress to the external interfaces, and undo all of
 * it on shutdown. docs/datapath.md describes what the programs do.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  attachCgroupLink,
  attachTc,
  attachXdp,
  BpfMap,
  BpfObject,
  detachTc,
  detachXdp,
  ensureBpffs,
  ifIndex,
  interfaceNames,
  netnsCookie,
  PIN_BASE,
  pinnedProgramId,
  removePins,
  xdpProgramId,
  type CgroupHook,
  type XdpMode,
} from './bpf.js';
import { decode, sizeOf, type StructName } from './codec.js';
import { ClockProbe, clockRodata, kernelHz, probeObjectIn, tickShift, DEFAULT_CONNTRACK_LIFETIMES, type ConntrackLifetimes } from './clock.js';
import { countConntrack, listConntrack, type ConntrackCounts, type ConntrackFilter, type ConntrackListing } from './conntrack_list.js';
import { eventRingBytes, FlowEventReader, type FlowEvent } from './flow_events.js';
import { enums } from './layouts.generated.js';
import { BpfLBMaps, lbMapSetOf } from './maps.js';
import { ARP_VIPS_MAP, BpfL2Maps } from './l2maps.js';
import { convert, fingerprint, fingerprintOfPin, LAYOUTS_MAP, layoutOf, MAP_LAYOUTS, migrateEntries, otherPins, pinPathOf, recordedLayout, recordLayout, whyNotMigratable } from './layout.js';
import { placeReplyElements, withReplyTuple } from './replies.js';
import { placeSnatFlow, readSnatWays, snatSetCount, SNAT_PORTS_DEFAULT, type SnatSizes } from './snat_sets.js';
import { ipToU32 } from '../util/ip.js';
import { packagePath } from '../util/package-root.js';

/** Where `make -C xdp` puts the objects. */
export const DEFAULT_OBJECT_DIR = packagePath('xdp/build');
/** Root of every xlb pin directory. */
export { PIN_BASE };

/** Maps whose elements sit at their reply's hash modulo the map's size: moved, not copied, when the size changes. */
const PLACED_BY_HASH = new Set(['xlb_replies']);
/** Maps of earlier versions that no map of this one replaces by name: their pins are removed at start. */
const RETIRED_MAPS = ['xlb_snat'];

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
  /**
   * Flows the conntrack table holds (xlb_conntrack); how replies are restored
   * is sized from it (replySizing): xlb_replies 1 element a flow (in sets
   * of 4), xlb_rnat (overflow) 1, and xlb_snat_sets as many SNATed flows
   * (in sets of 32, at most one set per SNAT port).
   */
  conntrackSize: number;
  /**
   * The SYN-flood guard: new flows a second, per CPU, that get conntrack
   * state (xlb_flood_limit); above it, new flows are placed by Maglev without
   * any (Katran's max_conn_rate). 0 or left out: no guard.
   */
  newFlowsPerSecond?: number;
  /** Flow events a second, per CPU (xlb_events_per_tick, xlb_events.h); 0 or left out: none. */
  eventsPerSecond?: number;
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
const LAYOUT_CHECKS: Record<string, [StructName | number, StructName | number]> = Object.fromEntries(
  Object.entries(MAP_LAYOUTS)
    .filter(([name]) => name !== 'xlb_maglev' && name !== 'xlb_maglev_slabs')
    .map(([name, l]) => [name, [l.key, l.value]]),
);

/** What became of one pinned map when the datapath started (log, /v1/datapath and a metric). */
export interface MapRestore {
  map: string;
  /**
   * `reused`: the pin of this layout and size was there and is used as it
   * is; `created`: there was none; `migrated`: an older layout's (or an
   * older size's) entries were copied into a new map; `fresh`: there was one
   * of an older layout, but its entries could not be carried over.
   */
  outcome: 'reused' | 'created' | 'migrated' | 'fresh';
  /** Entries copied (migrated). */
  entries?: number;
  /** Why not reused, or why nothing was copied. */
  reason?: string;
}

/** Where a cgroup hook's link is pinned. */
function linkPin(pinDir: string, hook: CgroupHook): string {
  return path.join(pinDir, 'links', hook.replace('/', '_'));
}

/**
 * A loaded, attached datapath. Create with {@link Datapath.start}. It
 * outlives the agent: {@link Datapath.stop} leaves the programs attached and
 * the maps pinned (a restart is not an uninstall), and the next start reuses
 * them; {@link Datapath.stop} with `uninstall`, or {@link uninstallDatapath},
 * detaches everything and removes the pins.
 */
export class Datapath {
  readonly attachments: Attachment[] = [];
  readonly lbmaps: BpfLBMaps;
  /** The ARP responder's map (layer 2 mode). */
  readonly l2maps: BpfL2Maps;
  /** Pod interfaces with tc attached, by name → ifindex. */
  private readonly podInterfaces = new Map<string, number>();

  private constructor(
    readonly options: DatapathOptions,
    readonly pinDir: string,
    private readonly xdpObj: BpfObject,
    private readonly tcObj: BpfObject,
    private readonly sockObj: BpfObject | undefined,
    /** What became of each pinned map. */
    readonly restored: MapRestore[],
  ) {
    const reused = (name: string) => restored.some((r) => r.map === name && r.outcome === 'reused');
    // The Maglev tables of an earlier agent are read back only when both of their maps were kept.
    this.lbmaps = new BpfLBMaps(lbMapSetOf(xdpObj), { recoverTables: reused('xlb_maglev') && reused('xlb_maglev_slabs'), pinDir });
    this.l2maps = new BpfL2Maps(xdpObj.map(ARP_VIPS_MAP));
  }

  /**
   * Load and attach, keeping what an earlier agent of this instance left:
   * each map of an unchanged layout and size is reused with its entries
   * (conntrack, reverse NAT, SNAT ports, affinity, services, tables), an
   * older layout's entries are carried over where they can be
   * (src/datapath/layout.ts), and the programs are swapped in place: XDP and
   * tc by an atomic replace, the socket hooks by bpf_link_update, so that
   * there is no instant without a program. Any interface missing is an
   * error naming it, before anything is attached.
   * @throws Error / BpfError naming the interface, map or object
   */
  static start(opts: DatapathOptions): Datapath {
    const ifindexes = opts.interfaces.map((name) => ({ name, index: ifIndex(name) }));
    ensureBpffs();
    const pinDir = path.join(PIN_BASE, opts.instance);
    fs.mkdirSync(pinDir, { recursive: true });
    const dir = opts.objectDir ?? DEFAULT_OBJECT_DIR;
    const hz = kernelHz(probeObjectIn(dir));
    const lifetimes = clockRodata(hz, opts.conntrackLifetimes ?? DEFAULT_CONNTRACK_LIFETIMES);
    const replyRodata = replySizing(opts.conntrackSize, hz, opts.newFlowsPerSecond ?? 0, opts.snatPorts);
    const snatSizes = { sets: replyRodata.rodata.xlb_snat_set_count, portMin: opts.snatPorts.min, portMax: opts.snatPorts.max };
    // Flow events: every program sends them into the XDP object's ring, at one rate.
    const events = { xlb_events_per_tick: opts.eventsPerSecond ? Math.max(1, Math.round((opts.eventsPerSecond * 2 ** tickShift(hz)) / hz)) : 0 };
    const rodata = {
      xlb_node_addr: Buffer.from(ipToU32(opts.nodeAddress).toString(16).padStart(8, '0'), 'hex'),
      xlb_snat_port_min: opts.snatPorts.min,
      xlb_snat_port_max: opts.snatPorts.max,
      ...lifetimes,
      ...replyRodata.rodata,
      ...events,
    };
    const maxEntries = { ...replyRodata.maxEntries, xlb_sock_rnat: opts.conntrackSize, xlb_events: eventRingBytes(opts.eventsPerSecond ?? 0, os.cpus().length) };
    const hairpin = Buffer.alloc(4);
    hairpin.writeUInt32BE(ipToU32(opts.hairpinAddress ?? '169.254.42.1'));
    const objects: BpfObject[] = [];
    const open = (file: string, o: Parameters<typeof BpfObject.open>[1]) => {
      const obj = BpfObject.open(path.join(dir, file), o);
      objects.push(obj);
      return obj;
    };
    const setAside: BpfMap[] = [];
    let dp: Datapath | undefined;
    try {
      const xdpObj = open('xlb_xdp.bpf.o', { pinRoot: pinDir, rodata, maxEntries });
      // tc never SNATs: xlb_snat_sets is XDP's alone.
      const { xlb_snat_set_count: _xdpOnly, ...tcReplyRodata } = replyRodata.rodata;
      const tcObj = open('xlb_tc.bpf.o', { pinRoot: pinDir, maxEntries, rodata: { ...lifetimes, ...tcReplyRodata, ...events, xlb_hairpin_addr: hairpin } });
      let sockObj: BpfObject | undefined;
      if (opts.socketLB) {
        const sockRodata: Record<string, number | bigint> = { xlb_sock_host_only: opts.socketLB.hostNamespaceOnly ? 1 : 0, xlb_tick_shift: lifetimes.xlb_tick_shift, ...events };
        if (opts.socketLB.hostNamespaceOnly) sockRodata.xlb_host_netns_cookie = netnsCookie();
        sockObj = open('xlb_sock.bpf.o', { pinRoot: pinDir, maxEntries, rodata: sockRodata });
      }
      // Every map but the registry is pinned as <name>_v<layout fingerprint>.
      const plan = xdpObj
        .pinnedMapDefs()
        .filter((d) => d.name !== LAYOUTS_MAP)
        .map((d) => {
          const desc = layoutOf(d.name, d);
          const fp = fingerprint(desc);
          return { def: d, desc, fp, pin: pinPathOf(pinDir, d.name, fp), old: [] as Array<{ path: string; map: BpfMap }>, reason: '' };
        });
      for (const p of plan) {
        for (const obj of objects) if (obj.pinnedMapDefs().some((d) => d.name === p.def.name)) obj.setPinPath(p.def.name, p.pin);
        for (const other of otherPins(pinDir, p.def.name, p.pin)) {
          p.old.push({ path: other, map: BpfMap.openPinned(other) });
          p.reason = 'its layout changed';
        }
        // A pin of this layout but another size (datapath.conntrackSize changed) is set aside and copied.
        if (fs.existsSync(p.pin)) {
          const pinned = BpfMap.openPinned(p.pin);
          if (pinned.maxEntries !== p.def.maxEntries) {
            p.old.push({ path: p.pin, map: pinned });
            p.reason = `its size changed (${pinned.maxEntries} to ${p.def.maxEntries} entries)`;
          } else pinned.close();
        }
        // Set aside: unpinned (the programs still attached hold them) and copied after the load.
        for (const o of p.old) {
          fs.rmSync(o.path, { force: true });
          setAside.push(o.map);
        }
      }
      const existed = new Set(plan.filter((p) => !p.old.length && fs.existsSync(p.pin)).map((p) => p.def.name));
      xdpObj.load();
      const layouts = xdpObj.map(LAYOUTS_MAP);
      const restored: MapRestore[] = [];
      const toPlace: Array<{ name: string; values: Buffer[]; reason: string }> = [];
      let rnatWithoutTuples = false;
      for (const p of plan) {
        recordLayout(layouts, p.fp, p.desc);
        if (existed.has(p.def.name)) {
          restored.push({ map: p.def.name, outcome: 'reused' });
          continue;
        }
        if (!p.old.length) {
          restored.push({ map: p.def.name, outcome: 'created' });
          continue;
        }
        // Copy from the newest older pin that can be read.
        const from = p.old[p.old.length - 1];
        const oldFp = fingerprintOfPin(from.path, p.def.name);
        const oldDesc = from.path === p.pin ? p.desc : oldFp ? recordedLayout(layouts, oldFp) : undefined;
        const why = whyNotMigratable(p.def.name, oldDesc, p.desc);
        if (why) restored.push({ map: p.def.name, outcome: 'fresh', reason: `${p.reason}; ${why}` });
        else if (p.def.name === 'xlb_snat_sets') {
          // A flow's set is its hash modulo the sets: every flow placed again, with its port.
          let entries = 0;
          for (const w of readSnatWays(from.map)) if (!w.pointer && placeSnatFlow(xdpObj.map('xlb_snat_sets'), snatSizes, w.flow, w.ct)) entries++;
          restored.push({ map: p.def.name, outcome: 'migrated', entries, reason: `${p.reason}; placed again by hash` });
        } else if (PLACED_BY_HASH.has(p.def.name)) {
          // Elements sit where their reply's hash modulo the map's size puts them: placed again below.
          const values: Buffer[] = [];
          for (const k of from.map.keys()) {
            const v = from.map.lookup(k);
            if (v && v.some((b) => b !== 0)) values.push(convert(v, oldDesc!.value, p.desc.value, p.desc.valueSize));
          }
          toPlace.push({ name: p.def.name, values, reason: p.reason });
        } else {
          const entries = migrateEntries(from.map, oldDesc!, xdpObj.map(p.def.name), p.desc);
          restored.push({ map: p.def.name, outcome: 'migrated', entries, reason: p.reason });
          if (p.def.name === 'xlb_rnat' && !oldDesc!.value.some(([f]) => f === 'reply_saddr')) rnatWithoutTuples = true;
        }
      }
      const replyMaps = { replies: xdpObj.map('xlb_replies'), rnat: xdpObj.map('xlb_rnat') };
      const replySizes = { sets: replyRodata.rodata.xlb_reply_sets };
      for (const t of toPlace) {
        restored.push({ map: t.name, outcome: 'migrated', entries: placeReplyElements(t.values, replyMaps, replySizes), reason: `${t.reason}; placed again by hash` });
      }
      if (rnatWithoutTuples) {
        // An older xlb_rnat held every reply keyed by its 5-tuple: each
        // entry gets its tuple; SNATed flows' (their flows move below) go.
        for (const k of replyMaps.rnat.keys()) {
          const v = replyMaps.rnat.lookup(k);
          if (!v) continue;
          const full = withReplyTuple(k, v);
          if (decode('xlb_reply_slot', full).flags & enums.xlb_ct_flags.XLB_CT_F_SNAT) replyMaps.rnat.delete(k);
          else replyMaps.rnat.update(k, full);
        }
      }
      // Agents before xlb_snat_sets kept SNATed flows in xlb_conntrack (and
      // their ports in xlb_snat): each moves to its set, with its port.
      // Only after such an agent (its xlb_snat still pinned, or an xlb_rnat
      // older still): a walk of the whole conntrack table is not for every start.
      const retiredPins = RETIRED_MAPS.flatMap((name) => otherPins(pinDir, name, ''));
      const moved = retiredPins.length || rnatWithoutTuples ? moveSnatFlows(xdpObj.map('xlb_conntrack'), xdpObj.map('xlb_snat_sets'), snatSizes) : { found: 0, placed: 0 };
      if (moved.found) {
        const r = restored.find((x) => x.map === 'xlb_snat_sets');
        if (r) Object.assign(r, { outcome: 'migrated', entries: (r.entries ?? 0) + moved.placed, reason: `SNATed flows moved from xlb_conntrack: ${moved.placed} of ${moved.found}` });
      }
      for (const pin of retiredPins) fs.rmSync(pin, { force: true });
      for (const obj of [tcObj, sockObj]) {
        if (!obj) continue;
        for (const m of ['xlb_events', 'xlb_event_limit']) obj.reuseMap(m, xdpObj.map(m));
        obj.load();
      }
      dp = new Datapath(opts, pinDir, xdpObj, tcObj, sockObj, restored);
      dp.checkLayouts();
      // Next hops cached by an earlier agent may be stale by now.
      dp.invalidateNextHops();
      dp.attach(ifindexes);
      return dp;
    } catch (e) {
      // Nothing attached by this start is undone here: what was attached
      // before it (an earlier agent's programs) must keep serving, and what
      // it replaced serves the same maps. A new instance's half-made pins stay
      // for the next start (`xlb uninstall` removes them).
      dp?.lbmaps.close();
      for (const o of objects.reverse()) o.close();
      throw e;
    } finally {
      for (const m of setAside) m.close();
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

  /**
   * Attach, replacing what an earlier agent attached: XDP (a replace of the
   * interface's program), tc egress (BPF_TC_F_REPLACE of xlb's filter), the
   * socket hooks (bpf_link_update of the pinned links).
   */
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
      // Pinned too: `xlb uninstall` tells xlb's program on an interface from another's by its ID.
      fs.mkdirSync(path.join(this.pinDir, 'progs'), { recursive: true });
      xdp.pin(path.join(this.pinDir, 'progs', 'xlb_xdp_ingress'));
      attachTc(index, name, tc.fd, 'egress');
      this.attachments.push({ interface: name, ifindex: index, hook: 'tc-egress', program: 'xlb_tc_egress' });
    }
    const sock = this.options.socketLB;
    if (this.sockObj && sock) {
      for (const [hook, program] of SOCKET_PROGRAMS) {
        attachCgroupLink(this.sockObj.program(program).fd, sock.cgroupRoot, hook, linkPin(this.pinDir, hook));
        this.attachments.push({ interface: sock.cgroupRoot, ifindex: 0, hook, program });
      }
    }
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

  /**
   * Invalidate every next hop cached in conntrack entries: bump xlb_nh_gen
   * (skipping 0, which turns caching off), so that each flow's next packet
   * asks bpf_fib_lookup again. Called when a neighbour, route or link of the
   * node changes (src/datapath/nexthops.ts), and on start.
   * @returns the new generation
   */
  invalidateNextHops(): number {
    const m = this.xdpObj.map('xlb_nh_gen');
    const key = Buffer.alloc(4);
    const cur = m.lookup(key)?.readUInt32LE(0) ?? 0;
    const next = cur === 0xffffffff ? 1 : cur + 1;
    const v = Buffer.alloc(4);
    v.writeUInt32LE(next);
    m.update(key, v);
    return next;
  }

  /** New flows the SYN-flood guard placed without conntrack state since the maps were made (all CPUs). */
  floodStateless(): bigint {
    let n = 0n;
    for (const v of this.xdpObj.map('xlb_flood').lookupPerCpu(Buffer.alloc(4))) n += v.readBigUInt64LE(8);
    return n;
  }

  /**
   * The conntrack table, filtered, with its totals (conntrack_list.ts),
   * idle times in seconds from the datapath's own clock.
   * @param serviceOf the service port key of a service ID, when programmed
   */
  conntrack(filter: ConntrackFilter, serviceOf?: (serviceId: number) => string | undefined): ConntrackListing {
    const dir = this.options.objectDir ?? DEFAULT_OBJECT_DIR;
    const hz = kernelHz(probeObjectIn(dir));
    this.clock ??= new ClockProbe(probeObjectIn(dir), hz);
    return listConntrack(
      { conntrack: this.xdpObj.map('xlb_conntrack'), affinity: this.xdpObj.map('xlb_affinity'), snat: this.xdpObj.map('xlb_snat_sets') },
      filter,
      { serviceOf, now: this.clock.now(), tickSeconds: 2 ** tickShift(hz) / hz },
    );
  }
  private clock?: ClockProbe;

  /**
   * The conntrack table's totals: entries and the SNAT ports held
   * (conntrack_list.ts, {@link countConntrack}); one walk of the table in
   * batches, the event loop served between them.
   */
  conntrackCounts(): Promise<ConntrackCounts> {
    return countConntrack(this.xdpObj.map('xlb_conntrack'), this.xdpObj.map('xlb_snat_sets'));
  }

  /**
   * Read the XDP program's flow events (flow_events.ts): `poll()` on the
   * reader hands the waiting ones to `onEvent`.
   * @throws BpfError when the reader cannot be set up
   */
  flowEvents(onEvent: (e: FlowEvent) => void): FlowEventReader {
    return new FlowEventReader({ events: this.xdpObj.map('xlb_events'), limit: this.xdpObj.map('xlb_event_limit') }, onEvent);
  }

  /** Whether each XDP attachment is still in place (the kernel's program ID is non-zero). */
  attachedProgramIds(): Array<Attachment & { programId?: number }> {
    return this.attachments.map((a) => (a.hook === 'xdp' ? { ...a, programId: xdpProgramId(a.ifindex, a.mode!) } : a));
  }

  /**
   * Close this agent's hold on the datapath. By default the programs stay
   * attached and the maps pinned, serving as they are until the next start
   * takes them over (a restart is not an uninstall). With `uninstall`,
   * everything this datapath attached is detached (XDP, tc, the socket
   * hooks' links) and the pin directory removed. Idempotent.
   */
  stop(opts: { uninstall?: boolean } = {}): void {
    if (opts.uninstall) {
      for (const a of this.attachments) {
        try {
          if (a.hook === 'xdp') detachXdp(a.ifindex, a.interface, a.mode!);
          else if (a.hook === 'tc-egress' || a.hook === 'tc-ingress') {
            // A pod interface's clsact may be shared with its CNI: only xlb's filters go.
            detachTc(a.ifindex, a.interface, a.hook === 'tc-egress' ? 'egress' : 'ingress', false);
          }
        } catch {
          /* the interface may be gone already */
        }
      }
    }
    this.attachments.length = 0;
    this.podInterfaces.clear();
    this.clock?.close();
    this.lbmaps.close();
    this.sockObj?.close();
    this.tcObj.close();
    this.xdpObj.close();
    // The socket hooks' links are pinned there: removing the pins detaches them.
    if (opts.uninstall) removePins(this.pinDir);
  }
}

/**
 * Sizes and knobs of how replies are restored, from the conntrack size
 * (xlb_replies.h, xlb_snat.h): xlb_replies one element per conntrack entry
 * (in 4-way sets; most flows' replies find their conntrack entry instead,
 * through xlb_reply_frontends), the overflow LRU xlb_rnat one per entry, and
 * xlb_snat_sets room for as many SNATed flows (in sets of 32, at most one
 * set per port of the SNAT range: snatSetCount).
 * The flood guard's rate per second becomes a count per tick.
 * @param conntrackSize entries of xlb_conntrack
 * @param hz the kernel's HZ (a tick is 2^shift jiffies)
 * @param newFlowsPerSecond the SYN-flood guard's rate per CPU, 0 for none
 * @param snatPorts the SNAT port range, host order, inclusive
 */
export function replySizing(
  conntrackSize: number,
  hz: number,
  newFlowsPerSecond: number,
  snatPorts: { min: number; max: number } = SNAT_PORTS_DEFAULT,
): { rodata: Record<string, number>; maxEntries: Record<string, number> } {
  const ways = enums.xlb_limits.XLB_REPLY_WAYS;
  const tickSeconds = 2 ** tickShift(hz) / hz;
  const snatSets = snatSetCount(conntrackSize, snatPorts.min, snatPorts.max);
  return {
    rodata: {
      xlb_reply_sets: Math.max(1, Math.floor(conntrackSize / ways)),
      xlb_snat_set_count: snatSets,
      xlb_flood_limit: newFlowsPerSecond > 0 ? Math.max(1, Math.round(newFlowsPerSecond * tickSeconds)) : 0,
    },
    maxEntries: { xlb_conntrack: conntrackSize, xlb_replies: Math.max(1, Math.floor(conntrackSize / ways)) * ways, xlb_snat_sets: snatSets, xlb_rnat: conntrackSize },
  };
}

/**
 * Move SNATed flows an older agent kept in xlb_conntrack into their sets
 * (placeSnatFlow, with their ports), and out of xlb_conntrack.
 * @returns how many were found, and placed (the others are dropped: as when the table is full)
 */
export function moveSnatFlows(conntrack: BpfMap, sets: BpfMap, sizes: SnatSizes): { found: number; placed: number } {
  let found = 0;
  let placed = 0;
  for (const { key, value } of conntrack.entries()) {
    const ct = decode('xlb_ct_entry', value);
    if (!(ct.flags & enums.xlb_ct_flags.XLB_CT_F_SNAT)) continue;
    found++;
    const k = decode('xlb_flow_key', key);
    // Its replies were counted in its old element; it is kept as answered.
    if (placeSnatFlow(sets, sizes, { saddr: k.saddr, daddr: k.daddr, sport: k.sport, dport: k.dport, proto: k.proto }, { ...ct, reply_seen: ct.reply_seen || ct.seen })) placed++;
    conntrack.delete(key);
  }
  return { found, placed };
}

/**
 * Remove an instance's datapath without an agent (`xlb uninstall`): XDP
 * (only xlb's program) and xlb's tc filters from `interfaces`, xlb's tc
 * filters from every interface matching `podInterfaces`, and the pin
 * directory, which holds the maps and the socket hooks' links (removing
 * them detaches the hooks). What is already gone is skipped.
 * @returns what was removed, for the command to print
 */
export function uninstallDatapath(opts: { instance: string; interfaces: string[]; podInterfaces: string[] }): string[] {
  const done: string[] = [];
  for (const name of opts.interfaces) {
    let index: number;
    try {
      index = ifIndex(name);
    } catch {
      continue;
    }
    const ours = pinnedProgramId(path.join(PIN_BASE, opts.instance, 'progs', 'xlb_xdp_ingress'));
    for (const mode of ['native', 'generic'] as const) {
      const id = xdpProgramId(index, mode);
      if (id && id === ours) {
        detachXdp(index, name, mode);
        done.push(`XDP (${mode}) from ${name}`);
      }
    }
    detachTc(index, name, 'egress', false);
    done.push(`tc egress filter from ${name}`);
  }
  if (opts.podInterfaces.length) {
    for (const name of interfaceNames()) {
      if (opts.interfaces.includes(name) || name === 'lo' || !matchesInterfacePattern(name, opts.podInterfaces)) continue;
      try {
        const index = ifIndex(name);
        detachTc(index, name, 'ingress', false);
        detachTc(index, name, 'egress', false);
        done.push(`tc filters from pod interface ${name}`);
      } catch {
        /* gone meanwhile */
      }
    }
  }
  const pinDir = path.join(PIN_BASE, opts.instance);
  if (fs.existsSync(pinDir)) {
    removePins(pinDir);
    done.push(`pins ${pinDir} (maps, socket hook links)`);
  }
  return done;
}

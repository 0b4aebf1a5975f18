/**
 * The test rig of bench/datapath: the agent's XDP object (xdp/build/
 * xlb_xdp.bpf.o) loaded with private pins and filled through BpfLBMaps with
 * a given number of services, and the restore wrappers of
 * xdp/build/xlb_bench_restore.bpf.o that feed it under BPF_PROG_TEST_RUN.
 *
 * Every service gets what the control plane writes for it: its frontend,
 * its backends and a Maglev lookup table built by buildMaglevTable (one
 * inner map per service, as BpfLBMaps.putMaglevTable writes them, swapped
 * in by batches: see TableWriter). The
 * conntrack map also gets one established flow per filler service (up to
 * its size), so that conntrack lookups run against a populated table.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { BpfObject, BpfMap, ensureBpffs, PIN_BASE, removePins, type BpfProgram } from '../../src/datapath/bpf.js';
import { BpfLBMaps, lbMapSetOf } from '../../src/datapath/maps.js';
import { clockRodata, kernelHz, DEFAULT_CONNTRACK_LIFETIMES } from '../../src/datapath/clock.js';
import { encode, sizeOf, u32Key, enums } from '../../src/datapath/codec.js';
import { buildMaglevTable, tableSizeFor } from '../../src/maglev/index.js';
import { ipToU32, u32ToIp } from '../../src/util/ip.js';
import { repoRoot } from '../lib/paths.js';

export const OBJ = {
  xdp: path.join(repoRoot, 'xdp/build/xlb_xdp.bpf.o'),
  restore: path.join(repoRoot, 'xdp/build/xlb_bench_restore.bpf.o'),
  floor: path.join(repoRoot, 'xdp/build/xlb_bench_floor.bpf.o'),
  clock: path.join(repoRoot, 'xdp/build/xlb_clock.bpf.o'),
};

/** Build the datapath objects and the benchmark wrappers (make is incremental). */
export function buildObjects(): void {
  // The wrapper is named explicitly: the Makefile's default list may not include it.
  execFileSync('make', ['-s', '-C', path.join(repoRoot, 'xdp'), 'all', 'build/xlb_bench_restore.bpf.o', 'build/xlb_bench_floor.bpf.o'], { stdio: 'inherit' });
}

const TCP = 6;
const LOCAL = enums.xlb_backend_flags.XLB_BE_F_LOCAL;
const EXTERNAL = enums.xlb_service_flags.XLB_SVC_F_EXTERNAL;
/** XLB_SVC_F_REMOTE (0 in a datapath before it: the flag is then ignored). */
const REMOTE = (enums.xlb_service_flags as Record<string, number>).XLB_SVC_F_REMOTE ?? 0;
/** Largest frame the restore wrapper holds (XLB_BENCH_FRAME_MAX). */
const FRAME_MAX = 128;

/** A service of the rig, as the benchmark addresses it. */
export interface RigService {
  id: number;
  vip: string;
  port: number;
  backends: Array<{ id: number; addr: string; port: number; local: boolean }>;
}

/**
 * VIP and port of service number k (1-based): VIPs in 198.18.64.0/18
 * (RFC 2544 benchmarking space), 16,384 of them, then the next port.
 */
export function frontendOf(k: number): { vip: string; port: number } {
  const i = k - 1;
  return { vip: u32ToIp(ipToU32('198.18.64.0') + (i & 0x3fff)), port: 80 + (i >> 14) };
}

/** Options of {@link Rig.load}. */
export interface RigOptions {
  /** Services in the maps, the measured one (the last) included. */
  services: number;
  /**
   * The measured services, the last ones in the maps (IDs services −
   * length + 1 .. services): their backend count and whether the backends
   * are local (DNAT, XDP_PASS) or remote (SNAT, FIB, XDP_TX).
   */
  measured: Array<{ backends: number; local: boolean }>;
  nodeAddr: string;
  /** max_entries overrides of the datapath's maps (e.g. a conntrack that never fills). */
  maxEntries?: Record<string, number>;
  /**
   * The XDP object to load (default xdp/build/xlb_xdp.bpf.o); an earlier
   * version's (bench/datapath/before.ts) is loaded with only the knobs every
   * version has, and its maps written in its own layouts.
   */
  object?: string;
  /** The SYN-flood guard's new flows per tick and CPU (xlb_flood_limit); left out, none. */
  floodLimit?: number;
  /** Flow events per tick and CPU (xlb_events_per_tick); left out, none. */
  eventsPerTick?: number;
}

/** One loaded datapath plus wrappers. Always close(). */
export class Rig {
  readonly measured: RigService[];
  private constructor(
    readonly pinRoot: string,
    readonly xdp: BpfObject,
    readonly wrappers: BpfObject,
    readonly lbmaps: BpfLBMaps,
    measured: RigService[],
    /** Seconds the fill took (frontends, backends, tables, conntrack). */
    readonly fillSeconds: number,
  ) {
    this.measured = measured;
  }

  /** Load and fill. @throws BpfError naming the object or map */
  static load(o: RigOptions): Rig {
    ensureBpffs();
    const pinRoot = `${PIN_BASE}/bench-${randomBytes(4).toString('hex')}`;
    const nodeBe = Buffer.alloc(4);
    nodeBe.writeUInt32BE(ipToU32(o.nodeAddr));
    let xdp: BpfObject | undefined;
    let wrappers: BpfObject | undefined;
    try {
      const hz = kernelHz(OBJ.clock);
      const rodata: Record<string, number | Buffer> = { xlb_node_addr: nodeBe, ...clockRodata(hz, DEFAULT_CONNTRACK_LIFETIMES) };
      if (o.floodLimit) rodata.xlb_flood_limit = o.floodLimit;
      if (o.eventsPerTick) rodata.xlb_events_per_tick = o.eventsPerTick;
      xdp = BpfObject.open(o.object ?? OBJ.xdp, { pinRoot, rodata, maxEntries: o.maxEntries });
      xdp.load();
      // The agent turns next-hop caching on (src/datapath/nexthops.ts); versions before it have no such map.
      if (xdp.pinnedMapDefs().some((d) => d.name === 'xlb_nh_gen')) xdp.map('xlb_nh_gen').update(u32Key(0), u32Key(1));
      wrappers = BpfObject.open(OBJ.restore);
      wrappers.load();
      const lbmaps = new BpfLBMaps(lbMapSetOf(xdp!));
      const t0 = performance.now();
      const measured = fill(lbmaps, o);
      // A large fill leaves the reply index (xlb_reply_frontends) to the next
      // turn of the event loop; the agent has written it by then, and a
      // local SYN measured before would take the slower way of a flow whose
      // backend is not listed yet.
      lbmaps.replies?.flushAll();
      return new Rig(pinRoot, xdp, wrappers, lbmaps, measured, (performance.now() - t0) / 1000);
    } catch (e) {
      wrappers?.close();
      xdp?.close();
      removePins(pinRoot);
      throw e;
    }
  }

  /** xlb_xdp_ingress, the program the agent attaches. */
  get ingress(): BpfProgram {
    return this.xdp.program('xlb_xdp_ingress');
  }

  /** A program of the wrapper object. */
  wrapper(name: 'xlb_bench_ingress' | 'xlb_bench_ingress_syn' | 'xlb_bench_pass'): BpfProgram {
    return this.wrappers.program(name);
  }

  /** Point the wrappers' tail call at `prog` (xlb_xdp_ingress, or xlb_bench_pass for their own cost). */
  setTarget(prog: BpfProgram): void {
    this.wrappers.map('xlb_bench_target').update(u32Key(0), u32Key(prog.fd));
  }

  /** Set the frame the wrappers restore, and reset the SYN sequence to 0. */
  setFrame(frame: Buffer): void {
    if (frame.length > FRAME_MAX) throw new Error(`bench frame: ${frame.length} bytes, the wrapper holds ${FRAME_MAX}`);
    const v = Buffer.alloc(8 + FRAME_MAX);
    v.writeUInt32LE(frame.length, 0);
    frame.copy(v, 8);
    this.wrappers.map('xlb_bench_frame').update(u32Key(0), v);
  }

  /** How many SYN-mode iterations the wrapper has run since setFrame. */
  synSequence(): number {
    return this.wrappers.map('xlb_bench_frame').lookup(u32Key(0))!.readUInt32LE(4);
  }

  /** Whether the loaded object has map `name` (an older datapath may not). */
  hasMap(name: string): boolean {
    return this.xdp.pinnedMapDefs().some((d) => d.name === name);
  }

  /** A map of the datapath by name. */
  map(name: string): BpfMap {
    return this.xdp.map(name);
  }

  close(): void {
    this.lbmaps.close();
    this.wrappers.close();
    this.xdp.close();
    removePins(this.pinRoot);
  }
}

/**
 * Fill the maps with o.services services: the first ones are fillers with
 * two backends each (like small deployments), the last ones the measured
 * services. Returns the measured services.
 */
function fill(lbmaps: BpfLBMaps, o: RigOptions): RigService[] {
  const sizing = { minTableSize: 251, maxTableSize: 131071 };
  let nextBackend = 1;
  const frontends: Array<{ key: { addr: string; port: number; proto: number }; service: { id: number; flags: number } }> = [];
  const backendEntries: Array<{ id: number; backend: { addr: string; port: number; proto: number; flags: number } }> = [];
  const flushBackends = () => {
    lbmaps.putBackends(backendEntries);
    backendEntries.length = 0;
  };
  const measured: RigService[] = [];
  // Tables go in as the agent writes them, a batch at a time.
  const tables: Array<{ serviceId: number; table: Uint32Array }> = [];
  const flushTables = () => {
    lbmaps.putMaglevTables(tables);
    tables.length = 0;
  };
  const first = o.services - o.measured.length + 1;
  for (let k = 1; k <= o.services; k++) {
    const { vip, port } = frontendOf(k);
    const spec = k >= first ? o.measured[k - first] : undefined;
    const count = spec ? spec.backends : 2;
    const local = spec ? spec.local : k % 2 === 0;
    const backends = Array.from({ length: count }, (_, j) => {
      const id = nextBackend++;
      // Pods in 198.19.0.0/16; the port tells the services apart.
      return { id, addr: u32ToIp(ipToU32('198.19.0.0') + ((k * 7 + j) & 0xffff)), port: 8080 + (k & 0x3ff), local };
    });
    for (const b of backends) backendEntries.push({ id: b.id, backend: { addr: b.addr, port: b.port, proto: TCP, flags: b.local ? LOCAL : 0 } });
    if (backendEntries.length >= 8192) flushBackends();
    const table = buildMaglevTable(
      backends.map((b) => ({ name: `${b.addr}:${b.port}/TCP`, id: b.id, weight: 1 })),
      tableSizeFor(backends.length, sizing),
    );
    tables.push({ serviceId: k, table });
    if (tables.length >= 8192) flushTables();
    // As the controller flags it: a service with a backend on another node (its flows are SNATed).
    frontends.push({ key: { addr: vip, port, proto: TCP }, service: { id: k, flags: EXTERNAL | (local ? 0 : REMOTE) } });
    if (spec) measured.push({ id: k, vip, port, backends });
  }
  flushTables();
  // No packet runs during the fill, so the agent's write order (backends,
  // tables, frontends) does not matter here; backends go in batches.
  flushBackends();
  for (let i = 0; i < frontends.length; i += 8192) lbmaps.putFrontends(frontends.slice(i, i + 8192));
  prefillConntrack(lbmaps, first - 1);
  return measured;
}

/**
 * One established flow per filler service (up to 100,000): client
 * 198.18.128.0/18 + k, port 40000, to the service's frontend, on its first
 * backend. The conntrack hash then holds as many flows as services.
 */
function prefillConntrack(lbmaps: BpfLBMaps, fillers: number): void {
  const n = Math.min(fillers, 100_000);
  const ks = sizeOf('xlb_flow_key');
  const vs = sizeOf('xlb_ct_entry');
  // An earlier version's entry is a prefix of today's (fields were only appended).
  const mapVs = lbmaps.maps.conntrack.valueSize;
  const batch = 8192;
  for (let start = 1; start <= n; start += batch) {
    const count = Math.min(batch, n - start + 1);
    const keys = Buffer.alloc(ks * count);
    const values = Buffer.alloc(vs * count);
    for (let i = 0; i < count; i++) {
      const k = start + i;
      const { vip, port } = frontendOf(k);
      encode('xlb_flow_key', { saddr: u32ToIp(ipToU32('198.18.128.0') + (k & 0x3fff)), daddr: vip, sport: 40000 + (k >> 14), dport: port, proto: TCP }, keys, i * ks);
      // backend 2k-1 is filler k's first backend (two per filler, IDs from 1)
      encode('xlb_ct_entry', { backend_id: 2 * k - 1, backend_addr: u32ToIp(ipToU32('198.19.0.0') + ((k * 7) & 0xffff)), backend_port: 8080 + (k & 0x3ff), snat_port: 0, service_id: k, flags: 0 }, values, i * vs);
    }
    const out = mapVs === vs ? values : Buffer.concat(Array.from({ length: count }, (_, i) => values.subarray(i * vs, i * vs + mapVs)));
    lbmaps.maps.conntrack.updateBatch(keys, out, count);
  }
}

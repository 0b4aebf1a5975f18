/**
 * bench/datapath: nanoseconds per packet of xlb_xdp_ingress (the program
 * the agent attaches) under BPF_PROG_TEST_RUN, with 1, 1,000, 10,000 and
 * 100,000 services in the maps, beside the floor (xlb_bench_floor: swap
 * MACs, XDP_TX) measured in the same run on the same frame.
 *
 * Cases, each a path of docs/datapath.md:
 *   syn-local           SYN to a VIP whose backends are local: frontend hit,
 *                       Maglev pick, reply element store, conntrack insert
 *                       into a full table (every insert evicts), DNAT,
 *                       XDP_PASS
 *   syn-remote          the same to a VIP with 256 remote backends: the
 *                       flow's element of xlb_snat_sets with a port of its
 *                       set (every insert replacing a way of a full set),
 *                       the backend's cached next hop, DNAT + SNAT, XDP_TX
 *   established-local   a packet of a tracked flow: frontend hit, conntrack
 *                       hit, DNAT, XDP_PASS
 *   established-remote  the same for a SNATed flow: the cached next hop, XDP_TX
 *   reply-remote        a remote backend's reply to the node's SNAT port:
 *                       frontend miss, the port's set of xlb_snat_sets,
 *                       rewrite, FIB, XDP_TX
 *   no-service          a TCP packet to the node that is no frontend (port 22):
 *                       frontend miss, XDP_PASS untouched
 *   flood               a million spoofed SYNs at a table of 65,536
 *                       established flows: how many are evicted, with the
 *                       SYN-flood guard at its default rate, without it,
 *                       and before it existed
 *
 * Every case also runs on the datapath as it was before issue 20 (its
 * object built from git, bench/datapath/before.ts) in the same rig and run,
 * and today's figures are given as ratios to it.
 *
 * Method. With `repeat`, the kernel reuses one buffer, so every iteration
 * after the first would see the previous iteration's rewrite. Each case
 * therefore runs through xdp/xlb_bench_restore.bpf.c: a wrapper that
 * restores the original frame (and, for SYNs, gives it a source address and
 * port never used before, so every SYN misses conntrack and creates a flow)
 * and tail-calls xlb_xdp_ingress. The wrapper's own cost is measured on its
 * own (tail call into a program that returns XDP_PASS) and its median
 * subtracted from every run. Each run is one BPF_PROG_TEST_RUN with a repeat
 * count calibrated to last about a second (quick mode: 0.05 s); the kernel
 * reports the mean ns per iteration. After every case the counters prove
 * the path: the service's packet counter grew by exactly the number of
 * iterations, no drop counter moved, and the conntrack/reverse NAT state is
 * what the path leaves behind.
 *
 *   npm run bench -- --only datapath [--quick]     (root)
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { BpfObject, ifIndex, type BpfProgram } from '../../src/datapath/bpf.js';
import { decode } from '../../src/datapath/codec.js';
import { enterNetns } from '../../src/util/netns.js';
import { ipToU32, u32ToIp } from '../../src/util/ip.js';
import { tcpPacket, parsePacket, TCP_FLAG } from '../../test/helpers/packet.js';
import { Rig, OBJ, buildObjects, type RigService } from './rig.js';
import { buildBefore, BEFORE_COMMIT } from './before.js';
import { replySizing } from '../../src/datapath/datapath.js';
import { kernelHz } from '../../src/datapath/clock.js';
import { sizeOf, encode } from '../../src/datapath/codec.js';
import { findSnatFlow, readSnatWays, SNAT_PORTS_DEFAULT, SNAT_WAYS } from '../../src/datapath/snat_sets.js';
import { BenchResult } from '../lib/results.js';
import { summarize } from '../lib/stats.js';
import { printTable, sig, pct, times } from '../lib/table.js';
import { groupedBars } from '../lib/chart.js';
import { requireRoot, requireTool } from '../lib/tools.js';
import { withNetns } from '../lib/netns.js';

export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3 } as const;
/** Services in the maps; quick mode keeps the two ends (the 100,000 vs 1 ratio). */
const FULL_SIZES = [1, 1_000, 10_000, 100_000];
const QUICK_SIZES = [1, 100_000];
export const NODE = '198.18.0.11';
const GATEWAY = '198.18.0.1';
export const CLIENT = '198.18.200.7';
const MAC = { node: '02:00:00:00:0a:01', gateway: '02:00:00:00:0b:01' };
/** Backends of the remote measured service: enough that SNAT ports never run out (see syn-remote). */
const REMOTE_BACKENDS = 256;
const TARGET = { established: 120, syn: 250, scale: 1.1 };
/** Issue 20's targets, as ratios: to the datapath before it, and SYN remote to SYN local. */
const VS_BEFORE: Partial<Record<CaseName, number>> = { 'syn-local': 0.5, 'established-remote': 0.75 };
const REMOTE_OVER_LOCAL = 1.2;
/** The flood case: established flows in the table, spoofed SYNs sent, the guard's rate (datapath.synFloodGuard's default). */
const FLOOD = { established: 65_536, syns: 1_000_000, newFlowsPerSecond: 10_000 };
/** A datapath version measured: today's, or the one before issue 20. */
interface Version {
  name: 'xlb' | 'before';
  object: string;
  /** Figure ID prefix ('' for today's). */
  prefix: string;
}
/** Decode a conntrack entry of either version (an earlier one is a prefix of today's). */
function decodeCt(v: Buffer) {
  const full = sizeOf('xlb_ct_entry');
  return decode('xlb_ct_entry', v.length >= full ? v : Buffer.concat([v, Buffer.alloc(full - v.length)]));
}

type CaseName = 'syn-local' | 'syn-remote' | 'established-local' | 'established-remote' | 'reply-remote' | 'no-service';
const CASES: CaseName[] = ['syn-local', 'syn-remote', 'established-local', 'established-remote', 'reply-remote', 'no-service'];

/** An `xdp_md` for ctx_in: the frame's length and the ingress interface (bpf_fib_lookup needs it). */
export function xdpCtx(frameLength: number, ifindex: number): Buffer {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(frameLength, 4);
  ctx.writeUInt32LE(ifindex, 12);
  return ctx;
}

export function frame(src: string, sport: number, dst: string, dport: number, flags: number): Buffer {
  return tcpPacket({ eth: { src: MAC.gateway, dst: MAC.node }, ip: { src, dst, ttl: 64 }, tcp: { sport, dport, flags } });
}

/** Drop counters summed over reasons. */
function dropTotal(rig: Rig): bigint {
  return Object.values(rig.lbmaps.readDrops()).reduce((a, b) => a + b, 0n);
}

/** Drop counters by reason, the ones that are not 0, for assertion messages. */
function dropsText(rig: Rig): string {
  return Object.entries(rig.lbmaps.readDrops()).filter(([, v]) => v).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
}

interface Timing {
  /** Kernel's mean ns per iteration, one per run. */
  runs: number[];
  /** Iterations made in all, calibration included. */
  iterations: number;
  repeat: number;
  /** SYN cases: packets dropped while measuring (reported; tolerated up to 10 per million). */
  dropped?: number;
}

/**
 * Run `prog` on `input`: one calibration run, then `runs` runs of a repeat
 * count that lasts about `seconds`. Every run must return `want`.
 */
function measure(prog: BpfProgram, input: Buffer, ctxIn: Buffer, want: number, runs: number, seconds: number, what: string): Timing {
  const calibration = 20_000;
  const c = prog.testRun(input, { repeat: calibration, ctxIn });
  assert.equal(c.retval, want, `${what}: calibration run returned ${c.retval}, want ${want}`);
  const repeat = Math.max(calibration, Math.min(50_000_000, Math.ceil((seconds * 1e9) / Math.max(1, c.durationNs))));
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = prog.testRun(input, { repeat, ctxIn });
    assert.equal(r.retval, want, `${what}: run ${i} returned ${r.retval}, want ${want}`);
    out.push(r.durationNs);
  }
  return { runs: out, iterations: calibration + runs * repeat, repeat };
}

/** Set up the private namespace's interface, routes and neighbour so that bpf_fib_lookup resolves. */
export function wireNamespace(ns: string): void {
  const ip = (...args: string[]) => execFileSync('ip', ['-n', ns, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  ip('link', 'add', 'xlbA', 'address', MAC.node, 'type', 'veth', 'peer', 'name', 'xlbB', 'address', MAC.gateway);
  ip('link', 'set', 'xlbA', 'up');
  ip('link', 'set', 'xlbB', 'up');
  ip('addr', 'add', `${NODE}/24`, 'dev', 'xlbA');
  ip('route', 'add', '198.19.0.0/16', 'via', GATEWAY, 'dev', 'xlbA'); // pods on other nodes
  ip('route', 'add', '198.18.192.0/18', 'via', GATEWAY, 'dev', 'xlbA'); // clients
  ip('neigh', 'add', GATEWAY, 'lladdr', MAC.gateway, 'dev', 'xlbA', 'nud', 'permanent');
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1']);
}

/** Run the datapath benchmark and write bench/results/datapath.{json,svg}. */
export async function run(opts: { quick: boolean }): Promise<BenchResult> {
  requireRoot('bench/datapath');
  requireTool('bench/datapath', 'bpftool', 'bpftool');
  requireTool('bench/datapath', 'make', 'make');
  buildObjects();
  const res = new BenchResult('datapath', 'XDP datapath: ns per packet under BPF_PROG_TEST_RUN', opts.quick);
  const runs = 5;
  const seconds = opts.quick ? 0.05 : 1;
  const SIZES = opts.quick ? QUICK_SIZES : FULL_SIZES;
  res.method.push(
    `BPF_PROG_TEST_RUN of xlb_xdp_ingress (xdp/build/xlb_xdp.bpf.o) through the restore wrapper xdp/build/xlb_bench_restore.bpf.o (tail call); ${runs} runs per figure, each a repeat count calibrated to about ${seconds} s; the kernel's mean ns per iteration is one run.`,
    "Net figures subtract the median of the wrapper's own cost (restore [+ new source for SYNs] + tail call into XDP_PASS) measured in the same rig.",
    'The floor is xdp/build/xlb_bench_floor.bpf.o (swap MACs, XDP_TX) on the same SYN frame, run directly.',
    `Maps: N services (N-1 fillers with 2 backends and a Maglev table each, one established conntrack flow per filler) plus the measured services; the local measured service has 2 local backends, the remote one ${REMOTE_BACKENDS} remote backends (SNAT ports: 4536 per backend, over 4,096 sets of 32 ways: ways run out before ports). With N = 1 each measured service is loaded alone.`,
    'Tables go into the Maglev slabs as the agent writes them, 8192 per batch; see bench/datapath/rig.ts.',
  );
  res.note('Other engineers ran tests on this 2-core machine at the same time: medians of 5 runs, spreads given.');

  const versions: Version[] = [
    { name: 'xlb', object: OBJ.xdp, prefix: '' },
    { name: 'before', object: buildBefore(), prefix: 'before.' },
  ];
  res.method.push(
    `Before: the same cases on xlb_xdp.bpf.o of commit ${BEFORE_COMMIT} (built from git by bench/datapath/before.ts), in the same rig, wrapper and run; its figures carry the prefix "before.".`,
    'SYN cases first fill the conntrack table (a run of new flows as long as the table plus 16,384), so that every measured insert evicts, as in production.',
  );

  await withNetns('dp', async (ns) => {
    wireNamespace(ns.name);
    const leave = enterNetns(ns.name);
    const floorObj = BpfObject.open(OBJ.floor);
    try {
      floorObj.load();
      const floorProg = floorObj.program('xlb_bench_floor');
      const ifA = ifIndex('xlbA');
      for (const services of SIZES) {
        const synFloor = frame(CLIENT, 40000, '198.18.64.1', 80, TCP_FLAG.SYN);
        const floor = measure(floorProg, synFloor, xdpCtx(synFloor.length, ifA), XDP.TX, runs, seconds, 'floor');
        res.add({ id: `floor.services-${services}`, label: `floor (swap MACs, XDP_TX), ${services} services`, unit: 'ns', runs: floor.runs, params: { case: 'floor', services } });
        for (const version of versions) {
          const t0 = performance.now();
          const load = (measured: Array<{ backends: number; local: boolean }>) => Rig.load({ services, measured, nodeAddr: NODE, object: version.object });
          const rigs =
            services === 1
              ? [load([{ backends: 2, local: true }]), load([{ backends: REMOTE_BACKENDS, local: false }])]
              : [load([{ backends: 2, local: true }, { backends: REMOTE_BACKENDS, local: false }])];
          try {
            const fill = rigs.reduce((sum, r) => sum + r.fillSeconds, 0);
            console.log(`datapath (${version.name}): ${services} services loaded (fill ${fill.toFixed(1)} s)`);
            measureVersion(res, version, rigs, services, ifA, runs, seconds, SIZES);
            console.log(`datapath (${version.name}): ${services} services measured in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
          } finally {
            for (const r of rigs) r.close();
          }
        }
      }
      for (const version of versions) runFlood(res, version, ifA, version.name === 'xlb' ? [true, false] : [false]);
    } finally {
      floorObj.close();
      leave();
    }
  });

  // Today against before, and SYN remote against SYN local.
  for (const services of SIZES) {
    const headline = services === 1 || services === SIZES[SIZES.length - 1];
    for (const name of CASES) {
      const now = res.get(`${name}.services-${services}`);
      const was = res.get(`before.${name}.services-${services}`);
      const max = VS_BEFORE[name];
      res.add({
        id: `vs-before.${name}.services-${services}`,
        label: `${name}: ns today over ns before, ${services} services`,
        unit: 'ratio',
        runs: now.runs.map((r) => r / was.median),
        params: { case: name, kind: 'vs-before', services, headline: headline && max !== undefined, before: was.median },
        target: max !== undefined ? { max, source: 'issue 20' } : undefined,
      });
    }
    for (const prefix of ['', 'before.']) {
      const local = res.get(`${prefix}syn-local.services-${services}`);
      const remote = res.get(`${prefix}syn-remote.services-${services}`);
      res.add({
        id: `${prefix}syn-remote-over-local.services-${services}`,
        label: `${prefix ? 'before: ' : ''}syn-remote over syn-local, ${services} services`,
        unit: 'ratio',
        runs: remote.runs.map((r) => r / local.median),
        params: { kind: 'remote-over-local', services, headline: headline && !prefix },
        target: prefix ? undefined : { max: REMOTE_OVER_LOCAL, source: 'issue 20' },
      });
    }
  }

  // 100,000 services against 1.
  const most = SIZES[SIZES.length - 1];
  for (const name of CASES) {
    const one = res.get(`${name}.services-1`);
    const many = res.figures().find((f) => f.id === `${name}.services-${most}`)!;
    res.add({
      id: `scale.${name}`,
      label: `${name}: ns at ${most.toLocaleString('en')} services over ns at 1`,
      unit: 'ratio',
      runs: many.runs.map((r) => r / one.median),
      params: { case: name, kind: 'scale', headline: true },
      target: { max: TARGET.scale, source: 'issue 6 (no case more than 10% slower at 100,000 services than at 1)' },
    });
  }

  const rows = CASES.map((name) => {
    const cells: Array<string | number> = [name];
    for (const s of SIZES) {
      const f = res.get(`${name}.services-${s}`);
      cells.push(`${sig(f.median)} ${pct(f.spread)} (${times(f.ratio)})`);
    }
    const sc = res.get(`scale.${name}`);
    cells.push(`${times(sc.median)}${sc.met ? '' : ' !'}`);
    return cells;
  });
  rows.push(['floor', ...SIZES.map((s) => `${sig(res.get(`floor.services-${s}`).median)} ${pct(res.get(`floor.services-${s}`).spread)}`), '']);
  printTable('XDP ns/packet, wrapper subtracted: median ±half-range (ratio to the floor)', ['case \\ services', ...SIZES.map((s) => s.toLocaleString('en')), `${most / 1000}k / 1`], rows);
  for (const f of res.figures().filter((x) => x.target)) {
    if (f.params?.kind === 'scale' || f.params?.services === most || f.params?.services === 1) {
      if (!f.met) console.log(`  target NOT met: ${f.label}: ${sig(f.median)} ${f.unit} > ${f.target!.max}`);
    }
  }

  const bars: Array<{ x: string; series: string; value: number }> = CASES.flatMap((name) =>
    SIZES.map((s) => ({ x: name, series: `${s.toLocaleString('en')} services`, value: +res.get(`${name}.services-${s}`).median.toFixed(1) })),
  );
  for (const s of SIZES) bars.push({ x: 'floor', series: `${s.toLocaleString('en')} services`, value: +res.get(`floor.services-${s}`).median.toFixed(1) });
  const svg = await groupedBars(bars, {
    title: 'XDP datapath, ns per packet (BPF_PROG_TEST_RUN, wrapper subtracted; lower is better)',
    yTitle: 'ns/packet',
    rules: [
      { value: TARGET.syn, label: `SYN target ${TARGET.syn} ns` },
      { value: TARGET.established, label: `established target ${TARGET.established} ns` },
    ],
  });
  res.write(svg);
  return res;
}

/** Measure every case of one version's rigs at `services` services (figures prefixed with the version's prefix). */
function measureVersion(res: BenchResult, version: Version, rigs: Rig[], services: number, ifA: number, runs: number, seconds: number, SIZES: number[]): void {
  const p = version.prefix;
  const local = pick(rigs, true);
  const remote = pick(rigs, false);
  const synFrame = frame(CLIENT, 40000, local.svc.vip, local.svc.port, TCP_FLAG.SYN);
  for (const { rig, svc, isLocal } of [local, remote]) {
    const family = isLocal ? 'local' : 'remote';
    const ctx = xdpCtx(synFrame.length, ifA);
    const cost = (prog: 'xlb_bench_ingress' | 'xlb_bench_ingress_syn') => {
      rig.setTarget(rig.wrapper('xlb_bench_pass'));
      rig.setFrame(synFrame);
      return measure(rig.wrapper(prog), synFrame, ctx, XDP.PASS, runs, seconds, `wrapper ${prog}`);
    };
    const restoreId = `${p}wrapper-restore.${family}.services-${services}`;
    const synId = `${p}wrapper-syn.${family}.services-${services}`;
    res.add({ id: restoreId, label: `${p}wrapper alone: restore + tail call (${family} rig), ${services} services`, unit: 'ns', runs: cost('xlb_bench_ingress').runs, params: { case: 'wrapper-restore', services, version: version.name } });
    res.add({ id: synId, label: `${p}wrapper alone: restore + new source + tail call (${family} rig), ${services} services`, unit: 'ns', runs: cost('xlb_bench_ingress_syn').runs, params: { case: 'wrapper-syn', services, version: version.name } });
    rig.setTarget(rig.ingress);
    const names: CaseName[] = isLocal ? ['syn-local', 'established-local', 'no-service'] : ['syn-remote', 'established-remote', 'reply-remote'];
    for (const name of names) {
      const t = runCase(name, rig, svc, ifA, runs, seconds);
      const wrapper = name.startsWith('syn') ? synId : restoreId;
      const wrapperMedian = summarize(res.figures().find((f) => f.id === wrapper)!.runs).median;
      if (t.dropped !== undefined) {
        res.add({ id: `${p}drops.${name}.services-${services}`, label: `${p}${name}: SYNs dropped per million, ${services} services`, unit: 'per million', runs: [(t.dropped / t.iterations) * 1e6], params: { case: `drops.${name}`, services, version: version.name, headline: !p && t.dropped > 0 } });
        if (t.dropped) res.note(`${p}${name} at ${services} services: ${t.dropped} of ${t.iterations} SYNs dropped (${dropsText(rig)} counters, cumulative) with the conntrack table full.`);
      }
      res.add({ id: `${p}raw.${name}.services-${services}`, label: `${p}${name}, wrapper included, ${services} services`, unit: 'ns', runs: t.runs, params: { case: `raw.${name}`, services, version: version.name } });
      const kind = name.startsWith('syn') ? 'syn' : name.startsWith('established') ? 'established' : undefined;
      res.add({
        id: `${p}${name}.services-${services}`,
        label: `${p ? `before (${BEFORE_COMMIT}): ` : ''}${name}, ${services} services (wrapper subtracted)`,
        unit: 'ns',
        runs: t.runs.map((r) => r - wrapperMedian),
        params: { case: name, services, repeat: t.repeat, version: version.name, headline: !p && (services === 1 || services === SIZES[SIZES.length - 1]) },
        baseline: `floor.services-${services}`,
        target: kind && !p ? { max: TARGET[kind], source: `issue 6 (Katran here: ${kind === 'syn' ? 305 : 144} ns)` } : undefined,
      });
    }
  }
}

/** Events a run sends at most: fewer than the ring holds (XLB_EVENTS_RING_BYTES / 48-byte records), so none is lost. */
/**
 * The flood case: FLOOD.established flows in a table of 131,072, then
 * FLOOD.syns spoofed SYNs (each from a new source) in one run; the figure is
 * how many of the established flows lost their conntrack entry. `guards`:
 * with the SYN-flood guard at datapath.synFloodGuard's default rate (true),
 * and/or without it (false).
 */
function runFlood(res: BenchResult, version: Version, ifA: number, guards: boolean[]): void {
  const limit = replySizing(131072, kernelHz(OBJ.clock), FLOOD.newFlowsPerSecond).rodata.xlb_flood_limit;
  for (const guard of guards) {
    const rig = Rig.load({ services: 1, measured: [{ backends: 2, local: true }], nodeAddr: NODE, object: version.object, floodLimit: guard ? limit : undefined });
    try {
      const svc = rig.measured[0];
      const ct = rig.map('xlb_conntrack');
      const ks = sizeOf('xlb_flow_key');
      const keys = Buffer.alloc(ks * FLOOD.established);
      const full = Buffer.alloc(sizeOf('xlb_ct_entry'));
      const values = Buffer.alloc(ct.valueSize * FLOOD.established);
      const b = svc.backends[0];
      for (let i = 0; i < FLOOD.established; i++) {
        encode('xlb_flow_key', { saddr: u32ToIp(ipToU32('198.18.100.0') + (i >> 8)), daddr: svc.vip, sport: 2000 + (i & 0xff), dport: svc.port, proto: 6 }, keys, i * ks);
        encode('xlb_ct_entry', { backend_id: b.id, backend_addr: b.addr, backend_port: b.port, snat_port: 0, service_id: svc.id, flags: 2 /* established */, seen: 0 }, full, 0);
        full.copy(values, i * ct.valueSize, 0, ct.valueSize);
      }
      for (let i = 0; i < FLOOD.established; i += 8192) {
        const n = Math.min(8192, FLOOD.established - i);
        ct.updateBatch(keys.subarray(i * ks, (i + n) * ks), values.subarray(i * ct.valueSize, (i + n) * ct.valueSize), n);
      }
      const syn = frame(CLIENT, 40000, svc.vip, svc.port, TCP_FLAG.SYN);
      rig.setTarget(rig.ingress);
      rig.setFrame(syn);
      const r = rig.wrapper('xlb_bench_ingress_syn').testRun(syn, { repeat: FLOOD.syns, ctxIn: xdpCtx(syn.length, ifA) });
      assert.equal(r.retval, XDP.PASS, 'flood: the last SYN was placed');
      assert.equal(rig.synSequence(), FLOOD.syns, 'flood: every SYN from a new source');
      let evicted = 0;
      for (let i = 0; i < FLOOD.established; i++) if (!ct.lookup(keys.subarray(i * ks, (i + 1) * ks))) evicted++;
      const which = version.name === 'before' ? `before (${BEFORE_COMMIT})` : guard ? `xlb, guard at ${FLOOD.newFlowsPerSecond}/s per CPU` : 'xlb, guard off';
      const id = version.name === 'before' ? 'before.flood' : guard ? 'flood' : 'flood.guard-off';
      res.add({
        id: `${id}.evicted`,
        label: `${which}: established flows evicted by ${FLOOD.syns.toLocaleString('en')} spoofed SYNs (of ${FLOOD.established.toLocaleString('en')})`,
        unit: 'flows',
        runs: [evicted],
        params: { case: 'flood', version: version.name, guard, headline: guard },
        target: guard ? { max: 0, source: 'issue 20 (a flood evicts no established flow)' } : undefined,
      });
      res.add({ id: `${id}.ns`, label: `${which}: ns per spoofed SYN, wrapper included`, unit: 'ns', runs: [r.durationNs], params: { case: 'flood', version: version.name, guard } });
      console.log(`datapath: flood (${which}): ${evicted} of ${FLOOD.established} established flows evicted, ${r.durationNs} ns per SYN`);
    } finally {
      rig.close();
    }
  }
}

function pick(rigs: Rig[], local: boolean): { rig: Rig; svc: RigService; isLocal: boolean } {
  for (const rig of rigs) for (const svc of rig.measured) if (svc.backends[0].local === local) return { rig, svc, isLocal: local };
  throw new Error(`bench/datapath: no ${local ? 'local' : 'remote'} measured service loaded`);
}

/** Measure one case and assert that every iteration took its path. */
function runCase(name: CaseName, rig: Rig, svc: RigService, ifA: number, runs: number, seconds: number): Timing {
  const stats = () => rig.lbmaps.readServiceStats([svc.id]).get(svc.id)!.packets;
  const drops0 = dropTotal(rig);
  const ingress = rig.wrapper('xlb_bench_ingress');
  const ct = rig.map('xlb_conntrack');
  const rnat = rig.map('xlb_rnat');
  // Since SNATed flows live in xlb_snat_sets (xlb_snat.h), a remote flow's
  // entry is there; the datapath before them kept it in xlb_conntrack.
  const sets = rig.hasMap('xlb_snat_sets') ? rig.map('xlb_snat_sets') : undefined;
  const snatSizes = sets && { sets: sets.maxEntries, portMin: SNAT_PORTS_DEFAULT.min, portMax: SNAT_PORTS_DEFAULT.max };
  const flowCount = () => ct.keys().length + (sets ? readSnatWays(sets).filter((w) => !w.pointer).length : 0);
  const capacity = Math.max(ct.maxEntries, sets ? sets.maxEntries * SNAT_WAYS : 0);
  const lookupCt = (key: Buffer): Buffer | undefined => {
    const v = ct.lookup(key);
    if (v || !sets) return v;
    const k = decode('xlb_flow_key', key);
    const w = findSnatFlow(sets, { saddr: k.saddr, daddr: k.daddr, sport: k.sport, dport: k.dport, proto: k.proto }, snatSizes!);
    return w && encode('xlb_ct_entry', w.ct);
  };
  const isLocal = svc.backends[0].local;
  const verdict = isLocal ? XDP.PASS : XDP.TX;
  const flowKey = (saddr: string, sport: number) => {
    const k = Buffer.alloc(16);
    k.writeUInt32BE(ipToU32(saddr), 0);
    k.writeUInt32BE(ipToU32(svc.vip), 4);
    k.writeUInt16BE(sport, 8);
    k.writeUInt16BE(svc.port, 10);
    k[12] = 6;
    return k;
  };
  let t: Timing;
  switch (name) {
    case 'syn-local':
    case 'syn-remote': {
      const syn = frame(CLIENT, 40000, svc.vip, svc.port, TCP_FLAG.SYN);
      rig.setFrame(syn);
      // Fill the table first: every measured insert evicts, as in production.
      const prefill = capacity + 16_384;
      const filled = rig.wrapper('xlb_bench_ingress_syn').testRun(syn, { repeat: prefill, ctxIn: xdpCtx(syn.length, ifA) });
      assert.equal(filled.retval, verdict, `${name}: the table fill's SYNs take the path`);
      const held = flowCount();
      assert.ok(held >= capacity * 0.9, `${name}: conntrack full before measuring (${held} of ${capacity})`);
      const drops1 = dropTotal(rig);
      const before = stats();
      t = measure(rig.wrapper('xlb_bench_ingress_syn'), syn, xdpCtx(syn.length, ifA), verdict, runs, seconds, name);
      // Every iteration had a source never used before: none can have hit conntrack.
      assert.equal(rig.synSequence(), prefill + t.iterations, `${name}: the wrapper gave every iteration a new source`);
      assert.equal(stats() - before, BigInt(t.iterations), `${name}: every iteration counted for the service`);
      // SYNs dropped while measuring (for want of a SNAT port, before
      // issue 20: seen 300 to 5,000 per million) are counted and reported
      // (drops.* figures, a note); more than 1 in 100 would no longer be the
      // path named, and fails the case.
      const dropped = Number(dropTotal(rig) - drops1);
      assert.ok(dropped <= t.iterations * 1e-2, `${name}: ${dropped} of ${t.iterations} SYNs dropped (${dropsText(rig)})`);
      t.dropped = dropped;
      const last = prefill + t.iterations - 1;
      const lastSrc = u32ToIp(ipToU32(CLIENT) + (last >>> 15));
      const entry = lookupCt(flowKey(lastSrc, 0x8000 | (last & 0x7fff)));
      assert.ok(entry, `${name}: the last SYN's flow is in conntrack`);
      const e = decodeCt(entry);
      assert.equal(e.service_id, svc.id, `${name}: conntrack entry of the measured service`);
      assert.equal(e.flags !== 0, !isLocal, `${name}: SNAT flag iff the backend is remote`);
      return t;
    }
    case 'established-local':
    case 'established-remote': {
      const pkt = frame(CLIENT, 40001, svc.vip, svc.port, TCP_FLAG.ACK);
      rig.setFrame(pkt);
      const first = rig.ingress.testRun(pkt, { ctxIn: xdpCtx(pkt.length, ifA) });
      assert.equal(first.retval, verdict, `${name}: the first packet places the flow`);
      const entry = lookupCt(flowKey(CLIENT, 40001));
      assert.ok(entry, `${name}: the flow is tracked`);
      const e = decodeCt(entry);
      const ctCount = flowCount();
      const before = stats();
      t = measure(ingress, pkt, xdpCtx(pkt.length, ifA), verdict, runs, seconds, name);
      assert.equal(stats() - before, BigInt(t.iterations), `${name}: every iteration counted for the service`);
      assert.equal(dropTotal(rig), drops0, `${name}: no drops`);
      assert.equal(flowCount(), ctCount, `${name}: no flow created while measuring (every iteration hit conntrack)`);
      const out = parsePacket(ingress.testRun(pkt, { ctxIn: xdpCtx(pkt.length, ifA) }).dataOut);
      assert.deepEqual({ dst: out.ip!.dst, dport: out.l4!.dport }, { dst: e.backend_addr, dport: e.backend_port }, `${name}: DNAT to the tracked backend`);
      return t;
    }
    case 'reply-remote': {
      // The flow of established-remote (client:40001) is in conntrack with its SNAT port.
      const e = decodeCt(lookupCt(flowKey(CLIENT, 40001)) ?? assert.fail(`${name}: run established-remote first`));
      const reply = frame(e.backend_addr, e.backend_port, NODE, e.snat_port, TCP_FLAG.SYN | TCP_FLAG.ACK);
      rig.setFrame(reply);
      const rnatCount = rnat.keys().length;
      const before = stats();
      t = measure(ingress, reply, xdpCtx(reply.length, ifA), XDP.TX, runs, seconds, name);
      assert.equal(stats() - before, BigInt(t.iterations), `${name}: every iteration counted as the service's reply`);
      assert.equal(dropTotal(rig), drops0, `${name}: no drops`);
      assert.equal(rnat.keys().length, rnatCount, `${name}: reverse NAT entries unchanged`);
      const out = parsePacket(ingress.testRun(reply, { ctxIn: xdpCtx(reply.length, ifA) }).dataOut);
      assert.deepEqual(
        { src: out.ip!.src, sport: out.l4!.sport, dst: out.ip!.dst, dport: out.l4!.dport },
        { src: svc.vip, sport: svc.port, dst: CLIENT, dport: 40001 },
        `${name}: reply restored to VIP -> client`,
      );
      return t;
    }
    case 'no-service': {
      const pkt = frame(CLIENT, 40002, NODE, 22, TCP_FLAG.SYN);
      rig.setFrame(pkt);
      const before = stats();
      const ctCount = ct.keys().length;
      t = measure(ingress, pkt, xdpCtx(pkt.length, ifA), XDP.PASS, runs, seconds, name);
      assert.equal(stats(), before, `${name}: no service counted it`);
      assert.equal(dropTotal(rig), drops0, `${name}: no drops`);
      assert.equal(ct.keys().length, ctCount, `${name}: no flow created`);
      assert.ok(ingress.testRun(pkt, { ctxIn: xdpCtx(pkt.length, ifA) }).dataOut.equals(pkt), `${name}: passed untouched`);
      return t;
    }
  }
}

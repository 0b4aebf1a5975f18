/**
 * Flow events' cost in the datapath (issue 23): ns per packet with events
 * on over off, for a SYN to a local backend and for an established packet,
 * and how many events a second one core reads from the ring. Its own
 * benchmark (the datapath benchmark takes many minutes), in the datapath
 * benchmark's rig and namespace.
 *
 *   npm run bench -- --only events [--quick]     (root)
 */
import assert from 'node:assert/strict';
import { ifIndex } from '../../src/datapath/bpf.js';
import { enterNetns } from '../../src/util/netns.js';
import { TCP_FLAG } from '../../test/helpers/packet.js';
import { eventRingBytes, FlowEventReader } from '../../src/datapath/flow_events.js';
import { sizeOf } from '../../src/datapath/codec.js';
import os from 'node:os';
import { Rig, buildObjects } from './rig.js';
import { CLIENT, NODE, XDP, frame, wireNamespace, xdpCtx } from './index.js';
import { BenchResult } from '../lib/results.js';
import { printTable, sig, pct } from '../lib/table.js';
import { groupedBars } from '../lib/chart.js';
import { requireRoot, requireTool } from '../lib/tools.js';
import { withNetns } from '../lib/netns.js';

/** The ring as the agent sizes it at the default rate (flows.eventsPerSecond 1,000) on this machine. */
const RING_BYTES = eventRingBytes(1000, os.cpus().length);
/** SYNs a run: each sends an event, half what the ring holds (the rest is the agent's margin), drained after each run as the agent reads it. */
const EVENTS_PER_RUN = Math.floor(RING_BYTES / (sizeOf('xlb_flow_event') + 8) / 2);

/**
 * Flow events on against off (issue 23): a SYN to a local backend and an
 * established packet, in rigs of one service that differ only in
 * xlb_events_per_tick (off, or so high that every SYN sends one), with the
 * ring the agent loads at the default rate, each run EVENTS_PER_RUN packets
 * with the ring drained between runs, so every event is sent (none finds
 * the ring full). And how many events a second one
 * core reads from the ring (src/datapath/flow_events.ts).
 */
function runEvents(res: BenchResult, ifA: number, quick: boolean): void {
  const runs = quick ? 200 : 2000;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  // Four rigs at once, off, on, on, off in the order they are loaded (the
  // rig loaded later measured up to a quarter faster here, whichever it was),
  // their runs interleaved: the order of loading and whatever else the
  // machine does then weigh on both sides alike.
  const load = (on: boolean) => {
    const rig = Rig.load({ services: 1, measured: [{ backends: 2, local: true }], nodeAddr: NODE, eventsPerTick: on ? 2_000_000_000 : undefined, maxEntries: { xlb_events: RING_BYTES } });
    const reader = new FlowEventReader({ events: rig.map('xlb_events'), limit: rig.map('xlb_event_limit') }, () => undefined);
    return { rig, reader, on };
  };
  const sides = [load(false), load(true), load(true), load(false)];
  const cost = { off: { syn: [] as number[], established: [] as number[] }, on: { syn: [] as number[], established: [] as number[] } };
  let readRate = 0;
  try {
    const svc = sides[0].rig.measured[0];
    const syn = frame(CLIENT, 40000, svc.vip, svc.port, TCP_FLAG.SYN);
    const ack = frame(CLIENT, 40000, svc.vip, svc.port, TCP_FLAG.ACK);
    const ctx = xdpCtx(syn.length, ifA);
    for (const { rig } of sides) {
      assert.equal(rig.measured[0].vip, svc.vip, 'events: both rigs serve the same VIP');
      rig.setTarget(rig.ingress);
    }
    const one = (side: (typeof sides)[number], kind: 'syn' | 'established', r: number): number => {
      const { rig, reader, on } = side;
      rig.setFrame(kind === 'syn' ? syn : ack);
      const t = rig.wrapper(kind === 'syn' ? 'xlb_bench_ingress_syn' : 'xlb_bench_ingress').testRun(kind === 'syn' ? syn : ack, { repeat: EVENTS_PER_RUN, ctxIn: ctx });
      assert.equal(t.retval, XDP.PASS, `events: the ${kind} packet takes the local path`);
      const t0 = performance.now();
      const n = reader.poll();
      const ms = performance.now() - t0;
      if (on && kind === 'syn') {
        assert.equal(n, EVENTS_PER_RUN, `events: every SYN of run ${r} sent one`);
        readRate = Math.max(readRate, n / (ms / 1000));
      } else assert.equal(n, 0, `events: none sent (${on ? 'established packets' : 'events off'})`);
      cost[on ? 'on' : 'off'][kind].push(t.durationNs);
      return t.durationNs;
    };
    for (const kind of ['syn', 'established'] as const) {
      if (kind === 'established') {
        // The established packet's flow, placed now (the SYN runs have long evicted older flows); its event read.
        for (const { rig, reader } of sides) {
          assert.equal(rig.ingress.testRun(syn, { ctxIn: ctx }).retval, XDP.PASS);
          reader.poll();
        }
      }
      for (let r = 0; r < runs; r++) {
        // Which rig goes first turns too.
        for (let i = 0; i < sides.length; i++) one(sides[(i + r) % sides.length], kind, r);
      }
    }
    for (const side of sides) assert.equal(side.reader.suppressed(), 0n, 'events: none suppressed');
  } finally {
    for (const { rig, reader } of sides) {
      reader.close();
      rig.close();
    }
  }
  for (const kind of ['syn', 'established'] as const) {
    res.add({ id: `events.${kind}.off`, label: `${kind === 'syn' ? 'SYN to a local backend' : 'established packet'}, flow events off (wrapper included)`, unit: 'ns', runs: cost.off[kind], params: { case: `events.${kind}`, events: false } });
    res.add({ id: `events.${kind}.on`, label: `${kind === 'syn' ? 'SYN to a local backend' : 'established packet'}, flow events on (wrapper included)`, unit: 'ns', runs: cost.on[kind], params: { case: `events.${kind}`, events: true } });
    res.add({
      id: `events.${kind}.on-over-off`,
      label: `${kind === 'syn' ? 'SYN to a local backend' : 'established packet'}: ns with flow events on over off (interleaved runs of four rigs)`,
      unit: 'ratio',
      // The median run on over the median run off: a run of a few hundred packets is too short for
      // one run's ratio to another to say much.
      runs: [median(cost.on[kind]) / median(cost.off[kind])],
      params: { case: `events.${kind}`, headline: true },
      target: { max: kind === 'syn' ? 1.15 : 1.05, source: 'issue 23' },
    });
  }
  res.add({ id: 'events.read-per-second', label: 'flow events one core reads from the ring a second (ring_buffer__consume, decode)', unit: 'events/s', runs: [readRate], params: { case: 'events.read', headline: true } });
  res.method.push(
    `Flow events: four rigs of one service with two local backends, loaded at once in the order off, on, on, off (the rig loaded later measured up to a quarter faster, whichever it was), two with xlb_events_per_tick 0 and two with it so high that every new flow sends an event, each with the ring the agent loads at the default rate (${RING_BYTES / 1024} KiB here: eventRingBytes); ${runs} rounds of one run on each rig (the rig that goes first turning) of ${EVENTS_PER_RUN} SYNs (each from a new source, through the restore wrapper) and of ${EVENTS_PER_RUN} established ACKs, the ring drained after each run (FlowEventReader.poll, timed for the read rate) so that every event is sent; the ratio is the median run on over the median run off. The conntrack table is not full here, so the SYN is cheaper than the datapath benchmark's.`,
  );
}


/** Run it: bench/results/events.json and events.svg. */
export async function run(opts: { quick: boolean }): Promise<BenchResult> {
  requireRoot('bench/events');
  requireTool('bench/events', 'make', 'make');
  buildObjects();
  const res = new BenchResult('events', 'Flow events: XDP ns per packet with events on over off, and events read a second', opts.quick);
  await withNetns('ev', async (ns) => {
    wireNamespace(ns.name);
    const leave = enterNetns(ns.name);
    try {
      runEvents(res, ifIndex('xlbA'), opts.quick);
    } finally {
      leave();
    }
  });
  const rows = (['syn', 'established'] as const).map((k) => {
    const off = res.get(`events.${k}.off`);
    const ratio = res.get(`events.${k}.on-over-off`);
    return [k === 'syn' ? 'SYN, local backend' : 'established', `${sig(off.median)} ${pct(off.spread)}`, `${sig(ratio.median)} ${pct(ratio.spread)}`, `≤ ${ratio.target!.max}`, ratio.met ? 'met' : 'NOT met'];
  });
  printTable('Flow events: ns per packet off (wrapper included), on/off', ['packet', 'off ns', 'on / off', 'target', ''], rows);
  console.log(`events read a second by one core: ${Math.round(res.get('events.read-per-second').median).toLocaleString('en')}`);
  const svg = await groupedBars(
    (['syn', 'established'] as const).map((k) => ({ x: k === 'syn' ? 'SYN, local backend' : 'established', series: 'events on / off', value: +res.get(`events.${k}.on-over-off`).median.toFixed(3) })),
    { title: 'Flow events: ns per packet with events on over off (lower is better)', yTitle: 'on / off', rules: [{ value: 1.15, label: 'SYN target 1.15' }, { value: 1.05, label: 'established target 1.05' }] },
  );
  res.write(svg);
  return res;
}

/**
 * Cost per packet of xlb_xdp_ingress under BPF_PROG_TEST_RUN with repeat
 * (the kernel's average ns per run), printed for the established path and
 * for a SYN that creates a flow, next to the floor program (swap MACs,
 * XDP_TX). Times are printed, not asserted (they depend on the machine);
 * what is asserted is that every iteration took the path being measured.
 *
 * How each iteration takes the same path although test_run feeds each run
 * the previous run's output: two local-backend services point at each
 * other (VIP1:80's backend is VIP2:81 and VIP2:81's is VIP1:80), so the DNAT
 * of one run turns the frame into a packet of the other service's flow, and
 * the frames alternate between two flows forever.
 *   - established: both flows have conntrack entries after the first two
 *     runs; every run is a frontend hit, a conntrack hit and a DNAT.
 *   - new flow: xlb_conntrack has max_entries 1, so it can never hold both
 *     flows: every run misses conntrack, picks through Maglev, writes the
 *     conntrack entry (evicting the other flow's, as in a full table; its
 *     replies find it through xlb_reply_frontends) and DNATs.
 *
 * Run as root: node --import tsx --test test/datapath/perf.test.ts
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { BpfObject } from '../../src/datapath/bpf.js';
import { Datapath, XDP, BE_LOCAL, OBJ, buildObjects } from './harness.js';
import { tcpPacket, PROTO, TCP_FLAG } from '../helpers/packet.js';

const REPEAT = 1_000_000;
const VIP1 = { addr: '203.0.113.10', port: 80, id: 1 };
const VIP2 = { addr: '203.0.113.20', port: 81, id: 2 };
const syn = tcpPacket({ ip: { src: '192.0.2.7', dst: VIP1.addr }, tcp: { sport: 40000, dport: VIP1.port, flags: TCP_FLAG.SYN } });
const ack = tcpPacket({ ip: { src: '192.0.2.7', dst: VIP1.addr }, tcp: { sport: 40000, dport: VIP1.port, flags: TCP_FLAG.ACK } });

const open: Datapath[] = [];
after(() => open.forEach((d) => d.close()));

/** A datapath where VIP1 and VIP2 are each other's local backend. */
function pingPong(maxConntrack?: number): Datapath {
  buildObjects();
  const dp = Datapath.load({ withTc: false, maxEntries: maxConntrack ? { xlb_conntrack: maxConntrack } : undefined });
  open.push(dp);
  dp.addFrontend(VIP1.addr, VIP1.port, PROTO.TCP, VIP1.id);
  dp.addFrontend(VIP2.addr, VIP2.port, PROTO.TCP, VIP2.id);
  dp.setBackend(1, { addr: VIP2.addr, port: VIP2.port, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.setBackend(2, { addr: VIP1.addr, port: VIP1.port, proto: PROTO.TCP, flags: BE_LOCAL });
  // a realistic table size, so that the pick's modulo and lookups are real
  dp.setTable(VIP1.id, Array(251).fill(1));
  dp.setTable(VIP2.id, Array(251).fill(2));
  return dp;
}

/** Runs `repeat` iterations `rounds` times; returns the median of the kernel's ns/run. */
function measure(run: () => { retval: number; durationNs: number }, rounds = 5): number {
  const ns: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const r = run();
    assert.equal(r.retval, XDP.PASS);
    ns.push(r.durationNs);
  }
  return ns.sort((a, b) => a - b)[Math.floor(rounds / 2)];
}

function assertEveryRunServed(dp: Datapath, runs: number): void {
  // The frames alternate, so each service sees half of the runs.
  assert.equal(dp.serviceStats(VIP1.id).packets + dp.serviceStats(VIP2.id).packets, BigInt(runs));
  assert.equal(dp.serviceStats(VIP1.id).packets, BigInt(runs / 2));
  assert.ok(Object.values(dp.drops()).every((n) => n === 0n), 'no drops');
}

test('established flow: frontend hit, conntrack hit, DNAT (ns/packet printed)', () => {
  const dp = pingPong();
  dp.ingress.testRun(syn, { repeat: 2 }); // creates both flows
  const ns = measure(() => dp.ingress.testRun(ack, { repeat: REPEAT }));
  assertEveryRunServed(dp, 2 + 5 * REPEAT);
  assert.equal(dp.map('xlb_conntrack').keys().length, 2, 'no flow was created while measuring');
  console.log(`xlb_xdp_ingress established (local backend): ${ns} ns/packet (median of 5 x repeat ${REPEAT})`);
});

test('SYN creating a flow: conntrack miss, Maglev pick, one conntrack insert, DNAT (ns/packet printed)', () => {
  const dp = pingPong(1);
  const ns = measure(() => dp.ingress.testRun(syn, { repeat: REPEAT }));
  assertEveryRunServed(dp, 5 * REPEAT);
  // A map of one entry that served two alternating flows missed on every run.
  assert.equal(dp.map('xlb_conntrack').keys().length, 1);
  const used = dp.map('xlb_replies').keys().filter((k) => dp.map('xlb_replies').lookup(k)!.some((b) => b !== 0)).length;
  assert.equal(used, 0, 'no reply element: replies find the conntrack entry through xlb_reply_frontends');
  assert.equal(dp.map('xlb_rnat').keys().length, 0, 'nothing in the overflow LRU either');
  console.log(`xlb_xdp_ingress SYN creating a flow (local backend, conntrack full): ${ns} ns/packet (median of 5 x repeat ${REPEAT})`);
});

test('floor: swap MACs and XDP_TX (ns/packet printed)', () => {
  buildObjects();
  const floor = BpfObject.open(OBJ.floor);
  try {
    floor.load();
    const prog = floor.program('xlb_bench_floor');
    const ns: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = prog.testRun(syn, { repeat: REPEAT });
      assert.equal(r.retval, XDP.TX);
      ns.push(r.durationNs);
    }
    console.log(`xlb_bench_floor: ${ns.sort((a, b) => a - b)[2]} ns/packet (median of 5 x repeat ${REPEAT})`);
  } finally {
    floor.close();
  }
});

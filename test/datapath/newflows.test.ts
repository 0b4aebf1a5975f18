/**
 * New flows under pressure (docs/datapath.md, "New flows and SYN floods",
 * "Replies and SNAT ports", "Next hops"), under BPF_PROG_TEST_RUN inside a
 * network namespace that this file creates:
 *
 *   xlbA 198.18.0.11/24 (the node IP; the ingress interface) <-> xlbB, gateway 198.18.0.1
 *   xlbC 198.18.1.11/24 (MTU 1280)                           <-> xlbD, gateway 198.18.1.1
 *   198.19.1.0/24 and 198.18.128.0/17 (clients) via 198.18.0.1; 198.19.2.0/24 via 198.18.1.1
 *
 * - the SYN-flood guard: above its rate new flows are placed by Maglev all
 *   the same but get no conntrack entry, so a flood evicts no established
 *   flow; without it the same flood does;
 * - SNAT ports near exhaustion: with 80 to 90 % of a backend's ports held no
 *   SYN is dropped; with all of them held, every SYN is;
 * - the next hop cached in conntrack entries: used while the agent's
 *   generation is unchanged, asked again after it is bumped, and never for
 *   a packet longer than one known to fit; `ip monitor` reports a neighbour
 *   change to the watcher that bumps it.
 *
 * Run as root: node --import tsx --test test/datapath/newflows.test.ts
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Datapath, XDP, BE_LOCAL, CT_SNAT, CT_ESTABLISHED, CT_REPLIED, SVC_LOCAL_ONLY, buildObjects, dropsDelta, xdpCtx, wireForwardingNetns, NETNS_MAC, flowKey, type FlowKey } from './harness.js';
import { encode } from '../../src/datapath/codec.js';
import { flowHash } from '../../src/maglev/flowhash.js';
import { ifIndex, possibleCpus } from '../../src/datapath/bpf.js';
import { enterNetns } from '../../src/util/netns.js';
import { u32ToIp, ipToU32 } from '../../src/util/ip.js';
import { NextHopWatcher } from '../../src/datapath/nexthops.js';
import { tcpPacket, parsePacket, PROTO, TCP_FLAG } from '../helpers/packet.js';
import { ipIn, leaveAndRemoveNetns } from '../helpers/system.js';

const NS = `xlb-dpn-${randomBytes(3).toString('hex')}`;
const NODE = '198.18.0.11';
const VIP = '203.0.113.10';
const MAC = NETNS_MAC;
/** Two local backends. */
const LOCAL = { id: 1, port: 80, backends: [{ id: 1, addr: '198.19.5.1', port: 8080 }, { id: 2, addr: '198.19.5.2', port: 8080 }] };
/** One remote backend through the ingress interface. */
const REMOTE = { id: 2, port: 81, backend: { id: 3, addr: '198.19.1.10', port: 8081 } };
/** One remote backend through xlbC (MTU 1280). */
const NARROW = { id: 3, port: 82, backend: { id: 4, addr: '198.19.2.10', port: 8082 } };

let leave: (() => void) | undefined;
let ifA = 0;
const open: Datapath[] = [];

const ip = (...args: string[]): void => ipIn(NS, ...args);

before(() => {
  buildObjects();
  wireForwardingNetns(NS, NODE, [
    ['198.19.1.0/24', '198.18.0.1'],
    ['198.18.128.0/17', '198.18.0.1'],
    ['198.19.2.0/24', '198.18.1.1'],
  ]);
  leave = enterNetns(NS);
  ifA = ifIndex('xlbA');
});

after(() =>
  leaveAndRemoveNetns(NS, leave, () => {
    for (const d of open) d.close();
  }),
);

/** A datapath with the three services of this file. */
function load(opts: Parameters<typeof Datapath.load>[0] = {}): Datapath {
  const dp = Datapath.load({ nodeAddr: NODE, ...opts });
  open.push(dp);
  for (const b of LOCAL.backends) dp.setBackend(b.id, { addr: b.addr, port: b.port, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.addFrontend(VIP, LOCAL.port, PROTO.TCP, LOCAL.id);
  dp.setTable(LOCAL.id, [1, 2, 1, 2, 1, 2, 1]);
  for (const s of [REMOTE, NARROW]) {
    dp.setBackend(s.backend.id, { addr: s.backend.addr, port: s.backend.port, proto: PROTO.TCP });
    dp.addFrontend(VIP, s.port, PROTO.TCP, s.id);
    dp.setTable(s.id, [s.backend.id, s.backend.id, s.backend.id]);
  }
  return dp;
}

function packet(src: string, sport: number, dport: number, flags: number, payload?: Buffer): Buffer {
  return tcpPacket({ eth: { src: MAC.B, dst: MAC.A }, ip: { src, dst: VIP, ttl: 64 }, tcp: { sport, dport, flags, payload } });
}

function run(dp: Datapath, frame: Buffer) {
  return dp.ingress.testRun(frame, { ctxIn: xdpCtx(frame.length, ifA) });
}

/** The i-th spoofed client: 198.18.128.0/17, one address per 256 flows. */
const spoofed = (i: number): { saddr: string; sport: number } => ({ saddr: u32ToIp(ipToU32('198.18.128.0') + (i >> 8)), sport: 1024 + (i & 0xff) });

/** Use up this tick's allowance of `limit` new flows on every CPU (xlb_flood). */
function saturate(dp: Datapath, limit: number): void {
  const now = dp.nowTicks();
  const v = Buffer.alloc(16 * possibleCpus);
  for (let i = 0; i < possibleCpus; i++) {
    v.writeUInt32LE(now, 16 * i);
    v.writeUInt32LE(limit, 16 * i + 4);
  }
  dp.map('xlb_flood').update(Buffer.alloc(4), v);
}

/** Flows placed without state by the guard so far (all CPUs). */
function stateless(dp: Datapath): bigint {
  let n = 0n;
  for (const v of dp.map('xlb_flood').lookupPerCpu(Buffer.alloc(4))) n += v.readBigUInt64LE(8);
  return n;
}

describe('IPv4 header checksum', () => {
  /** `frame` with its IPv4 header checksum changed (the Ethernet header is 14 bytes, the field at 10). */
  const corrupt = (frame: Buffer): Buffer => {
    const f = Buffer.from(frame);
    f.writeUInt16BE(f.readUInt16BE(24) ^ 0x1234, 24);
    return f;
  };

  test('a new flow whose header checksum is wrong is dropped, counted, and leaves no state; a good one passes', () => {
    const dp = load({ snatPortMin: 61000, snatPortMax: 61015, withTc: false });
    const client = { saddr: '198.18.190.1', sport: 5555 };
    for (const port of [LOCAL.port, REMOTE.port]) {
      const flow: FlowKey = { saddr: client.saddr, daddr: VIP, sport: client.sport, dport: port, proto: PROTO.TCP };
      const bad = corrupt(packet(client.saddr, client.sport, port, TCP_FLAG.SYN));
      const before = dp.drops();
      const r = run(dp, bad);
      assert.equal(r.retval, XDP.DROP, `:${port}`);
      assert.deepEqual(r.dataOut, bad, 'left as it came');
      assert.deepEqual(dropsDelta(before, dp.drops()), { XLB_DROP_BAD_CHECKSUM: 1 });
      assert.equal(dp.conntrack(flow), undefined, 'no conntrack entry');
    }
    for (let p = 61000; p <= 61015; p++) {
      assert.equal(dp.rnat({ saddr: REMOTE.backend.addr, daddr: NODE, sport: REMOTE.backend.port, dport: p, proto: PROTO.TCP }), undefined, `SNAT port ${p} not taken`);
    }
    assert.equal(run(dp, packet(client.saddr, client.sport, REMOTE.port, TCP_FLAG.SYN)).retval, XDP.TX, 'the same SYN with a good checksum goes through');
    assert.equal(run(dp, packet(client.saddr, client.sport, LOCAL.port, TCP_FLAG.SYN)).retval, XDP.PASS);
  });

  test('a reply to a SNAT port with a wrong header checksum is dropped and refreshes nothing', () => {
    const dp = load({ withTc: false });
    const client = { saddr: '198.18.190.2', sport: 5556 };
    const flow: FlowKey = { saddr: client.saddr, daddr: VIP, sport: client.sport, dport: REMOTE.port, proto: PROTO.TCP };
    assert.equal(run(dp, packet(client.saddr, client.sport, REMOTE.port, TCP_FLAG.SYN)).retval, XDP.TX);
    const port = dp.conntrack(flow)!.snat_port;
    const key: FlowKey = { saddr: REMOTE.backend.addr, daddr: NODE, sport: REMOTE.backend.port, dport: port, proto: PROTO.TCP };
    const reply = tcpPacket({ eth: { src: MAC.B, dst: MAC.A }, ip: { src: REMOTE.backend.addr, dst: NODE }, tcp: { sport: REMOTE.backend.port, dport: port, flags: TCP_FLAG.SYN | TCP_FLAG.ACK } });
    const before = dp.drops();
    assert.equal(run(dp, corrupt(reply)).retval, XDP.DROP);
    assert.deepEqual(dropsDelta(before, dp.drops()), { XLB_DROP_BAD_CHECKSUM: 1 });
    assert.equal(dp.rnat(key)!.flags & CT_REPLIED, 0, 'not marked answered');
    assert.equal(run(dp, reply).retval, XDP.TX);
    assert.equal(dp.rnat(key)!.flags & CT_REPLIED, CT_REPLIED);
  });
});

describe('replies of flows to local backends', () => {
  /** Service 9 with seven frontends (VIP:100..106) over one local backend. */
  const MANY = { id: 9, ports: [100, 101, 102, 103, 104, 105, 106], backend: { id: 9, addr: '198.19.5.9', port: 9999 } };

  test('found through the conntrack entry for the listed frontends, through an element for the rest; every reply restored', () => {
    const dp = load();
    dp.setBackend(MANY.backend.id, { addr: MANY.backend.addr, port: MANY.backend.port, proto: PROTO.TCP, flags: BE_LOCAL });
    for (const port of MANY.ports) dp.addFrontend(VIP, port, PROTO.TCP, MANY.id);
    dp.setTable(MANY.id, [MANY.backend.id, MANY.backend.id, MANY.backend.id]);
    const listed = dp.lbmaps.replies!.entries().get(`${MANY.backend.addr}:${MANY.backend.port}:${PROTO.TCP}`)!;
    assert.equal(listed.length, 4, 'XLB_REPLY_FRONTENDS of the seven');
    for (const [i, port] of MANY.ports.entries()) {
      const client = { saddr: '198.18.180.1', sport: 7000 + i };
      assert.equal(run(dp, packet(client.saddr, client.sport, port, TCP_FLAG.SYN)).retval, XDP.PASS);
      const reply: FlowKey = { saddr: MANY.backend.addr, daddr: client.saddr, sport: MANY.backend.port, dport: client.sport, proto: PROTO.TCP };
      const byEntry = listed.includes(`${VIP}:${port}`);
      assert.equal(dp.rnat(reply) !== undefined, !byEntry, `frontend :${port}: ${byEntry ? 'no element' : 'an element'}`);
      const out = dp.egress!.testRun(tcpPacket({ ip: { src: reply.saddr, dst: reply.daddr }, tcp: { sport: reply.sport, dport: reply.dport, flags: TCP_FLAG.SYN | TCP_FLAG.ACK } }));
      const o = parsePacket(out.dataOut);
      assert.deepEqual({ src: o.ip!.src, sport: o.l4!.sport }, { src: VIP, sport: port }, `the reply of the flow through :${port} is restored to it`);
    }
  });
});

describe('SYN-flood guard', () => {
  const ESTABLISHED = 500;
  const FLOOD = 5000;
  const LIMIT = 8;

  /** Track ESTABLISHED flows of LOCAL (client 198.18.100.x), as placed and answered long ago; flood; count the survivors. */
  function flood(dp: Datapath): { survivors: number; newEntries: number; dnated: number; ticks: number } {
    const now = dp.nowTicks();
    const flows: FlowKey[] = [];
    for (let i = 0; i < ESTABLISHED; i++) {
      const flow: FlowKey = { saddr: u32ToIp(ipToU32('198.18.100.0') + (i >> 8)), daddr: VIP, sport: 2000 + (i & 0xff), dport: LOCAL.port, proto: PROTO.TCP };
      const b = LOCAL.backends[i % 2];
      dp.putConntrack(flow, { backend_id: b.id, backend_addr: b.addr, backend_port: b.port, service_id: LOCAL.id, flags: CT_ESTABLISHED, seen: now - 30, reply_seen: now - 30 });
      flows.push(flow);
    }
    const before = dp.map('xlb_conntrack').keys().length;
    const t0 = dp.nowTicks();
    let dnated = 0;
    const backends = new Set(LOCAL.backends.map((b) => b.addr));
    for (let i = 0; i < FLOOD; i++) {
      const { saddr, sport } = spoofed(i);
      const r = run(dp, packet(saddr, sport, LOCAL.port, TCP_FLAG.SYN));
      assert.equal(r.retval, XDP.PASS);
      if (backends.has(parsePacket(r.dataOut).ip!.dst)) dnated++;
    }
    const ticksSpanned = dp.nowTicks() - t0 + 1;
    const survivors = flows.filter((f) => dp.conntrack(f) !== undefined).length;
    // Each surviving flow's replies are still restored (through its conntrack entry).
    for (const [i, f] of flows.entries()) {
      if (i % 25 || !dp.conntrack(f)) continue;
      const b = LOCAL.backends[i % 2];
      const out = dp.egress!.testRun(tcpPacket({ ip: { src: b.addr, dst: f.saddr }, tcp: { sport: b.port, dport: f.sport, flags: TCP_FLAG.ACK } }));
      assert.equal(parsePacket(out.dataOut).ip!.src, VIP, `reply of established flow ${i} restored`);
    }
    return { survivors, newEntries: dp.map('xlb_conntrack').keys().length - (before - (ESTABLISHED - survivors)), dnated, ticks: ticksSpanned };
  }

  test('on: a flood of spoofed SYNs is placed by Maglev without state and evicts no established flow', () => {
    const dp = load({ floodLimit: LIMIT, maxEntries: { xlb_conntrack: 1024 } });
    const s0 = stateless(dp);
    const r = flood(dp);
    assert.equal(r.dnated, FLOOD, 'every SYN placed on a backend');
    assert.equal(r.survivors, ESTABLISHED, 'every established flow kept its conntrack entry');
    // At most LIMIT a tick on each CPU the test ran on, in the ticks the flood spanned.
    const allowed = LIMIT * r.ticks * possibleCpus;
    assert.ok(r.newEntries <= allowed, `${r.newEntries} new conntrack entries, at most ${allowed}`);
    assert.ok(stateless(dp) - s0 >= BigInt(FLOOD - allowed), 'the rest counted as placed without state');
  });

  test('off: the same flood evicts established flows from the full table', () => {
    const dp = load({ maxEntries: { xlb_conntrack: 1024 } });
    const r = flood(dp);
    assert.equal(r.dnated, FLOOD);
    assert.ok(r.survivors < ESTABLISHED, `${ESTABLISHED - r.survivors} of ${ESTABLISHED} established flows evicted`);
    assert.equal(stateless(dp), 0n);
  });

  test('on: a real client during the flood still connects: its SYN-ACK is restored and its ACK goes to the same backend', () => {
    const dp = load({ floodLimit: 1, maxEntries: { xlb_conntrack: 1024 } });
    for (let i = 0; i < 50; i++) run(dp, packet(spoofed(i).saddr, spoofed(i).sport, LOCAL.port, TCP_FLAG.SYN));
    const client = { saddr: '198.18.99.1', sport: 4444 };
    const flow: FlowKey = { saddr: client.saddr, daddr: VIP, sport: client.sport, dport: LOCAL.port, proto: PROTO.TCP };
    // This tick's allowance used up on every CPU; a tick may end between the
    // write and the SYN (which then gets state): tried again, a few times.
    let syn = run(dp, packet(client.saddr, client.sport, LOCAL.port, TCP_FLAG.SYN));
    for (let i = 0; i < 5 && dp.conntrack(flow); i++) {
      dp.map('xlb_conntrack').delete(flowKey(flow));
      saturate(dp, 1);
      syn = run(dp, packet(client.saddr, client.sport, LOCAL.port, TCP_FLAG.SYN));
    }
    const backend = parsePacket(syn.dataOut).ip!.dst;
    const b = LOCAL.backends.find((x) => x.addr === backend)!;
    assert.equal(dp.conntrack(flow), undefined, 'placed without state');
    assert.ok(dp.rnat({ saddr: b.addr, daddr: client.saddr, sport: b.port, dport: client.sport, proto: PROTO.TCP }), 'its reply is restorable');
    const synAck = tcpPacket({ ip: { src: b.addr, dst: client.saddr }, tcp: { sport: b.port, dport: client.sport, flags: TCP_FLAG.SYN | TCP_FLAG.ACK } });
    const out = dp.egress!.testRun(synAck);
    assert.deepEqual({ src: parsePacket(out.dataOut).ip!.src, sport: parsePacket(out.dataOut).l4!.sport }, { src: VIP, sport: LOCAL.port }, 'SYN-ACK restored');
    const ack = run(dp, packet(client.saddr, client.sport, LOCAL.port, TCP_FLAG.ACK));
    assert.equal(parsePacket(ack.dataOut).ip!.dst, backend, 'the ACK reaches the same backend (Maglev)');
  });
});

describe('SNAT ports near exhaustion', () => {
  const MIN = 61000;
  const MAX = 61999; // 1000 ports: 1000 sets of one port each, more than the 256 sets searched

  /** Hold `ports` towards REMOTE's backend for live flows of other clients that the backend answers. */
  function hold(dp: Datapath, ports: number[]): void {
    const now = dp.nowTicks();
    ports.forEach((p, i) => {
      const owner: FlowKey = { saddr: '198.18.150.1', daddr: VIP, sport: 10000 + i, dport: REMOTE.port, proto: PROTO.TCP };
      dp.putConntrack(owner, { backend_id: REMOTE.backend.id, backend_addr: REMOTE.backend.addr, backend_port: REMOTE.backend.port, snat_port: p, service_id: REMOTE.id, flags: CT_SNAT | CT_ESTABLISHED, seen: now, reply_seen: now });
    });
  }

  test('from 80 % to 90 % of the ports held, no SYN is dropped and each new flow gets a free port', () => {
    const dp = load({ snatPortMin: MIN, snatPortMax: MAX, withTc: false });
    const RANGE = MAX - MIN + 1;
    const held = new Set(Array.from({ length: RANGE }, (_, i) => MIN + i).filter((_, i) => i % 5 !== 0)); // 80 %
    hold(dp, [...held]);
    const before = dp.drops();
    let n = 0;
    while (held.size < Math.floor(RANGE * 0.9) - 1) {
      const flow: FlowKey = { saddr: '198.18.160.1', daddr: VIP, sport: 20000 + n++, dport: REMOTE.port, proto: PROTO.TCP };
      const r = run(dp, packet(flow.saddr, flow.sport, REMOTE.port, TCP_FLAG.SYN));
      assert.equal(r.retval, XDP.TX, `SYN ${n} with ${held.size} of ${RANGE} ports held`);
      const port = parsePacket(r.dataOut).l4!.sport;
      assert.ok(port >= MIN && port <= MAX);
      assert.ok(!held.has(port), `port ${port} was free`);
      assert.equal(dp.conntrack(flow)!.snat_port, port);
      held.add(port);
    }
    assert.ok(n >= 90, `${n} flows placed`);
    assert.deepEqual(dropsDelta(before, dp.drops()), {});
  });

  test("in a full set whose ports are all held towards the backend, a new flow takes the first port's way (its flow has not sent since the hand passed): one write, no drop", () => {
    const dp = load({ snatPortMin: MIN, snatPortMax: MIN + 15, withTc: false, maxEntries: { xlb_snat_sets: 1 } });
    assert.equal(dp.snat.sets, 1);
    const now = dp.nowTicks();
    // 32 ways: 16 flows to REMOTE's backend on the set's 16 ports, 16 to NARROW's.
    for (const [s, b] of [[REMOTE, REMOTE.backend], [NARROW, NARROW.backend]] as const) {
      for (let k = 0; k < 16; k++) {
        const owner: FlowKey = { saddr: '198.18.162.1', daddr: VIP, sport: 40000 + s.id * 100 + k, dport: s.port, proto: PROTO.TCP };
        dp.putConntrack(owner, { backend_id: b.id, backend_addr: b.addr, backend_port: b.port, snat_port: MIN + k, service_id: s.id, flags: CT_SNAT | CT_ESTABLISHED, seen: now, reply_seen: now });
      }
    }
    assert.equal(dp.snatFlows().length, 32, 'the set is full');
    const flow: FlowKey = { saddr: '198.18.163.1', daddr: VIP, sport: 33000, dport: REMOTE.port, proto: PROTO.TCP };
    const r = run(dp, packet(flow.saddr, flow.sport, REMOTE.port, TCP_FLAG.SYN));
    assert.equal(r.retval, XDP.TX);
    assert.equal(parsePacket(r.dataOut).l4!.sport, MIN, "the set's first port");
    const held = dp.snatFlows().filter((f) => f.ct.snat_port === MIN && f.ct.backend_addr === REMOTE.backend.addr);
    assert.deepEqual(held.map((f) => f.flow.saddr), [flow.saddr], 'its old flow gave its way');
    assert.equal(dp.snatFlows().length, 32);
  });

  test('with every port held, a SYN drops as snat_exhausted', () => {
    const dp = load({ snatPortMin: MIN, snatPortMax: MIN + 299, withTc: false });
    const flow: FlowKey = { saddr: '198.18.161.1', daddr: VIP, sport: 30000, dport: REMOTE.port, proto: PROTO.TCP };
    hold(dp, Array.from({ length: 300 }, (_, i) => MIN + i));
    const before = dp.drops();
    const input = packet(flow.saddr, flow.sport, REMOTE.port, TCP_FLAG.SYN);
    const r = run(dp, input);
    assert.equal(r.retval, XDP.DROP);
    assert.deepEqual(r.dataOut, input);
    assert.deepEqual(dropsDelta(before, dp.drops()), { XLB_DROP_SNAT_EXHAUSTED: 1 });
  });
});

describe('SYN-flood guard on SNATed flows', () => {
  const ESTABLISHED = 200;
  const FLOOD = 5000;
  /** 16 sets of 32 ways: 512 SNATed flows (a backend's 256 ports, 16 a set). */
  const SETS = 16;
  /** VIP:83/TCP, four remote backends through the ingress interface: the flood fills every way. */
  const SPREAD = { id: 4, port: 83, backends: [10, 11, 12, 13].map((id) => ({ id, addr: `198.19.1.${id}`, port: 8083 })) };

  /** ESTABLISHED answered SNATed flows to SPREAD's first backend (client 198.18.110.x), a flood of spoofed SYNs to SPREAD; the survivors. */
  function flood(dp: Datapath): number {
    for (const b of SPREAD.backends) dp.setBackend(b.id, { addr: b.addr, port: b.port, proto: PROTO.TCP });
    dp.addFrontend(VIP, SPREAD.port, PROTO.TCP, SPREAD.id);
    dp.setTable(SPREAD.id, SPREAD.backends.map((b) => b.id));
    const b0 = SPREAD.backends[0];
    const now = dp.nowTicks();
    const flows: FlowKey[] = [];
    for (let i = 0; flows.length < ESTABLISHED; i++) {
      assert.ok(i < 10 * ESTABLISHED, 'room for the established flows');
      const flow: FlowKey = { saddr: u32ToIp(ipToU32('198.18.110.0') + (i >> 8)), daddr: VIP, sport: 2000 + (i & 0xff), dport: SPREAD.port, proto: PROTO.TCP };
      // a port of its set not held yet towards the backend
      const port = dp.snatHome(flow).ports.find((p) => !dp.snatReply({ saddr: b0.addr, daddr: NODE, sport: b0.port, dport: p, proto: PROTO.TCP }));
      if (port === undefined) continue;
      dp.putConntrack(flow, { backend_id: b0.id, backend_addr: b0.addr, backend_port: b0.port, snat_port: port, service_id: SPREAD.id, flags: CT_SNAT | CT_ESTABLISHED, seen: now - 30, reply_seen: now - 30 });
      flows.push(flow);
    }
    for (let i = 0; i < FLOOD; i++) {
      const { saddr, sport } = spoofed(i);
      const r = run(dp, packet(saddr, sport, SPREAD.port, TCP_FLAG.SYN));
      assert.ok(r.retval === XDP.TX || r.retval === XDP.DROP, `SYN ${i}: ${r.retval}`);
    }
    return flows.filter((f) => dp.conntrack(f) !== undefined).length;
  }

  test('on: spoofed SYNs to remote backends take no way of an answered flow', () => {
    const dp = load({ floodLimit: 8, maxEntries: { xlb_snat_sets: SETS } });
    assert.equal(dp.snat.sets, SETS);
    assert.equal(flood(dp), ESTABLISHED, 'every established SNATed flow kept');
  });

  test('off: the same flood takes the ways of established flows from the full sets', () => {
    const dp = load({ maxEntries: { xlb_snat_sets: SETS } });
    const survivors = flood(dp);
    assert.ok(survivors < ESTABLISHED, `${ESTABLISHED - survivors} of ${ESTABLISHED} established SNATed flows replaced`);
  });
});

describe("a remote backend's next hop, shared by its new flows", () => {
  test("a new flow takes the next hop the backend's first flow found, until the generation changes", () => {
    const dp = load();
    const flowOf = (sport: number): FlowKey => ({ saddr: '198.18.171.1', daddr: VIP, sport, dport: REMOTE.port, proto: PROTO.TCP });
    const dmacOf = (r: { dataOut: Buffer }) => parsePacket(r.dataOut).eth.dst;
    assert.equal(dmacOf(run(dp, packet('198.18.171.1', 6000, REMOTE.port, TCP_FLAG.SYN))), MAC.B, 'the first flow asks the FIB');
    try {
      ip('neigh', 'replace', '198.18.0.1', 'lladdr', '02:00:00:00:0b:98', 'dev', 'xlbA', 'nud', 'permanent');
      const second = run(dp, packet('198.18.171.1', 6001, REMOTE.port, TCP_FLAG.SYN));
      assert.equal(second.retval, XDP.TX);
      assert.equal(dmacOf(second), MAC.B, "a new flow takes the backend's cached next hop (no FIB lookup)");
      assert.equal(dp.nextHop(flowOf(6001))!.dmac, MAC.B, 'and caches it in its own entry');
      dp.setNextHopGeneration(3);
      assert.equal(dmacOf(run(dp, packet('198.18.171.1', 6002, REMOTE.port, TCP_FLAG.SYN))), '02:00:00:00:0b:98', 'asked again in the new generation');
    } finally {
      ip('neigh', 'replace', '198.18.0.1', 'lladdr', MAC.B, 'dev', 'xlbA', 'nud', 'permanent');
    }
  });
});

describe('next hops cached in conntrack entries', () => {
  const flowOf = (sport: number, dport = REMOTE.port): FlowKey => ({ saddr: '198.18.170.1', daddr: VIP, sport, dport, proto: PROTO.TCP });
  const dmacOf = (r: { dataOut: Buffer }) => parsePacket(r.dataOut).eth.dst;

  test('used while the generation is unchanged, asked again after the agent bumps it', () => {
    const dp = load();
    const flow = flowOf(5000);
    assert.equal(dmacOf(run(dp, packet(flow.saddr, flow.sport, REMOTE.port, TCP_FLAG.SYN))), MAC.B);
    const nh = dp.nextHop(flow)!;
    assert.deepEqual({ gen: nh.gen, ifindex: nh.ifindex, dmac: nh.dmac, smac: nh.smac }, { gen: 1, ifindex: ifA, dmac: MAC.B, smac: MAC.A });
    try {
      ip('neigh', 'replace', '198.18.0.1', 'lladdr', '02:00:00:00:0b:99', 'dev', 'xlbA', 'nud', 'permanent');
      const cached = run(dp, packet(flow.saddr, flow.sport, REMOTE.port, TCP_FLAG.ACK));
      assert.equal(cached.retval, XDP.TX);
      assert.equal(dmacOf(cached), MAC.B, 'the cached next hop, while the generation stands');
      dp.setNextHopGeneration(2);
      const fresh = run(dp, packet(flow.saddr, flow.sport, REMOTE.port, TCP_FLAG.ACK));
      assert.equal(dmacOf(fresh), '02:00:00:00:0b:99', 'asked again after the bump');
      assert.equal(dp.nextHop(flow)!.gen, 2);
      assert.equal(dp.nextHop(flow)!.dmac, '02:00:00:00:0b:99');
    } finally {
      ip('neigh', 'replace', '198.18.0.1', 'lladdr', MAC.B, 'dev', 'xlbA', 'nud', 'permanent');
    }
  });

  test('generation 0 caches nothing', () => {
    const dp = load({ nextHopCache: false });
    const flow = flowOf(5001);
    assert.equal(run(dp, packet(flow.saddr, flow.sport, REMOTE.port, TCP_FLAG.SYN)).retval, XDP.TX);
    assert.equal(run(dp, packet(flow.saddr, flow.sport, REMOTE.port, TCP_FLAG.ACK)).retval, XDP.TX);
    assert.equal(dp.nextHop(flow)!.gen, 0);
  });

  test('a packet longer than any that went through the cached next hop asks the FIB, which checks the MTU', () => {
    const dp = load();
    const flow = flowOf(5002, NARROW.port);
    assert.equal(run(dp, packet(flow.saddr, flow.sport, NARROW.port, TCP_FLAG.SYN)).retval, XDP.REDIRECT);
    const small = dp.nextHop(flow)!;
    assert.equal(small.gen, 1);
    assert.equal(small.ifindex, ifIndex('xlbC'));
    const fits = packet(flow.saddr, flow.sport, NARROW.port, TCP_FLAG.ACK, Buffer.alloc(1200, 0x61));
    assert.equal(run(dp, fits).retval, XDP.REDIRECT);
    assert.ok(dp.nextHop(flow)!.mtu >= 1200, 'the larger length is known to fit now');
    const before = dp.drops();
    const tooBig = packet(flow.saddr, flow.sport, NARROW.port, TCP_FLAG.ACK, Buffer.alloc(1300, 0x61));
    const r = run(dp, tooBig);
    assert.equal(r.retval, XDP.DROP);
    assert.deepEqual(dropsDelta(before, dp.drops()), { XLB_DROP_FRAG_NEEDED: 1 });
  });

  test('the watcher reports a neighbour change (ip monitor)', async () => {
    let changes = 0;
    const w = new NextHopWatcher(() => changes++, () => undefined);
    try {
      w.start();
      // ip monitor subscribes a moment after it starts: change until it is seen, with a deadline.
      const deadline = Date.now() + 10_000;
      let i = 0;
      while (changes === 0 && Date.now() < deadline) {
        ip('neigh', 'replace', '198.18.0.77', 'lladdr', `02:00:00:00:77:${(i++ % 100).toString().padStart(2, '0')}`, 'dev', 'xlbA', 'nud', 'permanent');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(changes > 0, 'a neighbour change was reported');
    } finally {
      w.stop();
      ip('neigh', 'del', '198.18.0.77', 'dev', 'xlbA');
    }
  });
});

describe('where a flow is looked for', () => {
  /** VIP:84/TCP with local backends only, as the controller writes it: no XLB_SVC_F_REMOTE. */
  const LOCAL_ONLY = { id: 5, port: 84, backends: [{ id: 20, addr: '198.19.5.20', port: 8084 }] };

  test("a service without a remote backend looks only in xlb_conntrack: an older agent's SNATed entry there is placed again, on its local backend", () => {
    const dp = load({ withTc: false });
    const b = LOCAL_ONLY.backends[0];
    dp.setBackend(b.id, { addr: b.addr, port: b.port, proto: PROTO.TCP, flags: BE_LOCAL });
    dp.addFrontend(VIP, LOCAL_ONLY.port, PROTO.TCP, LOCAL_ONLY.id, SVC_LOCAL_ONLY);
    dp.setTable(LOCAL_ONLY.id, [b.id]);
    const flow: FlowKey = { saddr: '198.18.164.1', daddr: VIP, sport: 34000, dport: LOCAL_ONLY.port, proto: PROTO.TCP };
    // Written as an agent before xlb_snat_sets wrote SNATed flows (the harness would put this one in the sets),
    // to a remote backend that exists: current by every other test, so only where it lies tells it is old.
    const old = REMOTE.backend;
    dp.map('xlb_conntrack').update(flowKey(flow), encode('xlb_ct_entry', { backend_id: old.id, backend_addr: old.addr, backend_port: old.port, snat_port: 61000, service_id: LOCAL_ONLY.id, flags: CT_SNAT | CT_ESTABLISHED, seen: dp.nowTicks() }));
    const r = run(dp, packet(flow.saddr, flow.sport, LOCAL_ONLY.port, TCP_FLAG.ACK));
    assert.equal(r.retval, XDP.PASS, 'DNATed to the local backend, not forwarded with SNAT');
    assert.equal(parsePacket(r.dataOut).ip!.dst, b.addr);
    assert.equal(dp.conntrack(flow)!.flags & CT_SNAT, 0, 'its entry placed again, without SNAT');
    assert.equal(dp.snatFlows().length, 0, 'nothing in the sets');
  });

  test('a service with a remote backend finds a SNATed flow in its set first, and a local flow in xlb_conntrack after', () => {
    const dp = load({ withTc: false });
    const remote: FlowKey = { saddr: '198.18.165.1', daddr: VIP, sport: 35000, dport: REMOTE.port, proto: PROTO.TCP };
    const syn = run(dp, packet(remote.saddr, remote.sport, REMOTE.port, TCP_FLAG.SYN));
    assert.equal(syn.retval, XDP.TX);
    const port = parsePacket(syn.dataOut).l4!.sport;
    assert.equal(dp.map('xlb_conntrack').lookup(flowKey(remote)), undefined, 'a SNATed flow has no xlb_conntrack entry');
    const ack = run(dp, packet(remote.saddr, remote.sport, REMOTE.port, TCP_FLAG.ACK));
    assert.equal(parsePacket(ack.dataOut).l4!.sport, port, 'found in its set: same port');
    assert.ok(dp.conntrack(remote)!.flags & CT_ESTABLISHED);
  });
});

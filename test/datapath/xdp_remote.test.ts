/**
 * xlb_xdp_ingress for remote backends (DNAT + SNAT + FIB lookup + XDP_TX or
 * XDP_REDIRECT) and their replies, under BPF_PROG_TEST_RUN inside a network
 * namespace that this file creates:
 *
 *   xlbA 198.18.0.11/24 (the node IP; the ingress interface) <-> xlbB, gateway 198.18.0.1
 *   xlbC 198.18.1.11/24 (MTU 1280)                           <-> xlbD, gateway 198.18.1.1
 *   198.19.1.0/24 (pods) and 192.0.2.0/24 (clients) via 198.18.0.1 -> XDP_TX
 *   198.19.2.0/24 (pods) via 198.18.1.1 -> XDP_REDIRECT to xlbC
 *   198.19.3.0/24 via 198.18.0.2, which has no neighbour entry
 *   gateways have permanent neighbour entries, so bpf_fib_lookup resolves MACs.
 *
 * The main thread enters the namespace (setns) for the whole file so that the
 * kernel's test_run sees its interfaces and routes; the namespace and the pins
 * are removed in `after`, also when a test fails.
 *
 * Run as root: node --import tsx --test test/datapath/xdp_remote.test.ts
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Datapath, XDP, CT_SNAT, CT_ESTABLISHED, CT_CLOSING, CT_REPLIED, ticks, buildObjects, dropsDelta, xdpCtx, wireForwardingNetns, NETNS_MAC, type FlowKey } from './harness.js';
import { flowHash } from '../../src/maglev/flowhash.js';
import { ifIndex } from '../../src/datapath/bpf.js';
import { enums } from '../../src/datapath/codec.js';
import { enterNetns } from '../../src/util/netns.js';
import { tcpPacket, udpPacket, parsePacket, verifyChecksums, PROTO, TCP_FLAG } from '../helpers/packet.js';
import { leaveAndRemoveNetns } from '../helpers/system.js';

const NS = `xlb-dpt-${randomBytes(3).toString('hex')}`;
const NODE = '198.18.0.11';
const CLIENT = '192.0.2.7';
const VIP = '203.0.113.10';
const MAC = NETNS_MAC;
const SNAT_MIN = 61000;
const SNAT_MAX = 65535;

/** Service 11: VIP:80/TCP -> remote backend reached through the ingress interface. */
const VIA_A = { id: 11, port: 80, backend: { id: 1, addr: '198.19.1.10', port: 8080 } };
/** Service 12: VIP:8443/TCP -> remote backend reached through the other interface. */
const VIA_C = { id: 12, port: 8443, backend: { id: 2, addr: '198.19.2.10', port: 443 } };
/** Service 13: VIP:53/UDP -> remote backend through the ingress interface. */
const UDP_A = { id: 13, port: 53, backend: { id: 3, addr: '198.19.1.53', port: 5353 } };
/** Service 14: VIP:90/TCP -> a backend whose gateway has no neighbour entry. */
const NO_NEIGH = { id: 14, port: 90, backend: { id: 4, addr: '198.19.3.10', port: 9090 } };
/** Service 15: VIP:91/TCP -> a backend without any route. */
const NO_ROUTE = { id: 15, port: 91, backend: { id: 5, addr: '198.19.200.10', port: 9191 } };
/** Service 16: VIP:92/TCP, the SNAT exhaustion test's. */
const CROWDED = { id: 16, port: 92, backend: { id: 6, addr: '198.19.1.60', port: 6060 } };

let dp: Datapath | undefined;
let leave: (() => void) | undefined;
let ifA = 0;
let ifC = 0;
let nextClientPort = 30000;
const freshPort = (): number => nextClientPort++;

before(() => {
  buildObjects();
  wireForwardingNetns(NS, NODE, [
    ['198.19.1.0/24', '198.18.0.1'],
    ['192.0.2.0/24', '198.18.0.1'],
    ['198.19.2.0/24', '198.18.1.1'],
    ['198.19.3.0/24', '198.18.0.2'],
  ]);

  leave = enterNetns(NS);
  ifA = ifIndex('xlbA');
  ifC = ifIndex('xlbC');
  dp = Datapath.load({ nodeAddr: NODE, snatPortMin: SNAT_MIN, snatPortMax: SNAT_MAX });
  for (const s of [VIA_A, VIA_C, UDP_A, NO_NEIGH, NO_ROUTE, CROWDED]) {
    const proto = s === UDP_A ? PROTO.UDP : PROTO.TCP;
    dp.setBackend(s.backend.id, { addr: s.backend.addr, port: s.backend.port, proto });
    dp.addFrontend(VIP, s.port, proto, s.id);
    dp.setTable(s.id, [s.backend.id, s.backend.id, s.backend.id, s.backend.id, s.backend.id]);
  }
});

after(() => leaveAndRemoveNetns(NS, leave, () => dp?.close()));

/** The SNAT port a new flow takes when its set holds none towards its backend: the first port of its set (xlb_snat.h). */
const predictedSnatPort = (flow: FlowKey, d: Datapath = dp!): number => d.snatHome(flow).ports[0];

/** Run the XDP program as if the frame arrived on `ifindex`. */
function ingress(frame: Buffer, ifindex = ifA) {
  return dp!.ingress.testRun(frame, { ctxIn: xdpCtx(frame.length, ifindex) });
}

function syn(dport: number, sport: number, opts: { ttl?: number; flags?: number; payload?: Buffer } = {}): Buffer {
  return tcpPacket({ eth: { src: MAC.B, dst: MAC.A }, ip: { src: CLIENT, dst: VIP, ttl: opts.ttl ?? 64 }, tcp: { sport, dport, flags: opts.flags, payload: opts.payload } });
}

/** Assert `out` is `input` with its tuple rewritten, TTL decremented, MACs replaced, checksums valid from scratch. */
function assertForwarded(input: Buffer, out: Buffer, want: { src: string; sport: number; dst: string; dport: number; smac: string; dmac: string }): void {
  const i = parsePacket(input);
  const o = parsePacket(out);
  assert.equal(out.length, input.length, 'frame length');
  assert.deepEqual(
    { src: o.ip!.src, sport: o.l4!.sport, dst: o.ip!.dst, dport: o.l4!.dport, smac: o.eth.src, dmac: o.eth.dst },
    want,
  );
  assert.equal(o.ip!.ttl, i.ip!.ttl - 1, 'TTL decremented');
  assert.equal(o.ip!.id, i.ip!.id, 'IP ID unchanged');
  const sums = verifyChecksums(out);
  assert.equal(sums.ip, true, 'IPv4 header checksum');
  assert.equal(sums.l4, i.ip!.protocol === PROTO.UDP && i.l4!.checksum === 0 ? 'absent' : true, 'L4 checksum');
}

describe('remote backend through the ingress interface (XDP_TX)', () => {
  const sport = 40100;
  const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: VIA_A.port, proto: PROTO.TCP };

  test('a SYN is DNATed and SNATed to the node IP and a port of the range, TTL decremented, MACs from the neighbour entry', () => {
    const input = syn(VIA_A.port, sport);
    const r = ingress(input);
    assert.equal(r.retval, XDP.TX);
    const snat = predictedSnatPort(flow);
    assert.ok(snat >= SNAT_MIN && snat <= SNAT_MAX);
    assertForwarded(input, r.dataOut, { src: NODE, sport: snat, dst: VIA_A.backend.addr, dport: VIA_A.backend.port, smac: MAC.A, dmac: MAC.B });
    const now = dp!.nowTicks();
    assert.deepEqual(dp!.conntrack(flow), {
      backend_id: VIA_A.backend.id,
      backend_addr: VIA_A.backend.addr,
      backend_port: VIA_A.backend.port,
      snat_port: snat,
      service_id: VIA_A.id,
      flags: CT_SNAT,
      seen: dp!.conntrack(flow)!.seen,
    });
    assert.ok(Math.abs(dp!.conntrack(flow)!.seen - now) <= 1);
    const reply = { saddr: VIA_A.backend.addr, daddr: NODE, sport: VIA_A.backend.port, dport: snat, proto: PROTO.TCP };
    assert.deepEqual(dp!.rnat(reply), {
      vip: VIP,
      client_addr: CLIENT,
      vip_port: VIA_A.port,
      client_port: sport,
      service_id: VIA_A.id,
      flags: CT_SNAT,
      seen: dp!.rnat(reply)!.seen,
    });
    assert.ok(Math.abs(dp!.rnat(reply)!.seen - now) <= 1);
  });

  test('the next packet of the flow takes the same SNAT port', () => {
    const input = syn(VIA_A.port, sport, { flags: TCP_FLAG.ACK, payload: Buffer.from('hello') });
    const r = ingress(input);
    assert.equal(r.retval, XDP.TX);
    assertForwarded(input, r.dataOut, { src: NODE, sport: predictedSnatPort(flow), dst: VIA_A.backend.addr, dport: VIA_A.backend.port, smac: MAC.A, dmac: MAC.B });
  });

  test("the backend's reply to node:SNAT port goes back to the client from VIP:port", () => {
    const snat = predictedSnatPort(flow);
    const before = dp!.serviceStats(VIA_A.id);
    const reply = tcpPacket({ eth: { src: MAC.B, dst: MAC.A }, ip: { src: VIA_A.backend.addr, dst: NODE, ttl: 63 }, tcp: { sport: VIA_A.backend.port, dport: snat, flags: TCP_FLAG.SYN | TCP_FLAG.ACK } });
    const r = ingress(reply);
    assert.equal(r.retval, XDP.TX);
    assertForwarded(reply, r.dataOut, { src: VIP, sport: VIA_A.port, dst: CLIENT, dport: sport, smac: MAC.A, dmac: MAC.B });
    const afterStats = dp!.serviceStats(VIA_A.id);
    assert.equal(afterStats.packets - before.packets, 1n, 'replies count for the service');
    assert.equal(afterStats.bytes - before.bytes, BigInt(reply.length));
  });

  test('a packet to a SNAT port without a reverse NAT entry, or to a node port outside the range, passes unchanged', () => {
    for (const dport of [SNAT_MIN + 1, 22]) {
      const pkt = tcpPacket({ ip: { src: VIA_A.backend.addr, dst: NODE }, tcp: { sport: 1, dport, flags: TCP_FLAG.ACK } });
      const r = ingress(pkt);
      assert.equal(r.retval, XDP.PASS);
      assert.deepEqual(r.dataOut, pkt);
    }
  });
});

describe('remote backend through another interface (XDP_REDIRECT)', () => {
  test('a SYN is redirected with the other interface MACs, and the reply is redirected back', () => {
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: VIA_C.port, proto: PROTO.TCP };
    const input = syn(VIA_C.port, sport);
    const r = ingress(input, ifA);
    assert.equal(r.retval, XDP.REDIRECT);
    const snat = predictedSnatPort(flow);
    assertForwarded(input, r.dataOut, { src: NODE, sport: snat, dst: VIA_C.backend.addr, dport: VIA_C.backend.port, smac: MAC.C, dmac: MAC.D });

    const reply = tcpPacket({ eth: { src: MAC.D, dst: MAC.C }, ip: { src: VIA_C.backend.addr, dst: NODE }, tcp: { sport: VIA_C.backend.port, dport: snat, flags: TCP_FLAG.ACK } });
    const back = ingress(reply, ifC);
    assert.equal(back.retval, XDP.REDIRECT);
    assertForwarded(reply, back.dataOut, { src: VIP, sport: VIA_C.port, dst: CLIENT, dport: sport, smac: MAC.A, dmac: MAC.B });
  });

  test('a packet larger than the egress MTU drops with frag_needed, untouched', () => {
    const input = syn(VIA_C.port, freshPort(), { flags: TCP_FLAG.ACK, payload: Buffer.alloc(1300, 0x61) });
    const before = dp!.drops();
    const r = ingress(input);
    assert.equal(r.retval, XDP.DROP);
    assert.deepEqual(dropsDelta(before, dp!.drops()), { XLB_DROP_FRAG_NEEDED: 1 });
  });
});

describe('remote backend edge cases', () => {
  test('UDP with checksum 0 is forwarded with checksum 0', () => {
    const sport = freshPort();
    const input = udpPacket({ eth: { src: MAC.B, dst: MAC.A }, ip: { src: CLIENT, dst: VIP }, udp: { sport, dport: UDP_A.port, noChecksum: true } });
    const r = ingress(input);
    assert.equal(r.retval, XDP.TX);
    const snat = predictedSnatPort({ saddr: CLIENT, daddr: VIP, sport, dport: UDP_A.port, proto: PROTO.UDP });
    assertForwarded(input, r.dataOut, { src: NODE, sport: snat, dst: UDP_A.backend.addr, dport: UDP_A.backend.port, smac: MAC.A, dmac: MAC.B });
    assert.equal(parsePacket(r.dataOut).l4!.checksum, 0);
  });

  test('TTL 1 passes to the stack untouched (it sends time exceeded), new or established', () => {
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: VIA_A.port, proto: PROTO.TCP };
    const first = syn(VIA_A.port, sport, { ttl: 1 });
    const r1 = ingress(first);
    assert.equal(r1.retval, XDP.PASS);
    assert.deepEqual(r1.dataOut, first);
    assert.equal(dp!.conntrack(flow), undefined, 'nothing allocated for a packet that expires here');
    assert.equal(ingress(syn(VIA_A.port, sport)).retval, XDP.TX);
    const late = syn(VIA_A.port, sport, { ttl: 1, flags: TCP_FLAG.ACK });
    const r2 = ingress(late);
    assert.equal(r2.retval, XDP.PASS);
    assert.deepEqual(r2.dataOut, late);
  });

  test('no route at all drops with fib_lookup, untouched', () => {
    const before = dp!.drops();
    const input = syn(NO_ROUTE.port, freshPort());
    const r = ingress(input);
    assert.equal(r.retval, XDP.DROP);
    assert.deepEqual(r.dataOut, input);
    assert.deepEqual(dropsDelta(before, dp!.drops()), { XLB_DROP_FIB_LOOKUP: 1 });
  });

  test('a route without a neighbour entry: translated and passed to the stack, which resolves the neighbour; TTL left to the stack', () => {
    const before = dp!.drops();
    const input = syn(NO_NEIGH.port, freshPort());
    const r = ingress(input);
    assert.equal(r.retval, XDP.PASS);
    const out = parsePacket(r.dataOut);
    const inp = parsePacket(input);
    assert.equal(out.ip!.dst, NO_NEIGH.backend.addr);
    assert.equal(out.l4!.dport, NO_NEIGH.backend.port);
    assert.equal(out.ip!.src, NODE);
    assert.ok(out.l4!.sport >= SNAT_MIN && out.l4!.sport <= SNAT_MAX, 'SNAT port from the range');
    assert.equal(out.ip!.ttl, inp.ip!.ttl, 'the stack decrements the TTL when it forwards');
    verifyChecksums(r.dataOut);
    assert.deepEqual(out.eth, inp.eth, 'MACs are the stack\'s to set');
    assert.deepEqual(dropsDelta(before, dp!.drops()), {});
  });

  /** Hold SNAT port `port` towards CROWDED's backend for a live, answered flow of another client (`clientPort`). */
  const holdPort = (d: Datapath, port: number, clientPort: number, state: { flags?: number; seen?: number; reply_seen?: number } = {}) => {
    const now = d.nowTicks();
    d.putConntrack(
      { saddr: '192.0.2.99', daddr: VIP, sport: clientPort, dport: CROWDED.port, proto: PROTO.TCP },
      { backend_id: CROWDED.backend.id, backend_addr: CROWDED.backend.addr, backend_port: CROWDED.backend.port, snat_port: port, service_id: CROWDED.id, flags: CT_SNAT | CT_ESTABLISHED, seen: now, reply_seen: now, ...state, ...(state.flags !== undefined ? { flags: CT_SNAT | state.flags } : {}) },
    );
  };

  /** A datapath of its own with CROWDED alone and a SNAT range of `range` ports: as many sets, one port each. */
  function crowded(range: number): Datapath {
    const own = Datapath.load({ nodeAddr: NODE, snatPortMin: SNAT_MIN, snatPortMax: SNAT_MIN + range - 1, withTc: false });
    own.setBackend(CROWDED.backend.id, { addr: CROWDED.backend.addr, port: CROWDED.backend.port, proto: PROTO.TCP });
    own.addFrontend(VIP, CROWDED.port, PROTO.TCP, CROWDED.id);
    own.setTable(CROWDED.id, [CROWDED.backend.id]);
    assert.equal(own.snat.sets, range);
    return own;
  }

  test("a port of the flow's set held towards its backend sends the flow to another set's port, which leads its replies back; every port held drops with snat_exhausted", () => {
    const own = crowded(256);
    try {
      const run = (frame: Buffer) => own.ingress.testRun(frame, { ctxIn: xdpCtx(frame.length, ifA) });
      const sport = freshPort();
      const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: CROWDED.port, proto: PROTO.TCP };
      const home = own.snatHome(flow);
      assert.deepEqual(home.ports, [predictedSnatPort(flow, own)], 'one port a set');
      holdPort(own, home.ports[0], 1000);
      const r = run(syn(CROWDED.port, sport));
      assert.equal(r.retval, XDP.TX);
      const port = parsePacket(r.dataOut).l4!.sport;
      assert.notEqual(port, home.ports[0]);
      assert.ok(port >= SNAT_MIN && port < SNAT_MIN + 256);
      assert.equal(own.conntrack(flow)!.snat_port, port, 'the flow lives in its own set with the other set\'s port');
      const reply = tcpPacket({ eth: { src: MAC.B, dst: MAC.A }, ip: { src: CROWDED.backend.addr, dst: NODE }, tcp: { sport: CROWDED.backend.port, dport: port, flags: TCP_FLAG.SYN | TCP_FLAG.ACK } });
      const back = parsePacket(run(reply).dataOut);
      assert.deepEqual({ dst: back.ip!.dst, dport: back.l4!.dport, src: back.ip!.src }, { dst: CLIENT, dport: sport, src: VIP }, 'the reply, through the pointer');

      // Every port held by a live flow: the next SYN drops.
      let k = 0;
      for (let p = SNAT_MIN; p < SNAT_MIN + 256; p++) if (p !== home.ports[0] && p !== port) holdPort(own, p, 2000 + k++);
      const sport2 = freshPort();
      const before = own.drops();
      const input = syn(CROWDED.port, sport2);
      const r2 = run(input);
      const got = parsePacket(r2.dataOut).l4!.sport;
      assert.equal(r2.retval, XDP.DROP, `dropped, not sent from port ${got}`);
      assert.deepEqual(r2.dataOut, input);
      assert.deepEqual(dropsDelta(before, own.drops()), { XLB_DROP_SNAT_EXHAUSTED: 1 });
      assert.equal(own.conntrack({ ...flow, sport: sport2 }), undefined);
    } finally {
      own.close();
    }
  });

  test('a range of fewer sets than tries is searched whole: its last free port is found', () => {
    const range = 16; // the 16 ports of lab-snat.test.ts
    assert.ok(range < enums.xlb_limits.XLB_SNAT_RETRIES);
    const own = crowded(range);
    try {
      const run = (frame: Buffer) => own.ingress.testRun(frame, { ctxIn: xdpCtx(frame.length, ifA) });
      const sport = freshPort();
      const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: CROWDED.port, proto: PROTO.TCP };
      // Every port but the one of the set searched last (the one before the flow's own) is held.
      const last = SNAT_MIN + ((own.snatHome(flow).set + range - 1) % range);
      for (let p = SNAT_MIN; p < SNAT_MIN + range; p++) if (p !== last) holdPort(own, p, 3000 + p - SNAT_MIN);
      const r = run(syn(CROWDED.port, sport));
      assert.equal(r.retval, XDP.TX, 'the SYN is forwarded, not dropped');
      assert.equal(parsePacket(r.dataOut).l4!.sport, last, 'the one free port, in the set searched last');

      const before = own.drops();
      const r2 = run(syn(CROWDED.port, freshPort()));
      assert.equal(r2.retval, XDP.DROP, 'all 16 held now');
      assert.deepEqual(dropsDelta(before, own.drops()), { XLB_DROP_SNAT_EXHAUSTED: 1 });
    } finally {
      own.close();
    }
  });

  test('a flow whose state was lost gets its own SNAT port back', () => {
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: VIA_A.port, proto: PROTO.TCP };
    const r1 = ingress(syn(VIA_A.port, sport));
    const port1 = parsePacket(r1.dataOut).l4!.sport;
    assert.ok(dp!.dropSnatFlow(flow));
    assert.equal(dp!.conntrack(flow), undefined);
    const r2 = ingress(syn(VIA_A.port, sport, { flags: TCP_FLAG.ACK }));
    assert.equal(r2.retval, XDP.TX);
    assert.equal(parsePacket(r2.dataOut).l4!.sport, port1);
  });

  test('a SYN sent again keeps its flow, way and port (no second element)', () => {
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: VIA_A.port, proto: PROTO.TCP };
    const p1 = parsePacket(ingress(syn(VIA_A.port, sport)).dataOut).l4!.sport;
    const p2 = parsePacket(ingress(syn(VIA_A.port, sport)).dataOut).l4!.sport;
    assert.equal(p2, p1);
    assert.equal(dp!.snatFlows().filter((f) => f.flow.sport === sport && f.flow.saddr === CLIENT).length, 1);
  });
});

/** Service 17: VIP:93/TCP, the reuse tests' own backend and ports. */
const REUSE = { id: 17, port: 93, backend: { id: 7, addr: '198.19.1.70', port: 7070 } };

/**
 * A new flow whose set's ports are all held towards the backend, the first
 * by another flow (client 192.0.2.90:`ownerPort`) in the given state: it
 * last saw a reply `replyAge` ticks ago and the client `clientAge` ago
 * (`replyAge` when left out; a reply age of -1: never answered).
 * Returns the port the new flow got and the port it wanted.
 */
function contend(o: { flags: number; replyAge: number; clientAge?: number; ownerPort: number; d?: Datapath; svc?: typeof REUSE }): { got: number; wanted: number; sport: number } {
  const d = o.d ?? dp!;
  const svc = o.svc ?? REUSE;
  const now = d.nowTicks();
  const sport = freshPort();
  const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: svc.port, proto: PROTO.TCP };
  const [wanted, ...others] = d.snatHome(flow).ports;
  const hold = (port: number, clientPort: number, state: { flags: number; seen: number; reply_seen: number }) =>
    d.putConntrack(
      { saddr: '192.0.2.90', daddr: VIP, sport: clientPort, dport: svc.port, proto: PROTO.TCP },
      { backend_id: svc.backend.id, backend_addr: svc.backend.addr, backend_port: svc.backend.port, snat_port: port, service_id: svc.id, ...state, flags: CT_SNAT | state.flags },
    );
  hold(wanted, o.ownerPort, { flags: o.flags, seen: now - (o.clientAge ?? o.replyAge), reply_seen: o.replyAge < 0 ? 0 : now - o.replyAge });
  // The set's other ports held by live flows.
  others.forEach((p, k) => hold(p, o.ownerPort + 100 * (k + 1), { flags: CT_ESTABLISHED, seen: now, reply_seen: now }));
  const r = d.ingress.testRun(syn(svc.port, sport), { ctxIn: xdpCtx(54, ifA) });
  assert.equal(r.retval, XDP.TX);
  return { got: parsePacket(r.dataOut).l4!.sport, wanted, sport };
}
describe('SNAT ports of flows that are over are reused', () => {
  before(() => {
    dp!.setBackend(REUSE.backend.id, { addr: REUSE.backend.addr, port: REUSE.backend.port, proto: PROTO.TCP });
    dp!.addFrontend(VIP, REUSE.port, PROTO.TCP, REUSE.id);
    dp!.setTable(REUSE.id, [REUSE.backend.id, REUSE.backend.id, REUSE.backend.id]);
  });

  // lifetimes and ages in ticks of the datapath's clock (~1.07 s)
  const FIN = ticks(enums.xlb_limits.XLB_CT_TIMEOUT_TCP_FIN);
  const SYN_ONLY = ticks(enums.xlb_limits.XLB_CT_TIMEOUT_TCP_SYN);

  test('the port of a closed flow, silent both ways for longer than the FIN lifetime, goes to the new flow', () => {
    const c = contend({ flags: CT_ESTABLISHED | CT_CLOSING, replyAge: FIN + 2, ownerPort: 3001 });
    assert.equal(c.got, c.wanted);
    const entry = dp!.rnat({ saddr: REUSE.backend.addr, daddr: NODE, sport: REUSE.backend.port, dport: c.got, proto: PROTO.TCP })!;
    assert.deepEqual({ client: entry.client_addr, port: entry.client_port, flags: entry.flags }, { client: CLIENT, port: c.sport, flags: CT_SNAT }, 'the port is the new flow\'s');
    assert.ok(Math.abs(entry.seen - dp!.nowTicks()) <= 1);
  });

  test('a closing flow that replied within the FIN lifetime keeps its port while another can be had', () => {
    const c = contend({ flags: CT_ESTABLISHED | CT_CLOSING, replyAge: FIN - 5, clientAge: FIN + 2, ownerPort: 3002 });
    assert.notEqual(c.got, c.wanted);
  });

  test('an established flow silent for minutes keeps its port (its lifetime is hours)', () => {
    const c = contend({ flags: CT_ESTABLISHED, replyAge: 600, ownerPort: 3003 });
    assert.notEqual(c.got, c.wanted);
  });

  test('a flow never answered keeps its port for the SYN lifetime, not longer', () => {
    const kept = contend({ flags: 0, replyAge: -1, clientAge: SYN_ONLY - 10, ownerPort: 3004 });
    assert.notEqual(kept.got, kept.wanted);
    const taken = contend({ flags: 0, replyAge: -1, clientAge: SYN_ONLY + 2, ownerPort: 3005 });
    assert.equal(taken.got, taken.wanted);
  });

  test('when every port is held, the port of a closed flow of its own set silent for a while is taken instead of dropping the SYN', () => {
    const range = 16;
    const own = Datapath.load({ nodeAddr: NODE, snatPortMin: SNAT_MIN, snatPortMax: SNAT_MIN + range - 1, withTc: false });
    try {
      own.setBackend(REUSE.backend.id, { addr: REUSE.backend.addr, port: REUSE.backend.port, proto: PROTO.TCP });
      own.addFrontend(VIP, REUSE.port, PROTO.TCP, REUSE.id);
      own.setTable(REUSE.id, [REUSE.backend.id]);
      const now = own.nowTicks();
      const sport = freshPort();
      const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: REUSE.port, proto: PROTO.TCP };
      const mine = own.snatHome(flow).ports[0];
      // Every port held by a flow that closed a while ago, none for the FIN lifetime.
      for (let k = 0; k < range; k++) {
        own.putConntrack(
          { saddr: '192.0.2.92', daddr: VIP, sport: 5000 + k, dport: REUSE.port, proto: PROTO.TCP },
          { backend_id: REUSE.backend.id, backend_addr: REUSE.backend.addr, backend_port: REUSE.backend.port, snat_port: SNAT_MIN + k, service_id: REUSE.id, flags: CT_SNAT | CT_ESTABLISHED | CT_CLOSING, seen: now - 4, reply_seen: now - 4 },
        );
      }
      assert.ok(4 < FIN && 4 >= ticks(enums.xlb_limits.XLB_SNAT_CLOSED_REUSE));
      const before = own.drops();
      const r = own.ingress.testRun(syn(REUSE.port, sport), { ctxIn: xdpCtx(54, ifA) });
      assert.equal(r.retval, XDP.TX);
      assert.equal(parsePacket(r.dataOut).l4!.sport, mine, "the closed flow's port of the flow's own set");
      assert.deepEqual(dropsDelta(before, own.drops()), {});
      assert.equal(own.conntrack(flow)!.snat_port, mine);
    } finally {
      own.close();
    }
  });

  test("a backend's FIN marks the flow closing and its replies refresh it", () => {
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: REUSE.port, proto: PROTO.TCP };
    const r = ingress(syn(REUSE.port, sport));
    assert.equal(r.retval, XDP.TX);
    const port = dp!.conntrack(flow)!.snat_port;
    dp!.putConntrack(flow, { reply_seen: 7, flags: CT_SNAT });
    const fin = tcpPacket({ eth: { src: MAC.B, dst: MAC.A }, ip: { src: REUSE.backend.addr, dst: NODE }, tcp: { sport: REUSE.backend.port, dport: port, flags: TCP_FLAG.FIN | TCP_FLAG.ACK } });
    const out = ingress(fin);
    assert.equal(out.retval, XDP.TX);
    assert.equal(parsePacket(out.dataOut).ip!.src, VIP, 'restored');
    const e = dp!.rnat({ saddr: REUSE.backend.addr, daddr: NODE, sport: REUSE.backend.port, dport: port, proto: PROTO.TCP })!;
    assert.equal(e.flags, CT_SNAT | CT_REPLIED | CT_CLOSING);
    assert.ok(Math.abs(dp!.replySeen(flow)! - dp!.nowTicks()) <= 1);
  });
});

describe('conntrack lifetimes are the loader\'s to set', () => {
  test('with tcpFin = 30 s a flow closed 15 ticks (~16 s) ago keeps its port, as it would not with the default 10 s', () => {
    const own = Datapath.load({ nodeAddr: NODE, snatPortMin: SNAT_MIN, snatPortMax: SNAT_MAX, withTc: false, conntrackLifetimes: { tcp: 21600, tcpSyn: 60, tcpFin: 30, any: 60 } });
    try {
      const svc = { id: 1, port: 94, backend: { id: 1, addr: '198.19.1.80', port: 8080 } };
      own.setBackend(svc.backend.id, { addr: svc.backend.addr, port: svc.backend.port, proto: PROTO.TCP });
      own.addFrontend(VIP, svc.port, PROTO.TCP, svc.id);
      own.setTable(svc.id, [1, 1, 1]);
      const c = contend({ flags: CT_ESTABLISHED | CT_CLOSING, replyAge: 15, ownerPort: 4000, d: own, svc });
      assert.notEqual(c.got, c.wanted, 'kept: 15 ticks is within 30 s');
    } finally {
      own.close();
    }
  });
});

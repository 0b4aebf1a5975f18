/**
 * xlb_xdp_ingress and xlb_tc_egress under BPF_PROG_TEST_RUN, for services
 * whose backends run on this node (DNAT + XDP_PASS, reverse NAT in tc) and
 * for everything the datapath must leave alone. No FIB lookup is involved,
 * so these run in the test's own network namespace.
 *
 * Run as root: node --import tsx --test test/datapath/xdp_local.test.ts
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Datapath, XDP, TC_ACT_OK, BE_LOCAL, CT_SNAT, CT_ESTABLISHED, CT_CLOSING, ticks, buildObjects, dropsDelta, type DropReason, type FlowKey } from './harness.js';
import { predictBackend } from '../../src/maglev/flowhash.js';
import { enums } from '../../src/datapath/codec.js';
import { waitFor } from '../../src/util/wait.js';
import {
  tcpPacket,
  udpPacket,
  arpRequest,
  ipv6UdpPacket,
  ipv4RawPacket,
  parsePacket,
  verifyChecksums,
  PROTO,
  TCP_FLAG,
  ETH_P,
  type EthSpec,
} from '../helpers/packet.js';

const NODE = '198.18.0.11';
const CLIENT = '192.0.2.7';
const VIP = '203.0.113.10';
const OTHER_IP = '203.0.113.99';

/** Service 1: VIP:80/TCP over five local backends 1..5 (198.19.1.N:8080). */
const WEB = { id: 1, port: 80 };
const WEB_BACKENDS = [1, 2, 3, 4, 5].map((id) => ({ id, addr: `198.19.1.${id}`, port: 8080 }));
/** A 0-based Maglev table of prime size 13 over the five backends. */
const WEB_TABLE = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3];
/** Services 2 and 3 share VIP:53, one TCP and one UDP, each with its own backend. */
const DNS_TCP = { id: 2, port: 53, backend: { id: 20, addr: '198.19.2.20', port: 5353 } };
const DNS_UDP = { id: 3, port: 53, backend: { id: 21, addr: '198.19.2.21', port: 5354 } };
/** Services with no usable table: none at all, all-zero slots, M = 0. */
const NO_TABLE = { id: 4, port: 81 };
const ZERO_TABLE = { id: 5, port: 82 };
const ZERO_SIZE = { id: 6, port: 83 };
const NO_SLAB = { id: 60, port: 88 };
/** Service 7: only the counters test sends to it. */
const COUNTED = { id: 7, port: 84, backend: { id: 30, addr: '198.19.3.30', port: 9000 } };
/** Service 8: the conntrack lifecycle test, backends 40 and 41. */
const STICKY = { id: 8, port: 85 };

let dp: Datapath;
let nextClientPort = 20000;
/** A client port no other test used: every packet built with it starts a new flow. */
const freshPort = (): number => nextClientPort++;

const backendOf = (id: number) => [...WEB_BACKENDS, DNS_TCP.backend, DNS_UDP.backend].find((b) => b.id === id)!;

before(() => {
  buildObjects();
  dp = Datapath.load({ nodeAddr: NODE });
  for (const b of WEB_BACKENDS) dp.setBackend(b.id, { addr: b.addr, port: b.port, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.addFrontend(VIP, WEB.port, PROTO.TCP, WEB.id);
  dp.setTable(WEB.id, WEB_TABLE);

  dp.setBackend(DNS_TCP.backend.id, { ...DNS_TCP.backend, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.setBackend(DNS_UDP.backend.id, { ...DNS_UDP.backend, proto: PROTO.UDP, flags: BE_LOCAL });
  dp.addFrontend(VIP, DNS_TCP.port, PROTO.TCP, DNS_TCP.id);
  dp.addFrontend(VIP, DNS_UDP.port, PROTO.UDP, DNS_UDP.id);
  dp.setTable(DNS_TCP.id, [DNS_TCP.backend.id, DNS_TCP.backend.id, DNS_TCP.backend.id]);
  dp.setTable(DNS_UDP.id, [DNS_UDP.backend.id, DNS_UDP.backend.id, DNS_UDP.backend.id]);

  dp.addFrontend(VIP, NO_TABLE.port, PROTO.TCP, NO_TABLE.id);
  dp.addFrontend(VIP, ZERO_TABLE.port, PROTO.TCP, ZERO_TABLE.id);
  dp.setTable(ZERO_TABLE.id, Array(7).fill(0));
  dp.addFrontend(VIP, ZERO_SIZE.port, PROTO.TCP, ZERO_SIZE.id);
  dp.setTable(ZERO_SIZE.id, []);
  dp.addFrontend(VIP, NO_SLAB.port, PROTO.TCP, NO_SLAB.id);
  dp.setDescriptor(NO_SLAB.id, (9 << enums.xlb_limits.XLB_MAGLEV_SLAB_SHIFT) | 17);

  dp.setBackend(COUNTED.backend.id, { ...COUNTED.backend, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.addFrontend(VIP, COUNTED.port, PROTO.TCP, COUNTED.id);
  dp.setTable(COUNTED.id, [COUNTED.backend.id, COUNTED.backend.id, COUNTED.backend.id]);
});

after(() => dp?.close());

/** A TCP segment client:sport -> VIP:dport (SYN unless `flags` says otherwise). */
function toVip(dport: number, opts: { sport?: number; flags?: number; eth?: EthSpec; options?: Buffer; dst?: string; ttl?: number } = {}): Buffer {
  return tcpPacket({
    eth: opts.eth,
    ip: { src: CLIENT, dst: opts.dst ?? VIP, options: opts.options, ttl: opts.ttl },
    tcp: { sport: opts.sport ?? freshPort(), dport, flags: opts.flags ?? TCP_FLAG.SYN, payload: opts.flags ? Buffer.from('GET / HTTP/1.1\r\n\r\n') : undefined },
  });
}

/** What tc egress makes of a TCP ACK with 5-tuple `reply`: its source after the program. */
function restoredSource(reply: FlowKey): { src: string; sport: number } {
  const pkt = tcpPacket({ ip: { src: reply.saddr, dst: reply.daddr }, tcp: { sport: reply.sport, dport: reply.dport, flags: TCP_FLAG.ACK } });
  const r = dp.egress!.testRun(pkt);
  assert.equal(r.retval, TC_ACT_OK);
  const o = parsePacket(r.dataOut);
  return { src: o.ip!.src, sport: o.l4!.sport };
}

/** Assert `out` is `input` DNATed to addr:port: only destination and checksums differ, checksums valid from scratch. */
function assertDnat(input: Buffer, out: Buffer, addr: string, port: number): void {
  const i = parsePacket(input);
  const o = parsePacket(out);
  assert.equal(out.length, input.length, 'frame length');
  assert.equal(o.ip!.dst, addr, 'destination address');
  assert.equal(o.l4!.dport, port, 'destination port');
  assert.equal(o.ip!.src, i.ip!.src, 'source address unchanged');
  assert.equal(o.l4!.sport, i.l4!.sport, 'source port unchanged');
  assert.equal(o.ip!.ttl, i.ip!.ttl, 'TTL unchanged (the stack forwards to the pod)');
  assert.deepEqual(o.eth, i.eth, 'Ethernet header (and VLAN tag) unchanged');
  assert.deepEqual(o.ip!.options, i.ip!.options, 'IPv4 options unchanged');
  const l4 = i.l3Offset + i.ip!.ihl * 4;
  const payloadAt = l4 + (i.ip!.protocol === PROTO.TCP ? (input[l4 + 12] >> 4) * 4 : 8);
  assert.deepEqual(out.subarray(payloadAt), input.subarray(payloadAt), 'payload unchanged');
  const sums = verifyChecksums(out);
  assert.equal(sums.ip, true, 'IPv4 header checksum');
  if (i.l4!.checksum === 0 && i.ip!.protocol === PROTO.UDP) assert.equal(sums.l4, 'absent', 'UDP checksum 0 stays 0');
  else assert.equal(sums.l4, true, 'L4 checksum');
}

interface Fixture {
  description: string;
  packet: () => Buffer;
  verdict: number;
  /** 'unchanged': output bytes identical to the input; a function checks the rewrite. */
  expect: 'unchanged' | ((input: Buffer, out: Buffer) => void);
  /** The drop counter that must move by one (and no other). */
  drop?: DropReason;
}

/** The backend the WEB table gives a SYN built by `toVip(WEB.port, { sport })`. */
const webPick = (sport: number) =>
  backendOf(predictBackend(Uint32Array.from(WEB_TABLE), { saddr: CLIENT, daddr: VIP, sport, dport: WEB.port, proto: PROTO.TCP }));

const fixtures: Fixture[] = [
  {
    description: 'a SYN to a VIP is DNATed to the Maglev-predicted local backend and passed',
    packet: () => toVip(WEB.port, { sport: 41000 }),
    verdict: XDP.PASS,
    expect: (i, o) => assertDnat(i, o, webPick(41000).addr, webPick(41000).port),
  },
  {
    description: 'a SYN behind an 802.1Q tag is DNATed and keeps its tag',
    packet: () => toVip(WEB.port, { sport: 41001, eth: { vlan: { id: 42 } } }),
    verdict: XDP.PASS,
    expect: (i, o) => {
      assert.equal(parsePacket(o).eth.vlan?.id, 42);
      assertDnat(i, o, webPick(41001).addr, webPick(41001).port);
    },
  },
  {
    description: 'a SYN behind an 802.1ad tag is DNATed',
    packet: () => toVip(WEB.port, { sport: 41002, eth: { vlan: { id: 7, tpid: ETH_P.QINQ } } }),
    verdict: XDP.PASS,
    expect: (i, o) => assertDnat(i, o, webPick(41002).addr, webPick(41002).port),
  },
  {
    description: 'a SYN with IPv4 options (IHL 8) is DNATed with its options intact',
    packet: () => toVip(WEB.port, { sport: 41003, options: Buffer.from([0x07, 0x0b, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]) }),
    verdict: XDP.PASS,
    expect: (i, o) => {
      assert.equal(parsePacket(o).ip!.ihl, 8);
      assertDnat(i, o, webPick(41003).addr, webPick(41003).port);
    },
  },
  {
    description: 'a SYN with the longest IPv4 options (IHL 15) is DNATed',
    packet: () => toVip(WEB.port, { sport: 41004, options: Buffer.alloc(40, 0x01) }),
    verdict: XDP.PASS,
    expect: (i, o) => assertDnat(i, o, webPick(41004).addr, webPick(41004).port),
  },
  {
    description: 'TCP to VIP:53 goes to the TCP service backend',
    packet: () => toVip(DNS_TCP.port, { sport: 41005 }),
    verdict: XDP.PASS,
    expect: (i, o) => assertDnat(i, o, DNS_TCP.backend.addr, DNS_TCP.backend.port),
  },
  {
    description: 'UDP to the same VIP:53 goes to the UDP service backend, checksum valid',
    packet: () => udpPacket({ ip: { src: CLIENT, dst: VIP }, udp: { sport: 41006, dport: DNS_UDP.port } }),
    verdict: XDP.PASS,
    expect: (i, o) => assertDnat(i, o, DNS_UDP.backend.addr, DNS_UDP.backend.port),
  },
  {
    description: 'UDP with checksum 0 is DNATed and its checksum stays 0',
    packet: () => udpPacket({ ip: { src: CLIENT, dst: VIP }, udp: { sport: 41007, dport: DNS_UDP.port, noChecksum: true } }),
    verdict: XDP.PASS,
    expect: (i, o) => {
      assert.equal(parsePacket(o).l4!.checksum, 0);
      assertDnat(i, o, DNS_UDP.backend.addr, DNS_UDP.backend.port);
    },
  },
  { description: 'TCP to a VIP port without a service passes unchanged', packet: () => toVip(9999), verdict: XDP.PASS, expect: 'unchanged' },
  { description: 'UDP to a TCP-only frontend passes unchanged', packet: () => udpPacket({ ip: { src: CLIENT, dst: VIP }, udp: { sport: 41008, dport: WEB.port } }), verdict: XDP.PASS, expect: 'unchanged' },
  { description: 'TCP to an address that is no frontend passes unchanged', packet: () => toVip(WEB.port, { dst: OTHER_IP }), verdict: XDP.PASS, expect: 'unchanged' },
  { description: 'ARP passes unchanged', packet: () => arpRequest({ senderIp: CLIENT, targetIp: VIP }), verdict: XDP.PASS, expect: 'unchanged' },
  { description: 'IPv6 passes unchanged', packet: () => ipv6UdpPacket({ sport: 41009, dport: 53 }), verdict: XDP.PASS, expect: 'unchanged' },
  {
    description: 'ICMP to a VIP passes unchanged',
    packet: () => ipv4RawPacket({ ip: { src: CLIENT, dst: VIP, protocol: PROTO.ICMP }, l4: Buffer.from('0800f7ff00000000', 'hex') }),
    verdict: XDP.PASS,
    expect: 'unchanged',
  },
  {
    description: 'a first fragment (MF) to a VIP passes unchanged',
    packet: () => tcpPacket({ ip: { src: CLIENT, dst: VIP, mf: true }, tcp: { sport: 41010, dport: WEB.port } }),
    verdict: XDP.PASS,
    expect: 'unchanged',
  },
  {
    description: 'a later fragment (offset != 0) to a VIP passes unchanged',
    packet: () => tcpPacket({ ip: { src: CLIENT, dst: VIP, fragOffset: 185 }, tcp: { sport: 41011, dport: WEB.port } }),
    verdict: XDP.PASS,
    expect: 'unchanged',
  },
  {
    description: 'a doubly tagged (QinQ) frame passes unchanged: one tag is supported',
    packet: () => {
      const inner = toVip(WEB.port, { eth: { vlan: { id: 5 } } });
      return Buffer.concat([inner.subarray(0, 12), Buffer.from([0x88, 0xa8, 0x00, 0x09]), inner.subarray(12)]);
    },
    verdict: XDP.PASS,
    expect: 'unchanged',
  },
  {
    description: 'an IPv4 header with IHL < 5 passes unchanged',
    packet: () => {
      const p = toVip(WEB.port);
      p[14] = 0x44;
      return p;
    },
    verdict: XDP.PASS,
    expect: 'unchanged',
  },
  {
    description: 'a version-6 header behind EtherType IPv4 passes unchanged',
    packet: () => {
      const p = toVip(WEB.port);
      p[14] = 0x65;
      return p;
    },
    verdict: XDP.PASS,
    expect: 'unchanged',
  },
  { description: 'a service without a Maglev table drops with no_backend', packet: () => toVip(NO_TABLE.port), verdict: XDP.DROP, expect: 'unchanged', drop: 'XLB_DROP_NO_BACKEND' },
  { description: 'a service with an all-zero table drops with no_backend', packet: () => toVip(ZERO_TABLE.port), verdict: XDP.DROP, expect: 'unchanged', drop: 'XLB_DROP_NO_BACKEND' },
  { description: 'a service whose table says M = 0 drops with no_backend (the next table\'s slots follow it)', packet: () => toVip(ZERO_SIZE.port), verdict: XDP.DROP, expect: 'unchanged', drop: 'XLB_DROP_NO_BACKEND' },
  { description: 'a service whose descriptor names a slab that does not exist drops with no_backend', packet: () => toVip(NO_SLAB.port), verdict: XDP.DROP, expect: 'unchanged', drop: 'XLB_DROP_NO_BACKEND' },
];

describe('xlb_xdp_ingress fixtures', () => {
  for (const f of fixtures) {
    test(f.description, () => {
      const input = f.packet();
      const copy = Buffer.from(input);
      const before = dp.drops();
      const r = dp.ingress.testRun(input);
      assert.equal(r.retval, f.verdict, `verdict (XDP_PASS=2, XDP_DROP=1), got ${r.retval}`);
      if (f.expect === 'unchanged') assert.deepEqual(r.dataOut, copy, 'output bytes identical to the input');
      else f.expect(copy, r.dataOut);
      assert.deepEqual(dropsDelta(before, dp.drops()), f.drop ? { [f.drop]: 1 } : {}, 'drop counters');
    });
  }
});

describe('conntrack', () => {
  test('a SYN creates a conntrack entry and a reverse NAT entry for the predicted backend', () => {
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: WEB.port, proto: PROTO.TCP };
    const want = backendOf(predictBackend(Uint32Array.from(WEB_TABLE), flow));
    assert.equal(dp.conntrack(flow), undefined);
    const r = dp.ingress.testRun(toVip(WEB.port, { sport }));
    assert.equal(r.retval, XDP.PASS);
    const now = dp.nowTicks();
    const { seen, ...ct } = dp.conntrack(flow)!;
    assert.deepEqual(ct, { backend_id: want.id, backend_addr: want.addr, backend_port: want.port, snat_port: 0, service_id: WEB.id, flags: 0 }, 'a SYN alone: not established');
    assert.ok(Math.abs(seen - now) <= 1, `seen ${seen} is now (${now})`);
    // Nothing else is written: the reply finds the conntrack entry through its backend's frontends.
    const reply: FlowKey = { saddr: want.addr, daddr: CLIENT, sport: want.port, dport: sport, proto: PROTO.TCP };
    assert.equal(dp.rnat(reply), undefined, 'no reply element');
    assert.deepEqual(dp.lbmaps.replies!.entries().get(`${want.addr}:${want.port}:${PROTO.TCP}`), [`${VIP}:${WEB.port}`], 'xlb_reply_frontends lists the frontend for the backend');
    assert.deepEqual(restoredSource(reply), { src: VIP, sport: WEB.port }, 'the reply is restored');
    assert.ok(Math.abs(dp.replySeen(flow)! - now) <= 1, 'and stamped on the conntrack entry');
  });

  test('the flow hash agrees with predictBackend over a table of 61 distinct backends', () => {
    const ids = Array.from({ length: 61 }, (_, i) => 100 + i);
    for (const id of ids) dp.setBackend(id, { addr: `198.19.4.${id - 99}`, port: 7000 + id, proto: PROTO.UDP, flags: BE_LOCAL });
    const svc = 9;
    dp.addFrontend(VIP, 86, PROTO.UDP, svc);
    dp.setTable(svc, ids);
    for (let i = 0; i < 300; i++) {
      const sport = 1024 + ((i * 7919) % 60000);
      const saddr = `192.0.2.${1 + (i % 250)}`;
      const want = predictBackend(Uint32Array.from(ids), { saddr, daddr: VIP, sport, dport: 86, proto: PROTO.UDP });
      const r = dp.ingress.testRun(udpPacket({ ip: { src: saddr, dst: VIP }, udp: { sport, dport: 86 } }));
      assert.equal(r.retval, XDP.PASS);
      assert.equal(parsePacket(r.dataOut).l4!.dport, 7000 + want, `flow ${saddr}:${sport}`);
    }
  });

  test('an established flow keeps its backend when the table changes, and moves when the backend is removed', () => {
    const a = { id: 40, addr: '198.19.5.40', port: 8040 };
    const b = { id: 41, addr: '198.19.5.41', port: 8041 };
    for (const x of [a, b]) dp.setBackend(x.id, { addr: x.addr, port: x.port, proto: PROTO.TCP, flags: BE_LOCAL });
    dp.addFrontend(VIP, STICKY.port, PROTO.TCP, STICKY.id);
    dp.setTable(STICKY.id, [a.id, a.id, a.id, a.id, a.id]);
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: STICKY.port, proto: PROTO.TCP };

    const syn = toVip(STICKY.port, { sport });
    assertDnat(syn, dp.ingress.testRun(syn).dataOut, a.addr, a.port);

    dp.setTable(STICKY.id, [b.id, b.id, b.id, b.id, b.id]);
    const ack = toVip(STICKY.port, { sport, flags: TCP_FLAG.ACK });
    const kept = dp.ingress.testRun(ack);
    assert.equal(kept.retval, XDP.PASS);
    assertDnat(ack, kept.dataOut, a.addr, a.port);
    assert.equal(dp.conntrack(flow)?.backend_id, a.id, 'conntrack still names the first backend');

    dp.removeBackend(a.id);
    const moved = dp.ingress.testRun(ack);
    assert.equal(moved.retval, XDP.PASS);
    assertDnat(ack, moved.dataOut, b.addr, b.port);
    assert.equal(dp.conntrack(flow)?.backend_id, b.id, 'conntrack rewritten to the new backend');
    assert.deepEqual(restoredSource({ saddr: a.addr, daddr: CLIENT, sport: a.port, dport: sport, proto: PROTO.TCP }), { src: a.addr, sport: a.port }, 'the old backend\'s replies are no longer the flow\'s');
    assert.deepEqual(restoredSource({ saddr: b.addr, daddr: CLIENT, sport: b.port, dport: sport, proto: PROTO.TCP }), { src: VIP, sport: STICKY.port });
  });

  test('a backend whose ID is reused for another address does not keep the flow', () => {
    const c = { id: 42, addr: '198.19.5.42', port: 8042 };
    dp.setBackend(c.id, { addr: c.addr, port: c.port, proto: PROTO.TCP, flags: BE_LOCAL });
    const svc = 10;
    dp.addFrontend(VIP, 87, PROTO.TCP, svc);
    dp.setTable(svc, [c.id, c.id, c.id]);
    const sport = freshPort();
    const syn = toVip(87, { sport });
    assertDnat(syn, dp.ingress.testRun(syn).dataOut, c.addr, c.port);
    dp.setBackend(c.id, { addr: '198.19.5.142', port: c.port, proto: PROTO.TCP, flags: BE_LOCAL });
    const next = toVip(87, { sport, flags: TCP_FLAG.ACK });
    assertDnat(next, dp.ingress.testRun(next).dataOut, '198.19.5.142', c.port);
  });
});

describe('conntrack lifetimes', () => {
  /** A flow of WEB placed on the Maglev pick, then moved by hand to another backend: which one a packet reaches tells kept from placed afresh. */
  function flowOnOther(): { sport: number; flow: FlowKey; pick: { id: number; addr: string; port: number }; other: { id: number; addr: string; port: number } } {
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: WEB.port, proto: PROTO.TCP };
    const pick = backendOf(predictBackend(Uint32Array.from(WEB_TABLE), flow));
    const other = WEB_BACKENDS.find((b) => b.id !== pick.id)!;
    assert.equal(dp.ingress.testRun(toVip(WEB.port, { sport })).retval, XDP.PASS);
    dp.putConntrack(flow, { ...dp.conntrack(flow)!, backend_id: other.id, backend_addr: other.addr, backend_port: other.port });
    return { sport, flow, pick, other };
  }
  const send = (sport: number, flags: number) => {
    const input = toVip(WEB.port, { sport, flags });
    const r = dp.ingress.testRun(input);
    assert.equal(r.retval, XDP.PASS);
    return parsePacket(r.dataOut).ip!.dst;
  };

  test('an ACK makes a flow established, a FIN closing; a SYN from the port of a closing flow is a new connection, placed afresh', () => {
    const { sport, flow, pick, other } = flowOnOther();
    assert.equal(dp.conntrack(flow)!.flags, 0, 'SYN only');
    assert.equal(send(sport, TCP_FLAG.ACK), other.addr, 'kept');
    assert.equal(dp.conntrack(flow)!.flags, CT_ESTABLISHED);
    // A SYN opens a connection: it is placed by Maglev without a conntrack
    // lookup (as Katran does), so a retransmitted SYN gets the same pick.
    assert.equal(send(sport, TCP_FLAG.SYN), pick.addr, 'a SYN is placed afresh');
    assert.equal(dp.conntrack(flow)!.backend_id, pick.id);
    dp.putConntrack(flow, { ...dp.conntrack(flow)!, backend_id: other.id, backend_addr: other.addr, backend_port: other.port, flags: CT_ESTABLISHED });
    assert.equal(send(sport, TCP_FLAG.FIN | TCP_FLAG.ACK), other.addr, 'the FIN itself is delivered');
    assert.equal(dp.conntrack(flow)!.flags, CT_ESTABLISHED | CT_CLOSING);
    assert.equal(send(sport, TCP_FLAG.ACK), other.addr, 'the last ACK too');
    assert.equal(send(sport, TCP_FLAG.SYN), pick.addr, 'a new connection from the same port');
    const ct = dp.conntrack(flow)!;
    assert.equal(ct.backend_id, pick.id);
    assert.equal(ct.flags, 0, 'its state starts over');
  });

  test('an RST makes a flow closing', () => {
    const { sport, flow } = flowOnOther();
    send(sport, TCP_FLAG.ACK);
    send(sport, TCP_FLAG.RST);
    assert.equal(dp.conntrack(flow)!.flags, CT_ESTABLISHED | CT_CLOSING);
  });

  test('a flow silent in both directions for longer than its lifetime is placed afresh; a recent reply keeps it', () => {
    const now = dp.nowTicks();
    const lifetime = ticks(enums.xlb_limits.XLB_CT_TIMEOUT_TCP); // ages below are in ticks (~1.07 s)
    // silent for longer than the established lifetime, replies as old: over
    const a = flowOnOther();
    dp.putConntrack(a.flow, { ...dp.conntrack(a.flow)!, flags: CT_ESTABLISHED, seen: now - lifetime - 5 });
    const replyA = { saddr: a.pick.addr, daddr: CLIENT, sport: a.pick.port, dport: a.sport, proto: PROTO.TCP };
    assert.equal(send(a.sport, TCP_FLAG.ACK), a.pick.addr, 'placed afresh');
    assert.ok(Math.abs(dp.conntrack(a.flow)!.seen - now) <= 1, 'its entry is new');
    assert.deepEqual(restoredSource(replyA), { src: VIP, sport: WEB.port }, 'its replies from the new backend are restored');

    // the client silent as long, but the backend replied a moment ago: kept
    const b = flowOnOther();
    dp.putConntrack(b.flow, { ...dp.conntrack(b.flow)!, flags: CT_ESTABLISHED, seen: now - lifetime - 5, reply_seen: now - 2 });
    assert.equal(send(b.sport, TCP_FLAG.ACK), b.other.addr, 'kept: the flow is alive in the reply direction');
    assert.ok(Math.abs(dp.conntrack(b.flow)!.seen - now) <= 1, 'and the client\'s packet refreshed it');

    // silent for 100 s but established: far from its lifetime, kept
    const c = flowOnOther();
    dp.putConntrack(c.flow, { ...dp.conntrack(c.flow)!, flags: CT_ESTABLISHED, seen: now - 100 });
    assert.equal(send(c.sport, TCP_FLAG.ACK), c.other.addr);

    // only SYNs so far and silent for longer than the SYN lifetime: over
    const d = flowOnOther();
    dp.putConntrack(d.flow, { ...dp.conntrack(d.flow)!, seen: now - ticks(enums.xlb_limits.XLB_CT_TIMEOUT_TCP_SYN) - 5 });
    assert.equal(send(d.sport, TCP_FLAG.SYN), d.pick.addr);
  });

  test("a local backend's reply stamps its flow's conntrack entry in tc", () => {
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: WEB.port, proto: PROTO.TCP };
    assert.equal(dp.ingress.testRun(toVip(WEB.port, { sport })).retval, XDP.PASS);
    const be = backendOf(dp.conntrack(flow)!.backend_id);
    dp.putConntrack(flow, { ...dp.conntrack(flow)!, reply_seen: 5 });
    const pkt = tcpPacket({ ip: { src: be.addr, dst: CLIENT }, tcp: { sport: be.port, dport: sport, flags: TCP_FLAG.ACK } });
    assert.equal(dp.egress!.testRun(pkt).retval, TC_ACT_OK);
    assert.ok(Math.abs(dp.replySeen(flow)! - dp.nowTicks()) <= 1, 'reply_seen is now');
  });

  test("a backend's FIN marks the flow closing", () => {
    const sport = freshPort();
    const flow: FlowKey = { saddr: CLIENT, daddr: VIP, sport, dport: WEB.port, proto: PROTO.TCP };
    dp.ingress.testRun(toVip(WEB.port, { sport }));
    dp.ingress.testRun(toVip(WEB.port, { sport, flags: TCP_FLAG.ACK }));
    const be = backendOf(dp.conntrack(flow)!.backend_id);
    const fin = tcpPacket({ ip: { src: be.addr, dst: CLIENT }, tcp: { sport: be.port, dport: sport, flags: TCP_FLAG.FIN | TCP_FLAG.ACK } });
    assert.equal(dp.egress!.testRun(fin).retval, TC_ACT_OK);
    assert.equal(dp.conntrack(flow)!.flags, CT_ESTABLISHED | CT_CLOSING);
  });
});

describe('xlb_tc_egress', () => {
  /** Send a SYN through XDP so that its reverse NAT entry exists; returns the backend. */
  function establish(sport: number) {
    const r = dp.ingress.testRun(toVip(WEB.port, { sport }));
    assert.equal(r.retval, XDP.PASS);
    const o = parsePacket(r.dataOut);
    return { addr: o.ip!.dst, port: o.l4!.dport };
  }

  test("a local backend's TCP reply leaves with its source restored to VIP:port, checksums valid", () => {
    const sport = freshPort();
    const be = establish(sport);
    const reply = tcpPacket({ eth: { src: '02:00:00:00:00:02', dst: '02:00:00:00:00:01' }, ip: { src: be.addr, dst: CLIENT }, tcp: { sport: be.port, dport: sport, flags: TCP_FLAG.SYN | TCP_FLAG.ACK } });
    const r = dp.egress!.testRun(reply);
    assert.equal(r.retval, TC_ACT_OK);
    const o = parsePacket(r.dataOut);
    assert.equal(o.ip!.src, VIP);
    assert.equal(o.l4!.sport, WEB.port);
    assert.equal(o.ip!.dst, CLIENT);
    assert.equal(o.l4!.dport, sport);
    assert.deepEqual(verifyChecksums(r.dataOut), { ip: true, l4: true });
    assert.equal(r.dataOut.length, reply.length);
  });

  test('a UDP reply is restored and a zero UDP checksum stays zero', () => {
    for (const noChecksum of [false, true]) {
      const sport = freshPort();
      const req = udpPacket({ ip: { src: CLIENT, dst: VIP }, udp: { sport, dport: DNS_UDP.port, noChecksum } });
      assert.equal(dp.ingress.testRun(req).retval, XDP.PASS);
      const reply = udpPacket({ ip: { src: DNS_UDP.backend.addr, dst: CLIENT }, udp: { sport: DNS_UDP.backend.port, dport: sport, noChecksum } });
      const r = dp.egress!.testRun(reply);
      assert.equal(r.retval, TC_ACT_OK);
      const o = parsePacket(r.dataOut);
      assert.equal(o.ip!.src, VIP);
      assert.equal(o.l4!.sport, DNS_UDP.port);
      assert.deepEqual(verifyChecksums(r.dataOut), { ip: true, l4: noChecksum ? 'absent' : true });
    }
  });

  test('a VLAN-tagged reply is restored', () => {
    const sport = freshPort();
    const be = establish(sport);
    const reply = tcpPacket({ eth: { vlan: { id: 42 } }, ip: { src: be.addr, dst: CLIENT }, tcp: { sport: be.port, dport: sport, flags: TCP_FLAG.ACK } });
    const r = dp.egress!.testRun(reply);
    assert.equal(parsePacket(r.dataOut).ip!.src, VIP);
    assert.deepEqual(verifyChecksums(r.dataOut), { ip: true, l4: true });
  });

  test('traffic without a reverse NAT entry, and replies to SNATed flows, leave unchanged', () => {
    const unknown = tcpPacket({ ip: { src: '198.19.1.1', dst: CLIENT }, tcp: { sport: 8080, dport: 1, flags: TCP_FLAG.ACK } });
    const r1 = dp.egress!.testRun(unknown);
    assert.equal(r1.retval, TC_ACT_OK);
    assert.deepEqual(r1.dataOut, unknown);

    const snatReply: FlowKey = { saddr: '198.19.9.9', daddr: NODE, sport: 8080, dport: 61000, proto: PROTO.TCP };
    dp.putConntrack({ saddr: CLIENT, daddr: VIP, sport: 5555, dport: 80, proto: PROTO.TCP }, { backend_id: 9, backend_addr: snatReply.saddr, backend_port: 8080, snat_port: 61000, service_id: 1, flags: CT_SNAT });
    assert.ok(dp.snatReply(snatReply), 'the SNATed flow is there for its reply');
    const pkt = tcpPacket({ ip: { src: snatReply.saddr, dst: NODE }, tcp: { sport: 8080, dport: 61000, flags: TCP_FLAG.ACK } });
    const r2 = dp.egress!.testRun(pkt);
    assert.equal(r2.retval, TC_ACT_OK);
    assert.deepEqual(r2.dataOut, pkt);
  });
});

describe('counters', () => {
  test('service packets and bytes count every frame sent to the service (whole frame length)', () => {
    const before = dp.serviceStats(COUNTED.id);
    const sport = freshPort();
    const frames = [toVip(COUNTED.port, { sport }), toVip(COUNTED.port, { sport, flags: TCP_FLAG.ACK }), toVip(COUNTED.port, { sport: freshPort(), eth: { vlan: { id: 3 } } })];
    for (const f of frames) assert.equal(dp.ingress.testRun(f).retval, XDP.PASS);
    const afterStats = dp.serviceStats(COUNTED.id);
    assert.equal(afterStats.packets - before.packets, 3n);
    assert.equal(afterStats.bytes - before.bytes, BigInt(frames.reduce((s, f) => s + f.length, 0)));
  });

  test('packets that miss every frontend count for no service', () => {
    const before = dp.serviceStats(COUNTED.id);
    dp.ingress.testRun(toVip(COUNTED.port, { dst: OTHER_IP }));
    assert.deepEqual(dp.serviceStats(COUNTED.id), before);
  });
});

describe('removing Maglev tables', () => {
  test('tables removed together and alone (descriptor 0) both leave their services without a backend', () => {
    const ids = [40, 41, 42];
    ids.forEach((id, i) => {
      dp.addFrontend(VIP, 300 + i, PROTO.TCP, id);
      dp.setTable(id, [COUNTED.backend.id, COUNTED.backend.id, COUNTED.backend.id]);
      assert.equal(dp.ingress.testRun(toVip(300 + i)).retval, XDP.PASS, `service ${id} serves before`);
    });
    dp.lbmaps.deleteMaglevTables([40, 41]);
    dp.lbmaps.deleteMaglevTables([42]);
    const before = dp.drops();
    ids.forEach((_, i) => assert.equal(dp.ingress.testRun(toVip(300 + i)).retval, XDP.DROP));
    assert.deepEqual(dropsDelta(before, dp.drops()), { XLB_DROP_NO_BACKEND: 3 });
    dp.setTable(40, [COUNTED.backend.id]);
    assert.equal(dp.ingress.testRun(toVip(300)).retval, XDP.PASS, 'a new table replaces the empty one');
  });
});

describe('Maglev slabs', () => {
  // An instance of its own, so that slot positions are those of empty slabs.
  let fresh: Datapath;
  const BACKENDS = [1, 2, 3].map((id) => ({ id, addr: `198.19.5.${id}`, port: 8000 + id }));
  before(() => {
    fresh = Datapath.load({ nodeAddr: NODE, withTc: false });
    for (const b of BACKENDS) fresh.setBackend(b.id, { addr: b.addr, port: b.port, proto: PROTO.TCP, flags: BE_LOCAL });
  });
  after(() => fresh?.close());
  const SHIFT = enums.xlb_limits.XLB_MAGLEV_SLAB_SHIFT;
  /** The backend address a new flow to VIP:port is DNATed to. */
  const pick = (port: number) => {
    const r = fresh.ingress.testRun(toVip(port));
    assert.equal(r.retval, XDP.PASS);
    return parsePacket(r.dataOut).ip!.dst;
  };
  const slots = () => fresh.lbmaps.maglevStats();

  test('a changed table goes into other slots and its descriptor switches; the old slots are reused only after a grace period', () => {
    const [a, b] = BACKENDS;
    fresh.addFrontend(VIP, 500, PROTO.TCP, 50);
    fresh.addFrontend(VIP, 501, PROTO.TCP, 51);
    fresh.addFrontend(VIP, 502, PROTO.TCP, 52);
    fresh.setTable(50, Array(7).fill(a.id));
    assert.equal(fresh.lbmaps.tables.descriptor(50), 1, 'slab 0, slot 1: slot 0 of slab 0 is never used');
    assert.equal(pick(500), a.addr);
    fresh.setTable(50, Array(7).fill(b.id));
    assert.equal(fresh.lbmaps.tables.descriptor(50), 9, 'the next 8 slots');
    assert.equal(pick(500), b.addr);
    fresh.setTable(51, Array(7).fill(a.id));
    assert.equal(fresh.lbmaps.tables.descriptor(51), 17, 'the first table\'s slots wait for their grace period');
    assert.equal(slots().retired, 8);
    assert.equal(fresh.lbmaps.tables.reclaim(), 8);
    fresh.setTable(52, Array(7).fill(a.id));
    assert.equal(fresh.lbmaps.tables.descriptor(52), 1, 'reused after it');
    assert.deepEqual([pick(500), pick(501), pick(502)], [b.addr, a.addr, a.addr]);
    assert.deepEqual(fresh.lbmaps.tables.table(50), Uint32Array.from(Array(7).fill(b.id)));
  });

  test('retired slots are released by a grace period on the thread pool, without a caller waiting for it', async () => {
    const before = slots().gracePeriods;
    fresh.setTable(52, Array(7).fill(BACKENDS[2].id));
    fresh.lbmaps.deleteMaglevTables([51]);
    assert.ok(slots().retired >= 16);
    await waitFor(() => slots().retired === 0, 5000, 'retired Maglev slots released');
    assert.ok(slots().gracePeriods > before);
    assert.equal(pick(502), BACKENDS[2].addr);
  });

  test('tables that fill a slab spill into a new one, which the datapath follows', () => {
    const M = enums.xlb_limits.XLB_MAGLEV_MAX_M;
    const tables = Array.from({ length: 8 }, (_, i) => ({ serviceId: 60 + i, table: new Uint32Array(M).fill(BACKENDS[i % 3].id) }));
    fresh.lbmaps.putMaglevTables(tables);
    const descs = tables.map((t) => fresh.lbmaps.tables.descriptor(t.serviceId));
    assert.deepEqual(descs.map((d) => d >>> SHIFT), [0, 0, 0, 0, 0, 0, 0, 1], 'seven of M + 1 = 2^17 slots fit beside the small tables');
    assert.equal(slots().slabs, 2);
    fresh.addFrontend(VIP, 503, PROTO.TCP, 67);
    assert.equal(pick(503), BACKENDS[7 % 3].addr);
  });

  /** Run `fn` on a datapath of its own (closed afterwards), with its Maglev slab stats. */
  async function withOwnDatapath(fn: (own: Datapath, st: () => ReturnType<Datapath['lbmaps']['maglevStats']>) => unknown): Promise<void> {
    const own = Datapath.load({ nodeAddr: NODE, withTc: false });
    try {
      await fn(own, () => own.lbmaps.maglevStats());
    } finally {
      own.close();
    }
  }

  /** Tables first..first+count-1 of M slots, every slot backend 1. */
  const onesTables = (first: number, count: number, M: number) => Array.from({ length: count }, (_, i) => ({ serviceId: first + i, table: new Uint32Array(M).fill(1) }));

  /** A packet to VIP:`port`, a frontend of service `serviceId` whose backend 1 is at `addr`, leaves for `addr`: the datapath follows that service's table. */
  function assertFollows(own: Datapath, port: number, serviceId: number, addr: string, why?: string): void {
    own.addFrontend(VIP, port, PROTO.TCP, serviceId);
    own.setBackend(1, { addr, port: 8001, proto: PROTO.TCP, flags: BE_LOCAL });
    const r = own.ingress.testRun(toVip(port));
    assert.equal(r.retval, XDP.PASS);
    assert.equal(parsePacket(r.dataOut).ip!.dst, addr, why);
  }

  test('free slots are kept at hand: a batch that makes a slab makes one more when little room is left, and a spare slab arrives on the thread pool', () =>
    withOwnDatapath(async (own, st) => {
      const M = enums.xlb_limits.XLB_MAGLEV_MAX_M; // M + 1 = 2^17 slots: eight fill a slab
      const big = (first: number, n: number) => onesTables(first, n, M);
      own.lbmaps.putMaglevTables(big(1, 7));
      assert.equal(st().slabs, 2, 'slab 0 holds seven with 2^17 - 1 slots left, so slab 1 went in with it');
      assert.equal(st().free, 2 ** 17 - 1 + 2 ** 20);
      assert.equal(st().gracePeriods, 1, 'one update for both');
      own.lbmaps.putMaglevTables(big(8, 8));
      assert.equal(st().free, 2 ** 17 - 1, 'slab 1 is full now');
      assert.equal(st().slabs, 3, 'a spare slab is on its way');
      await waitFor(() => st().free === 2 ** 17 - 1 + 2 ** 20, 5000, 'the spare slab to be put in');
      own.lbmaps.putMaglevTables(big(16, 1));
      assert.equal(own.lbmaps.tables.descriptor(16) >>> enums.xlb_limits.XLB_MAGLEV_SLAB_SHIFT, 2, 'the next table goes into the spare');
      assertFollows(own, 510, 16, '198.19.6.1');
    }));

  test('room reserved ahead of a large batch: its slabs go in with one update on the thread pool, and the batch then waits for none', () =>
    withOwnDatapath(async (own, st) => {
      const M = 1021;
      const count = 2000;
      const before = st();
      own.lbmaps.reserveMaglevTables(count, count * M);
      assert.equal(st().gracePeriods, before.gracePeriods, 'the reservation does not wait for the insertion');
      await waitFor(() => st().gracePeriods === before.gracePeriods + 1, 5000, 'one insertion for every new slab');
      const reserved = st();
      assert.ok(reserved.free >= count * (M + 1) + 2 ** 18, `room for the batch and a quarter slab (free: ${reserved.free})`);
      own.lbmaps.putMaglevTables(onesTables(100, count, M));
      const after = st();
      assert.equal(after.slabs, reserved.slabs, 'no slab made by the batch');
      assert.equal(after.gracePeriods, reserved.gracePeriods, 'no insertion by the batch');
      assert.equal(after.tables, count);
      // With room enough, a reservation makes nothing and waits for nothing.
      own.lbmaps.reserveMaglevTables(1, M);
      assert.deepEqual([st().slabs, st().gracePeriods], [after.slabs, after.gracePeriods]);
      assertFollows(own, 511, 100 + count - 1, '198.19.6.2', 'the last table of the batch, in a reserved slab, is followed');
    }));

  test('a batch right after its reservation, before the slabs are known to be in, is followed by the datapath', () =>
    withOwnDatapath(async (own, st) => {
      const M = 1021;
      const count = 1100; // more than a slab: two reserved slabs
      own.lbmaps.reserveMaglevTables(count, count * M);
      const reserved = st();
      // No await in between: put() finds the slabs in (the update stores them
      // before its grace period) or puts in itself what is not.
      own.lbmaps.putMaglevTables(onesTables(100, count, M));
      assert.equal(st().slabs, reserved.slabs, 'no slab made by the batch');
      assertFollows(own, 512, 100 + count - 1, '198.19.6.3', 'the last table, in the second reserved slab, is followed');
      await waitFor(() => st().gracePeriods >= reserved.gracePeriods + 1, 5000, 'the thread pool\'s update to return');
    }));

  test('a reserved slab whose update has not run yet is put in by the batch itself before any descriptor names it', () =>
    withOwnDatapath(async (own, st) => {
      // Hold the thread pool's update back until after the batch.
      const outer = (own.lbmaps.tables as unknown as { outer: { updateBatchAsync: (...a: unknown[]) => void } }).outer;
      const real = outer.updateBatchAsync.bind(outer);
      let held: (() => void) | undefined;
      outer.updateBatchAsync = (...a: unknown[]) => void (held = () => real(...a));
      const M = 1021;
      own.lbmaps.reserveMaglevTables(10, 10 * M);
      const reserved = st();
      own.lbmaps.putMaglevTables(onesTables(200, 10, M));
      assert.equal(st().gracePeriods, reserved.gracePeriods + 1, 'the batch inserted the slab itself');
      assertFollows(own, 513, 209, '198.19.6.4');
      // The late update puts the same map in the same slot again: nothing changes.
      held!();
      await waitFor(() => st().gracePeriods === reserved.gracePeriods + 2, 5000, 'the held update to return');
      assert.equal(parsePacket(own.ingress.testRun(toVip(513)).dataOut).ip!.dst, '198.19.6.4');
    }));

  test('a table larger than a slab is refused naming its service, and nothing of its batch is published', () => {
    const before = slots();
    const big = new Uint32Array(enums.xlb_limits.XLB_MAGLEV_SLAB_SLOTS);
    assert.throws(() => fresh.lbmaps.putMaglevTables([{ serviceId: 53, table: Uint32Array.of(1) }, { serviceId: 54, table: big }]), /service 54's table has 1048576 slots/);
    assert.equal(fresh.lbmaps.tables.descriptor(53), 0);
    assert.deepEqual(slots(), before);
    assert.throws(() => fresh.lbmaps.putMaglevTables([{ serviceId: 1 << 20, table: Uint32Array.of(1) }]), /service ID 1048576 is outside/);
  });
});

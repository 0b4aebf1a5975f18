/**
 * xlb_tc_pod_ingress (tc on the host side of pod interfaces: what a pod
 * sends) and xlb_tc_egress on the way back into the pod, under
 * BPF_PROG_TEST_RUN: per-packet translation of services for pods whose
 * connect() the socket hooks did not translate. The frontend's internal
 * service ID decides, conntrack keeps the backend, any backend (on this node
 * or another) is reached by DNAT alone, and replies get their source back.
 *
 * Run as root: node --import tsx --test test/datapath/tc_pod.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Datapath, XDP, TC_ACT_OK, buildObjects, dropsDelta, type FlowKey } from './harness.js';
import { predictBackend } from '../../src/maglev/flowhash.js';
import { enums } from '../../src/datapath/codec.js';
import { parsePacket, tcpPacket, udpPacket, verifyChecksums, PROTO, TCP_FLAG } from '../helpers/packet.js';

const TC_ACT_SHOT = 2;
const F = enums.xlb_service_flags;
const BF = enums.xlb_backend_flags;
const CT = enums.xlb_ct_flags;

const POD = '198.19.1.12';
/** The hairpin address the loader sets (a test address: it never leaves the pod's interface). */
const HAIRPIN = '198.18.255.1';
const TC_ACT_REDIRECT = 7;
const CLUSTER_IP = '198.18.128.10';
const VIP = '203.0.113.10';
/** Internal service 1 (TCP :80) and 2 (UDP :53); backend 1 on another node, 2 on this one. */
const BACKENDS = [
  { id: 1, addr: '198.19.2.11', port: 8080, proto: PROTO.TCP, flags: 0 },
  { id: 2, addr: '198.19.1.11', port: 8080, proto: PROTO.TCP, flags: BF.XLB_BE_F_LOCAL },
  { id: 11, addr: '198.19.2.11', port: 5353, proto: PROTO.UDP, flags: 0 },
  { id: 12, addr: '198.19.1.11', port: 5353, proto: PROTO.UDP, flags: BF.XLB_BE_F_LOCAL },
];
const TCP_TABLE = [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1];
const UDP_TABLE = [11, 12, 11, 12, 11, 12, 11, 12, 11, 12, 11, 12, 11];

let dp: Datapath;
let nextPort = 40000;
const byId = (id: number) => BACKENDS.find((b) => b.id === id)!;

before(() => {
  buildObjects();
  dp = Datapath.load({ nodeAddr: '198.18.0.11', hairpinAddr: HAIRPIN });
  for (const b of BACKENDS) dp.setBackend(b.id, b);
  dp.setTable(1, TCP_TABLE);
  dp.setTable(2, UDP_TABLE);
  dp.setTable(5, TCP_TABLE);
  // A ClusterIP: inside only. A VIP: service 5 from outside, service 1 from inside.
  dp.addFrontend(CLUSTER_IP, 80, PROTO.TCP, 0, 0, 1);
  dp.addFrontend(CLUSTER_IP, 53, PROTO.UDP, 0, 0, 2);
  dp.addFrontend(VIP, 80, PROTO.TCP, 5, F.XLB_SVC_F_EXTERNAL, 1);
  dp.addFrontend(CLUSTER_IP, 81, PROTO.TCP, 0, 0, 3); // no table
  dp.addFrontend(VIP, 81, PROTO.TCP, 5, F.XLB_SVC_F_EXTERNAL, 0); // outside only
  // Service 6: the pod itself is the only backend (hairpin).
  dp.setBackend(21, { addr: POD, port: 8080, proto: PROTO.TCP, flags: BF.XLB_BE_F_LOCAL });
  dp.setTable(6, [21, 21, 21]);
  dp.addFrontend(CLUSTER_IP, 82, PROTO.TCP, 0, 0, 6);
});

after(() => dp?.close());

function synFrom(sport: number, dst = CLUSTER_IP, dport = 80, flags: number = TCP_FLAG.SYN): Buffer {
  return tcpPacket({ ip: { src: POD, dst }, tcp: { sport, dport, flags } });
}

describe('xlb_tc_pod_ingress', () => {
  test('a SYN to a ClusterIP is DNATed to the Maglev pick, with valid checksums; conntrack and reverse NAT follow', () => {
    const sport = nextPort++;
    const flow: FlowKey = { saddr: POD, daddr: CLUSTER_IP, sport, dport: 80, proto: PROTO.TCP };
    const want = byId(predictBackend(Uint32Array.from(TCP_TABLE), flow));
    const r = dp.podIngress!.testRun(synFrom(sport));
    assert.equal(r.retval, TC_ACT_OK);
    const out = parsePacket(r.dataOut);
    assert.equal(out.ip!.dst, want.addr);
    assert.equal(out.l4!.dport, want.port);
    assert.equal(out.ip!.src, POD, 'no SNAT: pod addresses are routable');
    assert.deepEqual(verifyChecksums(r.dataOut), { ip: true, l4: true });
    const ct = dp.conntrack(flow)!;
    assert.equal(ct.service_id, 1);
    assert.equal(ct.flags & CT.XLB_CT_F_INTERNAL, CT.XLB_CT_F_INTERNAL);
    assert.equal(ct.flags & CT.XLB_CT_F_SNAT, 0);
    assert.ok(dp.rnat({ saddr: want.addr, daddr: POD, sport: want.port, dport: sport, proto: PROTO.TCP }));
  });

  test('the next packets of the flow keep their backend, on another node as on this one', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 8; i++) {
      const sport = nextPort++;
      const flow: FlowKey = { saddr: POD, daddr: CLUSTER_IP, sport, dport: 80, proto: PROTO.TCP };
      const first = parsePacket(dp.podIngress!.testRun(synFrom(sport)).dataOut);
      const id = dp.conntrack(flow)!.backend_id;
      seen.add(id);
      // The table changes: conntrack, not Maglev, decides for an established flow.
      dp.setTable(1, TCP_TABLE.map((x) => (x === 1 ? 2 : 1)));
      const next = parsePacket(dp.podIngress!.testRun(synFrom(sport, CLUSTER_IP, 80, TCP_FLAG.ACK)).dataOut);
      dp.setTable(1, TCP_TABLE);
      assert.equal(next.ip!.dst, first.ip!.dst);
      assert.equal(dp.conntrack(flow)!.flags & CT.XLB_CT_F_ESTABLISHED, CT.XLB_CT_F_ESTABLISHED);
    }
    assert.deepEqual([...seen].sort(), [1, 2], 'both the remote and the local backend were exercised');
  });

  test("the backend's reply leaves into the pod from the ClusterIP (xlb_tc_egress on the pod interface)", () => {
    const sport = nextPort++;
    const out = parsePacket(dp.podIngress!.testRun(synFrom(sport)).dataOut);
    const reply = tcpPacket({ ip: { src: out.ip!.dst, dst: POD }, tcp: { sport: out.l4!.dport, dport: sport, flags: TCP_FLAG.SYN | TCP_FLAG.ACK } });
    const r = dp.egress!.testRun(reply);
    assert.equal(r.retval, TC_ACT_OK);
    const back = parsePacket(r.dataOut);
    assert.equal(back.ip!.src, CLUSTER_IP);
    assert.equal(back.l4!.sport, 80);
    assert.deepEqual(verifyChecksums(r.dataOut), { ip: true, l4: true });
  });

  test('UDP to a ClusterIP is translated both ways too', () => {
    const sport = nextPort++;
    const flow: FlowKey = { saddr: POD, daddr: CLUSTER_IP, sport, dport: 53, proto: PROTO.UDP };
    const want = byId(predictBackend(Uint32Array.from(UDP_TABLE), flow));
    const r = dp.podIngress!.testRun(udpPacket({ ip: { src: POD, dst: CLUSTER_IP }, udp: { sport, dport: 53, payload: Buffer.from('query') } }));
    const out = parsePacket(r.dataOut);
    assert.equal(`${out.ip!.dst}:${out.l4!.dport}`, `${want.addr}:${want.port}`);
    const reply = dp.egress!.testRun(udpPacket({ ip: { src: want.addr, dst: POD }, udp: { sport: want.port, dport: sport, payload: Buffer.from('answer') } }));
    const back = parsePacket(reply.dataOut);
    assert.equal(`${back.ip!.src}:${back.l4!.sport}`, `${CLUSTER_IP}:53`);
    assert.deepEqual(verifyChecksums(reply.dataOut), { ip: true, l4: true });
  });

  test("a VIP reached from a pod takes the frontend's internal service ID, not its outside one", () => {
    const sport = nextPort++;
    dp.podIngress!.testRun(synFrom(sport, VIP, 80));
    assert.equal(dp.conntrack({ saddr: POD, daddr: VIP, sport, dport: 80, proto: PROTO.TCP })!.service_id, 1);
  });

  test('a service without backends drops (no_backend); a frontend not served inside and other traffic pass untouched', () => {
    const before = dp.drops();
    assert.equal(dp.podIngress!.testRun(synFrom(nextPort++, CLUSTER_IP, 81)).retval, TC_ACT_SHOT);
    assert.deepEqual(dropsDelta(before, dp.drops()), { XLB_DROP_NO_BACKEND: 1 });
    for (const pkt of [synFrom(nextPort++, VIP, 81), synFrom(nextPort++, '198.19.2.11', 8080)]) {
      const r = dp.podIngress!.testRun(pkt);
      assert.equal(r.retval, TC_ACT_OK);
      assert.deepEqual(r.dataOut, pkt);
    }
  });
});

describe('a pod that reaches itself through a service (hairpin)', () => {
  test('the SYN goes back into the pod from the hairpin address, its reply comes out restored to the ClusterIP', () => {
    const sport = nextPort++;
    const syn = tcpPacket({ eth: { src: '02:00:00:00:00:0a', dst: '02:00:00:00:00:0b' }, ip: { src: POD, dst: CLUSTER_IP }, tcp: { sport, dport: 82, flags: TCP_FLAG.SYN } });
    const r = dp.podIngress!.testRun(syn);
    assert.equal(r.retval, TC_ACT_REDIRECT, 'straight back out of the same interface');
    const out = parsePacket(r.dataOut);
    assert.deepEqual([out.ip!.src, out.l4!.sport, out.ip!.dst, out.l4!.dport], [HAIRPIN, sport, POD, 8080]);
    assert.deepEqual([out.eth.src, out.eth.dst], ['02:00:00:00:00:0b', '02:00:00:00:00:0a'], 'addressed to the pod');
    assert.deepEqual(verifyChecksums(r.dataOut), { ip: true, l4: true });
    const ct = dp.conntrack({ saddr: POD, daddr: CLUSTER_IP, sport, dport: 82, proto: PROTO.TCP })!;
    assert.equal(ct.flags & (CT.XLB_CT_F_HAIRPIN | CT.XLB_CT_F_INTERNAL), CT.XLB_CT_F_HAIRPIN | CT.XLB_CT_F_INTERNAL);

    // The pod answers the hairpin address (through its gateway, this interface).
    const reply = tcpPacket({ eth: { src: '02:00:00:00:00:0a', dst: '02:00:00:00:00:0b' }, ip: { src: POD, dst: HAIRPIN }, tcp: { sport: 8080, dport: sport, flags: TCP_FLAG.SYN | TCP_FLAG.ACK } });
    const back = dp.podIngress!.testRun(reply);
    assert.equal(back.retval, TC_ACT_REDIRECT);
    const p = parsePacket(back.dataOut);
    assert.deepEqual([p.ip!.src, p.l4!.sport, p.ip!.dst, p.l4!.dport], [CLUSTER_IP, 82, POD, sport]);
    assert.equal(p.eth.dst, '02:00:00:00:00:0a');
    assert.deepEqual(verifyChecksums(back.dataOut), { ip: true, l4: true });

    // The client's next packet takes the same way, from conntrack.
    const ack = dp.podIngress!.testRun(tcpPacket({ ip: { src: POD, dst: CLUSTER_IP }, tcp: { sport, dport: 82, flags: TCP_FLAG.ACK } }));
    assert.equal(ack.retval, TC_ACT_REDIRECT);
    assert.equal(parsePacket(ack.dataOut).ip!.src, HAIRPIN);
  });

  test('anything else to the hairpin address is left alone', () => {
    const pkt = tcpPacket({ ip: { src: POD, dst: HAIRPIN }, tcp: { sport: 8080, dport: nextPort++, flags: TCP_FLAG.ACK } });
    const r = dp.podIngress!.testRun(pkt);
    assert.equal(r.retval, TC_ACT_OK);
    assert.deepEqual(r.dataOut, pkt);
  });
});

describe('xlb_xdp_ingress and ClusterIPs', () => {
  test('a ClusterIP (no outside service ID) is not served from outside: XDP passes it untouched', () => {
    const pkt = tcpPacket({ ip: { src: '192.0.2.7', dst: CLUSTER_IP }, tcp: { sport: nextPort++, dport: 80, flags: TCP_FLAG.SYN } });
    const r = dp.ingress.testRun(pkt);
    assert.equal(r.retval, XDP.PASS);
    assert.deepEqual(r.dataOut, pkt);
  });
});

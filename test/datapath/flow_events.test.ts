/**
 * Flow events (xdp/include/xlb_events.h, src/datapath/flow_events.ts) from
 * the XDP program under BPF_PROG_TEST_RUN: a new flow placed and a packet
 * dropped each send one event with the packet's 5-tuple, the service, and
 * the backend or the drop reason; established packets send none; above the
 * rate per tick events are counted as suppressed; with events off the
 * program sends nothing.
 *
 * Run as root: node --import tsx --test test/datapath/flow_events.test.ts
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Datapath, XDP, BE_LOCAL, buildObjects } from './harness.js';
import { FlowEventReader, type FlowEvent } from '../../src/datapath/flow_events.js';
import { tcpPacket, udpPacket, PROTO, TCP_FLAG } from '../helpers/packet.js';
import { flowHash } from '../../src/maglev/index.js';
import { enums } from '../../src/datapath/codec.js';

const F = enums.xlb_service_flags;

const VIP = '203.0.113.10';
const WEB = { id: 1, port: 80, backend: { id: 1, addr: '198.19.1.1', port: 8080 } };
const EMPTY = { id: 2, port: 81 };
const open: Array<{ dp: Datapath; reader: FlowEventReader }> = [];
after(() => {
  for (const o of open) {
    o.reader.close();
    o.dp.close();
  }
});

function load(eventsPerTick?: number): { dp: Datapath; reader: FlowEventReader; events: FlowEvent[] } {
  buildObjects();
  const dp = Datapath.load({ nodeAddr: '198.18.0.11', eventsPerTick, withTc: false });
  dp.setBackend(WEB.backend.id, { ...WEB.backend, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.addFrontend(VIP, WEB.port, PROTO.TCP, WEB.id);
  dp.setTable(WEB.id, [1, 1, 1]);
  dp.addFrontend(VIP, EMPTY.port, PROTO.TCP, EMPTY.id); // no table: no backend
  const events: FlowEvent[] = [];
  const reader = new FlowEventReader({ events: dp.map('xlb_events'), limit: dp.map('xlb_event_limit') }, (e) => events.push(e));
  open.push({ dp, reader });
  return { dp, reader, events };
}

/** A pod on this node, and ClusterIP frontends of internal service 3 (web's backend) and 4 (no table). */
const POD = '198.19.1.12';
const CLUSTER_IP = '198.18.128.10';

const syn = (sport: number, dport = WEB.port) => tcpPacket({ ip: { src: '192.0.2.7', dst: VIP }, tcp: { sport, dport, flags: TCP_FLAG.SYN } });
const ack = (sport: number) => tcpPacket({ ip: { src: '192.0.2.7', dst: VIP }, tcp: { sport, dport: WEB.port, flags: TCP_FLAG.ACK } });

test('a new flow and a drop each send one event; an established packet sends none', () => {
  const { dp, reader, events } = load(100);
  assert.equal(dp.ingress.testRun(syn(40001)).retval, XDP.PASS);
  assert.equal(dp.ingress.testRun(ack(40001)).retval, XDP.PASS, 'established');
  assert.equal(dp.ingress.testRun(syn(40002, EMPTY.port)).retval, XDP.DROP, 'no backend');
  assert.equal(reader.poll(), 2);
  const [placed, dropped] = events;
  assert.deepEqual(
    { type: placed.type, source: placed.source, destination: placed.destination, protocol: placed.protocol, serviceId: placed.serviceId, backend: placed.backend, point: placed.point, tcpFlags: placed.tcpFlags },
    { type: 'new-flow', source: { ip: '192.0.2.7', port: 40001 }, destination: { ip: VIP, port: WEB.port }, protocol: 'TCP', serviceId: WEB.id, backend: { ip: WEB.backend.addr, port: WEB.backend.port }, point: 'xdp', tcpFlags: TCP_FLAG.SYN },
  );
  assert.deepEqual({ type: dropped.type, dropReason: dropped.dropReason, serviceId: dropped.serviceId, destination: dropped.destination }, { type: 'drop', dropReason: 'no_backend', serviceId: EMPTY.id, destination: { ip: VIP, port: EMPTY.port } });
  assert.ok(dropped.monotonicNs >= placed.monotonicNs, 'in order, with monotonic times');
  const hash = flowHash({ saddr: '192.0.2.7', daddr: VIP, sport: 40001, dport: WEB.port, proto: PROTO.TCP });
  assert.deepEqual(placed.selection, { by: 'maglev', hash }, 'placed by Maglev, with the flow hash the agent computes');
  assert.equal(dropped.selection, undefined);
  assert.equal(reader.poll(), 0, 'each event once');
});

test('the client’s first FIN or RST sends one flow-end event with the flow’s backend; later ones and the rest of the close send none', () => {
  const { dp, reader, events } = load(100);
  const pkt = (sport: number, flags: number) => tcpPacket({ ip: { src: '192.0.2.7', dst: VIP }, tcp: { sport, dport: WEB.port, flags } });
  dp.ingress.testRun(syn(44001));
  dp.ingress.testRun(pkt(44001, TCP_FLAG.ACK));
  dp.ingress.testRun(pkt(44001, TCP_FLAG.FIN | TCP_FLAG.ACK));
  dp.ingress.testRun(pkt(44001, TCP_FLAG.FIN | TCP_FLAG.ACK)); // a retransmitted FIN
  dp.ingress.testRun(pkt(44001, TCP_FLAG.ACK)); // the last ACK
  dp.ingress.testRun(syn(44002));
  dp.ingress.testRun(pkt(44002, TCP_FLAG.RST));
  reader.poll();
  assert.deepEqual(
    events.map((e) => [e.type, e.source.port, e.tcpFlags, e.backend?.ip]),
    [
      ['new-flow', 44001, TCP_FLAG.SYN, WEB.backend.addr],
      ['flow-end', 44001, TCP_FLAG.FIN | TCP_FLAG.ACK, WEB.backend.addr],
      ['new-flow', 44002, TCP_FLAG.SYN, WEB.backend.addr],
      ['flow-end', 44002, TCP_FLAG.RST, WEB.backend.addr],
    ],
  );
});

test('under ClientIP affinity, a client’s next flow says it was placed by affinity', () => {
  const { dp, reader, events } = load(100);
  const STICKY = { id: 3, port: 82 };
  dp.addFrontend(VIP, STICKY.port, PROTO.TCP, STICKY.id, F.XLB_SVC_F_EXTERNAL | F.XLB_SVC_F_AFFINITY, 0, 600);
  dp.setTable(STICKY.id, [1, 1, 1]);
  dp.ingress.testRun(syn(45001, STICKY.port));
  dp.ingress.testRun(syn(45002, STICKY.port));
  reader.poll();
  assert.deepEqual(events.map((e) => e.selection?.by), ['maglev', 'affinity'], 'the first flow by Maglev, the next by affinity');
});

test('above the rate per tick, events are counted as suppressed, not sent', () => {
  const { dp, reader, events } = load(3);
  for (let i = 0; i < 10; i++) dp.ingress.testRun(udpPacket({ ip: { src: '192.0.2.8', dst: VIP }, udp: { sport: 41000 + i, dport: 9 } }));
  for (let i = 0; i < 10; i++) dp.ingress.testRun(syn(42000 + i));
  reader.poll();
  // A tick may end during the run: then up to twice the rate.
  assert.ok(events.length >= 3 && events.length <= 6, `${events.length} events sent at 3 a tick`);
  assert.equal(BigInt(events.length) + reader.suppressed(), 10n, 'every new flow was sent or counted');
});

test('with events off the program sends none', () => {
  const { dp, reader, events } = load(undefined);
  dp.ingress.testRun(syn(43000));
  dp.ingress.testRun(syn(43001, EMPTY.port));
  assert.equal(reader.poll(), 0);
  assert.deepEqual([events.length, reader.suppressed()], [0, 0n]);
});

test('tc on a pod interface sends the same events: a pod’s new flow to a ClusterIP and its drop, at the tc-pod point', () => {
  buildObjects();
  const dp = Datapath.load({ nodeAddr: '198.18.0.11', eventsPerTick: 100 });
  const events: FlowEvent[] = [];
  const reader = new FlowEventReader({ events: dp.map('xlb_events'), limit: dp.map('xlb_event_limit') }, (e) => events.push(e));
  open.push({ dp, reader });
  dp.setBackend(WEB.backend.id, { ...WEB.backend, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.setTable(3, [1, 1, 1]);
  dp.addFrontend(CLUSTER_IP, 80, PROTO.TCP, 0, 0, 3);
  dp.addFrontend(CLUSTER_IP, 81, PROTO.TCP, 0, 0, 4);
  const fromPod = (sport: number, dport: number, flags: number) => tcpPacket({ ip: { src: POD, dst: CLUSTER_IP }, tcp: { sport, dport, flags } });
  assert.equal(dp.podIngress!.testRun(fromPod(41000, 80, TCP_FLAG.SYN)).retval, 0, 'TC_ACT_OK: DNATed');
  assert.equal(dp.podIngress!.testRun(fromPod(41000, 80, TCP_FLAG.ACK)).retval, 0, 'established');
  assert.equal(dp.podIngress!.testRun(fromPod(41001, 81, TCP_FLAG.SYN)).retval, 2, 'TC_ACT_SHOT: no backend');
  assert.equal(reader.poll(), 2, 'the new flow and the drop; the established packet sends none');
  const [placed, dropped] = events;
  assert.deepEqual(
    { type: placed.type, point: placed.point, source: placed.source, destination: placed.destination, serviceId: placed.serviceId, backend: placed.backend },
    { type: 'new-flow', point: 'tc-pod', source: { ip: POD, port: 41000 }, destination: { ip: CLUSTER_IP, port: 80 }, serviceId: 3, backend: { ip: WEB.backend.addr, port: WEB.backend.port } },
  );
  assert.deepEqual({ type: dropped.type, point: dropped.point, dropReason: dropped.dropReason, serviceId: dropped.serviceId }, { type: 'drop', point: 'tc-pod', dropReason: 'no_backend', serviceId: 4 });
});

/**
 * Flows for `xlb observe` (src/flows/flows.ts): datapath events enriched
 * with wall-clock time, verdict, service and pod names (a pod that left is
 * remembered a while), kept in a ring of the last N, filtered as Hubble's
 * filters do, and printed one line each.
 */
import { eventRingBytes } from '../../src/datapath/flow_events.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { enrich, formatFlow, FlowBuffer, PodDirectory, POD_MEMORY_MS, type Flow } from '../../src/flows/flows.js';
import type { FlowEvent } from '../../src/datapath/flow_events.js';
import { emptyClusterState, type ClusterState, type EndpointSliceModel } from '../../src/model/types.js';

function stateWith(pods: Array<{ ip: string; name: string; node: string }>): ClusterState {
  const state = emptyClusterState();
  const slice: EndpointSliceModel = {
    namespace: 'default',
    name: 'web-abc',
    serviceName: 'web',
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    endpoints: pods.map((p) => ({ addresses: [p.ip], ready: true, serving: true, terminating: false, nodeName: p.node, targetName: p.name })),
  };
  state.endpointSlices.set('default/web-abc', slice);
  return state;
}

const event = (over: Partial<FlowEvent> = {}): FlowEvent => ({
  monotonicNs: 5_000_000_000n,
  type: 'new-flow',
  protocol: 'TCP',
  source: { ip: '198.19.1.11', port: 40000 },
  destination: { ip: '192.0.2.10', port: 80 },
  tcpFlags: 0x02,
  serviceId: 7,
  backend: { ip: '198.19.2.12', port: 8080 },
  point: 'xdp',
  ...over,
});

test('an event becomes a flow with wall-clock time, verdict, service, pods and TCP flags', () => {
  const pods = new PodDirectory();
  pods.update(stateWith([{ ip: '198.19.1.11', name: 'client-0', node: 'n1' }, { ip: '198.19.2.12', name: 'web-1', node: 'n2' }]), 0);
  // Monotonic 5 s at wall clock 2026-12-06T12:00:05.000Z.
  const wallOffsetNs = BigInt(Date.parse('2026-12-06T12:00:00.000Z')) * 1_000_000n;
  const ctx = { node: 'n1', wallOffsetNs, serviceOf: (id: number) => (id === 7 ? 'default/web:http' : undefined), pods };
  const f = enrich(event({ snatPort: 61234 }), ctx);
  assert.deepEqual(f, {
    time: '2026-12-06T12:00:05.000Z',
    timeMs: Date.parse('2026-12-06T12:00:05.000Z'),
    node: 'n1',
    verdict: 'FORWARDED',
    protocol: 'TCP',
    source: { ip: '198.19.1.11', port: 40000, pod: 'default/client-0' },
    destination: { ip: '192.0.2.10', port: 80, service: 'default/web:http' },
    backend: { ip: '198.19.2.12', port: 8080, pod: 'default/web-1', node: 'n2' },
    snatPort: 61234,
    tcpFlags: ['SYN'],
    point: 'xdp',
  });
  assert.equal(formatFlow(f), 'Dec  6 12:00:05.000 [n1]: 198.19.1.11:40000 (default/client-0) -> 192.0.2.10:80 (default/web:http) to 198.19.2.12:8080 (default/web-1) via SNAT port 61234 FORWARDED (TCP Flags: SYN)');
  const drop = enrich(event({ type: 'drop', dropReason: 'no_backend', backend: undefined, serviceId: 9, protocol: 'UDP', tcpFlags: 0 }), ctx);
  assert.deepEqual([drop.verdict, drop.dropReason, drop.destination.service, drop.backend, drop.tcpFlags], ['DROPPED', 'no_backend', undefined, undefined, []]);
  assert.match(formatFlow(drop), /-> 192\.0\.2\.10:80 DROPPED \(no_backend\) \(UDP\)$/);
  const close = enrich(event({ type: 'flow-end', tcpFlags: 0x11 }), ctx);
  assert.deepEqual([close.verdict, close.closed, close.backend?.pod, close.tcpFlags], ['FORWARDED', true, 'default/web-1', ['ACK', 'FIN']]);
  assert.match(formatFlow(close), /to 198\.19\.2\.12:8080 \(default\/web-1\) FORWARDED, closed \(TCP Flags: ACK, FIN\)$/);
  const sock = enrich(event({ point: 'sock', source: { ip: '0.0.0.0', port: 0 } }), ctx);
  assert.match(formatFlow(sock), /\]: socket -> 192\.0\.2\.10:80/, 'a connect() has no source yet');
  // How the backend was chosen: the Maglev slot is the hash modulo the programmed table's size.
  const withM = { ...ctx, tableSizeOf: (id: number) => (id === 7 ? 251 : undefined) };
  const byMaglev = enrich(event({ selection: { by: 'maglev', hash: 1000 } }), withM);
  assert.deepEqual(byMaglev.selection, { by: 'maglev', slot: 1000 % 251 });
  assert.match(formatFlow(byMaglev), /\(default\/web-1\) by Maglev slot 247 FORWARDED/);
  assert.deepEqual(enrich(event({ selection: { by: 'maglev', hash: 1000 } }), ctx).selection, { by: 'maglev' }, 'no table known: no slot');
  const byAffinity = enrich(event({ selection: { by: 'affinity', hash: 1000 } }), withM);
  assert.match(formatFlow(byAffinity), /\(default\/web-1\) by affinity FORWARDED/);
});

test('the events ring holds two reads of every CPU at the full rate, a power of two from 16 KiB', () => {
  assert.equal(eventRingBytes(1000, 2), 32 * 1024, '2 CPUs × 1,000/s × 0.2 s × 48 B = 19,200 B');
  assert.equal(eventRingBytes(0, 64), 16 * 1024);
  assert.equal(eventRingBytes(1000, 64), 1024 * 1024, '614,400 B');
  assert.equal(eventRingBytes(10_000_000, 512), 64 * 1024 * 1024, 'at most 64 MiB');
});

test('a pod that leaves the model keeps its name for a while, then loses it', () => {
  const pods = new PodDirectory();
  pods.update(stateWith([{ ip: '198.19.2.12', name: 'web-1', node: 'n2' }]), 1000);
  pods.update(stateWith([]), 2000);
  assert.equal(pods.lookup('198.19.2.12')?.pod, 'default/web-1', 'late events still get a name');
  pods.update(stateWith([]), 2000 + POD_MEMORY_MS + 1);
  assert.equal(pods.lookup('198.19.2.12'), undefined);
});

test('the buffer keeps the last N, oldest first, and filters as hubble observe does', () => {
  const b = new FlowBuffer(4);
  const flow = (i: number, over: Partial<Flow> = {}): Flow => ({
    time: new Date(i).toISOString(),
    timeMs: i,
    node: 'n1',
    verdict: 'FORWARDED',
    protocol: 'TCP',
    source: { ip: `198.18.1.${i}`, port: 40000 + i },
    destination: { ip: '192.0.2.10', port: 80, service: 'default/web:http' },
    tcpFlags: ['SYN'],
    point: 'xdp',
    ...over,
  });
  for (let i = 1; i <= 6; i++) b.add(flow(i, i === 5 ? { verdict: 'DROPPED', dropReason: 'no_backend', protocol: 'UDP', destination: { ip: '192.0.2.11', port: 53 } } : {}));
  const ids = (q: Parameters<FlowBuffer['query']>[0]) => b.query(q).map((f) => f.timeMs);
  assert.deepEqual(ids({}), [3, 4, 5, 6], 'the ring kept the last four');
  assert.deepEqual(ids({ last: 2 }), [5, 6]);
  assert.deepEqual(ids({ sinceMs: 4 }), [4, 5, 6]);
  assert.deepEqual(ids({ verdict: 'DROPPED' }), [5]);
  assert.deepEqual(ids({ protocol: 'TCP', last: 1 }), [6]);
  assert.deepEqual(ids({ toIp: '192.0.2.11' }), [5]);
  assert.deepEqual(ids({ fromIp: '198.18.1.3' }), [3]);
  assert.deepEqual(ids({ toService: 'default/web' }), [3, 4, 6]);
  assert.deepEqual(ids({ port: 53 }), [5]);
  assert.deepEqual(ids({ port: 40004 }), [4], 'a source port matches too');
  assert.deepEqual(ids({ node: 'n1' }), [3, 4, 5, 6]);
  assert.deepEqual(ids({ node: 'n2' }), []);
  assert.equal(b.size, 4);
  assert.equal(b.seen, 6, 'flows seen, the overwritten ones included');
  assert.deepEqual(b.all().map((f) => f.timeMs), [3, 4, 5, 6]);
  const heard: number[] = [];
  const stop = b.subscribe((f) => heard.push(f.timeMs));
  b.add(flow(7));
  stop();
  b.add(flow(8));
  assert.deepEqual(heard, [7], 'a listener hears flows added until it stops');
});

/**
 * Hubble's Observer API over xlb's flows (src/hubble): a generic gRPC client
 * built from api/hubble/*.proto alone reads flows, node and status; filters
 * as Hubble's (whitelist, blacklist, number, first, since/until, follow);
 * bad filters are refused naming the field and value; a client that goes
 * away leaves no subscription; a client that does not read is told how many
 * flows it lost instead of making the agent buffer them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { FlowBuffer, type Flow } from '../../src/flows/flows.js';
import { startHubble, STREAM_QUEUE_MAX, type HubbleServer } from '../../src/hubble/observer.js';
import { compileFilter, FilterError, toHubbleFlow } from '../../src/hubble/flow.js';
import { hubbleClient, type HubbleResponse } from '../helpers/hubble.js';
import { waitFor } from '../../src/util/wait.js';

const T0 = Date.parse('2026-12-06T12:00:00.000Z');

/** Flow `i`: from 198.18.1.2:(20000+i) to the web VIP, placed on a pod; every 5th dropped for its source range. */
function flow(i: number, over: Partial<Flow> = {}): Flow {
  const dropped = i % 5 === 4;
  const f: Flow = {
    time: new Date(T0 + i * 1000).toISOString(),
    timeMs: T0 + i * 1000,
    node: i % 2 ? 'node2' : 'node1',
    verdict: dropped ? 'DROPPED' : 'FORWARDED',
    protocol: 'TCP',
    source: { ip: '198.18.1.2', port: 20000 + i },
    destination: { ip: '192.0.2.10', port: 80, service: 'default/web:http' },
    tcpFlags: ['SYN'],
    point: 'xdp',
  };
  if (dropped) f.dropReason = 'source_range';
  else f.backend = { ip: `198.19.1.${10 + (i % 3)}`, port: 8080, pod: `default/web-${i % 3}`, node: 'node1' };
  return { ...f, ...over };
}

let buffer: FlowBuffer;
let server: HubbleServer;
let listeners = 0;
let client: ReturnType<typeof hubbleClient>;

before(async () => {
  buffer = new FlowBuffer(64);
  for (let i = 0; i < 20; i++) buffer.add(flow(i));
  server = await startHubble(
    {
      node: 'node1',
      all: () => buffer.all(),
      capacity: buffer.capacity,
      seen: () => buffer.seen,
      subscribe: (l) => {
        listeners++;
        const stop = buffer.subscribe(l);
        return () => {
          listeners--;
          stop();
        };
      },
    },
    '127.0.0.1:0',
  );
  client = hubbleClient(server.address);
});

after(() => {
  client?.close();
  server?.close();
});

const ports = (rs: HubbleResponse[]) => rs.filter((r) => r.flow).map((r) => r.flow!.l4.TCP.source_port as number);

describe('hubble observer API: status and nodes', () => {
  test('ServerStatus counts the flows held, the capacity and the flows seen', async () => {
    const s = await client.serverStatus();
    assert.equal(s.num_flows, 20);
    assert.equal(s.max_flows, 64);
    assert.equal(s.seen_flows, 20);
    assert.equal(s.num_connected_nodes.value, 1);
    assert.match(s.version, /^xlb\//);
    assert.ok(s.uptime_ns >= 0, `uptime ${s.uptime_ns}`);
  });

  test('GetNodes names this node, connected, with its address and counts', async () => {
    const { nodes } = await client.getNodes();
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0].name, 'node1');
    assert.equal(nodes[0].state, 'NODE_CONNECTED');
    assert.equal(nodes[0].address, server.address);
    assert.equal(nodes[0].num_flows, 20);
  });
});

describe('hubble observer API: GetFlows', () => {
  test('a flow in Hubble shape: time, verdict, IP, l4 with flags, pods, service, node, observation point', async () => {
    const [r] = await client.getFlows({ number: 1, whitelist: [{ source_port: ['20000'] }] });
    const f = r.flow!;
    assert.equal(r.node_name, 'node1');
    assert.deepEqual(r.time, { seconds: T0 / 1000, nanos: 0 });
    assert.equal(f.verdict, 'FORWARDED');
    assert.deepEqual(f.IP, { source: '198.18.1.2', destination: '192.0.2.10', ipVersion: 'IPv4', encrypted: false });
    assert.equal(f.l4.TCP.destination_port, 80);
    assert.equal(f.l4.TCP.flags.SYN, true);
    assert.equal(f.l4.TCP.flags.ACK, false);
    assert.deepEqual({ ns: f.destination.namespace, pod: f.destination.pod_name }, { ns: 'default', pod: 'web-0' });
    assert.deepEqual(f.destination_service, { name: 'web', namespace: 'default' });
    assert.equal(f.Type, 'L3_L4');
    assert.equal(f.trace_observation_point, 'FROM_NETWORK');
    assert.equal(f.traffic_direction, 'INGRESS');
    assert.deepEqual(f.event_type, { type: 4, sub_type: 0 });
  });

  test('a drop carries Hubble’s drop reason (and the deprecated number)', async () => {
    const rs = await client.getFlows({ whitelist: [{ verdict: ['DROPPED'] }] });
    assert.deepEqual(ports(rs), [20004, 20009, 20014, 20019]);
    const f = rs[0].flow!;
    assert.equal(f.verdict, 'DROPPED');
    assert.equal(f.drop_reason_desc, 'DENIED_BY_LB_SRC_RANGE_CHECK');
    assert.equal(f.drop_reason, 177);
    assert.deepEqual(f.event_type, { type: 1, sub_type: 177 });
  });

  test('number: the last N, oldest first; first: the earliest N; 0: all held', async () => {
    assert.deepEqual(ports(await client.getFlows({ number: 3 })), [20017, 20018, 20019]);
    assert.deepEqual(ports(await client.getFlows({ number: 3, first: true })), [20000, 20001, 20002]);
    assert.equal(ports(await client.getFlows({})).length, 20);
  });

  test('since and until select by time', async () => {
    const ts = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: 0 });
    assert.deepEqual(ports(await client.getFlows({ since: ts(T0 + 17_000) })), [20017, 20018, 20019]);
    assert.deepEqual(ports(await client.getFlows({ since: ts(T0 + 3_000), until: ts(T0 + 5_000) })), [20003, 20004, 20005]);
  });

  test('whitelist: one filter must match, every field of it; blacklist: none may', async () => {
    const p = (w: object[], b: object[] = []) => client.getFlows({ whitelist: w, blacklist: b }).then(ports);
    assert.deepEqual(await p([{ destination_pod: ['default/web-1'] }]), [20001, 20007, 20010, 20013, 20016]);
    assert.deepEqual(await p([{ destination_pod: ['web-1'], node_name: ['node2'] }]), [20001, 20007, 20013]);
    assert.deepEqual(await p([{ destination_pod: ['web-1'] }, { source_port: ['20000'] }]), [20000, 20001, 20007, 20010, 20013, 20016]);
    assert.deepEqual(await p([{ destination_pod: ['default/'] }], [{ node_name: ['node*'], source_port: ['20002', '20003'] }]).then((x) => x.slice(0, 3)), [20000, 20001, 20005]);
    assert.equal((await p([{ destination_ip: ['198.19.1.0/24'] }])).length, 16, 'destination_ip matches the backend too');
    assert.equal((await p([{ destination_ip: ['192.0.2.10'] }])).length, 20, 'and the frontend the client sent to');
    assert.equal((await p([{ source_ip: ['198.18.0.0/15'], protocol: ['udp'] }])).length, 0);
    assert.equal((await p([{ destination_service: ['default/web'] }])).length, 20);
    assert.equal((await p([{ destination_service: ['kube-system/'] }])).length, 0);
    assert.equal((await p([{ tcp_flags: [{ SYN: true }] }])).length, 20);
    assert.equal((await p([{ tcp_flags: [{ SYN: true, ACK: true }] }])).length, 0);
    assert.equal((await p([{ event_type: [{ type: 1 }] }])).length, 4);
    assert.equal((await p([{ node_name: ['default/node1'] }])).length, 10);
  });

  test('a filter that does not parse, or names what xlb’s flows do not carry, is refused naming the field and value', async () => {
    const refused = async (filter: object, pattern: RegExp) => {
      const e = await client.getFlows({ whitelist: [filter] }).then(
        () => undefined,
        (err: grpc.ServiceError) => err,
      );
      assert.ok(e, `${JSON.stringify(filter)} was accepted`);
      assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
      assert.match(e.details, pattern);
    };
    await refused({ source_ip: ['198.18.1.300'] }, /source_ip: "198\.18\.1\.300" is not an IPv4 address or CIDR/);
    await refused({ destination_ip: ['10.0.0.0/33'] }, /destination_ip: "10\.0\.0\.0\/33"/);
    await refused({ destination_port: ['http'] }, /destination_port: "http" is not a port/);
    await refused({ http_status_code: ['5+'] }, /http_status_code is not supported by xlb/);
    await refused({ source_label: ['app=web'] }, /source_label is not supported/);
    // The server is still serving.
    assert.equal((await client.serverStatus()).num_flows, 20);
  });

  test('follow: the flows held, then each new one as it is added; a client that cancels leaves no subscription', async () => {
    const before = listeners;
    const got: HubbleResponse[] = [];
    const call = client.stream({ number: 2, follow: true, whitelist: [{ verdict: ['FORWARDED'] }] });
    call.on('data', (r: HubbleResponse) => got.push(r));
    call.on('error', () => undefined);
    await waitFor(() => got.length === 2 && listeners === before + 1, 5000, 'the two flows held, and the subscription');
    buffer.add(flow(100));
    buffer.add(flow(104)); // dropped: filtered out
    buffer.add(flow(101));
    await waitFor(() => got.length === 4, 5000, 'the two new forwarded flows');
    assert.deepEqual(ports(got), [20017, 20018, 20100, 20101]);
    call.cancel();
    await waitFor(() => listeners === before, 5000, 'the subscription to be removed once the client cancelled');
  });

  test('a client that does not read loses flows, counted in lost_events, instead of the agent buffering them', async (t) => {
    const before = listeners;
    const got: HubbleResponse[] = [];
    const call = client.stream({ follow: true, whitelist: [{ source_ip: ['198.18.9.9'] }] });
    call.on('error', () => undefined);
    await waitFor(() => listeners === before + 1, 5000, 'the subscription');
    call.pause();
    const total = 60_000;
    for (let i = 0; i < total; i++) buffer.add(flow(i, { source: { ip: '198.18.9.9', port: i % 65536 } }));
    call.on('data', (r: HubbleResponse) => got.push(r));
    call.resume();
    await waitFor(() => got.some((r) => r.lost_events), 20000, 'a lost_events message once the client reads again');
    const lost = got.filter((r) => r.lost_events).reduce((n, r) => n + Number(r.lost_events!.num_events_lost), 0);
    const flows = got.filter((r) => r.flow).length;
    assert.equal(got.find((r) => r.lost_events)!.lost_events!.source, 'OBSERVER_EVENTS_QUEUE');
    assert.ok(lost > 0, 'some flows were counted as lost');
    assert.ok(flows + lost <= total, `${flows} received + ${lost} lost ≤ ${total}`);
    await waitFor(() => got.filter((r) => r.flow).length + lost === total, 20000, 'every flow either received or counted lost');
    t.diagnostic(`${total - lost} of ${total} flows kept for the paused client`);
    assert.ok(total - lost <= STREAM_QUEUE_MAX + 2_000, `at most the queue and what gRPC holds were kept (${total - lost} kept)`);
    call.cancel();
    await waitFor(() => listeners === before, 5000, 'the subscription to be removed');
  });
});

describe('hubble flow filters, without the server', () => {
  test('toHubbleFlow of a UDP flow seen by a socket hook: Type SOCK, UDP ports, no flags', () => {
    const f = toHubbleFlow(flow(0, { protocol: 'UDP', tcpFlags: [], point: 'sock' }));
    assert.deepEqual(f.l4, { UDP: { source_port: 20000, destination_port: 80 } });
    assert.equal(f.Type, 'SOCK');
    assert.equal(f.sock_xlate_point, 'SOCK_XLATE_POINT_POST_DIRECTION_FWD');
    assert.deepEqual(f.event_type, { type: 7, sub_type: 0 });
  });

  test('an empty filter matches every flow; a source_service filter none (xlb’s sources are clients, not services)', () => {
    assert.equal(compileFilter({})(flow(1)), true);
    assert.equal(compileFilter({ source_service: ['default/web'] })(flow(1)), false);
    assert.throws(() => compileFilter({ dns_query: ['.*'] }), FilterError);
  });
});

describe('hubble observer API: the flows rate (last: it adds flows)', () => {
  test('ServerStatus gives the flows a second over the last minute, counted as flows are added', async () => {
    const before = (await client.serverStatus()).flows_rate as number;
    for (let i = 0; i < 6; i++) buffer.add(flow(200 + i));
    const after = (await client.serverStatus()).flows_rate as number;
    assert.ok(Math.abs(after - before - 6 / 60) < 1e-9, `rate ${before} → ${after}: six more flows in the minute`);
  });
});

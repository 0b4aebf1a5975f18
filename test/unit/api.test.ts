/**
 * The agent's HTTP API through fastify.inject(), and the agent's start-up
 * errors, against in-memory maps (no root needed).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { buildApi, buildMetricsApi, listenOptions } from '../../src/api/server.js';
import { exampleAgentConfig, startExampleAgent } from '../helpers/agent.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import { waitFor } from '../../src/util/wait.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-api-'));
let agent: Agent;

const config = (extra: Record<string, unknown> = {}) => exampleAgentConfig(dir, extra);

before(async () => {
  agent = await startExampleAgent(dir);
});

after(async () => {
  await agent.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('healthz and readyz report the agent state', async () => {
  const app = buildApi(agent);
  assert.equal((await app.inject('/healthz')).statusCode, 200);
  const ready = await app.inject('/readyz');
  assert.equal(ready.statusCode, 200);
  assert.deepEqual(ready.json(), { status: 'ready' });
});

test('/v1/services lists every programmed service port', async () => {
  const r = (await buildApi(agent).inject('/v1/services')).json() as { services: Array<{ namespace: string; name: string; protocol: string; readyBackends: number }> };
  const names = r.services.map((s) => `${s.namespace}/${s.name}/${s.protocol}`).sort();
  assert.deepEqual(names, ['default/dns-echo/UDP', 'default/mixed/TCP', 'default/mixed/UDP', 'default/web-nodeport/TCP', 'default/web/TCP', 'kube-system/kube-dns/TCP', 'kube-system/kube-dns/UDP']);
  // Four pods serve each lab service; the cluster DNS has one server per node.
  assert.ok(r.services.every((s) => s.readyBackends === (s.namespace === 'kube-system' ? 2 : 4)));
});

test('/v1/services/:namespace/:name shows backends, table size and shares', async () => {
  const r = (await buildApi(agent).inject('/v1/services/default/web')).json() as { ports: Array<{ tableSize: number; backends: Array<{ share: number; state: string; local: boolean }> }> };
  assert.equal(r.ports.length, 1);
  assert.equal(r.ports[0].tableSize, 509, 'smallest listed prime >= 100 x 4 backends');
  assert.equal(r.ports[0].backends.filter((b) => b.local).length, 2);
  assert.ok(r.ports[0].backends.every((b) => b.state === 'ready' && b.share > 0.2 && b.share < 0.3));
});

test('an unknown service is a 404 naming it', async () => {
  const res = await buildApi(agent).inject('/v1/services/default/nope');
  assert.equal(res.statusCode, 404);
  assert.deepEqual(res.json(), { error: 'service_not_found', message: 'service default/nope is not programmed' });
});

test('flow prediction names a backend; a malformed flow is a 400 naming the part', async () => {
  const app = buildApi(agent);
  const ok = await app.inject('/v1/services/default/web/flow?flow=198.18.1.2:40000,192.0.2.10:80,tcp');
  assert.equal(ok.statusCode, 200);
  const body = ok.json() as { backend: { addr: string }; tableSize: number; slot: number };
  assert.match(body.backend.addr, /^198\.19\.[12]\.1[12]$/);
  assert.ok(body.slot < body.tableSize);
  const bad = await app.inject('/v1/services/default/web/flow?flow=198.18.1.2:99999,192.0.2.10:80,tcp');
  assert.equal(bad.statusCode, 400);
  assert.match((bad.json() as { message: string }).message, /flow source: port must be a decimal number 1\.\.65535/);
  const proto = await app.inject('/v1/services/default/web/flow?flow=198.18.1.2:1,192.0.2.10:80,icmp');
  assert.match((proto.json() as { message: string }).message, /flow protocol/);
});

test('queries are parsed strictly: a repeated key, a port with a sign, exponent, hex prefix or blank, an unknown parameter are 400s naming it', async () => {
  const app = buildApi(agent);
  const get = async (url: string) => {
    const res = await app.inject(url);
    return { status: res.statusCode, body: res.json() as { error: string; message: string } };
  };
  const twice = await get('/v1/services/default/web/flow?flow=a&flow=b');
  assert.equal(twice.status, 400);
  assert.equal(twice.body.error, 'bad_query');
  assert.match(twice.body.message, /flow given 2 times/);
  for (const port of ['1e3', '0x50', '%2080', '', '+80', '-1', '80.0', '65536', '0']) {
    const r = await get(`/v1/services/default/web/flow?flow=198.18.1.2:${port},192.0.2.10:80,tcp`);
    assert.equal(r.status, 400, `source port ${JSON.stringify(decodeURIComponent(port))}`);
    assert.equal(r.body.error, 'bad_flow');
    assert.match(r.body.message, /flow source: port must be a decimal number 1\.\.65535/);
  }
  const unknown = await get('/v1/services/default/web/flow?flow=198.18.1.2:1,192.0.2.10:80,tcp&verbose=1');
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.message, /"verbose" is not known here/);
  const extra = await get('/v1/services?x=1');
  assert.equal(extra.status, 400);
  assert.equal(extra.body.error, 'bad_query');
  assert.equal((await app.inject('/readyz?verbose')).statusCode, 200, 'probes ignore their query');
});

test('/v1/conntrack parses its filter strictly, names the service, and says when there is no datapath to read', async () => {
  const seen: unknown[] = [];
  const listing = { total: 1, matched: 1, entries: [], snatPortsByBackend: [], affinityEntries: 0 };
  const app = buildApi(Object.assign(Object.create(agent), { conntrack: (q: unknown) => (seen.push(q), listing) }));
  const get = async (url: string) => {
    const res = await app.inject(url);
    return { status: res.statusCode, body: res.json() as Record<string, unknown> };
  };
  const ok = await get('/v1/conntrack?src=198.18.1.2&dst=192.0.2.10:80&backend=198.19.1.11:8080&service=default/web&protocol=TCP&limit=5');
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, listing);
  assert.deepEqual(seen[0], { limit: 5, src: { addr: '198.18.1.2' }, dst: { addr: '192.0.2.10', port: 80 }, backend: { addr: '198.19.1.11', port: 8080 }, service: 'default/web', protocol: 'TCP' });
  assert.deepEqual((await get('/v1/conntrack')).status, 200);
  assert.deepEqual(seen[1], { limit: 1000 }, 'a limit of 1000 by default');
  for (const [q, what] of [
    ['src=198.18.1', /src: expected IPv4 or IPv4:PORT/],
    ['dst=192.0.2.10:0x50', /dst: port must be a decimal number/],
    ['limit=0', /limit: expected a decimal number 1\.\.100000/],
    ['limit=1e3', /limit: expected a decimal number/],
    ['protocol=sctp', /protocol: expected tcp or udp/],
    ['service=web', /service: expected NAMESPACE\/NAME/],
    ['src=198.18.1.2&src=198.18.1.3', /src given 2 times/],
    ['verbose=1', /"verbose" is not known here/],
  ] as const) {
    const r = await get(`/v1/conntrack?${q}`);
    assert.equal(r.status, 400, q);
    assert.equal(r.body.error, 'bad_query', q);
    assert.match(String(r.body.message), what, q);
  }
  const missing = await get('/v1/conntrack?service=default/nope');
  assert.deepEqual([missing.status, missing.body.error], [404, 'service_not_found']);
  // The agent of these tests writes in-memory maps: no datapath to read.
  const none = await buildApi(agent).inject('/v1/conntrack');
  assert.deepEqual([none.statusCode, (none.json() as { error: string }).error], [404, 'no_datapath']);
});

test('/v1/flows parses its filter strictly and says when the agent records no flows', async () => {
  const seen: unknown[] = [];
  const view = { flows: [], suppressed: '0', capacity: 4096 };
  const app = buildApi(Object.assign(Object.create(agent), { flowsView: (q: unknown) => (seen.push(q), view) }));
  const get = async (url: string) => {
    const res = await app.inject(url);
    return { status: res.statusCode, body: res.json() as Record<string, unknown> };
  };
  const before = Date.now();
  const ok = await get('/v1/flows?last=5&since=30s&from-ip=198.18.1.2&to-ip=192.0.2.10&from-pod=default/c-0&to-service=default/web&verdict=dropped&protocol=udp&port=53');
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, view);
  const q = seen[0] as { sinceMs: number };
  assert.ok(q.sinceMs >= before - 30_000 - 1000 && q.sinceMs <= Date.now() - 30_000, `since 30 s back: ${q.sinceMs}`);
  assert.deepEqual({ ...q, sinceMs: 0 }, { last: 5, sinceMs: 0, fromIp: '198.18.1.2', toIp: '192.0.2.10', fromPod: 'default/c-0', toService: 'default/web', verdict: 'DROPPED', protocol: 'UDP', port: 53 });
  assert.equal((await get('/v1/flows?since=2026-12-06T12:00:00Z')).status, 200);
  assert.equal((seen[1] as { sinceMs: number }).sinceMs, Date.parse('2026-12-06T12:00:00Z'));
  for (const [query, what] of [
    ['last=0', /last: expected a decimal number 1\.\.1000000/],
    ['since=yesterday', /since: expected an RFC 3339 time or a duration/],
    ['from-ip=198.18.1', /from-ip: expected an IPv4 address/],
    ['to-service=web', /to-service: expected NAMESPACE\/NAME/],
    ['verdict=LOST', /verdict: expected FORWARDED or DROPPED/],
    ['port=0x50', /port: expected a decimal number 1\.\.65535/],
    ['last=1&last=2', /last given 2 times/],
    ['node=Node_1', /node: expected a node name/],
    ['nodes=n1', /"nodes" is not known here/],
  ] as const) {
    const r = await get(`/v1/flows?${query}`);
    assert.deepEqual([r.status, r.body.error], [400, 'bad_query'], query);
    assert.match(String(r.body.message), what, query);
  }
  // The agent of these tests has no datapath: no flows.
  const none = await buildApi(agent).inject('/v1/flows');
  assert.deepEqual([none.statusCode, (none.json() as { error: string }).error], [404, 'no_flows']);
});

test('no query a client sends gets a 500 (seeded fuzz)', async () => {
  const app = buildApi(agent);
  let seed = Number(process.env.XLB_FUZZ_SEED ?? Date.now() % 100000);
  console.log(`api fuzz: XLB_FUZZ_SEED=${seed}`);
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const pick = <T,>(a: T[]) => a[Math.floor(rand() * a.length)];
  const pieces = ['flow', 'port', 'src', 'dst', 'backend', 'service', 'limit', 'protocol', 'last', 'since', 'verdict', 'from-ip', 'namespace', 'window', '30s', '=', '&', ',', ':', '198.18.1.2', '192.0.2.10', '80', '1e3', '0x50', '%20', '%00', '%ff', 'tcp', 'udp', '[]', '[0]', '%5B%5D', 'a', '..', '/', '-', '+', '99999', ''];
  const routes = ['/v1/services/default/web/flow', '/v1/services/default/web', '/v1/services', '/v1/datapath', '/v1/issues', '/v1/bgp', '/v1/services/default/nope/flow', '/v1/conntrack', '/v1/flows', '/v1/servicemap', '/ui/'];
  for (let i = 0; i < 400; i++) {
    const q = Array.from({ length: 1 + Math.floor(rand() * 8) }, () => pick(pieces)).join('');
    const url = `${pick(routes)}?${q}`;
    const res = await app.inject(url);
    assert.ok(res.statusCode < 500, `seed ${seed}: ${url} answered ${res.statusCode} ${res.body}`);
  }
});

test('/metrics exposes the agent metrics in the Prometheus format', async () => {
  const res = await buildApi(agent).inject('/metrics');
  assert.equal(res.statusCode, 200);
  assert.match(res.body, /# HELP xlb_sync_duration_seconds /);
  assert.match(res.body, /^xlb_services 7$/m);
  assert.match(res.body, /^xlb_backends\{state="ready"\} 24$/m);
  assert.match(res.body, /^xlb_agent_ready 1$/m, 'ready, as /readyz says');
  assert.match(res.body, /^xlb_build_info\{version="[^"]+",revision="[^"]+",nodejs_version="[^"]+"\} 1$/m);
  assert.doesNotMatch(res.body, /xlb_conntrack_entries|xlb_kubernetes_informer|xlb_ipam_/, 'no conntrack without a datapath, no informers or IPAM with the file source');
});

test('the metrics listener serves /metrics and /healthz only: the API is not reachable through it', async () => {
  const app = buildMetricsApi(agent);
  const metrics = await app.inject('/metrics');
  assert.equal(metrics.statusCode, 200);
  assert.match(String(metrics.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.match(metrics.body, /^xlb_services 7$/m);
  assert.equal((await app.inject('/healthz')).statusCode, 200);
  for (const url of ['/v1/services', '/v1/conntrack', '/v1/flows', '/readyz']) {
    const res = await app.inject(url);
    assert.equal(res.statusCode, 404, `${url} is not served`);
    assert.equal((res.json() as { error: string }).error, 'not_found');
  }
});

test('the API is read-only: writes are 404s', async () => {
  const res = await buildApi(agent).inject({ method: 'POST', url: '/v1/services' });
  assert.equal(res.statusCode, 404);
});

test('readyz waits for the first sync\'s next hops to resolve: a packet for a remote backend would be dropped until then', async () => {
  let release!: () => void;
  const resolved = new Promise<void>((r) => (release = r));
  const ensured: string[][] = [];
  const neighbors = {
    ensure: async (remote: Iterable<string>) => void ensured.push([...remote].sort()),
    awaitResolved: async () => (await resolved, []),
    list: () => [{ addr: '198.18.0.12', dev: 'lo' }],
    stop: async () => undefined,
  };
  const a = await Agent.start(config({ api: { listen: `unix:${path.join(dir, 'api-neigh.sock')}` } }), pino({ level: 'silent' }), { lbmaps: new FakeLBMaps(), neighbors });
  try {
    await waitFor(() => a.services().length > 0 && ensured.length > 0, 5000, 'the first sync and its neighbour refresh');
    // node1's agent: the endpoints on node2 are the remote backends.
    assert.deepEqual(ensured[0], ['198.19.2.11', '198.19.2.12', '198.19.2.2']);
    const app = buildApi(a);
    assert.equal((await app.inject('/readyz')).statusCode, 503, 'programmed, next hops not resolved: not ready');
    release();
    await waitFor(() => a.ready(), 2000, 'ready once resolved');
    assert.equal((await app.inject('/readyz')).statusCode, 200);
  } finally {
    await a.stop();
  }
});

test('next hops still unresolved at the deadline: ready anyway, and the log names them', async () => {
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
  const neighbors = {
    ensure: async () => undefined,
    awaitResolved: async () => [{ addr: '198.18.0.12', dev: 'eth0' }],
    list: () => [{ addr: '198.18.0.12', dev: 'eth0' }],
    stop: async () => undefined,
  };
  const a = await Agent.start(config({ api: { listen: `unix:${path.join(dir, 'api-unresolved.sock')}` } }), log, { lbmaps: new FakeLBMaps(), neighbors });
  try {
    await waitFor(() => a.ready(), 5000, 'ready');
    const warning = lines.map((l) => JSON.parse(l) as { msg: string; nextHops?: string[] }).find((l) => /next hops not resolved/.test(l.msg));
    assert.deepEqual(warning?.nextHops, ['198.18.0.12%eth0']);
  } finally {
    await a.stop();
  }
});

test('a missing interface is a start-up error naming it', async () => {
  await assert.rejects(
    Agent.start(config({ interfaces: ['xlb-missing0'] }), pino({ level: 'silent' }), { lbmaps: new FakeLBMaps() }),
    /interfaces: interface xlb-missing0 does not exist/,
  );
});

test('api.listen must be HOST:PORT or unix:/path', () => {
  assert.deepEqual(listenOptions('127.0.0.1:9876'), { host: '127.0.0.1', port: 9876 });
  assert.deepEqual(listenOptions('unix:/run/x.sock'), { path: '/run/x.sock' });
  assert.deepEqual(listenOptions('[::]:9877'), { host: '::', port: 9877 }, 'an IPv6 host without brackets, as listen() takes it');
  assert.throws(() => listenOptions('localhost'), /api\.listen/);
  assert.throws(() => listenOptions('localhost', 'metrics.listen'), /^Error: metrics\.listen: /, 'the error names the key it came from');
});

test('/v1/bgp is a 404 with code bgp_disabled when the agent has no bgp section', async () => {
  const res = await buildApi(agent).inject('/v1/bgp');
  assert.equal(res.statusCode, 404);
  assert.equal((res.json() as { error: string }).error, 'bgp_disabled');
  assert.doesNotMatch(await agent.registry.metrics(), /xlb_bgp_peer_up/, 'no BGP metrics without BGP');
});

test('/v1/l2 is a 404 with code l2_disabled when the agent has no l2 section', async () => {
  const res = await buildApi(agent).inject('/v1/l2');
  assert.equal(res.statusCode, 404);
  assert.equal((res.json() as { error: string }).error, 'l2_disabled');
});

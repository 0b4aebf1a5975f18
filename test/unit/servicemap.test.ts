/**
 * GET /v1/servicemap and the files of the page at /ui, through
 * fastify.inject(), against an agent on in-memory maps serving the lab's
 * services (no root needed). Flows come from a FlowBuffer the tests fill.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { buildApi, type AgentView } from '../../src/api/server.js';
import type { ServiceMap, ServiceMapEdge } from '../../src/api/servicemap.js';
import { FlowBuffer, type Flow } from '../../src/flows/flows.js';
import { startExampleAgent } from '../helpers/agent.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-servicemap-'));
let agent: Agent;

before(async () => {
  agent = await startExampleAgent(dir);
});

after(async () => {
  await agent.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A forwarded (backend given) or dropped (dropReason given) flow from the lab client, `agoMs` before now. */
function flow(o: { agoMs: number; sport: number; dst: string; protocol?: 'TCP' | 'UDP'; service?: string; backend?: string; dropReason?: string }): Flow {
  const [ip, port] = o.dst.split(':');
  const t = Date.now() - o.agoMs;
  const f: Flow = {
    time: new Date(t).toISOString(),
    timeMs: t,
    node: 'node1',
    verdict: o.dropReason ? 'DROPPED' : 'FORWARDED',
    protocol: o.protocol ?? 'TCP',
    source: { ip: '198.18.1.2', port: o.sport },
    destination: { ip, port: Number(port) },
    tcpFlags: o.protocol === 'UDP' ? [] : ['SYN'],
    point: 'xdp',
  };
  if (o.service) f.destination.service = o.service;
  if (o.dropReason) f.dropReason = o.dropReason;
  if (o.backend) {
    const [bip, bport] = o.backend.split(':');
    f.backend = { ip: bip, port: Number(bport) };
  }
  return f;
}

/** The agent with `flows` as the flows it keeps. */
function withFlows(flows: Flow[]): AgentView {
  const buffer = new FlowBuffer(64);
  for (const f of flows) buffer.add(f);
  return Object.assign(Object.create(agent) as Agent, { flowsView: (q: Parameters<NonNullable<AgentView['flowsView']>>[0]) => ({ flows: buffer.query(q), suppressed: '3', capacity: 64 }) });
}

async function getMap(view: AgentView, query = ''): Promise<ServiceMap> {
  const res = await buildApi(view).inject(`/v1/servicemap${query}`);
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as ServiceMap;
}

const edgeOf = (m: ServiceMap, source: string, target: string): ServiceMapEdge | undefined => m.edges.find((e) => e.source === source && e.target === target);

test('without flow events the map shows every service, its frontends and backends (pods named), and says flows are off', async () => {
  const m = await getMap(agent);
  assert.deepEqual(m.flows, { enabled: false });
  assert.equal(m.node, 'node1');
  assert.deepEqual(m.namespaces, ['default', 'kube-system']);
  const services = m.nodes.filter((n) => n.kind === 'service').map((n) => n.id).sort();
  assert.deepEqual(services, ['service:default/dns-echo', 'service:default/mixed', 'service:default/web', 'service:default/web-nodeport', 'service:kube-system/kube-dns']);
  for (const s of agent.services()) {
    const serviceId = `service:${s.namespace}/${s.name}`;
    for (const f of s.frontends) {
      const id = `frontend:${s.key}@${f.addr}:${f.port}/${s.protocol}`;
      assert.ok(m.nodes.some((n) => n.id === id && n.kind === 'frontend' && n.frontendKind === f.kind), `frontend node ${id}`);
      assert.ok(edgeOf(m, id, serviceId), `edge ${id} -> ${serviceId}`);
    }
    for (const b of s.backends) {
      const id = `backend:${b.addr}:${b.port}/${s.protocol}`;
      const node = m.nodes.find((n) => n.id === id);
      assert.ok(node, `backend node ${id}`);
      assert.match(node.pod ?? '', /^(default|kube-system)\/n\d(p\d|dns)$/, `${id} named by its pod though flow events are off`);
      assert.equal(node.state, 'ready', `${id} state`);
      assert.ok(edgeOf(m, serviceId, id), `edge ${serviceId} -> ${id}`);
    }
  }
  const web = m.nodes.find((n) => n.id === 'backend:198.19.1.11:8080/TCP');
  assert.deepEqual([web?.pod, web?.node, web?.label], ['default/n1p1', 'node1', 'n1p1\n198.19.1.11:8080/TCP']);
  assert.ok(m.edges.every((e) => e.flows === 0 && e.drops === 0), 'no counts without flows');
});

test('edges count the flows of the window: forwarded on both edges, drops on the frontend edge, older flows only in the list', async () => {
  const flows = [
    flow({ agoMs: 60_000, sport: 1000, dst: '192.0.2.10:80', service: 'default/web:http', backend: '198.19.1.11:8080' }),
    flow({ agoMs: 3000, sport: 1001, dst: '192.0.2.10:80', service: 'default/web:http', backend: '198.19.1.11:8080' }),
    flow({ agoMs: 2000, sport: 1002, dst: '192.0.2.10:80', service: 'default/web:http', backend: '198.19.2.12:8080' }),
    // The close of flow 1001: the same flow, not counted again.
    { ...flow({ agoMs: 1800, sport: 1001, dst: '192.0.2.10:80', service: 'default/web:http', backend: '198.19.1.11:8080' }), closed: true as const },
    // No service named by the datapath: the frontend it was sent to names it.
    flow({ agoMs: 1500, sport: 1003, dst: '198.18.128.10:80', backend: '198.19.1.11:8080' }),
    flow({ agoMs: 1000, sport: 1004, dst: '192.0.2.11:53', protocol: 'UDP', service: 'default/dns-echo:dns', dropReason: 'no_backend' }),
    flow({ agoMs: 500, sport: 1005, dst: '198.18.128.53:53', protocol: 'UDP', service: 'kube-system/kube-dns:dns', backend: '198.19.1.2:53' }),
  ];
  const m = await getMap(withFlows(flows), '?window=10s&last=4');
  assert.ok(m.flows.enabled, 'flows on');
  if (!m.flows.enabled) return;
  assert.deepEqual([m.flows.windowSeconds, m.flows.forwarded, m.flows.dropped, m.flows.suppressed, m.flows.capacity], [10, 4, 1, '3', 64]);
  const vip = edgeOf(m, 'frontend:default/web:http@192.0.2.10:80/TCP', 'service:default/web');
  assert.deepEqual([vip?.flows, vip?.drops, vip?.flowRate], [2, 0, 0.2], 'two flows to the VIP in the window (the one a minute ago is out)');
  assert.equal(edgeOf(m, 'frontend:default/web:http@198.18.128.10:80/TCP', 'service:default/web')?.flows, 1, 'the ClusterIP flow');
  assert.equal(edgeOf(m, 'service:default/web', 'backend:198.19.1.11:8080/TCP')?.flows, 2);
  assert.equal(edgeOf(m, 'service:default/web', 'backend:198.19.2.12:8080/TCP')?.flows, 1);
  const drop = edgeOf(m, 'frontend:default/dns-echo:dns@192.0.2.11:53/UDP', 'service:default/dns-echo');
  assert.deepEqual([drop?.flows, drop?.drops, drop?.dropRate], [0, 1, 0.1]);
  assert.equal(edgeOf(m, 'service:kube-system/kube-dns', 'backend:198.19.1.2:53/UDP')?.flows, 1);
  assert.deepEqual(
    m.flows.recent.map((f) => f.source.port),
    [1005, 1004, 1003, 1001],
    'the newest four events, newest first (a close is one)',
  );
});

test('the namespace filter narrows services, edges, counts and flows; the namespace list stays whole', async () => {
  const flows = [
    flow({ agoMs: 2000, sport: 2001, dst: '192.0.2.10:80', service: 'default/web:http', backend: '198.19.1.11:8080' }),
    flow({ agoMs: 1000, sport: 2002, dst: '198.18.128.53:53', protocol: 'UDP', service: 'kube-system/kube-dns:dns', backend: '198.19.1.2:53' }),
  ];
  const m = await getMap(withFlows(flows), '?namespace=kube-system');
  assert.equal(m.namespace, 'kube-system');
  assert.deepEqual(m.namespaces, ['default', 'kube-system']);
  assert.deepEqual(m.nodes.filter((n) => n.kind === 'service').map((n) => n.id), ['service:kube-system/kube-dns']);
  assert.ok(m.nodes.every((n) => n.namespace === 'kube-system'), 'only kube-system nodes');
  assert.ok(m.edges.every((e) => e.source.includes('kube-system/') || e.target.includes('kube-system/')), 'only kube-system edges');
  assert.ok(m.flows.enabled, 'flows on');
  if (!m.flows.enabled) return;
  assert.deepEqual([m.flows.forwarded, m.flows.recent.map((f) => f.source.port)], [1, [2002]]);
  const none = await getMap(withFlows(flows), '?namespace=nope');
  assert.deepEqual([none.nodes.length, none.edges.length], [0, 0], 'a namespace without services: an empty map, not an error');
});

test('the query is parsed strictly: a bad namespace, window or last, an unknown or repeated parameter is a 400 naming it', async () => {
  const app = buildApi(agent);
  for (const [query, what] of [
    ['namespace=Default', /namespace: expected a namespace name/],
    ['namespace=a/b', /namespace: expected a namespace name/],
    [`namespace=${'a'.repeat(64)}`, /namespace: expected a namespace name/],
    ['window=0s', /window: expected a duration from 1s to 1h/],
    ['window=2h', /window: expected a duration from 1s to 1h/],
    ['window=10', /window: expected a duration/],
    ['window=1e3s', /window: expected a duration/],
    ['last=1001', /last: expected a decimal number 0\.\.1000/],
    ['last=-1', /last: expected a decimal number/],
    ['last=1&last=2', /last given 2 times/],
    ['node=node1', /"node" is not known here \(known: namespace, window, last\)/],
  ] as const) {
    const res = await app.inject(`/v1/servicemap?${query}`);
    assert.equal(res.statusCode, 400, query);
    const body = res.json() as { error: string; message: string };
    assert.equal(body.error, 'bad_query', query);
    assert.match(body.message, what, query);
  }
  const ok = await app.inject('/v1/servicemap?window=1h&last=0&namespace=default');
  assert.equal(ok.statusCode, 200, ok.body);
});

test('the page is served from the API: /ui redirects to /ui/, its files come with their types and a CSP, anything else is a 404', async () => {
  const app = buildApi(agent);
  const redirect = await app.inject('/ui');
  assert.deepEqual([redirect.statusCode, redirect.headers.location], [302, '/ui/']);
  const page = await app.inject('/ui/');
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
  assert.match(page.body, /<script src="cytoscape\.min\.js"><\/script>/);
  for (const [file, type] of [
    ['servicemap.js', /^text\/javascript/],
    ['servicemap.css', /^text\/css/],
    ['cytoscape.min.js', /^text\/javascript/],
  ] as const) {
    const res = await app.inject(`/ui/${file}`);
    assert.equal(res.statusCode, 200, file);
    assert.match(String(res.headers['content-type']), type, file);
    assert.ok(res.body.length > 1000, `${file}: ${res.body.length} bytes`);
  }
  for (const url of ['/ui/package.json', '/ui/..%2F..%2Fpackage.json', '/ui/index.html', '/ui/a/b']) {
    const res = await app.inject(url);
    assert.equal(res.statusCode, 404, url);
    assert.equal((res.json() as { error: string }).error, 'not_found', url);
  }
});

/**
 * src/services/healthcheck: the per-service health check server of
 * LoadBalancer services with externalTrafficPolicy Local (kube-proxy's
 * pkg/proxy/healthcheck/service_health.go and its healthcheck_test.go), and
 * the local ready endpoint count (pkg/proxy/endpointschangetracker.go
 * LocalReadyEndpoints, cases of endpoints_test.go TestGetLocalEndpointIPs).
 *
 * Real sockets on 127.0.0.1 and 127.0.0.2 (no root needed), ports chosen
 * free at run time.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { pino } from 'pino';
import {
  HealthCheckServer,
  healthCheckServices,
  localReadyEndpoints,
  type HealthCheckLog,
  type HealthCheckService,
} from '../../src/services/healthcheck.js';
import type { DesiredBackend, DesiredService } from '../../src/services/types.js';
import { waitFor } from '../../src/util/wait.js';

const A1 = '127.0.0.1';
const A2 = '127.0.0.2';

/** n distinct ports free on 127.0.0.1 right now (held together, then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, A1, () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  reusedSocket: boolean;
}

/** One HTTP request; `agent` false (the default) opens a fresh connection. */
function request(addr: string, port: number, opts: { method?: string; path?: string; agent?: http.Agent; payload?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: addr, port, method: opts.method ?? 'GET', path: opts.path ?? '/healthz', agent: opts.agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, reusedSocket: req.reusedSocket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.payload);
  });
}

/** Asserts kube-proxy's answer: status, headers and payload (healthcheck_test.go tHandler). */
async function expectAnswer(addr: string, port: number, ns: string, name: string, status: number, endpoints: number, proxyHealthy = true): Promise<void> {
  const r = await request(addr, port);
  const where = `${ns}/${name} at ${addr}:${port}`;
  assert.equal(r.status, status, `status of ${where}`);
  assert.equal(r.headers['content-type'], 'application/json', where);
  assert.equal(r.headers['x-content-type-options'], 'nosniff', where);
  assert.equal(r.headers['x-load-balancing-endpoint-weight'], String(endpoints), where);
  assert.deepEqual(JSON.parse(r.body), { service: { namespace: ns, name }, localEndpoints: endpoints, serviceProxyHealthy: proxyHealthy }, where);
}

async function expectRefused(addr: string, port: number): Promise<void> {
  await assert.rejects(request(addr, port), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED', `${addr}:${port} should refuse`);
}

const hc = (ns: string, name: string, port: number, localEndpoints: number): HealthCheckService => ({ namespace: ns, name, port, localEndpoints });

/** A logger that records warnings. */
function recordingLog(): HealthCheckLog & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, info: () => {}, warn: (obj, msg) => warnings.push(`${msg} ${JSON.stringify(obj)}`) };
}

describe('HealthCheckServer: answers (kube-proxy healthcheck_test.go TestServer)', () => {
  it('follows the sync sequence of TestServer: 503 at 0, 200 at N, ports opened, kept, moved and closed', async (t) => {
    const [p1, p2, p3, p3b, p4] = await freePorts(5);
    let healthy = true;
    const s = new HealthCheckServer({ addresses: [A1], proxyHealthy: () => healthy });
    t.after(() => s.stop());

    // sync nothing
    assert.deepEqual(await s.sync([]), []);
    assert.deepEqual(s.status(), []);

    // a real service, no endpoints yet
    assert.deepEqual(await s.sync([hc('a', 'b', p1, 0)]), []);
    assert.deepEqual(s.status().map((x) => [x.service, x.port, x.addresses]), [['a/b', p1, [A1]]]);
    await expectAnswer(A1, p1, 'a', 'b', 503, 0);

    // an endpoint; zero; back
    for (const n of [18, 0, 11, 0, 18]) {
      await s.sync([hc('a', 'b', p1, n)]);
      await expectAnswer(A1, p1, 'a', 'b', n === 0 ? 503 : 200, n);
    }

    // delete the service
    await s.sync([]);
    await expectRefused(A1, p1);

    // several services
    await s.sync([hc('a', 'b', p1, 0), hc('c', 'd', p2, 0), hc('e', 'f', p3, 0)]);
    await expectAnswer(A1, p1, 'a', 'b', 503, 0);
    await expectAnswer(A1, p2, 'c', 'd', 503, 0);
    await expectAnswer(A1, p3, 'e', 'f', 503, 0);
    await s.sync([hc('a', 'b', p1, 9), hc('c', 'd', p2, 3), hc('e', 'f', p3, 7)]);
    await expectAnswer(A1, p1, 'a', 'b', 200, 9);
    await expectAnswer(A1, p2, 'c', 'd', 200, 3);
    await expectAnswer(A1, p3, 'e', 'f', 200, 7);

    // remove a/b, leave c/d, move e/f to another port, add g/h
    await s.sync([hc('c', 'd', p2, 3), hc('e', 'f', p3b, 7), hc('g', 'h', p4, 6)]);
    await expectRefused(A1, p1);
    await expectRefused(A1, p3);
    await expectAnswer(A1, p2, 'c', 'd', 200, 3);
    await expectAnswer(A1, p3b, 'e', 'f', 200, 7);
    await expectAnswer(A1, p4, 'g', 'h', 200, 6);

    // c/d loses its endpoints
    await s.sync([hc('c', 'd', p2, 0), hc('e', 'f', p3b, 7), hc('g', 'h', p4, 6)]);
    await expectAnswer(A1, p2, 'c', 'd', 503, 0);

    // a temporarily unhealthy proxy: 503 everywhere, counts still reported
    healthy = false;
    await expectAnswer(A1, p2, 'c', 'd', 503, 0, false);
    await expectAnswer(A1, p3b, 'e', 'f', 503, 7, false);
    await expectAnswer(A1, p4, 'g', 'h', 503, 6, false);

    // healthy again
    healthy = true;
    await expectAnswer(A1, p2, 'c', 'd', 503, 0, true);
    await expectAnswer(A1, p3b, 'e', 'f', 200, 7, true);
    await expectAnswer(A1, p4, 'g', 'h', 200, 6, true);
  });

  it('writes the body byte for byte as kube-proxy does (tabs, no trailing newline)', async (t) => {
    const [p] = await freePorts(1);
    const s = new HealthCheckServer({ addresses: [A1] });
    t.after(() => s.stop());
    await s.sync([hc('ns1', 'web', p, 2)]);
    const r = await request(A1, p);
    assert.equal(r.body, '{\n\t"service": {\n\t\t"namespace": "ns1",\n\t\t"name": "web"\n\t},\n\t"localEndpoints": 2,\n\t"serviceProxyHealthy": true\n}');
    assert.equal(r.headers['content-length'], String(Buffer.byteLength(r.body)));
  });

  it('answers any path and method the same; HEAD gets the headers without the body', async (t) => {
    const [p] = await freePorts(1);
    const s = new HealthCheckServer({ addresses: [A1] });
    t.after(() => s.stop());
    await s.sync([hc('ns1', 'web', p, 3)]);
    const get = await request(A1, p, { path: '/healthz' });
    for (const [method, path] of [['GET', '/'], ['GET', '/anything/else?x=1'], ['POST', '/healthz'], ['PUT', '/'], ['DELETE', '/x']]) {
      const r = await request(A1, p, { method, path, payload: method === 'GET' ? undefined : 'ignored' });
      assert.equal(r.status, 200, `${method} ${path}`);
      assert.equal(r.body, get.body, `${method} ${path}`);
      assert.equal(r.headers['x-load-balancing-endpoint-weight'], '3', `${method} ${path}`);
    }
    const head = await request(A1, p, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal(head.headers['content-type'], 'application/json');
    assert.equal(head.headers['content-length'], get.headers['content-length']);
  });

  it('counts the proxy unhealthy when proxyHealthy throws', async (t) => {
    const [p] = await freePorts(1);
    const s = new HealthCheckServer({ addresses: [A1], proxyHealthy: () => { throw new Error('not ready'); } });
    t.after(() => s.stop());
    await s.sync([hc('ns1', 'web', p, 4)]);
    await expectAnswer(A1, p, 'ns1', 'web', 503, 4, false);
  });
});

describe('HealthCheckServer: listeners', () => {
  it('updates counts in place: a keep-alive connection survives the sync and sees the new count', async (t) => {
    const [p] = await freePorts(1);
    const s = new HealthCheckServer({ addresses: [A1] });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.after(async () => {
      agent.destroy();
      await s.stop();
    });
    await s.sync([hc('ns1', 'web', p, 0)]);
    const first = await request(A1, p, { agent });
    assert.equal(first.status, 503);
    assert.equal(first.reusedSocket, false);
    await waitFor(() => Object.values(agent.freeSockets).flat().length === 1, 2000, 'the keep-alive socket back in the pool');
    await s.sync([hc('ns1', 'web', p, 5)]);
    const second = await request(A1, p, { agent });
    assert.equal(second.reusedSocket, true, 'same connection: the listener was not re-created');
    assert.equal(second.status, 200);
    assert.equal(second.headers['x-load-balancing-endpoint-weight'], '5');
  });

  it('a port in use is reported, the other ports still serve, and the next sync retries it', async (t) => {
    const [busy, free] = await freePorts(2);
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(busy, A1, r));
    const log = recordingLog();
    const s = new HealthCheckServer({ addresses: [A1], log });
    t.after(async () => {
      await s.stop();
      if (blocker.listening) await new Promise((r) => blocker.close(r));
    });

    const want = [hc('ns1', 'blocked', busy, 1), hc('ns1', 'fine', free, 1)];
    const issues = await s.sync(want);
    assert.equal(issues.length, 1);
    assert.equal(issues[0].object, 'Service ns1/blocked');
    assert.equal(issues[0].field, 'spec.healthCheckNodePort');
    assert.match(issues[0].message, new RegExp(`127\\.0\\.0\\.1:${busy}.*EADDRINUSE`));
    await expectAnswer(A1, free, 'ns1', 'fine', 200, 1);
    const st = s.status().find((x) => x.name === 'blocked');
    assert.deepEqual(st?.addresses, []);
    assert.match(st?.lastError ?? '', /address already in use/);

    // still in use: same issue again, but logged only once
    assert.equal((await s.sync(want)).length, 1);
    assert.equal(log.warnings.length, 1);

    // freed: the retry binds it
    await new Promise((r) => blocker.close(r));
    assert.deepEqual(await s.sync(want), []);
    await expectAnswer(A1, busy, 'ns1', 'blocked', 200, 1);
    assert.equal(s.status().find((x) => x.name === 'blocked')?.lastError, undefined);
  });

  it('a bind failure on one address leaves the service served on the others', async (t) => {
    const [p] = await freePorts(1);
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(p, A1, r));
    const s = new HealthCheckServer({ addresses: [A1, A2] });
    t.after(async () => {
      await s.stop();
      await new Promise((r) => blocker.close(r));
    });
    const issues = await s.sync([hc('ns1', 'web', p, 2)]);
    assert.equal(issues.length, 1);
    assert.match(issues[0].message, new RegExp(`127\\.0\\.0\\.1:${p}`));
    await expectAnswer(A2, p, 'ns1', 'web', 200, 2);
    assert.deepEqual(s.status()[0].addresses, [A2]);
  });

  it('an address not on the node is reported (EADDRNOTAVAIL), the node addresses still serve', async (t) => {
    const [p] = await freePorts(1);
    const s = new HealthCheckServer({ addresses: [A1, '192.0.2.1'] });
    t.after(() => s.stop());
    const issues = await s.sync([hc('ns1', 'web', p, 1)]);
    assert.equal(issues.length, 1);
    assert.equal(issues[0].object, 'Service ns1/web');
    assert.match(issues[0].message, new RegExp(`192\\.0\\.2\\.1:${p}: address not available on this node \\(EADDRNOTAVAIL\\)`));
    await expectAnswer(A1, p, 'ns1', 'web', 200, 1);
  });

  it('two services claiming one port: the first by namespace/name keeps it, the other is reported until it is free', async (t) => {
    const [p] = await freePorts(1);
    const s = new HealthCheckServer({ addresses: [A1] });
    t.after(() => s.stop());
    // listed in the "wrong" order on purpose
    const issues = await s.sync([hc('zeta', 'web', p, 1), hc('alpha', 'web', p, 2)]);
    assert.deepEqual(issues, [{ object: 'Service zeta/web', field: 'spec.healthCheckNodePort', message: `port ${p} is also the health check port of Service alpha/web, which keeps it` }]);
    await expectAnswer(A1, p, 'alpha', 'web', 200, 2);
    assert.deepEqual(s.status().map((x) => [x.service, x.addresses.length, x.lastError !== undefined]), [['alpha/web', 1, false], ['zeta/web', 0, true]]);

    // the holder goes away: the other one gets the port
    assert.deepEqual(await s.sync([hc('zeta', 'web', p, 1)]), []);
    await expectAnswer(A1, p, 'zeta', 'web', 200, 1);
  });

  it('reports bad entries and keeps serving the good ones', async (t) => {
    const [p] = await freePorts(1);
    const s = new HealthCheckServer({ addresses: [A1, 'not-an-ip'] });
    t.after(() => s.stop());
    const issues = await s.sync([hc('ns1', 'zero', 0, 1), hc('ns1', 'big', 70000, 1), hc('ns1', 'neg', p, -1), hc('ns1', 'web', p, 1), hc('ns1', 'web', p, 9)]);
    assert.deepEqual(issues.map((i) => `${i.object} ${i.field}`), [
      'Service ns1/zero spec.healthCheckNodePort',
      'Service ns1/big spec.healthCheckNodePort',
      'Service ns1/neg localEndpoints',
      'Service ns1/web spec.healthCheckNodePort',
      'Node addresses[1]',
    ]);
    await expectAnswer(A1, p, 'ns1', 'web', 200, 1);
  });

  it('follows address changes: opens on new addresses, closes on dropped ones, keeps the rest', async (t) => {
    const [p] = await freePorts(1);
    const s = new HealthCheckServer({ addresses: [A1] });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.after(async () => {
      agent.destroy();
      await s.stop();
    });
    await s.sync([hc('ns1', 'web', p, 1)]);
    await expectAnswer(A1, p, 'ns1', 'web', 200, 1);
    await expectRefused(A2, p);

    assert.deepEqual(await s.setAddresses([A1, A2]), []);
    await expectAnswer(A2, p, 'ns1', 'web', 200, 1);
    assert.deepEqual(s.status()[0].addresses, [A1, A2]);

    // A2 kept across the next change: its keep-alive connection survives
    await request(A2, p, { agent });
    await waitFor(() => Object.values(agent.freeSockets).flat().length === 1, 2000, 'the keep-alive socket back in the pool');
    assert.deepEqual(await s.setAddresses([A2]), []);
    await expectRefused(A1, p);
    assert.equal((await request(A2, p, { agent })).reusedSocket, true);
    assert.deepEqual(s.status()[0].addresses, [A2]);

    // ports synced later use the current addresses
    const [q] = await freePorts(1);
    await s.sync([hc('ns1', 'web', p, 1), hc('ns1', 'api', q, 0)]);
    await expectAnswer(A2, q, 'ns1', 'api', 503, 0);
    await expectRefused(A1, q);
  });

  it('stop closes every listener and drops idle keep-alive connections; later syncs do nothing', async () => {
    const [p, q] = await freePorts(2);
    const s = new HealthCheckServer({ addresses: [A1, A2], log: pino({ level: 'silent' }) });
    await s.sync([hc('ns1', 'a', p, 1), hc('ns1', 'b', q, 0)]);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      await request(A1, p, { agent });
      await waitFor(() => Object.values(agent.freeSockets).flat().length === 1, 2000, 'the keep-alive socket idle in the pool');
      const socket = Object.values(agent.freeSockets).flat()[0]!;
      let closed = false;
      socket.once('close', () => (closed = true));

      await s.stop();
      await waitFor(() => closed, 2000, 'the server to close the idle keep-alive connection');
      for (const addr of [A1, A2]) for (const port of [p, q]) await expectRefused(addr, port);
      assert.deepEqual(s.status(), []);
      assert.deepEqual(await s.sync([hc('ns1', 'a', p, 1)]), []);
      await expectRefused(A1, p);
      await s.stop();
    } finally {
      agent.destroy();
    }
  });

  it('stop does not wait for a client stuck in the middle of a request', async () => {
    const [p] = await freePorts(1);
    const s = new HealthCheckServer({ addresses: [A1] });
    await s.sync([hc('ns1', 'a', p, 1)]);
    const stuck = net.connect(p, A1);
    let closed = false;
    stuck.on('error', () => {});
    stuck.once('close', () => (closed = true));
    await new Promise((r) => stuck.once('connect', r));
    stuck.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // headers never finished
    await expectAnswer(A1, p, 'ns1', 'a', 200, 1); // the server has read the partial request by now
    try {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<string>((r) => (timer = setTimeout(() => r('still waiting'), 3000)));
      assert.equal(await Promise.race([s.stop().then(() => 'stopped'), deadline]), 'stopped');
      clearTimeout(timer);
      await waitFor(() => closed, 2000, 'the stuck connection to be closed');
    } finally {
      stuck.destroy();
    }
  });
});

// ---------------------------------------------------------------------------
// The count.

function backend(addr: string, port: number, local: boolean, ready: boolean): DesiredBackend {
  return {
    addr, port, protocol: 'TCP', local, ready, serving: true, terminating: !ready,
    inCluster: ready, inLocal: ready && local, weight: 1, name: `${addr}:${port}/TCP`,
  };
}

function servicePort(ns: string, name: string, portName: string, backends: DesiredBackend[], over: Partial<DesiredService> = {}): DesiredService {
  return {
    key: `${ns}/${name}:${portName}`, namespace: ns, name, portName, protocol: 'TCP', type: 'LoadBalancer',
    frontends: [], backends, externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Cluster',
    usesCluster: false, usesLocal: true, hasAnyEndpoints: backends.length > 0, topology: '',
    sessionAffinity: 'None', loadBalancerSourceRanges: [], healthCheckNodePort: 30000, ...over,
  };
}

// (local, ready) shorthands for the table
const L = (addr: string, port: number) => backend(addr, port, true, true);
const R = (addr: string, port: number) => backend(addr, port, false, true);
const LT = (addr: string, port: number) => backend(addr, port, true, false); // local, terminating (not ready)
const RT = (addr: string, port: number) => backend(addr, port, false, false);

describe('localReadyEndpoints (kube-proxy endpoints_test.go TestGetLocalEndpointIPs)', () => {
  const cases: Array<{ name: string; ports: DesiredService[]; want: Record<string, number> }> = [
    { name: 'nothing', ports: [], want: {} },
    { name: 'unnamed port', ports: [servicePort('ns1', 'ep1', '', [R('1.1.1.1', 11)])], want: {} },
    { name: 'unnamed port local', ports: [servicePort('ns1', 'ep1', '', [L('1.1.1.1', 11)])], want: { 'ns1/ep1': 1 } },
    {
      name: 'named local and non-local ports for the same IP',
      ports: [
        servicePort('ns1', 'ep1', 'p11', [R('1.1.1.1', 11), L('1.1.1.2', 11)]),
        servicePort('ns1', 'ep1', 'p12', [R('1.1.1.1', 12), L('1.1.1.2', 12)]),
      ],
      want: { 'ns1/ep1': 1 },
    },
    {
      name: 'named local and non-local ports for different IPs',
      ports: [
        servicePort('ns1', 'ep1', 'p11', [R('1.1.1.1', 11)]),
        servicePort('ns2', 'ep2', 'p22', [L('2.2.2.2', 22), L('2.2.2.22', 22)]),
        servicePort('ns2', 'ep2', 'p23', [L('2.2.2.3', 23)]),
        servicePort('ns4', 'ep4', 'p44', [L('4.4.4.4', 44), R('4.4.4.5', 44)]),
        servicePort('ns4', 'ep4', 'p45', [L('4.4.4.6', 45)]),
      ],
      want: { 'ns2/ep2': 3, 'ns4/ep4': 2 },
    },
    {
      name: 'named local and non-local ports for different IPs, some not ready',
      ports: [
        servicePort('ns1', 'ep1', 'p11', [R('1.1.1.1', 11)]),
        servicePort('ns2', 'ep2', 'p22', [L('2.2.2.2', 22), L('2.2.2.22', 22)]),
        servicePort('ns2', 'ep2', 'p23', [LT('2.2.2.3', 23)]),
        servicePort('ns4', 'ep4', 'p44', [L('4.4.4.4', 44), R('4.4.4.5', 44)]),
        servicePort('ns4', 'ep4', 'p45', [L('4.4.4.6', 45)]),
      ],
      want: { 'ns2/ep2': 2, 'ns4/ep4': 2 },
    },
    {
      name: 'all endpoints terminating: no ready endpoints',
      ports: [
        servicePort('ns1', 'ep1', 'p11', [RT('1.1.1.1', 11)]),
        servicePort('ns2', 'ep2', 'p22', [LT('2.2.2.2', 22), LT('2.2.2.22', 22)]),
        servicePort('ns2', 'ep2', 'p23', [LT('2.2.2.3', 23)]),
        servicePort('ns4', 'ep4', 'p44', [LT('4.4.4.4', 44), RT('4.4.4.5', 44)]),
        servicePort('ns4', 'ep4', 'p45', [LT('4.4.4.6', 45)]),
      ],
      want: {},
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(Object.fromEntries(localReadyEndpoints(c.ports)), c.want);
    });
  }

  it('counts by readiness alone, as kube-proxy (ready and terminating together counts)', () => {
    const b = { ...L('10.0.0.1', 80), terminating: true };
    assert.deepEqual(Object.fromEntries(localReadyEndpoints([servicePort('ns', 'web', '', [b])])), { 'ns/web': 1 });
  });
});

describe('healthCheckServices (kube-proxy HealthCheckNodePorts joined with LocalReadyEndpoints)', () => {
  it('serves LoadBalancer services with externalTrafficPolicy Local, one entry per service, sorted', () => {
    const got = healthCheckServices([
      servicePort('ns2', 'web', 'http', [L('10.0.0.1', 80), R('10.0.0.2', 80)], { healthCheckNodePort: 31001 }),
      servicePort('ns2', 'web', 'https', [L('10.0.0.1', 443), L('10.0.0.3', 443)], { healthCheckNodePort: 31001 }),
      servicePort('ns1', 'empty', '', [R('10.0.1.1', 80)], { healthCheckNodePort: 31002 }),
      servicePort('ns1', 'cluster', '', [L('10.0.2.1', 80)], { externalTrafficPolicy: 'Cluster', healthCheckNodePort: undefined }),
      servicePort('ns1', 'nodeport', '', [L('10.0.3.1', 80)], { type: 'NodePort', healthCheckNodePort: undefined }),
    ]);
    assert.deepEqual(got, {
      services: [
        { namespace: 'ns1', name: 'empty', port: 31002, localEndpoints: 0 },
        { namespace: 'ns2', name: 'web', port: 31001, localEndpoints: 2 },
      ],
      issues: [],
    });
  });

  it('reports a Local LoadBalancer service without healthCheckNodePort once and serves none for it', () => {
    const got = healthCheckServices([
      servicePort('ns', 'web', 'a', [L('10.0.0.1', 80)], { healthCheckNodePort: undefined }),
      servicePort('ns', 'web', 'b', [L('10.0.0.1', 81)], { healthCheckNodePort: undefined }),
    ]);
    assert.deepEqual(got.services, []);
    assert.deepEqual(got.issues.map((i) => `${i.object} ${i.field}`), ['Service ns/web spec.healthCheckNodePort']);
  });
});

/**
 * `xlb connectivity test` without a network: the test services it asks for
 * (src/connectivity/services.ts), the lab's objects for them and the
 * manifests file it edits and puts back (src/connectivity/lab.ts, over a
 * lab.json and manifests file made here), and the runner
 * (src/connectivity/run.ts) over checks and an environment of this file's
 * own: deadlines, setup failures, cleanup in every case, the report.
 * The checks themselves run against real labs: test/e2e/lab-connectivity.test.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { Service } from 'kubernetes-models/v1/Service';
import { EndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1/EndpointSlice';
import { inCidr, testServiceSpecs } from '../../src/connectivity/services.js';
import { LabEnvironment, isTestObject, labTestObjects } from '../../src/connectivity/lab.js';
import { formatCheck, formatSummary, runConnectivityTest, selectChecks, waitProgrammed } from '../../src/connectivity/run.js';
import { CHECKS, type Check } from '../../src/connectivity/checks.js';
import type { ConnectivityEnv, DeployedService, EnvPod } from '../../src/connectivity/env.js';
import { labManifests } from '../../src/lab/manifests.js';
import { editObjects } from '../../src/demo/manifests.js';
import { waitFor } from '../../src/util/wait.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const pod = (name: string, node: string, ip: string): EnvPod => ({ name, namespace: 'default', node, ip });
const servers = [pod('n1p1', 'node1', '198.19.1.11'), pod('n1p2', 'node1', '198.19.1.12'), pod('n2p1', 'node2', '198.19.2.11'), pod('n2p2', 'node2', '198.19.2.12')];
const clients = [pod('n1p3', 'node1', '198.19.1.13'), pod('n2p3', 'node2', '198.19.2.13')];
const nodes = [
  { name: 'node1', ip: '198.18.0.11', api: 'unix:/nonexistent/node1.sock' },
  { name: 'node2', ip: '198.18.0.12', api: 'unix:/nonexistent/node2.sock' },
];

describe('the test services', () => {
  test('source ranges leave the outside client out of the denied service and in the allowed one; Local is the first node only; hairpin is the first client', () => {
    const specs = testServiceSpecs({ servers, clients, nodes, outside: { name: 'client', ip: '198.18.1.2' } });
    const by = new Map(specs.map((s) => [s.name, s]));
    assert.deepEqual([...by.keys()], ['xlb-ct-echo', 'xlb-ct-affinity', 'xlb-ct-denied', 'xlb-ct-allowed', 'xlb-ct-local', 'xlb-ct-hairpin']);
    assert.deepEqual(by.get('xlb-ct-denied')!.sourceRanges, ['203.0.113.0/24']);
    assert.deepEqual(by.get('xlb-ct-allowed')!.sourceRanges, ['198.18.1.2/32']);
    assert.deepEqual(by.get('xlb-ct-local')!.backends.map((b) => b.name), ['n1p1', 'n1p2']);
    assert.equal(by.get('xlb-ct-local')!.externalTrafficPolicy, 'Local');
    assert.equal(by.get('xlb-ct-affinity')!.sessionAffinity, 'ClientIP');
    assert.deepEqual(by.get('xlb-ct-hairpin')!.backends, [clients[0]]);
    // An outside client inside the first documentation range gets the second one.
    const inside = testServiceSpecs({ servers, clients, nodes, outside: { name: 'client', ip: '203.0.113.7' } });
    assert.deepEqual(inside.find((s) => s.name === 'xlb-ct-denied')!.sourceRanges, ['198.51.100.0/24']);
    assert.ok(inCidr('203.0.113.7', '203.0.113.0/24') && !inCidr('198.18.1.2', '203.0.113.0/24'), 'inCidr');
  });

  test("the lab's objects: valid Services and EndpointSlices, on addresses and node ports nothing else uses", () => {
    const specs = testServiceSpecs({ servers, clients, nodes, outside: { name: 'client', ip: '198.18.1.2' } });
    const others: Obj[] = [
      { kind: 'Service', metadata: { name: 'taken', namespace: 'default' }, spec: { type: 'LoadBalancer', clusterIP: '198.18.128.240', ports: [{ port: 80, nodePort: 32700 }], healthCheckNodePort: 32701 }, status: { loadBalancer: { ingress: [{ ip: '192.0.2.240' }] } } },
      { kind: 'Service', metadata: { name: 'other', namespace: 'default' }, spec: { type: 'ClusterIP', clusterIP: '198.18.128.242', externalIPs: ['192.0.2.241'] } },
    ];
    const { objects, services } = labTestObjects(specs, others);
    const echo = services.find((s) => s.spec.name === 'xlb-ct-echo')!;
    assert.deepEqual([echo.clusterIP, echo.vip, echo.nodePorts], ['198.18.128.241', '192.0.2.242', { http: 32702, udp: 32703 }]);
    const all = services.flatMap((s) => [s.clusterIP, s.vip].filter(Boolean));
    assert.equal(new Set(all).size, all.length, 'every address once');
    assert.ok(!all.some((a) => ['198.18.128.240', '198.18.128.242', '192.0.2.240', '192.0.2.241'].includes(a!)), `taken addresses left alone: ${all}`);
    assert.equal(services.find((s) => s.spec.name === 'xlb-ct-hairpin')!.vip, undefined, 'a ClusterIP service has no VIP');
    assert.deepEqual(services.find((s) => s.spec.name === 'xlb-ct-hairpin')!.nodePorts, {}, 'nor node ports');
    for (const o of objects) {
      (o.kind === 'Service' ? new Service(o as never) : new EndpointSlice(o as never)).validate();
      assert.ok(isTestObject(o), `${o.kind} ${o.metadata.name} is a test object`);
    }
    const denied = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'xlb-ct-denied')!;
    assert.deepEqual(denied.spec.loadBalancerSourceRanges, ['203.0.113.0/24']);
    const affinity = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'xlb-ct-affinity')!;
    assert.deepEqual([affinity.spec.sessionAffinity, affinity.spec.sessionAffinityConfig], ['ClientIP', { clientIP: { timeoutSeconds: 10800 } }]);
    const localSlice = objects.find((o) => o.kind === 'EndpointSlice' && o.metadata.labels['kubernetes.io/service-name'] === 'xlb-ct-local')!;
    assert.deepEqual(localSlice.endpoints.map((e: Obj) => [e.addresses[0], e.nodeName]), [['198.19.1.11', 'node1'], ['198.19.1.12', 'node1']]);
    assert.ok(!isTestObject(others[0]) && !isTestObject({ kind: 'Service', metadata: { name: 'xlb-ct-echo', namespace: 'kube-system' } }), 'other objects are not');
  });
});

const made: string[] = [];
after(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** A lab state directory with a lab.json and the lab's generated manifests (no namespaces, no agents). */
function fakeLab(): { dir: string; manifests: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-ct-'));
  made.push(dir);
  const manifests = path.join(dir, 'manifests.yaml');
  const pods = [...servers, ...clients].map((p) => ({ name: p.name, ip: p.ip, node: p.node }));
  fs.writeFileSync(manifests, labManifests(servers.map((p) => ({ name: p.name, ip: p.ip, node: p.node })), [{ name: 'n1dns', ip: '198.19.1.2', node: 'node1', namespace: 'kube-system' }]));
  const state = {
    suffix: 'test',
    announce: 'static',
    stateDir: dir,
    client: 'xlb-client-test',
    clientIp: '198.18.1.2',
    router: 'xlb-router-test',
    fabric: 'xlb-fabric-test',
    manifests,
    cgroup: '/nonexistent',
    nodes: nodes.map((n) => ({ ...n, netns: `xlb-${n.name}-test`, mac: '', agentPid: null, hubble: '', podCidr: '', cgroup: '', hostCgroup: '' })),
    pods: pods.map((p) => ({ ...p, netns: `xlb-${p.name}-test`, pid: null, cgroup: '' })),
    clusterDns: { clusterIP: '198.18.128.53', pods: [] },
    namespaces: [],
    pids: [],
    cgroups: [],
    etcNetns: [],
  };
  fs.writeFileSync(path.join(dir, 'lab.json'), JSON.stringify(state));
  return { dir, manifests };
}

const names = (file: string) => (parseAllDocuments(fs.readFileSync(file, 'utf8'))[0].toJS().items as Obj[]).map((o) => `${o.kind}/${o.metadata.name}`);

describe('the lab environment', () => {
  test("clients are each node's last pod, servers the others; DNS is default/web; the outside is the lab's client", async () => {
    const { dir } = fakeLab();
    const env = await LabEnvironment.open(dir);
    assert.deepEqual(env.clients.map((p) => p.name), ['n1p3', 'n2p3']);
    assert.deepEqual(env.servers.map((p) => p.name), ['n1p1', 'n1p2', 'n2p1', 'n2p2']);
    assert.deepEqual(env.dnsTarget, { name: 'default/web', fqdn: 'web.default.svc.cluster.local', clusterIP: '198.18.128.10', port: 80 });
    assert.deepEqual(env.outside, { name: 'client', ip: '198.18.1.2' });
    assert.equal(env.description, `lab ${dir} (2 nodes)`);
  });

  test('deploy adds the test services; cleanup puts the file back byte for byte and releases the lock', async () => {
    const { dir, manifests } = fakeLab();
    const before = fs.readFileSync(manifests, 'utf8');
    const env = await LabEnvironment.open(dir);
    const services = await env.deploy(testServiceSpecs(env));
    assert.equal(services.length, 6);
    assert.ok(names(manifests).includes('Service/xlb-ct-echo') && names(manifests).includes('Service/web'), names(manifests).join(' '));
    assert.equal(fs.readFileSync(path.join(dir, 'connectivity.lock'), 'utf8').trim(), String(process.pid));
    await env.cleanup();
    assert.equal(fs.readFileSync(manifests, 'utf8'), before);
    assert.ok(!fs.existsSync(path.join(dir, 'connectivity.lock')), 'lock released');
    await env.cleanup(); // twice: nothing to do
    assert.equal(fs.readFileSync(manifests, 'utf8'), before);
  });

  test('an edit made during the run is kept: cleanup then takes out only the test services', async () => {
    const { dir, manifests } = fakeLab();
    const env = await LabEnvironment.open(dir);
    await env.deploy(testServiceSpecs(env));
    editObjects(manifests, (objects) => objects.filter((o) => !(o.kind === 'Service' && o.metadata.name === 'mixed')));
    await env.cleanup();
    const after = names(manifests);
    assert.ok(!after.some((n) => n.includes('xlb-ct-')), after.join(' '));
    assert.ok(after.includes('Service/web') && !after.includes('Service/mixed'), `the edit stays: ${after.join(' ')}`);
  });

  test("test services a killed run left are replaced, and not put back afterwards", async () => {
    const { dir, manifests } = fakeLab();
    const first = await LabEnvironment.open(dir);
    await first.deploy(testServiceSpecs(first));
    // The first run dies without cleaning up; its lock names a process that is gone.
    const gone = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => gone.on('exit', r));
    fs.writeFileSync(path.join(dir, 'connectivity.lock'), `${gone.pid}\n`);
    const second = await LabEnvironment.open(dir);
    await second.deploy(testServiceSpecs(second));
    assert.equal(names(manifests).filter((n) => n === 'Service/xlb-ct-echo').length, 1, 'one set of test services');
    await second.cleanup();
    assert.deepEqual(names(manifests).filter((n) => n.includes('xlb-ct-')), []);
    assert.ok(names(manifests).includes('Service/web'), 'the lab\'s own services stay');
  });

  test('a second run on the same lab is refused while the first one lives', async () => {
    const { dir } = fakeLab();
    // The parent process (the test runner) stands in for a running test.
    fs.writeFileSync(path.join(dir, 'connectivity.lock'), `${process.ppid}\n`);
    const env = await LabEnvironment.open(dir);
    await assert.rejects(env.deploy(testServiceSpecs(env)), new RegExp(`another xlb connectivity test \\(pid ${process.ppid}\\) is running`));
    assert.equal(fs.readFileSync(path.join(dir, 'connectivity.lock'), 'utf8').trim(), String(process.ppid), "the other run's lock stays");
  });
});

/** An environment that records deploy and cleanup, whose agents program whatever was deployed. */
function fakeEnv(opts: { deployFails?: boolean; programmed?: boolean } = {}) {
  const calls: string[] = [];
  let deployed: DeployedService[] = [];
  const env: ConnectivityEnv = {
    description: 'fake',
    announce: 'static',
    nodes,
    clients,
    servers,
    outside: { name: 'client', ip: '198.18.1.2' },
    exec: async () => ({ status: 0, stdout: '', stderr: '' }),
    agent: async (_n, p) => {
      assert.equal(p, '/v1/services');
      if (opts.programmed === false) return { services: [] };
      return {
        services: deployed.flatMap((s) =>
          s.spec.ports.map((p) => ({ namespace: s.namespace, name: s.spec.name, port: p.name, frontends: [{ addr: s.clusterIP, port: p.port, served: true }], readyBackends: s.spec.backends.length })),
        ),
      };
    },
    deploy: async (specs) => {
      calls.push('deploy');
      if (opts.deployFails) throw new Error('the manifests file is not writable');
      deployed = labTestObjects(specs, []).services;
      return deployed;
    },
    settle: async () => {
      calls.push('settle');
    },
    cleanup: async () => {
      calls.push('cleanup');
    },
  };
  return { env, calls };
}

const check = (name: string, run: Check['run'], timeoutMs = 1000): Check => ({ name, description: name, timeoutMs, run });

describe('the runner', () => {
  test('one result a check, in order; a check that throws or passes its deadline fails; cleanup runs; the summary counts', async () => {
    const { env, calls } = fakeEnv();
    const seen: string[] = [];
    let stoppedLooping = false;
    const checks = [
      check('a/pass', async () => ({ status: 'pass', detail: 'fine' })),
      check('a/fail', async () => ({ status: 'fail', detail: 'n1p3 → 198.18.128.240:80: curl: (7) refused' })),
      check('b/skip', async () => ({ status: 'skip', detail: 'one node only' })),
      check('b/throws', async () => {
        throw new Error('agent API unix:/x: no answer');
      }),
      check(
        'c/hangs',
        async (ctx) => {
          while (!ctx.expired()) await new Promise((r) => setTimeout(r, 5));
          stoppedLooping = true;
          return { status: 'pass', detail: 'too late' };
        },
        50,
      ),
    ];
    const report = await runConnectivityTest(env, { checks, onCheck: (r) => seen.push(r.name) });
    assert.deepEqual(seen, checks.map((c) => c.name));
    assert.deepEqual(
      report.checks.map((c) => [c.name, c.status, c.detail]),
      [
        ['a/pass', 'pass', 'fine'],
        ['a/fail', 'fail', 'n1p3 → 198.18.128.240:80: curl: (7) refused'],
        ['b/skip', 'skip', 'one node only'],
        ['b/throws', 'fail', 'agent API unix:/x: no answer'],
        ['c/hangs', 'fail', 'timed out after 0.05 s'],
      ],
    );
    assert.deepEqual([report.ok, report.passed, report.failed, report.skipped], [false, 1, 3, 1]);
    assert.deepEqual(calls, ['deploy', 'settle', 'cleanup']);
    await waitFor(() => stoppedLooping, 1000, 'the timed-out check to see expired() and stop');
    assert.deepEqual(formatSummary(report), ['1 passed, 3 failed, 1 skipped']);
    assert.equal(formatCheck(report.checks[1]), '✗ a/fail                       n1p3 → 198.18.128.240:80: curl: (7) refused');
    assert.equal(formatCheck(report.checks[2]), '- b/skip                       skipped: one node only');
  });

  test('--test selects by name; a filter that matches nothing is an error listing the checks', async () => {
    assert.deepEqual(selectChecks(/^source-ranges\//).map((c) => c.name), ['source-ranges/denied', 'source-ranges/allowed']);
    assert.equal(selectChecks(undefined).length, CHECKS.length);
    assert.throws(() => selectChecks(/^nothing$/), /no check matches \/\^nothing\$\/: the checks are pod-to-clusterip\/tcp, /);
    const { env } = fakeEnv();
    const report = await runConnectivityTest(env, { checks: [check('x/one', async () => ({ status: 'pass', detail: '' })), check('y/two', async () => ({ status: 'pass', detail: '' }))], filter: /^y\// });
    assert.deepEqual(report.checks.map((c) => c.name), ['y/two']);
    assert.equal(report.ok, true);
  });

  test('a deploy that fails, or services never programmed: setupError, no check run, cleanup still runs, not ok', async () => {
    const broken = fakeEnv({ deployFails: true });
    const r1 = await runConnectivityTest(broken.env, { checks: [check('a', async () => ({ status: 'pass', detail: '' }))] });
    assert.deepEqual([r1.ok, r1.setupError, r1.checks.length], [false, 'the manifests file is not writable', 0]);
    assert.deepEqual(broken.calls, ['deploy', 'cleanup']);
    assert.deepEqual(formatSummary(r1), ['✗ setup: the manifests file is not writable', '0 passed, 0 failed']);
    const unprogrammed = fakeEnv({ programmed: false });
    const r2 = await runConnectivityTest(unprogrammed.env, { checks: [check('a', async () => ({ status: 'pass', detail: '' }))], setupTimeoutMs: 100 });
    assert.match(r2.setupError ?? '', /timed out after 100 ms waiting for every agent to program the test services: node1 has not programmed default\/xlb-ct-echo:http/);
    assert.deepEqual(unprogrammed.calls, ['deploy', 'cleanup']);
  });

  test('waitProgrammed names a node whose backends are not all ready', async () => {
    const { env } = fakeEnv();
    const services = await env.deploy(testServiceSpecs(env));
    const partly: ConnectivityEnv = {
      ...env,
      agent: async (n) => {
        const r = (await env.agent(n, '/v1/services')) as { services: Array<{ name: string; readyBackends: number }> };
        if (n.name === 'node2') for (const s of r.services) if (s.name === 'xlb-ct-affinity') s.readyBackends = 3;
        return r;
      },
    };
    await assert.rejects(waitProgrammed(partly, services, 100), /node2 has 3 of 4 backends of default\/xlb-ct-affinity:http ready/);
  });
});

describe('the command', () => {
  test('--list prints every check; a --test that matches nothing exits 1 before touching anything', () => {
    const xlb = path.join(repo, 'bin/xlb.js');
    const list = execFileSync(process.execPath, [xlb, 'connectivity', 'test', '--list'], { encoding: 'utf8' });
    assert.deepEqual(list.trim().split('\n').map((l) => l.split(/\s+/)[0]), CHECKS.map((c) => c.name));
    let failed: { status: number; stderr: string } | undefined;
    try {
      execFileSync(process.execPath, [xlb, 'connectivity', 'test', '--lab', '/nonexistent', '--test', '^nothing$'], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      failed = e as { status: number; stderr: string };
    }
    assert.equal(failed?.status, 1);
    assert.match(failed!.stderr, /no check matches/);
  });
});

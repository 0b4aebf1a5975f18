/**
 * `xlb connectivity test` against real labs, run as the command a user
 * runs (a child process):
 *
 * - in a healthy BGP lab every check passes and it exits 0, and the test
 *   services are gone from the manifests file and from the agents afterwards;
 * - Ctrl-C in the middle removes them too;
 * - with node2's XDP program removed (`ip link set dev eth0 xdp off`, what
 *   anyone with root on the node can do), the checks whose traffic enters
 *   node2 from outside fail and name node2's address, the checks that stay
 *   inside the nodes (socket hooks) still pass, and it exits 1;
 * - in a layer 2 lab the LoadBalancer checks pass through the VIPs' ARP owners.
 *
 * One lab at a time: the BGP lab is down before the layer 2 lab comes up.
 *
 * Run as root: node --import tsx --test --test-concurrency=1 test/e2e/lab-connectivity.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { labDown, labUp, type LabStatus } from '../../src/lab/index.js';
import { ipn } from '../../src/lab/sh.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';
import { CHECKS } from '../../src/connectivity/checks.js';
import type { ConnectivityReport } from '../../src/connectivity/run.js';

const xlb = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/xlb.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Start `xlb ARGS...`; `stdout()` is its output so far, `done` resolves with its exit code and output. */
function start(args: string[]): { child: ChildProcess; stdout: () => string; done: Promise<Run> } {
  const child = spawn(process.execPath, [xlb, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c) => (stdout += c));
  child.stderr!.on('data', (c) => (stderr += c));
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, stdout: () => stdout, done };
}

/** The test services (xlb-ct-*) an agent still programs. */
async function testServicesOn(api: string): Promise<string[]> {
  const r = (await apiGet(api, '/v1/services')) as { services: Array<{ name: string }> };
  return r.services.map((s) => s.name).filter((n) => n.startsWith('xlb-ct-'));
}

/** Text output: each check's mark, name and detail. */
function parseLines(stdout: string): Map<string, { mark: string; detail: string }> {
  const out = new Map<string, { mark: string; detail: string }>();
  for (const m of stdout.matchAll(/^([✓✗-]) (\S+) +(.*)$/gm)) out.set(m[2], { mark: m[1], detail: m[3] });
  return out;
}

describe('a BGP lab', () => {
  const stateDir = `/run/xlb-test-ct-${randomBytes(3).toString('hex')}`;
  let lab: LabStatus;

  before(async () => {
    lab = await labUp({ nodes: 2, podsPerNode: 3, stateDir });
  });

  after(async () => {
    await labDown(stateDir);
  });

  test('every check passes, it exits 0, and the test services are gone afterwards', async () => {
    const manifests = fs.readFileSync(lab.manifests, 'utf8');
    const r = await start(['connectivity', 'test', '--lab', stateDir, '-o', 'json']).done;
    const report = JSON.parse(r.stdout) as ConnectivityReport;
    const failed = report.checks.filter((c) => c.status !== 'pass').map((c) => `${c.name}: ${c.status} ${c.detail}`);
    assert.deepEqual(failed, [], 'no check failed or was skipped');
    assert.equal(r.code, 0, `exit status (stderr: ${r.stderr})`);
    assert.equal(report.ok, true, JSON.stringify({ setup: report.setupError, cleanup: report.cleanupError }));
    assert.deepEqual(report.checks.map((c) => c.name), CHECKS.map((c) => c.name), 'every check ran, in order');
    assert.deepEqual([report.passed, report.failed, report.skipped], [CHECKS.length, 0, 0]);
    assert.equal(report.announce, 'bgp');
    const lb = report.checks.find((c) => c.name === 'outside-to-loadbalancer/tcp')!;
    assert.match(lb.detail, /through BGP, announced by node1, node2/, 'the report says how the VIP is reached');
    const local = report.checks.find((c) => c.name === 'traffic-policy-local')!;
    assert.match(local.detail, new RegExp(`announced by node1;.*saw ${lab.clientIp.replaceAll('.', '\\.')}; node2 did not serve`), local.detail);
    const denied = report.checks.find((c) => c.name === 'source-ranges/denied')!;
    assert.match(denied.detail, /node\d dropped it \(source_range\)/, denied.detail);
    assert.equal(fs.readFileSync(lab.manifests, 'utf8'), manifests, 'the manifests file is as it was');
    assert.ok(!fs.existsSync(path.join(stateDir, 'connectivity.lock')), 'the lock is released');
    for (const n of lab.nodes) await waitFor(async () => (await testServicesOn(n.api)).length === 0, 10000, `${n.name} to drop the test services`);
  });

  test('Ctrl-C removes the test services and exits 130', async () => {
    const manifests = fs.readFileSync(lab.manifests, 'utf8');
    const run = start(['connectivity', 'test', '--lab', stateDir]);
    // Interrupted once the agents serve the test services and the first check has reported.
    await waitFor(() => /^[✓✗] pod-to-clusterip\/tcp/m.test(run.stdout()), 60000, 'the first check to report');
    assert.match(fs.readFileSync(lab.manifests, 'utf8'), /name: xlb-ct-echo/, 'the test services are deployed');
    run.child.kill('SIGINT');
    const r = await run.done;
    assert.equal(r.code, 130, `exit status (stderr: ${r.stderr})`);
    assert.match(r.stderr, /SIGINT: test services removed/);
    assert.equal(fs.readFileSync(lab.manifests, 'utf8'), manifests, 'the manifests file is as it was');
    assert.ok(!fs.existsSync(path.join(stateDir, 'connectivity.lock')), 'the lock is released');
  });

  test("without node2's XDP program, the paths into node2 from outside fail, naming its address; the rest pass; exit 1", async () => {
    const node2 = lab.nodes[1];
    await ipn(node2.netns, 'link', 'set', 'dev', 'eth0', 'xdp', 'off');
    const r = await start(['connectivity', 'test', '--lab', stateDir]).done;
    assert.equal(r.code, 1, `exit status (stdout: ${r.stdout}, stderr: ${r.stderr})`);
    const lines = parseLines(r.stdout);
    assert.deepEqual([...lines.keys()], CHECKS.map((c) => c.name), `one line a check:\n${r.stdout}`);
    const failed = [...lines].filter(([, l]) => l.mark === '✗').map(([name]) => name);
    // Deterministic: each of these sends to node2's own address from outside node2.
    for (const name of ['pod-to-nodeport/other-node', 'outside-to-nodeport', 'session-affinity/outside']) {
      const l = lines.get(name)!;
      assert.equal(l.mark, '✗', `${name} fails:\n${r.stdout}`);
      assert.match(l.detail, new RegExp(`${node2.ip.replaceAll('.', '\\.')}:\\d+: curl: \\(\\d+\\)`), `${name} names node2's address and what curl got`);
    }
    // These go through the router's ECMP to both nodes: they fail unless every connection happened to go to node1.
    const mayFail = new Set(['pod-to-nodeport/other-node', 'outside-to-nodeport', 'session-affinity/outside', 'outside-to-loadbalancer/tcp', 'outside-to-loadbalancer/udp', 'source-ranges/allowed', 'source-ranges/denied']);
    assert.deepEqual(failed.filter((n) => !mayFail.has(n)), [], `only paths through node2's XDP fail:\n${r.stdout}`);
    // Inside the nodes (socket hooks), and the Local service whose only endpoint and announcement are node1's.
    for (const name of ['pod-to-clusterip/tcp', 'pod-to-clusterip/udp', 'pod-to-nodeport/same-node', 'host-to-clusterip', 'hairpin', 'dns', 'session-affinity/pod', 'traffic-policy-local']) {
      assert.equal(lines.get(name)?.mark, '✓', `${name} passes:\n${r.stdout}`);
    }
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(r.stdout);
    assert.ok(summary, `a summary line:\n${r.stdout}`);
    assert.deepEqual([Number(summary[1]), Number(summary[2])], [CHECKS.length - failed.length, failed.length]);
  });
});

describe('a layer 2 lab', () => {
  const stateDir = `/run/xlb-test-ct-l2-${randomBytes(3).toString('hex')}`;

  before(async () => {
    await labUp({ nodes: 2, podsPerNode: 2, stateDir, announce: 'l2' });
  });

  after(async () => {
    await labDown(stateDir);
  });

  test('the LoadBalancer checks pass through the node that answers ARP for each VIP', async () => {
    const r = await start(['connectivity', 'test', '--lab', stateDir, '--test', '^(outside-to-loadbalancer|source-ranges|traffic-policy-local)', '-o', 'json']).done;
    const report = JSON.parse(r.stdout) as ConnectivityReport;
    assert.deepEqual(
      report.checks.map((c) => [c.name, c.status]),
      [
        ['outside-to-loadbalancer/tcp', 'pass'],
        ['outside-to-loadbalancer/udp', 'pass'],
        ['source-ranges/denied', 'pass'],
        ['source-ranges/allowed', 'pass'],
        ['traffic-policy-local', 'pass'],
      ],
      r.stdout,
    );
    assert.equal(r.code, 0);
    assert.match(report.checks[0].detail, /through layer 2, node\d answers ARP/);
    assert.match(report.checks[4].detail, /through layer 2, node1 answers ARP/, 'the only node with a local endpoint owns the Local VIP');
  });
});

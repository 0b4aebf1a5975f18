/**
 * `xlb status` (src/cli/status.ts) over agents' API answers, `xlb
 * completion bash` (src/cli/completion.ts) run in a real bash, and `xlb
 * --version`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentStatus, notReady, statusRow, waitReady, type AgentStatus } from '../../src/cli/status.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const xlb = path.join(repo, 'bin/xlb.js');

/** An agent's API as a table of answers by path (a missing path: unreachable). */
function fakeApi(answers: Record<string, unknown>) {
  return async (_api: string, p: string) => {
    if (!(p in answers)) throw new Error(`connect ENOENT ${p}`);
    return answers[p];
  };
}

const healthy = {
  '/readyz': { status: 'ready' },
  '/v1/node': { name: 'node1', addresses: ['198.18.0.11'] },
  '/v1/datapath': { attachments: [{ interface: 'eth0', hook: 'xdp' }, { interface: 'eth0', hook: 'tc-egress' }, { hook: 'cgroup/connect4' }], drops: { no_backend: '3', source_range: '0' } },
  '/v1/services': { services: [{}, {}, {}] },
  '/v1/bgp': { peers: [{ address: '198.18.0.1', state: 'established' }] },
  '/v1/l2': { error: 'l2_disabled' },
  '/v1/kubernetes': { ipam: { leader: 'node1', pools: [{ pool: 'default', size: 254, used: 3 }] } },
};

test('a ready agent: its programs, services, BGP sessions, IPAM pools and non-zero drops; nothing not ready', async () => {
  const s = await agentStatus('unix:/x.sock', '', fakeApi(healthy));
  assert.deepEqual(
    { node: s.node, ready: s.ready, programs: s.programs, services: s.services, bgp: s.bgp, l2: s.l2, ipam: s.ipam, drops: s.drops },
    {
      node: 'node1',
      ready: true,
      programs: ['xdp@eth0', 'tc-egress@eth0', 'cgroup/connect4'],
      services: 3,
      bgp: { established: 1, peers: 1, down: [] },
      l2: undefined,
      ipam: { leader: 'node1', pools: [{ pool: 'default', size: 254, used: 3 }] },
      drops: { no_backend: '3' },
    },
  );
  assert.deepEqual(notReady(s), []);
  assert.deepEqual(statusRow(s), { node: 'node1', ready: 'yes', programs: '3', services: '3', bgp: '1/1 established', l2: '-', ipam: 'default 3/254' });
});

test('not ready: an agent not ready, a BGP session down, a VIP without an owner, an agent that does not answer', async () => {
  const s = await agentStatus(
    'unix:/x.sock',
    'n2',
    fakeApi({
      ...healthy,
      '/readyz': { status: 'not ready' },
      '/v1/node': { name: 'node2' },
      '/v1/bgp': { peers: [{ address: '198.18.0.1', state: 'active' }] },
      '/v1/l2': { vips: [{ vip: '192.0.2.10', owner: 'node2', local: true }, { vip: '192.0.2.11', owner: null, local: false }] },
    }),
  );
  assert.deepEqual(notReady(s), ['node2: not ready (first sync not programmed)', 'node2: BGP session with 198.18.0.1 not Established', 'node2: no node answers ARP for 192.0.2.11']);
  assert.equal(statusRow(s).l2, '1 of 2 VIPs here');
  const gone = await agentStatus('unix:/gone.sock', 'node3', fakeApi({}));
  assert.equal(gone.reachable, false);
  assert.match(notReady(gone)[0], /^node3: API unix:\/gone\.sock does not answer \(connect ENOENT/);
});

test('--wait polls until every agent is ready, or its time is up', async () => {
  let reads = 0;
  const at = (ready: boolean): AgentStatus => ({ node: 'n', api: 'a', reachable: true, ready, programs: [], services: 0, drops: {} });
  const all = await waitReady(async () => [at(++reads >= 3)], 10_000, 1);
  assert.deepEqual([reads, all[0].ready], [3, true]);
  const late = await waitReady(async () => [at(false)], 0, 1);
  assert.equal(late[0].ready, false, 'the last status read when time is up');
});

test('xlb --version prints the package version', () => {
  const version = (JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string }).version;
  assert.equal(execFileSync(process.execPath, [xlb, '--version'], { encoding: 'utf8' }).trim(), `xlb ${version}`);
});

test('xlb completion bash completes commands, subcommands and options in a real bash', () => {
  const script = execFileSync(process.execPath, [xlb, 'completion', 'bash'], { encoding: 'utf8' });
  const complete = (line: string) => {
    const words = line.split(' ');
    const prog = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _xlb_completion; printf '%s\\n' "\${COMPREPLY[@]}"`;
    return execFileSync('bash', ['-c', prog], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();
  };
  assert.ok(complete('xlb st').includes('status'), 'xlb st → status');
  assert.deepEqual(complete('xlb ct '), ['--help', 'list']);
  assert.ok(complete('xlb ct list --d').includes('--dst'), 'options of xlb ct list');
  assert.ok(complete('xlb observe --api unix:/x --ver').includes('--verdict'), 'an option value does not end the command path');
  assert.throws(() => execFileSync(process.execPath, [xlb, 'completion', 'zsh'], { stdio: 'pipe' }), /only bash is supported/);
});

test('--kubernetes: every agent pod, read through the API server’s pod proxy at its metrics listener; a pod that does not answer makes the status not ready', async () => {
  const { FakeApiServer } = await import('../helpers/fake-apiserver.js');
  const { createMetrics } = await import('../../src/metrics/metrics.js');
  const http = await import('node:http');
  const { spawn } = await import('node:child_process');
  // node1's agent: its real metrics registry, with BGP established, one VIP owned, the IPAM leader's pools.
  const m = createMetrics({
    services: () => [],
    maps: () => undefined,
    issueCount: () => 0,
    ready: () => true,
    attachments: () => [{ hook: 'xdp', interface: 'eth0' }, { hook: 'tc-egress', interface: 'eth0' }, { hook: 'cgroup/connect4', interface: '/run/xlb/cgroupv2' }],
    bgp: () => ({ peers: [{ address: '198.18.0.1', state: 'established', flaps: 0 }], announced: [], pending: [], counters: { gobgpdRestarts: 0 } }) as never,
    l2: () =>
      ({
        vips: [{ vip: '192.0.2.10', service: 'default/web', local: true }, { vip: '192.0.2.11', service: 'default/dns', local: false }],
        peers: [],
        counters: { garpSent: 0, ownedVips: 1, takeoversTotal: 0 },
      }) as never,
  });
  const metrics = http.createServer(async (req, res) => {
    if (req.url !== '/metrics') return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': m.registry.contentType }).end(await m.registry.metrics());
  });
  await new Promise<void>((r) => metrics.listen(0, '127.0.0.1', r));
  const port = (metrics.address() as { port: number }).port;
  const api = await FakeApiServer.start();
  try {
    const pod = (name: string, node: string, ip: string) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: 'xlb-system', labels: { 'app.kubernetes.io/name': 'xlb' } },
      spec: { nodeName: node },
      status: { phase: 'Running', podIP: ip },
    });
    api.upsert('pods', pod('xlb-a', 'node1', '127.0.0.1'));
    // node2's pod has an address where nothing listens.
    api.upsert('pods', pod('xlb-b', 'node2', '127.0.0.2'));
    api.upsert('pods', { ...pod('other', 'node1', '127.0.0.1'), metadata: { name: 'other', namespace: 'xlb-system', labels: { app: 'other' } } });
    const run = () =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [xlb, 'status', '--kubernetes', '--kubeconfig', api.kubeconfigPath, '--metrics-port', String(port), '-o', 'json']);
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.on('close', (code) => resolve({ code, out }));
      });
    const r = await run();
    assert.equal(r.code, 1, r.out);
    const doc = JSON.parse(r.out) as { ok: boolean; problems: string[]; agents: AgentStatus[] };
    assert.deepEqual(doc.agents.map((a) => a.node), ['node1', 'node2'], 'the agent pods only, by node');
    const [n1, n2] = doc.agents;
    assert.deepEqual(
      { ready: n1.ready, programs: n1.programs.sort(), bgp: n1.bgp, l2: n1.l2 && { owned: n1.l2.owned, vips: n1.l2.vips, unowned: n1.l2.unowned } },
      { ready: true, programs: ['cgroup/connect4', 'tc-egress', 'xdp'], bgp: { established: 1, peers: 1, down: [] }, l2: { owned: ['192.0.2.10'], vips: 2, unowned: ['192.0.2.11'] } },
    );
    assert.equal(n2.reachable, false);
    assert.ok(doc.problems.some((p) => p.startsWith('node2: API pod xlb-system/xlb-b')), doc.problems.join('; '));
    assert.ok(doc.problems.includes('node1: no node answers ARP for 192.0.2.11'), doc.problems.join('; '));
    // With node2 gone, the one left is ready but for the VIP nobody owns.
    api.remove('pods', 'xlb-system', 'xlb-b');
    const again = JSON.parse((await run()).out) as { problems: string[] };
    assert.deepEqual(again.problems, ['node1: no node answers ARP for 192.0.2.11']);
  } finally {
    await api.close();
    metrics.close();
  }
});

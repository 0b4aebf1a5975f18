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

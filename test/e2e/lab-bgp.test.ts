/**
 * BGP end to end in the lab: every node's agent announces its VIPs through
 * its own gobgpd to the router's BIRD, which installs ECMP routes; traffic
 * from the client follows them. One lab for the file, torn down in `after`.
 *
 * An agent restart (SIGTERM, kill -9) keeps gobgpd running and the next
 * agent adopts it: BIRD sees no flap and no withdraw (the session's Since,
 * the routes' times and the withdraws received stay the same).
 *
 * Run as root: node --import tsx --test test/e2e/lab-bgp.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { labDown, labExec, labKillAgent, labRoutes, labStartAgent, labStopAgent, labUp, type LabRoute, type LabStatus } from '../../src/lab/index.js';
import { birdc } from '../../src/lab/bird.js';
import { processRunning, stopKeptGobgpd } from '../../src/bgp/gobgpd.js';
import path from 'node:path';
import { service, slice } from '../../src/lab/manifests.js';
import { editObjects } from '../../src/demo/manifests.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';
import { ipn } from '../../src/lab/sh.js';
import type { BgpStatus } from '../../src/bgp/announcer.js';
import { checkMetrics } from '../helpers/promtool.js';

const stateDir = `/run/xlb-test-bgp-${randomBytes(3).toString('hex')}`;
let lab: LabStatus;

const routeOf = async (vip: string): Promise<LabRoute | undefined> => (await labRoutes(lab)).find((r) => r.vip === vip);
const bgpOf = async (node: number) => (await apiGet(lab.nodes[node].api, '/v1/bgp')) as BgpStatus;
const ms = (t0: number) => Math.round(performance.now() - t0);

/** A LoadBalancer service `name` on `vip`:80 over the given pods (HTTP on 8080). */
function addWebService(name: string, vip: string, pods: string[], policy: 'Cluster' | 'Local' = 'Cluster'): void {
  const backends = lab.pods.filter((p) => pods.includes(p.name)).map((p) => ({ name: p.name, ip: p.ip, node: p.node }));
  editObjects(lab.manifests, (objs) => [
    ...objs,
    service(name, { type: 'LoadBalancer', externalTrafficPolicy: policy, ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] }, { ingress: [{ ip: vip }] }),
    slice(name, [{ name: 'http', port: 8080, protocol: 'TCP' }], backends),
  ]);
}

function removeService(name: string): void {
  editObjects(lab.manifests, (objs) => objs.filter((o) => o.metadata?.name !== name && o.metadata?.labels?.['kubernetes.io/service-name'] !== name));
}

before(async () => {
  lab = await labUp({ nodes: 2, podsPerNode: 3, stateDir, announce: 'bgp' });
});

after(async () => {
  // An agent's SIGTERM leaves its gobgpd running (a restart): stop the agents, then their gobgpds, then the lab.
  for (const n of lab?.nodes ?? []) {
    await labStopAgent(stateDir, n.name).catch(() => undefined);
    await stopKeptGobgpd({ gobgpd: { apiSocket: path.join(stateDir, `${n.name}-gobgpd.sock`) } }).catch(() => undefined);
  }
  await labDown(stateDir);
});

/**
 * What a flap or a withdraw of `node`'s paths would change in BIRD: its
 * session's Since, the time of each of its routes, and the updates and
 * withdraws BIRD received from it.
 */
function birdViewOf(node: string): { since: string; routes: Record<string, string>; updates: number; withdraws: number } {
  const proto = birdc(lab.routerBirdSocket!, 'show', 'protocols', 'all', node);
  const since = new RegExp(`^${node}\\s+BGP\\s+\\S+\\s+up\\s+(\\S+)\\s+Established`, 'm').exec(proto)?.[1];
  const stats = /Import updates:\s+(\d+)[\s\S]*?Import withdraws:\s+(\d+)/.exec(proto);
  if (!since || !stats) throw new Error(`BIRD's session with ${node} is not Established:\n${proto}`);
  const routes: Record<string, string> = {};
  let prefix = '';
  for (const line of birdc(lab.routerBirdSocket!, 'show', 'route').split('\n')) {
    const m = /^(\d+\.\d+\.\d+\.\d+\/\d+)?\s+unicast \[(\S+) ([^\]]+)\]/.exec(line);
    if (m?.[1]) prefix = m[1];
    if (m && m[2] === node) routes[prefix] = m[3];
  }
  return { since, routes, updates: Number(stats[1]), withdraws: Number(stats[2]) };
}

/**
 * The same BIRD view: the same updates, withdraws and routes, and the same
 * times to within 50 ms (BIRD prints a stored time in milliseconds, and the
 * same time printed twice has been seen 1 ms apart; a flap moves it by the
 * seconds a session takes to come back).
 */
function assertSameBirdView(got: ReturnType<typeof birdViewOf>, want: ReturnType<typeof birdViewOf>, what: string): void {
  const ms = (t: string) => {
    const m = /^(\d+):(\d+):(\d+)(?:\.(\d+))?$/.exec(t);
    return m ? ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000 + Number((m[4] ?? '0').padEnd(3, '0').slice(0, 3)) : NaN;
  };
  const near = (a: string, b: string) => Math.abs(ms(a) - ms(b)) <= 50;
  assert.deepEqual([got.updates, got.withdraws, Object.keys(got.routes).sort()], [want.updates, want.withdraws, Object.keys(want.routes).sort()], `${what}: updates, withdraws and routes`);
  assert.ok(near(got.since, want.since), `${what}: session Since ${got.since}, was ${want.since}`);
  for (const [prefix, t] of Object.entries(want.routes)) assert.ok(near(got.routes[prefix], t), `${what}: ${prefix} since ${got.routes[prefix]}, was ${t}`);
}

/** Wait until node `i`'s agent has announced every lab VIP (its first setDesired after a start is done). */
async function announcedAll(i: number): Promise<void> {
  const vips = [...new Set(lab.services.filter((s) => s.vip.startsWith('192.0.2.')).map((s) => s.vip))].sort();
  await waitFor(
    async () => {
      const b = await bgpOf(i);
      return JSON.stringify(b.announced.map((a) => a.vip).sort()) === JSON.stringify(vips) && b.pending.length === 0;
    },
    15000,
    `node${i + 1} to announce ${vips.join(' ')}`,
  );
}

describe('BGP from the agents to the lab router (BIRD)', () => {
  test('the router learns every VIP from every node and installs one ECMP route per VIP, with no static route', async () => {
    const routes = await labRoutes(lab);
    const vips = [...new Set(lab.services.filter((s) => s.vip.startsWith('192.0.2.')).map((s) => s.vip))].sort();
    assert.deepEqual(routes.map((r) => r.vip), vips);
    for (const r of routes) {
      assert.deepEqual(r.from, ['node1', 'node2'], `${r.vip}: one path per node`);
      assert.deepEqual(r.kernelNextHops, lab.nodes.map((n) => n.ip).sort(), `${r.vip}: ECMP next hops in the router's kernel`);
    }
    assert.equal((await ipn(lab.router, 'route', 'show', '192.0.2.0/24')).trim(), '', 'no static route for the VIP range');
    for (const i of [0, 1]) {
      const b = await bgpOf(i);
      assert.equal(b.peers[0].state, 'established');
      assert.deepEqual(b.announced.map((a) => a.vip).sort(), vips);
      assert.ok(b.announced.every((a) => a.nextHop === lab.nodes[i].ip), 'next hop is the node itself');
    }
    const metrics = (await apiGet(lab.nodes[0].api, '/metrics')) as string;
    assert.match(metrics, /xlb_bgp_peer_up\{peer="198\.18\.0\.1"\} 1/);
    assert.match(metrics, new RegExp(`xlb_bgp_announced_prefixes ${vips.length}`));
    // The session's state as Prometheus sees it: established 1, every other state 0.
    const states = metrics.split('\n').filter((l) => l.startsWith('xlb_bgp_session_state{peer="198.18.0.1",'));
    assert.equal(states.length, 7, states.join('\n'));
    assert.deepEqual(states.filter((l) => !l.endsWith(' 0')), ['xlb_bgp_session_state{peer="198.18.0.1",state="established"} 1']);
    const r = checkMetrics(metrics);
    assert.equal(r.status, 0, `promtool check metrics:\n${r.output}`);
  });

  test('a new service: its VIP is in BIRD with a path per node within 5 s and HTTP reaches its backends', async () => {
    const t0 = performance.now();
    addWebService('extra', '192.0.2.20', ['n1p1', 'n2p1']);
    await waitFor(async () => (await routeOf('192.0.2.20'))?.kernelNextHops.length === 2, 5000, '192.0.2.20 with two paths');
    console.log(`# announce: ${ms(t0)} ms from the manifest write to the ECMP route in the router`);
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add((await labExec(lab.client, ['curl', '-s', '-m', '3', 'http://192.0.2.20/'])).split(' ')[0]);
    assert.deepEqual([...seen].sort(), ['n1p1', 'n2p1']);
  });

  test('deleting the service withdraws its VIP within 5 s; restoring it announces it again', async () => {
    let t0 = performance.now();
    removeService('extra');
    await waitFor(async () => (await routeOf('192.0.2.20')) === undefined, 5000, '192.0.2.20 withdrawn from BIRD');
    const withdrawMs = ms(t0);
    const kernel = await ipn(lab.router, 'route', 'show', '192.0.2.20');
    assert.equal(kernel.trim(), '', 'gone from the kernel table too');
    t0 = performance.now();
    addWebService('extra', '192.0.2.20', ['n1p1', 'n2p1']);
    await waitFor(async () => (await routeOf('192.0.2.20'))?.kernelNextHops.length === 2, 5000, '192.0.2.20 announced again');
    console.log(`# withdraw: ${withdrawMs} ms; announce again: ${ms(t0)} ms`);
  });

  test('a service that loses its last ready backend is withdrawn', async () => {
    editObjects(lab.manifests, (objs) =>
      objs.map((o) => (o.kind === 'EndpointSlice' && o.metadata?.name === 'extra-lab' ? { ...o, endpoints: o.endpoints.map((e: any) => ({ ...e, conditions: { ready: false, serving: false, terminating: false } })) } : o)), // eslint-disable-line @typescript-eslint/no-explicit-any
    );
    await waitFor(async () => (await routeOf('192.0.2.20')) === undefined, 5000, '192.0.2.20 withdrawn when no backend is ready');
    removeService('extra');
  });

  test('externalTrafficPolicy Local: only the node that hosts a ready backend announces the VIP', async () => {
    addWebService('local-only', '192.0.2.21', ['n2p1', 'n2p2'], 'Local');
    await waitFor(async () => JSON.stringify((await routeOf('192.0.2.21'))?.from) === '["node2"]', 5000, '192.0.2.21 from node2 only');
    const r = (await routeOf('192.0.2.21'))!;
    assert.deepEqual(r.kernelNextHops, [lab.nodes[1].ip]);
    for (let i = 0; i < 10; i++) {
      const [pod, addr] = (await labExec(lab.client, ['curl', '-s', '-m', '3', 'http://192.0.2.21/'])).trim().split(' ');
      assert.match(pod, /^n2p[12]$/);
      assert.ok(addr.startsWith('198.18.1.2:'), `Local keeps the client's address (got ${addr})`);
    }
    removeService('local-only');
    await waitFor(async () => (await routeOf('192.0.2.21')) === undefined, 5000, '192.0.2.21 withdrawn');
  });

  test('Maglev across nodes: both nodes predict the same backend for a flow, and the flow reaches it through either node', async () => {
    const vip = '192.0.2.11';
    for (let i = 0; i < 6; i++) {
      const sport = 41000 + i;
      const flow = `198.18.1.2:${sport},${vip}:53,udp`;
      const predicted = await Promise.all(
        lab.nodes.map(async (n) => ((await apiGet(n.api, `/v1/services/default/dns-echo/flow?flow=${flow}`)) as { backend: { addr: string } }).backend.addr),
      );
      assert.equal(new Set(predicted).size, 1, `nodes disagree for ${flow}: ${predicted.join(' ')}`);
      const served: string[] = [];
      for (const n of lab.nodes) {
        // Pin the VIP to one node: a more specific metric than BIRD's route (metric 32) wins.
        await ipn(lab.router, 'route', 'replace', `${vip}/32`, 'via', n.ip, 'metric', '1');
        try {
          const out = await labExec(lab.client, ['sh', '-c', `echo ping | socat -t2 - UDP:${vip}:53,sourceport=${sport},reuseaddr`]);
          served.push(lab.pods.find((p) => p.name === out.trim().split(/\s+/)[0])?.ip ?? `?${out}`);
        } finally {
          await ipn(lab.router, 'route', 'del', `${vip}/32`, 'via', n.ip, 'metric', '1');
        }
      }
      assert.deepEqual(served, [predicted[0], predicted[0]], `${flow}: through node1 and node2 to the predicted backend`);
    }
  });

  test('kill -9 of a node’s gobgpd: it is restarted and its path is back in BIRD within 10 s', async () => {
    const before = await bgpOf(0);
    assert.ok(before.gobgpd.pid, 'the agent supervises a gobgpd');
    const t0 = performance.now();
    process.kill(before.gobgpd.pid!, 'SIGKILL');
    await waitFor(async () => JSON.stringify((await routeOf('192.0.2.10'))?.from) === '["node2"]', 10000, 'node1’s path to go');
    await waitFor(async () => (await routeOf('192.0.2.10'))?.from.length === 2, 10000, 'node1’s path back');
    console.log(`# gobgpd SIGKILL to node1's path back in BIRD: ${ms(t0)} ms`);
    const after = await bgpOf(0);
    assert.notEqual(after.gobgpd.pid, before.gobgpd.pid);
    assert.equal(after.gobgpd.restarts, before.gobgpd.restarts + 1);
  });

  for (const how of ['SIGTERM', 'kill -9'] as const) {
    test(`node1's agent restarts (${how}, then start): gobgpd keeps running and is adopted; BIRD's routes from node1 stay, with no flap and no withdraw`, async () => {
      await announcedAll(0);
      const before = birdViewOf('node1');
      assert.ok(Object.keys(before.routes).length > 0, 'node1 has routes in BIRD');
      const b0 = await bgpOf(0);
      const pid = b0.gobgpd.pid!;
      const t0 = performance.now();
      if (how === 'SIGTERM') await labStopAgent(stateDir, 'node1');
      else await labKillAgent(stateDir, 'node1');
      try {
        assert.ok(processRunning(pid), 'gobgpd outlives the agent');
        assertSameBirdView(birdViewOf('node1'), before, 'BIRD unchanged with the agent gone');
      } finally {
        await labStartAgent(stateDir, 'node1');
      }
      await announcedAll(0);
      console.log(`# ${how}: ${ms(t0)} ms from the stop to node1's agent announcing again through the adopted gobgpd`);
      const b1 = await bgpOf(0);
      assert.equal(b1.gobgpd.pid, pid, 'the same gobgpd');
      assert.equal(b1.gobgpd.adopted, true);
      assert.equal(b1.peers[0].state, 'established');
      assert.equal(b1.counters.pathsAdded, 0, 'gobgpd held every path already: none sent again');
      assert.equal(b1.counters.pathsWithdrawn, 0);
      assertSameBirdView(birdViewOf('node1'), before, 'BIRD: same session Since, same route times, no update or withdraw received from node1');
      for (const r of await labRoutes(lab)) assert.deepEqual(r.from, ['node1', 'node2'], `${r.vip} still from both nodes`);
    });
  }

  test('a peer with the wrong ASN: no session, /v1/bgp gives the NOTIFICATION, and the other node keeps serving', async () => {
    await labStopAgent(stateDir, 'node2');
    try {
      // SIGTERM is a restart: node2's paths stay until its next agent, configured with the wrong AS, replaces the neighbor.
      assert.deepEqual((await routeOf('192.0.2.10'))?.from, ['node1', 'node2'], 'a restart withdraws nothing');
      await labStartAgent(stateDir, 'node2', (cfg) => ({ ...cfg, bgp: { ...cfg.bgp, neighbors: [{ ...cfg.bgp.neighbors[0], asn: 65099 }] } }));
      await waitFor(async () => JSON.stringify((await routeOf('192.0.2.10'))?.from) === '["node1"]', 10000, 'node2’s paths gone with its session (neighbor re-added with another AS)');
      let b: BgpStatus | undefined;
      await waitFor(async () => /NOTIFICATION|OPEN|AS/i.test((b = await bgpOf(1)).peers[0].lastError?.message ?? ''), 15000, 'node2 to record why the session failed');
      assert.notEqual(b!.peers[0].state, 'established');
      assert.match(b!.peers[0].lastError!.message, /NOTIFICATION|OPEN|AS/i);
      console.log(`# wrong ASN: ${b!.peers[0].lastError!.message}`);
      assert.equal((await bgpOf(0)).peers[0].state, 'established', 'node1 unaffected');
      assert.deepEqual((await routeOf('192.0.2.10'))?.from, ['node1']);
      assert.match(await labExec(lab.client, ['curl', '-s', '-m', '3', 'http://192.0.2.10/']), /^n\dp\d /);
    } finally {
      await labStopAgent(stateDir, 'node2').catch(() => undefined);
      await labStartAgent(stateDir, 'node2', (cfg) => ({ ...cfg, bgp: { ...cfg.bgp, neighbors: [{ ...cfg.bgp.neighbors[0], asn: 64512 }] } }));
    }
    await waitFor(async () => (await routeOf('192.0.2.10'))?.from.length === 2, 15000, 'node2 back in BIRD with the right ASN');
  });
});

/**
 * Layer 2 mode end to end in the lab (`lab up --announce l2`): the client
 * sits on the nodes' segment and finds each VIP by ARP; exactly one node's
 * agent answers for it (XDP ARP responder), and another takes over when it
 * fails. One lab for the file, torn down in `after`.
 *
 * An agent restart (SIGTERM) is not a failure: the node's XDP keeps
 * answering ARP for its VIPs, its peer holds them for it and takes none, and
 * the next agent carries on with them. After a kill -9 the peer takes the
 * VIP after the dead-after window, and the restarted agent leaves it there.
 *
 * Run as root: node --import tsx --test test/e2e/lab-l2.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { labDown, labExec, labKillAgent, labL2Owners, labStartAgent, labStopAgent, labUp, waitL2Converged, type LabStatus } from '../../src/lab/index.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';
import { ipn, sh, type CommandError } from '../../src/lab/sh.js';
import type { L2Status } from '../../src/l2/announcer.js';
import { rendezvousOrder } from '../../src/l2/ownership.js';
import { checkMetrics } from '../helpers/promtool.js';
import { service, slice } from '../../src/lab/manifests.js';
import { editObjects } from '../../src/demo/manifests.js';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const XDP_PASS_OBJ = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../xdp/build/xlb_xdp_pass.bpf.o');

const stateDir = `/run/xlb-test-l2-${randomBytes(3).toString('hex')}`;
let lab: LabStatus;

const WEB = '192.0.2.10';
const nodeNamed = (name: string) => lab.nodes.find((n) => n.name === name)!;
const ms = (t0: number) => Math.round(performance.now() - t0);

/** What the last arpingMacs run printed (and its error, if it failed), for assertion messages. */
let lastArping = '';

/**
 * The MACs that answer `arping` for `vip` from `ns` (the client's own ARP,
 * for checks only). arping exits 1 when fewer than `count` replies came
 * within `deadlineS`; the replies it printed still count.
 */
async function arpingMacs(vip: string, ns = lab.client, count = 3, deadlineS = 4): Promise<string[]> {
  const out = await labExec(ns, ['arping', '-c', String(count), '-w', String(deadlineS), '-I', 'eth0', vip]).catch((e: Error) => `${(e as CommandError).stdout ?? ''}\n${e.message}`);
  lastArping = out;
  return [...new Set([...out.matchAll(/reply from \S+ \[([0-9A-F:]+)\]/gi)].map((m) => m[1].toLowerCase()))].sort();
}

/** The MAC in the client's neighbour entry for `vip` ('' when none). */
async function clientNeighbour(vip: string): Promise<string> {
  const j = JSON.parse(await ipn(lab.client, '-j', 'neigh', 'show', vip)) as Array<{ lladdr?: string }>;
  return j[0]?.lladdr ?? '';
}

const l2Of = async (name: string) => (await apiGet(nodeNamed(name).api, '/v1/l2')) as L2Status;

async function ownerOf(vip: string): Promise<string> {
  const o = (await labL2Owners(lab)).find((x) => x.vip === vip);
  assert.ok(o && o.answering.length === 1, `exactly one node answers for ${vip}: ${JSON.stringify(o)}`);
  return o.answering[0];
}

/**
 * Wait until node2 hears the restarted node1 as alive and past its first
 * sync: a VIP that appears before that is node2's to take (node1 looks
 * dead), and node2 then keeps it (no stealing back).
 */
async function node2SeesNode1(): Promise<void> {
  await waitFor(
    async () => ((await apiGet(nodeNamed('node2').api, '/v1/l2')) as L2Status).peers.some((p) => p.name === 'node1' && p.alive && !p.starting),
    5000,
    'node2 to hear node1 alive and synced',
  );
}

async function curlOk(vip: string, timeoutS = 1, localPort?: number): Promise<boolean> {
  const out = await labExec(lab.client, ['curl', '-s', '-m', String(timeoutS), ...(localPort ? ['--local-port', String(localPort)] : []), `http://${vip}/`]).catch(() => '');
  return /^n\dp\d /.test(out);
}

/**
 * Client source ports whose flows to `vip`:80 `node`'s Maglev table sends to
 * a backend on `node` itself: after the other node drops off the network,
 * its pods are unreachable too (until their endpoints go not-ready), and a
 * request that hashes to one of them says nothing about the VIP's failover.
 */
async function portsServedOn(node: LabStatus['nodes'][number], vip: string, count: number): Promise<number[]> {
  const out: number[] = [];
  // Below the ephemeral range (32768-60999), so that no earlier connection's TIME_WAIT holds them.
  for (let p = 21000; out.length < count && p < 22000; p++) {
    const r = (await apiGet(node.api, `/v1/services/default/web/flow?flow=${lab.clientIp}:${p},${vip}:80,tcp`)) as { backend: { addr: string } | null };
    const pod = lab.pods.find((x) => x.ip === r.backend?.addr);
    if (pod?.node === node.name) out.push(p);
  }
  assert.equal(out.length, count, `${count} source ports served on ${node.name}`);
  return out;
}

before(async () => {
  lab = await labUp({ nodes: 2, podsPerNode: 3, stateDir, announce: 'l2' });
});

after(async () => {
  await labDown(stateDir);
});

describe('layer 2 announcements in the lab', () => {
  test('lab status gives each node its MAC and agent PID; the client is on the nodes’ segment', () => {
    assert.equal(lab.announce, 'l2');
    assert.equal(lab.clientIp, '198.18.0.2');
    for (const n of lab.nodes) {
      assert.match(n.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      assert.ok(n.agentPid && n.agentPid > 0);
    }
  });

  test('exactly one MAC answers ARP for each VIP, the owner’s, and HTTP through the VIP works', async () => {
    for (const o of await labL2Owners(lab)) {
      assert.equal(o.answering.length, 1, `${o.vip}: ${o.answering.join(',')}`);
      assert.deepEqual(await arpingMacs(o.vip), [nodeNamed(o.answering[0]).mac], `${o.vip} answered by ${o.answering[0]} only`);
    }
    const seen = new Set<string>();
    for (let i = 0; i < 16; i++) seen.add((await labExec(lab.client, ['curl', '-s', '-m', '3', `http://${WEB}/`])).split(' ')[0]);
    assert.ok(seen.size >= 3, `HTTP through the owner reaches backends on both nodes: ${[...seen].join(' ')}`);
  });

  test('the VIPs of several services spread over both nodes', async () => {
    const owners = new Set((await labL2Owners(lab)).map((o) => o.answering[0]));
    assert.deepEqual([...owners].sort(), ['node1', 'node2']);
    const l2 = (await apiGet(lab.nodes[0].api, '/v1/l2')) as L2Status;
    assert.ok(l2.vips.every((v) => v.owner && v.since), 'every VIP has an owner and a since');
    const metrics = (await apiGet(lab.nodes[0].api, '/metrics')) as string;
    assert.match(metrics, /xlb_l2_owned_vips \d+/);
    assert.match(metrics, /xlb_l2_peer_alive\{peer="node2"\} 1/);
    const r = checkMetrics(metrics);
    assert.equal(r.status, 0, `promtool check metrics:\n${r.output}`);
    // Ownership per VIP as the alert rules read it: over both nodes, each VIP owned exactly once, by the node answering ARP for it.
    const owned = new Map<string, string[]>();
    for (const n of lab.nodes) {
      const text = (await apiGet(n.api, '/metrics')) as string;
      for (const m of text.matchAll(/^xlb_l2_vip_owned\{vip="([^"]+)",service="[^"]*"\} ([01])$/gm)) {
        if (!owned.has(m[1])) owned.set(m[1], []);
        if (m[2] === '1') owned.get(m[1])!.push(n.name);
      }
    }
    const arp = await labL2Owners(lab);
    assert.deepEqual([...owned.keys()].sort(), arp.map((o) => o.vip).sort(), 'every VIP has its series');
    for (const o of arp) assert.deepEqual(owned.get(o.vip), o.answering, `${o.vip}: owned by ${o.answering.join(',')} in the metrics too`);
  });

  test('the owner’s link goes down: HTTP through the VIP works again within 3 s, the client never sending ARP itself', async () => {
    const owner = await ownerOf(WEB);
    const other = lab.nodes.find((n) => n.name !== owner)!;
    assert.ok(await curlOk(WEB, 3));
    assert.equal(await clientNeighbour(WEB), nodeNamed(owner).mac, 'the client knows the owner’s MAC');
    // Keep the entry fresh and forbid the client from resolving on its own: only gratuitous ARP may move it.
    await ipn(lab.client, 'neigh', 'replace', WEB, 'lladdr', nodeNamed(owner).mac, 'dev', 'eth0', 'nud', 'stale');
    await labExec(lab.client, ['sysctl', '-qw', 'net.ipv4.neigh.eth0.mcast_solicit=0', 'net.ipv4.neigh.eth0.ucast_solicit=0', 'net.ipv4.neigh.eth0.app_solicit=0']);
    const served = await portsServedOn(other, WEB, 60);
    const t0 = performance.now();
    // The switch port goes down (the fabric's end of the owner's veth): the owner loses carrier and is off the segment.
    const port = `n${owner.replace('node', '')}`;
    await ipn(lab.fabric, 'link', 'set', port, 'down');
    try {
      await waitFor(async () => (await clientNeighbour(WEB)) === other.mac, 3000, 'gratuitous ARP to move the client’s neighbour entry', 10).catch(() => undefined);
      const arpMs = ms(t0);
      let attempt = 0;
      await waitFor(() => curlOk(WEB, 0.5, served[attempt++ % served.length]), 3000, 'HTTP through the VIP after the owner’s link went down', 50).catch(async (e) => {
        const st = (await apiGet(other.api, '/v1/l2')) as L2Status;
        throw new Error(`${(e as Error).message}; client neighbour ${await clientNeighbour(WEB)}; ${other.name} sees ${JSON.stringify(st.vips.find((v) => v.vip === WEB))} peers ${JSON.stringify(st.peers)} garp ${st.counters.garpSent}/${st.counters.garpFailed}`);
      });
      const failoverMs = ms(t0);
      console.log(`# failover: ${arpMs} ms from the owner's link down to the client's ARP entry on ${other.name}; ${failoverMs} ms to HTTP answered through it`);
      assert.equal(await clientNeighbour(WEB), other.mac, 'gratuitous ARP moved the client’s entry');
      assert.ok(failoverMs < 3000);
    } finally {
      await labExec(lab.client, ['sysctl', '-qw', 'net.ipv4.neigh.eth0.mcast_solicit=3', 'net.ipv4.neigh.eth0.ucast_solicit=3']);
      await ipn(lab.fabric, 'link', 'set', port, 'up');
    }
    assert.deepEqual(await arpingMacs(WEB), [other.mac], `arping shows the new owner (arping: ${lastArping.trim().slice(0, 400)})`);
    // The node that comes back takes nothing back.
    await waitFor(async () => ((await apiGet(nodeNamed(owner).api, '/v1/l2')) as L2Status).health === 'up', 5000, 'the old owner’s link to be seen up');
    await waitL2Converged(lab);
    assert.equal(await ownerOf(WEB), other.name, 'no needless move back');
  });

  test('a restarting owner (SIGTERM, then start) keeps answering ARP and serving; its peer does not take the VIP', async () => {
    const owner = await ownerOf(WEB);
    const other = lab.nodes.find((n) => n.name !== owner)!;
    const takeovers = (await l2Of(other.name)).takeovers;
    const t0 = performance.now();
    await labStopAgent(stateDir, owner);
    try {
      await waitFor(async () => (await l2Of(other.name)).peers.some((p) => p.name === owner && p.restarting && p.alive), 2000, `${other.name} to hold ${owner}’s VIPs`);
      // Twice the dead-after window (1 s) with the owner's agent gone: a silent node would have lost the VIP.
      await waitFor(
        async () => {
          assert.equal((await l2Of(other.name)).vips.find((v) => v.vip === WEB)?.local, false, `${other.name} took ${WEB} while ${owner} restarted`);
          return performance.now() - t0 > 2000;
        },
        10000,
        'two dead-after windows',
        50,
      );
      assert.deepEqual(await arpingMacs(WEB), [nodeNamed(owner).mac], `${owner}’s XDP answers with no agent (arping: ${lastArping.trim().slice(0, 400)})`);
      assert.ok(await curlOk(WEB, 3), 'HTTP through the VIP with no agent');
    } finally {
      await labStartAgent(stateDir, owner);
    }
    await waitFor(async () => (await l2Of(owner)).vips.find((v) => v.vip === WEB)?.local === true && (await l2Of(owner)).adopted.length === 0, 10000, `${owner}’s new agent to decide it keeps ${WEB}`);
    console.log(`# restart: ${ms(t0)} ms from SIGTERM to ${owner}'s next agent owning ${WEB}; ${other.name} took nothing`);
    assert.equal((await l2Of(other.name)).takeovers, takeovers, `${other.name} took nothing over`);
    assert.equal((await l2Of(owner)).takeovers, 0, `${owner}’s new agent took nothing over either: the VIP never moved`);
    await waitL2Converged(lab);
    assert.equal(await ownerOf(WEB), owner);
    assert.deepEqual(await arpingMacs(WEB), [nodeNamed(owner).mac]);
  });

  test('the owner’s agent is killed (kill -9): its peer takes the VIP after the dead-after window; the restarted agent leaves it there', async () => {
    const owner = await ownerOf(WEB);
    const other = lab.nodes.find((n) => n.name !== owner)!;
    const t0 = performance.now();
    await labKillAgent(stateDir, owner);
    try {
      await waitFor(async () => (await l2Of(other.name)).vips.find((v) => v.vip === WEB)?.local === true, 3000, `${other.name} to take ${WEB}`, 20);
      console.log(`# kill -9: ${ms(t0)} ms to ${other.name} answering for ${WEB}`);
    } finally {
      await labStartAgent(stateDir, owner);
    }
    await waitL2Converged(lab);
    assert.equal(await ownerOf(WEB), other.name, 'no move back');
    // The killed agent's XDP answered too until its next agent gave the VIP up.
    await waitFor(async () => (await arpingMacs(WEB)).join() === other.mac, 10000, `only ${other.name} to answer ARP for ${WEB}`, 200).catch((e: Error) => {
      throw new Error(`${e.message} (last arping: ${lastArping.trim().slice(0, 400)})`);
    });
    assert.ok(await curlOk(WEB, 3));
  });

  test('an interface list restricts where ARP is answered', async () => {
    // node1 gets a second link, eth1, to a second client; the agent puts XDP on both.
    const c2 = `xlb-c2-${lab.suffix}`;
    const n1 = nodeNamed('node1');
    const vipFor = (from: number) => {
      for (let i = from; ; i++) if (rendezvousOrder(`192.0.2.${i}`, ['node1', 'node2'])[0] === 'node1') return `192.0.2.${i}`;
    };
    const addService = (name: string, vip: string) =>
      editObjects(lab.manifests, (objs) => [
        ...objs,
        service(name, { type: 'LoadBalancer', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] }, { ingress: [{ ip: vip }] }),
        slice(name, [{ name: 'http', port: 8080, protocol: 'TCP' }], [lab.pods.find((p) => p.name === 'n1p1')!].map((p) => ({ name: p.name, ip: p.ip, node: p.node }))),
      ]);
    const arpingFrom = (ns: string, vip: string) => arpingMacs(vip, ns, 2, 3);
    await sh('ip', ['netns', 'add', c2]);
    try {
      await ipn(c2, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1', 'netns', n1.netns);
      await ipn(c2, 'addr', 'add', '198.18.2.2/24', 'dev', 'eth0');
      await ipn(c2, 'link', 'set', 'eth0', 'up');
      await ipn(c2, 'link', 'set', 'dev', 'eth0', 'xdpdrv', 'obj', XDP_PASS_OBJ, 'sec', 'xdp');
      await ipn(c2, 'route', 'add', '192.0.2.0/24', 'dev', 'eth0', 'scope', 'link');
      await ipn(n1.netns, 'addr', 'add', '198.18.2.1/24', 'dev', 'eth1');
      await ipn(n1.netns, 'link', 'set', 'eth1', 'up');
      const eth1Mac = (JSON.parse(await ipn(n1.netns, '-j', 'link', 'show', 'eth1')) as Array<{ address: string }>)[0].address;

      // Answer on eth0 only: a VIP node1 owns is answered to the client on eth0, not on eth1.
      await labStopAgent(stateDir, 'node1');
      await labStartAgent(stateDir, 'node1', (cfg) => ({ ...cfg, interfaces: ['eth0', 'eth1'], l2: { ...cfg.l2, interfaces: ['eth0'] } }));
      await node2SeesNode1();
      const a = vipFor(40);
      addService('only-eth0', a);
      await waitFor(async () => (await labL2Owners(lab)).find((o) => o.vip === a)?.answering.join() === 'node1', 5000, `node1 to own ${a}`);
      assert.deepEqual(await arpingMacs(a), [n1.mac], 'answered on eth0');
      assert.deepEqual(await arpingFrom(c2, a), [], 'not answered on eth1, which l2.interfaces leaves out');

      // Both interfaces listed: a new VIP of node1's is answered on eth1 with eth1's MAC.
      await labStopAgent(stateDir, 'node1');
      await labStartAgent(stateDir, 'node1', (cfg) => ({ ...cfg, l2: { ...cfg.l2, interfaces: ['eth0', 'eth1'] } }));
      await node2SeesNode1();
      const b = vipFor(Number(a.split('.')[3]) + 1);
      addService('both', b);
      await waitFor(async () => (await labL2Owners(lab)).find((o) => o.vip === b)?.answering.join() === 'node1', 5000, `node1 to own ${b}`);
      assert.deepEqual(await arpingFrom(c2, b), [eth1Mac], 'answered on eth1 with its own MAC');
      assert.deepEqual(await arpingMacs(b), [n1.mac], 'and on eth0 with eth0’s');
    } finally {
      editObjects(lab.manifests, (objs) => objs.filter((o) => !['only-eth0', 'both'].includes(o.metadata?.name) && !['only-eth0', 'both'].includes(o.metadata?.labels?.['kubernetes.io/service-name'])));
      try {
        await labStopAgent(stateDir, 'node1').catch(() => undefined);
        await labStartAgent(stateDir, 'node1', (cfg) => {
          const { l2, ...rest } = cfg;
          const { interfaces: _i, ...l2rest } = l2;
          return { ...rest, interfaces: ['eth0'], l2: l2rest };
        });
      } finally {
        // Also when the agent fails to come back: the second client's namespace is this test's own.
        await sh('ip', ['netns', 'del', c2]).catch(() => undefined);
      }
    }
  });
});

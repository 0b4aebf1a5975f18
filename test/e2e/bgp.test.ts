/**
 * BGP end to end: the BgpAnnouncer with a real gobgpd in a "node" network
 * namespace, peering over a veth with BIRD 2 in a "router" namespace.
 *
 *   xlb-bgpr-SFX (BIRD, AS 64512)  198.18.200.1/30 ── veth ── 198.18.200.2/30  xlb-bgpn-SFX (gobgpd, AS 64513)
 *
 * gobgpd runs through `ip netns exec` and serves its API on a unix socket,
 * which the test process (root namespace) reaches through the filesystem.
 * BIRD gets short error/connect timers so that it reconnects within a second
 * or two after gobgpd is killed (its defaults wait 60 s after an error).
 *
 * Agent restarts: stop({ keepRoutes: true }) and a SIGKILLed announcer (in a
 * child process, as an agent) leave gobgpd running; the next announcer adopts
 * it, and BIRD sees nothing: the session's Since, the route's age and the
 * count of withdraws received are the same before and after.
 *
 * Needs root, gobgpd, bird2 (bird, birdc) and golang-github-osrg-gobgp-dev.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BgpAnnouncer, type BgpStatus } from '../../src/bgp/announcer.js';
import { parseBgpConfig } from '../../src/bgp/config.js';
import { DEFAULT_PROTO_DIR, GobgpClient } from '../../src/bgp/client.js';
import { GobgpdSupervisor, processRunning, stopKeptGobgpd } from '../../src/bgp/gobgpd.js';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../src/util/wait.js';
import { hasTools, isRoot, skipUnless } from '../helpers/system.js';
import { startBirdPair, type BirdPair } from '../helpers/bird-pair.js';

const SFX = randomBytes(3).toString('hex');
const NODE_NS = `xlb-bgpn-${SFX}`;
const ROUTER_NS = `xlb-bgpr-${SFX}`;
const NODE_IF = `xbn-${SFX}`;
const ROUTER_IF = `xbr-${SFX}`;
const ROUTER_ADDR = '198.18.200.1';
const NODE_ADDR = '198.18.200.2';
const VIP = '192.0.2.50';

const skip = skipUnless(
  [isRoot, 'needs root (network namespaces)'],
  [() => hasTools('gobgpd', 'bird', 'birdc'), 'needs gobgpd and bird2'],
  [() => fs.existsSync(`${DEFAULT_PROTO_DIR}/gobgp.proto`), 'needs golang-github-osrg-gobgp-dev (the gobgp API protos)'],
);


let dir = '';
let pair: BirdPair | undefined;
const announcers: BgpAnnouncer[] = [];
const supervisors: GobgpdSupervisor[] = [];

const birdc = (...args: string[]) => pair!.birdc(...args);

/**
 * BIRD's view of a route (`show route PREFIX all`), or '' when it has none.
 * @throws Error with birdc's output when it answered neither
 */
function birdRoute(prefix: string): string {
  const out = birdc('show', 'route', prefix, 'all');
  if (out.includes('Network not found')) return '';
  if (out.includes(prefix)) return out;
  throw new Error(`unexpected birdc output: ${out}`);
}

function birdEstablished(): boolean {
  return /node1\s+BGP\s+\S+\s+up\s+\S+\s+Established/.test(birdc('show', 'protocols', 'node1'));
}

/** What a flap or a withdraw would change in BIRD: the session's Since, the route's time, the withdraws received. */
interface BirdView {
  since: string;
  routeTime: string;
  updates: number;
  withdraws: number;
}

/**
 * BIRD's view of the session with the node and of `prefix`, from `show
 * protocols all node1` and `show route for PREFIX all`.
 * @throws Error with birdc's output when a field is missing
 */
function birdView(prefix: string): BirdView {
  const proto = birdc('show', 'protocols', 'all', 'node1');
  const since = /^node1\s+BGP\s+\S+\s+up\s+(\S+)\s+Established/m.exec(proto)?.[1];
  const stats = /Import updates:\s+(\d+)[\s\S]*?Import withdraws:\s+(\d+)/.exec(proto);
  const route = birdc('show', 'route', 'for', prefix, 'all');
  const routeTime = /unicast \[node1 ([^\]]+)\]/.exec(route)?.[1];
  if (!since || !stats || !routeTime) throw new Error(`unexpected birdc output:\n${proto}\n${route}`);
  return { since, routeTime, updates: Number(stats[1]), withdraws: Number(stats[2]) };
}

/** Wait until `a` has finished `n` more reconciles (resyncIntervalMs 1000 in this file). */
async function reconciles(a: BgpAnnouncer, n: number): Promise<void> {
  const seen = new Set<string>();
  await waitFor(
    () => {
      const at = a.status().lastReconcile?.at;
      if (at) seen.add(at);
      return seen.size > n;
    },
    (n + 2) * 2000,
    `${n} reconciles`,
  );
}

function bgpSection(over: Record<string, unknown> = {}, gobgpd: Record<string, unknown> = {}) {
  return parseBgpConfig({
    asn: 64513,
    nodeAddress: NODE_ADDR,
    communities: ['65000:100'],
    largeCommunities: ['64513:1:2'],
    neighbors: [{ address: ROUTER_ADDR, asn: 64512, holdTime: 9, keepaliveTime: 3, communities: ['65000:300'] }],
    gobgpd: { apiSocket: path.join(dir, 'gobgpd.sock'), ...gobgpd },
    ...over,
  });
}

async function startAnnouncer(cfg: ReturnType<typeof parseBgpConfig>): Promise<BgpAnnouncer> {
  const a = await BgpAnnouncer.start(cfg, { commandPrefix: ['ip', 'netns', 'exec', NODE_NS], resyncIntervalMs: 1000 });
  announcers.push(a);
  return a;
}

const ms = (t0: number) => Math.round(performance.now() - t0);

describe('BGP announcer with gobgpd and BIRD', { skip }, () => {
  let a: BgpAnnouncer;

  before(async () => {
    pair = await startBirdPair({
      prefix: `xlb-bgp-${SFX}-`,
      nodeNs: NODE_NS,
      routerNs: ROUTER_NS,
      nodeIf: NODE_IF,
      routerIf: ROUTER_IF,
      nodeAddr: NODE_ADDR,
      routerAddr: ROUTER_ADDR,
      kernel: true,
      connectRetry: 2,
    });
    dir = pair.dir;
  });

  after(async () => {
    for (const x of announcers) await x.stop().catch(() => {});
    for (const s of supervisors) await s.stop().catch(() => {});
    // A gobgpd outlives its announcer's keepRoutes stop: end any left by a failed test.
    if (dir) await stopKeptGobgpd({ gobgpd: { apiSocket: path.join(dir, 'gobgpd.sock') } }).catch(() => undefined);
    await pair?.stop();
  });

  it('the session from the node to BIRD reaches Established', async () => {
    // Listening on 179 too: BIRD connects at once, gobgp itself waits 5..10 s before its first connect.
    a = await startAnnouncer(bgpSection({ listenPort: 179 }));
    const t0 = performance.now();
    await waitFor(() => a.status().peers[0].state === 'established' && birdEstablished(), 20_000, 'BGP session Established');
    console.log(`# session Established after ${ms(t0)} ms`);
    const p = a.status().peers[0];
    assert.equal(p.address, ROUTER_ADDR);
    assert.ok(p.uptimeSeconds !== undefined && p.uptimeSeconds >= 0);
  });

  it('a desired VIP appears in BIRD with the node as next hop and all configured communities', async () => {
    const t0 = performance.now();
    await a.setDesired([{ vip: VIP, service: 'default/web', communities: ['65000:200'], largeCommunities: ['64513:7:8'] }]);
    let route = '';
    await waitFor(() => (route = birdRoute(`${VIP}/32`)) !== '', 5000, `${VIP}/32 in BIRD`);
    console.log(`# announce: ${ms(t0)} ms from setDesired to the route in BIRD`);
    assert.match(route, new RegExp(`via ${NODE_ADDR.replace(/\./g, '\\.')} on ${ROUTER_IF}`));
    assert.match(route, new RegExp(`BGP\\.next_hop: ${NODE_ADDR.replace(/\./g, '\\.')}`));
    assert.match(route, /BGP\.origin: IGP/);
    // global, per-VIP and per-neighbor (export policy) communities
    assert.match(route, /BGP\.community: \(65000,100\) \(65000,200\) \(65000,300\)/);
    assert.match(route, /BGP\.large_community: \(64513, 1, 2\) \(64513, 7, 8\)/);
    await waitFor(() => a.status().peers[0].prefixes.advertised === 1, 3000, 'status to count the advertised prefix');
    const s = a.status();
    assert.deepEqual(s.announced, [
      { vip: VIP, service: 'default/web', nextHop: NODE_ADDR, communities: ['65000:100', '65000:200'], largeCommunities: ['64513:1:2', '64513:7:8'] },
    ]);
    assert.deepEqual(s.pending, []);
  });

  it('setDesired rejects a malformed entry by its index and keeps the previous set', async () => {
    await assert.rejects(a.setDesired([{ vip: VIP, service: 'default/web' }, { vip: '192.0.2.300', service: 'default/bad' }]), /^Error: vips\[1\]\.vip: "192\.0\.2\.300" is not an IPv4 address/);
    await assert.rejects(a.setDesired([{ vip: VIP, service: 'default/web', communities: ['65000:70000'] }]), /^Error: vips\[0\]\.communities\[0\]: /);
    assert.deepEqual(a.status().announced.map((x) => x.communities), [['65000:100', '65000:200']]);
    assert.notEqual(birdRoute(`${VIP}/32`), '');
  });

  it('setDesired([]) withdraws the VIP from BIRD within 5 s', async () => {
    const t0 = performance.now();
    await a.setDesired([]);
    await waitFor(() => birdRoute(`${VIP}/32`) === '', 5000, `${VIP}/32 withdrawn from BIRD`);
    console.log(`# withdraw: ${ms(t0)} ms from setDesired([]) to the route gone from BIRD`);
    assert.deepEqual(a.status().announced, []);
  });

  it('gobgpd killed with SIGKILL is restarted and the VIP is back in BIRD within 10 s', async () => {
    await a.setDesired([{ vip: VIP, service: 'default/web' }]);
    await waitFor(() => birdRoute(`${VIP}/32`) !== '', 5000, `${VIP}/32 in BIRD before the kill`);
    const before = a.status();
    const pid = before.gobgpd.pid!;
    assert.ok(pid > 0);
    const t0 = performance.now();
    process.kill(pid, 'SIGKILL');
    await waitFor(() => birdRoute(`${VIP}/32`) === '', 5000, 'BIRD to drop the route of the dead session');
    const tDown = ms(t0);
    let tRestarted = 0;
    let tResynced = 0;
    await waitFor(
      () => {
        const s = a.status();
        if (!tRestarted && s.gobgpd.pid && s.gobgpd.pid !== pid) tRestarted = ms(t0);
        if (tRestarted && !tResynced && s.counters.bgpStarts > before.counters.bgpStarts && s.pending.length === 0) tResynced = ms(t0);
        return birdRoute(`${VIP}/32`) !== '';
      },
      10_000,
      `${VIP}/32 back in BIRD after gobgpd was killed`,
    );
    console.log(`# restart: route gone from BIRD ${tDown} ms, gobgpd respawned ${tRestarted} ms, StartBgp+peers+paths redone ${tResynced || 'n/a'} ms, route back in BIRD ${ms(t0)} ms after SIGKILL`);
    const s = a.status();
    assert.equal(s.gobgpd.restarts, before.gobgpd.restarts + 1);
    assert.equal(s.gobgpd.lastExit?.signal, 'SIGKILL');
    assert.ok(tResynced > 0 && tResynced < 5000, `resync took ${tResynced} ms`);
    assert.equal(s.peers[0].flaps, 1);
    assert.equal(s.counters.peerFlaps, 1);
    assert.deepEqual(s.announced.map((x) => x.vip), [VIP]);
  });

  it('stop({ keepRoutes: true }) (an agent restart) leaves gobgpd running; the next announcer adopts it; BIRD sees no flap and no withdraw', async () => {
    await waitFor(() => birdEstablished() && birdRoute(`${VIP}/32`) !== '', 10_000, 'the session and the route');
    const before = birdView(`${VIP}/32`);
    const pid = a.status().gobgpd.pid!;
    await a.stop({ keepRoutes: true });
    assert.ok(processRunning(pid), 'gobgpd still runs');
    assert.ok(fs.existsSync(path.join(dir, 'gobgpd.pid')), 'its pid recorded');
    assert.ok(fs.existsSync(path.join(dir, 'gobgpd.log')), 'its output in the log file');
    assert.deepEqual(birdView(`${VIP}/32`), before, 'nothing changed in BIRD at the stop');

    const t0 = performance.now();
    a = await startAnnouncer(bgpSection({ listenPort: 179 }));
    console.log(`# adopt: the next announcer started in ${ms(t0)} ms`);
    const st = a.status();
    assert.equal(st.gobgpd.pid, pid);
    assert.equal(st.gobgpd.adopted, true);
    assert.equal(st.gobgpd.restarts, 0);
    assert.equal(st.counters.bgpStarts, 0, 'the running BGP instance kept');
    assert.equal(st.peers[0].state, 'established');
    // No setDesired yet: the path the previous announcer left stays through resyncs.
    await reconciles(a, 2);
    assert.equal(a.status().counters.pathsWithdrawn, 0);
    assert.notEqual(birdRoute(`${VIP}/32`), '', 'not withdrawn before the first setDesired');
    await a.setDesired([{ vip: VIP, service: 'default/web' }]);
    await reconciles(a, 1);
    const after = a.status();
    assert.deepEqual(after.announced.map((x) => x.vip), [VIP]);
    assert.equal(after.counters.pathsAdded, 0, 'the same path: not sent again');
    assert.equal(after.counters.pathsWithdrawn, 0);
    assert.deepEqual(birdView(`${VIP}/32`), before, 'BIRD: same session Since, same route time, no update or withdraw received');
  });

  it('an announcer killed with SIGKILL (kill -9 of the agent) leaves gobgpd running; the next one adopts it; BIRD sees nothing', async () => {
    const before = birdView(`${VIP}/32`);
    const pid = a.status().gobgpd.pid!;
    await a.stop({ keepRoutes: true });
    // An agent in another process adopts gobgpd, announces the VIP, and is killed.
    const cfg = JSON.stringify(bgpSection({ listenPort: 179 }));
    const code = `
      import { BgpAnnouncer } from ${JSON.stringify(fileURLToPath(new URL('../../src/bgp/announcer.ts', import.meta.url)))};
      const a = await BgpAnnouncer.start(JSON.parse(process.argv[1]), { commandPrefix: ['ip', 'netns', 'exec', ${JSON.stringify(NODE_NS)}], resyncIntervalMs: 1000 });
      await a.setDesired([{ vip: ${JSON.stringify(VIP)}, service: 'default/web' }]);
      console.log(JSON.stringify({ ready: true, pid: a.status().gobgpd.pid, adopted: a.status().gobgpd.adopted }));
      setInterval(() => {}, 1000);
    `;
    const agent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    agent.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => agent.once('exit', r));
    try {
      await waitFor(() => out.includes('"ready":true'), 20_000, 'the agent process to adopt gobgpd and announce');
      assert.deepEqual(JSON.parse(out.trim().split('\n').pop()!), { ready: true, pid, adopted: true });
    } finally {
      agent.kill('SIGKILL');
      await exited;
    }
    assert.ok(processRunning(pid), 'gobgpd outlived the killed agent');
    assert.deepEqual(birdView(`${VIP}/32`), before, 'nothing changed in BIRD at the kill');
    a = await startAnnouncer(bgpSection({ listenPort: 179 }));
    assert.equal(a.status().gobgpd.pid, pid);
    assert.equal(a.status().gobgpd.adopted, true);
    await a.setDesired([{ vip: VIP, service: 'default/web' }]);
    await reconciles(a, 1);
    assert.deepEqual(a.status().announced.map((x) => x.vip), [VIP]);
    assert.deepEqual(birdView(`${VIP}/32`), before, 'BIRD: no flap, no withdraw');
  });

  it('an adopted gobgpd killed with SIGKILL is replaced, and the VIP is back in BIRD', async () => {
    const pid = a.status().gobgpd.pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => birdRoute(`${VIP}/32`) === '', 5000, 'BIRD to drop the route of the dead session');
    await waitFor(() => birdRoute(`${VIP}/32`) !== '', 15_000, `${VIP}/32 back in BIRD`);
    const s = a.status();
    assert.notEqual(s.gobgpd.pid, pid);
    assert.equal(s.gobgpd.adopted, false);
    assert.equal(s.gobgpd.restarts, 1);
  });

  it('stop() closes the session and BIRD drops the VIP', async () => {
    const t0 = performance.now();
    await a.stop();
    await waitFor(() => birdRoute(`${VIP}/32`) === '' && !birdEstablished(), 5000, 'BIRD to drop the route after stop()');
    console.log(`# stop: route gone from BIRD ${ms(t0)} ms after stop()`);
    assert.ok(!fs.existsSync(path.join(dir, 'gobgpd.sock')), 'the API socket is removed');
    assert.ok(!fs.existsSync(path.join(dir, 'gobgpd.pid')), 'the pid file is removed');
  });

  it('paths a previous agent left in an external gobgpd are withdrawn, the desired ones added', async () => {
    const sock = path.join(dir, 'gobgpd-ext.sock');
    const sup = new GobgpdSupervisor({ apiSocket: sock, commandPrefix: ['ip', 'netns', 'exec', NODE_NS] });
    supervisors.push(sup);
    await sup.start();
    const c = new GobgpClient(sup.target);
    try {
      await waitFor(async () => (await c.getBgp(), true), 5000, 'the external gobgpd API');
      // What an earlier agent left: the instance, a stale VIP, a neighbor that is no longer configured.
      await c.startBgp({ asn: 64513, routerId: NODE_ADDR, listenPort: -1 });
      await c.addPath({ vip: '192.0.2.99', nextHop: NODE_ADDR, communities: [], largeCommunities: [] });
      await c.addPeer({ address: '198.18.201.1', asn: 64999 });
      const ext = await startAnnouncer(bgpSection({}, { apiSocket: undefined, external: `unix://${sock}` }));
      await ext.setDesired([{ vip: VIP, service: 'default/web' }]);
      await waitFor(
        async () => {
          const paths = (await c.listPaths()).filter((p) => !p.fromPeer).map((p) => p.vip);
          return paths.length === 1 && paths[0] === VIP;
        },
        5000,
        `gobgpd to hold exactly ${VIP}`,
      );
      assert.deepEqual((await c.listPeers()).map((p) => p.address), [ROUTER_ADDR]);
      assert.equal(ext.status().counters.bgpStarts, 0, 'the running instance was kept');
      // An agent restart with an external gobgpd: nothing withdrawn, and the next announcer withdraws nothing before its first setDesired.
      await ext.stop({ keepRoutes: true });
      const ext2 = await startAnnouncer(bgpSection({}, { apiSocket: undefined, external: `unix://${sock}` }));
      await reconciles(ext2, 1);
      assert.deepEqual((await c.listPaths()).filter((p) => !p.fromPeer).map((p) => p.vip), [VIP], 'kept across the restart');
      await ext2.setDesired([{ vip: VIP, service: 'default/web' }]);
      await ext2.stop();
      assert.deepEqual((await c.listPaths()).filter((p) => !p.fromPeer), [], 'stop() withdraws from an external gobgpd');
    } finally {
      c.close();
      await sup.stop();
    }
  });

  it('a neighbor configured with the wrong ASN never reaches Established and status() says why', async () => {
    // Default listenPort -1: gobgp connects out (after its 5..10 s connect-retry wait).
    const bad = await startAnnouncer(bgpSection({ neighbors: [{ address: ROUTER_ADDR, asn: 64599 }] }));
    const t0 = performance.now();
    const states = new Set<string>();
    let st: BgpStatus = bad.status();
    await waitFor(
      () => {
        st = bad.status();
        states.add(st.peers[0].state);
        return st.peers[0].lastError !== undefined && st.peers[0].notifications.sent > 0;
      },
      25_000,
      'the session error in status()',
    );
    console.log(`# wrong ASN: error reported after ${ms(t0)} ms: ${st.peers[0].lastError?.message}`);
    assert.match(st.peers[0].lastError!.message, /NOTIFICATION.*as number mismatch expected 64599, received 64512/);
    assert.ok(!states.has('established'), `states seen: ${[...states].join(', ')}`);
    assert.ok(!birdEstablished());
    await bad.stop();
  });
});

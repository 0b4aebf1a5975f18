/**
 * BGPPeer resources end to end: a node's gobgpd (BgpAnnouncer with no
 * configured neighbor) gets its neighbor from a BGPPeer written to the
 * in-test API server, and peers with BIRD 2 in a "router" namespace without
 * a restart; the peer's status shows the node's session Established; a VIP
 * reaches BIRD; the node leaving the peer's nodeSelector (a label change)
 * closes the session, and coming back opens it again; an agent restart
 * (stop with keepRoutes, a new announcer that has not read the resources
 * yet) does not flap it; deleting the BGPPeer closes it.
 *
 *   xlb-bgppr-SFX (BIRD, AS 64512)  198.18.201.1/30 ── veth ── 198.18.201.2/30  xlb-bgppn-SFX (gobgpd, AS 64513)
 *
 * Needs root, gobgpd, bird2 (bird, birdc) and golang-github-osrg-gobgp-dev.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BgpAnnouncer } from '../../src/bgp/announcer.js';
import { parseBgpConfig } from '../../src/bgp/config.js';
import { DEFAULT_PROTO_DIR } from '../../src/bgp/client.js';
import { stopKeptGobgpd } from '../../src/bgp/gobgpd.js';
import { PeerResources } from '../../src/bgp/peer-resources.js';
import { KubeCustomStatusApi } from '../../src/sources/kubernetes/custom.js';
import { EventRecorder } from '../../src/sources/kubernetes/events.js';
import { loadKubeConfig } from '../../src/sources/kubernetes/index.js';
import { waitFor } from '../../src/util/wait.js';
import { FakeApiServer, recordingLog } from '../helpers/fake-apiserver.js';
import { hasTools, isRoot, removeNetnsQuietly, shSync, skipUnless } from '../helpers/system.js';

const SFX = randomBytes(3).toString('hex');
const NODE_NS = `xlb-bgppn-${SFX}`;
const ROUTER_NS = `xlb-bgppr-${SFX}`;
const NODE_IF = `xpn-${SFX}`;
const ROUTER_IF = `xpr-${SFX}`;
const ROUTER_ADDR = '198.18.201.1';
const NODE_ADDR = '198.18.201.2';
const VIP = '192.0.2.60';
const NODE = 'node1';

const skip = skipUnless(
  [isRoot, 'needs root (network namespaces)'],
  [() => hasTools('gobgpd', 'bird', 'birdc'), 'needs gobgpd and bird2'],
  [() => fs.existsSync(`${DEFAULT_PROTO_DIR}/gobgp.proto`), 'needs golang-github-osrg-gobgp-dev (the gobgp API protos)'],
);

let dir = '';
let bird: ChildProcess | undefined;
let server: FakeApiServer | undefined;
let peers: PeerResources | undefined;
/** The announcer of the moment (replaced by the restart test). */
let announcer: BgpAnnouncer | undefined;
const announcers: BgpAnnouncer[] = [];

function birdc(...args: string[]): string {
  const r = spawnSync('birdc', ['-s', path.join(dir, 'bird.ctl'), ...args], { encoding: 'utf8' });
  if (r.error) throw r.error;
  return r.stdout + r.stderr;
}

/** When BIRD's session with the node became Established, or undefined when it is not. */
function birdSince(): string | undefined {
  return /^node1\s+BGP\s+\S+\s+up\s+(\S+)\s+Established/m.exec(birdc('show', 'protocols', 'node1'))?.[1];
}

const section = () =>
  parseBgpConfig({ asn: 64513, nodeAddress: NODE_ADDR, listenPort: 179, neighbors: [], gobgpd: { apiSocket: path.join(dir, 'gobgpd.sock') } });

async function startAnnouncer(): Promise<BgpAnnouncer> {
  const a = await BgpAnnouncer.start(section(), {
    commandPrefix: ['ip', 'netns', 'exec', NODE_NS],
    resyncIntervalMs: 500,
    resourcePeers: true,
    onPeerState: () => peers?.sessionChanged(),
  });
  announcers.push(a);
  return a;
}

const peerStatus = () => server!.get('bgppeers', undefined, 'tor')?.status;

describe('BGPPeer resources with gobgpd and BIRD', { skip }, () => {
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `xlb-bgpp-${SFX}-`));
    shSync('ip', ['netns', 'add', NODE_NS]);
    shSync('ip', ['netns', 'add', ROUTER_NS]);
    shSync('ip', ['link', 'add', NODE_IF, 'netns', NODE_NS, 'type', 'veth', 'peer', 'name', ROUTER_IF, 'netns', ROUTER_NS]);
    shSync('ip', ['-n', NODE_NS, 'addr', 'add', `${NODE_ADDR}/30`, 'dev', NODE_IF]);
    shSync('ip', ['-n', ROUTER_NS, 'addr', 'add', `${ROUTER_ADDR}/30`, 'dev', ROUTER_IF]);
    for (const [ns, ifn] of [[NODE_NS, NODE_IF], [ROUTER_NS, ROUTER_IF]]) {
      shSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      shSync('ip', ['-n', ns, 'link', 'set', ifn, 'up']);
    }
    fs.writeFileSync(
      path.join(dir, 'bird.conf'),
      `router id ${ROUTER_ADDR};
protocol device {}
protocol bgp node1 {
  local ${ROUTER_ADDR} as 64512;
  neighbor ${NODE_ADDR} as 64513;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export none; };
}
`,
    );
    bird = spawn('ip', ['netns', 'exec', ROUTER_NS, 'bird', '-f', '-c', path.join(dir, 'bird.conf'), '-s', path.join(dir, 'bird.ctl'), '-P', path.join(dir, 'bird.pid')], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    await waitFor(() => fs.existsSync(path.join(dir, 'bird.ctl')) && birdc('show', 'status').includes('Daemon is up'), 5000, 'BIRD to start');
    server = await FakeApiServer.start();
    announcer = await startAnnouncer();
    const kc = loadKubeConfig(server.kubeconfigPath);
    const log = recordingLog();
    peers = new PeerResources({
      kubeConfig: kc,
      nodeName: NODE,
      log,
      globalAsn: 64513,
      configured: [],
      onPeers: (p) => announcer?.setResourcePeers(p),
      session: (address) => announcer?.peerState(address),
      status: new KubeCustomStatusApi(kc),
      events: new EventRecorder(kc, 'xlb-bgp', NODE, log),
      flushDelayMs: 20,
      backoff: { initialMs: 20, maxMs: 200 },
    });
    peers.start();
    peers.setNode({ rack: 'r1' }, [NODE_ADDR]);
  });

  after(async () => {
    await peers?.stop().catch(() => undefined);
    for (const a of announcers) await a.stop().catch(() => undefined);
    if (dir) await stopKeptGobgpd({ gobgpd: { apiSocket: path.join(dir, 'gobgpd.sock') } }).catch(() => undefined);
    await server?.close();
    if (bird?.exitCode === null) {
      const exited = new Promise((r) => bird!.once('exit', r));
      bird.kill('SIGTERM');
      await exited;
    }
    removeNetnsQuietly(NODE_NS, ROUTER_NS);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a BGPPeer created while running becomes a neighbor and its session with BIRD reaches Established; its status says so', async () => {
    assert.equal(birdSince(), undefined, 'no session before the peer exists');
    server!.upsert('bgppeers', {
      apiVersion: 'xlb.io/v1alpha1',
      kind: 'BGPPeer',
      metadata: { name: 'tor' },
      spec: { peerAddress: ROUTER_ADDR, peerASN: 64512, holdTime: 9, keepaliveTime: 3, nodeSelector: { matchLabels: { rack: 'r1' } } },
    });
    const t0 = performance.now();
    await waitFor(() => birdSince() !== undefined, 20_000, 'BIRD Established');
    console.log(`# BGPPeer to Established in ${Math.round(performance.now() - t0)} ms`);
    const p = announcer!.status().peers.find((x) => x.address === ROUTER_ADDR);
    assert.equal(p?.resource, 'tor', 'the neighbor names its BGPPeer');
    await waitFor(() => peerStatus()?.nodes?.[NODE]?.state === 'established', 5000, "the node's entry in the status");
    assert.equal(peerStatus().conditions.find((c: { type: string }) => c.type === 'Accepted').status, 'True');
  });

  it('a VIP reaches BIRD through the peer', async () => {
    await announcer!.setDesired([{ vip: VIP, service: 'default/web' }]);
    await waitFor(() => birdc('show', 'route', `${VIP}/32`).includes(`${VIP}/32`), 10_000, 'the VIP in BIRD');
  });

  it('an agent restart (a new announcer that has not read the resources yet) keeps the session', async () => {
    const since = birdSince();
    await announcer!.stop({ keepRoutes: true });
    announcer = await startAnnouncer();
    // Several reconciles before it learns the resource peers: the neighbor must stay.
    const seen = new Set<string>();
    await waitFor(() => (seen.add(announcer!.status().lastReconcile?.at ?? ''), seen.size > 3), 10_000, 'three reconciles');
    assert.equal(birdSince(), since, 'not flapped before the peers are known');
    announcer.setResourcePeers(peers!.resources().flatMap((p) => (p.peer ? [p.peer] : [])));
    await announcer.setDesired([{ vip: VIP, service: 'default/web' }]);
    seen.clear();
    await waitFor(() => (seen.add(announcer!.status().lastReconcile?.at ?? ''), seen.size > 3), 10_000, 'three more reconciles');
    assert.equal(birdSince(), since, 'not flapped once they are known (adopted as it is)');
  });

  it('the node leaving the nodeSelector closes the session and removes its status entry; coming back opens it again', async () => {
    peers!.setNode({ rack: 'r2' }, [NODE_ADDR]);
    await waitFor(() => birdSince() === undefined, 15_000, 'the session closed');
    await waitFor(() => peerStatus()?.nodes?.[NODE] === undefined, 5000, "the node's entry removed");
    peers!.setNode({ rack: 'r1' }, [NODE_ADDR]);
    await waitFor(() => birdSince() !== undefined, 20_000, 'Established again');
  });

  it('deleting the BGPPeer closes the session', async () => {
    server!.remove('bgppeers', undefined, 'tor');
    await waitFor(() => birdSince() === undefined, 15_000, 'the session closed');
    await waitFor(() => announcer!.status().peers.length === 0, 5000, 'no neighbor left');
  });
});

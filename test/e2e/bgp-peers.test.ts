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
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
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
import { hasTools, isRoot, skipUnless } from '../helpers/system.js';
import { startBirdPair, type BirdPair } from '../helpers/bird-pair.js';

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
let pair: BirdPair | undefined;
let server: FakeApiServer | undefined;
let peers: PeerResources | undefined;
/** The announcer of the moment (replaced by the restart test). */
let announcer: BgpAnnouncer | undefined;
const announcers: BgpAnnouncer[] = [];

const birdc = (...args: string[]) => pair!.birdc(...args);

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
    pair = await startBirdPair({
      prefix: `xlb-bgpp-${SFX}-`,
      nodeNs: NODE_NS,
      routerNs: ROUTER_NS,
      nodeIf: NODE_IF,
      routerIf: ROUTER_IF,
      nodeAddr: NODE_ADDR,
      routerAddr: ROUTER_ADDR,
      kernel: false,
      connectRetry: 1,
    });
    dir = pair.dir;
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
    await pair?.stop();
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

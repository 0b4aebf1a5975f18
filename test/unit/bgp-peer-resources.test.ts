/**
 * BGPPeer resources (src/bgp/peer-resources.ts): reading one, choosing this
 * node's neighbors by nodeSelector, and, against the in-test API server,
 * the neighbors handed to the announcer as peers are created, changed,
 * deleted and as the node's labels change, the Accepted condition written
 * once with one Event, each node's own entry of status.nodes, and a peer
 * with a bad address refused while the others keep working. gobgpd and
 * BIRD are in test/e2e/bgp-peers.test.ts.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeApiServer, recordingLog, type KObject } from '../helpers/fake-apiserver.js';
import { PeerResources, parsePeerResource, selectPeers } from '../../src/bgp/peer-resources.js';
import type { ResourcePeer } from '../../src/bgp/announcer.js';
import type { SessionState } from '../../src/bgp/client.js';
import { KubeCustomStatusApi } from '../../src/sources/kubernetes/custom.js';
import { EventRecorder } from '../../src/sources/kubernetes/events.js';
import { loadKubeConfig } from '../../src/sources/kubernetes/index.js';
import type { RawObject } from '../../src/sources/kubernetes/informer.js';
import { waitFor } from '../../src/util/wait.js';

const peerObj = (name: string, spec: Record<string, unknown>, created = '2025-01-01T00:00:00Z') =>
  ({ apiVersion: 'xlb.io/v1alpha1', kind: 'BGPPeer', metadata: { name, creationTimestamp: created, generation: 1 }, spec }) as RawObject;

describe('reading a BGPPeer', () => {
  it('reads every field; myASN equal to bgp.asn is not a local AS', () => {
    const p = parsePeerResource(peerObj('r1', { peerAddress: '198.18.0.1', peerASN: 64512, myASN: 64513, peerPort: 1179, holdTime: 9, keepaliveTime: 3, ebgpMultiHop: 2, gracefulRestart: true }), 64513);
    assert.deepEqual(p.peer, { resource: 'r1', address: '198.18.0.1', asn: 64512, port: 1179, holdTime: 9, keepaliveTime: 3, multihop: 2, gracefulRestart: true });
    assert.equal(p.reason, 'Accepted');
    assert.equal(parsePeerResource(peerObj('r2', { peerAddress: '198.18.0.1', peerASN: 64512, myASN: 65001 }), 64513).peer?.localAsn, 65001);
  });

  it('BFD is not supported: the peer is used without it, and that is said', () => {
    const p = parsePeerResource(peerObj('r1', { peerAddress: '198.18.0.1', peerASN: 64512, bfdProfile: 'fast' }), 64513);
    assert.ok(p.peer, 'still used');
    assert.equal(p.reason, 'AcceptedWithoutBFD');
    assert.equal(p.message, 'spec.bfdProfile: BFD is not supported (gobgpd has no BFD); the session runs without it');
  });

  const bad: Array<[string, Record<string, unknown>, string, string]> = [
    ['a loopback address', { peerAddress: '127.0.0.1', peerASN: 1 }, 'InvalidAddress', 'spec.peerAddress: 127.0.0.1 is a loopback address: it cannot be a BGP router\'s address'],
    ['a multicast address', { peerAddress: '224.0.0.5', peerASN: 1 }, 'InvalidAddress', 'spec.peerAddress: 224.0.0.5 is a multicast address: it cannot be a BGP router\'s address'],
    ['0.0.0.0', { peerAddress: '0.0.0.0', peerASN: 1 }, 'InvalidAddress', 'spec.peerAddress: 0.0.0.0 is in 0.0.0.0/8 ("this network", RFC 1122): it cannot be a BGP router\'s address'],
    ['not an address', { peerAddress: 'router1', peerASN: 1 }, 'InvalidAddress', 'spec.peerAddress: must be an IPv4 address (got "router1")'],
    ['a keepalive not below the hold time', { peerAddress: '198.18.0.1', peerASN: 1, holdTime: 9, keepaliveTime: 9 }, 'InvalidTimers', 'spec.keepaliveTime: 9 s must be below holdTime 9 s (RFC 4271 section 4.4)'],
    ['a hold time of 2', { peerAddress: '198.18.0.1', peerASN: 1, holdTime: 2 }, 'InvalidTimers', 'spec.holdTime: must be 0 or 3..65535 seconds (RFC 4271 section 4.2; got 2)'],
    ['an AS of 0', { peerAddress: '198.18.0.1', peerASN: 0 }, 'InvalidSpec', 'spec.peerASN: must be an AS number 1..4294967295 (got 0)'],
    ['Exists with values', { peerAddress: '198.18.0.1', peerASN: 1, nodeSelector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] } }, 'InvalidSelector', 'spec.nodeSelector.matchExpressions[0].values: must be empty when operator is Exists'],
  ];
  for (const [name, spec, reason, message] of bad) {
    it(`refuses ${name}, naming the field`, () => {
      const p = parsePeerResource(peerObj('x', spec), 64513);
      assert.equal(p.peer, undefined);
      assert.equal(p.reason, reason);
      assert.equal(p.message, message);
    });
  }
});

describe("choosing this node's neighbors", () => {
  const parsed = [
    parsePeerResource(peerObj('rack1', { peerAddress: '198.18.1.1', peerASN: 64512, nodeSelector: { matchLabels: { rack: 'r1' } } }), 64513),
    parsePeerResource(peerObj('rack2', { peerAddress: '198.18.2.1', peerASN: 64512, nodeSelector: { matchLabels: { rack: 'r2' } } }), 64513),
    parsePeerResource(peerObj('everyone', { peerAddress: '198.18.9.1', peerASN: 64512 }), 64513),
    parsePeerResource(peerObj('dup-newer', { peerAddress: '198.18.9.1', peerASN: 64599 }, '2025-02-01T00:00:00Z'), 64513),
    parsePeerResource(peerObj('configured', { peerAddress: '198.18.0.1', peerASN: 64512 }), 64513),
  ];

  it('by nodeSelector; a configured neighbor and an older peer win the same address', () => {
    const { peers, verdicts } = selectPeers(parsed, { rack: 'r1' }, ['198.18.0.1'], ['198.18.1.2']);
    assert.deepEqual(peers.map((p) => p.resource), ['everyone', 'rack1']);
    assert.deepEqual(verdicts.get('rack2'), { selected: false });
    assert.equal(verdicts.get('dup-newer')?.conflict, 'spec.peerAddress: BGPPeer everyone (older) peers with 198.18.9.1 from this node; that one is used');
    assert.equal(verdicts.get('configured')?.conflict, "spec.peerAddress: 198.18.0.1 is a neighbor of this node's configuration (bgp.neighbors); that one is used");
    assert.deepEqual(selectPeers(parsed, { rack: 'r2' }, [], []).peers.map((p) => p.resource), ['configured', 'everyone', 'rack2']);
  });

  it("a peer at the node's own address is skipped on that node", () => {
    const { verdicts } = selectPeers(parsed, { rack: 'r1' }, [], ['198.18.1.1']);
    assert.equal(verdicts.get('rack1')?.conflict, "spec.peerAddress: 198.18.1.1 is this node's own address");
  });
});

/** One node's BGPPeer follower with a stand-in announcer: the neighbors it is given and the sessions it reports. */
class Node {
  readonly log = recordingLog();
  readonly given: ResourcePeer[][] = [];
  readonly sessions = new Map<string, SessionState>();
  readonly peers: PeerResources;

  constructor(server: FakeApiServer, readonly name: string, configured: string[] = []) {
    const kc = loadKubeConfig(server.kubeconfigPath);
    this.peers = new PeerResources({
      kubeConfig: kc,
      nodeName: name,
      log: this.log,
      globalAsn: 64513,
      configured,
      onPeers: (p) => this.given.push(p),
      session: (address) => (this.sessions.has(address) ? { state: this.sessions.get(address)! } : undefined),
      status: new KubeCustomStatusApi(kc),
      events: new EventRecorder(kc, 'xlb-bgp', name, this.log),
      flushDelayMs: 10,
      backoff: { initialMs: 20, maxMs: 100 },
    });
  }

  /** The addresses of the neighbors it was last given. */
  neighbors(): string[] {
    return (this.given.at(-1) ?? []).map((p) => p.address);
  }

  /** A session changes state (the announcer's onPeerState). */
  session(address: string, state: SessionState): void {
    this.sessions.set(address, state);
    this.peers.sessionChanged();
  }
}

describe('BGPPeer resources against the API server', () => {
  let server: FakeApiServer;
  const nodes: Node[] = [];
  beforeEach(async () => {
    server = await FakeApiServer.start();
  });
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.peers.stop()));
    await server.close();
  });
  function node(name: string, labels: Record<string, string>, configured: string[] = []): Node {
    const n = new Node(server, name, configured);
    nodes.push(n);
    n.peers.start();
    n.peers.setNode(labels, ['198.18.100.1']);
    return n;
  }
  const peer = (name: string, spec: Record<string, unknown>) => server.upsert('bgppeers', { apiVersion: 'xlb.io/v1alpha1', kind: 'BGPPeer', metadata: { name }, spec });
  const status = (name: string): KObject['status'] => server.get('bgppeers', undefined, name)?.status;
  const accepted = (name: string) => (status(name)?.conditions ?? []).find((c: { type: string }) => c.type === 'Accepted');
  const eventsFor = (name: string) => server.list('events').filter((e) => e.involvedObject.kind === 'BGPPeer' && e.involvedObject.name === name);

  it('a peer created, changed and deleted while running reaches only the nodes it selects, and each node reports its session', async () => {
    const a = node('node-a', { rack: 'r1' });
    const b = node('node-b', { rack: 'r2' });
    await waitFor(() => a.given.length >= 1 && b.given.length >= 1, 3000, 'both nodes given their (empty) neighbors');
    peer('tor-r1', { peerAddress: '198.18.1.1', peerASN: 64512, holdTime: 9, nodeSelector: { matchLabels: { rack: 'r1' } } });
    await waitFor(() => a.neighbors().includes('198.18.1.1'), 3000, 'node-a peers with tor-r1');
    assert.deepEqual(b.neighbors(), [], 'node-b is not selected');
    await waitFor(() => accepted('tor-r1')?.status === 'True', 3000, 'Accepted');
    assert.equal(accepted('tor-r1').reason, 'Accepted');
    assert.equal(status('tor-r1').observedGeneration, 1);
    // node-a's session comes up: its entry follows; node-b writes none.
    a.session('198.18.1.1', 'established');
    await waitFor(() => status('tor-r1')?.nodes?.['node-a']?.state === 'established', 3000, "node-a's entry");
    assert.deepEqual(Object.keys(status('tor-r1').nodes), ['node-a']);
    assert.match(status('tor-r1').nodes['node-a'].since, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // Changed: the hold time goes to the announcer (it re-adds the neighbor).
    peer('tor-r1', { peerAddress: '198.18.1.1', peerASN: 64512, holdTime: 30, nodeSelector: { matchLabels: { rack: 'r1' } } });
    await waitFor(() => a.given.at(-1)?.[0]?.holdTime === 30, 3000, 'the new hold time handed on');
    await waitFor(() => status('tor-r1')?.observedGeneration === 2, 3000, 'status of generation 2');
    // node-b is relabelled into rack r1: it peers too.
    b.peers.setNode({ rack: 'r1' }, ['198.18.100.2']);
    await waitFor(() => b.neighbors().includes('198.18.1.1'), 3000, 'node-b peers after its labels changed');
    b.session('198.18.1.1', 'active');
    await waitFor(() => status('tor-r1')?.nodes?.['node-b']?.state === 'active', 3000, "node-b's entry");
    assert.equal(status('tor-r1').nodes['node-a'].state, 'established', "node-a's entry kept: each node writes its own");
    // node-a leaves the rack: it stops peering and removes its entry.
    a.peers.setNode({ rack: 'r9' }, ['198.18.100.1']);
    await waitFor(() => a.neighbors().length === 0, 3000, 'node-a no longer peers');
    await waitFor(() => status('tor-r1')?.nodes?.['node-a'] === undefined, 3000, "node-a's entry removed");
    // Deleted: node-b stops peering.
    server.remove('bgppeers', undefined, 'tor-r1');
    await waitFor(() => b.neighbors().length === 0, 3000, 'node-b no longer peers');
  });

  it('a peer with a bad address is refused in its status with one Event, and the other peers keep working', async () => {
    const a = node('node-a', {});
    const b = node('node-b', {});
    peer('good', { peerAddress: '198.18.1.1', peerASN: 64512 });
    peer('bad', { peerAddress: '127.0.0.1', peerASN: 64512 });
    await waitFor(() => a.neighbors().includes('198.18.1.1') && b.neighbors().includes('198.18.1.1'), 3000, 'both nodes peer with good');
    await waitFor(() => accepted('bad')?.status === 'False', 3000, 'bad refused');
    assert.equal(accepted('bad').reason, 'InvalidAddress');
    assert.equal(accepted('bad').message, "spec.peerAddress: 127.0.0.1 is a loopback address: it cannot be a BGP router's address");
    assert.ok(!a.neighbors().includes('127.0.0.1') && !b.neighbors().includes('127.0.0.1'), 'no node peers with bad');
    await waitFor(() => eventsFor('bad').length >= 1, 3000, 'the Event');
    assert.equal(eventsFor('bad')[0].type, 'Warning');
    assert.equal(eventsFor('bad')[0].reason, 'InvalidAddress');
    // Two nodes computed the same condition: one wrote it, so one Event (the other's write was refused as stale).
    await waitFor(() => a.peers.stats().statusWrites + b.peers.stats().statusWrites >= 2, 3000, 'the writes');
    assert.equal(eventsFor('bad').length, 1, 'one Event for two nodes');
    assert.deepEqual(
      a.peers.issues().filter((i) => i.object === 'BGPPeer bad'),
      [{ object: 'BGPPeer bad', field: 'spec.peerAddress', message: "127.0.0.1 is a loopback address: it cannot be a BGP router's address (InvalidAddress); no node peers with it" }],
    );
  });

  it('the schema refuses an AS over 32 bits, a hold time of 1, a missing peerASN', () => {
    assert.throws(() => peer('x', { peerAddress: '198.18.1.1', peerASN: 4294967296 }), /spec\.peerASN: must be <= 4294967295/);
    assert.throws(() => peer('x', { peerAddress: '198.18.1.1', peerASN: 1, holdTime: 1 }), /spec\.holdTime: must NOT be valid/);
    assert.throws(() => peer('x', { peerAddress: '198.18.1.1' }), /spec: must have required property 'peerASN'/);
    assert.throws(() => peer('x', { peerAddress: '198.18.1.256', peerASN: 1 }), /spec\.peerAddress: must match pattern/);
  });

  it('a peer with the address of a configured neighbor is skipped on that node only, and reported', async () => {
    const a = node('node-a', {}, ['198.18.1.1']);
    const b = node('node-b', {});
    peer('tor', { peerAddress: '198.18.1.1', peerASN: 64512 });
    await waitFor(() => b.neighbors().includes('198.18.1.1'), 3000, 'node-b peers');
    await waitFor(() => status('tor')?.nodes?.['node-a']?.state === 'conflict', 3000, "node-a's conflict entry");
    assert.match(status('tor').nodes['node-a'].message, /is a neighbor of this node's configuration \(bgp\.neighbors\); that one is used/);
    assert.deepEqual(a.neighbors(), []);
    assert.ok(a.peers.issues().some((i) => i.object === 'BGPPeer tor' && /skipped on this node \(node-a\)/.test(i.message)), 'in /v1/issues of node-a');
  });
});

/**
 * Layer 2 ownership through one Lease per service (src/l2/lease-ownership.ts)
 * against the in-test API server: one owner per service, hand-over on a clean
 * stop and on link down within about a retry period, take-over after expiry
 * when the holder is cut off, release when a node stops being a candidate.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { LeaseOwnership, l2LeaseName, l2LeaseSchema } from '../../src/l2/lease-ownership.js';
import type { CandidateVip } from '../../src/l2/strategy.js';
import { loadKubeConfig } from '../../src/sources/kubernetes/index.js';
import { waitFor } from '../../src/util/wait.js';

/** Lease 2 s, renew deadline 1 s, retry 0.2 s: a test takes a few seconds at most. */
const FAST = l2LeaseSchema.parse({ leaseDurationSeconds: 2, renewDeadlineSeconds: 1, retryPeriodSeconds: 0.2 });

const WEB: CandidateVip[] = [
  { vip: '192.0.2.10', service: 'default/web' },
  { vip: '192.0.2.11', service: 'default/web' },
];
const DNS: CandidateVip[] = [{ vip: '192.0.2.20', service: 'default/dns' }];

describe('l2 lease ownership', () => {
  let server: FakeApiServer;
  const nodes: LeaseOwnership[] = [];
  let changes = new Map<string, number>();

  beforeEach(async () => {
    server = await FakeApiServer.start();
    changes = new Map();
  });
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.stop()));
    await server.close();
  });

  async function node(name: string, candidates: CandidateVip[], opts: { ownClient?: boolean } = {}): Promise<LeaseOwnership> {
    const kc = loadKubeConfig(opts.ownClient ? server.clientKubeconfig(name) : server.kubeconfigPath);
    const o = new LeaseOwnership({ nodeName: name, config: FAST, kubeConfig: kc });
    o.onChange(() => changes.set(name, (changes.get(name) ?? 0) + 1));
    await o.start();
    o.update(candidates, 'up');
    nodes.push(o);
    return o;
  }

  /** Node names that own `vip` now. */
  const owners = (vip: string, of: Array<[string, LeaseOwnership]>) => of.filter(([, o]) => o.owned().has(vip)).map(([n]) => n);

  it('lease names are valid object names, per service, hashed when long', () => {
    assert.equal(l2LeaseName('default/web'), 'xlb-l2-default-web');
    const long = l2LeaseName(`ns/${'a'.repeat(80)}`);
    assert.ok(long.length <= 63 && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(long), long);
    assert.notEqual(long, l2LeaseName(`ns/${'a'.repeat(79)}`));
    assert.match(l2LeaseName('default/a,default/b'), /^xlb-l2-default-a\.default-b$/);
  });

  it('exactly one of three candidates owns all of a service\'s VIPs, and the Lease names it', async () => {
    const all: Array<[string, LeaseOwnership]> = [];
    for (const n of ['node-a', 'node-b', 'node-c']) all.push([n, await node(n, WEB)]);
    await waitFor(() => owners('192.0.2.10', all).length === 1, 5000, 'one owner of 192.0.2.10');
    const [owner] = owners('192.0.2.10', all);
    assert.deepEqual(owners('192.0.2.11', all), [owner], 'the same node owns both VIPs of the service');
    const lease = server.get('leases', 'xlb-system', 'xlb-l2-default-web');
    assert.equal(lease?.spec.holderIdentity, owner);
    assert.equal(lease?.spec.leaseDurationSeconds, 2);
    // The others know who owns it.
    for (const [, o] of all) await waitFor(() => o.ownerOf('192.0.2.10').owner === owner, 3000, 'every node to see the owner');
    assert.ok(changes.get(owner)! >= 1, 'the owner\'s change listener fired');
  });

  it('a clean stop hands the VIPs over within about one retry period', async () => {
    const a = await node('node-a', WEB);
    await waitFor(() => a.owned().size === 2, 3000, 'node-a to own web');
    const b = await node('node-b', WEB);
    await waitFor(() => b.ownerOf('192.0.2.10').owner === 'node-a', 3000, 'node-b to see node-a');
    const t0 = performance.now();
    await a.stop();
    assert.equal(a.owned().size, 0);
    await waitFor(() => b.owned().size === 2, 3000, 'node-b to take web');
    const ms = performance.now() - t0;
    assert.ok(ms < 1000, `hand-over took ${ms.toFixed(0)} ms (retry period 200 ms)`);
  });

  it('a holder cut off from the API server loses the service after the lease duration; it stops owning by its renew deadline', async () => {
    const a = await node('node-a', WEB, { ownClient: true });
    await waitFor(() => a.owned().size === 2, 3000, 'node-a to own web');
    const b = await node('node-b', WEB);
    await waitFor(() => b.ownerOf('192.0.2.10').owner === 'node-a', 3000, 'node-b to see node-a');
    server.blockClient('node-a');
    const t0 = performance.now();
    await waitFor(() => b.owned().size === 2, 6000, 'node-b to take web after expiry');
    const ms = performance.now() - t0;
    assert.ok(ms >= 1500, `not before the lease expired: ${ms.toFixed(0)} ms`);
    assert.equal(a.owned().size, 0, 'node-a gave up when it could not renew (renew deadline 1 s < lease 2 s: never two owners)');
  });

  it('link down releases at once; a node that is no longer a candidate releases; link up competes again without taking back', async () => {
    const a = await node('node-a', [...WEB, ...DNS]);
    await waitFor(() => a.owned().size === 3, 3000, 'node-a to own web and dns');
    const b = await node('node-b', [...WEB, ...DNS]);
    await waitFor(() => b.ownerOf('192.0.2.20').owner === 'node-a', 3000, 'node-b to see node-a');
    a.update([...WEB, ...DNS], 'down');
    assert.equal(a.owned().size, 0, 'link down: owns nothing at once');
    await waitFor(() => b.owned().size === 3, 3000, 'node-b to take everything');
    a.update([...WEB, ...DNS], 'up');
    // node-b holds and renews: node-a does not take anything back.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(a.owned().size, 0);
    b.update(WEB, 'up');
    await waitFor(() => a.owned().has('192.0.2.20'), 3000, 'node-a to take dns once node-b is no longer its candidate');
    assert.deepEqual([...b.owned().keys()].sort(), ['192.0.2.10', '192.0.2.11']);
  });

  it('API errors are survived: with its connections reset the node keeps retrying, and takes the lease once the API answers', async () => {
    const a = await node('node-a', [], { ownClient: true });
    server.blockClient('node-a');
    a.update(WEB, 'up');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(a.owned().size, 0);
    server.blockClient('node-a', false);
    await waitFor(() => a.owned().size === 2, 3000, 'node-a to own web once the API answers');
  });

  it('a restart stop keeps the Lease; the next incarnation adopts the VIPs, renews the Lease as itself and never stops owning them', async () => {
    const a = await node('node-a', WEB);
    await waitFor(() => a.owned().size === 2, 3000, 'node-a to own web');
    const before = server.get('leases', 'xlb-system', 'xlb-l2-default-web');
    await a.stop({ restart: true });
    const kept = server.get('leases', 'xlb-system', 'xlb-l2-default-web');
    assert.equal(kept?.spec.holderIdentity, 'node-a', 'not released');
    assert.equal(kept?.spec.leaseDurationSeconds, 2, 'not shortened as a release does');
    assert.equal(kept?.metadata.resourceVersion, before?.metadata.resourceVersion, 'not written at all');

    // The next agent: the VIPs it found in the ARP map.
    const a2 = new LeaseOwnership({ nodeName: 'node-a', config: FAST, kubeConfig: loadKubeConfig(server.kubeconfigPath) });
    nodes.push(a2);
    const sizes: number[] = [];
    a2.onChange(() => sizes.push(a2.owned().size));
    a2.adopt(WEB.map((c) => c.vip), 'up');
    await a2.start();
    assert.deepEqual([...a2.owned().keys()].sort(), ['192.0.2.10', '192.0.2.11'], 'owned before the first update');
    a2.update(WEB, 'up');
    await waitFor(() => server.get('leases', 'xlb-system', 'xlb-l2-default-web')?.metadata.resourceVersion !== kept?.metadata.resourceVersion, 3000, 'node-a to renew');
    await waitFor(() => a2.ownerOf('192.0.2.10').owner === 'node-a' && a2.owned().size === 2, 3000, 'node-a to lead');
    assert.equal(server.get('leases', 'xlb-system', 'xlb-l2-default-web')?.spec.leaseTransitions, kept?.spec.leaseTransitions, 'the same holder: no transition');
    assert.ok(sizes.every((n) => n === 2), `owned never dropped: ${sizes.join(',')}`);
  });

  it('an adopted VIP whose Lease another node took meanwhile is given up at the first read; one no longer desired at the first update', async () => {
    const b = await node('node-b', WEB);
    await waitFor(() => b.owned().size === 2, 3000, 'node-b to own web');
    const a = new LeaseOwnership({ nodeName: 'node-a', config: FAST, kubeConfig: loadKubeConfig(server.kubeconfigPath) });
    nodes.push(a);
    a.adopt(['192.0.2.10', '192.0.2.11', '192.0.2.20'], 'up');
    await a.start();
    assert.equal(a.owned().size, 3);
    a.update(WEB, 'up');
    assert.deepEqual([...a.owned().keys()].sort(), ['192.0.2.10', '192.0.2.11'], 'dns is no longer a candidate: given up at once');
    await waitFor(() => a.owned().size === 0, 3000, 'node-a to give web up once it reads node-b as holder');
    assert.equal(b.owned().size, 2);
  });

  it('adopted VIPs are given up when the links go down before the first update, and not taken back', async () => {
    const a = new LeaseOwnership({ nodeName: 'node-a', config: FAST, kubeConfig: loadKubeConfig(server.kubeconfigPath) });
    nodes.push(a);
    a.adopt(['192.0.2.10'], 'up');
    await a.start();
    a.adopt(['192.0.2.10'], 'down');
    assert.equal(a.owned().size, 0);
    a.adopt(['192.0.2.10'], 'up');
    assert.equal(a.owned().size, 0);
  });

  it('needs the Kubernetes source', () => {
    assert.throws(() => new LeaseOwnership({ nodeName: 'n', config: FAST }), /needs the Kubernetes source/);
  });
});

/**
 * Leader election over a coordination.k8s.io/v1 Lease (src/leader) against
 * the in-test API server: one leader at a time, hand-over on a clean stop
 * within a retry period, take-over after expiry when the leader goes
 * silent, and the Lease fields as client-go writes them.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeApiServer, recordingLog } from '../helpers/fake-apiserver.js';
import { LeaseElector, leaderElectionSchema, type LeaseElectorOptions } from '../../src/leader/index.js';
import { loadKubeConfig } from '../../src/sources/kubernetes/index.js';
import { waitFor } from '../../src/util/wait.js';

/** Short times so that a test takes about a second: lease 2 s, renew deadline 1 s, retry 0.2 s. */
const FAST = { leaseDurationMs: 2000, renewDeadlineMs: 1000, retryPeriodMs: 200 };

class Candidate {
  leading = false;
  started = 0;
  stopped = 0;
  readonly log = recordingLog();
  readonly elector: LeaseElector;
  constructor(server: FakeApiServer, identity: string, extra: Partial<LeaseElectorOptions> = {}) {
    this.elector = new LeaseElector({
      kubeConfig: loadKubeConfig(server.kubeconfigPath),
      namespace: 'xlb-system',
      name: 'xlb-ipam',
      identity,
      log: this.log,
      onStartedLeading: () => {
        this.leading = true;
        this.started++;
      },
      onStoppedLeading: () => {
        this.leading = false;
        this.stopped++;
      },
      ...FAST,
      ...extra,
    });
  }
}

describe('leader election', () => {
  let server: FakeApiServer;
  const candidates: Candidate[] = [];
  beforeEach(async () => {
    server = await FakeApiServer.start();
  });
  afterEach(async () => {
    await Promise.all(candidates.splice(0).map((c) => c.elector.stop()));
    await server.close();
  });
  const candidate = (id: string, extra?: Partial<LeaseElectorOptions>) => {
    const c = new Candidate(server, id, extra);
    candidates.push(c);
    return c;
  };

  it('a lone candidate creates the Lease and leads; the Lease carries client-go\'s fields', async () => {
    const a = candidate('node-a');
    a.elector.start();
    await waitFor(() => a.leading, 3000, 'node-a leading');
    const lease = server.get('leases', 'xlb-system', 'xlb-ipam')!;
    assert.equal(lease.spec.holderIdentity, 'node-a');
    assert.equal(lease.spec.leaseDurationSeconds, 2);
    assert.equal(lease.spec.leaseTransitions, 0);
    // MicroTime: six fractional digits, or the real API server rejects the write.
    assert.match(lease.spec.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.match(lease.spec.acquireTime, /\.\d{6}Z$/);
    // It renews: renewTime moves while acquireTime stays.
    const first = lease.spec.renewTime;
    await waitFor(() => server.get('leases', 'xlb-system', 'xlb-ipam')!.spec.renewTime !== first, 3000, 'a renewal');
    assert.equal(server.get('leases', 'xlb-system', 'xlb-ipam')!.spec.acquireTime, lease.spec.acquireTime);
    assert.equal(a.elector.leader(), 'node-a');
  });

  it('of three candidates started together exactly one leads, and the others see it', async () => {
    const cs = ['node-a', 'node-b', 'node-c'].map((id) => candidate(id));
    for (const c of cs) c.elector.start();
    await waitFor(() => cs.some((c) => c.leading), 3000, 'a leader');
    const leader = cs.find((c) => c.leading)!;
    await waitFor(() => cs.every((c) => c.elector.leader() === leader.elector.leader()), 3000, 'all candidates observe the same holder');
    // Over several renewals nobody else starts leading.
    const rv = Number(server.get('leases', 'xlb-system', 'xlb-ipam')!.metadata.resourceVersion);
    await waitFor(() => Number(server.get('leases', 'xlb-system', 'xlb-ipam')!.metadata.resourceVersion) >= rv + 3, 3000, 'three renewals');
    assert.equal(cs.filter((c) => c.started > 0).length, 1);
  });

  it('a clean stop releases the Lease and another candidate takes over within a retry period, not a lease duration', async () => {
    const a = candidate('node-a');
    a.elector.start();
    await waitFor(() => a.leading, 3000, 'node-a leading');
    const b = candidate('node-b');
    b.elector.start();
    await waitFor(() => b.elector.leader() === 'node-a', 3000, 'node-b sees node-a');
    const t0 = performance.now();
    await a.elector.stop();
    assert.equal(a.stopped, 1, 'onStoppedLeading ran on stop');
    await waitFor(() => b.leading, 3000, 'node-b leading');
    const took = performance.now() - t0;
    assert.ok(took < FAST.leaseDurationMs, `hand-over took ${took.toFixed(0)} ms, under the 2000 ms lease`);
    const lease = server.get('leases', 'xlb-system', 'xlb-ipam')!;
    assert.equal(lease.spec.holderIdentity, 'node-b');
    assert.equal(lease.spec.leaseTransitions, 1);
  });

  it('a leader cut off from the API server stops leading after the renew deadline; another takes over once the lease expired', async () => {
    const a = candidate('node-a', { kubeConfig: loadKubeConfig(server.clientKubeconfig('node-a')) });
    a.elector.start();
    await waitFor(() => a.leading, 3000, 'node-a leading');
    const b = candidate('node-b');
    b.elector.start();
    await waitFor(() => b.elector.leader() === 'node-a', 3000, 'node-b sees node-a');
    server.blockClient('node-a');
    const t0 = performance.now();
    await waitFor(() => !a.leading, 3000, 'node-a giving up');
    const gaveUp = performance.now() - t0;
    assert.ok(gaveUp >= FAST.renewDeadlineMs - FAST.retryPeriodMs, `node-a gave up after ${gaveUp.toFixed(0)} ms, about the 1000 ms renew deadline`);
    assert.ok(!b.leading, 'node-b waits for the lease to expire');
    await waitFor(() => b.leading, 5000, 'node-b leading');
    const tookOver = performance.now() - t0;
    assert.ok(tookOver >= FAST.leaseDurationMs - 2 * FAST.retryPeriodMs, `node-b took over after ${tookOver.toFixed(0)} ms, about the 2000 ms lease`);
    assert.equal(a.stopped, 1);
    assert.ok(a.log.lines.some((l) => /renew deadline/.test(l.msg)));
    const lease = server.get('leases', 'xlb-system', 'xlb-ipam')!;
    assert.equal(lease.spec.holderIdentity, 'node-b');
    assert.equal(lease.spec.leaseTransitions, 1);
    // Back online, node-a sees node-b's lease and stays a follower.
    server.blockClient('node-a', false);
    await waitFor(() => a.elector.leader() === 'node-b', 3000, 'node-a sees node-b');
    assert.ok(!a.leading);
  });

  it('rejects inconsistent timings as client-go does', () => {
    const kc = loadKubeConfig(server.kubeconfigPath);
    const base = { kubeConfig: kc, namespace: 'x', name: 'l', identity: 'i', log: recordingLog() };
    assert.throws(() => new LeaseElector({ ...base, leaseDurationMs: 2000, renewDeadlineMs: 2000, retryPeriodMs: 200 }), /leaseDurationMs 2000 must be greater than renewDeadlineMs 2000/);
    assert.throws(() => new LeaseElector({ ...base, leaseDurationMs: 3000, renewDeadlineMs: 1000, retryPeriodMs: 900 }), /must be greater than 1\.2 × retryPeriodMs 900/);
    assert.throws(() => new LeaseElector({ ...base, leaseDurationMs: 1500 }), /whole seconds/);
    assert.throws(() => new LeaseElector({ ...base, identity: '' }), /identity must not be empty/);
  });
});

describe('leader election config', () => {
  const schema = leaderElectionSchema('xlb-ipam');
  it('defaults to client-go\'s 15/10/2 s in the xlb-system namespace', () => {
    assert.deepEqual(schema.parse({}), { namespace: 'xlb-system', leaseName: 'xlb-ipam', leaseDurationSeconds: 15, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 });
  });
  it('rejects a renew deadline not below the lease duration, and unknown keys', () => {
    const r = schema.safeParse({ leaseDurationSeconds: 10, renewDeadlineSeconds: 10 });
    assert.ok(!r.success);
    assert.deepEqual(r.error.issues[0].path, ['renewDeadlineSeconds']);
    assert.ok(!schema.safeParse({ leaseDuration: 5 }).success);
  });
});

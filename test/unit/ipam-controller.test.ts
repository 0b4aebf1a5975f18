/**
 * LB IPAM end to end against the in-test API server: the controller reads
 * Services through the Kubernetes source, writes status.loadBalancer.ingress
 * through the status subresource, records Events, releases on delete, does
 * not loop on exhaustion, and moves with the Lease from a stopped leader to
 * the next agent.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeApiServer, recordingLog, serviceObject, sliceObject, nodeObject, type KObject } from '../helpers/fake-apiserver.js';
import { KubernetesSource } from '../../src/sources/kubernetes/index.js';
import { IpamController, KubeIpamApi, LB_IPS_ANNOTATION, parseIpamConfig, poolsFromConfig } from '../../src/ipam/index.js';
import { LeaseElector } from '../../src/leader/index.js';
import { ServiceController } from '../../src/services/controller.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import type { NodeInfo } from '../../src/model/types.js';
import { waitFor } from '../../src/util/wait.js';

/** One agent: source → service controller → fake maps; IPAM under a Lease. */
class Agent {
  readonly log = recordingLog();
  readonly node: NodeInfo;
  readonly maps = new FakeLBMaps();
  readonly source: KubernetesSource;
  readonly ipam: IpamController;
  readonly elector: LeaseElector;
  private readonly ctl: ServiceController;

  constructor(server: FakeApiServer, name: string, addresses: string[]) {
    this.node = { name, addresses: [] };
    this.ctl = new ServiceController(this.maps, this.node, { minTableSize: 251, maxTableSize: 65521, backendMultiplier: 100 });
    this.source = new KubernetesSource({
      kubeconfig: server.kubeconfigPath,
      nodeName: name,
      log: this.log,
      onNode: (a) => this.ctl.setNode({ ...this.node, addresses: a }),
      backoff: { initialMs: 20, maxMs: 100 },
    });
    server.upsert('nodes', nodeObject(name, addresses));
    const pools = poolsFromConfig(parseIpamConfig({ pools: [{ name: 'tiny', addresses: ['192.0.2.1-192.0.2.2'] }, { name: 'manual', addresses: ['203.0.113.0/24'], autoAssign: false }] }));
    this.ipam = new IpamController({
      feed: this.source.serviceFeed(),
      api: new KubeIpamApi(this.source.kubeConfig, name, this.log),
      pools,
      log: this.log,
      backoff: { initialMs: 20, maxMs: 100 },
    });
    this.elector = new LeaseElector({
      kubeConfig: this.source.kubeConfig,
      namespace: 'xlb-system',
      name: 'xlb-ipam',
      identity: name,
      log: this.log,
      leaseDurationMs: 2000,
      renewDeadlineMs: 1000,
      retryPeriodMs: 100,
      onStartedLeading: () => this.ipam.start(),
      onStoppedLeading: () => this.ipam.stop(),
    });
  }

  /** Source first (IPAM decides on a synced cache), then the election. */
  async start(): Promise<void> {
    await this.source.start((s) => this.ctl.sync(s.state, s.issues));
    this.elector.start();
  }

  async stop(): Promise<void> {
    await this.elector.stop();
    await this.source.stop();
  }

  frontends(): string[] {
    return [...this.maps.frontends.keys()].sort();
  }
}

const ingressOf = (o: KObject | undefined): string[] => (o?.status?.loadBalancer?.ingress ?? []).map((g: { ip: string }) => g.ip);
const eventsFor = (server: FakeApiServer, name: string) => server.list('events').filter((e) => e.involvedObject.name === name);

describe('LB IPAM', () => {
  let server: FakeApiServer;
  const agents: Agent[] = [];
  beforeEach(async () => {
    server = await FakeApiServer.start();
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
    await server.close();
  });
  async function leader(name = 'node-a', addr = '198.18.0.1'): Promise<Agent> {
    const a = new Agent(server, name, [addr]);
    agents.push(a);
    await a.start();
    await waitFor(() => a.ipam.running(), 3000, `${name} leading`);
    return a;
  }
  const svcStatus = (name: string) => ingressOf(server.get('services', 'default', name));

  it('assigns an address, writes it through the status subresource, records an Event, and the VIP reaches the maps', async () => {
    const a = await leader();
    server.upsert('services', serviceObject('web', { type: 'LoadBalancer', nodePort: 30080 }));
    server.upsert('endpointslices', sliceObject('web-1', 'web', ['10.0.0.1']));
    await waitFor(() => svcStatus('web').length === 1, 5000, 'status written');
    assert.deepEqual(svcStatus('web'), ['192.0.2.1']);
    const patch = server.requests.find((r) => r.method === 'PATCH' && r.path === '/api/v1/namespaces/default/services/web/status');
    assert.ok(patch, 'written through the status subresource');
    await waitFor(() => eventsFor(server, 'web').length === 1, 3000, 'an Event');
    const ev = eventsFor(server, 'web')[0];
    assert.equal(ev.type, 'Normal');
    assert.equal(ev.reason, 'IPAllocated');
    assert.equal(ev.message, 'Assigned IP 192.0.2.1 from pool tiny');
    assert.equal(ev.involvedObject.kind, 'Service');
    assert.equal(ev.source.component, 'xlb-ipam');
    // The source sees the status change and the VIP is programmed.
    await waitFor(() => a.frontends().includes('192.0.2.1:80/6'), 5000, 'VIP frontend in the maps');
    assert.ok(a.frontends().includes('198.18.0.1:30080/6'));
  });

  it('leaves services of another class and non-LoadBalancer services alone', async () => {
    const a = await leader();
    server.upsert('services', serviceObject('other', { type: 'LoadBalancer', loadBalancerClass: 'example.com/lb' }));
    server.upsert('services', serviceObject('plain', { type: 'ClusterIP', clusterIP: '10.96.0.2' }));
    server.upsert('services', serviceObject('ours', { type: 'LoadBalancer', loadBalancerClass: 'xlb.io/lb', clusterIP: '10.96.0.3' }));
    await waitFor(() => svcStatus('ours').length === 1, 5000, 'status of ours');
    await a.ipam.idle();
    assert.deepEqual(svcStatus('other'), []);
    assert.deepEqual(svcStatus('plain'), []);
    assert.equal(server.countRequests({ method: 'PATCH', path: /\/(other|plain)\/status$/ }), 0);
  });

  it('an exhausted pool is reported with a Warning Event once, not retried in a loop, and served when an address is released', async () => {
    const a = await leader();
    server.upsert('services', serviceObject('s1', { type: 'LoadBalancer' }));
    server.upsert('services', serviceObject('s2', { type: 'LoadBalancer', clusterIP: '10.96.0.2' }));
    await waitFor(() => svcStatus('s1').length === 1 && svcStatus('s2').length === 1, 5000, 'two addresses');
    server.upsert('services', serviceObject('s3', { type: 'LoadBalancer', clusterIP: '10.96.0.3' }));
    await waitFor(() => eventsFor(server, 's3').length === 1, 5000, 'the exhaustion Event');
    const ev = eventsFor(server, 's3')[0];
    assert.equal(ev.type, 'Warning');
    assert.equal(ev.reason, 'AllocationFailed');
    assert.match(ev.message, /^PoolExhausted: no free address in pool tiny \(2 addresses\)/);
    assert.deepEqual(svcStatus('s3'), []);
    // Other work goes on; s3 is not decided again while nothing changes for it.
    const before = a.ipam.decisionsFor('default/s3');
    server.upsert('services', serviceObject('unrelated', { type: 'ClusterIP', clusterIP: '10.96.0.9' }));
    await waitFor(() => a.ipam.decisionsFor('default/unrelated') === 1, 3000, 'the unrelated service processed');
    await a.ipam.idle();
    assert.equal(a.ipam.decisionsFor('default/s3'), before);
    assert.equal(eventsFor(server, 's3').length, 1);
    assert.deepEqual(a.ipam.stats().failed, { 'default/s3': 'no free address in pool tiny (2 addresses)' });
    // Deleting s1 releases its address, which goes to the waiting s3.
    const freed = svcStatus('s1')[0];
    server.remove('services', 'default', 's1');
    await waitFor(() => svcStatus('s3').length === 1, 5000, 's3 served after the release');
    assert.deepEqual(svcStatus('s3'), [freed]);
    assert.deepEqual(a.ipam.stats().failed, {});
  });

  it('honours a requested address and reports a conflict when another service holds it', async () => {
    await leader();
    server.upsert('services', serviceObject('first', { type: 'LoadBalancer', annotations: { [LB_IPS_ANNOTATION]: '203.0.113.7' } }));
    await waitFor(() => svcStatus('first').length === 1, 5000, 'first served');
    assert.deepEqual(svcStatus('first'), ['203.0.113.7']);
    server.upsert('services', serviceObject('second', { type: 'LoadBalancer', clusterIP: '10.96.0.2', loadBalancerIP: '203.0.113.7' }));
    await waitFor(() => eventsFor(server, 'second').length === 1, 5000, 'the conflict Event');
    assert.match(eventsFor(server, 'second')[0].message, /^AddressConflict: requested address 203\.0\.113\.7 is already assigned to Service default\/first/);
    server.upsert('services', serviceObject('third', { type: 'LoadBalancer', clusterIP: '10.96.0.3', loadBalancerIP: '198.51.100.1' }));
    await waitFor(() => eventsFor(server, 'third').length === 1, 5000, 'the outside Event');
    assert.match(eventsFor(server, 'third')[0].message, /^AddressOutsidePools: requested address 198\.51\.100\.1 is outside every pool/);
  });

  it('a status write refused with 409 Conflict is decided again on the newer object and written', async () => {
    await leader();
    server.failNext({ method: 'PATCH', path: /\/services\/web\/status$/, status: 409, count: 2 });
    server.upsert('services', serviceObject('web', { type: 'LoadBalancer' }));
    await waitFor(() => svcStatus('web').length === 1, 5000, 'status written after the conflicts');
    assert.equal(server.countRequests({ method: 'PATCH', path: /\/services\/web\/status$/ }), 3);
  });

  it('a stale write (an older resourceVersion) is refused by the server', async () => {
    // The precondition IPAM relies on: a merge patch with an old resourceVersion fails with 409.
    const { KubeIpamApi: Api } = await import('../../src/ipam/api.js');
    const { loadKubeConfig } = await import('../../src/sources/kubernetes/index.js');
    const o = server.upsert('services', serviceObject('web', { type: 'LoadBalancer' }));
    server.upsert('services', { ...serviceObject('web', { type: 'LoadBalancer' }), metadata: { ...o.metadata, labels: { changed: 'yes' } } });
    const api = new Api(loadKubeConfig(server.kubeconfigPath), 'test', recordingLog());
    await assert.rejects(api.setIngress({ namespace: 'default', name: 'web', resourceVersion: o.metadata.resourceVersion }, ['192.0.2.1']), (e: { code?: number }) => e.code === 409);
  });

  it('leader election hands IPAM over when the leader stops: the next agent keeps existing addresses and serves new services', async () => {
    const a = await leader('node-a', '198.18.0.1');
    const b = new Agent(server, 'node-b', ['198.18.0.2']);
    agents.push(b);
    await b.start();
    await waitFor(() => b.elector.leader() === 'node-a', 3000, 'node-b sees node-a');
    assert.ok(!b.ipam.running());
    server.upsert('services', serviceObject('old', { type: 'LoadBalancer' }));
    await waitFor(() => svcStatus('old').length === 1, 5000, 'old served by node-a');
    assert.deepEqual(svcStatus('old'), ['192.0.2.1']);

    await a.elector.stop();
    assert.ok(!a.ipam.running(), 'the old leader stopped IPAM');
    await waitFor(() => b.ipam.running(), 2000, 'node-b running IPAM (within the lease duration: the lease was released)');
    server.upsert('services', serviceObject('new', { type: 'LoadBalancer', clusterIP: '10.96.0.2' }));
    await waitFor(() => svcStatus('new').length === 1, 5000, 'new served by node-b');
    assert.deepEqual(svcStatus('new'), ['192.0.2.2'], 'the address of old stays taken');
    assert.deepEqual(svcStatus('old'), ['192.0.2.1']);
    assert.equal(b.ipam.assignments().get('default/old'), '192.0.2.1', 'taken over from the status');
    // Both agents program the VIPs (every node serves them).
    await waitFor(() => a.frontends().includes('192.0.2.2:80/6') && b.frontends().includes('192.0.2.2:80/6'), 5000, 'VIP on both nodes');
  });
});

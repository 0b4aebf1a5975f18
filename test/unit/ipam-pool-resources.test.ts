/**
 * LoadBalancerIPPool resources reconciled live, against the in-test API
 * server (which checks them against the CRD's schema): a pool created while
 * the agent runs serves a pending Service; changed and deleted pools move
 * the services; an overlapping pool is refused in its status and with an
 * Event while the other keeps assigning; the MetalLB and Cilium annotations
 * are honoured or reported; the CRD missing is reported, not fatal. The last
 * test runs the whole agent (Agent.start) to show the wiring.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { FakeApiServer, recordingLog, serviceObject, nodeObject, type KObject } from '../helpers/fake-apiserver.js';
import { KubernetesSource } from '../../src/sources/kubernetes/index.js';
import { IpamController, KubeIpamApi, parseIpamConfig, poolsFromConfig } from '../../src/ipam/index.js';
import { PoolResources } from '../../src/ipam/custom-pools.js';
import { KubeCustomStatusApi } from '../../src/sources/kubernetes/custom.js';
import { LeaseElector } from '../../src/leader/index.js';
import { Agent as XlbAgent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import { waitFor } from '../../src/util/wait.js';

/** One agent's IPAM: the source's Service feed, the controller under a Lease, the pool resources. */
class IpamAgent {
  readonly log = recordingLog();
  readonly source: KubernetesSource;
  readonly ipam: IpamController;
  readonly pools: PoolResources;
  readonly elector: LeaseElector;

  constructor(server: FakeApiServer, name: string, configPools: Array<Record<string, unknown>> = []) {
    this.source = new KubernetesSource({ kubeconfig: server.kubeconfigPath, nodeName: name, log: this.log, backoff: { initialMs: 20, maxMs: 100 } });
    server.upsert('nodes', nodeObject(name, ['198.18.0.1']));
    const kc = this.source.kubeConfig;
    const api = new KubeIpamApi(kc, name, this.log);
    const fromConfig = poolsFromConfig(parseIpamConfig({ pools: configPools }));
    this.ipam = new IpamController({
      feed: this.source.serviceFeed(),
      api,
      pools: fromConfig,
      log: this.log,
      backoff: { initialMs: 20, maxMs: 100 },
      onAssignmentsChanged: () => this.pools.assignmentsChanged(),
    });
    this.pools = new PoolResources({
      kubeConfig: kc,
      log: this.log,
      configPools: fromConfig,
      onPools: (p) => this.ipam.setPools(p),
      usage: () => this.ipam.stats().pools,
      status: new KubeCustomStatusApi(kc),
      events: api.events,
      flushDelayMs: 20,
      backoff: { initialMs: 20, maxMs: 100 },
    });
    this.elector = new LeaseElector({
      kubeConfig: kc,
      namespace: 'xlb-system',
      name: 'xlb-ipam',
      identity: name,
      log: this.log,
      leaseDurationMs: 2000,
      renewDeadlineMs: 1000,
      retryPeriodMs: 100,
      onStartedLeading: () => {
        this.ipam.start();
        this.pools.setLeading(true);
      },
      onStoppedLeading: () => {
        this.pools.setLeading(false);
        this.ipam.stop();
      },
    });
  }

  /** As the agent does: the pools known before IPAM campaigns. */
  async start(): Promise<void> {
    this.pools.start();
    await this.source.start(() => undefined);
    await this.pools.whenReady();
    this.elector.start();
  }

  async stop(): Promise<void> {
    await this.elector.stop();
    this.ipam.stop();
    await this.pools.stop();
    await this.source.stop();
  }
}

const ingressOf = (o: KObject | undefined): string[] => (o?.status?.loadBalancer?.ingress ?? []).map((g: { ip: string }) => g.ip);
const eventsFor = (server: FakeApiServer, kind: string, name: string) => server.list('events').filter((e) => e.involvedObject.kind === kind && e.involvedObject.name === name);
const pool = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'xlb.io/v1alpha1', kind: 'LoadBalancerIPPool', metadata: { name }, spec });
const ready = (o: KObject | undefined) => (o?.status?.conditions ?? []).find((c: { type: string }) => c.type === 'Ready');

describe('LoadBalancerIPPool resources', () => {
  let server: FakeApiServer;
  const agents: IpamAgent[] = [];
  beforeEach(async () => {
    server = await FakeApiServer.start();
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
    await server.close();
  });
  async function leader(configPools: Array<Record<string, unknown>> = []): Promise<IpamAgent> {
    const a = new IpamAgent(server, 'node-a', configPools);
    agents.push(a);
    await a.start();
    await waitFor(() => a.ipam.running(), 3000, 'node-a leading');
    return a;
  }
  const svcStatus = (name: string, ns = 'default') => ingressOf(server.get('services', ns, name));

  it('a pool created while running serves a pending Service without a restart, and its status counts it', async () => {
    const a = await leader();
    server.upsert('services', serviceObject('web', { type: 'LoadBalancer' }));
    await waitFor(() => a.ipam.decisionsFor('default/web') >= 1, 3000, 'web decided');
    assert.deepEqual(svcStatus('web'), [], 'no pool yet: pending');
    server.upsert('loadbalancerippools', pool('blue', { addresses: ['192.0.2.0/29'] }));
    await waitFor(() => svcStatus('web').length === 1, 5000, 'web served from the new pool');
    assert.deepEqual(svcStatus('web'), ['192.0.2.1'], 'the first host address of 192.0.2.0/29 (network address avoided by default)');
    await waitFor(() => server.get('loadbalancerippools', undefined, 'blue')?.status?.addresses?.used === 1, 3000, 'the status counts the address');
    const st = server.get('loadbalancerippools', undefined, 'blue')!;
    assert.deepEqual(st.status.addresses, { total: 6, used: 1, available: 5 });
    assert.equal(st.status.observedGeneration, 1);
    assert.equal(ready(st).status, 'True');
    assert.equal(ready(st).reason, 'Allocating');
    assert.ok(server.countRequests({ method: 'PATCH', path: /^\/apis\/xlb\.io\/v1alpha1\/loadbalancerippools\/blue\/status$/ }) >= 1, 'written through the status subresource');
    assert.equal(a.pools.issues().length, 0, 'no issue');
    // The pool's own status writes change no pool: web is not decided again for them.
    await a.ipam.idle();
    const decided = a.ipam.decisionsFor('default/web');
    server.upsert('services', serviceObject('two', { type: 'LoadBalancer', clusterIP: '10.96.0.2' }));
    await waitFor(() => server.get('loadbalancerippools', undefined, 'blue')?.status?.addresses?.used === 2, 3000, 'the status counts two');
    await a.ipam.idle();
    assert.equal(a.ipam.decisionsFor('default/web'), decided, 'status writes do not re-decide every service');
  });

  it('a pool changed to exclude an address moves its service; a deleted pool releases, and another pool serves', async () => {
    const a = await leader();
    server.upsert('loadbalancerippools', pool('blue', { addresses: ['192.0.2.10-192.0.2.11'] }));
    server.upsert('services', serviceObject('web', { type: 'LoadBalancer' }));
    await waitFor(() => svcStatus('web').length === 1, 5000, 'web served');
    assert.deepEqual(svcStatus('web'), ['192.0.2.10']);
    // Shrunk: 192.0.2.10 is no longer in the pool.
    server.upsert('loadbalancerippools', pool('blue', { addresses: ['192.0.2.11'] }));
    await waitFor(() => svcStatus('web')[0] === '192.0.2.11', 5000, 'web moved to the address left');
    await waitFor(() => server.get('loadbalancerippools', undefined, 'blue')?.status?.observedGeneration === 2, 3000, 'status of generation 2');
    // Deleted: web loses its address (no other pool), with a Warning.
    server.remove('loadbalancerippools', undefined, 'blue');
    await waitFor(() => svcStatus('web').length === 0, 5000, 'web released');
    await waitFor(() => eventsFor(server, 'Service', 'web').some((e) => e.reason === 'AllocationFailed'), 3000, 'a Warning on web');
    assert.match(eventsFor(server, 'Service', 'web').find((e) => e.reason === 'AllocationFailed')!.message, /^NoPool: /);
    // Another pool: web is served again.
    server.upsert('loadbalancerippools', pool('green', { addresses: ['203.0.113.5'] }));
    await waitFor(() => svcStatus('web')[0] === '203.0.113.5', 5000, 'web served from green');
    assert.equal(a.ipam.stats().assigned, 1);
  });

  it('an overlapping pool is refused in its status and with an Event, and the older pool keeps assigning', async () => {
    const a = await leader();
    server.upsert('loadbalancerippools', pool('blue', { addresses: ['192.0.2.0/28'] }));
    await waitFor(() => ready(server.get('loadbalancerippools', undefined, 'blue'))?.status === 'True', 3000, 'blue ready');
    server.upsert('loadbalancerippools', pool('red', { addresses: ['198.51.100.1', '192.0.2.8-192.0.2.20'] }));
    await waitFor(() => ready(server.get('loadbalancerippools', undefined, 'red'))?.status === 'False', 3000, 'red refused');
    const red = server.get('loadbalancerippools', undefined, 'red')!;
    assert.equal(ready(red).reason, 'Overlap');
    assert.equal(ready(red).message, 'spec.addresses[1]: overlaps LoadBalancerIPPool blue at 192.0.2.8; an address belongs to one pool, and the older pool keeps it');
    assert.deepEqual(red.status.addresses, { total: 0, used: 0, available: 0 });
    await waitFor(() => eventsFor(server, 'LoadBalancerIPPool', 'red').length === 1, 3000, 'the Event on red');
    const ev = eventsFor(server, 'LoadBalancerIPPool', 'red')[0];
    assert.equal(ev.type, 'Warning');
    assert.equal(ev.reason, 'Overlap');
    assert.equal(ev.metadata.namespace, 'default', 'events of cluster-scoped objects live in default, as client-go records them');
    assert.equal(ev.involvedObject.apiVersion, 'xlb.io/v1alpha1');
    assert.deepEqual(a.pools.issues(), [
      { object: 'LoadBalancerIPPool red', field: 'spec.addresses[1]', message: 'overlaps LoadBalancerIPPool blue at 192.0.2.8; an address belongs to one pool, and the older pool keeps it (Overlap); this pool serves no address' },
    ]);
    // blue keeps assigning; red's own address 198.51.100.1 is not served.
    server.upsert('services', serviceObject('web', { type: 'LoadBalancer' }));
    server.upsert('services', serviceObject('asks', { type: 'LoadBalancer', clusterIP: '10.96.0.2', loadBalancerIP: '198.51.100.1' }));
    await waitFor(() => svcStatus('web').length === 1, 5000, 'web served by blue');
    assert.deepEqual(svcStatus('web'), ['192.0.2.1']);
    await waitFor(() => eventsFor(server, 'Service', 'asks').length === 1, 3000, 'asks refused');
    assert.match(eventsFor(server, 'Service', 'asks')[0].message, /^AddressOutsidePools: requested address 198\.51\.100\.1/);
    // Fixed: red no longer overlaps, becomes Ready with a Normal Event, and serves what it holds.
    server.upsert('loadbalancerippools', pool('red', { addresses: ['198.51.100.1'] }));
    await waitFor(() => svcStatus('asks')[0] === '198.51.100.1', 5000, 'asks served by red');
    await waitFor(() => ready(server.get('loadbalancerippools', undefined, 'red'))?.status === 'True', 3000, 'red ready');
    await waitFor(() => eventsFor(server, 'LoadBalancerIPPool', 'red').some((e) => e.reason === 'PoolReady'), 3000, 'PoolReady Event');
  });

  it('a pool named like a configured one, or with a CIDR that has host bits, is refused; the configured pool wins', async () => {
    const a = await leader([{ name: 'static', addresses: ['203.0.113.0/30'] }]);
    server.upsert('loadbalancerippools', pool('static', { addresses: ['198.51.100.0/30'] }));
    server.upsert('loadbalancerippools', pool('sloppy', { addresses: ['198.51.100.9/29'] }));
    await waitFor(() => a.pools.issues().length === 2, 3000, 'two issues');
    await waitFor(() => ready(server.get('loadbalancerippools', undefined, 'sloppy'))?.status === 'False', 3000, 'sloppy refused');
    assert.equal(ready(server.get('loadbalancerippools', undefined, 'sloppy')).reason, 'InvalidAddress');
    assert.equal(ready(server.get('loadbalancerippools', undefined, 'sloppy')).message, 'spec.addresses[0]: "198.51.100.9/29" has host bits set (did you mean 198.51.100.8/29?)');
    await waitFor(() => ready(server.get('loadbalancerippools', undefined, 'static'))?.reason === 'NameConflict', 3000, 'static refused');
    assert.deepEqual(a.ipam.currentPools().map((p) => p.name), ['static']);
    server.upsert('services', serviceObject('web', { type: 'LoadBalancer' }));
    await waitFor(() => svcStatus('web').length === 1, 5000, 'web served');
    assert.deepEqual(svcStatus('web'), ['203.0.113.1'], 'from the configured pool');
  });

  it('the API server refuses what the schema forbids: a /33, an unknown operator, no addresses', () => {
    assert.throws(() => server.upsert('loadbalancerippools', pool('bad', { addresses: ['192.0.2.0/33'] })), /LoadBalancerIPPool\.xlb\.io "bad" is invalid: spec\.addresses\.0: must match pattern/);
    assert.throws(
      () => server.upsert('loadbalancerippools', pool('bad', { addresses: ['192.0.2.1'], serviceSelector: { matchExpressions: [{ key: 'a', operator: 'Like' }] } })),
      /spec\.serviceSelector\.matchExpressions\.0\.operator: must be equal to one of the allowed values/,
    );
    assert.throws(() => server.upsert('loadbalancerippools', pool('bad', {})), /spec: must have required property 'addresses'/);
    const ok = server.upsert('loadbalancerippools', pool('good', { addresses: ['192.0.2.1'] }));
    assert.deepEqual(ok.spec, { addresses: ['192.0.2.1'], avoidNetworkAndBroadcast: true, autoAssign: true }, 'defaults applied by the server');
  });

  it('MetalLB and Cilium annotations are honoured (address, pool); sharing keys and unknown ones are reported with an Event', async () => {
    await leader();
    server.upsert('loadbalancerippools', pool('blue', { addresses: ['192.0.2.0/28'] }));
    server.upsert('loadbalancerippools', pool('manual', { addresses: ['203.0.113.0/28'], autoAssign: false }));
    server.upsert('services', serviceObject('mlb', { type: 'LoadBalancer', annotations: { 'metallb.universe.tf/loadBalancerIPs': '192.0.2.7' } }));
    server.upsert('services', serviceObject('cil', { type: 'LoadBalancer', clusterIP: '10.96.0.2', annotations: { 'io.cilium/lb-ipam-ips': '192.0.2.9' } }));
    server.upsert('services', serviceObject('mpool', { type: 'LoadBalancer', clusterIP: '10.96.0.3', annotations: { 'metallb.io/address-pool': 'manual' } }));
    server.upsert('services', serviceObject('shared', { type: 'LoadBalancer', clusterIP: '10.96.0.4', annotations: { 'metallb.universe.tf/allow-shared-ip': 'k1', 'io.cilium/lb-ipam-sharing-key': 'k1' } }));
    server.upsert('services', serviceObject('typo', { type: 'LoadBalancer', clusterIP: '10.96.0.5', annotations: { 'metallb.universe.tf/loadBalancerIP': '192.0.2.3' } }));
    await waitFor(() => ['mlb', 'cil', 'mpool', 'shared', 'typo'].every((n) => svcStatus(n).length === 1), 5000, 'every service served');
    assert.deepEqual(svcStatus('mlb'), ['192.0.2.7']);
    assert.deepEqual(svcStatus('cil'), ['192.0.2.9']);
    assert.equal(svcStatus('mpool')[0], '203.0.113.1', 'from the pool the MetalLB annotation names');
    await waitFor(() => eventsFor(server, 'Service', 'shared').some((e) => e.reason === 'UnsupportedAnnotation'), 3000, 'the sharing keys reported');
    const shared = eventsFor(server, 'Service', 'shared').find((e) => e.reason === 'UnsupportedAnnotation')!;
    assert.equal(shared.type, 'Warning');
    assert.match(shared.message, /metadata\.annotations\["io\.cilium\/lb-ipam-sharing-key"\]: not supported: sharing one address between services is not supported/);
    assert.match(shared.message, /metadata\.annotations\["metallb\.universe\.tf\/allow-shared-ip"\]: not supported/);
    await waitFor(() => eventsFor(server, 'Service', 'typo').some((e) => e.reason === 'UnsupportedAnnotation'), 3000, 'the misspelt annotation reported');
    assert.match(eventsFor(server, 'Service', 'typo').find((e) => e.reason === 'UnsupportedAnnotation')!.message, /metallb\.universe\.tf\/loadBalancerIP"\]: unknown annotation, ignored/);
    assert.equal(eventsFor(server, 'Service', 'mlb').filter((e) => e.reason === 'UnsupportedAnnotation').length, 0, 'an honoured annotation is not reported');
  });

  it('two address annotations that disagree give no address and say why', async () => {
    await leader();
    server.upsert('loadbalancerippools', pool('blue', { addresses: ['192.0.2.0/28'] }));
    server.upsert('services', serviceObject('web', { type: 'LoadBalancer', annotations: { 'xlb.io/load-balancer-ips': '192.0.2.5', 'metallb.io/loadBalancerIPs': '192.0.2.6' } }));
    await waitFor(() => eventsFor(server, 'Service', 'web').length === 1, 5000, 'the Event');
    assert.equal(eventsFor(server, 'Service', 'web')[0].message, 'InvalidRequest: annotations xlb.io/load-balancer-ips (192.0.2.5) and metallb.io/loadBalancerIPs (192.0.2.6) ask for different addresses');
    assert.deepEqual(svcStatus('web'), []);
  });

  it('without the CRD, IPAM runs on the configured pools and says so; the CRD installed later is followed', async () => {
    server.setServed('loadbalancerippools', false);
    const a = await leader([{ name: 'static', addresses: ['203.0.113.0/30'] }]);
    assert.match(a.pools.issues()[0]?.message ?? '', /CustomResourceDefinition loadbalancerippools\.xlb\.io is not installed/);
    server.upsert('services', serviceObject('web', { type: 'LoadBalancer' }));
    await waitFor(() => svcStatus('web').length === 1, 5000, 'web served from the configured pool');
    server.setServed('loadbalancerippools', true);
    server.upsert('loadbalancerippools', pool('blue', { addresses: ['192.0.2.1'] }));
    server.upsert('services', serviceObject('two', { type: 'LoadBalancer', clusterIP: '10.96.0.2', annotations: { 'xlb.io/address-pool': 'blue' } }));
    await waitFor(() => svcStatus('two')[0] === '192.0.2.1', 10_000, 'two served from blue once the CRD is there');
    assert.equal(a.pools.issues().length, 0);
  });

  it('a leader that cannot list the pools (403) does not start IPAM, and reports why', async () => {
    server.failNext({ method: 'GET', path: /loadbalancerippools$/, status: 403, count: 1_000_000 });
    const a = new IpamAgent(server, 'node-a');
    agents.push(a);
    a.pools.start();
    await a.source.start(() => undefined);
    let readyNow = false;
    void a.pools.whenReady().then(() => (readyNow = true));
    await waitFor(() => a.pools.issues().length === 1, 3000, 'the issue');
    assert.match(a.pools.issues()[0].message, /cannot list LoadBalancerIPPool resources: .*403.*needs list and watch on loadbalancerippools\.xlb\.io; waiting/);
    assert.equal(readyNow, false, 'not ready: IPAM must not act on pools it could not read');
  });
});

describe('the agent with LoadBalancerIPPool resources', () => {
  it('assigns from a pool created while it runs, and lists refused pools and unsupported annotations in /v1/issues', async () => {
    const server = await FakeApiServer.start();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-crd-agent-'));
    server.upsert('nodes', nodeObject('node1', ['198.18.0.11']));
    const agent = await XlbAgent.start(
      parseConfig(
        {
          node: { name: 'node1', addresses: ['198.18.0.11'] },
          interfaces: ['lo'],
          source: { kubernetes: { kubeconfig: server.kubeconfigPath } },
          api: { listen: `unix:${path.join(dir, 'api.sock')}` },
          ipam: { leaderElection: { leaseDurationSeconds: 3, renewDeadlineSeconds: 2, retryPeriodSeconds: 0.5 } },
        },
        dir,
      ),
      pino({ level: 'silent' }),
      { lbmaps: new FakeLBMaps() },
    );
    try {
      await waitFor(() => agent.kubernetes()?.ipam?.isLeader === true, 5000, 'the agent leads IPAM');
      server.upsert('services', serviceObject('web', { type: 'LoadBalancer', annotations: { 'lbipam.cilium.io/sharing-key': 'x' } }));
      server.upsert('loadbalancerippools', pool('blue', { addresses: ['192.0.2.0/29'] }));
      await waitFor(() => ingressOf(server.get('services', 'default', 'web')).length === 1, 5000, 'web served');
      server.upsert('loadbalancerippools', pool('red', { addresses: ['192.0.2.4'] }));
      await waitFor(() => agent.issues().some((i) => i.object === 'LoadBalancerIPPool red'), 5000, 'red in /v1/issues');
      await waitFor(() => agent.issues().some((i) => i.object === 'Service default/web'), 5000, 'the annotation in /v1/issues');
      const ann = agent.issues().find((i) => i.object === 'Service default/web')!;
      assert.equal(ann.field, 'metadata.annotations["lbipam.cilium.io/sharing-key"]');
      assert.equal(agent.kubernetes()?.ipam?.poolResources?.refused, 1);
    } finally {
      await agent.stop();
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The Kubernetes source (src/sources/kubernetes) against the in-test API
 * server (test/helpers/fake-apiserver.ts), which speaks the real list/watch
 * protocol: changes reach snapshots and, through the service controller,
 * the (fake) maps; dropped watches resume; 410 Gone relists and replaces
 * state; invalid objects are reported and skipped; errors restart.
 */
import { describe, it, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { FakeApiServer, recordingLog, serviceObject as service, sliceObject as slice, nodeObject as node } from '../helpers/fake-apiserver.js';
import { Informer, KubernetesSource, loadKubeConfig, type KubernetesSourceOptions } from '../../src/sources/kubernetes/index.js';
import type { InformerOptions } from '../../src/sources/kubernetes/informer.js';
import type { Snapshot } from '../../src/sources/source.js';
import { ServiceController } from '../../src/services/controller.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import type { NodeInfo } from '../../src/model/types.js';
import { waitFor } from '../../src/util/wait.js';

/** A source on the fake server, recording its snapshots. */
class Harness {
  snaps: Snapshot[] = [];
  log = recordingLog();
  nodeCalls: string[][] = [];
  src: KubernetesSource;
  constructor(
    private readonly server: FakeApiServer,
    extra: Partial<KubernetesSourceOptions> = {},
  ) {
    this.src = new KubernetesSource({
      kubeconfig: server.kubeconfigPath,
      nodeName: 'node-a',
      log: this.log,
      onNode: (a) => this.nodeCalls.push(a),
      backoff: { initialMs: 20, maxMs: 100 },
      ...extra,
    });
  }
  /** Start, and wait until the three watches are open on the server (start() resolves at the sync, before the watch requests). */
  async start(): Promise<void> {
    await this.src.start((s) => this.snaps.push(s));
    await waitFor(() => this.server.watchCount() === 3, 5000, 'three watches open', 5);
  }
  last(): Snapshot {
    return this.snaps[this.snaps.length - 1];
  }
  services(): string[] {
    return [...this.last().state.services.keys()].sort();
  }
  async until(cond: (s: Snapshot) => boolean, what: string, ms = 5000): Promise<Snapshot> {
    await waitFor(() => this.snaps.length > 0 && cond(this.last()), ms, what, 5);
    return this.last();
  }
}

describe('kubernetes source', () => {
  let server: FakeApiServer;
  let h: Harness | undefined;
  beforeEach(async () => {
    server = await FakeApiServer.start();
    server.upsert('nodes', node('node-a', ['198.18.0.1']));
  });
  afterEach(async () => {
    await h?.src.stop();
    h = undefined;
    await server.close();
  });

  it('delivers the listed services and slices as the first snapshot, after all three informers synced', async () => {
    server.upsert('services', service('web'));
    server.upsert('endpointslices', slice('web-1', 'web', ['10.0.0.1', '10.0.0.2']));
    h = new Harness(server);
    await h.start();
    assert.equal(h.snaps.length, 1);
    assert.deepEqual(h.services(), ['default/web']);
    assert.deepEqual([...h.last().state.endpointSlices.keys()], ['default/web-1']);
    assert.equal(h.last().state.endpointSlices.get('default/web-1')!.serviceName, 'web');
    assert.ok(h.src.synced());
    assert.deepEqual(h.nodeCalls, [['198.18.0.1']], 'onNode is called with the node\'s InternalIP before the first snapshot');
    assert.deepEqual(h.src.nodeAddresses(), ['198.18.0.1']);
    // The watches ask for bookmarks and start at the list's resourceVersion.
    const w = server.requests.filter((r) => r.watch && r.path === '/api/v1/services');
    assert.equal(w.length, 1);
    assert.equal(w[0].query.allowWatchBookmarks, 'true');
    assert.equal(w[0].query.resourceVersion, String(server.resourceVersion));
    const nodeList = server.requests.find((r) => !r.watch && r.path === '/api/v1/nodes');
    assert.equal(nodeList?.query.fieldSelector, 'metadata.name=node-a', 'only this node is listed');
  });

  it('lists first from the watch cache in one response (resourceVersion=0), and relists after 410 at the latest version in pages with continue tokens', async () => {
    for (let i = 0; i < 10; i++) server.upsert('services', service(`s${i}`, { clusterIP: `10.96.0.${i + 1}` }));
    h = new Harness(server, { pageSize: 3 });
    await h.start();
    assert.equal(h.last().state.services.size, 10);
    const first = server.requests.filter((r) => !r.watch && r.path === '/api/v1/services');
    assert.equal(first.length, 1);
    assert.equal(first[0].query.resourceVersion, '0');
    server.holdWatches();
    server.dropWatches();
    server.upsert('services', service('s10', { clusterIP: '10.96.0.11' }));
    server.compact();
    await waitFor(() => server.heldWatchCount() === 3, 5000, 'all three informers reconnecting');
    server.releaseWatches();
    await h.until((s) => s.state.services.size === 11, 'the relisted state');
    const pages = server.requests.filter((r) => !r.watch && r.path === '/api/v1/services').slice(1);
    assert.equal(pages.length, 4, '11 items in pages of 3');
    assert.equal(pages[0].query.limit, '3');
    assert.equal(pages[0].query.resourceVersion, undefined, 'a relist reads the latest version');
    assert.ok(pages.slice(1).every((p) => p.query.continue), 'later pages carry the continue token');
  });

  it('create, update and delete of services and slices reach the maps through the service controller', async () => {
    const nodeInfo: NodeInfo = { name: 'node-a', addresses: [] };
    const maps = new FakeLBMaps();
    const ctl = new ServiceController(maps, nodeInfo, { minTableSize: 251, maxTableSize: 65521, backendMultiplier: 100 });
    let syncs = 0;
    h = new Harness(server, { onNode: (a) => ctl.setNode({ ...nodeInfo, addresses: a }) });
    await h.src.start((s) => {
      h!.snaps.push(s);
      ctl.sync(s.state, s.issues);
      syncs++;
    });
    await waitFor(() => server.watchCount() === 3, 5000, 'three watches open', 5);
    const frontends = () => [...maps.frontends.keys()].sort();
    const backends = () => [...maps.backends.values()].map((b) => b.addr).sort();

    server.upsert('services', service('web', { type: 'LoadBalancer', nodePort: 30080, lbIP: '203.0.113.10' }));
    server.upsert('endpointslices', slice('web-1', 'web', ['10.0.0.1', '10.0.0.2']));
    await waitFor(() => backends().length === 2, 5000, 'two backends programmed');
    // The LoadBalancer VIP, the node port on the Node's address and on loopback, the ClusterIP.
    assert.deepEqual(frontends(), ['10.96.0.10:80/6', '127.0.0.1:30080/6', '198.18.0.1:30080/6', '203.0.113.10:80/6']);

    // Update: a third endpoint in a second slice, and the service's port.
    server.upsert('endpointslices', slice('web-2', 'web', ['10.0.0.3']));
    await waitFor(() => backends().length === 3, 5000, 'third backend from a second slice');
    assert.deepEqual(h.src.changes(), { full: false, services: [], endpointSlices: ['default/web-2'] }, 'the snapshot names what changed');
    server.upsert('services', service('web', { type: 'LoadBalancer', nodePort: 30080, lbIP: '203.0.113.10', port: 443 }));
    await waitFor(() => frontends().includes('203.0.113.10:443/6'), 5000, 'port change programmed');
    assert.ok(!frontends().includes('203.0.113.10:80/6'));

    // Delete a slice, then the service.
    server.remove('endpointslices', 'default', 'web-1');
    await waitFor(() => backends().join() === '10.0.0.3', 5000, 'slice deletion programmed');
    server.remove('services', 'default', 'web');
    await waitFor(() => maps.frontends.size === 0 && maps.backends.size === 0, 5000, 'service deletion programmed');
    assert.ok(syncs >= 2);
  });

  it('a dropped watch resumes from its resourceVersion without missing an event (no relist)', async () => {
    server.upsert('services', service('a'));
    h = new Harness(server);
    await h.start();
    server.holdWatches();
    assert.equal(server.dropWatches(), 3);
    // Changes while no watch is open.
    server.upsert('services', service('b', { clusterIP: '10.96.0.11' }));
    server.remove('services', 'default', 'a');
    await waitFor(() => server.heldWatchCount() === 3, 5000, 'all three informers reconnecting');
    server.releaseWatches();
    await h.until((s) => s.state.services.has('default/b') && !s.state.services.has('default/a'), 'the missed create and delete');
    assert.equal(server.countRequests({ method: 'GET', path: /^\/api\/v1\/services$/, watch: false }), 1, 'no second list');
    const resumed = server.requests.filter((r) => r.watch && r.path === '/api/v1/services');
    assert.equal(resumed.length, 2);
    assert.equal(resumed[1].query.resourceVersion, resumed[0].query.resourceVersion, 'resumed from the last version seen');
    const st = h.src.stats().informers.find((i) => i.kind === 'Service')!;
    assert.equal(st.restarts, 1, 'the broken connection counted as an error and restarted');
    assert.ok(st.lastEventAt > st.lastListReceivedAt && st.lastEventAt <= performance.now(), 'when the last watch event came');
    assert.ok(h.log.lines.some((l) => l.level === 'warn' && /restarting after backoff/.test(l.msg)), 'the error is logged');
  });

  /** A metadataOnly informer on the test server's EndpointSlices. */
  const sliceInformer = (o: Pick<InformerOptions, 'onEvent' | 'prepare'>) =>
    new Informer({
      kubeConfig: loadKubeConfig(server.kubeconfigPath),
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      kind: 'EndpointSlice',
      metadataOnly: true,
      log: recordingLog(),
      ...o,
    });

  it('an informer with metadataOnly hands full objects to its handler and caches them trimmed; updates and deletes still apply', async () => {
    server.upsert('endpointslices', slice('web-1', 'web', ['198.18.1.1']));
    const seen: Array<{ type: string; endpoints: number }> = [];
    const inf = sliceInformer({ onEvent: (type, o) => seen.push({ type, endpoints: Array.isArray(o.endpoints) ? o.endpoints.length : -1 }) });
    try {
      inf.start();
      await inf.whenSynced();
      assert.deepEqual(seen, [{ type: 'add', endpoints: 1 }], 'the handler saw the whole object');
      const cached = inf.get('default', 'web-1')!;
      // List items carry no apiVersion and kind; nothing but those and metadata stays.
      assert.deepEqual(Object.keys(cached).filter((k) => k !== 'apiVersion' && k !== 'kind'), ['metadata'], 'the cache keeps no endpoints or ports');
      assert.deepEqual(Object.keys(cached.metadata).sort(), ['name', 'namespace', 'resourceVersion', 'uid'].filter((k) => k in cached.metadata).sort());
      assert.ok(cached.metadata.resourceVersion, 'resourceVersion kept (updates are told apart by it)');
      await waitFor(() => server.watchCount() === 1, 5000, 'the watch open', 5);
      server.upsert('endpointslices', slice('web-1', 'web', ['198.18.1.1', '198.18.1.2']));
      await waitFor(() => seen.length === 2, 5000, 'the update', 5);
      assert.deepEqual(seen[1], { type: 'update', endpoints: 2 });
      server.remove('endpointslices', 'default', 'web-1');
      await waitFor(() => seen.length === 3, 5000, 'the delete', 5);
      assert.equal(seen[2].type, 'delete');
      assert.equal(inf.list().length, 0);
    } finally {
      await inf.stop();
    }
  });

  it('an informer with prepare works on each listed object as it is parsed and hands the result on with its event; watch events come whole, without one', async () => {
    server.upsert('endpointslices', slice('web-1', 'web', ['198.18.1.1']));
    server.upsert('endpointslices', slice('web-2', 'web', ['198.18.1.2', '198.18.1.3']));
    const prepared: string[] = [];
    const seen: Array<{ type: string; name: string; endpoints: number; prepared: unknown }> = [];
    const inf = sliceInformer({
      prepare: (o) => {
        prepared.push(o.metadata.name);
        return { endpointsWhenParsed: (o.endpoints as unknown[]).length };
      },
      onEvent: (type, o, p) => seen.push({ type, name: o.metadata.name, endpoints: Array.isArray(o.endpoints) ? o.endpoints.length : -1, prepared: p }),
    });
    try {
      inf.start();
      await inf.whenSynced();
      assert.deepEqual(prepared, ['web-1', 'web-2'], 'each listed object once, in order');
      assert.deepEqual(seen, [
        { type: 'add', name: 'web-1', endpoints: -1, prepared: { endpointsWhenParsed: 1 } },
        { type: 'add', name: 'web-2', endpoints: -1, prepared: { endpointsWhenParsed: 2 } },
      ], 'trimmed before the list was applied; the result of prepare came with it');
      await waitFor(() => server.watchCount() === 1, 5000, 'the watch open', 5);
      server.upsert('endpointslices', slice('web-1', 'web', ['198.18.1.1', '198.18.1.4', '198.18.1.5']));
      await waitFor(() => seen.length === 3, 5000, 'the update', 5);
      assert.deepEqual(seen[2], { type: 'update', name: 'web-1', endpoints: 3, prepared: undefined });
      assert.equal(prepared.length, 2, 'prepare is for lists only');
    } finally {
      await inf.stop();
    }
  });

  it('a stopped source holds nothing: it is garbage even when stopped while its watches connect', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    server.upsert('services', service('a'));
    const freed: string[] = [];
    const registry = new FinalizationRegistry((what: string) => freed.push(what));
    await (async () => {
      // In a function of its own: no reference to the source outlives it.
      const src = new KubernetesSource({ kubeconfig: server.kubeconfigPath, nodeName: 'node-a', log: recordingLog() });
      await src.start(() => {});
      await src.stop(); // at once: the watch requests are still being made
      registry.register(src, 'source');
    })();
    await waitFor(
      async () => {
        gc();
        await new Promise((r) => setTimeout(r, 20));
        return freed.includes('source');
      },
      5000,
      'the stopped source to be collected (a watch timer kept it, with its caches, for the watch timeout)',
      50,
    );
  });

  it('a watch the server ends normally (its timeout) is resumed at once', async () => {
    h = new Harness(server);
    await h.start();
    assert.equal(server.dropWatches({ graceful: true }), 3);
    server.upsert('services', service('late'));
    await h.until((s) => s.state.services.has('default/late'), 'the event after the reconnect');
    assert.equal(h.src.stats().informers.find((i) => i.kind === 'Service')!.restarts, 0, 'a normal end is not an error');
  });

  it('410 Gone on resume triggers a fresh list whose result replaces the old state', async () => {
    server.upsert('services', service('keep'));
    server.upsert('services', service('gone', { clusterIP: '10.96.0.12' }));
    server.upsert('endpointslices', slice('gone-1', 'gone', ['10.0.0.9']));
    h = new Harness(server);
    await h.start();
    assert.deepEqual(h.services(), ['default/gone', 'default/keep']);
    server.holdWatches();
    server.dropWatches();
    server.remove('services', 'default', 'gone');
    server.remove('endpointslices', 'default', 'gone-1');
    server.upsert('services', service('new', { clusterIP: '10.96.0.13' }));
    server.compact();
    await waitFor(() => server.heldWatchCount() === 3, 5000, 'all three informers reconnecting');
    server.releaseWatches();
    // Each informer relists on its own: wait for both lists to be applied.
    const s = await h.until(
      (x) => x.state.services.has('default/new') && !x.state.services.has('default/gone') && !x.state.endpointSlices.has('default/gone-1'),
      'state replaced by the relists',
    );
    assert.deepEqual([...s.state.services.keys()].sort(), ['default/keep', 'default/new']);
    assert.equal(s.state.endpointSlices.size, 0, 'the slice deleted during the outage is gone too');
    assert.equal(server.countRequests({ path: /^\/api\/v1\/services$/, watch: false }), 2, 'listed again');
    assert.ok(h.log.lines.some((l) => /410 Gone/.test(l.msg)));
  });

  it('bookmarks keep a quiet resource\'s resourceVersion fresh, so a reconnect after compaction resumes instead of relisting', async () => {
    h = new Harness(server);
    await h.start();
    for (let i = 0; i < 5; i++) server.upsert('services', service(`s${i}`, { clusterIP: `10.96.0.${20 + i}` }));
    const sliceRV = () => h!.src.stats().informers.find((i) => i.kind === 'EndpointSlice')!.resourceVersion;
    assert.notEqual(sliceRV(), String(server.resourceVersion));
    server.sendBookmarks();
    await waitFor(() => sliceRV() === String(server.resourceVersion), 5000, 'slice informer at the bookmark\'s version');
    assert.ok(h.src.stats().informers.find((i) => i.kind === 'EndpointSlice')!.bookmarks >= 1);
    server.compact();
    server.dropWatches({ resource: 'endpointslices', graceful: true });
    server.upsert('endpointslices', slice('x-1', 'x', ['10.0.0.7']));
    await h.until((s) => s.state.endpointSlices.has('default/x-1'), 'the slice created after the compaction');
    assert.equal(server.countRequests({ path: /endpointslices$/, watch: false }), 1, 'no relist');
  });

  it('invalid objects are reported with object and field, skipped (or kept without the bad part), and cleared when fixed or deleted', async () => {
    server.upsert('services', service('good'));
    const bad = service('bad', { clusterIP: '10.96.0.30' });
    bad.spec.ports[0].port = 70000;
    server.injectRaw('services', bad);
    h = new Harness(server);
    await h.start();
    // Its only port is bad: nothing of it can be served.
    assert.deepEqual(h.services(), ['default/good']);
    assert.deepEqual(
      h.last().issues.map((i) => [i.object, i.field]),
      [
        ['Service default/bad', 'spec.ports[0].port'],
        ['Service default/bad', 'spec.ports'],
      ],
    );
    // A slice with an address that is not IPv4 arrives by watch: the slice
    // is kept without that endpoint.
    server.injectRaw('endpointslices', slice('bad-1', 'good', ['10.0.0.300', '10.0.0.31']));
    const s = await h.until((x) => x.issues.some((i) => i.object === 'EndpointSlice default/bad-1'), 'the invalid slice reported');
    assert.deepEqual(
      s.issues.filter((i) => i.object === 'EndpointSlice default/bad-1').map((i) => i.field),
      ['endpoints[0].addresses[0]', 'endpoints[0].addresses'],
    );
    assert.deepEqual(
      s.state.endpointSlices.get('default/bad-1')!.endpoints.map((e) => e.addresses[0]),
      ['10.0.0.31'],
    );
    // A slice of a headless Service is not for kube-proxy: left out, no issue.
    const headless = slice('hl-1', 'good', ['10.0.0.32']);
    (headless.metadata.labels as Record<string, string>)['service.kubernetes.io/headless'] = '';
    server.upsert('endpointslices', headless);
    server.upsert('endpointslices', slice('after-1', 'good', ['10.0.0.33']));
    const u = await h.until((x) => x.state.endpointSlices.has('default/after-1'), 'the slice after the headless one');
    assert.equal(u.state.endpointSlices.has('default/hl-1'), false);
    assert.ok(!u.issues.some((i) => i.object === 'EndpointSlice default/hl-1'));
    // Fix the service, delete the slice: issues clear, the service applies.
    server.upsert('services', service('bad', { clusterIP: '10.96.0.30' }));
    server.remove('endpointslices', 'default', 'bad-1');
    const t = await h.until((x) => x.issues.length === 0 && x.state.services.has('default/bad'), 'issues cleared');
    assert.equal(t.state.services.size, 2);
    // A service with one bad port of two is served with the other, and reported.
    const half = service('half', { clusterIP: '10.96.0.34' });
    half.spec.ports.push({ name: 'bad', protocol: 'TCP', port: 0, targetPort: 8080 });
    server.injectRaw('services', half);
    const v = await h.until((x) => x.state.services.has('default/half'), 'the half-valid service');
    assert.deepEqual(v.state.services.get('default/half')!.ports.map((p) => p.name), ['http']);
    assert.deepEqual(v.issues.map((i) => [i.object, i.field]), [['Service default/half', 'spec.ports[1].port']]);
  });

  it('watch lines that are not usable events are skipped and counted; later events still apply', async () => {
    h = new Harness(server);
    await h.start();
    server.injectWatchLine('services', '{"type":"ADDED","object":{"kind":"Service","spec":{}}}');
    server.injectWatchLine('services', '{"type":"SURPRISE","object":{"metadata":{"name":"x"}}}');
    server.upsert('services', service('after'));
    await h.until((s) => s.state.services.has('default/after'), 'the valid event after the bad lines');
    assert.equal(h.src.stats().informers.find((i) => i.kind === 'Service')!.invalid, 2);
    assert.ok(h.log.lines.some((l) => l.level === 'warn' && /without metadata\.name/.test(l.msg)));
  });

  it('a watch line that is not JSON costs nothing: the source keeps its services and applies later events', async () => {
    server.upsert('services', service('web'));
    h = new Harness(server);
    await h.start();
    server.injectWatchLine('services', 'this is not JSON {');
    server.injectWatchLine('services', '\u0000\u00ff garbage');
    server.upsert('services', service('later', { clusterIP: '10.96.0.41' }));
    const s = await h.until((x) => x.state.services.has('default/later'), 'the valid event after the garbage');
    assert.ok(s.state.services.has('default/web'), 'the services it had are kept');
  });

  it('a list over maxObjects is refused whole and reported, the last good state kept; an object added beyond it is skipped', async () => {
    for (let i = 0; i < 3; i++) server.upsert('services', service(`s${i}`, { clusterIP: `10.96.1.${i + 1}` }));
    h = new Harness(server, { maxObjects: 4 });
    await h.start();
    assert.equal(h.last().state.services.size, 3);
    // The watch brings the fourth (within the limit) and the fifth (beyond it).
    server.upsert('services', service('s3', { clusterIP: '10.96.1.4' }));
    server.upsert('services', service('s4', { clusterIP: '10.96.1.5' }));
    let s = await h.until((x) => x.issues.some((i) => i.object === 'Service list'), 'the refusal reported');
    assert.deepEqual([...s.state.services.keys()].sort(), ['default/s0', 'default/s1', 'default/s2', 'default/s3']);
    const issue = s.issues.find((i) => i.object === 'Service list')!;
    assert.equal(issue.field, 'items');
    assert.match(issue.message, /default\/s4 not added.*source\.kubernetes\.maxObjects/);
    // A relist of 6 (after a compaction) is refused: nothing of it is applied, nothing withdrawn.
    server.holdWatches();
    server.dropWatches({ resource: 'services' });
    server.remove('services', 'default', 's0');
    server.upsert('services', service('s5', { clusterIP: '10.96.1.6' }));
    server.upsert('services', service('s6', { clusterIP: '10.96.1.7' }));
    server.compact();
    server.releaseWatches();
    await waitFor(() => server.countRequests({ path: /^\/api\/v1\/services$/, watch: false }) >= 3, 5000, 'the relist refused and tried again');
    s = await h.until((x) => /list refused: it has more than 4 objects/.test(x.issues.find((i) => i.object === 'Service list')?.message ?? ''), 'the list refusal reported');
    assert.deepEqual([...s.state.services.keys()].sort(), ['default/s0', 'default/s1', 'default/s2', 'default/s3'], 'the last good state stays');
    // Back within the limit: the next list is applied whole and the issue goes.
    server.remove('services', 'default', 's1');
    server.remove('services', 'default', 's2');
    s = await h.until((x) => !x.issues.some((i) => i.object === 'Service list') && x.state.services.has('default/s6'), 'the list applied again');
    assert.deepEqual([...s.state.services.keys()].sort(), ['default/s3', 'default/s4', 'default/s5', 'default/s6']);
  });

  it('list and watch errors restart with backoff until they succeed: the informer never stops', async () => {
    server.upsert('services', service('web'));
    server.failNext({ method: 'GET', path: /^\/api\/v1\/services$/, watch: false, status: 500, count: 3 });
    h = new Harness(server);
    await h.start();
    assert.deepEqual(h.services(), ['default/web']);
    assert.equal(h.src.stats().informers.find((i) => i.kind === 'Service')!.restarts, 3);
    // A watch request refused with 503 (twice) is retried too, resuming from the last version.
    server.failNext({ path: /^\/api\/v1\/services$/, watch: true, status: 503, count: 2 });
    server.dropWatches({ resource: 'services' });
    server.upsert('services', service('web2', { clusterIP: '10.96.0.40' }));
    await h.until((s) => s.state.services.has('default/web2'), 'the event after the refused watches');
    assert.equal(server.countRequests({ path: /^\/api\/v1\/services$/, watch: false }), 4, 'three failed lists and one good one: no relist after the watch errors');
    assert.equal(h.src.stats().informers.find((i) => i.kind === 'Service')!.restarts, 6);
  });

  it('unchanged objects are handed on as the same objects; an update that normalizes the same makes no snapshot', async () => {
    server.upsert('services', service('a'));
    server.upsert('services', service('b', { clusterIP: '10.96.0.11' }));
    h = new Harness(server);
    await h.start();
    const first = h.last();
    server.upsert('services', service('b', { clusterIP: '10.96.0.11', port: 81 }));
    const second = await h.until((s) => s.state.services.get('default/b')!.ports[0].port === 81, 'the port change');
    assert.equal(second.state.services.get('default/a'), first.state.services.get('default/a'), 'a: same object');
    assert.notEqual(second.state.services.get('default/b'), first.state.services.get('default/b'));
    assert.deepEqual(h.src.changes(), { full: false, services: ['default/b'], endpointSlices: [] });
    assert.deepEqual(second.state.changed, { services: ['default/b'], endpointSlices: [] }, 'the snapshot carries the hint');
    assert.equal(first.state.changed, undefined, 'the first snapshot has no hint: everything is new');
    assert.equal(first.state.services.get('default/b')!.ports[0].port, 80, 'a delivered snapshot never changes (copy-on-write)');
    assert.equal(first.state.services.size, 2);
    // A managedFields-only update (new resourceVersion, same model), then a marker.
    server.upsert('services', { ...service('a'), metadata: { ...service('a').metadata, managedFields: [{ manager: 'kubectl' }] } });
    server.upsert('services', service('marker', { clusterIP: '10.96.0.12' }));
    const third = await h.until((s) => s.state.services.has('default/marker'), 'marker');
    assert.equal(third.state.services.get('default/a'), first.state.services.get('default/a'), 'a: still the same object');
    assert.deepEqual(h.src.changes().services, ['default/marker']);
    assert.equal(second.state.services.has('default/marker'), false, 'nor does the second');
  });

  it('a burst of 2,000 creates after the sync is coalesced into few snapshots', async () => {
    h = new Harness(server);
    await h.start();
    const before = h.snaps.length;
    server.upsertMany(
      'services',
      Array.from({ length: 2000 }, (_, i) => service(`b${i}`, { clusterIP: `10.97.${i >> 8}.${i & 255}` })),
    );
    await h.until((s) => s.state.services.size === 2000, 'all 2,000 services', 10_000);
    const n = h.snaps.length - before;
    assert.ok(n >= 1 && n <= 20, `2,000 events gave ${n} snapshots`);
  });

  it('a large initial list produces exactly one snapshot', async () => {
    server.upsertMany('services', Array.from({ length: 3000 }, (_, i) => service(`l${i}`, { clusterIP: `10.98.${i >> 8}.${i & 255}` })));
    h = new Harness(server);
    await h.start();
    assert.equal(h.snaps.length, 1);
    assert.equal(h.last().state.services.size, 3000);
  });

  it('a change of the Node\'s addresses calls onNode, then delivers a snapshot to re-sync with', async () => {
    h = new Harness(server);
    await h.start();
    const n = h.snaps.length;
    server.upsert('nodes', node('node-a', ['198.18.0.1', '198.18.0.2']));
    await waitFor(() => h!.nodeCalls.length === 2, 5000, 'second onNode call');
    assert.deepEqual(h.nodeCalls[1], ['198.18.0.1', '198.18.0.2']);
    await waitFor(() => h!.snaps.length > n, 5000, 'a snapshot after the node change');
    // Another node's object is not watched at all.
    server.upsert('nodes', node('node-b', ['198.18.0.9']));
    server.upsert('services', service('marker'));
    await h.until((s) => s.state.services.has('default/marker'), 'marker');
    assert.equal(h.nodeCalls.length, 2);
  });

  it('start() rejects naming the API server when it cannot sync in time', async () => {
    const url = server.url;
    server.failNext({ path: /services$/, status: 403, reason: 'Forbidden', count: 1000 });
    h = new Harness(server, { startTimeoutMs: 300 });
    await assert.rejects(h.start(), (e: Error) => {
      assert.match(e.message, new RegExp(`API server ${url} not synced after 300 ms`));
      assert.match(e.message, /Service: .*403/);
      return true;
    });
  });
});

describe('kubernetes source configuration', () => {
  let server: FakeApiServer;
  before(async () => {
    server = await FakeApiServer.start();
  });
  after(async () => {
    await server.close();
  });

  it('a kubeconfig that does not exist is an error naming the file', () => {
    assert.throws(
      () => new KubernetesSource({ kubeconfig: '/nonexistent/kubeconfig', nodeName: 'n', log: recordingLog() }),
      /kubernetes source: cannot load kubeconfig \/nonexistent\/kubeconfig/,
    );
  });

  it('a wrong token is refused by the server and reported as 401', async () => {
    const { loadKubeConfig } = await import('../../src/sources/kubernetes/index.js');
    const kc = loadKubeConfig(server.kubeconfigPath);
    kc.users[0] = { ...kc.users[0], token: 'wrong' };
    const log = recordingLog();
    const src = new KubernetesSource({ kubeConfig: kc, nodeName: 'n', log, startTimeoutMs: 300, backoff: { initialMs: 20, maxMs: 50 } });
    await assert.rejects(src.start(() => {}), /401/);
  });
});

describe('informer restart backoff', () => {
  it('doubles from the initial delay to the cap, stretched by jitter, and starts over after a quiet period', async () => {
    const { Backoff } = await import('../../src/sources/kubernetes/backoff.js');
    let now = 0;
    let rnd = 0;
    const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2, jitter: 1, resetAfterMs: 5000, random: () => rnd, now: () => now });
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000]);
    rnd = 0.5;
    assert.equal(b.next(), 1500, 'jitter 1 × 0.5 adds half');
    now += 5000;
    rnd = 0;
    assert.equal(b.next(), 100, 'reset after 5 s without a restart');
    assert.throws(() => new Backoff({ initialMs: 0 }), /backoff: need 0 < initialMs/);
  });
});

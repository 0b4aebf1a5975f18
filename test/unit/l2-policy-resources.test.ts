/**
 * L2AnnouncementPolicy resources (src/l2/policy-resources.ts) and the
 * per-VIP interfaces of the layer 2 announcer: reading a policy, which VIPs
 * a node announces and on which interfaces under the policies, the
 * announcer writing ARP entries (and gratuitous ARP) on a VIP's interfaces
 * only, and, against the in-test API server, policies created, changed and
 * deleted while running, a bad one refused with one Event while the others
 * keep working, and an interface a node lacks reported by that node.
 */
import { describe, it, beforeEach, afterEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { FakeApiServer, recordingLog } from '../helpers/fake-apiserver.js';
import { PolicyResources, applyPolicies, parsePolicyResource } from '../../src/l2/policy-resources.js';
import { L2Announcer } from '../../src/l2/announcer.js';
import { parseL2Config } from '../../src/l2/config.js';
import { FakeGarpSender } from '../../src/l2/garp.js';
import { FakeLinkMonitor, type LinkInfo } from '../../src/l2/interfaces.js';
import type { OwnershipStrategy, CandidateVip } from '../../src/l2/strategy.js';
import { FakeL2Maps } from '../../src/datapath/l2maps.js';
import { KubeCustomStatusApi } from '../../src/sources/kubernetes/custom.js';
import { EventRecorder } from '../../src/sources/kubernetes/events.js';
import { loadKubeConfig } from '../../src/sources/kubernetes/index.js';
import type { RawObject } from '../../src/sources/kubernetes/informer.js';
import type { AnnouncedVip } from '../../src/announce/announcer.js';
import { waitFor } from '../../src/util/wait.js';

const policyObj = (name: string, spec: unknown) => ({ apiVersion: 'xlb.io/v1alpha1', kind: 'L2AnnouncementPolicy', metadata: { name }, spec }) as RawObject;

describe('reading an L2AnnouncementPolicy', () => {
  it('reads the selectors and interfaces; an empty spec selects everything', () => {
    const p = parsePolicyResource(policyObj('p', { serviceSelector: { matchLabels: { l2: 'yes' } }, nodeSelector: { matchExpressions: [{ key: 'edge', operator: 'Exists' }] }, interfaces: ['eth1'] }));
    assert.equal(p.accepted, true);
    assert.deepEqual(p.interfaces, ['eth1']);
    assert.deepEqual(p.serviceSelector, { matchLabels: { l2: 'yes' } });
    const all = parsePolicyResource(policyObj('all', {}));
    assert.ok(all.accepted && all.serviceSelector === undefined && all.nodeSelector === undefined && all.interfaces === undefined, 'everything, everywhere');
  });

  it('refuses a bad selector, naming the field', () => {
    const p = parsePolicyResource(policyObj('p', { nodeSelector: { matchExpressions: [{ key: 'a', operator: 'NotIn' }] } }));
    assert.equal(p.accepted, false);
    assert.equal(p.reason, 'InvalidSelector');
    assert.equal(p.message, 'spec.nodeSelector.matchExpressions[0].values: must be non-empty when operator is NotIn');
  });
});

describe('which VIPs a node announces under the policies', () => {
  const vips: AnnouncedVip[] = [
    { vip: '192.0.2.10', service: 'default/web' },
    { vip: '192.0.2.11', service: 'default/api' },
    { vip: '192.0.2.12', service: 'shop/cart' },
  ];
  const services = new Map<string, { labels: Record<string, string> }>([
    ['default/web', { labels: { l2: 'public' } }],
    ['default/api', { labels: { l2: 'internal' } }],
    ['shop/cart', { labels: {} }],
  ]);
  const parse = (name: string, spec: unknown) => parsePolicyResource(policyObj(name, spec));

  it('without an accepted policy, every VIP on every interface (a refused one changes nothing)', () => {
    const r = applyPolicies(vips, [parse('bad', { serviceSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } })], services, {}, ['eth0', 'eth1']);
    assert.deepEqual(r.vips, vips);
  });

  it('by service and node selectors, on the union of the matching policies\' interfaces', () => {
    const policies = [
      parse('public', { serviceSelector: { matchLabels: { l2: 'public' } }, interfaces: ['eth0'] }),
      parse('internal-edge', { serviceSelector: { matchLabels: { l2: 'internal' } }, nodeSelector: { matchLabels: { edge: 'true' } }, interfaces: ['eth1'] }),
      parse('web-too', { serviceSelector: { matchLabels: { 'io.kubernetes.service.name': 'web' } }, interfaces: ['eth1', 'eth9'] }),
    ];
    const edge = applyPolicies(vips, policies, services, { edge: 'true' }, ['eth0', 'eth1']);
    assert.deepEqual(edge.vips, [
      { vip: '192.0.2.10', service: 'default/web', interfaces: ['eth0', 'eth1'] },
      { vip: '192.0.2.11', service: 'default/api', interfaces: ['eth1'] },
    ]);
    assert.deepEqual([...edge.missing], [['web-too', ['eth9']]], 'eth9 is not announced on here: reported');
    const other = applyPolicies(vips, policies, services, {}, ['eth0', 'eth1']);
    assert.deepEqual(other.vips.map((v) => v.vip), ['192.0.2.10'], 'internal-edge does not select this node; cart no policy selects');
  });

  it('a policy without interfaces announces on all of them', () => {
    const r = applyPolicies(vips, [parse('ns', { serviceSelector: { matchLabels: { 'io.kubernetes.service.namespace': 'shop' } } })], services, {}, ['eth0']);
    assert.deepEqual(r.vips, [{ vip: '192.0.2.12', service: 'shop/cart' }]);
  });
});

describe('the layer 2 announcer with a VIP limited to some interfaces', () => {
  /** A strategy that owns every candidate at once. */
  class OwnAll implements OwnershipStrategy {
    readonly kind = 'test';
    private cands: CandidateVip[] = [];
    private listener?: () => void;
    async start(): Promise<void> {}
    adopt(): void {}
    update(c: readonly CandidateVip[]): void {
      this.cands = [...c];
      this.listener?.();
    }
    owned(): ReadonlyMap<string, number> {
      return new Map(this.cands.map((c) => [c.vip, 1]));
    }
    ownerOf(vip: string) {
      return this.cands.some((c) => c.vip === vip) ? { owner: 'node-a', since: 1 } : {};
    }
    peers() {
      return [];
    }
    counters() {
      return { sent: 0, received: 0, rejected: 0, sendErrors: 0 };
    }
    onChange(l: () => void): void {
      this.listener = l;
    }
    async stop(): Promise<void> {}
  }
  const link = (ifindex: number, ifname: string, mac: string): LinkInfo => ({ ifindex, ifname, address: mac, flags: ['BROADCAST', 'UP', 'LOWER_UP'] });
  let ann: L2Announcer | undefined;
  after(async () => ann?.stop());

  it('writes the entries, and sends gratuitous ARP, on those interfaces only; a gained interface is announced', async () => {
    const maps = new FakeL2Maps();
    const garp = new FakeGarpSender();
    const links = new FakeLinkMonitor([link(2, 'eth0', '02:00:00:00:00:01'), link(3, 'eth1', '02:00:00:00:00:02')]);
    ann = await L2Announcer.start(parseL2Config({ peers: [] }), { nodeName: 'node-a', xdpInterfaces: ['eth0', 'eth1'], maps, garp, links, strategy: new OwnAll() });
    await ann.setDesired([
      { vip: '192.0.2.10', service: 'default/web', interfaces: ['eth1'] },
      { vip: '192.0.2.11', service: 'default/api' },
    ]);
    const entries = () => maps.list().map((e) => `${e.vip}@${e.ifindex}`).sort();
    assert.deepEqual(entries(), ['192.0.2.10@3', '192.0.2.11@2', '192.0.2.11@3']);
    assert.deepEqual(garp.announced.map((g) => `${g.vip}@${g.iface}`).sort(), ['192.0.2.10@eth1', '192.0.2.11@eth0', '192.0.2.11@eth1']);
    assert.deepEqual(ann.status().vips.map((v) => [v.vip, v.interfaces]), [
      ['192.0.2.10', ['eth1']],
      ['192.0.2.11', ['eth0', 'eth1']],
    ]);
    // web's policy now covers eth0 too: its entry follows, and eth0 hears where it is.
    garp.announced.length = 0;
    await ann.setDesired([
      { vip: '192.0.2.10', service: 'default/web', interfaces: ['eth0', 'eth1'] },
      { vip: '192.0.2.11', service: 'default/api', interfaces: ['eth0'] },
    ]);
    assert.deepEqual(entries(), ['192.0.2.10@2', '192.0.2.10@3', '192.0.2.11@2']);
    assert.deepEqual(garp.announced.map((g) => `${g.vip}@${g.iface}`), ['192.0.2.10@eth0']);
  });
});

describe('L2AnnouncementPolicy resources against the API server', () => {
  let server: FakeApiServer;
  let policies: PolicyResources | undefined;
  beforeEach(async () => {
    server = await FakeApiServer.start();
  });
  afterEach(async () => {
    await policies?.stop();
    await server.close();
  });
  const put = (name: string, spec: unknown) => server.upsert('l2announcementpolicies', { apiVersion: 'xlb.io/v1alpha1', kind: 'L2AnnouncementPolicy', metadata: { name }, spec });
  const accepted = (name: string) => (server.get('l2announcementpolicies', undefined, name)?.status?.conditions ?? []).find((c: { type: string }) => c.type === 'Accepted');

  it('policies created, changed and deleted while running decide the VIPs at once; a bad one is refused with an Event, the others keep working', async () => {
    const kc = loadKubeConfig(server.kubeconfigPath);
    const log = recordingLog();
    let changes = 0;
    policies = new PolicyResources({
      kubeConfig: kc,
      nodeName: 'node-a',
      interfaces: ['eth0', 'eth1'],
      log,
      onChange: () => changes++,
      status: new KubeCustomStatusApi(kc),
      events: new EventRecorder(kc, 'xlb-l2', 'node-a', log),
      backoff: { initialMs: 20, maxMs: 100 },
    });
    policies.start();
    assert.equal(policies.ready(), false, 'not ready without the labels');
    policies.setNodeLabels({ zone: 'a' });
    await waitFor(() => policies!.ready() && changes >= 1, 3000, 'ready, told once');
    const vips: AnnouncedVip[] = [
      { vip: '192.0.2.10', service: 'default/web' },
      { vip: '192.0.2.11', service: 'default/api' },
    ];
    const services = new Map<string, { labels: Record<string, string> }>([
      ['default/web', { labels: { l2: 'yes' } }],
      ['default/api', { labels: {} }],
    ]);
    assert.deepEqual(policies.select(vips, services), vips, 'no policy: everything');
    put('web-only', { serviceSelector: { matchLabels: { l2: 'yes' } }, interfaces: ['eth1', 'bond7'] });
    await waitFor(() => policies!.select(vips, services).length === 1, 3000, 'the policy applied');
    assert.deepEqual(policies.select(vips, services), [{ vip: '192.0.2.10', service: 'default/web', interfaces: ['eth1'] }]);
    assert.deepEqual(
      policies.issues().filter((i) => i.field === 'spec.interfaces'),
      [{ object: 'L2AnnouncementPolicy web-only', field: 'spec.interfaces', message: "bond7: not among this node's announcing interfaces (eth0, eth1); skipped on node-a" }],
    );
    await waitFor(() => accepted('web-only')?.status === 'True', 3000, 'Accepted');
    // A bad policy: refused, reported, and web-only still decides.
    put('broken', { nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'In' }] } });
    await waitFor(() => accepted('broken')?.status === 'False', 3000, 'broken refused');
    assert.equal(accepted('broken').reason, 'InvalidSelector');
    await waitFor(() => server.list('events').some((e) => e.involvedObject.name === 'broken'), 3000, 'the Event');
    assert.equal(server.list('events').find((e) => e.involvedObject.name === 'broken')!.type, 'Warning');
    assert.deepEqual(policies.select(vips, services).map((v) => v.vip), ['192.0.2.10']);
    assert.ok(policies.issues().some((i) => i.object === 'L2AnnouncementPolicy broken' && /InvalidSelector/.test(i.message)), 'in /v1/issues');
    // The node's labels leave a policy's nodeSelector: its VIPs go.
    put('web-only', { serviceSelector: { matchLabels: { l2: 'yes' } }, nodeSelector: { matchLabels: { zone: 'a' } } });
    await waitFor(() => policies!.select(vips, services)[0]?.interfaces === undefined, 3000, 'the changed policy: every interface');
    policies.setNodeLabels({ zone: 'b' });
    assert.deepEqual(policies.select(vips, services), [], 'not selected any more');
    // Deleted: no accepted policy is left (broken does not count), everything is announced again.
    server.remove('l2announcementpolicies', undefined, 'web-only');
    await waitFor(() => policies!.select(vips, services).length === 2, 3000, 'back to everything');
  });

  it('the schema refuses an interface name with a slash', () => {
    assert.throws(() => put('x', { interfaces: ['eth0/1'] }), /spec\.interfaces\.0: must match pattern/);
  });
});

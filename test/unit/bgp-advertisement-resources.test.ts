/**
 * BGPAdvertisement resources (src/bgp/advertisement-resources.ts): reading
 * one, which VIPs a node advertises with which communities and LOCAL_PREF
 * under the advertisements (services, pools, node labels), and, against the
 * in-test API server, advertisements created, changed and deleted while
 * running, a bad one refused with one Event while the others keep working,
 * `peers` reported as not applied. Last, a real gobgpd (no neighbors, not
 * listening) holds the attributes a BGPAdvertisement gives a VIP.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeApiServer, recordingLog } from '../helpers/fake-apiserver.js';
import { AdvertisementResources, applyAdvertisements, parseAdvertisementResource, type PoolLike } from '../../src/bgp/advertisement-resources.js';
import { BgpAnnouncer } from '../../src/bgp/announcer.js';
import { parseBgpConfig } from '../../src/bgp/config.js';
import { Pool, parseAddressEntry } from '../../src/ipam/pool.js';
import { KubeCustomStatusApi } from '../../src/sources/kubernetes/custom.js';
import { EventRecorder } from '../../src/sources/kubernetes/events.js';
import { loadKubeConfig } from '../../src/sources/kubernetes/index.js';
import type { RawObject } from '../../src/sources/kubernetes/informer.js';
import type { AnnouncedVip } from '../../src/announce/announcer.js';
import { waitFor } from '../../src/util/wait.js';

const advObj = (name: string, spec: unknown) => ({ apiVersion: 'xlb.io/v1alpha1', kind: 'BGPAdvertisement', metadata: { name }, spec }) as RawObject;
const parse = (name: string, spec: unknown) => parseAdvertisementResource(advObj(name, spec));

describe('reading a BGPAdvertisement', () => {
  it('reads every field; an empty spec selects everything and adds nothing', () => {
    const a = parse('a', {
      serviceSelector: { matchLabels: { bgp: 'yes' } },
      nodeSelector: { matchExpressions: [{ key: 'edge', operator: 'Exists' }] },
      ipPools: ['public'],
      communities: ['65000:100', 'no-export'],
      largeCommunities: ['65000:1:2'],
      localPref: 200,
    });
    assert.equal(a.accepted, true);
    assert.equal(a.reason, 'Accepted');
    assert.deepEqual([a.ipPools, a.communities, a.largeCommunities, a.localPref], [['public'], ['65000:100', 'no-export'], ['65000:1:2'], 200]);
    const all = parse('all', {});
    assert.ok(all.accepted && !all.serviceSelector && !all.nodeSelector && !all.ipPools && all.communities.length === 0 && all.localPref === undefined, 'everything, nothing added');
  });

  it('refuses what the schema cannot catch, naming the field', () => {
    const big = parse('big', { largeCommunities: ['65000:1:2', '4294967296:1:1'] });
    assert.equal(big.accepted, false);
    assert.equal(big.reason, 'InvalidCommunity');
    assert.match(big.message, /^spec\.largeCommunities\[1\]: "4294967296:1:1" is not a BGP large community/);
    const sel = parse('sel', { serviceSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } });
    assert.deepEqual([sel.accepted, sel.reason, sel.field], [false, 'InvalidSelector', 'spec.serviceSelector.matchExpressions[0].values']);
    assert.equal(parse('nospec', undefined).reason, 'InvalidSpec');
  });

  it('accepts peers but says they are not applied', () => {
    const a = parse('p', { peers: ['tor-a'] });
    assert.deepEqual([a.accepted, a.reason, a.field], [true, 'AcceptedWithoutPeers', 'spec.peers']);
    assert.match(a.message, /advertised to every neighbor/);
  });
});

describe('which VIPs a node advertises', () => {
  const vips: AnnouncedVip[] = [
    { vip: '192.0.2.10', service: 'default/web', communities: ['65000:7'] },
    { vip: '198.51.100.5', service: 'default/api' },
    { vip: '203.0.113.1', service: 'default/db,default/web' },
  ];
  const services = new Map<string, { labels: Record<string, string> }>([
    ['default/web', { labels: { tier: 'front' } }],
    ['default/api', { labels: { tier: 'back' } }],
    ['default/db', { labels: {} }],
  ]);
  const pools: PoolLike[] = [
    new Pool('public', [parseAddressEntry('192.0.2.0/24')], { autoAssign: true }),
    new Pool('internal', [parseAddressEntry('198.51.100.0/24')], { autoAssign: true }),
  ];
  const node = { zone: 'a' };

  it('without an accepted advertisement, every VIP as it is (a refused one does not count)', () => {
    const r = applyAdvertisements(vips, [parse('bad', { largeCommunities: ['1:1:99999999999'] })], services, node, pools);
    assert.deepEqual(r.vips, vips);
  });

  it('only the VIPs some advertisement selects, with the union of their communities and the highest localPref', () => {
    const adverts = [
      parse('front', { serviceSelector: { matchLabels: { tier: 'front' } }, communities: ['65000:100'], localPref: 50 }),
      parse('front-too', { serviceSelector: { matchLabels: { tier: 'front' } }, communities: ['65000:200', '65000:100'], largeCommunities: ['65000:0:1'], localPref: 150 }),
    ];
    const r = applyAdvertisements(vips, adverts, services, node, pools);
    assert.deepEqual(r.vips, [
      { vip: '192.0.2.10', service: 'default/web', communities: ['65000:100', '65000:200', '65000:7'], largeCommunities: ['65000:0:1'], localPref: 150 },
      // Shared by db and web: selected through web.
      { vip: '203.0.113.1', service: 'default/db,default/web', communities: ['65000:100', '65000:200'], largeCommunities: ['65000:0:1'], localPref: 150 },
    ]);
  });

  it('ipPools limits to the VIPs inside the named pools; an unknown pool covers nothing and is reported', () => {
    const r = applyAdvertisements(vips, [parse('internal', { ipPools: ['internal', 'gone'] })], services, node, pools);
    assert.deepEqual(r.vips.map((v) => v.vip), ['198.51.100.5']);
    assert.deepEqual([...r.unknownPools], [['internal', ['gone']]]);
  });

  it('nodeSelector: a node it does not select advertises nothing', () => {
    const adverts = [parse('zone-b', { nodeSelector: { matchLabels: { zone: 'b' } } })];
    assert.deepEqual(applyAdvertisements(vips, adverts, services, node, pools).vips, []);
    assert.equal(applyAdvertisements(vips, adverts, services, { zone: 'b' }, pools).vips.length, 3);
  });

  it('the service name and namespace pseudo-labels select too', () => {
    const r = applyAdvertisements(vips, [parse('api', { serviceSelector: { matchLabels: { 'io.kubernetes.service.name': 'api' } } })], services, node, pools);
    assert.deepEqual(r.vips, [{ vip: '198.51.100.5', service: 'default/api' }]);
  });
});

describe('BGPAdvertisement resources against the API server', () => {
  let server: FakeApiServer;
  let adverts: AdvertisementResources | undefined;
  beforeEach(async () => {
    server = await FakeApiServer.start();
  });
  afterEach(async () => {
    await adverts?.stop();
    await server.close();
  });
  const put = (name: string, spec: unknown) => server.upsert('bgpadvertisements', { apiVersion: 'xlb.io/v1alpha1', kind: 'BGPAdvertisement', metadata: { name }, spec });
  const accepted = (name: string) => (server.get('bgpadvertisements', undefined, name)?.status?.conditions ?? []).find((c: { type: string }) => c.type === 'Accepted');

  it('advertisements created, changed and deleted while running decide the VIPs at once; a bad one is refused with an Event, the others keep working', async () => {
    const kc = loadKubeConfig(server.kubeconfigPath);
    const log = recordingLog();
    let changes = 0;
    adverts = new AdvertisementResources({
      kubeConfig: kc,
      nodeName: 'node-a',
      log,
      onChange: () => changes++,
      status: new KubeCustomStatusApi(kc),
      events: new EventRecorder(kc, 'xlb-bgp', 'node-a', log),
      backoff: { initialMs: 20, maxMs: 100 },
    });
    adverts.start();
    assert.equal(adverts.ready(), false, 'not ready without the labels');
    adverts.setNodeLabels({ zone: 'a' });
    await waitFor(() => adverts!.ready() && changes >= 1, 3000, 'ready, told once');
    const vips: AnnouncedVip[] = [
      { vip: '192.0.2.10', service: 'default/web' },
      { vip: '192.0.2.11', service: 'default/api' },
    ];
    const services = new Map<string, { labels: Record<string, string> }>([
      ['default/web', { labels: { bgp: 'yes' } }],
      ['default/api', { labels: {} }],
    ]);
    assert.deepEqual(adverts.select(vips, services, []), vips, 'no advertisement: everything');
    const told = changes;
    put('web', { serviceSelector: { matchLabels: { bgp: 'yes' } }, communities: ['65000:100'] });
    await waitFor(() => changes > told && adverts!.select(vips, services, []).length === 1, 3000, 'the advertisement applied, the agent told');
    assert.deepEqual(adverts.select(vips, services, []), [{ vip: '192.0.2.10', service: 'default/web', communities: ['65000:100'] }]);
    await waitFor(() => accepted('web')?.status === 'True', 3000, 'Accepted');
    // Changed: the communities follow.
    put('web', { serviceSelector: { matchLabels: { bgp: 'yes' } }, communities: ['65000:300'] });
    await waitFor(() => adverts!.select(vips, services, [])[0]?.communities?.[0] === '65000:300', 3000, 'the new community');
    // A bad one: refused, reported, and web still decides.
    put('broken', { largeCommunities: ['1:2:4294967296'] });
    await waitFor(() => accepted('broken')?.status === 'False', 3000, 'broken refused');
    assert.equal(accepted('broken').reason, 'InvalidCommunity');
    assert.match(accepted('broken').message, /^spec\.largeCommunities\[0\]: /);
    await waitFor(() => server.list('events').some((e) => e.involvedObject.name === 'broken'), 3000, 'the Event');
    assert.equal(server.list('events').find((e) => e.involvedObject.name === 'broken')!.type, 'Warning');
    assert.deepEqual(adverts.select(vips, services, []).map((v) => v.vip), ['192.0.2.10']);
    assert.ok(adverts.issues().some((i) => i.object === 'BGPAdvertisement broken' && /InvalidCommunity/.test(i.message)), 'refused one in /v1/issues');
    // peers: accepted, not applied, said so in status, Event and issues.
    put('to-tor', { serviceSelector: { matchLabels: { none: 'x' } }, peers: ['tor-a'] });
    await waitFor(() => accepted('to-tor')?.reason === 'AcceptedWithoutPeers', 3000, 'AcceptedWithoutPeers');
    assert.equal(accepted('to-tor').status, 'True');
    await waitFor(() => server.list('events').some((e) => e.involvedObject.name === 'to-tor' && e.reason === 'AcceptedWithoutPeers'), 3000, 'the peers Event');
    assert.ok(adverts.issues().some((i) => i.object === 'BGPAdvertisement to-tor' && i.field === 'spec.peers'), 'peers not applied, in /v1/issues');
    // Deleted: only broken and to-tor are left; to-tor selects nothing here.
    server.remove('bgpadvertisements', undefined, 'web');
    await waitFor(() => adverts!.select(vips, services, []).length === 0, 3000, 'web gone: nothing selected');
    server.remove('bgpadvertisements', undefined, 'to-tor');
    await waitFor(() => adverts!.select(vips, services, []).length === 2, 3000, 'no accepted advertisement left: everything again');
  });

  it('the schema refuses a community that is not ASN:value', () => {
    assert.throws(() => put('x', { communities: ['65536:1'] }), /spec\.communities\.0: must match pattern/);
  });
});

describe('the announcer with a BGPAdvertisement', () => {
  let dir: string;
  let announcer: BgpAnnouncer | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-bgpadv-'));
  });
  afterEach(async () => {
    await announcer?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('gobgpd holds the communities and LOCAL_PREF an advertisement gives, and re-announces when they change', { skip: fs.existsSync('/usr/bin/gobgpd') ? false : 'no gobgpd' }, async () => {
    const config = parseBgpConfig({ asn: 64513, nodeAddress: '192.0.2.1', neighbors: [], communities: ['64513:1'], gobgpd: { apiSocket: path.join(dir, 'gobgpd.sock') } });
    announcer = await BgpAnnouncer.start(config, { resyncIntervalMs: 200 });
    const vips: AnnouncedVip[] = [
      { vip: '203.0.113.1', service: 'default/web' },
      { vip: '203.0.113.2', service: 'default/api' },
    ];
    const services = new Map<string, { labels: Record<string, string> }>([
      ['default/web', { labels: { bgp: 'yes' } }],
      ['default/api', { labels: {} }],
    ]);
    const announced = () => announcer!.status().announced;
    await announcer.setDesired(applyAdvertisements(vips, [], services, {}, []).vips);
    await waitFor(() => announced().length === 2, 5000, 'both VIPs announced without advertisements');
    const adv = [parse('web', { serviceSelector: { matchLabels: { bgp: 'yes' } }, communities: ['65000:100'], largeCommunities: ['65000:1:2'], localPref: 250 })];
    await announcer.setDesired(applyAdvertisements(vips, adv, services, {}, []).vips);
    await waitFor(() => announced().length === 1 && announced()[0].localPref === 250, 5000, 'api withdrawn, web re-announced with the new attributes');
    assert.deepEqual(announced(), [{ vip: '203.0.113.1', service: 'default/web', nextHop: '192.0.2.1', communities: ['64513:1', '65000:100'], largeCommunities: ['65000:1:2'], localPref: 250 }]);
    assert.equal(announcer.status().counters.pathsWithdrawn, 1);
  });
});

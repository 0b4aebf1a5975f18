/**
 * The service controller against the in-memory maps: manifests in, map dump
 * out (Cilium's scenario tests), minimal writes, stable IDs, and recovery
 * after a failed map write.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseManifests } from '../../src/sources/file/parse.js';
import { normalizeObjects } from '../../src/sources/normalize.js';
import { ServiceController } from '../../src/services/controller.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import { predictBackend } from '../../src/maglev/index.js';
import type { ClusterState } from '../../src/model/types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const examples = path.join(root, 'examples/lab-services.yaml');
const sizing = { minTableSize: 251, maxTableSize: 131071, backendMultiplier: 100 };
const node1 = { name: 'node1', addresses: ['198.18.0.11'] };

function parse(text: string) {
  return normalizeObjects(parseManifests(text, 'lab-services.yaml').objects);
}

function load(text = fs.readFileSync(examples, 'utf8')): ClusterState {
  const parsed = parse(text);
  assert.deepEqual(parsed.issues, []);
  return parsed.state;
}

test('the lab manifests program the expected frontends, backends and tables', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  const r = c.sync(load());
  assert.deepEqual(r.issues, []);
  const dump = maps.dump();
  const web = c.services().find((s) => s.name === 'web')!.serviceId;
  // web: its VIP and node port serve the cluster set from outside and inside
  // (with backends on node2: flags remote, 64), the node port also on
  // loopback and the ClusterIP from inside only.
  for (const f of [
    `192.0.2.10:80/6 -> svc ${web} internal ${web} flags 66`,
    `198.18.0.11:31080/6 -> svc ${web} internal ${web} flags 65`,
    `127.0.0.1:31080/6 -> svc 0 internal ${web} flags 1`,
    `198.18.128.10:80/6 -> svc 0 internal ${web} flags 0`,
  ])
    assert.ok(dump.frontends.includes(f), `${f} in\n${dump.frontends.join('\n')}`);
  for (const f of ['192.0.2.11:53/17 ', '198.18.0.11:30080/6 ', '192.0.2.12:7000/6 ', '192.0.2.12:7000/17 ', '198.18.128.53:53/17 ', '198.18.128.53:53/6 ']) {
    assert.ok(dump.frontends.some((x) => x.startsWith(f)), f);
  }
  // 7 service ports, each with its ClusterIP; 5 of them with a node port on
  // the node's address and on loopback; 4 LoadBalancer VIPs.
  assert.equal(dump.frontends.length, 7 + 5 * 2 + 4);
  // Backend IDs are per service port: 5 service ports × 4 pods and kube-dns's
  // 2 ports × 2 DNS pods; node1's pods are local. No local set: no other flag.
  assert.equal(dump.backends.length, 24);
  assert.equal(dump.backends.filter((b) => b.includes('198.19.1.') && b.endsWith('flags 1')).length, 12);
  assert.equal(dump.backends.filter((b) => b.includes('198.19.2.') && b.endsWith('flags 0')).length, 12);
  // 4 backends × 100 → the smallest listed prime ≥ 400; 2 DNS servers → ≥ 200.
  for (const s of c.services()) {
    const n = s.backends.length;
    assert.ok(s.tableSize >= 100 * n && s.tableSize < 250 * n + 251, `${s.key}: table size ${s.tableSize} for ${n} backends`);
  }
});

test('a second sync of the same state writes nothing', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  c.sync(load());
  const before = { ...maps.writes };
  const r = c.sync(load());
  assert.deepEqual(maps.writes, before);
  assert.deepEqual(r.writes, { frontends: 0, frontendDeletes: 0, backends: 0, backendDeletes: 0, tables: 0, tableDeletes: 0, sourceRanges: 0 });
});

test('removing one endpoint rewrites only the tables that used it and keeps every ID', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  c.sync(load());
  const idsBefore = new Map(c.services().map((s) => [s.key, s.serviceId]));
  const backendIdsBefore = new Map(c.services().flatMap((s) => s.backends.map((b) => [`${s.key}|${b.addr}:${b.port}`, b.id])));
  const text = fs.readFileSync(examples, 'utf8');
  // Drop pod n2p2 (198.19.2.12) from web only.
  const state = load(text);
  const web = state.endpointSlices.get('default/web-lab')!;
  web.endpoints = web.endpoints.filter((e) => e.addresses[0] !== '198.19.2.12');
  const r = c.sync(state);
  assert.equal(r.writes.tables, 1, 'only web has a new table');
  assert.equal(r.writes.frontends + r.writes.frontendDeletes, 0);
  assert.equal(r.writes.backendDeletes, 1, 'web’s entry for 198.19.2.12:8080 goes, so its conntrack entries are re-picked');
  assert.equal(r.writes.backends, 0);
  for (const s of c.services()) assert.equal(s.serviceId, idsBefore.get(s.key));
  for (const s of c.services()) for (const b of s.backends) assert.equal(b.id, backendIdsBefore.get(`${s.key}|${b.addr}:${b.port}`));
  const webView = c.services().find((s) => s.key.startsWith('default/web:'))!;
  assert.equal(webView.backends.length, 3);
  const total = webView.backends.reduce((s, b) => s + b.share, 0);
  assert.ok(Math.abs(total - 1) < 1e-9, `shares sum to ${total}`);
});

test('a deleted service releases its frontends, table and backends no one else uses', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  c.sync(load());
  const state = load();
  for (const k of [...state.services.keys()]) if (k !== 'default/web') state.services.delete(k);
  const r = c.sync(state);
  assert.ok(r.writes.frontendDeletes > 0);
  assert.ok(r.writes.tableDeletes >= 4);
  const dump = maps.dump();
  assert.equal(Object.keys(dump.tables).length, 1);
  assert.equal(dump.backends.length, 4, 'only web’s 4 backends remain');
  assert.ok(dump.frontends.every((f) => f.includes(':80/6') || f.includes(':31080/6')));
});

test('serviceKeyOf names the port of a service ID, and forgets it with the service', () => {
  const c = new ServiceController(new FakeLBMaps(), node1, sizing);
  c.sync(load());
  const views = c.services();
  for (const v of views) {
    if (v.serviceIds.cluster) assert.equal(c.serviceKeyOf(v.serviceIds.cluster), v.key);
    if (v.serviceIds.local) assert.equal(c.serviceKeyOf(v.serviceIds.local), v.key);
  }
  const web = views.find((v) => v.key.startsWith('default/web:'))!;
  const other = views.find((v) => !v.key.startsWith('default/web:') && v.serviceIds.cluster)!;
  const state = load();
  for (const k of [...state.services.keys()]) if (k !== 'default/web') state.services.delete(k);
  c.sync(state);
  assert.equal(c.serviceKeyOf(web.serviceIds.cluster), web.key);
  assert.equal(c.serviceKeyOf(other.serviceIds.cluster), undefined, `${other.key} is gone`);
  assert.equal(c.serviceKeyOf(0), undefined);
});

test('the table the controller reports predicts the same backend as the table it wrote', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  c.sync(load());
  const web = c.services().find((s) => s.key.startsWith('default/web:'))!;
  const mine = c.tableOf(web.key)!;
  const written = maps.tables.get(web.serviceId)!;
  assert.deepEqual(mine.table, written);
  const flow = { saddr: '198.18.1.2', daddr: '192.0.2.10', sport: 40000, dport: 80, proto: 6 };
  assert.equal(predictBackend(mine.table, flow), predictBackend(written, flow));
});

test('two nodes build identical tables for the same service', () => {
  const a = new FakeLBMaps();
  const b = new FakeLBMaps();
  new ServiceController(a, node1, sizing).sync(load());
  new ServiceController(b, { name: 'node2', addresses: ['198.18.0.12'] }, sizing).sync(load());
  for (const [id, t] of a.tables) assert.deepEqual(t, b.tables.get(id));
});

test('a failed map write throws, and the next sync writes the remaining difference', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  maps.fault = (m) => {
    if (m === 'putFrontends') throw new Error('xlb_frontends: injected ENOMEM');
  };
  assert.throws(() => c.sync(load()), /injected ENOMEM/);
  assert.equal(maps.frontends.size, 0);
  maps.fault = undefined;
  c.sync(load());
  assert.ok(maps.frontends.size >= 5);
  assert.ok(maps.tables.size >= 5);
});

test('conflicting frontends are reported with both services, and the rest is programmed', () => {
  const text = fs.readFileSync(examples, 'utf8').replace(/ip: 192\.0\.2\.11/, 'ip: 192.0.2.12');
  // dns-echo now claims 192.0.2.12:53/UDP — no conflict (mixed uses 7000); make a real one:
  const conflicting = text.replace('port: 53\n', 'port: 7000\n');
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  const parsed = parse(conflicting);
  const r = c.sync(parsed.state, parsed.issues);
  const issue = r.issues.find((i) => /192\.0\.2\.12:7000/.test(i.message) || /7000/.test(i.message));
  assert.ok(issue, JSON.stringify(r.issues));
  assert.match(`${issue.object} ${issue.message}`, /dns-echo/);
  assert.match(`${issue.object} ${issue.message}`, /mixed/);
  assert.ok(maps.dump().frontends.some((f) => f.startsWith('192.0.2.10:80/6 ')), 'web is still programmed');
});

test('ClientIP affinity and source ranges reach the frontends and the source-range map, diffed like the rest', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  const text = fs.readFileSync(examples, 'utf8').replace(
    "      selector:\n        app: web\n      sessionAffinity: None\n",
    "      selector:\n        app: web\n      sessionAffinity: ClientIP\n      sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } }\n      loadBalancerSourceRanges: [198.18.1.0/24, 203.0.113.0/25]\n",
  );
  assert.notEqual(text, fs.readFileSync(examples, 'utf8'), 'the fixture edit applied');
  const state = load(text);
  const r = c.sync(state);
  const web = c.services().find((s) => s.name === 'web')!;
  const dump = maps.dump().frontends;
  const AFF = 4;
  const RANGES = 8;
  const REMOTE = 64; // web has backends on node2
  // The VIP: external + affinity + source ranges; the web service's NodePort: affinity only.
  // Every frontend serves the cluster set both from outside and from inside.
  const id = web.serviceId;
  assert.ok(dump.includes(`192.0.2.10:80/6 -> svc ${id} internal ${id} flags ${2 | AFF | RANGES | REMOTE} affinity 600s`), dump.join('\n'));
  assert.ok(dump.includes(`198.18.0.11:31080/6 -> svc ${id} internal ${id} flags ${1 | AFF | REMOTE} affinity 600s`), dump.join('\n'));
  // The ClusterIP: from inside only, affinity too.
  assert.ok(dump.includes(`198.18.128.10:80/6 -> svc 0 internal ${id} flags ${AFF} affinity 600s`), dump.join('\n'));
  assert.deepEqual(maps.sourceRanges.get(web.serviceId), ['198.18.1.0/24', '203.0.113.0/25']);
  assert.equal(r.writes.sourceRanges, 1);
  // Same state again: nothing written; ranges removed: one write clears them.
  assert.equal(c.sync(state).writes.sourceRanges, 0);
  const cleared = c.sync(load());
  assert.equal(cleared.writes.sourceRanges, 1);
  assert.equal(maps.sourceRanges.size, 0);
  assert.ok(maps.dump().frontends.includes(`192.0.2.10:80/6 -> svc ${web.serviceId} internal ${web.serviceId} flags 66`));
});

/** web with `policies` merged into its spec (the lab's web: 2 pods on node1, 2 on node2). */
function webWith(policies: string): ClusterState {
  const original = "      externalTrafficPolicy: Cluster\n      ports:\n        - name: http\n          protocol: TCP\n          port: 80\n";
  const text = fs.readFileSync(examples, 'utf8').replace(original, `${policies.includes('externalTrafficPolicy') ? '' : '      externalTrafficPolicy: Cluster\n'}${policies}${original.slice(original.indexOf('      ports:'))}`);
  assert.notEqual(text, fs.readFileSync(examples, 'utf8'), 'the fixture edit applied');
  return load(text);
}

test('externalTrafficPolicy Local: outside traffic takes the local set, pods and the node the cluster set', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  c.sync(webWith('      externalTrafficPolicy: Local\n'));
  const web = c.services().find((s) => s.name === 'web')!;
  const { cluster, local } = web.serviceIds;
  assert.ok(cluster > 0 && local > 0 && cluster !== local);
  const F = { NODEPORT: 1, EXTERNAL: 2, EXT_LOCAL: 16 };
  const dump = maps.dump().frontends;
  for (const f of [
    `192.0.2.10:80/6 -> svc ${local} internal ${cluster} flags ${F.EXTERNAL | F.EXT_LOCAL}`,
    `198.18.0.11:31080/6 -> svc ${local} internal ${cluster} flags ${F.NODEPORT | F.EXT_LOCAL}`,
    `127.0.0.1:31080/6 -> svc 0 internal ${cluster} flags ${F.NODEPORT}`,
    `198.18.128.10:80/6 -> svc 0 internal ${cluster} flags 0`,
  ])
    assert.ok(dump.includes(f), `${f} in\n${dump.join('\n')}`);
  // The local table holds node1's two pods; the cluster table all four.
  const ids = (t: Uint32Array) => [...new Set(t)].map((id) => web.backends.find((b) => b.id === id)!.addr).sort();
  assert.deepEqual(ids(maps.tables.get(local)!), ['198.19.1.11', '198.19.1.12']);
  assert.deepEqual(ids(maps.tables.get(cluster)!), ['198.19.1.11', '198.19.1.12', '198.19.2.11', '198.19.2.12']);
  // node2's pods are in no local set: ClientIP affinity of the local set skips them.
  const NOT_LOCAL_SET = 4;
  for (const b of web.backends) assert.equal(maps.backends.get(b.id)!.flags & NOT_LOCAL_SET, b.local ? 0 : NOT_LOCAL_SET, b.addr);
  // The view says where new flows go, from each side.
  const vip = web.frontends.find((f) => f.kind === 'LoadBalancer')!;
  assert.deepEqual(vip.fromOutside, { set: 'local', serviceId: local, endpoints: ['198.19.1.11:8080', '198.19.1.12:8080'] });
  assert.equal(vip.fromInside.set, 'cluster');
  assert.equal(vip.fromInside.endpoints.length, 4);
  assert.equal(web.frontends.find((f) => f.kind === 'ClusterIP')!.fromOutside, undefined);
  assert.equal(web.settings.externalTrafficPolicy, 'Local');
});

test('internalTrafficPolicy Local: a ClusterIP serves pods from the local set; going back to Cluster keeps every backend ID', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, node1, sizing);
  c.sync(webWith('      internalTrafficPolicy: Local\n'));
  const web = c.services().find((s) => s.name === 'web')!;
  const { cluster, local } = web.serviceIds;
  const INT_LOCAL = 32;
  assert.ok(maps.dump().frontends.includes(`198.18.128.10:80/6 -> svc 0 internal ${local} flags ${INT_LOCAL}`));
  // The VIP reached from inside: the cluster set, whatever internalTrafficPolicy says.
  assert.ok(maps.dump().frontends.includes(`192.0.2.10:80/6 -> svc ${cluster} internal ${cluster} flags 66`));
  const before = new Map(web.backends.map((b) => [b.addr, b.id]));
  const r = c.sync(load());
  const after = c.services().find((s) => s.name === 'web')!;
  assert.deepEqual(after.serviceIds, { cluster, local: 0 });
  assert.equal(r.writes.backendDeletes, 0, 'established flows keep their backends');
  for (const b of after.backends) assert.equal(b.id, before.get(b.addr));
  assert.ok(!maps.tables.has(local), 'the local table is gone');
});

test('a changed node address moves the node port frontends and writes nothing else', () => {
  const maps = new FakeLBMaps();
  const c = new ServiceController(maps, { ...node1, addresses: [...node1.addresses] }, sizing);
  const state = load();
  c.sync(state);
  c.setNode({ ...node1, addresses: ['198.18.0.21'] });
  const r = c.sync(state);
  const dump = maps.dump().frontends;
  assert.ok(!dump.some((f) => f.startsWith('198.18.0.11:')), 'the old address serves nothing');
  assert.equal(dump.filter((f) => f.startsWith('198.18.0.21:')).length, 5, 'every node port on the new address');
  assert.deepEqual(r.writes, { frontends: 5, frontendDeletes: 5, backends: 0, backendDeletes: 0, tables: 0, tableDeletes: 0, sourceRanges: 0 });
});

test('a restarted controller takes the maps over: same IDs, nothing written, and flows keep their backends', () => {
  const maps = new FakeLBMaps();
  const before = new ServiceController(maps, node1, sizing);
  // A history that gives web IDs no fresh controller would pick: removed, then back.
  before.sync(load());
  const without = load();
  without.services.delete('default/web');
  before.sync(without);
  before.sync(load());
  const ids = new Map(before.services().map((s) => [s.key, { service: s.serviceIds, backends: s.backends.map((b) => `${b.addr}:${b.port}=${b.id}`) }]));
  const dump = maps.dump();
  const tables = new Map(maps.tables);
  // A new agent over the same maps (its predecessor's IDs are only in the maps).
  const after = new ServiceController(maps, node1, sizing);
  const r = after.sync(load());
  assert.deepEqual(r.writes, { frontends: 0, frontendDeletes: 0, backends: 0, backendDeletes: 0, tables: 0, tableDeletes: 0, sourceRanges: 0 });
  assert.deepEqual(maps.dump(), dump);
  for (const s of after.services()) assert.deepEqual({ service: s.serviceIds, backends: s.backends.map((b) => `${b.addr}:${b.port}=${b.id}`) }, ids.get(s.key), s.key);
  const fresh = new ServiceController(new FakeLBMaps(), node1, sizing);
  fresh.sync(load());
  assert.notDeepEqual(fresh.services().find((s) => s.name === 'web')!.serviceIds, ids.get('default/web:http')!.service, 'the history made a difference');
  for (const [id, t] of maps.tables) assert.deepEqual(t, tables.get(id));
});

test('changes made while no agent ran are applied by the first sync after the restart, and only they', () => {
  const maps = new FakeLBMaps();
  new ServiceController(maps, node1, sizing).sync(load());
  const webBefore = [...maps.frontends.values()].find((f) => f.key.addr === '192.0.2.10')!.service.id;
  // While down: dns-echo deleted, one backend removed from web.
  const state = load();
  state.services.delete('default/dns-echo');
  const web = state.endpointSlices.get('default/web-lab')!;
  web.endpoints = web.endpoints.filter((e) => e.addresses[0] !== '198.19.2.12');
  const after = new ServiceController(maps, node1, sizing);
  const r = after.sync(state);
  assert.ok(!maps.dump().frontends.some((f) => f.startsWith('192.0.2.11:')), "dns-echo's frontends are gone");
  assert.ok(r.writes.frontendDeletes >= 3 && r.writes.tableDeletes >= 1);
  assert.equal(r.writes.tables, 1, "only web's table is rebuilt");
  assert.equal(after.services().find((s) => s.name === 'web')!.serviceId, webBefore, 'web keeps its service ID');
  // And a second sync writes nothing.
  assert.deepEqual(after.sync(state).writes, { frontends: 0, frontendDeletes: 0, backends: 0, backendDeletes: 0, tables: 0, tableDeletes: 0, sourceRanges: 0 });
  // No stale backend entry is left: every backend in the maps belongs to a programmed port.
  const programmed = new Set(after.services().flatMap((s) => s.backends.map((b) => b.id)));
  for (const id of maps.backends.keys()) assert.ok(programmed.has(id), `backend ${id} is stale`);
});

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
  // web (LB + its nodePort), dns-echo (LB + nodePort), web-nodeport, mixed tcp+udp (LB + nodePorts).
  assert.ok(dump.frontends.some((f) => /^192\.0\.2\.10:80\/6 -> svc \d+ flags 2$/.test(f)), dump.frontends.join('\n'));
  assert.ok(dump.frontends.some((f) => f.startsWith('192.0.2.11:53/17 ')));
  assert.ok(dump.frontends.some((f) => f.startsWith('198.18.0.11:30080/6 ')));
  assert.ok(dump.frontends.some((f) => f.startsWith('192.0.2.12:7000/6 ')));
  assert.ok(dump.frontends.some((f) => f.startsWith('192.0.2.12:7000/17 ')));
  // Backend IDs are per service port: 5 service ports × 4 pods; node1's pods are local.
  assert.equal(dump.backends.length, 20);
  assert.equal(dump.backends.filter((b) => b.includes('198.19.1.') && b.endsWith('flags 1')).length, 10);
  assert.equal(dump.backends.filter((b) => b.includes('198.19.2.') && b.endsWith('flags 0')).length, 10);
  // 4 backends × 100 → the smallest listed prime ≥ 400.
  for (const size of Object.values(dump.tables)) assert.ok(size >= 400 && size < 1000, `table size ${size}`);
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
  // The VIP: external + affinity + source ranges; the web service's NodePort: affinity only.
  assert.ok(dump.includes(`192.0.2.10:80/6 -> svc ${web.serviceId} flags ${2 | AFF | RANGES} affinity 600s`), dump.join('\n'));
  assert.ok(dump.includes(`198.18.0.11:31080/6 -> svc ${web.serviceId} flags ${1 | AFF} affinity 600s`), dump.join('\n'));
  assert.deepEqual(maps.sourceRanges.get(web.serviceId), ['198.18.1.0/24', '203.0.113.0/25']);
  assert.equal(r.writes.sourceRanges, 1);
  // Same state again: nothing written; ranges removed: one write clears them.
  assert.equal(c.sync(state).writes.sourceRanges, 0);
  const cleared = c.sync(load());
  assert.equal(cleared.writes.sourceRanges, 1);
  assert.equal(maps.sourceRanges.size, 0);
  assert.ok(maps.dump().frontends.includes(`192.0.2.10:80/6 -> svc ${web.serviceId} flags 2`));
});

/**
 * ReplyFrontends (src/datapath/reply_frontends.ts): which frontends
 * xlb_reply_frontends lists for a local backend, derived from the frontends,
 * backends and Maglev tables written, against an in-memory map.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FLUSH_AT_ONCE, ReplyFrontends, REPLY_FRONTENDS } from '../../src/datapath/reply_frontends.js';
import type { BpfMap } from '../../src/datapath/bpf.js';
import { structs } from '../../src/datapath/codec.js';

/** The calls ReplyFrontends makes, on a Map; `writes` counts updates (one a batch entry) and deletes, `batches` batched updates. */
function fakeMap(initial: Array<[Buffer, Buffer]> = []) {
  const m = new Map<string, Buffer>(initial.map(([k, v]) => [k.toString('hex'), v]));
  const fake = {
    writes: 0,
    batches: 0,
    updateBatch: (keys: Buffer, values: Buffer, n: number) => {
      fake.batches++;
      const ks = keys.length / n;
      const vs = values.length / n;
      for (let i = 0; i < n; i++) fake.update(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs));
    },
    keys: () => [...m.keys()].map((k) => Buffer.from(k, 'hex')),
    lookup: (k: Buffer) => m.get(k.toString('hex')),
    update: (k: Buffer, v: Buffer) => {
      fake.writes++;
      m.set(k.toString('hex'), Buffer.from(v));
    },
    delete: (k: Buffer) => {
      fake.writes++;
      return m.delete(k.toString('hex'));
    },
    size: () => m.size,
    entries: () => [...m.entries()],
  };
  return fake;
}

const fe = (addr: string, port: number) => ({ addr, port, proto: 6 });
const be = (addr: string) => ({ addr, port: 8080, proto: 6 });

/** Service 1: frontend 203.0.113.10:80 whose table holds only local backend 1, 198.19.1.1:8080; flushed. */
function putWeb(r: ReplyFrontends): void {
  r.putBackend(1, be('198.19.1.1'), true);
  r.putFrontend(fe('203.0.113.10', 80), 1);
  r.putTable(1, Uint32Array.from([1]));
  r.flush();
}

test('a local backend lists the frontends of the services whose tables hold it; remote backends and ClusterIPs list nothing', () => {
  const map = fakeMap();
  const r = new ReplyFrontends(map as unknown as BpfMap);
  r.putBackend(1, be('198.19.1.1'), true);
  r.putBackend(2, be('198.19.2.2'), false);
  r.putFrontend(fe('203.0.113.10', 80), 7);
  r.putFrontend(fe('198.18.0.11', 30080), 7);
  r.putFrontend(fe('198.18.128.10', 80), 0); // a ClusterIP: no outside ID
  r.putTable(7, Uint32Array.from([1, 2, 1, 2]));
  r.flush();
  assert.deepEqual([...r.entries()], [['198.19.1.1:8080:6', ['203.0.113.10:80', '198.18.0.11:30080']]]);
  assert.equal(map.size(), 1);
});

test('a backend in two services lists both; the list keeps its order as others come; at most XLB_REPLY_FRONTENDS', () => {
  const r = new ReplyFrontends(fakeMap() as unknown as BpfMap);
  putWeb(r);
  r.putFrontend(fe('203.0.113.20', 80), 2);
  r.putTable(2, Uint32Array.from([1]));
  for (let i = 0; i < REPLY_FRONTENDS + 2; i++) r.putFrontend(fe('203.0.113.30', 100 + i), 2);
  r.flush();
  const list = r.entries().get('198.19.1.1:8080:6')!;
  assert.equal(list.length, REPLY_FRONTENDS);
  assert.deepEqual(list.slice(0, 2), ['203.0.113.10:80', '203.0.113.20:80']);
});

test('a frontend stays listed while it exists, even when the table no longer holds the backend; it goes when the frontend or the backend goes', () => {
  const r = new ReplyFrontends(fakeMap() as unknown as BpfMap);
  r.putBackend(1, be('198.19.1.1'), true);
  r.putBackend(2, be('198.19.1.2'), true);
  r.putFrontend(fe('203.0.113.10', 80), 1);
  r.putTable(1, Uint32Array.from([1, 2]));
  r.flush();
  r.putTable(1, Uint32Array.from([2, 2])); // backend 1 leaves the table; its flows still live on it
  r.flush();
  assert.deepEqual(r.entries().get('198.19.1.1:8080:6'), ['203.0.113.10:80']);
  r.dropBackend(1);
  r.flush();
  assert.equal(r.entries().has('198.19.1.1:8080:6'), false);
  r.dropFrontend(fe('203.0.113.10', 80));
  r.flush();
  assert.equal(r.entries().size, 0);
});

test('a backend that becomes remote is no longer listed; nothing is written when nothing changed', () => {
  const map = fakeMap();
  const r = new ReplyFrontends(map as unknown as BpfMap);
  putWeb(r);
  const writes = map.writes;
  r.putTable(1, Uint32Array.from([1, 1]));
  r.putFrontend(fe('203.0.113.10', 80), 1);
  r.flush();
  assert.equal(map.writes, writes);
  r.putBackend(1, be('198.19.1.1'), false);
  r.flush();
  assert.equal(map.size(), 0);
});

test('what an earlier agent wrote is read back and kept while its frontends exist', () => {
  const first = fakeMap();
  const a = new ReplyFrontends(first as unknown as BpfMap);
  putWeb(a);
  const second = fakeMap(first.entries().map(([k, v]) => [Buffer.from(k, 'hex'), v]));
  const b = new ReplyFrontends(second as unknown as BpfMap);
  assert.deepEqual([...b.entries()], [['198.19.1.1:8080:6', ['203.0.113.10:80']]]);
  // The kept frontends and backends come back (tables not yet written): the list stays.
  b.putBackend(1, be('198.19.1.1'), true);
  b.putFrontend(fe('203.0.113.10', 80), 1);
  b.flush();
  assert.deepEqual(b.entries().get('198.19.1.1:8080:6'), ['203.0.113.10:80']);
});

test('a large flush (a first sync) writes its lists on the next turn of the event loop, in one batch; a small one at once', async () => {
  const map = fakeMap();
  const r = new ReplyFrontends(map as unknown as BpfMap);
  const n = FLUSH_AT_ONCE + 10;
  for (let i = 1; i <= n; i++) {
    r.putBackend(i, { addr: `198.19.${i >> 8}.${i & 255}`, port: 8080, proto: 6 }, true);
    r.putFrontend(fe(`203.0.${113 + (i >> 8)}.${i & 255}`, 80), i);
    r.putTable(i, Uint32Array.from([i]));
  }
  r.flush();
  assert.equal(map.size(), 0, 'nothing written yet: the sync is not held up');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(map.size(), n, 'every list written on the next turn');
  assert.equal(map.batches, 1, 'in one batched update');
  assert.equal(r.lastError, undefined);
  // A small change is written at once.
  r.putFrontend(fe('192.0.2.1', 80), 1);
  r.flush();
  assert.deepEqual(r.entries().get('198.19.0.1:8080:6'), ['203.0.113.1:80', '192.0.2.1:80']);
  assert.equal(map.lookup(Buffer.from(map.keys().find((k) => k.readUInt32BE(0) === ((198 << 24) | (19 << 16) | 1) >>> 0)!))!.readUInt32LE(structs.xlb_reply_frontends.fields.count.offset), 2, 'the map holds the two frontends now');
});

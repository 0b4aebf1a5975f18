/**
 * NeighborManager's route lookups: one `ip -batch` run for many
 * destinations, read back by each answer's `dst` (read-only: the host's
 * loopback routes; nothing is written).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NeighborManager } from '../../src/datapath/neighbors.js';

test('next hops come from the kernel FIB, only through the given interfaces, and an unusable destination is named', async () => {
  const warnings: string[] = [];
  const onLo = new NeighborManager(['lo'], (m) => warnings.push(m));
  assert.deepEqual(await onLo.nextHopFor('127.0.0.1'), { addr: '127.0.0.1', dev: 'lo' });
  assert.deepEqual(await onLo.nextHopFor('127.0.0.2'), { addr: '127.0.0.2', dev: 'lo' }, 'on-link: the destination is its own next hop');
  const elsewhere = new NeighborManager(['xlb-none0'], (m) => warnings.push(m));
  assert.equal(await elsewhere.nextHopFor('127.0.0.1'), null, 'a route through an interface the datapath is not on needs no entry');
  assert.deepEqual(warnings, []);
  assert.equal(await onLo.nextHopFor('not-an-address'), null);
  assert.match(warnings.join('\n'), /no route to backend not-an-address/);
});

test('many destinations in one batch: each answer is matched by its dst, one that is no address in the middle loses no other', async () => {
  const warnings: string[] = [];
  const m = new NeighborManager(['lo'], (w) => warnings.push(w));
  const dsts = Array.from({ length: 300 }, (_, i) => `127.1.${(i + 1) >> 8}.${(i + 1) & 255}`);
  const hops = await m.nextHopsFor([...dsts.slice(0, 150), '127.0.0.300', ...dsts.slice(150)]);
  assert.equal(hops.size, 301);
  for (const d of dsts) assert.deepEqual(hops.get(d), { addr: d, dev: 'lo' }, d);
  assert.equal(hops.get('127.0.0.300'), null);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /no route to backend 127\.0\.0\.300/);
});

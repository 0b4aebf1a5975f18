/**
 * CowMap (src/util/cowmap.ts): snapshots never change, whatever the owner
 * does afterwards, and read like the Map they stand for.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CowMap } from '../../src/util/cowmap.js';
import { prng } from '../helpers/prng.js';

describe('CowMap', () => {
  it('every snapshot keeps the state it was taken at, over random writes', () => {
    const rand = prng(42);
    const cow = new CowMap<number>();
    const model = new Map<string, number>();
    const snaps: Array<{ snap: Map<string, number>; want: Map<string, number> }> = [];
    for (let step = 0; step < 3000; step++) {
      const key = `ns-${Math.floor(rand() * 20)}/obj-${Math.floor(rand() * 300)}`;
      if (rand() < 0.3) assert.equal(cow.delete(key), model.delete(key));
      else {
        cow.set(key, step);
        model.set(key, step);
      }
      assert.equal(cow.size, model.size);
      assert.equal(cow.get(key), model.get(key));
      if (step % 97 === 0) snaps.push({ snap: cow.snapshot(), want: new Map(model) });
    }
    for (const { snap, want } of snaps) {
      assert.equal(snap.size, want.size);
      assert.deepEqual(new Map([...snap].sort()), new Map([...want].sort()), 'entries as at the snapshot');
      for (const [k, v] of want) assert.equal(snap.get(k), v);
      assert.equal(snap.has('ns-x/none'), false);
      assert.deepEqual([...snap.keys()].sort(), [...want.keys()].sort());
      assert.deepEqual([...snap.values()].sort(), [...want.values()].sort());
      let n = 0;
      snap.forEach((v, k, m) => {
        assert.equal(want.get(k), v);
        assert.equal(m, snap);
        n++;
      });
      assert.equal(n, want.size);
    }
  });

  it('snapshots are read-only Maps, and a copy of one is a plain Map', () => {
    const cow = new CowMap<string>();
    cow.set('a/b', 'x');
    const snap = cow.snapshot();
    assert.throws(() => snap.set('c/d', 'y'), /read-only/);
    assert.throws(() => snap.delete('a/b'), /read-only/);
    assert.throws(() => snap.clear(), /read-only/);
    assert.deepEqual(new Map(snap), new Map([['a/b', 'x']]));
    assert.equal(Object.prototype.toString.call(snap), '[object Map]');
  });
});

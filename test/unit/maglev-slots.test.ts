/**
 * The Maglev slabs' free-space bookkeeping (src/datapath/slots.ts): first
 * fit, no range across slabs, slot 0 of slab 0 never handed out, retired
 * ranges not reused before their release, free neighbours merged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SlabAllocator, type SlotRange } from '../../src/datapath/slots.js';

test('slot 0 of slab 0 is never handed out; later slabs start at slot 0; a range never crosses a slab', () => {
  const a = new SlabAllocator(100);
  assert.equal(a.alloc(10), undefined, 'no slab yet');
  a.addSlab();
  assert.deepEqual(a.alloc(10), { slab: 0, first: 1, size: 10 });
  assert.deepEqual(a.alloc(89), { slab: 0, first: 11, size: 89 });
  assert.equal(a.alloc(1), undefined, 'slab 0 is full');
  a.addSlab();
  assert.deepEqual(a.alloc(60), { slab: 1, first: 0, size: 60 });
  assert.equal(a.alloc(41), undefined, '40 left in slab 1: no range crosses into a third');
  assert.deepEqual(a.stats(), { slabs: 2, used: 159, free: 40, retired: 0 });
});

test('retired ranges stay taken until released, then merge with free neighbours and are found first', () => {
  const a = new SlabAllocator(100);
  a.addSlab();
  const r = [a.alloc(10)!, a.alloc(10)!, a.alloc(10)!];
  for (const x of r) a.retire(x);
  assert.equal(a.retiredCount, 30);
  assert.deepEqual(a.alloc(10), { slab: 0, first: 31, size: 10 }, 'not a retired range');
  const taken = a.takeRetired();
  assert.equal(a.retiredCount, 0);
  assert.deepEqual(a.alloc(30), { slab: 0, first: 41, size: 30 }, 'still not: its grace period runs');
  a.release([taken[2], taken[0], taken[1]]);
  assert.deepEqual(a.alloc(30), { slab: 0, first: 1, size: 30 }, 'the three merged into one range of 30');
});

test('a range released twice, or overlapping a free one, is an error', () => {
  const a = new SlabAllocator(100);
  a.addSlab();
  const r = a.alloc(10)!;
  a.release([r]);
  assert.throws(() => a.release([r]), /already free/);
  assert.throws(() => a.release([{ slab: 0, first: 5, size: 3 }]), /already free/);
  assert.throws(() => a.release([{ slab: 3, first: 0, size: 1 }]), /no slab 3/);
});

test('sizes outside 1..slab are refused', () => {
  const a = new SlabAllocator(100);
  a.addSlab();
  for (const n of [0, -1, 1.5, 101]) assert.throws(() => a.alloc(n), RangeError, String(n));
});

test('random allocations and releases keep the books exact: no overlap, counts add up, all free merges back to whole slabs', () => {
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const a = new SlabAllocator(1000);
  const live: SlotRange[] = [];
  for (let step = 0; step < 5000; step++) {
    if (live.length && rand(3) === 0) {
      const [r] = live.splice(rand(live.length), 1);
      a.release([r]);
    } else {
      const size = 1 + rand(200);
      let r = a.alloc(size);
      if (!r) {
        a.addSlab();
        r = a.alloc(size)!;
      }
      live.push(r);
    }
    if (step % 250 === 0) {
      const owned = new Map<string, number>();
      for (const r of live) {
        assert.ok(r.first + r.size <= 1000 && !(r.slab === 0 && r.first === 0));
        for (let s = r.first; s < r.first + r.size; s++) {
          const k = `${r.slab}:${s}`;
          assert.ok(!owned.has(k), `slot ${k} handed out twice`);
          owned.set(k, 1);
        }
      }
      const st = a.stats();
      assert.equal(st.used, owned.size);
      assert.equal(st.used + st.free, st.slabs * 1000 - 1);
    }
  }
  a.release(live);
  const slabs = a.stats().slabs;
  assert.deepEqual(a.alloc(999), { slab: 0, first: 1, size: 999 });
  for (let s = 1; s < slabs; s++) assert.deepEqual(a.alloc(1000), { slab: s, first: 0, size: 1000 });
});

test('a reserved slab hands out nothing until its whole range is released', () => {
  const a = new SlabAllocator(100);
  a.addSlab();
  a.alloc(99);
  assert.equal(a.addSlab(true), 1);
  assert.equal(a.alloc(1), undefined);
  assert.equal(a.freeCount, 0);
  assert.deepEqual(a.wholeRange(0), { slab: 0, first: 1, size: 99 });
  a.release([a.wholeRange(1)]);
  assert.equal(a.freeCount, 100);
  assert.deepEqual(a.alloc(100), { slab: 1, first: 0, size: 100 });
});

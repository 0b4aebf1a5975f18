/**
 * src/maglev: table sizes, the weighted Maglev lookup table (Eisenbud et al.,
 * NSDI 2016, section 3.4) and the backend name hashes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAGLEV_TABLE_SIZES,
  MAX_MAGLEV_TABLE_SIZE,
  MIN_MAGLEV_TABLE_SIZE,
  buildMaglevTable,
  isPrime,
  nameHashes,
  permutationOf,
  tableShares,
  tableSizeFor,
  type MaglevBackend,
} from '../../src/maglev/index.js';
import { fmix32, fnv1a32, murmur3x86_32, SKIP_HASH_SEED } from '../../src/maglev/hash.js';
import { maglevTurns } from '../../src/maglev/table.js';
import { enums } from '../../src/datapath/layouts.generated.js';

const DEFAULT_SIZING = { minTableSize: 251, maxTableSize: 131071 };

/** n backends with distinct names in 198.19.0.0/16 and IDs 1..n. */
function backends(n: number, weight: (i: number) => number = () => 1): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({
    name: `198.19.${i >> 8}.${i & 255}:8080/TCP`,
    id: i + 1,
    weight: weight(i),
  }));
}

/** Slots per backend ID. */
function counts(table: Uint32Array): Map<number, number> {
  const out = new Map<number, number>();
  for (const id of table) out.set(id, (out.get(id) ?? 0) + 1);
  return out;
}

/** Primes below `limit` by the sieve of Eratosthenes (independent of isPrime). */
function sieve(limit: number): Uint8Array {
  const prime = new Uint8Array(limit).fill(1);
  prime[0] = 0;
  prime[1] = 0;
  for (let p = 2; p * p < limit; p++) if (prime[p]) for (let q = p * p; q < limit; q += p) prime[q] = 0;
  return prime;
}

/** Deterministic Fisher-Yates shuffle (xorshift32), so failures reproduce. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * Pseudocode 1 of the paper, transcribed literally (permutation[i][j] =
 * (offset + j × skip) mod M, a separate `entry` array, next[i] counting
 * steps), with the same weighted turns as buildMaglevTable. The fast build
 * must give exactly this table.
 */
function referenceTable(input: readonly MaglevBackend[], M: number): Uint32Array {
  const bs = input.filter((b) => b.weight > 0).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const entry = new Array<number>(M).fill(-1);
  if (bs.length === 0) return new Uint32Array(M);
  const perm = bs.map((b) => permutationOf(b.name, M));
  const next = bs.map(() => 0);
  const credit = bs.map(() => 0);
  const maxWeight = Math.max(...bs.map((b) => b.weight));
  let n = 0;
  for (;;) {
    for (let i = 0; i < bs.length; i++) {
      credit[i] += bs[i].weight;
      if (credit[i] < maxWeight) continue;
      credit[i] -= maxWeight;
      let c = (perm[i].offset + next[i] * perm[i].skip) % M;
      while (entry[c] >= 0) {
        next[i]++;
        c = (perm[i].offset + next[i] * perm[i].skip) % M;
      }
      entry[c] = i;
      next[i]++;
      n++;
      if (n === M) return Uint32Array.from(entry, (i) => bs[i].id);
    }
  }
}

describe('Maglev table sizes', () => {
  it('lists ascending primes from 251 to XLB_MAGLEV_MAX_M, at most about 1.5x apart', () => {
    const prime = sieve(MAX_MAGLEV_TABLE_SIZE + 1);
    for (const m of MAGLEV_TABLE_SIZES) assert.equal(prime[m], 1, `${m} is not prime`);
    for (let i = 1; i < MAGLEV_TABLE_SIZES.length; i++) {
      assert.ok(MAGLEV_TABLE_SIZES[i] > MAGLEV_TABLE_SIZES[i - 1], `sizes not ascending at ${i}`);
      assert.ok(MAGLEV_TABLE_SIZES[i] <= 1.53 * MAGLEV_TABLE_SIZES[i - 1], `gap after ${MAGLEV_TABLE_SIZES[i - 1]}`);
    }
    for (const m of [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071]) {
      assert.ok(MAGLEV_TABLE_SIZES.includes(m), `${m} missing`);
    }
    assert.equal(MAGLEV_TABLE_SIZES[0], MIN_MAGLEV_TABLE_SIZE);
    assert.equal(MAGLEV_TABLE_SIZES.at(-1), MAX_MAGLEV_TABLE_SIZE);
    assert.equal(MAX_MAGLEV_TABLE_SIZE, enums.xlb_limits.XLB_MAGLEV_MAX_M);
  });

  it('isPrime agrees with a sieve up to the largest table size', () => {
    const prime = sieve(MAX_MAGLEV_TABLE_SIZE + 2);
    for (let n = 0; n < prime.length; n++) assert.equal(isPrime(n), prime[n] === 1, `isPrime(${n})`);
  });

  const cases: Array<[string, number, Parameters<typeof tableSizeFor>[1], number]> = [
    ['no backends get the minimum', 0, DEFAULT_SIZING, 251],
    ['1 backend gets the minimum', 1, DEFAULT_SIZING, 251],
    ['3 backends want 300 slots: 383', 3, DEFAULT_SIZING, 383],
    ['10 backends want 1000 slots: 1021', 10, DEFAULT_SIZING, 1021],
    ['100 backends want 10000 slots: 12281', 100, DEFAULT_SIZING, 12281],
    ['655 backends want 65500 slots: 65521', 655, DEFAULT_SIZING, 65521],
    ['656 backends want 65600 slots: 98299', 656, DEFAULT_SIZING, 98299],
    ['1000 backends want more than the largest size: 131071', 1000, DEFAULT_SIZING, 131071],
    ['a larger minimum wins over few backends', 1, { minTableSize: 4093, maxTableSize: 131071 }, 4093],
    ['a smaller maximum caps many backends', 1000, { minTableSize: 251, maxTableSize: 65521 }, 65521],
    ['the multiplier scales the wanted size', 100, { ...DEFAULT_SIZING, backendMultiplier: 10 }, 1021],
    ['a fractional multiplier is allowed', 100, { ...DEFAULT_SIZING, backendMultiplier: 2.5 }, 251],
  ];
  for (const [name, count, sizing, want] of cases) {
    it(`tableSizeFor: ${name}`, () => assert.equal(tableSizeFor(count, sizing), want));
  }

  const errors: Array<[string, number, Parameters<typeof tableSizeFor>[1], RegExp]> = [
    ['a minimum that is not a listed size', 1, { minTableSize: 250, maxTableSize: 131071 }, /minTableSize 250/],
    ['a maximum that is not a listed size', 1, { minTableSize: 251, maxTableSize: 131072 }, /maxTableSize 131072/],
    ['a minimum above the maximum', 1, { minTableSize: 65521, maxTableSize: 4093 }, /minTableSize 65521 .*maxTableSize 4093/],
    ['a multiplier of 0', 1, { ...DEFAULT_SIZING, backendMultiplier: 0 }, /backendMultiplier/],
    ['a negative backend count', -1, DEFAULT_SIZING, /backendCount/],
    ['a fractional backend count', 1.5, DEFAULT_SIZING, /backendCount/],
  ];
  for (const [name, count, sizing, message] of errors) {
    it(`tableSizeFor rejects ${name} with a RangeError naming it`, () => {
      assert.throws(() => tableSizeFor(count, sizing), (e: unknown) => e instanceof RangeError && message.test(e.message));
    });
  }
});

describe('backend name hashes', () => {
  const ascii = (s: string) => new TextEncoder().encode(s);

  it('FNV-1a 32 gives the published test values', () => {
    assert.equal(fnv1a32(ascii('')), 0x811c9dc5);
    assert.equal(fnv1a32(ascii('a')), 0xe40c292c);
    assert.equal(fnv1a32(ascii('foobar')), 0xbf9cf968);
  });

  it('MurmurHash3 x86_32 gives the published test values', () => {
    assert.equal(murmur3x86_32(ascii(''), 0), 0);
    assert.equal(murmur3x86_32(ascii(''), 1), 0x514e28b7);
    assert.equal(murmur3x86_32(ascii(''), 0xffffffff), 0x81f16f39);
    assert.equal(murmur3x86_32(ascii('test'), 0), 0xba6bd213);
    assert.equal(murmur3x86_32(ascii('Hello, world!'), 1234), 0xfaf6cdb3);
    assert.equal(murmur3x86_32(ascii('The quick brown fox jumps over the lazy dog'), 0), 0x2e4ff723);
  });

  it('names are hashed as UTF-8, also when long or not ASCII', () => {
    // ASCII is copied by hand and the rest encoded: names that switch late, and the edges of ASCII.
    for (const name of ['é', 'backend-✓:80/TCP', 'x'.repeat(1000), '10.0.0.1:8080/TCP', `${'y'.repeat(300)}é`, '\x7f\x80', '', '\u{1F600}:80/UDP']) {
      const bytes = new TextEncoder().encode(name);
      assert.deepEqual(nameHashes(name), { h1: fmix32(fnv1a32(bytes)), h2: murmur3x86_32(bytes, SKIP_HASH_SEED) }, name);
    }
  });

  it('each backend takes turns from its permutation (section 3.4), in name order, weight 0 left out', () => {
    const bs = [...backends(40, (i) => (i % 9 === 4 ? 0 : 1)), { name: 'é:80/TCP', id: 900, weight: 1 }];
    for (const m of [2, 3, 251, 1021, 65537]) {
      const input = bs.slice(0, Math.min(bs.length, m));
      const turns = maglevTurns(input, m);
      assert.deepEqual(turns.map((t) => t.id), input.filter((b) => b.weight > 0).sort((a, b) => (a.name < b.name ? -1 : 1)).map((b) => b.id), `order at M=${m}`);
      for (const t of turns) {
        const b = bs.find((x) => x.id === t.id)!;
        const p = permutationOf(b.name, m);
        assert.deepEqual([t.offset, t.skip], [p.offset, p.skip], `${b.name} at M=${m}`);
      }
    }
  });

  it('offset and skip stay in range for every table size', () => {
    for (const m of [2, 3, ...MAGLEV_TABLE_SIZES]) {
      for (const b of backends(50)) {
        const p = permutationOf(b.name, m);
        assert.ok(p.offset >= 0 && p.offset < m, `offset ${p.offset} for M=${m}`);
        assert.ok(p.skip >= 1 && p.skip < m, `skip ${p.skip} for M=${m}`);
      }
    }
  });
});

describe('Maglev lookup table', () => {
  it('gives exactly the table of Pseudocode 1, weighted or not, for small and large M', () => {
    const configs: Array<[number, MaglevBackend[]]> = [
      [2, backends(1)],
      [3, backends(2)],
      [3, backends(3)],
      [3, backends(5, (i) => (i < 3 ? 1 : 0))],
      [7, backends(3)],
      [251, backends(1)],
      [251, backends(7)],
      [251, backends(251)],
      [4093, backends(40, (i) => (i % 5) + 1)],
      [16381, backends(100)],
      [16381, backends(13, (i) => [0, 1, 10, 3][i % 4])],
      [65521, backends(100)],
      [65521, backends(1000)],
      [65521, backends(20, (i) => (i === 0 ? 50 : 1))],
      [131071, backends(10, (i) => 0.5 + i / 3)],
    ];
    for (const [m, bs] of configs) {
      assert.deepEqual(buildMaglevTable(bs, m), referenceTable(bs, m), `M=${m}, N=${bs.length}`);
    }
  });

  it('balances 100 equal backends over 65521 slots: each gets floor or ceil of M/N', () => {
    const M = 65521;
    const c = counts(buildMaglevTable(backends(100), M));
    assert.equal(c.size, 100);
    const mean = M / 100;
    const max = Math.max(...c.values());
    assert.ok(max <= 1.02 * mean, `most loaded backend has ${max} slots, mean ${mean}`);
    for (const [id, n] of c) assert.ok(n === Math.floor(mean) || n === Math.ceil(mean), `backend ${id} has ${n} slots`);
  });

  for (const N of [10, 100]) {
    const M = tableSizeFor(N, DEFAULT_SIZING);
    const base = backends(N);
    const before = buildMaglevTable(base, M);

    it(`removing any 1 of ${N} backends (M=${M}) moves at most 2/N of the other backends' slots`, () => {
      for (const removed of base) {
        const after = buildMaglevTable(base.filter((b) => b !== removed), M);
        let kept = 0;
        let moved = 0;
        for (let s = 0; s < M; s++) {
          if (before[s] === removed.id) {
            assert.notEqual(after[s], removed.id);
            continue;
          }
          kept++;
          if (after[s] !== before[s]) moved++;
        }
        assert.ok(moved / kept <= 2 / N, `removing ${removed.name}: ${moved} of ${kept} slots moved`);
      }
    });

    it(`adding a backend to ${N} (M=${M}) moves at most 2/N of the slots it does not take`, () => {
      for (let k = 0; k < 20; k++) {
        const added = { name: `203.0.113.${k}:8080/TCP`, id: 5000 + k, weight: 1 };
        const after = buildMaglevTable([...base, added], M);
        let others = 0;
        let moved = 0;
        for (let s = 0; s < M; s++) {
          if (after[s] === added.id) continue;
          others++;
          if (after[s] !== before[s]) moved++;
        }
        assert.ok(moved / others <= 2 / N, `adding ${added.name}: ${moved} of ${others} slots moved`);
      }
    });
  }

  it('gives the same table whatever the order of the input', () => {
    // 200 backends go through the sort for large inputs, 10 and 32 through the insertion sort.
    for (const [n, m] of [[200, 16381], [32, 4093], [10, 1021]]) {
      const bs = backends(n, (i) => (i % 3) + 1);
      const want = buildMaglevTable(bs, m);
      for (let seed = 1; seed <= 5; seed++) assert.deepEqual(buildMaglevTable(shuffled(bs, seed), m), want, `${n} backends, seed ${seed}`);
    }
  });

  it('finds a repeated name or ID among many backends, wherever it is', () => {
    for (const n of [12, 40]) {
      const bs = backends(n);
      const twinName = shuffled([...bs.slice(1), { ...bs[0], id: 9999 }, bs[0]], 3);
      assert.throws(() => buildMaglevTable(twinName, 4093), (e: unknown) => e instanceof RangeError && /name is repeated/.test(e.message), `${n} backends`);
      const twinId = shuffled([...bs, { name: 'other:80/TCP', id: bs[n - 1].id, weight: 1 }], 5);
      assert.throws(() => buildMaglevTable(twinId, 4093), (e: unknown) => e instanceof RangeError && new RegExp(`id ${bs[n - 1].id} is also the id of`).test(e.message), `${n} backends`);
    }
  });

  it('keeps a fixed input pinned to a fixed table (nodes on different versions must agree)', () => {
    const bs = backends(3);
    const t = buildMaglevTable(bs, 251);
    // Changing the hashes or the turn order reshuffles every service's table
    // during an upgrade; this value must only change deliberately.
    assert.deepEqual(Array.from(t.subarray(0, 24)), PINNED_251_3_BACKENDS);
  });

  it('gives weights 1:2:3 shares of 1/6, 2/6 and 3/6 within 1%', () => {
    const bs = [
      { name: 'a:80/TCP', id: 11, weight: 1 },
      { name: 'b:80/TCP', id: 12, weight: 2 },
      { name: 'c:80/TCP', id: 13, weight: 3 },
    ];
    for (const m of [4093, 65521]) {
      const shares = tableShares(buildMaglevTable(bs, m));
      assert.ok(Math.abs(shares.get(11)! - 1 / 6) < 0.01 / 6, `M=${m}: ${shares.get(11)}`);
      assert.ok(Math.abs(shares.get(12)! - 2 / 6) < 0.02 / 6, `M=${m}: ${shares.get(12)}`);
      assert.ok(Math.abs(shares.get(13)! - 3 / 6) < 0.03 / 6, `M=${m}: ${shares.get(13)}`);
    }
  });

  it('fills every slot when at least one backend has weight > 0, and gives weight 0 nothing', () => {
    const cases: MaglevBackend[][] = [
      backends(1),
      backends(5, (i) => (i === 3 ? 1 : 0)),
      backends(50, (i) => i % 2),
      backends(7, (i) => 1000 ** (i % 3)),
    ];
    for (const bs of cases) {
      for (const m of [251, 8191]) {
        const t = buildMaglevTable(bs, m);
        assert.ok(t.every((id) => id !== 0), `an empty slot with weights ${bs.map((b) => b.weight)}`);
        const ids = new Set(t);
        // A weight of 1 beside 10^6 may round to no slot at all, so only
        // weight 0 is asserted absent.
        for (const b of bs) if (b.weight === 0) assert.ok(!ids.has(b.id), `backend ${b.name} has weight 0 but slots`);
        if (bs.every((b) => b.weight <= 1)) for (const b of bs) if (b.weight > 0) assert.ok(ids.has(b.id), `backend ${b.name} has no slot`);
      }
    }
  });

  it('returns an all-zero table ("no backend") for no backends or only weight-0 backends', () => {
    for (const bs of [[], backends(3, () => 0)]) {
      const t = buildMaglevTable(bs, 251);
      assert.equal(t.length, 251);
      assert.ok(t.every((id) => id === 0));
      assert.equal(tableShares(t).size, 0);
    }
  });

  it('tableShares gives each ID its fraction of the slots', () => {
    const t = Uint32Array.from([7, 7, 9, 7, 0]);
    assert.deepEqual(tableShares(t), new Map([[7, 0.6], [9, 0.2]]));
    const full = tableShares(buildMaglevTable(backends(10), 1021));
    assert.ok(Math.abs([...full.values()].reduce((a, b) => a + b, 0) - 1) < 1e-9);
  });

  const invalid: Array<[string, MaglevBackend[], number, RegExp]> = [
    ['a table size that is not prime', backends(2), 65536, /tableSize .*65536/],
    ['a table size above XLB_MAGLEV_MAX_M', backends(2), 262139, /tableSize .*262139/],
    ['an empty name', [{ name: '', id: 1, weight: 1 }], 251, /backend 0 .*name/],
    ['a repeated name', [{ name: 'x', id: 1, weight: 1 }, { name: 'x', id: 2, weight: 1 }], 251, /backend 1 \("x"\): name is repeated/],
    ['ID 0', [{ name: 'x', id: 0, weight: 1 }], 251, /"x".*id must be .*got 0/],
    ['an ID above 2^32-1', [{ name: 'x', id: 2 ** 32, weight: 1 }], 251, /"x".*id must be/],
    ['a repeated ID', [{ name: 'x', id: 5, weight: 1 }, { name: 'y', id: 5, weight: 1 }], 251, /"y".*id 5 is also the id of "x"/],
    ['a negative weight', [{ name: 'x', id: 1, weight: -1 }], 251, /"x".*weight .*got -1/],
    ['a NaN weight', [{ name: 'x', id: 1, weight: NaN }], 251, /"x".*weight .*got NaN/],
    ['more backends with weight > 0 than slots', backends(4), 3, /4 backends .*tableSize 3/],
  ];
  for (const [name, bs, m, message] of invalid) {
    it(`rejects ${name} with a RangeError naming the field`, () => {
      assert.throws(() => buildMaglevTable(bs, m), (e: unknown) => e instanceof RangeError && message.test(e.message));
    });
  }

  it('builds M=65521 with 1000 backends without a blow-up (median < 20 ms; bench/maglev tracks the 3 ms target)', () => {
    // A wall-clock bound tight enough for the target would be flaky beside
    // other test files; this one catches an O(M × N) or O(M²) regression.
    const bs = backends(1000);
    for (let i = 0; i < 5; i++) buildMaglevTable(bs, 65521);
    const samples: number[] = [];
    for (let i = 0; i < 21; i++) {
      const start = process.hrtime.bigint();
      buildMaglevTable(bs, 65521);
      samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    samples.sort((a, b) => a - b);
    assert.ok(samples[10] < 20, `median ${samples[10].toFixed(3)} ms`);
  });
});

/** First 24 slots of the table of backends(3) at M = 251 (see the test). */
const PINNED_251_3_BACKENDS = [3, 2, 1, 2, 2, 2, 3, 3, 3, 3, 1, 2, 3, 1, 1, 3, 2, 2, 3, 3, 3, 2, 1, 1];

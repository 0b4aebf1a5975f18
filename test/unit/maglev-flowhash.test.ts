/**
 * src/maglev/flowhash.ts against golden vectors written by a separate C
 * program (test/unit/fixtures/jhash_vectors.c, which also checks them against
 * the datapath's xdp/include/xlb_jhash.h), and the backend prediction.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  XLB_FLOW_HASH_SEED,
  buildMaglevTable,
  flowHash,
  jhash3Words,
  predictBackend,
  type FlowTuple,
} from '../../src/maglev/index.js';
import { enums } from '../../src/datapath/layouts.generated.js';

interface Vectors {
  jhash3words: Array<{ a: number; b: number; c: number; initval: number; hash: number }>;
  flows: Array<FlowTuple & { hash: number }>;
}

const vectors = JSON.parse(
  readFileSync(new URL('./maglev-flowhash-vectors.json', import.meta.url), 'utf8'),
) as Vectors;

const FLOW: FlowTuple = { saddr: '198.18.0.1', daddr: '198.19.10.10', sport: 40000, dport: 443, proto: 6 };

describe('flow hash', () => {
  it('has golden vectors to check (the JSON file is not empty)', () => {
    assert.ok(vectors.jhash3words.length >= 5);
    assert.ok(vectors.flows.length >= 8);
  });

  it('jhash3Words matches the C jhash_3words on every golden vector', () => {
    for (const v of vectors.jhash3words) {
      assert.equal(jhash3Words(v.a, v.b, v.c, v.initval), v.hash, JSON.stringify(v));
    }
  });

  it('flowHash matches the C flow hash on every golden flow', () => {
    for (const { hash, ...flow } of vectors.flows) assert.equal(flowHash(flow), hash, JSON.stringify(flow));
  });

  it('uses the seed of xlb_types.h (XLB_FLOW_HASH_SEED, via BTF)', () => {
    assert.equal(XLB_FLOW_HASH_SEED, enums.xlb_limits.XLB_FLOW_HASH_SEED);
  });

  it('depends on every field of the 5-tuple', () => {
    const h = flowHash(FLOW);
    const changed: FlowTuple[] = [
      { ...FLOW, saddr: '198.18.0.2' },
      { ...FLOW, daddr: '198.19.10.11' },
      { ...FLOW, sport: 40001 },
      { ...FLOW, dport: 444 },
      { ...FLOW, proto: 17 },
      { ...FLOW, sport: FLOW.dport, dport: FLOW.sport },
    ];
    for (const f of changed) assert.notEqual(flowHash(f), h, JSON.stringify(f));
  });

  const invalid: Array<[string, Partial<FlowTuple>, RegExp]> = [
    ['an saddr that is not a dotted quad', { saddr: '198.18.0' }, /saddr/],
    ['a daddr that is IPv6', { daddr: '2001:db8::1' }, /daddr/],
    ['an sport above 65535', { sport: 65536 }, /sport .*65536/],
    ['a negative dport', { dport: -1 }, /dport .*-1/],
    ['a protocol above 255', { proto: 256 }, /proto .*256/],
  ];
  for (const [name, patch, message] of invalid) {
    it(`rejects ${name} with a RangeError naming the field`, () => {
      assert.throws(() => flowHash({ ...FLOW, ...patch }), (e: unknown) => e instanceof RangeError && message.test(e.message));
    });
  }
});

describe('backend prediction', () => {
  it('reads slot flowHash % M of the 0-based table', () => {
    const M = 251;
    const slotNumbers = Uint32Array.from({ length: M }, (_, i) => i + 1000);
    for (const { hash, ...flow } of vectors.flows) assert.equal(predictBackend(slotNumbers, flow), (hash % M) + 1000);
  });

  it('predicts one of the backends from a Maglev table, and 0 from an empty one', () => {
    const backends = [1, 2, 3].map((id) => ({ name: `198.19.1.${id}:8080/TCP`, id, weight: 1 }));
    const table = buildMaglevTable(backends, 251);
    const seen = new Set<number>();
    for (let sport = 40000; sport < 40100; sport++) seen.add(predictBackend(table, { ...FLOW, sport }));
    assert.deepEqual([...seen].sort(), [1, 2, 3]);
    assert.equal(predictBackend(buildMaglevTable([], 251), FLOW), 0);
  });

  it('rejects a table without slots', () => {
    assert.throws(() => predictBackend(new Uint32Array(0), FLOW), /table has no slots/);
  });
});

/**
 * The batch encoder (encodeAll) against the per-value encoder (encode), for
 * every shared struct of xlb_types.h: same bytes, and bad values refused
 * with the entry and the field named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, encode, encodeAll, sizeOf, type StructName } from '../../src/datapath/codec.js';
import { structs, type FieldLayout } from '../../src/datapath/layouts.generated.js';

let seed = 11;
const rand = (n: number) => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed % n;
};

/** A value for field `f`: random, at the edges, or left out. */
function valueFor(f: FieldLayout): unknown {
  const pick = rand(6);
  if (pick === 0) return undefined;
  if (f.type === '__be32') return pick === 1 ? '255.255.255.255' : `${rand(256)}.${rand(256)}.${rand(256)}.${rand(256)}`;
  if (f.type === '__u64') return pick === 1 ? 2n ** 64n - 1n : BigInt(rand(2 ** 31)) * 3n;
  const max = 2 ** (8 * f.size) - 1;
  return pick === 1 ? max : pick === 2 ? 0 : rand(max + 1);
}

/** What decode gives back for a value written as `v` (left-out fields read as zero). */
function expected(fields: Array<[string, FieldLayout]>, v: Record<string, unknown>): Record<string, unknown> {
  // Padding arrays and nested shared structs (encoded on their own) read as 0.
  return Object.fromEntries(fields.map(([k, f]) => [k, f.count !== undefined || f.type.startsWith('struct ') ? 0 : (v[k] ?? (f.type === '__be32' ? '0.0.0.0' : f.type === '__u64' ? 0n : 0))]));
}

for (const name of Object.keys(structs) as StructName[]) {
  test(`encodeAll and encode write what decode reads back: ${name}`, () => {
    const fields = Object.entries(structs[name].fields) as Array<[string, FieldLayout]>;
    const values = Array.from({ length: 200 }, () => Object.fromEntries(fields.map(([k, f]) => [k, valueFor(f)])));
    const all = encodeAll(name, values.length, (i) => values[i] as never);
    assert.equal(all.length, values.length * sizeOf(name));
    values.forEach((v, i) => {
      const one = all.subarray(i * sizeOf(name), (i + 1) * sizeOf(name));
      assert.deepEqual(one, encode(name, v as never), `entry ${i}: encodeAll and encode`);
      assert.deepEqual(decode(name, one), expected(fields, v), `entry ${i}: read back`);
    });
  });
}

test('a bad value is refused naming the entry and the field', () => {
  const good = { addr: '198.19.0.1', port: 80, proto: 6, flags: 0 };
  assert.throws(() => encodeAll('xlb_backend', 2, (i) => (i === 1 ? { ...good, addr: '198.19.0.256' } : good)), /entry 1: xlb_backend\.addr: /);
  assert.throws(() => encodeAll('xlb_backend', 2, (i) => (i === 0 ? { ...good, port: 65536 } : good)), /entry 0: xlb_backend\.port: /);
  assert.throws(() => encodeAll('xlb_backend', 1, () => ({ ...good, flags: 256 })), /entry 0: xlb_backend\.flags: /);
  assert.throws(() => encodeAll('xlb_backend', 1, () => ({ ...good, flags: -1 })), /entry 0: xlb_backend\.flags: /);
  assert.throws(() => encode('xlb_service_stats', { packets: 2n ** 64n }), /xlb_service_stats\.packets: .*outside/);
});


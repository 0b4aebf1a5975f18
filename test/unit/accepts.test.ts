/**
 * src/sources/accel/accepts.ts, the fast yes/no compiled from a zod schema:
 * it never says yes where zod reports an issue, and says yes for the plain
 * shapes zod accepts (random input, seeded; the seed is in the message).
 * The normalizer's own differential test (normalize.test.ts) holds the
 * EndpointSlice path to the schema's result, issues included.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { compileAccepts } from '../../src/sources/accel/accepts.js';
import { prng } from '../helpers/prng.js';

const port = z.custom<number>((v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535);
const name = z.custom<string>((v) => typeof v === 'string' && /^[a-z][a-z0-9-]*$/.test(v));
const SCHEMAS: Record<string, z.ZodType> = {
  object: z.object({ name, port: port.nullish(), tags: z.record(z.string(), z.custom<string>((v) => typeof v === 'string')).nullish(), list: z.array(z.unknown()).optional() }),
  strict: z.strictObject({ name, inner: z.strictObject({ port }).nullish() }),
  array: z.array(z.object({ port })),
  record: z.record(name, port),
};

/** A random value: scalars of every JSON kind, odd strings, and nested objects and arrays built from the schemas' own keys. */
function randomValue(rand: () => number, depth = 0): unknown {
  const r = Math.floor(rand() * 14);
  const keys = ['name', 'port', 'tags', 'list', 'inner', 'extra', '__proto__', 'a-1', 'Bad'];
  switch (r) {
    case 0: return undefined;
    case 1: return null;
    case 2: return Math.floor(rand() * 70000) - 10;
    case 3: return rand() * 10;
    case 4: return rand() < 0.5;
    case 5: return ['web', 'a-1', '', 'Bad', '1x', 'é'][Math.floor(rand() * 6)];
    case 6: return 80;
    case 7: return 'web';
    default: {
      if (depth > 3) return 'web';
      if (r === 8 || r === 9) return Array.from({ length: Math.floor(rand() * 3) }, () => randomValue(rand, depth + 1));
      const o: Record<string, unknown> = {};
      const n = Math.floor(rand() * 4);
      for (let i = 0; i < n; i++) {
        const k = keys[Math.floor(rand() * keys.length)];
        if (k === '__proto__') Object.defineProperty(o, k, { value: randomValue(rand, depth + 1), enumerable: true, writable: true, configurable: true });
        else o[k] = randomValue(rand, depth + 1);
      }
      if (rand() < 0.5) o.name = 'web';
      if (rand() < 0.5) o.port = 80;
      return o;
    }
  }
}

describe('compileAccepts: a fast yes/no from a zod schema', () => {
  for (const [kind, schema] of Object.entries(SCHEMAS)) {
    it(`never says yes where zod has an issue, and agrees on most input (${kind})`, () => {
      const seed = 20261206;
      const rand = prng(seed);
      const accepts = compileAccepts(schema);
      let yes = 0;
      let agree = 0;
      const n = 5000;
      for (let i = 0; i < n; i++) {
        const v = randomValue(rand);
        const ok = schema.safeParse(v).success;
        const fast = accepts(v);
        if (fast) assert.ok(ok, `seed ${seed}, case ${i}: the predicate accepts what zod refuses: ${JSON.stringify(v)}`);
        if (fast) yes++;
        if (fast === ok) agree++;
      }
      assert.ok(yes > 50, `seed ${seed}: only ${yes} of ${n} accepted; the test says little`);
      assert.ok(agree / n > 0.95, `seed ${seed}: agrees on ${agree} of ${n}`);
    });
  }

  it('refuses to compile what it does not know, at once', () => {
    assert.throws(() => compileAccepts(z.number()), /zod number schema is not compiled/);
    assert.throws(() => compileAccepts(z.object({ a: z.string().min(2) })), /zod string schema with checks is not compiled/);
    assert.throws(() => compileAccepts(z.object({ a: z.string() }).catchall(z.number())), /zod object schema is not compiled/);
  });
});

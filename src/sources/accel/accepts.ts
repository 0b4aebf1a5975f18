/**
 * A fast yes/no from a zod schema: `compileAccepts(schema)` walks the
 * schema once and returns a predicate that is true only for input the
 * schema accepts without an issue. The normalizer (../normalize.ts) asks it
 * first and parses with the schema only what it refuses, so that the
 * schema stays the one statement of what is valid, and the issues keep the
 * schema's wording. (fastify does the same with JSON Schema: one schema,
 * compiled at start into a fast validator.)
 *
 * Why: normalizing the 10,000 EndpointSlices of the Kubernetes benchmark's
 * list takes ~270 ms through the schema, ~70 ms with the predicate asked
 * first: most of the gap between a list's arrival and its translation.
 *
 * It may refuse what the schema accepts, never the reverse: input that is
 * not a plain object or array where one is expected, or that has an own
 * `__proto__` key, is refused and left to the schema. The schema node kinds
 * the normalizer uses are compiled (object, strict object, optional,
 * nullable, array, record, custom, string, unknown); any other kind makes
 * compileAccepts throw, when the schema is built, not when input comes.
 * test/unit/accepts.test.ts holds it to zod's own answer on random input.
 */
import type { z } from 'zod';

/** Whether a value passes a schema without an issue. */
export type Accepts = (v: unknown) => boolean;

/** The parts of zod 4's internal definition read here (`schema._zod.def`). */
interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  catchall?: z.ZodType;
  innerType?: z.ZodType;
  element?: z.ZodType;
  keyType?: z.ZodType;
  valueType?: z.ZodType;
  fn?: (v: unknown) => unknown;
  checks?: unknown[];
}

const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** An object made by JSON.parse or a literal, without an own `__proto__` key. */
function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return (proto === Object.prototype || proto === null) && !Object.hasOwn(v, '__proto__');
}

/**
 * The predicate of `schema` (see the module comment).
 * @throws Error naming the schema kind when the schema holds a kind not compiled here
 */
export function compileAccepts(schema: z.ZodType): Accepts {
  const def = defOf(schema);
  switch (def.type) {
    case 'unknown':
    case 'any':
      return () => true;
    case 'string':
      if (def.checks?.length) break;
      return (v) => typeof v === 'string';
    case 'custom': {
      const fn = def.fn!;
      return (v) => Boolean(fn(v));
    }
    case 'optional': {
      const inner = compileAccepts(def.innerType!);
      return (v) => v === undefined || inner(v);
    }
    case 'nullable': {
      const inner = compileAccepts(def.innerType!);
      return (v) => v === null || inner(v);
    }
    case 'array': {
      const element = compileAccepts(def.element!);
      return (v) => {
        if (!Array.isArray(v)) return false;
        for (let i = 0; i < v.length; i++) if (!element(v[i])) return false;
        return true;
      };
    }
    case 'record': {
      const key = compileAccepts(def.keyType!);
      const value = compileAccepts(def.valueType!);
      return (v) => {
        if (!isPlainObject(v)) return false;
        for (const k in v) if (!key(k) || !value(v[k])) return false;
        return true;
      };
    }
    case 'object': {
      const keys = Object.keys(def.shape!);
      const fields = keys.map((k) => compileAccepts(def.shape![k]));
      const catchall = def.catchall && defOf(def.catchall).type;
      if (catchall !== undefined && catchall !== 'never') break;
      const known = new Set(keys);
      const strict = catchall === 'never';
      return (v) => {
        if (!isPlainObject(v)) return false;
        for (let i = 0; i < keys.length; i++) if (!fields[i](v[keys[i]])) return false;
        if (strict) for (const k in v) if (!known.has(k)) return false;
        return true;
      };
    }
  }
  throw new Error(`compileAccepts: a zod ${def.type} schema${def.checks?.length ? ' with checks' : ''} is not compiled`);
}

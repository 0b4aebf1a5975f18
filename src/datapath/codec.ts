/**
 * Encoding of map keys and values to and from the C layouts of
 * xdp/include/xlb_types.h, driven by the generated offsets in
 * layouts.generated.ts (so a change in the header changes the encoding, never
 * a hand-kept copy).
 *
 * Conventions of the shared header, relied on here: `__be32` fields hold IPv4
 * addresses (dotted quads in TypeScript), `__be16` fields hold ports (network
 * order in the map, plain numbers here), `__u64` fields are bigints, other
 * integers are little-endian numbers (x86-64 and arm64 hosts), arrays are
 * padding and always written as zeros, and a shared struct inside another
 * is read and written on its own at its offset (here it reads as 0).
 */
import { structs, enums, type FieldLayout } from './layouts.generated.js';
import { ipToU32, u32ToIp } from '../util/ip.js';

/** Names of the shared structs. */
export type StructName = keyof typeof structs;
type Fields<N extends StructName> = (typeof structs)[N]['fields'];
type FieldValue<F> = F extends { type: '__be32' } ? string : F extends { type: '__u64' } ? bigint : number;
/** A shared struct as a plain object; field names are the C member names. */
export type StructValue<N extends StructName> = { -readonly [K in keyof Fields<N>]: FieldValue<Fields<N>[K]> };

/** Byte size of a shared struct (what the map's key_size/value_size must be). */
export function sizeOf(name: StructName): number {
  return structs[name].size;
}

function readField(buf: Buffer, at: number, f: FieldLayout): string | number | bigint {
  if (f.count !== undefined || f.type.startsWith('struct ')) return 0;
  switch (f.type) {
    case '__be32':
      return u32ToIp(buf.readUInt32BE(at));
    case '__be16':
      return buf.readUInt16BE(at);
    case '__u64':
      return buf.readBigUInt64LE(at);
  }
  if (f.size === 4) return buf.readUInt32LE(at);
  if (f.size === 2) return buf.readUInt16LE(at);
  return buf.readUInt8(at);
}

/**
 * Encode `value` as struct `name`; missing fields are zero.
 * @param into optional buffer to write into at `offset` (batched updates)
 * @throws Error naming the field when a value does not fit (e.g. a bad IP)
 */
export function encode<N extends StructName>(name: N, value: Partial<StructValue<N>>, into?: Buffer, offset = 0): Buffer {
  const layout = structs[name];
  const buf = into ?? Buffer.alloc(layout.size);
  if (into) buf.fill(0, offset, offset + layout.size);
  writerOf(name)(new DataView(buf.buffer, buf.byteOffset, buf.byteLength), offset, value as Record<string, unknown>);
  return buf;
}

/**
 * Encode `count` values of struct `name` back to back into one fresh buffer
 * (a batched map update's keys or values): {@link encode}'s result for each,
 * without a buffer and a view per value.
 * @param valueAt the i-th value (0 <= i < count)
 * @throws Error naming the entry and the field when a value does not fit
 */
export function encodeAll<N extends StructName>(name: N, count: number, valueAt: (i: number) => Partial<StructValue<N>>): Buffer {
  const size = structs[name].size;
  const buf = Buffer.alloc(size * count);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const write = writerOf(name);
  for (let i = 0; i < count; i++) {
    try {
      write(dv, i * size, valueAt(i) as Record<string, unknown>);
    } catch (e) {
      throw new Error(`entry ${i}: ${(e as Error).message}`);
    }
  }
  return buf;
}

type Writer = (dv: DataView, at: number, v: Record<string, unknown>) => void;
const writers = new Map<StructName, Writer>();
/**
 * Struct `name`'s writer: per field, the store for its type, chosen once per
 * struct. Values are refused where Buffer's writers refuse them (outside
 * the field's range, a bad IPv4 address), with an Error naming the field;
 * padding arrays stay zero.
 */
function writerOf(name: StructName): Writer {
  let w = writers.get(name);
  if (w) return w;
  const parts: Array<[string, Writer]> = [];
  for (const [field, f] of fieldsOf(name)) {
    // Padding arrays, and shared structs nested in another (encoded on their own), stay zero.
    if (f.count !== undefined || f.type.startsWith('struct ')) continue;
    const o = f.offset;
    let part: Writer;
    if (f.type === '__be32') part = (dv, at, v) => v[field] !== undefined && dv.setUint32(at + o, ipToU32(String(v[field])), false);
    else if (f.type === '__be16') part = (dv, at, v) => dv.setUint16(at + o, checked(v[field], 0xffff), false);
    else if (f.type === '__u64') part = (dv, at, v) => dv.setBigUint64(at + o, checked64(v[field]), true);
    else if (f.size === 4) part = (dv, at, v) => dv.setUint32(at + o, Number(v[field] ?? 0) >>> 0, true);
    else if (f.size === 2) part = (dv, at, v) => dv.setUint16(at + o, checked(v[field], 0xffff), true);
    else if (f.size === 1) part = (dv, at, v) => dv.setUint8(at + o, checked(v[field], 0xff));
    else throw new Error(`codec: unsupported field type ${f.type}/${f.size}`);
    parts.push([field, part]);
  }
  w = (dv, at, v) => {
    let i = 0;
    try {
      for (; i < parts.length; i++) parts[i][1](dv, at, v);
    } catch (e) {
      throw new Error(`${name}.${parts[i][0]}: ${(e as Error).message}`);
    }
  };
  writers.set(name, w);
  return w;
}

/** A `__u64` field's value as a bigint in 0..2^64 - 1 (DataView would wrap what Buffer refuses). */
function checked64(v: unknown): bigint {
  const n = BigInt((v as bigint | number | undefined) ?? 0n);
  if (n < 0n || n > 0xffffffffffffffffn) throw new RangeError(`${String(v)} is outside 0..2^64 - 1`);
  return n;
}

/** `v` as a number for a field of 0..max, refused exactly where Buffer's writeUInt8/16 refuse it (outside the range). */
function checked(v: unknown, max: number): number {
  const n = Number(v ?? 0);
  if (n > max || n < 0) throw new RangeError(`${String(v)} is outside 0..${max}`);
  return n;
}

/** Decode struct `name` from `buf` at `offset`. */
export function decode<N extends StructName>(name: N, buf: Buffer, offset = 0): StructValue<N> {
  const layout = structs[name];
  if (buf.length < offset + layout.size) throw new Error(`${name}: ${buf.length - offset} bytes, need ${layout.size}`);
  const out: Record<string, unknown> = {};
  for (const [field, f] of fieldsOf(name)) out[field] = readField(buf, offset + f.offset, f);
  return out as StructValue<N>;
}

const fieldLists = new Map<StructName, ReadonlyArray<[string, FieldLayout]>>();
/** The fields of struct `name` as [name, layout] pairs, listed once per struct. */
function fieldsOf(name: StructName): ReadonlyArray<[string, FieldLayout]> {
  let list = fieldLists.get(name);
  if (!list) fieldLists.set(name, (list = Object.entries(structs[name].fields) as Array<[string, FieldLayout]>));
  return list;
}

/** A u32 map key (IDs, indexes) in host order. */
export function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

/** IANA protocol numbers of the L4 protocols xlb serves. */
export const IPPROTO = { TCP: 6, UDP: 17 } as const;

/** Drop reasons by value, without the XLB_DROP_ prefix, lower-case: ['truncated', 'no_backend', ...]. */
export const dropReasonNames: string[] = (() => {
  const out: string[] = [];
  for (const [k, v] of Object.entries(enums.xlb_drop_reason)) {
    if (k === 'XLB_DROP_REASON_MAX') continue;
    out[v] = k.replace(/^XLB_DROP_/, '').toLowerCase();
  }
  return out;
})();

export { enums, structs };

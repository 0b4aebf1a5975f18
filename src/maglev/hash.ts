/**
 * The two string hashes that place a backend in a Maglev table: h1 gives its
 * offset, h2 its skip (Eisenbud et al., NSDI 2016, section 3.4, which asks
 * for two independent hashes of the backend's name). Both work on the UTF-8
 * bytes of the name and return unsigned 32-bit numbers, so every node and
 * every JavaScript engine computes the same values.
 *
 * - h1 ({@link nameHashes}): 32-bit FNV-1a (Fowler, Noll, Vo; offset
 *   basis 0x811c9dc5, prime 0x01000193) followed by MurmurHash3's fmix32
 *   finalizer: FNV-1a's last multiply carries a change in the final
 *   characters (198.19.1.10, 198.19.1.11) only upwards, and the finalizer
 *   spreads it over all bits before `mod M`.
 * - h2 ({@link nameHashes}): MurmurHash3 x86_32 (Austin Appleby) with seed
 *   {@link SKIP_HASH_SEED}. A different construction from h1, so offset and
 *   skip are not correlated.
 *
 * These values decide which slots every backend owns: changing either hash
 * reshuffles every table on upgrade, so they are fixed once released.
 */

const FNV32_OFFSET_BASIS = 0x811c9dc5;
const FNV32_PRIME = 0x01000193;

/** Seed of h2: "xlbM" in ASCII; any fixed value works, it must never change. */
export const SKIP_HASH_SEED = 0x786c624d;

const utf8 = new TextEncoder();
/** Reused encoding buffer: a fresh Uint8Array per name costs more than hashing it. */
let scratch = new Uint8Array(256);

/** Encode `name` as UTF-8 into `scratch` (grown when needed); returns the byte count. */
function encodeName(name: string): number {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit.
  const n = name.length;
  if (n * 3 > scratch.length) scratch = new Uint8Array(n * 3);
  // ASCII (every backend name `addr:port/proto`) is its own UTF-8: copied
  // here, without encodeInto's call into C++ and its result object (a third
  // of the hashing time of 100,000 names, measured).
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (c > 0x7f) return utf8.encodeInto(name, scratch).written;
    scratch[i] = c;
  }
  return n;
}

/** MurmurHash3's 32-bit finalizer: every input bit affects every output bit. Unsigned 32-bit. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** 32-bit FNV-1a of the first `length` bytes of `bytes` (http://www.isthe.com/chongo/tech/comp/fnv/), unsigned. */
export function fnv1a32(bytes: Uint8Array, length = bytes.length): number {
  let h = FNV32_OFFSET_BASIS;
  for (let i = 0; i < length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, FNV32_PRIME);
  }
  return h >>> 0;
}

/**
 * MurmurHash3 x86_32 of the first `length` bytes of `bytes` with `seed`
 * (Austin Appleby's public-domain algorithm, little-endian blocks), unsigned
 * 32-bit.
 */
export function murmur3x86_32(bytes: Uint8Array, seed: number, length = bytes.length): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const len = length;
  const blocks = len & ~3;
  let h = seed >>> 0;
  let k: number;
  for (let i = 0; i < blocks; i += 4) {
    k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  k = 0;
  switch (len & 3) {
    case 3:
      k ^= bytes[blocks + 2] << 16;
    // falls through: the tail is read from its last byte down
    case 2:
      k ^= bytes[blocks + 1] << 8;
    // falls through
    case 1:
      k ^= bytes[blocks];
      k = Math.imul(k, c1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, c2);
      h ^= k;
  }
  h ^= len;
  return fmix32(h);
}

/** The two hashes of one backend name, unsigned 32-bit each. */
export interface NameHashes {
  /** h1: FNV-1a 32 then fmix32 of the UTF-8 name; gives the offset. */
  h1: number;
  /** h2: MurmurHash3 x86_32 of the UTF-8 name, seed {@link SKIP_HASH_SEED}; gives the skip. */
  h2: number;
}

/** h1 and h2 of a backend name, encoding it to UTF-8 once. */
export function nameHashes(name: string): NameHashes {
  nameHashesTo(name, pair);
  return { h1: pair[0], h2: pair[1] };
}
const pair = new Uint32Array(2);

/**
 * {@link nameHashes} written to `out` (h1 at 0, h2 at 1): no object per
 * name, for the preparation of many tables at once.
 */
export function nameHashesTo(name: string, out: Uint32Array): void {
  const length = encodeName(name);
  out[0] = fmix32(fnv1a32(scratch, length));
  out[1] = murmur3x86_32(scratch, SKIP_HASH_SEED, length);
}

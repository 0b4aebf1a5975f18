/**
 * `parts` concatenated into one flat string. A template literal or `+`
 * builds a tree of cons strings (one 32-byte node per join) that V8 keeps
 * as it is until the string is hashed or flattened: for names kept per
 * backend (100,000 at 10,000 services) that was a third of the translator's
 * heap, and half a million objects for every full garbage collection to
 * walk. `Array.prototype.join` writes one sequential string.
 */
export function flat(...parts: Array<string | number>): string {
  return parts.join('');
}

/**
 * Maglev consistent hashing for xlb: table sizes, the weighted lookup table
 * (Eisenbud et al., NSDI 2016, section 3.4; table.ts is the rule, accel/
 * builds many of its tables at once on every core) and the datapath's flow hash.
 * Pure: no I/O, no clock, no randomness; the same inputs give the same table
 * on every node.
 */
export {
  MAGLEV_TABLE_SIZES,
  MIN_MAGLEV_TABLE_SIZE,
  MAX_MAGLEV_TABLE_SIZE,
  DEFAULT_BACKEND_MULTIPLIER,
  tableSizeFor,
  type MaglevSizing,
} from './primes.js';
export {
  buildMaglevTable,
  maglevTurns,
  fillMaglevTable,
  tableShares,
  permutationOf,
  isPrime,
  type MaglevBackend,
  type MaglevPermutation,
  type MaglevTurns,
} from './table.js';
export { buildMaglevTables, startMaglevTables, startMaglevPool, stopMaglevPool, slotCount, type MaglevJob, type MaglevBuilt, type MaglevBatch } from './accel/pool.js';
export { flowHash, predictBackend, jhash3Words, XLB_FLOW_HASH_SEED, type FlowTuple } from './flowhash.js';
export { nameHashes, type NameHashes } from './hash.js';

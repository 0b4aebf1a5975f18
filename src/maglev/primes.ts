/**
 * Maglev lookup table sizes and the choice of one for a service.
 *
 * Maglev needs a prime table size M so that every skip in 1..M-1 is coprime
 * with M and each backend's permutation visits every slot (Eisenbud et al.,
 * "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
 * section 3.4). The paper chooses "M to be larger than 100 × N to ensure at
 * most a 1% difference in hash space assigned to backends" (section 3.4);
 * a larger M also moves fewer slots when a backend comes or goes.
 */

/**
 * Every table size xlb may use, ascending, all prime. Each entry is the
 * largest prime below 2^k (k = 8..17) or below 1.5 × 2^k (k = 8..16), so
 * consecutive sizes differ by a factor of 1.33 to 1.53: tables are never much
 * larger than asked for. The last entry is the datapath's limit `XLB_MAGLEV_MAX_M`
 * (xdp/include/xlb_types.h): a table takes 1 + M slots of a slab.
 */
export const MAGLEV_TABLE_SIZES: readonly number[] = Object.freeze([
  251, 383, 509, 761, 1021, 1531, 2039, 3067, 4093, 6143, 8191, 12281, 16381, 24571, 32749, 49139,
  65521, 98299, 131071,
]);

/** Smallest table size xlb uses (first of {@link MAGLEV_TABLE_SIZES}). */
export const MIN_MAGLEV_TABLE_SIZE = 251;

/** Largest table size xlb uses; equals the datapath's `XLB_MAGLEV_MAX_M`. */
export const MAX_MAGLEV_TABLE_SIZE = 131071;

/**
 * Slots per backend that {@link tableSizeFor} aims for when no multiplier is
 * given: the paper's M > 100 × N (section 3.4). Measured with xlb's hashes
 * (test/unit/maglev.test.ts): removing or adding one of 100 backends then
 * moves under 2% of the other backends' slots.
 */
export const DEFAULT_BACKEND_MULTIPLIER = 100;

/**
 * How to size a service's Maglev table.
 *
 * - `minTableSize`, `maxTableSize`: bounds, slots; each must be an entry of
 *   {@link MAGLEV_TABLE_SIZES}, and min ≤ max.
 * - `backendMultiplier`: wanted slots per backend (default
 *   {@link DEFAULT_BACKEND_MULTIPLIER}); a finite number > 0.
 */
export interface MaglevSizing {
  minTableSize: number;
  maxTableSize: number;
  backendMultiplier?: number;
}

/**
 * The table size for a service with `backendCount` backends: the smallest
 * entry of {@link MAGLEV_TABLE_SIZES} that is ≥ backendMultiplier ×
 * backendCount, clamped into [minTableSize, maxTableSize]. A count whose
 * wanted size exceeds every entry gets maxTableSize.
 *
 * @param backendCount backends that will be in the table, an integer ≥ 0
 * @throws RangeError naming `backendCount`, `minTableSize`, `maxTableSize` or
 *   `backendMultiplier` when that value is out of range or not a listed size
 */
export function tableSizeFor(backendCount: number, sizing: MaglevSizing): number {
  const { minTableSize, maxTableSize } = sizing;
  const multiplier = sizing.backendMultiplier ?? DEFAULT_BACKEND_MULTIPLIER;
  if (!Number.isSafeInteger(backendCount) || backendCount < 0) {
    throw new RangeError(`Maglev sizing: backendCount must be an integer >= 0, got ${backendCount}`);
  }
  if (!MAGLEV_TABLE_SIZES.includes(minTableSize)) {
    throw new RangeError(
      `Maglev sizing: minTableSize ${minTableSize} is not one of the table sizes ${MAGLEV_TABLE_SIZES.join(', ')}`,
    );
  }
  if (!MAGLEV_TABLE_SIZES.includes(maxTableSize)) {
    throw new RangeError(
      `Maglev sizing: maxTableSize ${maxTableSize} is not one of the table sizes ${MAGLEV_TABLE_SIZES.join(', ')}`,
    );
  }
  if (minTableSize > maxTableSize) {
    throw new RangeError(`Maglev sizing: minTableSize ${minTableSize} is larger than maxTableSize ${maxTableSize}`);
  }
  if (!Number.isFinite(multiplier) || multiplier <= 0) {
    throw new RangeError(`Maglev sizing: backendMultiplier must be a finite number > 0, got ${multiplier}`);
  }
  const wanted = multiplier * backendCount;
  const size = MAGLEV_TABLE_SIZES.find((p) => p >= wanted) ?? MAX_MAGLEV_TABLE_SIZE;
  return Math.min(maxTableSize, Math.max(minTableSize, size));
}

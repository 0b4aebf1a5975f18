/**
 * A full garbage collection between runs of a benchmark, so that one run's
 * garbage (10,000 services' worth of objects) is not collected during the
 * next run's measurement, as it would not be in an agent that lists once.
 * Node exposes `gc` only with --expose-gc; the flag can be set at run time
 * and the function taken from a fresh context.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

let gc: (() => void) | undefined;

/** Run a full (major) garbage collection now. */
export function fullGc(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}

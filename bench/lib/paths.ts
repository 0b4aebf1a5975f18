/** Paths the benchmarks share. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root directory. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Where result files (`<name>.json`, `<name>.svg`) are written. */
export const resultsDir = path.join(repoRoot, 'bench/results');

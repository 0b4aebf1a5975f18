/**
 * Where xlb's own files are at run time: the directory of its package.json.
 *
 * The code runs from three layouts, and the files it reads (BPF objects,
 * protos, the service map page, package.json) sit at the same places below
 * the package root in all of them:
 *
 *   <checkout>/src/...            TypeScript through tsx (bin/xlb.js)
 *   <checkout>/dist/src/...       `npm run build:ts` output
 *   /opt/xlb/dist/src/...         the image's tree (scripts/build-image-tree.sh)
 *
 * A path relative to the module (`../../xdp/build`) is right only in the
 * first, so the root is found by walking up from this module to the first
 * package.json that names xlb.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The nearest directory at or above `from` whose package.json has
 * `"name": "xlb"`.
 * @param from an absolute directory
 * @throws Error naming `from` when no directory up to / has one
 */
export function findPackageRoot(from: string): string {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    try {
      if ((JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: unknown }).name === 'xlb') return dir;
    } catch {
      // none here, or not JSON: look further up
    }
    if (path.dirname(dir) === dir) throw new Error(`xlb's package.json not found in ${from} or above it`);
  }
}

/** xlb's package root (absolute), found once from this module's own location. */
export const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));

/** `rel` (a path with `/`) below {@link PACKAGE_ROOT}, absolute. */
export function packagePath(rel: string): string {
  return path.join(PACKAGE_ROOT, rel);
}

/** xlb's version, from its package.json; `unknown` when it cannot be read. */
export function packageVersion(): string {
  try {
    const v = (JSON.parse(fs.readFileSync(packagePath('package.json'), 'utf8')) as { version?: unknown }).version;
    return typeof v === 'string' ? v : 'unknown';
  } catch {
    return 'unknown';
  }
}

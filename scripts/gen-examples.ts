/**
 * Writes examples/lab-services.yaml from the lab's generator (src/lab/manifests.ts)
 * for the default lab: 2 nodes, 2 backend pods and one cluster DNS pod each. `--check` exits 1 when
 * the committed file differs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { labDnsPod, labManifests } from '../src/lab/manifests.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const file = path.join(root, 'examples/lab-services.yaml');

/** The default lab's manifests: its backend pods and its DNS pods. */
export function defaultLabManifests(): string {
  const pods = [1, 2].flatMap((i) => [1, 2].map((j) => ({ name: `n${i}p${j}`, ip: `198.19.${i}.${10 + j}`, node: `node${i}` })));
  return labManifests(pods, [1, 2].map(labDnsPod));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const text = defaultLabManifests();
  if (process.argv.includes('--check')) {
    if (fs.readFileSync(file, 'utf8') !== text) {
      console.error('examples/lab-services.yaml is stale: run npx tsx scripts/gen-examples.ts');
      process.exit(1);
    }
  } else fs.writeFileSync(file, text);
}

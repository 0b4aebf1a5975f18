/**
 * Scenario tests, in the shape of Cilium's pkg/loadbalancer testdata:
 * Kubernetes manifests in, the dump of xlb's load-balancer maps out, one
 * folder per scenario, read by reviewers like code. They pin what xlb
 * programs today, so that a refactor of the translation (src/services),
 * the normalizer (src/sources), the Maglev tables (src/maglev) or the map
 * layer (src/datapath/lbmaps.ts) can be shown to change nothing.
 *
 * A scenario `test/scenarios/<name>/`:
 * - `input.yaml`: Services and EndpointSlices as the manifests file source
 *   reads them (multi-document YAML), after a comment header whose line
 *   `# node: {name: node-a, addresses: [198.18.0.11], labels: {...}}` says
 *   the node it runs on (the zone label is what the Kubernetes source
 *   would take from the Node object).
 * - `expected.txt`: the dump. The pipeline is the agent's for the file
 *   source, minus the kernel: FileSource → ServiceController.sync →
 *   FakeLBMaps (test/helpers/scenario.ts). Sections, one fact per line,
 *   in a stable order:
 *   `port` (the controller's view of each service port: the service IDs
 *   of its cluster and local sets, whether any endpoint is usable,
 *   topology, health check node port; then each endpoint: backend ID,
 *   address, node, state, sets, weight), `frontend` (xlb_frontends: the
 *   service port, outside and inside service IDs, flags, affinity
 *   timeout), `backend` (xlb_backends: owner and flags), `maglev` (table
 *   size M, slots per backend ID, and a digest of the whole table, so a
 *   table that keeps its counts but moves slots shows too),
 *   `source-ranges`, and `issue` (object | field | message, sorted; an
 *   object without a name is named by its line in input.yaml). IDs
 *   (`svc#N`, `be#N`) are the controller's: deterministic for a given
 *   input.
 *
 * Each test compares the whole text and fails with a line diff.
 *
 * To update after an intended change, rewrite every expected.txt and
 * review the git diff:
 *   XLB_UPDATE_SCENARIOS=1 node --import tsx --test test/scenarios/scenarios.test.ts
 * To add a scenario, make a folder with input.yaml and run the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runScenario } from '../helpers/scenario.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const update = process.env.XLB_UPDATE_SCENARIOS === '1';
const scenarios = fs
  .readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

/** Lines only in `expected` (-) or only in `actual` (+), with their line numbers. */
function lineDiff(expected: string, actual: string): string {
  const a = expected.split('\n');
  const b = actual.split('\n');
  // Longest common subsequence, then walk it.
  const lcs = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) for (let j = b.length - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) (i++, j++);
    else if (i < a.length && (j === b.length || lcs[i + 1][j] >= lcs[i][j + 1])) out.push(`-${String(i + 1).padStart(4)} ${a[i++]}`);
    else out.push(`+${String(j + 1).padStart(4)} ${b[j++]}`);
  }
  return out.join('\n');
}

test('there are scenarios', () => assert.ok(scenarios.length >= 20, `only ${scenarios.length} scenarios in ${here}`));

for (const name of scenarios) {
  test(name, async () => {
    const dir = path.join(here, name);
    const actual = await runScenario(dir);
    const file = path.join(dir, 'expected.txt');
    if (update) return fs.writeFileSync(file, actual);
    assert.ok(fs.existsSync(file), `${file} is missing: run with XLB_UPDATE_SCENARIOS=1 to write it`);
    const expected = fs.readFileSync(file, 'utf8');
    if (actual !== expected) assert.fail(`${name}: the dump differs from expected.txt (- expected, + actual):\n${lineDiff(expected, actual)}`);
  });
}

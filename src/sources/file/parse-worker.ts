/**
 * The worker side of {@link parseOffThread} (worker.ts): parses and
 * normalizes one version of a manifests file per message, so that a large
 * file (YAML takes ~0.5 s a MiB here) does not stop the agent's thread, which
 * answers /readyz and the API meanwhile.
 */
import { parentPort } from 'node:worker_threads';
import { checkHasManifests, ManifestError, parseManifests } from './parse.js';
import { normalizeObjects, type NormalizeOptions } from '../normalize.js';
import { serviceKeysIn } from './keys.js';

parentPort!.on('message', (m: { id: number; text: string; file: string; normalize?: NormalizeOptions }) => {
  try {
    const parsed = parseManifests(m.text, m.file);
    checkHasManifests(parsed, m.file);
    const r = normalizeObjects(parsed.objects, m.normalize, (i) => parsed.positions[i]);
    parentPort!.postMessage({ id: m.id, ok: true, state: r.state, issues: r.issues, ignored: r.ignored, serviceKeys: [...serviceKeysIn(parsed.objects)] });
  } catch (e) {
    const err = e as ManifestError;
    parentPort!.postMessage({ id: m.id, ok: false, error: { message: err.message, file: err.file ?? m.file, line: err.line, column: err.column, manifest: e instanceof ManifestError } });
  }
});
parentPort!.postMessage({ ready: true });

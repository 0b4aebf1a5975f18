/**
 * An agent for API and page tests: the lab's example Services from a file,
 * on in-memory maps (no datapath, no root), its API on a unix socket in
 * `dir`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import { waitFor } from '../../src/util/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The configuration of such an agent in `dir`, with `extra` keys laid over it. */
export function exampleAgentConfig(dir: string, extra: Record<string, unknown> = {}) {
  return parseConfig(
    {
      node: { name: 'node1', addresses: ['198.18.0.11'] },
      interfaces: ['lo'],
      source: { file: { path: path.join(dir, 'services.yaml') } },
      api: { listen: `unix:${path.join(dir, 'api.sock')}` },
      log: { level: 'silent' },
      ...extra,
    },
    dir,
  );
}

/** Copy examples/lab-services.yaml into `dir` and start an agent on it; resolves once its first sync is programmed. */
export async function startExampleAgent(dir: string): Promise<Agent> {
  fs.copyFileSync(path.join(root, 'examples/lab-services.yaml'), path.join(dir, 'services.yaml'));
  const agent = await Agent.start(exampleAgentConfig(dir), pino({ level: 'silent' }), { lbmaps: new FakeLBMaps() });
  await waitFor(() => agent.ready(), 5000, 'first sync');
  return agent;
}

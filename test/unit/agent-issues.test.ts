/**
 * The agent logs each new input issue once, and at most LOG_ISSUES_PER_SYNC
 * of them a sync, with one line for the rest (issue 21: a pathological file
 * logged ten million lines). /v1/issues still lists every one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent, LOG_ISSUES_PER_SYNC } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import { waitFor } from '../../src/util/wait.js';

test('new issues are logged once and at most LOG_ISSUES_PER_SYNC a sync; /v1/issues has them all', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-issues-'));
  const file = path.join(dir, 'services.yaml');
  const headless = (i: number) => `---\napiVersion: v1\nkind: Service\nmetadata:\n  name: h${i}\nspec:\n  clusterIP: None\n  ports:\n  - port: 80\n`;
  const n = LOG_ISSUES_PER_SYNC + 50;
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => headless(i)).join(''));
  const lines: Array<{ msg: string; unlogged?: number }> = [];
  const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  const agent = await Agent.start(
    parseConfig({ node: { name: 'node1', addresses: ['198.18.0.11'] }, interfaces: ['lo'], source: { file: { path: file } }, api: { listen: `unix:${path.join(dir, 'api.sock')}` } }, dir),
    log,
    { lbmaps: new FakeLBMaps() },
  );
  try {
    await waitFor(() => agent.ready(), 10_000, 'first sync');
    const issueLines = lines.filter((l) => l.msg.startsWith('input issue: Service default/h'));
    assert.equal(issueLines.length, LOG_ISSUES_PER_SYNC);
    assert.ok(lines.some((l) => l.unlogged === n - LOG_ISSUES_PER_SYNC && /more new input issues not logged/.test(l.msg)));
    assert.equal(agent.issues().filter((i) => i.object.startsWith('Service default/h')).length, n, '/v1/issues lists every one');
  } finally {
    await agent.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Bad versions of the manifests file never cost a service (issue 21): an
 * agent (fake maps, no root) watches the lab's manifests file while a seeded
 * sequence of bad versions is written over it, each followed by the good one
 * again: writes cut in two and finished 5 to 60 ms later, writes cut
 * mid-line and left so, empty-looking
 * files, scalars, random bytes, invalid UTF-8, a file over the size limit,
 * a JSON array of numbers. Throughout, /readyz is asked every 20 ms and the
 * programmed services are sampled: the last good state must stay programmed,
 * the agent must keep answering, and every rejected version must be
 * reported. The seed (XLB_FUZZ_SEED) and the figures are printed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VERSIONS = Number(process.env.XLB_FUZZ_VERSIONS ?? 200);
const MAX_BYTES = 256 * 1024;

test('bad versions of the manifests file cost no service, kill no agent, and are each reported', { timeout: 300_000 }, async () => {
  let seed = Number(process.env.XLB_FUZZ_SEED ?? Date.now() % 1_000_000);
  const firstSeed = seed;
  console.log(`file source fuzz: XLB_FUZZ_SEED=${firstSeed}`);
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(a: T[]): T => a[int(a.length)];

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-file-fuzz-'));
  const file = path.join(dir, 'services.yaml');
  const good = fs.readFileSync(path.join(root, 'examples/lab-services.yaml'));
  fs.writeFileSync(file, good);
  const reports: string[] = [];
  const log = pino({ level: 'error' }, { write: (line: string) => void (/keeping the last good state/.test(line) && reports.push(line)) });
  const config = parseConfig(
    {
      node: { name: 'node1', addresses: ['198.18.0.11'] },
      interfaces: ['lo'],
      source: { file: { path: file, maxBytes: MAX_BYTES } },
      api: { listen: `unix:${path.join(dir, 'api.sock')}` },
    },
    dir,
  );
  const agent = await Agent.start(config, log, { lbmaps: new FakeLBMaps() });
  const api = `unix:${path.join(dir, 'api.sock')}`;
  const programmed = () => new Set(agent.services().flatMap((s) => s.frontends.filter((f) => f.served).map((f) => `${s.key} ${f.addr}:${f.port}`)));
  let stopPolling = false;
  try {
    await waitFor(() => agent.ready(), 10_000, 'first sync');
    const want = programmed();
    assert.ok(want.size >= 4, 'the lab file programs several frontends');

    // Watch /readyz and the programmed frontends while versions are written.
    let lastAnswer = performance.now();
    let longestOutage = 0;
    let costs = 0;
    let costNow = false;
    let current = 'none';
    const costly: string[] = [];
    const poll = (async () => {
      while (!stopPolling) {
        const ok = await apiGet(api, '/readyz', { timeoutMs: 2000 }).then(() => true, () => false);
        const now = performance.now();
        if (ok) {
          longestOutage = Math.max(longestOutage, now - lastAnswer);
          lastAnswer = now;
        }
        const have = programmed();
        const lost = [...want].some((f) => !have.has(f));
        if (lost && !costNow) {
          costs++;
          costly.push(`${current}: lost ${[...want].filter((f) => !have.has(f)).join(', ')}`);
        }
        costNow = lost;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const inPlace = (bytes: Buffer | string) => fs.writeFileSync(file, bytes);
    const empties = ['', '   \n\n', '---\n', '---\n---\n', 'null\n', '# nothing here\n', '~\n'];
    const kinds = ['two-step', 'truncated', 'empty', 'scalar', 'binary', 'utf8', 'huge', 'numbers'] as const;
    const counts: Record<string, number> = {};
    let badFinal = 0;
    for (let v = 0; v < VERSIONS; v++) {
      const kind = int(3) === 0 ? 'two-step' : pick([...kinds]);
      counts[kind] = (counts[kind] ?? 0) + 1;
      const before = reports.length;
      current = `version ${v} (${kind})`;
      if (kind === 'two-step') {
        const cut = 1 + int(good.length - 2);
        const pause = 5 + int(56);
        current = `version ${v} (two-step: ${cut} bytes, then the rest ${pause} ms later)`;
        inPlace(good.subarray(0, cut));
        await new Promise((r) => setTimeout(r, pause));
        inPlace(good);
        // The writer's pause before its next edit: long enough for a read, so that edits stay apart.
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      let bad: Buffer;
      if (kind === 'truncated') {
        // Cut mid-line and left so (the writer died): never applied.
        let cut = 1 + int(good.length - 2);
        while (cut > 1 && good[cut - 1] === 0x0a) cut--;
        bad = good.subarray(0, cut);
      } else if (kind === 'empty') bad = Buffer.from(pick(empties));
      else if (kind === 'scalar') bad = Buffer.from(`${Array.from({ length: 1 + int(30) }, () => pick('abcdefgh 0123456789'.split(''))).join('').trim() || 'x'}\n`);
      else if (kind === 'binary') bad = Buffer.from(Array.from({ length: 1 + int(2000) }, () => int(256)));
      else if (kind === 'utf8') {
        bad = Buffer.from(good);
        const at = good.indexOf('name: ') + 6 + int(3);
        bad[at] = 0xff;
      } else if (kind === 'huge') bad = Buffer.concat(Array.from({ length: Math.ceil((MAX_BYTES * 1.2) / good.length) }, () => good));
      else bad = Buffer.from(`${JSON.stringify(Array.from({ length: 1 + int(5000) }, () => int(1000)))}\n`);
      badFinal++;
      inPlace(bad);
      await waitFor(() => reports.length > before, 5000, `version ${v} (${kind}, seed ${firstSeed}) to be reported`);
      inPlace(good);
      await waitFor(() => !agent.issues().some((i) => i.object.startsWith('file ')), 5000, `version ${v} (${kind}, seed ${firstSeed}): back to the good version`);
    }
    await new Promise((r) => setTimeout(r, 300));
    stopPolling = true;
    await poll;
    console.log(
      `file source fuzz: seed ${firstSeed}: ${VERSIONS} bad versions (${Object.entries(counts).map(([k, n]) => `${k} ${n}`).join(', ')}), ` +
        `${badFinal} left in place until reported, agent deaths 0, longest /readyz outage ${longestOutage.toFixed(0)} ms, versions that cost a service ${costs}`,
    );
    assert.equal(costs, 0, `seed ${firstSeed}: versions cost a service: ${costly.join('; ')}`);
    assert.ok(longestOutage < 1000, `seed ${firstSeed}: /readyz went unanswered for ${longestOutage.toFixed(0)} ms`);
    assert.deepEqual(programmed(), want, 'the good state is programmed at the end');
    assert.ok(agent.healthy(), 'the agent is alive');
    assert.deepEqual(agent.issues().filter((i) => i.object.startsWith('file ')), [], 'no file issue left once the good version is back');
  } finally {
    stopPolling = true;
    await agent.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

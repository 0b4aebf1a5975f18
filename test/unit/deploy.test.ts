/**
 * The files users deploy with are checked by the tools that read them:
 * docker-compose.yml by `docker-compose config` (the Debian package, which
 * validates without a Docker engine). The Dockerfile's stages are read as
 * text: with no engine here, test/e2e/image.test.ts builds and runs the tree
 * its build stage makes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('docker-compose.yml', () => {
  test('is valid for docker-compose and runs the agent on the host network with bpffs', () => {
    const out = execFileSync('docker-compose', ['-f', path.join(root, 'docker-compose.yml'), 'config'], { encoding: 'utf8' });
    assert.match(out, /network_mode: host/);
    assert.match(out, /\/sys\/fs\/bpf/);
    assert.doesNotMatch(out, /privileged: true/);
  });
});

describe('Dockerfile', () => {
  /** The stages: FROM line and the instructions up to the next FROM (continuations joined). */
  function stages(): Array<{ from: string; lines: string[] }> {
    const text = fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
    const out: Array<{ from: string; lines: string[] }> = [];
    for (const line of text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))) {
      if (/^FROM /i.test(line)) out.push({ from: line, lines: [] });
      else out.at(-1)?.lines.push(line);
    }
    return out;
  }

  test('the build stage makes /opt/xlb with scripts/build-image-tree.sh, the script the e2e test runs', () => {
    const [build] = stages();
    assert.match(build.from, /^FROM debian:12 AS build$/);
    assert.ok(build.lines.some((l) => /^RUN .*scripts\/build-image-tree\.sh \/opt\/xlb$/.test(l)), `the build stage runs the script: ${build.lines.join(' | ')}`);
  });

  test('the runtime stage is Debian 12 slim with the listed packages and /opt/xlb, and nothing of the toolchain', () => {
    const all = stages();
    assert.equal(all.length, 2, 'two stages');
    const runtime = all[1];
    assert.equal(runtime.from, 'FROM debian:12-slim');
    const text = runtime.lines.join('\n');
    assert.match(text, /image-runtime-packages\.txt .*apt-get install/s, 'the packages come from scripts/image-runtime-packages.txt');
    assert.match(text, /^COPY --from=build \/opt\/xlb \/opt\/xlb$/m);
    assert.doesNotMatch(text, /\b(clang|llvm|make|npm|nodejs|libbpf-dev|golang)\b/, 'no toolchain package in the runtime stage');
    assert.match(text, /^ENV PATH=\/opt\/xlb\/bin:\$PATH$/m);
    assert.match(text, /^ENTRYPOINT \["xlb"\]$/m);
  });
});

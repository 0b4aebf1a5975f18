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
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** `docker-compose config` of the repository's file, parsed, with `env` as the environment it interpolates. */
function composeConfig(env: Record<string, string> = {}): Obj {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('XLB_')));
  const out = execFileSync('docker-compose', ['-f', path.join(root, 'docker-compose.yml'), 'config'], { encoding: 'utf8', env: { ...clean, ...env } });
  return parse(out) as Obj;
}

describe('docker-compose.yml', () => {
  test('is valid for docker-compose and runs the agent on the host network with bpffs', () => {
    const out = execFileSync('docker-compose', ['-f', path.join(root, 'docker-compose.yml'), 'config'], { encoding: 'utf8' });
    assert.match(out, /network_mode: host/);
    assert.match(out, /\/sys\/fs\/bpf/);
    assert.doesNotMatch(out, /privileged: true/);
  });

  test('names nothing of the machine: a configuration without node or interfaces, the variables empty unless set', () => {
    const agent = composeConfig().services['xlb-agent'];
    assert.deepEqual(agent.environment, { XLB_INTERFACES: '', XLB_NODE_NAME: '' }, 'empty: the agent finds them');
    const mounts = new Map((agent.volumes as string[]).map((v) => [v.split(':')[1], v.split(':')[0]]));
    const config = mounts.get('/etc/xlb/agent.yaml');
    assert.equal(config, path.join(root, 'examples/compose-agent.yaml'), 'the configuration is the repository\'s, unedited');
    const c = loadConfig(config!, {}, { discovery: { nodeName: () => 'host', interfaces: () => ['eth0'] } });
    assert.equal(mounts.get(c.source.file!.path), path.join(root, 'examples/lab-services.yaml'), 'the manifests file is mounted where the configuration reads it');
    assert.equal(mounts.get(c.socketLB.cgroupRoot!), '/sys/fs/cgroup', "the host's cgroup2 hierarchy is mounted where the socket hooks attach");
    assert.deepEqual(agent.command, ['agent', '--config', '/etc/xlb/agent.yaml']);
  });

  test('the variables reach the agent and the mounts', () => {
    const agent = composeConfig({ XLB_INTERFACES: 'eth1,eth2', XLB_NODE_NAME: 'edge-1', XLB_SERVICES: '/srv/services.yaml', XLB_HOST_CGROUP2: '/sys/fs/cgroup/unified' }).services['xlb-agent'];
    assert.deepEqual(agent.environment, { XLB_INTERFACES: 'eth1,eth2', XLB_NODE_NAME: 'edge-1' });
    assert.ok(agent.volumes.includes('/srv/services.yaml:/etc/xlb/services.yaml:ro'), `XLB_SERVICES is mounted: ${agent.volumes}`);
    assert.ok(agent.volumes.includes('/sys/fs/cgroup/unified:/run/xlb/cgroupv2:ro'), `XLB_HOST_CGROUP2 is mounted: ${agent.volumes}`);
  });

  test('the healthcheck is readiness: `xlb status`, which exits 1 until the agent is ready', () => {
    const agent = composeConfig().services['xlb-agent'];
    assert.deepEqual(agent.healthcheck.test, ['CMD', 'xlb', 'status']);
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

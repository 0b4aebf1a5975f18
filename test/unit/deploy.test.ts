/**
 * The files users deploy with are checked by the tools that read them:
 * docker-compose.yml by `docker-compose config` (the Debian package, which
 * validates without a Docker engine).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('docker-compose.yml is valid for docker-compose and runs the agent on the host network with bpffs', () => {
  const out = execFileSync('docker-compose', ['-f', path.join(root, 'docker-compose.yml'), 'config'], { encoding: 'utf8' });
  assert.match(out, /network_mode: host/);
  assert.match(out, /\/sys\/fs\/bpf/);
  assert.doesNotMatch(out, /privileged: true/);
});

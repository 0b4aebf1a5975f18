/**
 * The `xlb` command line refuses bad arguments before it does anything: a
 * message naming the option or argument and what it expects, and a
 * non-zero exit (src/cli/args.ts, through commander).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from 'commander';
import { integerIn, parseAddressFilter, parseApiAddress, parseNamespacedName, parseProtocol } from '../../src/cli/args.js';

const xlb = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/xlb.js');

test('API addresses: HOST:PORT or unix:/path', () => {
  for (const ok of ['127.0.0.1:9876', 'localhost:1', '[::1]:9876', 'unix:/run/xlb.sock']) assert.equal(parseApiAddress(ok), ok);
  for (const bad of ['foo', 'foo:', ':80', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:0x50', '127.0.0.1:1e3', '127.0.0.1: 80', 'unix:relative', '[::1:80']) {
    assert.throws(() => parseApiAddress(bad), InvalidArgumentError, bad);
  }
});

test('xlb ct list filters: IPv4 or IPv4:PORT, and tcp or udp', () => {
  for (const ok of ['198.18.0.1', '203.0.113.10:80', '198.19.1.11:65535']) assert.equal(parseAddressFilter(ok), ok);
  for (const bad of ['198.18.0', 'web', '203.0.113.10:', '203.0.113.10:0', '203.0.113.10:0x50', '203.0.113.10:65536', '::1']) {
    assert.throws(() => parseAddressFilter(bad), InvalidArgumentError, bad);
  }
  assert.deepEqual(['tcp', 'UDP'].map(parseProtocol), ['tcp', 'udp']);
  assert.throws(() => parseProtocol('sctp'), /expected tcp or udp/);
});

test('services are NAMESPACE/NAME with Kubernetes names', () => {
  for (const ok of ['default/web', 'kube-system/kube-dns', 'a/b.c']) assert.equal(parseNamespacedName(ok), ok);
  for (const bad of ['web', '/web', 'default/', 'a/b/c', 'Default/web', 'default/Web', 'default/-web', 'de_fault/web']) {
    assert.throws(() => parseNamespacedName(bad), InvalidArgumentError, bad);
  }
  assert.throws(() => parseNamespacedName('web'), /expected NAMESPACE\/NAME, e\.g\. default\/web/);
});

test('whole numbers in a range: no sign, fraction, exponent, hex or blank', () => {
  const nodes = integerIn(1, 50);
  assert.equal(nodes('2'), 2);
  assert.equal(nodes('50'), 50);
  for (const bad of ['abc', '', ' 2', '+2', '-1', '0', '51', '2.0', '1e1', '0x2']) assert.throws(() => nodes(bad), InvalidArgumentError, JSON.stringify(bad));
});

test('the command exits non-zero naming the argument, before doing anything', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [xlb, ...args], { encoding: 'utf8', timeout: 60_000 });
  const cases: Array<[string[], RegExp]> = [
    [['status', '--api', 'foo'], /option '--api <addr>' argument 'foo' is invalid\. expected HOST:PORT/],
    [['services', 'web'], /argument 'namespace\/name'\. expected NAMESPACE\/NAME, e\.g\. default\/web/],
    [['lab', 'up', '--nodes', 'abc'], /option '--nodes <n>' argument 'abc' is invalid\. expected a whole number from 1 to 50/],
    [['demo', '--requests', '1e3'], /option '--requests <n>' argument '1e3' is invalid/],
  ];
  for (const [args, message] of cases) {
    const r = run(...args);
    assert.notEqual(r.status, 0, `xlb ${args.join(' ')} exits non-zero`);
    assert.match(r.stderr, message, `xlb ${args.join(' ')}`);
  }
});

test('xlb status exits 1 while the agent is not ready, 0 once it is', async () => {
  let ready = false;
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/readyz') {
      res.statusCode = ready ? 200 : 503;
      return res.end(JSON.stringify({ status: ready ? 'ready' : 'not ready' }));
    }
    if (req.url === '/v1/datapath') return res.end(JSON.stringify({ attachments: [], maps: [], drops: {} }));
    if (req.url === '/v1/services') return res.end(JSON.stringify({ services: [] }));
    res.statusCode = 404;
    res.end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const api = `127.0.0.1:${(server.address() as { port: number }).port}`;
  // Asynchronous: the stub answers on this process's event loop.
  const run = () =>
    new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [xlb, 'status', '--api', api]);
      let stdout = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.on('close', (code) => resolve({ code, stdout }));
    });
  try {
    const notReady = await run();
    assert.equal(notReady.code, 1, notReady.stdout);
    assert.match(notReady.stdout, /not ready \(first sync not programmed\)/);
    ready = true;
    const ok = await run();
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(ok.stdout, /^all ready$/m);
  } finally {
    server.close();
  }
});

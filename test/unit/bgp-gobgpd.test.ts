/**
 * The gobgpd supervisor across agent restarts (src/bgp/gobgpd.ts), with a
 * stand-in gobgpd: a script named `gobgpd` that serves its `--api-hosts`
 * unix socket and writes one JSON log line, as gobgpd does. Shown: a spawned
 * gobgpd runs in its own session with its pid recorded and its output in a
 * log file; detach() leaves it running and the next supervisor adopts it
 * (same pid, no spawn); an adopted one that dies is replaced; stop() and
 * stopKeptGobgpd end it and remove the files; a pid file naming another
 * process, or a gobgpd whose API does not answer, is not adopted.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gobgpdFiles, GobgpdSupervisor, processRunning, stopKeptGobgpd, type GobgpdLogLine } from '../../src/bgp/gobgpd.js';
import { waitFor } from '../../src/util/wait.js';

let dir = '';
let binary = '';
let sock = '';
const started: GobgpdSupervisor[] = [];

/** The stand-in: serves the API socket unless `mute` exists beside it; SIGTERM ends it. */
const FAKE = `#!${process.execPath}
const net = require('node:net');
const fs = require('node:fs');
const path = require('node:path');
const hosts = process.argv[process.argv.indexOf('--api-hosts') + 1];
console.log(JSON.stringify({ level: 'info', msg: 'fake gobgpd started', pid: process.pid }));
console.log(JSON.stringify({ level: 'error', msg: 'fake error line', Error: 'for lastError' }));
if (!fs.existsSync(path.join(__dirname, 'mute'))) net.createServer((c) => c.end()).listen(hosts.replace('unix://', ''));
else setInterval(() => {}, 1000);
process.on('SIGTERM', () => process.exit(0));
`;

const supervisor = (o: { adoptTimeoutMs?: number } = {}) => {
  const s = new GobgpdSupervisor({ binary, apiSocket: sock, restartInitialMs: 20, adoptedPollMs: 20, adoptTimeoutMs: o.adoptTimeoutMs ?? 2000 });
  started.push(s);
  return s;
};

/** The session id of a process (/proc/PID/stat field 6). */
function sessionOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
}

const recorded = () => Number(fs.readFileSync(path.join(dir, 'gobgpd.pid'), 'utf8'));

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-gobgpd-'));
  binary = path.join(dir, 'gobgpd');
  fs.writeFileSync(binary, FAKE, { mode: 0o755 });
  // The script is CommonJS whatever the package says.
  fs.writeFileSync(path.join(dir, 'package.json'), '{"type":"commonjs"}');
  sock = path.join(dir, 'gobgpd.sock');
});

after(async () => {
  for (const s of started) await s.stop().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('gobgpd files', () => {
  it('go next to the API socket, or to /run/xlb with a TCP API, or where pidFile says', () => {
    assert.deepEqual(gobgpdFiles({ apiSocket: '/run/xlb/gobgpd.sock' }), { pidFile: '/run/xlb/gobgpd.pid', logFile: '/run/xlb/gobgpd.log' });
    assert.deepEqual(gobgpdFiles({ apiSocket: '/var/lib/x/api' }), { pidFile: '/var/lib/x/api.pid', logFile: '/var/lib/x/api.log' });
    assert.deepEqual(gobgpdFiles({}), { pidFile: '/run/xlb/gobgpd-50051.pid', logFile: '/run/xlb/gobgpd-50051.log' });
    assert.deepEqual(gobgpdFiles({ apiPort: 50052, pidFile: '/tmp/g.pid' }), { pidFile: '/tmp/g.pid', logFile: '/tmp/g.log' });
  });
});

describe('gobgpd across agent restarts', () => {
  let pid = 0;

  it('a spawned gobgpd runs in its own session, its pid recorded and its output followed from the log file', async () => {
    const s = supervisor();
    const lines: GobgpdLogLine[] = [];
    s.on('log', (l) => lines.push(l));
    assert.equal(await s.start(), 'spawned');
    pid = s.pid!;
    assert.equal(recorded(), pid);
    assert.equal(sessionOf(pid), pid, 'session leader: signals for the agent’s group do not reach it');
    await waitFor(() => lines.some((l) => l.msg === 'fake gobgpd started'), 3000, 'the log line through the file');
    await waitFor(() => s.lastError === 'fake error line: for lastError', 3000, 'lastError from the log');
    assert.equal(s.adopted, false);
    s.detach();
    assert.ok(processRunning(pid), 'detach leaves it running');
    assert.equal(recorded(), pid, 'and recorded');
  });

  it('the next supervisor adopts it: same pid, no spawn, not a restart', async () => {
    const s = supervisor();
    let spawned = 0;
    const adopted: number[] = [];
    s.on('spawn', () => spawned++);
    s.on('adopt', (e) => adopted.push(e.pid));
    assert.equal(await s.start(), 'adopted');
    assert.equal(s.pid, pid);
    assert.equal(s.adopted, true);
    assert.deepEqual(adopted, [pid]);
    assert.equal(spawned, 0);
    assert.equal(s.restarts, 0);
    s.detach();
  });

  it('an adopted gobgpd that dies (kill -9) is replaced, as a spawned one is', async () => {
    const s = supervisor();
    assert.equal(await s.start(), 'adopted');
    const exits: Array<{ pid: number; restartInMs?: number }> = [];
    s.on('exit', (e) => exits.push(e));
    process.kill(pid, 'SIGKILL');
    await waitFor(() => s.pid !== undefined && s.pid !== pid, 5000, 'a new gobgpd');
    assert.equal(exits[0].pid, pid);
    assert.ok(exits[0].restartInMs !== undefined, 'restart scheduled');
    assert.equal(s.restarts, 1);
    assert.equal(s.adopted, false);
    assert.equal(recorded(), s.pid);
    assert.ok(fs.existsSync(path.join(dir, 'gobgpd.log.old')), 'the dead one’s log kept once');
    pid = s.pid!;
    s.detach();
  });

  it('stopKeptGobgpd (xlb uninstall) ends the kept gobgpd and removes its pid file and socket', async () => {
    assert.ok(processRunning(pid));
    const what = await stopKeptGobgpd({ gobgpd: { binary, apiSocket: sock } });
    assert.equal(what, `gobgpd pid ${pid} (unix://${sock}, ${path.join(dir, 'gobgpd.pid')})`);
    assert.equal(processRunning(pid), false);
    assert.equal(fs.existsSync(path.join(dir, 'gobgpd.pid')), false);
    assert.equal(fs.existsSync(sock), false);
    assert.equal(await stopKeptGobgpd({ gobgpd: { binary, apiSocket: sock } }), undefined, 'nothing left to stop');
    assert.equal(await stopKeptGobgpd({ gobgpd: { external: '127.0.0.1:50051' } }), undefined, 'an external gobgpd is not ours');
  });

  it('a pid file naming another process is not adopted, and that process is left alone', async () => {
    fs.writeFileSync(path.join(dir, 'gobgpd.pid'), `${process.pid}\n`);
    const s = supervisor();
    assert.equal(await s.start(), 'spawned');
    assert.notEqual(s.pid, process.pid);
    assert.equal(recorded(), s.pid);
    await s.stop();
  });

  it('a kept gobgpd whose API does not answer is killed and replaced', async () => {
    fs.writeFileSync(path.join(dir, 'mute'), '');
    const first = supervisor();
    let up = false;
    first.on('log', (l) => (up ||= l.msg === 'fake gobgpd started'));
    await first.start();
    await waitFor(() => up, 3000, 'the mute gobgpd to have started');
    const mute = first.pid!;
    first.detach();
    fs.rmSync(path.join(dir, 'mute'));
    const s = supervisor({ adoptTimeoutMs: 300 });
    assert.equal(await s.start(), 'spawned');
    assert.notEqual(s.pid, mute);
    await waitFor(() => !processRunning(mute), 3000, 'the mute gobgpd to be gone');
    await s.stop();
  });

  it('stop() ends a spawned or adopted gobgpd and removes its pid file and socket', async () => {
    const a = supervisor();
    await a.start();
    const p = a.pid!;
    a.detach();
    const s = supervisor();
    assert.equal(await s.start(), 'adopted');
    await waitFor(() => fs.existsSync(sock), 3000, 'the API socket');
    await s.stop();
    assert.equal(processRunning(p), false);
    assert.equal(fs.existsSync(path.join(dir, 'gobgpd.pid')), false);
    assert.equal(fs.existsSync(sock), false);
    assert.equal(s.pid, undefined);
  });
});

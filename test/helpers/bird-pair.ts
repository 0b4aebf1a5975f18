/**
 * A node and a router in two network namespaces joined by a veth pair (a
 * /30), with BIRD 2 on the router holding one eBGP session (AS 64512) to the
 * node (AS 64513), set to reconnect within a second or two: the BGP tests'
 * peer. `stop()` ends BIRD and removes the namespaces and the state directory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor } from '../../src/util/wait.js';
import { removeNetnsQuietly, shSync } from './system.js';

/** The two namespaces, their link and addresses. */
export interface BirdPairOptions {
  /** Temporary directory name prefix (bird.conf, its control socket; the test's own files too). */
  prefix: string;
  nodeNs: string;
  routerNs: string;
  nodeIf: string;
  routerIf: string;
  nodeAddr: string;
  routerAddr: string;
  /** BIRD also installs what it learns into the router's routing table. */
  kernel?: boolean;
  /** Seconds BIRD waits between connect attempts. */
  connectRetry: number;
}

/** A running pair. */
export interface BirdPair {
  dir: string;
  /** birdc's output (its status is not an error: it exits non-zero for answers such as "Network not found"). */
  birdc(...args: string[]): string;
  stop(): Promise<void>;
}

/** Build the namespaces and start BIRD; resolves once BIRD answers. On failure, what was made is removed. */
export async function startBirdPair(o: BirdPairOptions): Promise<BirdPair> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), o.prefix));
  let bird: ChildProcess | undefined;
  const birdc = (...args: string[]) => {
    const r = spawnSync('birdc', ['-s', path.join(dir, 'bird.ctl'), ...args], { encoding: 'utf8' });
    if (r.error) throw r.error;
    return r.stdout + r.stderr;
  };
  const stop = async () => {
    if (bird?.exitCode === null) {
      const exited = new Promise((r) => bird!.once('exit', r));
      bird.kill('SIGTERM');
      await exited;
    }
    removeNetnsQuietly(o.nodeNs, o.routerNs);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    shSync('ip', ['netns', 'add', o.nodeNs]);
    shSync('ip', ['netns', 'add', o.routerNs]);
    shSync('ip', ['link', 'add', o.nodeIf, 'netns', o.nodeNs, 'type', 'veth', 'peer', 'name', o.routerIf, 'netns', o.routerNs]);
    shSync('ip', ['-n', o.nodeNs, 'addr', 'add', `${o.nodeAddr}/30`, 'dev', o.nodeIf]);
    shSync('ip', ['-n', o.routerNs, 'addr', 'add', `${o.routerAddr}/30`, 'dev', o.routerIf]);
    for (const [ns, ifn] of [[o.nodeNs, o.nodeIf], [o.routerNs, o.routerIf]]) {
      shSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      shSync('ip', ['-n', ns, 'link', 'set', ifn, 'up']);
    }
    fs.writeFileSync(
      path.join(dir, 'bird.conf'),
      `router id ${o.routerAddr};
protocol device {}
${o.kernel ? 'protocol kernel { ipv4 { export all; }; merge paths on; }\n' : ''}protocol bgp node1 {
  local ${o.routerAddr} as 64512;
  neighbor ${o.nodeAddr} as 64513;
  # Reconnect fast after gobgpd dies (defaults: 5 s connect delay, 60..300 s after an error).
  connect delay time 1;
  connect retry time ${o.connectRetry};
  error wait time 1, 2;
  ipv4 { import all; export none; };
}
`,
    );
    bird = spawn('ip', ['netns', 'exec', o.routerNs, 'bird', '-f', '-c', path.join(dir, 'bird.conf'), '-s', path.join(dir, 'bird.ctl'), '-P', path.join(dir, 'bird.pid')], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    await waitFor(() => fs.existsSync(path.join(dir, 'bird.ctl')) && birdc('show', 'status').includes('Daemon is up'), 5000, 'BIRD to start');
  } catch (e) {
    await stop();
    throw e;
  }
  return { dir, birdc, stop };
}

/**
 * Layer 2 mode end to end, without the lab: two nodes and a client on one
 * bridge, each node running the real datapath (XDP native on its veth) and
 * an L2Announcer (test/e2e/l2-core-node.ts, spawned inside the node's
 * namespace), heartbeats over UDP with the default settings, gratuitous ARP
 * with arping.
 *
 *   xlb-l2c-SFX  client 198.18.60.1 ─┐
 *   xlb-l2a-SFX  node-a 198.18.60.2 ─┼─ bridge (xlb-l2br-SFX)
 *   xlb-l2b-SFX  node-b 198.18.60.3 ─┘          VIPs 192.0.2.x, on-link for the client
 *
 * Shown with arping from the client: exactly one MAC answers for each VIP,
 * the owner's; when the owner's link goes down, the client's neighbour entry
 * moves to the other node's MAC (by gratuitous ARP, the client sends no ARP)
 * within 3 s, and arping then sees only that MAC; the node that comes back
 * takes nothing back; a process that stops for a restart leaves XDP
 * answering with no process running, its peer takes nothing, and the next
 * process adopts the VIPs from the pinned ARP map; a clean stop (an
 * uninstall) hands over in under 1 s. Times printed.
 *
 * Run as root: node --import tsx --test test/e2e/l2-core.test.ts
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { rendezvousOrder } from '../../src/l2/ownership.js';
import { waitFor } from '../../src/util/wait.js';
import { PIN_BASE, removePins } from '../../src/datapath/bpf.js';
import type { L2Status } from '../../src/l2/announcer.js';
import { hasTools, isRoot, removeNetnsQuietly, shSync, skipUnless } from '../helpers/system.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SFX = randomBytes(3).toString('hex');
const NS = { br: `xlb-l2br-${SFX}`, a: `xlb-l2a-${SFX}`, b: `xlb-l2b-${SFX}`, c: `xlb-l2c-${SFX}` };
const BR = `xbr-${SFX}`;
const IF = { a: `xa-${SFX}`, b: `xb-${SFX}`, c: `xc-${SFX}` };
const PORT = { a: `xpa-${SFX}`, b: `xpb-${SFX}`, c: `xpc-${SFX}` };
const IP = { c: '198.18.60.1', a: '198.18.60.2', b: '198.18.60.3' };
const MAC = { c: '02:00:00:60:00:01', a: '02:00:00:60:00:0a', b: '02:00:00:60:00:0b' };
const NAME = { a: 'node-a', b: 'node-b' } as const;
type Node = 'a' | 'b';

/** One VIP ranked first for each node (rendezvous hashing), so that the two spread. */
function pickVips(): Record<Node, string> {
  const out: Partial<Record<Node, string>> = {};
  for (let i = 10; !(out.a && out.b); i++) {
    const vip = `192.0.2.${i}`;
    const first = rendezvousOrder(vip, [NAME.a, NAME.b])[0] === NAME.a ? 'a' : 'b';
    out[first] ??= vip;
  }
  return out as Record<Node, string>;
}
const VIP = pickVips();

const skip = skipUnless([isRoot, 'needs root (network namespaces, XDP)'], [() => hasTools('arping'), 'needs iputils-arping'], [() => hasTools('nsenter'), 'needs nsenter (util-linux)']);

const ipn = (ns: string, ...args: string[]) => shSync('ip', ['-n', ns, ...args]);

/** A node helper process and its JSON-lines control channel. */
class NodeProc {
  readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, (r: unknown) => void>();
  readonly ready: Promise<void>;
  stderr = '';

  constructor(readonly node: Node) {
    const args = {
      nodeName: NAME[node],
      iface: IF[node],
      nodeAddress: IP[node],
      instance: `l2e2e-${SFX}-${node}`,
      l2: { peers: [{ name: NAME.a, address: IP.a }, { name: NAME.b, address: IP.b }] },
      vips: [
        { vip: VIP.a, service: 'default/web' },
        { vip: VIP.b, service: 'default/api' },
      ],
    };
    this.child = spawn('nsenter', [`--net=/run/netns/${NS[node]}`, '--', process.execPath, '--import', 'tsx', path.join(repo, 'test/e2e/l2-core-node.ts'), JSON.stringify(args)], {
      cwd: repo,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    const lines = readline.createInterface({ input: this.child.stdout! });
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code) => reject(new Error(`${NAME[node]} exited (${code}) before it was ready:\n${this.stderr.slice(-3000)}`)));
      lines.on('line', (line) => {
        const m = JSON.parse(line) as { ready?: boolean; error?: string; id?: number; result?: unknown };
        if (m.ready) resolve();
        else if (m.error) reject(new Error(`${NAME[node]}: ${m.error}\n${this.stderr.slice(-3000)}`));
        else if (m.id !== undefined) this.pending.get(m.id)?.(m.result);
      });
    });
  }

  private call(cmd: 'status' | 'stop' | 'restart'): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.child.stdin!.write(`${JSON.stringify({ id, cmd })}\n`);
    });
  }

  status(): Promise<L2Status> {
    return this.call('status') as Promise<L2Status>;
  }

  /** Clean stop (hand-over, uninstall); with `restart`, an agent restart (XDP and the ARP map stay). Resolves when the helper has exited. */
  async stop(opts: { restart?: boolean } = {}): Promise<void> {
    if (this.child.exitCode !== null) return;
    await this.call(opts.restart ? 'restart' : 'stop');
    this.child.stdin!.end();
    await new Promise((r) => (this.child.exitCode !== null ? r(null) : this.child.once('exit', r)));
  }
}

const procs: Partial<Record<Node, NodeProc>> = {};

/** The MACs that answer `arping -c N` for `vip` from the client (upper case in arping's output, lower-cased here). */
function arpingMacs(vip: string, count = 2): string[] {
  let out = '';
  try {
    out = shSync('ip', ['netns', 'exec', NS.c, 'arping', '-c', String(count), '-I', IF.c, vip]);
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? ''); // exit 1: no reply
  }
  const macs = [...out.matchAll(/reply from \S+ \[([0-9A-Fa-f:]{17})\]/g)].map((m) => m[1].toLowerCase());
  return [...new Set(macs)].sort();
}

/** The client's neighbour entry for `vip`: its MAC, or '' when there is none. */
function clientNeigh(vip: string): string {
  const j = JSON.parse(ipn(NS.c, '-j', 'neigh', 'show', vip, 'dev', IF.c)) as Array<{ lladdr?: string }>;
  return j[0]?.lladdr?.toLowerCase() ?? '';
}

/** Which node answers ARP for each VIP by its own account (the ARP map it wrote). */
async function localVips(node: Node): Promise<string[]> {
  const s = await procs[node]!.status();
  return s.vips.filter((v) => v.local).map((v) => v.vip).sort();
}

function cleanup(): void {
  for (const p of Object.values(procs)) if (p && p.child.exitCode === null) p.child.kill('SIGKILL');
  removeNetnsQuietly(...Object.values(NS));
  for (const n of ['a', 'b']) removePins(`${PIN_BASE}/l2e2e-${SFX}-${n}`);
}

describe('layer 2 mode: two nodes, one client, one bridge', { skip }, () => {
  before(async () => {
    execFileSync('make', ['-s', '-C', path.join(repo, 'xdp')], { stdio: 'inherit' });
    try {
      for (const ns of Object.values(NS)) shSync('ip', ['netns', 'add', ns]);
      ipn(NS.br, 'link', 'add', BR, 'type', 'bridge');
      ipn(NS.br, 'link', 'set', BR, 'up');
      for (const n of ['a', 'b', 'c'] as const) {
        ipn(NS[n], 'link', 'add', IF[n], 'address', MAC[n], 'type', 'veth', 'peer', 'name', PORT[n], 'netns', NS.br);
        ipn(NS.br, 'link', 'set', PORT[n], 'master', BR, 'up');
        ipn(NS[n], 'addr', 'add', `${IP[n]}/24`, 'dev', IF[n]);
        ipn(NS[n], 'link', 'set', 'lo', 'up');
        ipn(NS[n], 'link', 'set', IF[n], 'up');
      }
      // XDP_TX from a node's veth lands on its bridge port: that veth needs an XDP program.
      for (const n of ['a', 'b'] as const) ipn(NS.br, 'link', 'set', 'dev', PORT[n], 'xdpdrv', 'obj', path.join(repo, 'xdp/build/xlb_xdp_pass.bpf.o'), 'sec', 'xdp');
      // The VIPs are on the client's segment: it resolves them with ARP.
      ipn(NS.c, 'route', 'add', '192.0.2.0/24', 'dev', IF.c);
      procs.a = new NodeProc('a');
      procs.b = new NodeProc('b');
      await Promise.all([procs.a.ready, procs.b.ready]);
    } catch (e) {
      cleanup();
      throw e;
    }
  });

  after(async () => {
    try {
      await Promise.all(Object.values(procs).map((p) => p?.stop().catch(() => {})));
    } finally {
      cleanup();
    }
  });

  it('exactly one MAC answers for each VIP, the owner\'s, and the VIPs spread over both nodes', async () => {
    await waitFor(async () => (await localVips('a')).join() === VIP.a && (await localVips('b')).join() === VIP.b, 5000, 'each node owns its VIP');
    assert.deepEqual(arpingMacs(VIP.a), [MAC.a]);
    assert.deepEqual(arpingMacs(VIP.b), [MAC.b]);
    assert.deepEqual(arpingMacs('192.0.2.250', 1), [], 'no answer for an address that is no VIP');
    const s = await procs.a!.status();
    assert.deepEqual(s.vips.map((v) => [v.vip, v.owner]), [
      [VIP.a, NAME.a],
      [VIP.b, NAME.b],
    ].sort((x, y) => (x[0] < y[0] ? -1 : 1)));
    assert.equal(s.peers[0].alive, true);
  });

  it('the owner\'s link goes down: the client\'s neighbour entry moves to the other MAC by gratuitous ARP within 3 s', async (t) => {
    // The client has resolved both VIPs before (as after traffic); it sends no ARP from here on.
    ipn(NS.c, 'neigh', 'replace', VIP.a, 'lladdr', MAC.a, 'dev', IF.c, 'nud', 'stale');
    ipn(NS.c, 'neigh', 'replace', VIP.b, 'lladdr', MAC.b, 'dev', IF.c, 'nud', 'stale');
    const t0 = performance.now();
    ipn(NS.b, 'link', 'set', IF.b, 'down');
    await waitFor(() => clientNeigh(VIP.b) === MAC.a, 3000, `client's entry for ${VIP.b} to move to node-a's MAC`, 10);
    const ms = performance.now() - t0;
    t.diagnostic(`failover (link down to the client's neighbour entry updated): ${Math.round(ms)} ms`);
    assert.ok(ms < 3000);
    assert.deepEqual(arpingMacs(VIP.b), [MAC.a], 'arping sees only the new owner');
    assert.deepEqual(await localVips('b'), [], 'node-b released its VIP when its link went down');
  });

  it('the node comes back and takes nothing back', async () => {
    const before = (await procs.b!.status()).counters.heartbeatsReceived;
    ipn(NS.b, 'link', 'set', IF.b, 'up');
    // Ten heartbeats from node-a (2 s) after the link is back: each a chance to steal.
    await waitFor(async () => (await procs.b!.status()).counters.heartbeatsReceived >= before + 10, 5000, 'node-b hears node-a again', 50);
    assert.deepEqual(await localVips('b'), []);
    assert.deepEqual(await localVips('a'), [VIP.a, VIP.b].sort());
    assert.deepEqual(arpingMacs(VIP.b), [MAC.a]);
    assert.equal(clientNeigh(VIP.b), MAC.a);
  });

  it('the owner\'s process stops for a restart: its XDP keeps answering with no process, node-b takes nothing, the next process adopts the VIPs', async (t) => {
    await procs.a!.stop({ restart: true });
    const t0 = performance.now();
    // Two dead-after windows with no process on node-a: a silent node would have lost its VIPs.
    await waitFor(
      async () => {
        assert.deepEqual(await localVips('b'), [], 'node-b took a VIP while node-a restarted');
        return performance.now() - t0 > 2000;
      },
      10_000,
      'two dead-after windows',
      50,
    );
    assert.deepEqual(arpingMacs(VIP.a), [MAC.a], 'node-a\'s XDP answers from the pinned ARP map');
    assert.deepEqual(arpingMacs(VIP.b), [MAC.a]);
    assert.equal((await procs.b!.status()).peers[0].restarting, true);
    procs.a = new NodeProc('a');
    await procs.a.ready;
    t.diagnostic(`restart: ${Math.round(performance.now() - t0)} ms from the stop to the next process ready`);
    assert.deepEqual(await localVips('a'), [VIP.a, VIP.b].sort(), 'the next process owns what it found in the map');
    assert.equal((await procs.a.status()).takeovers, 0, 'adopted, not taken over: no gratuitous ARP, nothing moved');
    assert.deepEqual(await localVips('b'), []);
    assert.deepEqual(arpingMacs(VIP.a), [MAC.a]);
    assert.deepEqual(arpingMacs(VIP.b), [MAC.a]);
  });

  it('the owner stops cleanly: the other node takes every VIP over in under 1 s', async (t) => {
    const t0 = performance.now();
    const stopped = procs.a!.stop();
    await waitFor(() => clientNeigh(VIP.a) === MAC.b && clientNeigh(VIP.b) === MAC.b, 1000, 'the client\'s entries to move to node-b\'s MAC', 5);
    const ms = performance.now() - t0;
    t.diagnostic(`hand-over (stop to both neighbour entries updated): ${Math.round(ms)} ms`);
    assert.ok(ms < 1000);
    await stopped;
    assert.deepEqual(arpingMacs(VIP.a), [MAC.b]);
    assert.deepEqual(arpingMacs(VIP.b), [MAC.b]);
  });
});

/**
 * `xlb demo`: the README's first command, after setup. Brings the lab up,
 * sends HTTP (a new connection per request) and UDP from the client to every
 * VIP, prints each backend's count beside its Maglev share, then changes the
 * web service's backends in the manifests (one added, one removed) while
 * keep-alive connections are open and shows that they kept their backends;
 * then the east-west half: a pod resolves a service's name through the
 * cluster DNS service and calls it by name, spread over the backends by the
 * socket hooks. Takes the lab down (unless --keep).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { labDown, labExecArgv, labPodExec, labRoutes, labUp, type LabStatus } from '../lab/index.js';
import { apiGet } from '../cli/client.js';
import { editEndpoints } from './manifests.js';
import { waitFor } from '../util/wait.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const trafficScript = path.join(repo, 'src/demo/traffic.ts');

/**
 * Run the traffic generator in the client namespace (or, with `asPod`, as
 * that pod of the lab: its cgroup, namespace and resolv.conf); returns its
 * JSON lines.
 */
export async function clientTraffic(lab: LabStatus, args: string[], asPod?: string): Promise<Array<Record<string, unknown>>> {
  const argv = [process.execPath, '--import', 'tsx', trafficScript, ...args];
  const [cmd, ...rest] = asPod ? labExecArgv(lab.stateDir, asPod, argv) : ['ip', 'netns', 'exec', lab.client, ...argv];
  const child = spawn(cmd, rest, {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (err += c));
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  if (code !== 0) throw new Error(`traffic ${args.join(' ')} failed (${code}): ${err.trim()}`);
  return out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** One round of the keep-alive traffic: per connection, the pod that answered and the client's local port. */
export interface KeepaliveRound {
  pods: string[];
  localPorts: number[];
}

/** The keep-alive traffic generator, running; see {@link keepaliveTraffic}. */
export interface KeepaliveTraffic {
  /** The rounds answered so far, the first one as soon as the connections are open. */
  rounds: KeepaliveRound[];
  /** Ask for one more round on the same connections. */
  again(): void;
  /** Close the connections and end the generator. */
  stop(): void;
}

/**
 * Start the traffic generator's keep-alive mode in the client namespace:
 * `connections` connections to `url`, one request on each now (round 0)
 * and again at each `again()`, so that a caller sees whether a connection
 * kept its backend across a change. The caller must `stop()` it.
 */
export function keepaliveTraffic(lab: LabStatus, url: string, connections: number): KeepaliveTraffic {
  const child = spawn('ip', ['netns', 'exec', lab.client, process.execPath, '--import', 'tsx', trafficScript, 'keepalive', '--url', url, '--connections', String(connections)], {
    cwd: repo,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const rounds: KeepaliveRound[] = [];
  let buf = '';
  child.stdout.on('data', (c) => {
    buf += c;
    for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) rounds.push(JSON.parse(buf.slice(0, i)));
  });
  return {
    rounds,
    again: () => child.stdin.write('again\n'),
    stop: () => {
      child.stdin.end();
      child.kill();
    },
  };
}

/** Maglev shares of the backends of one service port (by protocol), by IP:port, from one node's agent. */
async function sharesOf(api: string, ns: string, name: string, protocol: 'TCP' | 'UDP' = 'TCP'): Promise<Map<string, number>> {
  const r = (await apiGet(api, `/v1/services/${ns}/${name}`)) as { ports: Array<{ protocol: string; backends: Array<{ addr: string; port: number; share: number }> }> };
  const out = new Map<string, number>();
  for (const p of r.ports.filter((x) => x.protocol === protocol)) for (const b of p.backends) out.set(`${b.addr}:${b.port}`, b.share);
  return out;
}

function podOfBackend(lab: LabStatus, backend: string): string {
  const ip = backend.split(':')[0];
  return lab.pods.find((p) => p.ip === ip)?.name ?? backend;
}

function printDistribution(title: string, lab: LabStatus, counts: Record<string, number>, shares: Map<string, number>, total: number): void {
  console.log(`\n${title}`);
  console.log(`  ${'backend'.padEnd(22)} ${'pod'.padEnd(12)} ${'count'.padStart(6)} ${'observed'.padStart(9)} ${'maglev'.padStart(8)}`);
  for (const [backend, share] of [...shares].sort()) {
    const pod = podOfBackend(lab, backend);
    const n = counts[pod] ?? 0;
    console.log(`  ${backend.padEnd(22)} ${pod.padEnd(12)} ${String(n).padStart(6)} ${((100 * n) / total).toFixed(1).padStart(8)}% ${(100 * share).toFixed(1).padStart(7)}%`);
  }
  const others = Object.keys(counts).filter((pod) => ![...shares.keys()].some((b) => podOfBackend(lab, b) === pod));
  for (const pod of others) console.log(`  ${'(not a backend)'.padEnd(22)} ${pod.padEnd(12)} ${String(counts[pod]).padStart(6)}`);
}

/** Options of {@link runDemo}. */
export interface DemoOptions {
  nodes: number;
  requests: number;
  datagrams: number;
  keep?: boolean;
  stateDir?: string;
}

/** The demo, start to end; the lab is taken down even when a step fails. */
export async function runDemo(opts: DemoOptions): Promise<void> {
  const stateDir = opts.stateDir ?? '/run/xlb-lab';
  console.log(`xlb demo: bringing up a lab with ${opts.nodes} nodes...`);
  const lab = await labUp({ nodes: opts.nodes, podsPerNode: 3, stateDir, agents: true });
  // Interrupted (Ctrl-C, SIGTERM) or its output closed (`xlb demo | head`): still take the lab down.
  let downing = false;
  const interrupted = (signal: string) => {
    if (downing) return;
    downing = true;
    try {
      process.stderr.write(`\nxlb demo: ${signal}, taking the lab down\n`);
    } catch {
      // stderr may be the closed pipe too
    }
    labDown(stateDir).finally(() => process.exit(130));
  };
  process.stderr.on('error', () => undefined);
  process.once('SIGINT', () => interrupted('SIGINT'));
  process.once('SIGTERM', () => interrupted('SIGTERM'));
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' && !opts.keep) interrupted('output closed');
  });
  try {
    console.log(`lab up: client ${lab.client}, router ${lab.router}, nodes ${lab.nodes.map((n) => `${n.name} ${n.ip}`).join(', ')}`);
    if (lab.routerBirdSocket) {
      console.log(`\nthe router (BIRD, birdc -s ${lab.routerBirdSocket}) learned each VIP by BGP from the nodes:`);
      for (const r of await labRoutes(lab)) {
        console.log(`  ${`${r.vip}/32`.padEnd(18)} from ${r.from.join(', ').padEnd(14)} kernel route: ${r.kernelNextHops.length > 1 ? 'ECMP ' : ''}via ${r.kernelNextHops.join(', ')}`);
      }
    }
    for (const svc of lab.services) {
      const shares = await sharesOf(lab.nodes[0].api, svc.namespace, svc.name, svc.protocol);
      if (svc.protocol === 'TCP') {
        const [r] = await clientTraffic(lab, ['http', '--url', `http://${svc.vip}:${svc.port}/`, '--count', String(opts.requests)]);
        printDistribution(
          `${svc.namespace}/${svc.name} ${svc.vip}:${svc.port}/TCP: ${opts.requests} HTTP requests, a new connection each (${r.errors} errors, ${(r.seconds as number).toFixed(1)} s)`,
          lab,
          r.byBackend as Record<string, number>,
          shares,
          opts.requests,
        );
      } else {
        const [r] = await clientTraffic(lab, ['udp', '--to', `${svc.vip}:${svc.port}`, '--count', String(opts.datagrams)]);
        printDistribution(
          `${svc.namespace}/${svc.name} ${svc.vip}:${svc.port}/UDP: ${opts.datagrams} datagrams, a new source port each (${r.errors} lost)`,
          lab,
          r.byBackend as Record<string, number>,
          shares,
          opts.datagrams,
        );
      }
    }
    await stickiness(lab, opts.requests);
    await eastWest(lab, opts.requests);
  } finally {
    if (opts.keep) console.log(`\nlab left up (state ${stateDir}); take it down with: xlb lab down --state-dir ${stateDir}`);
    else {
      await labDown(stateDir);
      console.log('\nlab down');
    }
  }
}

/** Keep-alive connections keep their backends while the backend set changes. */
async function stickiness(lab: LabStatus, requests: number): Promise<void> {
  const web = lab.services.find((s) => s.name === 'web')!;
  const url = `http://${web.vip}:${web.port}/`;
  const traffic = keepaliveTraffic(lab, url, 24);
  const lines = traffic.rounds;
  try {
    await waitFor(() => lines.length >= 1, 15000, 'keep-alive connections to open');
    const before = lines[0];
    const used = new Set(before.pods);
    const backendsBefore = web.backends;
    // Remove a backend that carries some of the connections; add a lab pod that is not a backend yet.
    const removed = backendsBefore.find((b) => used.has(podOfBackend(lab, b)))!;
    const spare = lab.pods.find((p) => !backendsBefore.some((b) => b.startsWith(`${p.ip}:`)));
    if (!spare) throw new Error('demo: the lab has no spare pod to add as a backend');
    const added = `${spare.ip}:${removed.split(':')[1]}`;
    console.log(`\nkeep-alive: 24 connections open to ${url}; now removing ${removed} (${podOfBackend(lab, removed)}) and adding ${added} (${spare.name}) in ${lab.manifests}`);
    const t0 = performance.now();
    editEndpoints(lab.manifests, 'default', 'web', { remove: [removed.split(':')[0]], add: [{ ip: spare.ip, nodeName: spare.node, pod: spare.name }] });
    await waitFor(
      async () => {
        for (const n of lab.nodes) {
          const s = await sharesOf(n.api, 'default', 'web');
          if (!s.has(added) || s.has(removed)) return false;
        }
        return true;
      },
      5000,
      'agents to program the change',
    );
    console.log(`  agents programmed the change in ${(performance.now() - t0).toFixed(0)} ms (file write to API showing it)`);
    traffic.again();
    await waitFor(() => lines.length >= 2, 15000, 'second round on the same connections');
    const after = lines[1];
    let kept = 0;
    let movedFromRemoved = 0;
    let broken = 0;
    for (let i = 0; i < before.pods.length; i++) {
      const wasRemoved = before.pods[i] === podOfBackend(lab, removed);
      const same = after.pods[i] === before.pods[i] && after.localPorts[i] === before.localPorts[i];
      if (!wasRemoved && same) kept++;
      else if (wasRemoved) movedFromRemoved++;
      else broken++;
    }
    const onRemoved = before.pods.filter((p) => p === podOfBackend(lab, removed)).length;
    console.log(`  ${kept} of ${before.pods.length - onRemoved} connections on surviving backends kept their backend (same connection, same pod); ${broken} did not`);
    console.log(`  ${movedFromRemoved} connections were on the removed backend: Maglev re-picks their flows, so those TCP connections break`);
    const shares = await sharesOf(lab.nodes[0].api, 'default', 'web');
    const [r] = await clientTraffic(lab, ['http', '--url', url, '--count', String(requests)]);
    printDistribution(`new connections after the change (${requests} requests, ${r.errors} errors)`, lab, r.byBackend as Record<string, number>, shares, requests);
  } finally {
    traffic.stop();
  }
}

/**
 * Inside the cluster: pod n1p1 resolves `web` through the cluster DNS
 * service (its ClusterIP, served by the socket hooks, backed by a DNS
 * server on each node), then makes `requests` calls to http://web/ by
 * name, each a new connection that the socket hooks send straight to a
 * backend.
 */
async function eastWest(lab: LabStatus, requests: number): Promise<void> {
  const pod = lab.pods.find((p) => p.name === 'n1p1') ?? lab.pods[0];
  console.log(`\ninside the cluster: pod ${pod.name} (${pod.ip}), whose resolv.conf names the cluster DNS service`);
  const resolved = (await labPodExec(lab.stateDir, pod.name, ['getent', 'hosts', 'web'])).trim().split(/\s+/);
  console.log(`  getent hosts web -> ${resolved[0]} (${resolved[1]}), answered through the DNS service's ClusterIP`);
  const servers: Record<string, number> = {};
  for (let i = 0; i < 20; i++) {
    const who = (await labPodExec(lab.stateDir, pod.name, ['dig', '+short', '+time=2', '+tries=1', 'TXT', 'whoami.lab'])).trim().replaceAll('"', '');
    servers[who] = (servers[who] ?? 0) + 1;
  }
  console.log(`  20 DNS queries, one socket each, answered by: ${Object.entries(servers).sort().map(([s, n]) => `${s} ${n}`).join(', ')}`);
  const shares = await sharesOf(lab.nodes[0].api, 'default', 'web');
  const [r] = await clientTraffic(lab, ['http', '--url', 'http://web/', '--count', String(requests), '--concurrency', '4'], pod.name);
  printDistribution(
    `${pod.name} -> http://web/ by name: ${requests} requests, a new connection each (${r.errors} errors, ${(r.seconds as number).toFixed(1)} s); connect() goes straight to a backend`,
    lab,
    r.byBackend as Record<string, number>,
    shares,
    requests,
  );
}

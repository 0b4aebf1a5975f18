/**
 * Restarting a node's agent under traffic, in the lab: what a restart does to
 * established connections and to new ones.
 *
 * One run ({@link runRestart}) does this:
 *
 *   1. From the lab's client, K keep-alive HTTP connections (default 20) to
 *      the web VIP 192.0.2.10:80, each a raw socket with its requests written
 *      by hand, so that nothing can reconnect behind a break. The router's
 *      ECMP spreads them over the nodes, and Maglev over the pods. Each
 *      answer names the pod and the client address the pod saw: the
 *      client's own for a backend on the node the connection entered
 *      (`local`), the entry node's address for a backend on another node
 *      (`snat`). That gives the node each connection enters through. Each
 *      held connection then asks again every 100 ms (`requestEveryMs`; 0
 *      leaves them idle) until step 5, and every answer must come from the
 *      same pod, seeing the same client address.
 *   2. A new connection every 20 ms (one HTTP request each, `Connection:
 *      close`), timed from connect() to the end of the answer; open loop, so
 *      a stall does not hold the next one back.
 *   3. After `before` new connections, the action on the node's agent:
 *      - `sigterm`: SIGTERM, then the same command again;
 *      - `sigkill`: kill -9, then the same command again;
 *      - `upgrade`: SIGTERM, then the agent with `datapath.objectDir` moved
 *        to the other build: xdp/build/upgrade-probe (`make -C xdp
 *        upgrade-probe`: xlb_xdp.bpf.c with -DXLB_UPGRADE_PROBE, other
 *        instructions, same behaviour and maps) when it runs the default
 *        build, back to the default build when it runs the probe. Either way
 *        the agent starts on a program whose instructions changed; the
 *        result gives the XDP program's tag before and after;
 *      - `none`: nothing (the control: the harness's own figures).
 *   4. It waits until the agent is ready (/readyz) and, with BGP, until the
 *      router holds every VIP from every node again; then `after` more new
 *      connections.
 *   5. One more request on every held connection. A held connection is kept
 *      when every request on it, this one included, was answered on the same
 *      socket by the same pod, which saw the same client address (for a
 *      SNATed connection: the same node and SNAT port); its first error
 *      (a reset, a close, no answer within `timeoutMs`) or another answer
 *      breaks it.
 *
 * Every run opens its own connections and closes them at the end.
 *
 * The gap: new connections ordered by start; each run of consecutive ones
 * that failed or took longer than `slowMs` (100 ms) counts from the start of
 * its first to the start of the next good one (or the last one's end). At
 * one start every 20 ms, that is the time during which a client opening a
 * connection would have waited or failed, to within 20 ms.
 *
 * The issue's target for every action but `none`: K of K kept (local and
 * SNAT), no new connection failed, and the gap printed.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { labKillAgent, labStartAgent, labStatus, labStopAgent, waitRoutesConverged, type LabStatus } from './index.js';
import { nsExec } from './sh.js';
import { waitFor } from '../util/wait.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TRAFFIC = path.join(repo, 'src/demo/traffic.ts');

/** The objects `make -C xdp upgrade-probe` builds (an agent's `datapath.objectDir`). */
export const UPGRADE_PROBE_DIR = path.join(repo, 'xdp/build/upgrade-probe');

/** What is done to the agent: see the module's comment. */
export type RestartAction = 'none' | 'sigterm' | 'sigkill' | 'upgrade';

/** Every action, in the order the test and the benchmark run them. */
export const RESTART_ACTIONS: readonly RestartAction[] = ['none', 'sigterm', 'sigkill', 'upgrade'];

/** Options of {@link runRestart}; every one has the issue's default. */
export interface RestartOptions {
  /** The node whose agent is restarted. Default `node1`. */
  node?: string;
  /** Held keep-alive connections. Default 20. */
  connections?: number;
  /** Where they go. Default the lab's `default/web` LoadBalancer VIP (`http://192.0.2.10:80/`). */
  url?: string;
  /** One new connection every this many ms. Default 20. */
  intervalMs?: number;
  /** A new connection slower than this counts into the gap (ms). Default 100. */
  slowMs?: number;
  /** A connect, a request or the last check on a held connection fails after this long (ms). Default 5000. */
  timeoutMs?: number;
  /** New connections before the action. Default 50 (1 s at 20 ms). */
  before?: number;
  /** New connections after the agent is ready and the routes are back. Default 150 (3 s). */
  after?: number;
  /**
   * Each held connection sends a request every this many ms throughout the
   * run, as a client's keep-alive connections do; 0: they stay idle until the
   * last request. Default 100. (Idle connections survive today's restarts:
   * the datapath's choices, the Maglev pick and the first SNAT port tried,
   * are functions of the flow, so a flow placed afresh afterwards lands
   * where it was. What breaks them is a packet during the restart.)
   */
  requestEveryMs?: number;
}

/** How a held connection entered the cluster, from the client address its pod saw. */
export type RestartPath = 'local' | 'snat' | 'unknown';

/** One held connection, before and after. */
export interface RestartConnection {
  /** The client's local port (the connection's identity). */
  localPort: number;
  /** The pod that answered the first request. */
  pod: string;
  /** The client address (IP:port) that pod saw. */
  seen: string;
  /** `local`: a backend on the entry node, the pod saw the client; `snat`: on another node, the pod saw the entry node's SNAT address. */
  path: RestartPath;
  /** The node the router sent the connection to (from pod and path); '' when unknown. */
  entryNode: string;
  /** Every request answered on the same socket by the same pod, seeing the same address, up to and after the restart. */
  kept: boolean;
  /**
   * Why not: an errno of the socket (ECONNRESET, EPIPE, ETIMEDOUT), `timeout`
   * (no answer within timeoutMs), `EOF` (the peer closed), `bad-response`,
   * `other-pod` (another pod answered), `other-address` (the pod saw another
   * client address: another connection). Absent when kept.
   */
  code?: string;
  /** When it broke, ms after the action started (negative: before it), and whether a request was under way or it was idle. */
  failedAtMs?: number;
  failedDuring?: 'request' | 'idle';
  /** Requests answered on it after the first one, and the slowest of them (ms). */
  requests: number;
  longestMs: number;
}

/** The XDP program on the node's interface: kernel id and tag (a hash of its instructions). */
export interface XdpProgram {
  id: number;
  tag: string;
}

/** The result of one {@link runRestart}. */
export interface RestartResult {
  action: RestartAction;
  node: string;
  /** Held connections (K), and how often each asked (0: idle until the last request). */
  total: number;
  requestEveryMs: number;
  kept: number;
  /** The held connections that were not kept, with why. */
  broken: RestartConnection[];
  /** Broken connections by code. */
  brokenByCode: Record<string, number>;
  /** Every held connection. */
  connections: RestartConnection[];
  /** New connections opened during the run, and how many failed (with their codes). */
  newTotal: number;
  newFailed: number;
  newFailedByCode: Record<string, number>;
  /** New connections that succeeded but took longer than slowMs. */
  newSlow: number;
  /** The slowMs the run used (ms). */
  slowMs: number;
  /** The slowest answer on a held connection that was kept (ms): a kept connection may still have stalled (TCP retransmissions). */
  keptSlowestMs: number;
  /** See the module's comment (ms). */
  gapMs: number;
  /** The longest new connection, connect to answer or to failure (ms). */
  longestNewMs: number;
  /** Milestones, ms after the action started: the old agent gone, the new one ready, BGP routes back. */
  timeline: { agentGoneMs?: number; readyMs?: number; routesMs?: number };
  /** The node's XDP program before the action and after (undefined: none attached). */
  xdp: { before?: XdpProgram; after?: XdpProgram };
  /** With `upgrade`: the objectDir the agent ran on and the one it was started on (null: the default build). */
  objectDir?: { from: string | null; to: string | null };
}

/**
 * Build the upgrade's objects: `make -C xdp upgrade-probe` (incremental).
 * @throws Error with make's output when the build fails
 */
export function buildUpgradeProbe(): void {
  try {
    execFileSync('make', ['-s', '-C', path.join(repo, 'xdp'), 'upgrade-probe'], { stdio: 'pipe' });
  } catch (e) {
    const err = e as { stderr?: Buffer; stdout?: Buffer; message: string };
    throw new Error(`make -C xdp upgrade-probe: ${String(err.stderr ?? '') || String(err.stdout ?? '') || err.message}`);
  }
}

/** One new connection of the generator: start (epoch ms), duration (ms), '' or its error code. */
export interface NewConnection {
  start: number;
  ms: number;
  code: string;
}

/**
 * The gap (ms) of a run's new connections: consecutive runs (by start) of
 * connections that failed (`code` not '') or took longer than `slowMs`, each
 * from the start of its first to the start of the next good connection, or
 * to the end of its last when no good one follows.
 */
export function gapOf(conns: readonly NewConnection[], slowMs: number): number {
  const sorted = [...conns].sort((a, b) => a.start - b.start);
  let gap = 0;
  let runStart: number | undefined;
  let runEnd = 0;
  for (const c of sorted) {
    const bad = c.code !== '' || c.ms > slowMs;
    if (bad) {
      runStart ??= c.start;
      runEnd = Math.max(runEnd, c.start + c.ms);
    } else if (runStart !== undefined) {
      gap += c.start - runStart;
      runStart = undefined;
      runEnd = 0;
    }
  }
  if (runStart !== undefined) gap += runEnd - runStart;
  return gap;
}

/** Count `xs` by value. */
function countBy(xs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

/** The XDP program on `dev` in `netns` (ip -d -j link), with its tag from bpftool; undefined when none. */
export async function xdpProgramOf(netns: string, dev = 'eth0'): Promise<XdpProgram | undefined> {
  const link = JSON.parse(await nsExec(netns, ['ip', '-d', '-j', 'link', 'show', 'dev', dev])) as Array<{ xdp?: { prog?: { id: number }; attached?: Array<{ prog?: { id: number } }> } }>;
  const xdp = link[0]?.xdp;
  const id = xdp?.prog?.id ?? xdp?.attached?.find((a) => a.prog)?.prog?.id;
  if (!id) return undefined;
  const prog = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(id)], { encoding: 'utf8' })) as { tag: string };
  return { id, tag: prog.tag };
}

/** The traffic generator's process in the client namespace, read line by line. */
class Traffic {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly events: Array<Record<string, any>> = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  private buf = '';
  private stderr = '';
  private exited: number | null | undefined;

  constructor(netns: string, args: string[]) {
    // nsenter execs the command itself, so the child's pid is the generator's.
    this.child = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', process.execPath, '--import', 'tsx', TRAFFIC, 'restart', ...args], { cwd: repo, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (c) => {
      this.buf += c;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (line.trim()) this.events.push(JSON.parse(line));
      }
    });
    this.child.stderr.on('data', (c) => (this.stderr += c));
    this.child.on('exit', (code) => (this.exited = code));
    this.child.stdin.on('error', () => undefined);
  }

  /** Wait for the next event named `name`; fails at once, with its stderr, when the generator exits first. */
  async next(name: string, timeoutMs: number): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
    let found: Record<string, any> | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
    await waitFor(
      () => {
        const i = this.events.findIndex((e) => e.event === name);
        if (i >= 0) [found] = this.events.splice(i, 1);
        if (!found && this.exited !== undefined) throw new Error(`restart: the traffic generator exited (${this.exited}) before "${name}": ${this.stderr.trim().slice(-2000)}`);
        return !!found;
      },
      timeoutMs,
      `the traffic generator's "${name}"`,
      10,
    ).catch((e: Error) => {
      throw new Error(`${e.message}${this.stderr.trim() ? `\ntraffic stderr: ${this.stderr.trim().slice(-2000)}` : ''}`);
    });
    return found!;
  }

  send(cmd: Record<string, unknown>): void {
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
  }

  /** End the generator (stdin closed, then SIGKILL if it lingers). */
  async close(): Promise<void> {
    if (this.exited !== undefined) return;
    this.child.stdin.end();
    await waitFor(() => this.exited !== undefined, 3000, 'the traffic generator to exit').catch(() => {
      if (this.child.pid) {
        try {
          process.kill(this.child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    });
  }
}

/** The node's agent configuration's datapath.objectDir (null: the default build). */
function objectDirOf(stateDir: string, node: string): string | null {
  const cfg = parseAllDocuments(fs.readFileSync(path.join(stateDir, `${node}.yaml`), 'utf8'))[0].toJS() as { datapath?: { objectDir?: string | null } };
  return cfg.datapath?.objectDir ?? null;
}

/** Whether `pid` is alive. */
function alive(pid: number | null): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Restart `node`'s agent in `lab` by `action` under traffic, and measure
 * what happened to K held connections and to new connections (see the
 * module's comment). The lab must have its agents running, and in BGP mode
 * its routes converged. On return, and on any error, the node has a running
 * agent again and the generator is gone.
 * @throws Error when the harness itself cannot measure: a held connection
 *   that could not be opened, no held connection entering through `node`
 *   (nothing would be tested), the generator failing, an agent that does
 *   not come back. A broken connection or a failed new connection is a
 *   result, never an error.
 */
export async function runRestart(lab: LabStatus, action: RestartAction, opts: RestartOptions = {}): Promise<RestartResult> {
  const node = opts.node ?? 'node1';
  const k = opts.connections ?? 20;
  const intervalMs = opts.intervalMs ?? 20;
  const slowMs = opts.slowMs ?? 100;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const before = opts.before ?? 50;
  const after = opts.after ?? 150;
  const requestEveryMs = opts.requestEveryMs ?? 100;
  const web = lab.services.find((s) => s.namespace === 'default' && s.name === 'web' && s.protocol === 'TCP');
  const url = opts.url ?? (web ? `http://${web.vip}:${web.port}/` : undefined);
  if (!url) throw new Error('restart: the lab has no default/web service; pass opts.url');
  const n = lab.nodes.find((x) => x.name === node);
  if (!n) throw new Error(`restart: the lab has no node ${node}`);
  if (action === 'upgrade' && !fs.existsSync(path.join(UPGRADE_PROBE_DIR, 'xlb_xdp.bpf.o'))) {
    throw new Error(`restart: ${UPGRADE_PROBE_DIR} has no objects: run make -C xdp upgrade-probe (buildUpgradeProbe)`);
  }
  const nodeOf = new Map(lab.nodes.map((x) => [x.ip, x.name]));
  const podNode = new Map(lab.pods.map((p) => [p.name, p.node]));

  const traffic = new Traffic(lab.client, ['--url', url, '--connections', String(k), '--interval-ms', String(intervalMs), '--timeout-ms', String(timeoutMs), '--request-every-ms', String(requestEveryMs)]);
  let stopped = false;
  try {
    // 1. Held connections; the node each enters through.
    const open = await traffic.next('open', 30000 + k * timeoutMs);
    const connections: RestartConnection[] = (open.connections as Array<{ localPort: number; pod: string; seen: string }>).map((c) => {
      const ip = c.seen.split(':')[0];
      const p: RestartPath = ip === lab.clientIp ? 'local' : nodeOf.has(ip) ? 'snat' : 'unknown';
      const entryNode = p === 'local' ? (podNode.get(c.pod) ?? '') : p === 'snat' ? nodeOf.get(ip)! : '';
      return { localPort: c.localPort, pod: c.pod, seen: c.seen, path: p, entryNode, kept: false, requests: 0, longestMs: 0 };
    });
    if (!connections.some((c) => c.entryNode === node)) {
      throw new Error(`restart: none of the ${k} connections entered through ${node} (${connections.map((c) => `${c.pod}/${c.path}`).join(' ')}): the run would test nothing`);
    }

    // 2. New connections run from here on; some before the action.
    traffic.send({ cmd: 'wait', count: before });
    await traffic.next('waited', 60000 + before * timeoutMs);

    // 3. The action.
    const xdpBefore = await xdpProgramOf(n.netns);
    const t0 = performance.timeOrigin + performance.now();
    const since = () => performance.timeOrigin + performance.now() - t0;
    const timeline: RestartResult['timeline'] = {};
    let objectDir: RestartResult['objectDir'];
    if (action !== 'none') {
      if (action === 'sigkill') await labKillAgent(lab.stateDir, node);
      else await labStopAgent(lab.stateDir, node);
      stopped = true;
      timeline.agentGoneMs = since();
      if (action === 'upgrade') {
        const from = objectDirOf(lab.stateDir, node);
        const to = from === UPGRADE_PROBE_DIR ? null : UPGRADE_PROBE_DIR;
        objectDir = { from, to };
        await labStartAgent(lab.stateDir, node, (cfg) => ({ ...cfg, datapath: { ...(cfg.datapath ?? {}), objectDir: to } }));
      } else await labStartAgent(lab.stateDir, node);
      stopped = false;
      timeline.readyMs = since();
    }
    // 4. Routes back (BGP), then more traffic.
    if (lab.announce === 'bgp') {
      await waitRoutesConverged(lab, 30000);
      if (action !== 'none') timeline.routesMs = since();
    }
    traffic.send({ cmd: 'wait', count: after });
    await traffic.next('waited', 60000 + after * timeoutMs);
    const xdpAfter = await xdpProgramOf(n.netns);

    // 5. The last request on each held connection.
    traffic.send({ cmd: 'check' });
    const res = await traffic.next('result', 60000 + 2 * timeoutMs);
    const answers = res.connections as Array<{ localPort: number; requests: number; longestMs: number; failure?: { code: string; at: number; during: 'request' | 'idle' } }>;
    answers.forEach((a, i) => {
      const c = connections[i];
      if (a.localPort !== c.localPort) throw new Error(`restart: the generator's connection ${i} is port ${a.localPort}, was ${c.localPort}`);
      c.requests = a.requests;
      c.longestMs = a.longestMs;
      if (a.failure) {
        c.code = a.failure.code;
        c.failedAtMs = a.failure.at - t0;
        c.failedDuring = a.failure.during;
      } else c.kept = true;
    });
    const nc = res.newConnections as { starts: number[]; durations: number[]; codes: string[] };
    const news: NewConnection[] = nc.starts.map((start, i) => ({ start, ms: nc.durations[i], code: nc.codes[i] }));
    const failed = news.filter((c) => c.code !== '');
    const broken = connections.filter((c) => !c.kept);
    return {
      action,
      node,
      total: connections.length,
      requestEveryMs,
      kept: connections.length - broken.length,
      broken,
      brokenByCode: countBy(broken.map((c) => c.code!)),
      connections,
      newTotal: news.length,
      newFailed: failed.length,
      newFailedByCode: countBy(failed.map((c) => c.code)),
      newSlow: news.filter((c) => c.code === '' && c.ms > slowMs).length,
      slowMs,
      keptSlowestMs: connections.filter((c) => c.kept).reduce((m, c) => Math.max(m, c.longestMs), 0),
      gapMs: gapOf(news, slowMs),
      longestNewMs: news.reduce((m, c) => Math.max(m, c.ms), 0),
      timeline,
      xdp: { before: xdpBefore, after: xdpAfter },
      ...(objectDir ? { objectDir } : {}),
    };
  } finally {
    await traffic.close();
    // An action that failed half-way leaves the node without an agent: start it again, so the lab stays usable.
    const now = (await labStatus(lab.stateDir)).nodes.find((x) => x.name === node);
    if (stopped || !alive(now?.agentPid ?? null)) {
      await labStartAgent(lab.stateDir, node).catch(() => undefined);
    }
  }
}

/** One run as one line of text: kept, broken with codes, path and entry node, new connections, gap, milestones. */
export function formatRestart(r: RestartResult): string {
  const codes = Object.entries(r.brokenByCode).map(([c, k]) => `${c} ${k}`).join(', ');
  const at = r.broken.map((c) => c.failedAtMs ?? NaN).filter(Number.isFinite);
  const when = at.length ? `, ${Math.round(Math.min(...at))} to ${Math.round(Math.max(...at))} ms after the stop` : '';
  const how = r.broken.length
    ? ` (broken: ${codes}; ${r.broken.filter((c) => c.path === 'local').length} local, ${r.broken.filter((c) => c.path === 'snat').length} SNAT; entered through ${[...new Set(r.broken.map((c) => c.entryNode || '?'))].sort().join(', ')}${when})`
    : '';
  const failed = r.newFailed ? ` (${Object.entries(r.newFailedByCode).map(([c, k]) => `${c} ${k}`).join(', ')})` : '';
  const t = r.timeline;
  const times = t.readyMs !== undefined ? `; agent ready after ${Math.round(t.readyMs)} ms${t.routesMs !== undefined ? `, routes back after ${Math.round(t.routesMs)} ms` : ''}` : '';
  const prog = r.action === 'upgrade' ? `; XDP program tag ${r.xdp.before?.tag ?? '-'} -> ${r.xdp.after?.tag ?? '-'}` : '';
  const through = r.connections.filter((c) => c.entryNode === r.node);
  return `${r.action} on ${r.node}: ${r.kept}/${r.total} kept, ${through.filter((c) => c.kept).length}/${through.length} of those through ${r.node}${how} (asking every ${r.requestEveryMs || '-'} ms; slowest answer on a kept one ${Math.round(r.keptSlowestMs)} ms); new connections ${r.newTotal}, ${r.newFailed} failed${failed}, ${r.newSlow} slower than ${r.slowMs} ms; gap ${Math.round(r.gapMs)} ms, longest ${Math.round(r.longestNewMs)} ms${times}${prog}`;
}

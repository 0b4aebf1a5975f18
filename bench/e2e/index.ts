/**
 * bench/e2e: HTTP and TCP connection setup through the lab (src/lab: a
 * client, an ECMP router with static routes, two nodes with two pods each),
 * from the client to a VIP, through xlb and through kube-proxy's iptables
 * rules in the same lab, with 10, 1,000 and 10,000 services defined (quick:
 * 10 and 1,000), the measured one last in every chain.
 *
 * Per system and size:
 *   - wrk, new connection per request (`Connection: close`) and keep-alive:
 *     requests/s, p50 and p99 latency, one figure run per wrk run;
 *   - connection setup: blocking TCP connects one after another from the
 *     client (bench/e2e/connect-probe.c, built here with clang), each timed
 *     in ns around connect(): the SYN's walk through the load balancer,
 *     where iptables walks KUBE-SERVICES. The connects are cut into batches;
 *     one run of the figure is the median of one batch (the p99 of each
 *     batch is its own figure), so that a run is never a single noisy
 *     sample and a failed connect is never a sample at all.
 * xlb: the lab's agents program the services from the manifests file.
 * iptables: the agents are stopped (their programs detached), and each node
 * gets kube-proxy's nat table for the same services (bench/convergence/
 * kubeproxy.ts) with iptables-legacy-restore (and, in full mode, also
 * iptables-nft-restore).
 *
 * Ratios: requests/s xlb over the baseline (above 1: xlb serves more);
 * connection setup the baseline over xlb (above 1: xlb sets up faster); and
 * growth, per system, connection setup at the most services over the fewest
 * (issue 6: xlb's must not grow with the number of services).
 *
 *   npm run bench -- --only e2e [--quick]     (root)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { labUp, labDown, labExec, labStopAgent, type LabStatus, type LabUpOptions } from '../../src/lab/index.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';
import { benchServices, manifestsJson, type BenchService } from '../convergence/manifests.js';
import * as kp from '../convergence/kubeproxy.js';
import { BenchResult } from '../lib/results.js';
import { summarize, quantile } from '../lib/stats.js';
import { printTable, sig, pct, times } from '../lib/table.js';
import { groupedBars } from '../lib/chart.js';
import { requireRoot, requireTool } from '../lib/tools.js';
import { repoRoot } from '../lib/paths.js';

interface Plan {
  sizes: number[];
  /** wrk duration per run, s (wrk takes whole seconds). */
  wrkSeconds: number;
  /** wrk runs per mode (each one run of the figure). */
  wrkRuns: number;
  /** Batches of connects (each one run of the connection-setup figure). */
  connectRuns: number;
  /** Connects per batch. */
  connectsPerRun: number;
  iptables: string[];
}
const QUICK: Plan = { sizes: [10, 1000], wrkSeconds: 1, wrkRuns: 5, connectRuns: 9, connectsPerRun: 200, iptables: ['iptables-legacy'] };
const FULL: Plan = { sizes: [10, 1000, 10000], wrkSeconds: 5, wrkRuns: 5, connectRuns: 15, connectsPerRun: 400, iptables: ['iptables-legacy', 'iptables-nft'] };
/** wrk connections and threads (the machine has 2 cores; the pods are single-threaded Node servers). */
const WRK = { connections: 16, threads: 1 };
/** Connects before the measured ones (neighbour entries, the pods' accept queues). */
const CONNECT_WARMUP = 50;
/** Issue 6: xlb's connection setup must not grow with the number of services; held, like the datapath's scale figures, to 10%. */
const GROWTH_TARGET = 1.1;

/** The lab's services: N on 200 VIPs of 192.0.2.0/24 (the range the router sends to the nodes) × ports, endpoints the lab's pods. */
function labServices(n: number, lab: LabStatus): BenchService[] {
  const pods = lab.pods.filter((p) => /p[12]$/.test(p.name));
  return benchServices({
    services: n,
    endpointsPerService: pods.length,
    nodes: pods.map((p) => p.node),
    frontend: (i) => ({ vip: `192.0.2.${20 + (i % 200)}`, port: 1000 + Math.floor(i / 200) }),
    endpoint: (_i, j) => ({ ip: pods[j].ip, port: 8080 }),
  });
}

/** wrk's `--latency` output: requests/s, p50 and p99 in ms, and the errors wrk counted. */
export function parseWrk(out: string): { rps: number; p50: number; p99: number; errors: number } {
  const ms = (v: string, unit: string) => Number(v) * ({ us: 0.001, ms: 1, s: 1000, m: 60000 } as Record<string, number>)[unit];
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p50 = /\s50%\s+([\d.]+)(us|ms|s|m)\b/.exec(out);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s|m)\b/.exec(out);
  if (!rps || !p50 || !p99) throw new Error(`bench/e2e: cannot read wrk's output:\n${out}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const errors = (sock ? Number(sock[1]) + Number(sock[3]) + Number(sock[4]) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  return { rps: Number(rps[1]), p50: ms(p50[1], p50[2]), p99: ms(p99[1], p99[2]), errors };
}

/**
 * The probe's output line, checked: setup times in ns (integers > 0, below
 * the 3 s timeout), the failures it counted.
 * @throws Error naming the system and size when the line is not the probe's
 */
export function parseProbe(line: string, what: string): { ns: number[]; failed: number; error: string } {
  let v: { ns?: unknown; failed?: unknown; error?: unknown };
  try {
    v = JSON.parse(line) as typeof v;
  } catch {
    throw new Error(`bench/e2e: ${what}: connect-probe printed ${JSON.stringify(line.slice(0, 200))}, not JSON`);
  }
  if (!Array.isArray(v.ns) || typeof v.failed !== 'number' || typeof v.error !== 'string') throw new Error(`bench/e2e: ${what}: connect-probe's JSON lacks ns, failed or error`);
  for (const x of v.ns) if (!Number.isInteger(x) || (x as number) <= 0 || (x as number) > 3e9) throw new Error(`bench/e2e: ${what}: connect-probe sample ${x} ns is not a setup time`);
  return { ns: v.ns as number[], failed: v.failed, error: v.error };
}

/**
 * Cut `samples` (in measured order) into `runs` consecutive batches of
 * `per`, and give each batch's median and nearest-rank p99.
 * @throws Error when there are fewer than runs × per samples
 */
export function batchStats(samples: readonly number[], runs: number, per: number): { medians: number[]; p99s: number[] } {
  if (samples.length < runs * per) throw new Error(`batchStats: ${samples.length} samples, need ${runs} × ${per}`);
  const medians: number[] = [];
  const p99s: number[] = [];
  for (let r = 0; r < runs; r++) {
    const b = samples.slice(r * per, (r + 1) * per);
    medians.push(summarize(b).median);
    p99s.push(quantile([...b].sort((x, y) => x - y), 0.99));
  }
  return { medians, p99s };
}

/** CPU time (user + system) of `pid` in clock ticks; 0 when it has exited. */
function cpuTicks(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15 of proc(5))
  } catch {
    return 0;
  }
}

/**
 * Wait until the lab's processes (agents, pods) are idle: together under
 * 5% of one CPU over a 300-ms window, at most `timeoutMs`. An agent that has
 * just programmed 1,000 services keeps working for a while (garbage
 * collection, next hops of remote backends); measuring then would charge its
 * work to the datapath. @returns whether they became idle
 */
async function waitIdle(pids: number[], timeoutMs: number): Promise<boolean> {
  const hz = 100; // USER_HZ on Linux
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const t0 = pids.reduce((s, p) => s + cpuTicks(p), 0);
    await new Promise((r) => setTimeout(r, 300));
    const used = (pids.reduce((s, p) => s + cpuTicks(p), 0) - t0) / hz;
    if (used < 0.3 * 0.05) return true;
  }
  return false;
}

/** Build bench/e2e/connect-probe.c into `dir`; returns the binary's path. */
function buildProbe(dir: string): string {
  const out = path.join(dir, 'connect-probe');
  execFileSync('clang', ['-O2', '-Wall', '-Werror', '-o', out, path.join(repoRoot, 'bench/e2e/connect-probe.c')], { stdio: ['ignore', 'inherit', 'inherit'] });
  return out;
}

/** Run the end-to-end benchmark and write bench/results/e2e.{json,svg}. */
export async function run(opts: { quick: boolean }): Promise<BenchResult> {
  requireRoot('bench/e2e');
  for (const [t, pkg] of [
    ['wrk', 'wrk'],
    ['iptables-legacy-restore', 'iptables'],
    ['iptables-nft-restore', 'iptables'],
    ['ethtool', 'ethtool'],
    ['curl', 'curl'],
    ['clang', 'clang'],
    ['nsenter', 'util-linux'],
  ])
    requireTool('bench/e2e', t, pkg);
  const plan = opts.quick ? QUICK : FULL;
  const systems = ['xlb', ...plan.iptables];
  const fewest = plan.sizes[0];
  const most = plan.sizes[plan.sizes.length - 1];
  const res = new BenchResult('e2e', 'End to end in the lab: wrk and connection setup through xlb and through kube-proxy iptables rules', opts.quick);
  res.method.push(
    `Lab: client, ECMP router (static routes), 2 nodes × 2 pods (Node HTTP servers). Services: N in ${plan.sizes.join(', ')} on 192.0.2.0/24 × ports, 4 endpoints each (the lab's pods), the measured service last in the manifests and in KUBE-SERVICES.`,
    `wrk -t${WRK.threads} -c${WRK.connections} -d${plan.wrkSeconds}s --latency, ${plan.wrkRuns} runs per mode (one run each): new connection per request (Connection: close) and keep-alive.`,
    `Connection setup: ${plan.connectRuns} × ${plan.connectsPerRun} blocking TCP connects one after another from the client namespace (bench/e2e/connect-probe.c, clang -O2), CLOCK_MONOTONIC around connect(), after ${CONNECT_WARMUP} warm-up connects; one run = the median of one batch of ${plan.connectsPerRun} (the batch p99s are the connect-p99 figures). Failed connects are counted, never timed.`,
    `iptables: agents stopped, kube-proxy's nat table (bench/convergence/kubeproxy.ts) restored on both nodes with ${plan.iptables.join(' and ')}.`,
    `Ratios: requests/s xlb / baseline; connection setup baseline / xlb; growth = connection setup at ${most} services / at ${fewest}.`,
  );
  res.note('wrk, the router, both nodes and the pods share the 2 cores of this machine, which other engineers used for tests at the same time: requests/s is bounded by the pods and the machine, so a ratio near 1 means "the load balancer is not the bottleneck". Connection setup, measured in the kernel without wrk running, is the load balancer\'s share.');
  if (opts.quick) res.note(`Quick mode: ${plan.sizes.join(' and ')} services, wrk runs of ${plan.wrkSeconds} s, iptables-legacy only; a full run adds 10,000 services and iptables-nft.`);

  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-bench-e2e-'));
  const seedManifests = path.join(stateDir, 'seed.json');
  let lab: LabStatus | undefined;
  try {
    const probe = buildProbe(stateDir);
    // The lab's pods are known only once it is up: start it with no services, then write the real ones.
    fs.writeFileSync(seedManifests, manifestsJson([]));
    const up: LabUpOptions & { announce: 'static' } = { nodes: 2, podsPerNode: 2, agents: true, stateDir: path.join(stateDir, 'lab'), manifests: seedManifests, announce: 'static' };
    lab = await labUp(up);
    const measure = async (system: string, n: number, svc: BenchService) => {
      const what = `${system}, ${n} services`;
      const url = `http://${svc.vip}:${svc.port}/`;
      const body = await labExec(lab!.client, ['curl', '-s', '-m', '2', url]);
      if (!/^n\dp\d/.test(body)) throw new Error(`bench/e2e: ${what}: ${url} answered ${JSON.stringify(body.slice(0, 80))}, not a lab pod`);

      // Connection setup first, on an idle lab (no wrk connections being torn down, agents done programming).
      const pids = [...lab!.nodes.map((x) => x.agentPid), ...lab!.pods.map((x) => x.pid)].filter((x): x is number => !!x);
      if (!(await waitIdle(pids, 15_000))) res.note(`${what}: the lab's agents and pods were still busy after 15 s; measured anyway.`);
      const count = plan.connectRuns * plan.connectsPerRun;
      const out = await labExec(lab!.client, [probe, svc.vip, String(svc.port), String(count), String(CONNECT_WARMUP)], { timeoutMs: 120_000 });
      const p = parseProbe(out.trim().split('\n').pop() ?? '', what);
      if (p.failed) res.note(`${what}: ${p.failed} of ${count} connects failed (${p.error}); they are not timed.`);
      if (p.failed > count * 0.01) throw new Error(`bench/e2e: ${what}: ${p.failed} of ${count} connects failed (${p.error})`);
      // Fewer samples than batches × size only when some failed: the batches then use what succeeded.
      const per = Math.floor(p.ns.length / plan.connectRuns);
      const b = batchStats(p.ns, plan.connectRuns, per);
      const headline = n === most;
      res.add({
        id: `${system}.connect.services-${n}`,
        label: system === 'xlb' ? `xlb: TCP connection setup, ${n} services` : `${system}: TCP connection setup, ${n} services (ratio: ${system} / xlb)`,
        unit: 'ns',
        runs: b.medians,
        params: { system, metric: 'connect', services: n, connectsPerRun: per, failed: p.failed, headline },
        baseline: system === 'xlb' ? undefined : `xlb.connect.services-${n}`,
      });
      res.add({ id: `${system}.connect-p99.services-${n}`, label: `${system}: TCP connection setup p99 of each batch, ${n} services`, unit: 'ns', runs: b.p99s, params: { system, metric: 'connect-p99', services: n, connectsPerRun: per }, baseline: system === 'xlb' ? undefined : `xlb.connect-p99.services-${n}` });

      for (const mode of ['close', 'keepalive'] as const) {
        const rps: number[] = [];
        const p50: number[] = [];
        const p99: number[] = [];
        for (let r = 0; r < plan.wrkRuns; r++) {
          const args = ['wrk', `-t${WRK.threads}`, `-c${WRK.connections}`, `-d${plan.wrkSeconds}s`, '--latency', ...(mode === 'close' ? ['-H', 'Connection: close'] : []), url];
          const w = parseWrk(await labExec(lab!.client, args, { timeoutMs: (plan.wrkSeconds + 30) * 1000 }));
          if (w.errors > w.rps * plan.wrkSeconds * 0.001) throw new Error(`bench/e2e: ${what}, ${mode}: ${w.errors} wrk errors in ${plan.wrkSeconds} s`);
          rps.push(w.rps);
          p50.push(w.p50);
          p99.push(w.p99);
        }
        const modeText = mode === 'close' ? 'new connection each' : 'keep-alive';
        res.add({ id: `${system}.${mode}.rps.services-${n}`, label: `${system}: requests/s, ${modeText}, ${n} services`, unit: 'requests/s', runs: rps, params: { system, mode, metric: 'rps', services: n } });
        res.add({ id: `${system}.${mode}.p50.services-${n}`, label: `${system}: p50 latency, ${modeText}, ${n} services`, unit: 'ms', runs: p50, params: { system, mode, metric: 'p50', services: n } });
        res.add({ id: `${system}.${mode}.p99.services-${n}`, label: `${system}: p99 latency, ${modeText}, ${n} services`, unit: 'ms', runs: p99, params: { system, mode, metric: 'p99', services: n } });
      }
      const c = summarize(b.medians);
      console.log(
        `e2e: ${what}: connect ${sig(c.median / 1000)} µs ${pct(c.spread)} (batch p99 ${sig(summarize(b.p99s).median / 1000)} µs); close ${sig(res.get(`${system}.close.rps.services-${n}`).median)} req/s; keep-alive ${sig(res.get(`${system}.keepalive.rps.services-${n}`).median)} req/s`,
      );
    };

    // xlb: the agents follow the manifests file.
    for (const n of plan.sizes) {
      const services = labServices(n, lab);
      fs.writeFileSync(lab.manifests, manifestsJson(services));
      const last = services[n - 1];
      await waitFor(
        async () => {
          for (const node of lab!.nodes) {
            const v = (await apiGet(node.api, `/v1/services/${last.namespace}/${last.name}`, { allowError: true, timeoutMs: 5000 }).catch(() => undefined)) as { ports?: Array<{ tableSize?: number }> } | undefined;
            if (!v?.ports?.[0]?.tableSize) return false;
          }
          return true;
        },
        900_000,
        `the lab's agents to program ${n} services`,
        100,
      );
      await measure('xlb', n, last);
    }
    for (const node of lab.nodes) await labStopAgent(lab.stateDir, node.name);

    // kube-proxy's iptables rules in the node namespaces.
    for (const tool of plan.iptables) {
      for (const n of plan.sizes) {
        const services = labServices(n, lab);
        const rules = kp.iptablesFull(services);
        for (const node of lab.nodes) restoreIn(node.netns, [`${tool}-restore`, '-w'], rules);
        await measure(tool, n, services[n - 1]);
        for (const node of lab.nodes) restoreIn(node.netns, [`${tool}-restore`, '-w'], kp.IPTABLES_EMPTY);
      }
    }
  } finally {
    if (lab) await labDown(lab.stateDir);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }

  // Ratios to the baseline, as their own figures (the runs are xlb's, the ratio is of the medians).
  for (const system of plan.iptables) {
    for (const n of plan.sizes) {
      for (const mode of ['close', 'keepalive'] as const) {
        res.add({
          id: `ratio.xlb-vs-${system}.${mode}.rps.services-${n}`,
          label: `xlb requests/s over ${system}'s, ${mode === 'close' ? 'new connection each' : 'keep-alive'}, ${n} services`,
          unit: 'requests/s',
          runs: res.get(`xlb.${mode}.rps.services-${n}`).runs,
          params: { metric: 'ratio-rps', mode, services: n, headline: n === most },
          baseline: `${system}.${mode}.rps.services-${n}`,
        });
      }
    }
  }
  // Connection setup must not grow with the number of services (issue 6): each
  // batch median at the most services over the median at the fewest, per system.
  for (const system of systems) {
    const one = res.get(`${system}.connect.services-${fewest}`);
    const many = res.get(`${system}.connect.services-${most}`);
    res.add({
      id: `growth.${system}.connect`,
      label: `${system}: connection setup at ${most.toLocaleString('en')} services over ${fewest}`,
      unit: 'ratio',
      runs: many.runs.map((r) => r / one.median),
      params: { system, metric: 'connect-growth', headline: true },
      ...(system === 'xlb' ? { target: { max: GROWTH_TARGET, source: "issue 6 (xlb's connection setup must not grow with the number of services; 10% allowed, as for the datapath)" } } : {}),
    });
  }

  const rows: Array<Array<string | number>> = [];
  for (const n of plan.sizes) {
    for (const system of systems) {
      const g = (id: string) => res.get(`${system}.${id}.services-${n}`);
      const conn = g('connect');
      const rpsRatio = (mode: string) => (system === 'xlb' ? '' : ` (xlb ${times(res.get(`ratio.xlb-vs-${system}.${mode}.rps.services-${n}`).ratio)})`);
      rows.push([
        `${system} (N=${n})`,
        `${sig(conn.median / 1000)} ${pct(conn.spread)} / ${sig(g('connect-p99').median / 1000)}${conn.ratio !== undefined ? ` (${times(conn.ratio)})` : ''}`,
        `${sig(g('close.rps').median)} ${pct(g('close.rps').spread)}${rpsRatio('close')} (${sig(g('close.p50').median)} / ${sig(g('close.p99').median)} ms)`,
        `${sig(g('keepalive.rps').median)} ${pct(g('keepalive.rps').spread)}${rpsRatio('keepalive')} (${sig(g('keepalive.p50').median)} / ${sig(g('keepalive.p99').median)} ms)`,
      ]);
    }
  }
  printTable(
    'End to end: connect µs, median of batch medians / of batch p99s (baseline / xlb); requests/s (xlb / baseline) (p50 / p99 latency)',
    ['system', 'connect', 'new connection each', 'keep-alive'],
    rows,
  );
  for (const system of systems) {
    const g = res.get(`growth.${system}.connect`);
    console.log(`e2e: ${g.label}: ${times(g.median)} ${pct(g.spread)}${g.target ? ` (target <= ${GROWTH_TARGET}: ${g.met ? 'met' : 'NOT met'})` : ''}`);
  }

  const bars: Array<{ panel: string; x: string; series: string; value: number }> = [];
  for (const n of plan.sizes) {
    for (const system of systems) {
      bars.push({ panel: 'TCP connection setup (µs, lower is better)', x: `${n} services`, series: system, value: +(res.get(`${system}.connect.services-${n}`).median / 1000).toFixed(1) });
      bars.push({ panel: 'requests/s, new connection each', x: `${n} services`, series: system, value: +res.get(`${system}.close.rps.services-${n}`).median.toFixed(0) });
      bars.push({ panel: 'requests/s, keep-alive', x: `${n} services`, series: system, value: +res.get(`${system}.keepalive.rps.services-${n}`).median.toFixed(0) });
    }
  }
  res.write(await groupedBars(bars, { title: 'End to end in the lab: xlb vs kube-proxy iptables rules (medians)', yTitle: '' }));
  return res;
}

/** Run argv (an *-restore) in a lab namespace with `input` on stdin. @throws Error with the tool's stderr */
function restoreIn(netns: string, argv: string[], input: string): void {
  const r = spawnSync('nsenter', [`--net=/run/netns/${netns}`, '--', ...argv], { input, maxBuffer: 256 << 20 });
  if (r.error) throw new Error(`bench/e2e: ${argv.join(' ')} in ${netns}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`bench/e2e: ${argv.join(' ')} in ${netns}: exit ${r.status}: ${String(r.stderr).trim().slice(0, 1000)}`);
}

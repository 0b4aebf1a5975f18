/**
 * bench/e2e: HTTP through the lab (src/lab: a client, an ECMP router with
 * static routes, two nodes with two pods each), from the client to a VIP,
 * through xlb and through kube-proxy's iptables rules in the same lab,
 * with 10, 1,000 and 10,000 services defined (the measured one last in
 * every chain).
 *
 * Per system and size:
 *   - wrk, new connection per request (`Connection: close`) and keep-alive:
 *     requests/s, p50 and p99 latency;
 *   - connection setup: connect() to 'connect' of sequential TCP connections
 *     from the client (bench/e2e/connect-probe.ts), p50 and p99: the SYN's
 *     walk through the load balancer, where iptables walks KUBE-SERVICES.
 * xlb: the lab's agents program the services from the manifests file.
 * iptables: the agents are stopped (their programs detached), and each node
 * gets kube-proxy's nat table for the same services (bench/convergence/
 * kubeproxy.ts) with iptables-legacy-restore (and, in full mode, also
 * iptables-nft-restore).
 *
 *   npm run bench -- --only e2e [--quick]     (root)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { labUp, labDown, labExec, labStopAgent, type LabStatus, type LabUpOptions } from '../../src/lab/index.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';
import { benchServices, manifestsJson, type BenchService } from '../convergence/manifests.js';
import * as kp from '../convergence/kubeproxy.js';
import { BenchResult } from '../lib/results.js';
import { summarize } from '../lib/stats.js';
import { printTable, sig, times } from '../lib/table.js';
import { groupedBars } from '../lib/chart.js';
import { requireRoot, requireTool } from '../lib/tools.js';
import { repoRoot } from '../lib/paths.js';

interface Plan {
  sizes: number[];
  /** wrk duration per measurement, s. */
  wrkSeconds: number;
  /** wrk measurements per mode (their medians are reported). */
  wrkRuns: number;
  /** Connects of the probe. */
  connects: number;
  iptables: string[];
}
const QUICK: Plan = { sizes: [10, 1000], wrkSeconds: 2, wrkRuns: 1, connects: 300, iptables: ['iptables-legacy'] };
const FULL: Plan = { sizes: [10, 1000, 10000], wrkSeconds: 5, wrkRuns: 3, connects: 1000, iptables: ['iptables-legacy', 'iptables-nft'] };
/** wrk connections and threads (the machine has 2 cores; the pods are single-threaded Node servers). */
const WRK = { connections: 16, threads: 1 };

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

/** wrk's `--latency` output: requests/s, p50 and p99 in ms. */
function parseWrk(out: string): { rps: number; p50: number; p99: number; errors: number } {
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

/** Run the end-to-end benchmark and write bench/results/e2e.{json,svg}. */
export async function run(opts: { quick: boolean }): Promise<BenchResult> {
  requireRoot('bench/e2e');
  for (const [t, pkg] of [
    ['wrk', 'wrk'],
    ['iptables-legacy-restore', 'iptables'],
    ['iptables-nft-restore', 'iptables'],
    ['ethtool', 'ethtool'],
    ['curl', 'curl'],
  ])
    requireTool('bench/e2e', t, pkg);
  const plan = opts.quick ? QUICK : FULL;
  const res = new BenchResult('e2e', 'End to end in the lab: wrk and connection setup through xlb and through kube-proxy iptables rules', opts.quick);
  res.method.push(
    `Lab: client, ECMP router (static routes), 2 nodes × 2 pods (Node HTTP servers). Services: N in ${plan.sizes.join(', ')} on 192.0.2.0/24 × ports, 4 endpoints each (the lab's pods), the measured service last.`,
    `wrk -t${WRK.threads} -c${WRK.connections} -d${plan.wrkSeconds}s --latency, ${plan.wrkRuns} run(s) per mode: new connection per request (Connection: close) and keep-alive.`,
    `Connection setup: ${plan.connects} sequential TCP connects from the client namespace (bench/e2e/connect-probe.ts), connect() to 'connect'.`,
    `iptables: agents stopped, kube-proxy's nat table (bench/convergence/kubeproxy.ts) restored on both nodes with ${plan.iptables.join(' and ')}.`,
  );
  res.note('Other engineers ran tests on this 2-core machine at the same time, and wrk, the router, both nodes and the pods share its 2 cores: throughput is bounded by the pods and the machine, so ratios near 1 mean "not the bottleneck".');

  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-bench-e2e-'));
  const seedManifests = path.join(stateDir, 'seed.json');
  let lab: LabStatus | undefined;
  try {
    // The lab's pods are known only once it is up: start it with a one-service file, then write the real ones.
    fs.writeFileSync(seedManifests, manifestsJson([]));
    const up: LabUpOptions & { announce: 'static' } = { nodes: 2, podsPerNode: 2, agents: true, stateDir: path.join(stateDir, 'lab'), manifests: seedManifests, announce: 'static' };
    lab = await labUp(up);
    const probe = path.join(repoRoot, 'bench/e2e/connect-probe.ts');
    const measure = async (system: string, n: number, svc: BenchService) => {
      const url = `http://${svc.vip}:${svc.port}/`;
      const body = await labExec(lab!.client, ['curl', '-s', '-m', '2', url]);
      if (!/^n\dp\d/.test(body)) throw new Error(`bench/e2e: ${system}, ${n} services: ${url} answered ${JSON.stringify(body.slice(0, 80))}, not a lab pod`);
      for (const mode of ['close', 'keepalive'] as const) {
        const rps: number[] = [];
        const p50: number[] = [];
        const p99: number[] = [];
        for (let r = 0; r < plan.wrkRuns; r++) {
          const args = ['wrk', `-t${WRK.threads}`, `-c${WRK.connections}`, `-d${plan.wrkSeconds}s`, '--latency', ...(mode === 'close' ? ['-H', 'Connection: close'] : []), url];
          const w = parseWrk(await labExec(lab!.client, args, { timeoutMs: (plan.wrkSeconds + 30) * 1000 }));
          if (w.errors > w.rps * plan.wrkSeconds * 0.001) throw new Error(`bench/e2e: ${system}, ${n} services, ${mode}: ${w.errors} wrk errors`);
          rps.push(w.rps);
          p50.push(w.p50);
          p99.push(w.p99);
        }
        const base = system === 'xlb' ? undefined : `xlb.${mode}.rps.services-${n}`;
        res.add({ id: `${system}.${mode}.rps.services-${n}`, label: `${system}: requests/s, ${mode === 'close' ? 'new connection each' : 'keep-alive'}, ${n} services`, unit: 'requests/s', runs: rps, params: { system, mode, metric: 'rps', services: n } });
        res.add({ id: `${system}.${mode}.p50.services-${n}`, label: `${system}: p50 latency, ${mode}, ${n} services`, unit: 'ms', runs: p50, params: { system, mode, metric: 'p50', services: n } });
        res.add({ id: `${system}.${mode}.p99.services-${n}`, label: `${system}: p99 latency, ${mode}, ${n} services`, unit: 'ms', runs: p99, params: { system, mode, metric: 'p99', services: n } });
        if (base) {
          // xlb over the baseline: above 1, xlb serves more requests per second.
          res.add({ id: `ratio.xlb-vs-${system}.${mode}.rps.services-${n}`, label: `xlb requests/s / ${system} requests/s, ${mode}, ${n} services`, unit: 'requests/s', runs: res.figures().find((f) => f.id === base)!.runs, params: { metric: 'ratio-rps', mode, services: n, headline: n === plan.sizes[plan.sizes.length - 1] }, baseline: `${system}.${mode}.rps.services-${n}` });
        }
      }
      const out = await labExec(lab!.client, [process.execPath, '--import', 'tsx', probe, svc.vip, String(svc.port), String(plan.connects)], { timeoutMs: 120_000 });
      const { us, failed } = JSON.parse(out.trim().split('\n').pop()!) as { us: number[]; failed: number };
      res.add({ id: `${system}.connect-failed.services-${n}`, label: `${system}: connects not established within 3 s, of ${plan.connects}, ${n} services`, unit: 'connects', runs: [failed], params: { system, metric: 'connect-failed', services: n } });
      if (failed) res.note(`${system}, ${n} services: ${failed} of ${plan.connects} connects were not established within 3 s.`);
      if (failed > plan.connects * 0.01) throw new Error(`bench/e2e: ${system}, ${n} services: ${failed} of ${plan.connects} connects failed`);
      const s = summarize(us);
      res.add({ id: `${system}.connect.services-${n}`, label: `${system}: TCP connection setup, ${n} services (µs, ${plan.connects} connects)`, unit: 'us', runs: us, params: { system, metric: 'connect', services: n, headline: n === plan.sizes[plan.sizes.length - 1] }, baseline: system === 'xlb' ? undefined : `xlb.connect.services-${n}` });
      console.log(`e2e: ${system}, ${n} services: connect p50 ${sig(s.median)} us, p99 ${sig(s.p99)} us; close ${sig(res.get(`${system}.close.rps.services-${n}`).median)} req/s; keep-alive ${sig(res.get(`${system}.keepalive.rps.services-${n}`).median)} req/s`);
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
        200,
      );
      await measure('xlb', n, last);
    }
    for (const node of lab.nodes) await labStopAgent(lab.stateDir, node.name);

    // kube-proxy's iptables rules in the node namespaces.
    for (const tool of plan.iptables) {
      for (const n of plan.sizes) {
        const services = labServices(n, lab);
        const rules = kp.iptablesFull(services);
        for (const node of lab.nodes) await labExecInput(node.netns, [`${tool}-restore`, '-w'], rules);
        await measure(tool, n, services[n - 1]);
        for (const node of lab.nodes) await labExecInput(node.netns, [`${tool}-restore`, '-w'], kp.IPTABLES_EMPTY);
      }
    }
  } finally {
    if (lab) await labDown(lab.stateDir);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }

  // Connection setup must not grow with the number of services (issue 6): the
  // samples at the most services over the median at the fewest, per system.
  const fewest = plan.sizes[0];
  const most = plan.sizes[plan.sizes.length - 1];
  for (const system of ['xlb', ...plan.iptables]) {
    const one = res.get(`${system}.connect.services-${fewest}`);
    const many = res.figures().find((f) => f.id === `${system}.connect.services-${most}`)!;
    res.add({
      id: `growth.${system}.connect`,
      label: `${system}: connection setup at ${most.toLocaleString('en')} services over ${fewest}`,
      unit: 'ratio',
      runs: many.runs.map((r) => r / one.median),
      params: { system, metric: 'connect-growth', headline: true },
      ...(system === 'xlb' ? { target: { max: 1.1, source: 'issue 6 (xlb\'s connection setup must not grow with the number of services)' } } : {}),
    });
  }

  const rows: Array<Array<string | number>> = [];
  for (const n of plan.sizes) {
    for (const system of ['xlb', ...plan.iptables]) {
      const g = (id: string) => res.get(`${system}.${id}.services-${n}`);
      const conn = g('connect');
      rows.push([
        `${system} (N=${n})`,
        `${sig(conn.median)} / ${sig(conn.p99)}${conn.ratio ? ` (${times(conn.ratio)})` : ''}`,
        `${sig(g('close.rps').median)} (${sig(g('close.p50').median)} / ${sig(g('close.p99').median)} ms)`,
        `${sig(g('keepalive.rps').median)} (${sig(g('keepalive.p50').median)} / ${sig(g('keepalive.p99').median)} ms)`,
      ]);
    }
  }
  printTable('End to end: connect µs p50 / p99 (baseline over xlb), requests/s (p50 / p99 latency)', ['system', 'connect', 'new connection each', 'keep-alive'], rows);

  const bars: Array<{ panel: string; x: string; series: string; value: number }> = [];
  for (const n of plan.sizes) {
    for (const system of ['xlb', ...plan.iptables]) {
      bars.push({ panel: 'TCP connection setup p50 (µs)', x: `${n} services`, series: system, value: +res.get(`${system}.connect.services-${n}`).median.toFixed(0) });
      bars.push({ panel: 'requests/s, new connection each', x: `${n} services`, series: system, value: +res.get(`${system}.close.rps.services-${n}`).median.toFixed(0) });
    }
  }
  res.write(await groupedBars(bars, { title: 'End to end in the lab: xlb vs kube-proxy iptables rules', yTitle: '' }));
  return res;
}

/** Run argv in a lab namespace with `input` on stdin. */
async function labExecInput(netns: string, argv: string[], input: string): Promise<void> {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync('nsenter', [`--net=/run/netns/${netns}`, '--', ...argv], { input, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`bench/e2e: ${argv.join(' ')} in ${netns}: ${String(r.stderr).trim().slice(0, 1000)}`);
}

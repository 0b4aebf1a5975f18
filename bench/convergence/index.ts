/**
 * bench/convergence: how fast the control plane programs the datapath, beside
 * kube-proxy's iptables and nftables rules for the same services.
 *
 * xlb, for N services of 10 endpoints (a manifests file, bench/convergence/
 * manifests.ts), with the real agent (src/agent/agent.ts: FileSource →
 * ServiceController → BpfLBMaps, XDP attached to a veth in a private
 * namespace):
 *   - programmed: Agent.start() until its first full sync is in the maps
 *     (load and attach the BPF objects, read and parse the file, translate,
 *     build every Maglev table, write every map), and the controller's sync
 *     alone (its own duration, from the agent's "synced" log line);
 *   - endpoint change → maps: one endpoint of one service replaced, handed
 *     to the agent's own ServiceController as a new snapshot, timed until
 *     sync() returns (the change is then in the maps: translate, one table
 *     rebuilt and swapped in, backend writes), a different service each
 *     time; and a few changes through the manifests file, timed from the
 *     file write until the agent's sync has completed (adds the watch's
 *     debounce and parsing the whole file);
 *   - resident memory of a separate agent process (`xlb agent`, the CLI)
 *     once ready at the largest N.
 * Endpoints are on the agent's node: remote ones would make the agent
 * resolve a next hop per remote backend in the background (src/datapath/
 * neighbors.ts), which is not what is measured here.
 *
 * kube-proxy, in a private network namespace (never the machine's rules):
 *   - iptables layout (bench/convergence/kubeproxy.ts) through
 *     iptables-legacy-restore and iptables-nft-restore: the whole set into an
 *     empty nat table, and one change (kube-proxy's partial sync);
 *   - nftables layout through `nft -f`: the whole table, and one change.
 * Each is the wall time of the process (spawned through nsenter, as
 * kube-proxy spawns iptables-restore), median of the runs.
 *
 *   npm run bench -- --only convergence [--quick]     (root)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import pino from 'pino';
import { stringify } from 'yaml';
import { Agent } from '../../src/agent/agent.js';
import { PIN_BASE, removePins } from '../../src/datapath/bpf.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { apiGet } from '../../src/cli/client.js';
import { enterNetns } from '../../src/util/netns.js';
import { waitFor } from '../../src/util/wait.js';
import { ipToU32, u32ToIp } from '../../src/util/ip.js';
import { benchServices, endpointSliceObject, manifestsJson, type BenchService } from './manifests.js';
import { ServiceController } from '../../src/services/controller.js';
import { normalizeEndpointSlice, normalizeObjects } from '../../src/sources/normalize.js';
import * as kp from './kubeproxy.js';
import { BenchResult } from '../lib/results.js';
import { fullGc } from '../lib/gc.js';
import { summarize } from '../lib/stats.js';
import { printTable, sig, times } from '../lib/table.js';
import { groupedBars } from '../lib/chart.js';
import { hasTool, requireRoot, requireTool } from '../lib/tools.js';
import { withNetns, type BenchNetns } from '../lib/netns.js';
import { repoRoot } from '../lib/paths.js';

const ENDPOINTS = 10;
const NODE_NAME = 'node-a';
const NODE_IP = '198.18.0.11';
const TARGET = { programmedMs: 500, changeP99Ms: 5, rssMB: 200 };

/** What each mode measures. */
interface Plan {
  sizes: number[];
  /** Agent starts per size. */
  startRuns: (n: number) => number;
  /** Endpoint changes per size, straight to the agent's controller. */
  changes: (n: number) => number;
  /** Endpoint changes per size through the manifests file (each parses the whole file). */
  fileChanges: (n: number) => number;
  /** Firewall runs per size and tool. */
  fwRuns: (n: number, tool: string) => number;
}

const QUICK: Plan = { sizes: [100, 1000], startRuns: (n) => (n <= 100 ? 3 : 1), changes: (n) => (n <= 100 ? 100 : 20), fileChanges: (n) => (n <= 100 ? 10 : 3), fwRuns: () => 3 };
const FULL: Plan = {
  sizes: [100, 1000, 10000],
  startRuns: (n) => (n >= 10000 ? 3 : 5),
  changes: () => 200,
  fileChanges: (n) => (n >= 10000 ? 3 : 10),
  // One nft -f of the whole 10,000-service table takes minutes with nft 1.0.6.
  fwRuns: (n, tool) => (n >= 10000 && tool === 'nft' ? 3 : 5),
};

/** The cluster with endpoint 0 of service `s` replaced by a fresh address (change number k). */
function withChange(services: BenchService[], s: number, k: number): { services: BenchService[]; before: BenchService; after: BenchService } {
  const before = services[s];
  const fresh = { ip: u32ToIp(ipToU32('198.18.32.0') + (k % 8192)), port: before.endpoints[0].port, nodeName: before.endpoints[0].nodeName };
  const after = { ...before, endpoints: [fresh, ...before.endpoints.slice(1)] };
  const out = services.slice();
  out[s] = after;
  return { services: out, before, after };
}

/** Run the convergence benchmark and write bench/results/convergence.{json,svg}. */
export async function run(opts: { quick: boolean }): Promise<BenchResult> {
  requireRoot('bench/convergence');
  for (const [tool, pkg] of [
    ['iptables-legacy-restore', 'iptables'],
    ['iptables-nft-restore', 'iptables'],
    ['nft', 'nftables'],
    ['nsenter', 'util-linux'],
  ])
    requireTool('bench/convergence', tool, pkg);
  const plan = opts.quick ? QUICK : FULL;
  const res = new BenchResult('convergence', 'Control plane: services programmed and endpoint changes, xlb against kube-proxy rules', opts.quick);
  res.method.push(
    `N in ${plan.sizes.join(', ')} LoadBalancer services of ${ENDPOINTS} endpoints each (bench/convergence/manifests.ts), endpoints on the agent's node.`,
    'xlb: the real agent (Agent.start) in a private namespace, XDP on a veth; programmed = Agent.start until the first full sync is in the maps; sync = the controller sync alone (agent log); change = one endpoint of one service replaced (a different service each time), handed as a new snapshot (with the change hint the Kubernetes source gives) to the agent\'s ServiceController and timed until sync() returns with the maps written; a few changes also through the manifests file, timed from the write until the agent\'s sync completed (adds debounce and parsing the whole file).',
    "kube-proxy: iptables-legacy-restore, iptables-nft-restore and nft -f in a private network namespace (nsenter), wall time of the process; full = whole rule set into an empty table, change = kube-proxy's partial sync of one endpoint change.",
    'RSS: VmRSS of a separate `xlb agent` process (src/cli/main.ts through tsx) once ready at the largest N, and its RssAnon (VmRSS also counts the pages of the BPF maps the agent keeps mapped: the Maglev slabs, ~4 MiB per 1,000 tables of M = 1021).',
  );
  if (opts.quick) res.note('Quick mode: N = 100 and 1,000 only, and fewer runs; the 10,000-service figures (and the targets defined at 10,000) come from a full run.');
  res.note('Other engineers ran tests on this 2-core machine at the same time: medians, spreads given.');

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-bench-conv-'));
  try {
    await withNetns('conv', async (ns) => {
      execFileSync('ip', ['-n', ns.name, 'link', 'add', 'xlbA', 'type', 'veth', 'peer', 'name', 'xlbB']);
      execFileSync('ip', ['-n', ns.name, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'xlbA']);
      execFileSync('ip', ['-n', ns.name, 'link', 'set', 'xlbA', 'up']);
      execFileSync('ip', ['-n', ns.name, 'link', 'set', 'xlbB', 'up']);
      for (const n of plan.sizes) await measureXlb(res, ns, tmp, n, plan);
      await measureRss(res, ns, tmp, plan.sizes[plan.sizes.length - 1]);
    });
    await withNetns('kp', async (ns) => {
      for (const n of plan.sizes) measureFirewalls(res, ns, n, plan);
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  // Ratios and the table.
  const rows: Array<Array<string | number>> = [];
  for (const n of plan.sizes) {
    const prog = res.get(`xlb.programmed.services-${n}`);
    const sync = res.get(`xlb.sync.services-${n}`);
    const change = res.get(`xlb.change-sync.services-${n}`);
    const changeFile = res.get(`xlb.change-file.services-${n}`);
    rows.push([`xlb (N=${n})`, sig(prog.median), sig(sync.median), `${sig(change.median)} / p99 ${sig(change.p99)}`, `${sig(changeFile.median)} / p99 ${sig(changeFile.p99)}`]);
    for (const tool of ['iptables-legacy', 'iptables-nft', 'nft']) {
      const full = res.figures().find((f) => f.id === `${tool}.full.services-${n}`);
      const one = res.figures().find((f) => f.id === `${tool}.change.services-${n}`);
      if (full && one) rows.push([`  ${tool}`, `${sig(full.median)} (xlb ${times(prog.median / full.median)})`, '', `${sig(one.median)} / p99 ${sig(one.p99)} (xlb sync ${times(change.median / one.median)})`, '']);
    }
  }
  printTable('Convergence, ms (xlb ratio = xlb time / baseline time; below 1 is faster)', ['N services', 'programmed (whole set)', 'xlb sync only', 'one change: median / p99', 'file write to maps'], rows);
  const rss = res.figures().find((f) => f.id.startsWith('xlb.rss'));
  if (rss) console.log(`agent RSS at ${rss.params!.services} services: ${sig(rss.median)} MB${rss.target ? ` (target < ${TARGET.rssMB} MB: ${rss.met ? 'met' : 'NOT met'})` : ''}`);

  const bars: Array<{ panel: string; x: string; series: string; value: number }> = [];
  for (const n of plan.sizes) {
    bars.push({ panel: 'whole set programmed (ms, log)', x: `${n}`, series: 'xlb', value: res.get(`xlb.programmed.services-${n}`).median });
    bars.push({ panel: 'one endpoint change (ms, log)', x: `${n}`, series: 'xlb', value: res.get(`xlb.change-sync.services-${n}`).median });
    for (const tool of ['iptables-legacy', 'iptables-nft', 'nft']) {
      const full = res.figures().find((f) => f.id === `${tool}.full.services-${n}`);
      const one = res.figures().find((f) => f.id === `${tool}.change.services-${n}`);
      if (full) bars.push({ panel: 'whole set programmed (ms, log)', x: `${n}`, series: tool, value: full.median });
      if (one) bars.push({ panel: 'one endpoint change (ms, log)', x: `${n}`, series: tool, value: one.median });
    }
  }
  const svg = await groupedBars(
    bars.map((b) => ({ ...b, value: +b.value.toPrecision(3) })),
    { title: 'Convergence: xlb agent vs kube-proxy rules (median ms, lower is better)', yTitle: 'ms', xTitle: 'services', logY: true },
  );
  res.write(svg);
  return res;
}

/** Lines of the agent's pino log, parsed. */
class LogCapture extends Writable {
  readonly synced: number[] = [];
  readonly errors: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n')) {
      if (!line) continue;
      try {
        const o = JSON.parse(line) as { msg?: string; ms?: number; level?: number; err?: string };
        if (o.msg === 'synced' && typeof o.ms === 'number') this.synced.push(o.ms);
        if ((o.level ?? 0) >= 50) this.errors.push(`${o.msg}: ${o.err ?? ''}`);
      } catch {
        /* not JSON */
      }
    }
    cb();
  }
}

function agentConfig(tmp: string, manifests: string, instance: string) {
  return ConfigSchema.parse({
    node: { name: NODE_NAME, addresses: [NODE_IP] },
    interfaces: ['xlbA'],
    source: { file: { path: manifests } },
    datapath: { instance, xdpMode: 'auto', conntrackSize: 65536 },
    // The control plane is measured here; the socket hooks would attach to the machine's own cgroup root.
    socketLB: { enabled: false },
    api: { listen: `unix:${path.join(tmp, `${instance}.sock`)}` },
    log: { level: 'info' },
  });
}

async function measureXlb(res: BenchResult, ns: BenchNetns, tmp: string, n: number, plan: Plan): Promise<void> {
  const services = benchServices({ services: n, endpointsPerService: ENDPOINTS, nodes: [NODE_NAME] });
  const manifests = path.join(tmp, `services-${n}.json`);
  fs.writeFileSync(manifests, manifestsJson(services));
  const programmed: number[] = [];
  const syncs: number[] = [];
  const changeSync: number[] = [];
  const changeFile: number[] = [];
  const leave = enterNetns(ns.name);
  try {
    for (let r = 0; r < plan.startRuns(n); r++) {
      // The last run's garbage is collected now, not during this start (an
      // agent starts in a fresh process).
      fullGc();
      const log = new LogCapture();
      const instance = `bench-conv-${randomBytes(3).toString('hex')}`;
      const t0 = performance.now();
      const agent = await Agent.start(agentConfig(tmp, manifests, instance), pino({ level: 'info' }, log));
      try {
        await waitFor(() => agent.ready() || log.errors.length > 0, 600_000, `agent with ${n} services to be ready`, 5);
        if (!agent.ready()) throw new Error(`bench/convergence: agent with ${n} services did not program: ${log.errors.join('; ')}`);
        programmed.push(performance.now() - t0);
        syncs.push(log.synced[0]);
        const programmedServices = agent.services().filter((s) => s.tableSize > 0).length;
        if (programmedServices !== n) throw new Error(`bench/convergence: ${programmedServices} of ${n} services have a Maglev table after the first sync`);
        if (r === 0) {
          const controller = (agent as unknown as { controller?: ServiceController }).controller;
          if (!(controller instanceof ServiceController)) throw new Error('bench/convergence: Agent has no field `controller` (a ServiceController) any more: update bench/convergence');
          // One endpoint change at a time, each to a different service, handed
          // to the agent's controller as the source would hand it a new
          // snapshot (the agent is idle between syncs).
          const state0 = normalizeObjects([JSON.parse(fs.readFileSync(manifests, 'utf8'))]).state;
          if (state0.services.size !== n) throw new Error(`bench/convergence: normalized ${state0.services.size} of ${n} services`);
          let state = state0;
          for (let k = 0; k < plan.changes(n); k++) {
            const s = (k * 7919) % n;
            const c = withChange(services, s, k);
            const slice = normalizeEndpointSlice(endpointSliceObject(c.after)).value;
            if (!slice) throw new Error(`bench/convergence: change ${k}: the changed EndpointSlice does not normalize`);
            const sliceKey = `${slice.namespace}/${slice.name}`;
            const slices = new Map(state.endpointSlices);
            slices.set(sliceKey, slice);
            // with the change hint the Kubernetes source gives (ClusterState.changed)
            const next = { services: state.services, endpointSlices: slices, changed: { services: [], endpointSlices: [sliceKey] } };
            const c0 = performance.now();
            const r2 = controller.sync(next);
            changeSync.push(performance.now() - c0);
            if (r2.writes.tables !== 1) throw new Error(`bench/convergence: change ${k} rebuilt ${r2.writes.tables} tables, want 1`);
            const view = controller.services().find((v) => v.name === c.after.name);
            if (!view?.backends.some((b) => b.addr === c.after.endpoints[0].ip && b.inTable)) throw new Error(`bench/convergence: change ${k}: ${c.after.endpoints[0].ip} is not in ${c.after.name}'s table`);
            state = { services: state.services, endpointSlices: new Map(state0.endpointSlices) };
            controller.sync({ ...state, changed: { services: [], endpointSlices: [sliceKey] } }); // back to the original cluster (untimed)
          }
          // The same through the manifests file: watch, debounce, parse the whole file, sync.
          for (let k = 0; k < plan.fileChanges(n); k++) {
            const s = (k * 7919 + 1) % n;
            const c = withChange(services, s, 10_000 + k);
            const text = manifestsJson(c.services);
            const next = agent.nextSync();
            const w0 = performance.now();
            fs.writeFileSync(manifests, text);
            await next;
            changeFile.push(performance.now() - w0);
            const view = agent.services().find((v) => v.name === c.after.name);
            if (!view?.backends.some((b) => b.addr === c.after.endpoints[0].ip && b.inTable)) throw new Error(`bench/convergence: file change ${k}: ${c.after.endpoints[0].ip} is not in ${c.after.name}'s table`);
          }
          // The next start reads the original cluster again.
          fs.writeFileSync(manifests, manifestsJson(services));
        }
      } finally {
        await agent.stop();
      }
    }
  } finally {
    leave();
  }
  const headline = n === plan.sizes[plan.sizes.length - 1] || n === 10000;
  res.add({
    id: `xlb.programmed.services-${n}`,
    label: `xlb: ${n} services programmed (agent start to first sync in the maps)`,
    unit: 'ms',
    runs: programmed,
    params: { system: 'xlb', services: n, headline },
    target: n === 10000 ? { max: TARGET.programmedMs, source: 'issue 6' } : undefined,
  });
  res.add({ id: `xlb.sync.services-${n}`, label: `xlb: controller sync of ${n} services (translate, tables, map writes)`, unit: 'ms', runs: syncs, params: { system: 'xlb', services: n } });
  res.add({
    id: `xlb.change-sync.services-${n}`,
    label: `xlb: one endpoint change to the maps (controller sync), ${n} services`,
    unit: 'ms',
    runs: changeSync,
    params: { system: 'xlb', services: n, headline },
    target: n === 10000 ? { stat: 'p99', max: TARGET.changeP99Ms, source: 'issue 6' } : undefined,
  });
  res.add({ id: `xlb.change-file.services-${n}`, label: `xlb: one endpoint change, file write to maps (debounce + parse + sync), ${n} services`, unit: 'ms', runs: changeFile, params: { system: 'xlb', services: n } });
  console.log(
    `convergence: xlb ${n} services: programmed ${sig(summarize(programmed).median)} ms (sync ${sig(summarize(syncs).median)} ms); change ${sig(summarize(changeSync).median)} ms, p99 ${sig(summarize(changeSync).p99)} ms`,
  );
}

/** Start `xlb agent` as its own process in the namespace and read its RSS once ready. */
async function measureRss(res: BenchResult, ns: BenchNetns, tmp: string, n: number): Promise<void> {
  const services = benchServices({ services: n, endpointsPerService: ENDPOINTS, nodes: [NODE_NAME] });
  const manifests = path.join(tmp, `rss-${n}.json`);
  fs.writeFileSync(manifests, manifestsJson(services));
  const instance = `bench-rss-${randomBytes(3).toString('hex')}`;
  const cfgPath = path.join(tmp, `${instance}.yaml`);
  const api = `unix:${path.join(tmp, `${instance}.sock`)}`;
  fs.writeFileSync(cfgPath, stringify({ node: { name: NODE_NAME, addresses: [NODE_IP] }, interfaces: ['xlbA'], source: { file: { path: manifests } }, datapath: { instance, conntrackSize: 65536 }, socketLB: { enabled: false }, api: { listen: api }, log: { level: 'warn' } }));
  const logPath = path.join(tmp, `${instance}.log`);
  const fd = fs.openSync(logPath, 'a');
  const child = spawn('nsenter', [`--net=/run/netns/${ns.name}`, '--', process.execPath, '--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'agent', '--config', cfgPath], { stdio: ['ignore', fd, fd], cwd: repoRoot });
  fs.closeSync(fd);
  const t0 = performance.now();
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`agent exited ${child.exitCode}: ${fs.readFileSync(logPath, 'utf8').slice(-2000)}`);
        const r = (await apiGet(api, '/readyz', { allowError: true, timeoutMs: 1000 }).catch(() => ({}))) as { status?: string };
        return r.status === 'ready';
      },
      900_000,
      `xlb agent with ${n} services to be ready`,
      100,
    );
    const readyMs = performance.now() - t0;
    // nsenter execs node in place, so the child's PID is the agent's.
    const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    const rssMB = kb('VmRSS') / 1024;
    const hwmMB = kb('VmHWM') / 1024;
    if (!Number.isFinite(rssMB)) throw new Error(`bench/convergence: no VmRSS for agent pid ${child.pid}`);
    res.add({ id: `xlb.rss.services-${n}`, label: `xlb agent resident memory once ready, ${n} services`, unit: 'MB', runs: [rssMB], params: { system: 'xlb', services: n, headline: true }, target: n >= 10000 ? { max: TARGET.rssMB, source: 'issue 6' } : undefined });
    // VmRSS also counts the pages of BPF maps the agent keeps mapped (the
    // Maglev slabs and descriptors: kernel memory that exists whether mapped
    // or not); RssAnon is the process's own memory (heap, stacks).
    const anonMB = kb('RssAnon') / 1024;
    const mappedMB = (kb('RssShmem') + kb('RssFile')) / 1024;
    res.add({ id: `xlb.rss-anon.services-${n}`, label: `of which the process's own memory (RssAnon), ${n} services`, unit: 'MB', runs: [anonMB], params: { system: 'xlb', services: n } });
    res.add({ id: `xlb.rss-peak.services-${n}`, label: `xlb agent peak resident memory (VmHWM), ${n} services`, unit: 'MB', runs: [hwmMB], params: { system: 'xlb', services: n } });
    res.add({ id: `xlb.process-ready.services-${n}`, label: `xlb agent process start (node + tsx) to ready, ${n} services`, unit: 'ms', runs: [readyMs], params: { system: 'xlb', services: n } });
    console.log(`convergence: xlb agent process, ${n} services: RSS ${sig(rssMB)} MB (own ${sig(anonMB)} MB, mapped files and BPF maps ${sig(mappedMB)} MB; peak ${sig(hwmMB)} MB), ready after ${sig(readyMs)} ms`);
  } finally {
    child.kill('SIGTERM');
    await waitFor(() => child.exitCode !== null || child.signalCode !== null, 30_000, 'the RSS agent to exit').catch(() => child.kill('SIGKILL'));
    removePins(`${PIN_BASE}/${instance}`);
  }
}

function measureFirewalls(res: BenchResult, ns: BenchNetns, n: number, plan: Plan): void {
  const services = benchServices({ services: n, endpointsPerService: ENDPOINTS });
  const last = n - 1;
  const changes = [withChange(services, last, 1)];
  // The second change puts the original endpoint back: runs alternate between the two.
  changes.push({ services, before: changes[0].after, after: services[last] });
  const record = (tool: string, kind: 'full' | 'change', runs: number[]) => {
    const xlbId = kind === 'full' ? `xlb.programmed.services-${n}` : `xlb.change-sync.services-${n}`;
    res.add({ id: `${tool}.${kind}.services-${n}`, label: `${tool}: ${kind === 'full' ? 'whole set' : 'one endpoint change'}, ${n} services`, unit: 'ms', runs, params: { system: tool, kind, services: n } });
    // xlb against this baseline: below 1, xlb is faster.
    res.add({
      id: `ratio.xlb-vs-${tool}.${kind}.services-${n}`,
      label: `xlb ${kind === 'full' ? 'programmed' : 'change'} / ${tool} ${kind}, ${n} services`,
      unit: 'ms',
      runs: res.figures().find((f) => f.id === xlbId)!.runs,
      params: { system: 'xlb', kind: `ratio-${kind}`, services: n, headline: n === plan.sizes[plan.sizes.length - 1] },
      baseline: `${tool}.${kind}.services-${n}`,
    });
  };
  for (const tool of ['iptables-legacy', 'iptables-nft']) {
    const restore = `${tool}-restore`;
    if (!hasTool(restore)) throw new Error(`bench/convergence: ${restore} is not installed (apt-get install -y iptables)`);
    const full = kp.iptablesFull(services);
    const runs = plan.fwRuns(n, tool);
    const fullRuns: number[] = [];
    for (let r = 0; r < runs; r++) {
      ns.run([restore, '-w'], kp.IPTABLES_EMPTY);
      fullRuns.push(ns.timed([restore, '-w'], full).ms);
    }
    const check = (want: BenchService) => {
      const rules = ns.run([tool, '-w', '-t', 'nat', '-S', kp.iptablesServiceChain(want)]);
      if (!rules.includes(`${want.endpoints[0].ip}:${want.endpoints[0].port}`) && !rules.includes(want.endpoints[0].ip)) throw new Error(`bench/convergence: ${tool}: service chain of ${want.name} lacks ${want.endpoints[0].ip}`);
    };
    check(services[last]);
    const changeRuns: number[] = [];
    for (let r = 0; r < runs * 2; r++) {
      const c = changes[r % 2];
      changeRuns.push(ns.timed([restore, '-w', '--noflush'], kp.iptablesChange(c.services, c.before, c.after)).ms);
    }
    check(changes[(runs * 2 - 1) % 2].after);
    ns.run([restore, '-w'], kp.IPTABLES_EMPTY);
    record(tool, 'full', fullRuns);
    record(tool, 'change', changeRuns);
    console.log(`convergence: ${tool} ${n} services: full ${sig(summarize(fullRuns).median)} ms, one change ${sig(summarize(changeRuns).median)} ms`);
  }
  const runs = plan.fwRuns(n, 'nft');
  const fullRuns: number[] = [];
  const full = kp.nftFull(services);
  for (let r = 0; r < runs; r++) {
    ns.run(['nft', '-f', '-'], kp.NFT_EMPTY);
    fullRuns.push(ns.timed(['nft', '-f', '-'], full).ms);
  }
  const changeRuns: number[] = [];
  for (let r = 0; r < runs * 2; r++) {
    const c = changes[r % 2];
    changeRuns.push(ns.timed(['nft', '-f', '-'], kp.nftChange(c.before, c.after)).ms);
  }
  const want = changes[(runs * 2 - 1) % 2].after.endpoints[0].ip.replace(/\./g, '_');
  if (!ns.run(['nft', ...kp.nftServiceChain(services[last])]).includes(want)) throw new Error(`bench/convergence: nft: the service chain of ${services[last].name} lacks the endpoint chain of ${want}`);
  ns.run(['nft', '-f', '-'], kp.NFT_EMPTY);
  record('nft', 'full', fullRuns);
  record('nft', 'change', changeRuns);
  console.log(`convergence: nft ${n} services: full ${sig(summarize(fullRuns).median)} ms, one change ${sig(summarize(changeRuns).median)} ms`);
}

/**
 * Kubernetes source at scale (issue 5, item 6): how long an initial list of
 * 10,000 LoadBalancer services with 10 endpoints each takes to be programmed
 * into the maps, and how long one endpoint change takes to reach them.
 *
 * Setup: the in-test API server (real list/watch protocol, pages of 500,
 * chunked watch streams) in a child process (cluster.ts); in this process
 * the agent's path: KubernetesSource (informers, normalization, coalescing)
 * → ServiceController (translate, Maglev tables, diff) → FakeLBMaps. The
 * maps are the in-memory fake: the BPF map writes of the real datapath need
 * root and are measured by bench/datapath; this benchmark measures the
 * control plane.
 *
 *   npx tsx bench/kubernetes/index.ts [--quick]
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import { KubernetesSource } from '../../src/sources/kubernetes/index.js';
import { ServiceController, type SyncResult } from '../../src/services/controller.js';
import { FakeLBMaps } from '../../src/datapath/lbmaps.js';
import { DEFAULT_BACKEND_MULTIPLIER } from '../../src/maglev/index.js';
import type { NodeInfo } from '../../src/model/types.js';
import { BenchResult } from '../lib/results.js';
import { printTable, sig } from '../lib/table.js';
import { FLIP_ADDRESS, type ChildMessage } from './cluster.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Issue 5: the initial list is programmed within 1 s; one endpoint change within 10 ms. */
export const INITIAL_TARGET_MS = 1000;
export const CHANGE_TARGET_MS = 10;
/** kube-proxy's iptables-restore of the same set, as the issue quotes it (1 to 2 s). */
const KUBE_PROXY_NOTE = "issue 5 quotes kube-proxy's iptables-restore of the same set at 1 to 2 s on this class of machine (not measured here)";

const SERVICES = 10_000;
const ENDPOINTS = 10;

/** The child process serving the synthetic cluster. */
async function startCluster(): Promise<{ child: ChildProcess; kubeconfig: string; url: string; objects: number }> {
  const child = fork(path.join(here, 'cluster.ts'), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, XLB_BENCH_CLUSTER_CHILD: '1', XLB_BENCH_SERVICES: String(SERVICES), XLB_BENCH_ENDPOINTS: String(ENDPOINTS) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('bench kubernetes: the API server child did not start within 120 s')), 120_000);
    child.once('exit', (code) => reject(new Error(`bench kubernetes: the API server child exited with ${code}`)));
    child.on('message', (m: ChildMessage) => {
      if ('ready' in m) {
        clearTimeout(timer);
        resolve({ child, kubeconfig: m.kubeconfig, url: m.url, objects: m.objects });
      }
    });
  });
}

/** One agent's control plane on the fake maps. */
function agent(kubeconfig: string) {
  const node: NodeInfo = { name: 'node-0', addresses: [] };
  const maps = new FakeLBMaps();
  const ctl = new ServiceController(maps, node, { minTableSize: 251, maxTableSize: 131071, backendMultiplier: DEFAULT_BACKEND_MULTIPLIER });
  const source = new KubernetesSource({ kubeconfig, nodeName: 'node-0', log: pino({ level: 'silent' }), onNode: (a) => (node.addresses = a), startTimeoutMs: 300_000 });
  return { node, maps, ctl, source };
}

/** Run the benchmark and write bench/results/kubernetes.json. */
export async function run(opts: { quick: boolean }): Promise<BenchResult> {
  const res = new BenchResult('kubernetes', `Kubernetes source: ${SERVICES.toLocaleString('en')} services × ${ENDPOINTS} endpoints, list to maps and one change to maps`, opts.quick);
  const listRuns = opts.quick ? 3 : 5;
  const changes = opts.quick ? 50 : 200;
  res.method.push(
    `An in-test API server (test/helpers/fake-apiserver.ts: list pages of 500 with continue tokens, chunked JSON watch streams) in a child process serves ${SERVICES.toLocaleString('en')} LoadBalancer Services (one TCP port, a VIP in status) and one EndpointSlice each with ${ENDPOINTS} ready endpoints.`,
    `Initial list: a new KubernetesSource and ServiceController on FakeLBMaps (in-memory maps, no BPF) per run, ${listRuns} runs; time from start() until the first snapshot has been synced into the maps (lists of all three informers, normalization, translation, ${SERVICES.toLocaleString('en')} Maglev tables, map writes), and from the moment the last list response had been received (the issue's "list arriving"). The first lists use resourceVersion=0 (one response each, as kube-apiserver's watch cache answers client-go's reflector); about 29 MB of JSON.`,
    `One endpoint change: ${changes} times, endpoint 0 of one service's slice is replaced (alternately by ${FLIP_ADDRESS} and back) in the API server; time from the parent's request to the child until the controller has written the new backend and table (includes the IPC hop, the watch event, the ${2}-ms coalescing quiet time, a full-state translation and diff).`,
  );

  const cluster = await startCluster();
  const totals: number[] = [];
  const syncs: number[] = [];
  const lists: number[] = [];
  const fromArrival: number[] = [];
  let live: ReturnType<typeof agent> | undefined;
  let onSync: ((r: SyncResult, deliveredAt: number) => void) | undefined;
  try {
    for (let r = 0; r < listRuns; r++) {
      const a = agent(cluster.kubeconfig);
      let first: SyncResult | undefined;
      let firstAt = 0;
      const t0 = performance.now();
      await a.source.start((s) => {
        const deliveredAt = performance.now();
        const result = a.ctl.sync(s.state, s.issues);
        if (!first) {
          first = result;
          firstAt = performance.now();
        }
        onSync?.(result, deliveredAt);
      });
      if (!first) throw new Error('bench kubernetes: no first snapshot');
      if (a.maps.frontends.size !== SERVICES || a.maps.backends.size !== SERVICES * ENDPOINTS) {
        throw new Error(`bench kubernetes: maps hold ${a.maps.frontends.size} frontends and ${a.maps.backends.size} backends, expected ${SERVICES} and ${SERVICES * ENDPOINTS}`);
      }
      totals.push(firstAt - t0);
      const arrived = Math.max(...a.source.stats().informers.map((i) => i.lastListReceivedAt));
      fromArrival.push(firstAt - arrived);
      syncs.push(first.durationMs);
      lists.push(firstAt - t0 - first.durationMs);
      if (r < listRuns - 1) await a.source.stop();
      else live = a;
      (globalThis as { gc?: () => void }).gc?.();
    }

    // One endpoint change at a time → maps.
    const latencies: number[] = [];
    const changeSyncs: number[] = [];
    const sourceLatencies: number[] = [];
    for (let k = 0; k < changes; k++) {
      const service = (k * 7919) % SERVICES;
      const landed = new Promise<{ result: SyncResult; deliveredAt: number }>((resolve) => {
        onSync = (result, deliveredAt) => {
          if (result.writes.backends > 0 && result.writes.tables > 0) resolve({ result, deliveredAt });
        };
      });
      const t0 = performance.now();
      cluster.child.send({ cmd: 'flip', service });
      const { result, deliveredAt } = await landed;
      latencies.push(performance.now() - t0);
      sourceLatencies.push(deliveredAt - t0);
      changeSyncs.push(result.durationMs);
      onSync = undefined;
    }

    res.add({
      id: 'initial.total',
      label: `initial list of ${SERVICES.toLocaleString('en')} services × ${ENDPOINTS} endpoints until programmed`,
      unit: 'ms',
      runs: totals,
      params: { services: SERVICES, endpoints: ENDPOINTS },
    });
    res.add({
      id: 'initial.from-arrival',
      label: 'from the last list response received to programmed (JSON parse, normalization, sync)',
      unit: 'ms',
      runs: fromArrival,
      params: { services: SERVICES, headline: true },
      target: { max: INITIAL_TARGET_MS, source: 'issue 5 ("within 1 s of the list arriving")' },
    });
    res.add({ id: 'initial.list', label: 'of which list transfer, JSON parse and normalization (3 informers)', unit: 'ms', runs: lists, params: { services: SERVICES } });
    res.add({ id: 'initial.sync', label: 'of which the service controller sync (translate, Maglev tables, map writes)', unit: 'ms', runs: syncs, params: { services: SERVICES } });
    res.add({
      id: 'change.latency',
      label: 'one endpoint change until the maps hold it',
      unit: 'ms',
      runs: latencies,
      params: { services: SERVICES, headline: true },
      target: { stat: 'p99', max: CHANGE_TARGET_MS, source: 'issue 5' },
    });
    res.add({
      id: 'change.source',
      label: 'of which until the source delivers the snapshot (watch event, 2 ms coalescing, normalization, snapshot copy)',
      unit: 'ms',
      runs: sourceLatencies,
      params: { services: SERVICES },
    });
    res.add({ id: 'change.sync', label: 'of which the service controller sync (full-state translate and diff)', unit: 'ms', runs: changeSyncs, params: { services: SERVICES } });
    res.note(`Maps are FakeLBMaps (in memory): BPF map write costs are bench/datapath's. ${KUBE_PROXY_NOTE}.`);

    const rows = res.figures().map((f) => [f.label, sig(f.median), sig(f.p99), f.target ? `${f.target.stat ?? 'median'} <= ${f.target.max} ms: ${f.met ? 'met' : 'NOT met'}` : '']);
    printTable(`Kubernetes source, ${SERVICES.toLocaleString('en')} services × ${ENDPOINTS} endpoints (ms)`, ['figure', 'median', 'p99', 'target'], rows);
    res.write();
    return res;
  } finally {
    await live?.source.stop();
    cluster.child.send({ cmd: 'exit' });
    await new Promise<void>((resolve) => {
      if (cluster.child.exitCode !== null) return resolve();
      const t = setTimeout(() => (cluster.child.kill(), resolve()), 5000);
      cluster.child.once('exit', () => (clearTimeout(t), resolve()));
    });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run({ quick: process.argv.includes('--quick') }).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

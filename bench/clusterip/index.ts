/**
 * bench/clusterip: a pod connecting to a ClusterIP, in the lab (src/lab),
 * with 1, 1,000 and 10,000 ClusterIP services defined (quick: 1 and
 * 1,000), the measured service last in every chain:
 *
 *   - xlb: the agents running; their socket hooks (xdp/xlb_sock.bpf.c,
 *     cgroup/connect4) connect the pod's socket straight to a backend, so
 *     no packet is ever addressed to the ClusterIP;
 *   - kube-proxy's layouts for the same services, the agents stopped (their
 *     hooks detached): the iptables layout restored with
 *     iptables-legacy-restore and with iptables-nft-restore, and the
 *     nftables layout with nft -f (bench/convergence/kubeproxy.ts,
 *     iptablesClusterIP and nftClusterIP), in the node's network namespace,
 *     where the pod's SYN enters through its veth: nat PREROUTING →
 *     KUBE-SERVICES (walked in order) → KUBE-SVC → KUBE-SEP → DNAT;
 *   - direct: the same connects to a backend's pod IP and target port, from
 *     the pod's network namespace but a cgroup outside the node's (no socket
 *     hook, no rule: nothing in the path); and direct-hooked, the same as
 *     the pod itself, xlb's hooks attached (what xlb adds to a connect that
 *     is not to a service).
 *
 * The probe is bench/e2e/connect-probe.c (blocking connects, each timed in
 * ns around connect()), run as pod n1p1: in its cgroup (where the node's
 * socket hooks apply) and its network namespace. The backends are the two
 * other pods of the same node, so the path is the least the network adds
 * (pod veth → node → pod veth) and the load balancer's share shows.
 *
 * Drift: the systems are measured in rounds; each round measures every
 * system at every size (sizes up, then down). While the agents run, xlb,
 * direct and direct-hooked alternate batch by batch in a rotating order;
 * with the agents stopped, the three layouts follow one another in a
 * rotating order (restoring 10,000 services takes the kernel up to a
 * minute, so each layout is restored once per size and round). Every
 * system and size gets the same number of batches of the same number of
 * connects; a run of a figure is the median of one batch (the batch p99s
 * are their own figures); ratios pair batches of the same round.
 *
 * DNS: dnsperf as the same pod, against kube-dns's ClusterIP 198.18.128.53
 * (served by xlb's sendmsg4/recvmsg4 hooks, or by kube-proxy's iptables
 * layout) and directly against the DNS pod's IP, at the largest size; the
 * Service kube-system/kube-dns has the one DNS pod of the client's node as
 * its endpoint, so every way reaches the same dnsmasq.
 *
 *   npm run bench -- --only clusterip [--quick]     (root)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { labUp, labDown, labExecArgv, labStopAgent, labStartAgent, type LabStatus, type LabPodStatus } from '../../src/lab/index.js';
import { LAB_CLUSTER_DNS, kubeDnsService, slice, type LabPod } from '../../src/lab/manifests.js';
import { sh } from '../../src/lab/sh.js';
import { cgroupExecArgv, createCgroup, ensureCgroup2Root, removeCgroup } from '../../src/util/cgroup.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';
import { ipToU32, u32ToIp } from '../../src/util/ip.js';
import * as kp from '../convergence/kubeproxy.js';
import { parseProbe, batchStats } from '../e2e/index.js';
import { BenchResult } from '../lib/results.js';
import { summarize } from '../lib/stats.js';
import { printTable, sig, pct, times } from '../lib/table.js';
import { groupedBars } from '../lib/chart.js';
import { requireRoot, requireTool } from '../lib/tools.js';
import { repoRoot } from '../lib/paths.js';

/** The systems measured for connect(): xlb, kube-proxy's three ways, and the two direct connects. */
export type System = 'xlb' | 'direct' | 'direct-hooked' | 'iptables-legacy' | 'iptables-nft' | 'nft';
/** kube-proxy's rule layouts, each restored by its own tool. */
const KUBE_PROXY = ['iptables-legacy', 'iptables-nft', 'nft'] as const;
type KubeProxySystem = (typeof KUBE_PROXY)[number];

interface Plan {
  sizes: number[];
  /** Rounds; each measures every system at every size. */
  rounds: number;
  /** Batches of connects per system, size and round. */
  batchesPerRound: number;
  /** Connects per batch. */
  connectsPerBatch: number;
  /** dnsperf run length, s, and runs per way and round. */
  dnsSeconds: number;
  dnsRunsPerRound: number;
}
const QUICK: Plan = { sizes: [1, 1000], rounds: 4, batchesPerRound: 3, connectsPerBatch: 200, dnsSeconds: 1, dnsRunsPerRound: 1 };
const FULL: Plan = { sizes: [1, 1000, 10000], rounds: 6, batchesPerRound: 3, connectsPerBatch: 400, dnsSeconds: 2, dnsRunsPerRound: 2 };
/** How long a probe or dnsperf run waits for a quiet machine before it runs anyway (noted). */
const QUIET_TIMEOUT_MS = 5000;
/** Connects before the measured ones in each probe run (neighbour entries, caches, the pods' accept queues). */
const CONNECT_WARMUP = 50;
/** The issue's targets: xlb's connect within 1.1x of the direct connect, and flat (10,000 services over 1). */
const DIRECT_TARGET = 1.1;
const GROWTH_TARGET = 1.1;
/** The pods' range, kube-proxy's --cluster-cidr (the lab's pod CIDRs are 198.19.N.0/24). */
export const CLUSTER_CIDR = '198.19.0.0/16';
/** The pod that connects, and the pods that serve (all on node1). */
const CLIENT_POD = 'n1p1';
const BACKEND_PODS = ['n1p2', 'n1p3'];
/** The measured service: last in the manifests and in every chain. */
export const MEASURED = { namespace: 'bench', name: 'web', portName: 'http', clusterIP: '198.18.128.80', port: 80, targetPort: 8080 } as const;
/** Service i of the others (0-based) has ClusterIP 198.18.129.0 + i: clear of the lab's 198.18.128.x. */
const OTHERS_BASE = ipToU32('198.18.129.0');
/** What dnsperf asks: names the lab's dnsmasq answers (src/lab/dns.ts). */
export const DNS_QUERIES = [
  `${MEASURED.name}.${MEASURED.namespace}.svc.${LAB_CLUSTER_DNS.domain} A`,
  `kube-dns.kube-system.svc.${LAB_CLUSTER_DNS.domain} A`,
  `_dns._udp.kube-dns.kube-system.svc.${LAB_CLUSTER_DNS.domain} SRV`,
  `dns-version.${LAB_CLUSTER_DNS.domain} TXT`,
];

/** One ClusterIP Service of the benchmark with its ports and ready endpoints. */
export interface BenchClusterService {
  namespace: string;
  name: string;
  clusterIP: string;
  ports: Array<{ name: string; protocol: 'TCP' | 'UDP'; port: number; targetPort: number }>;
  endpoints: LabPod[];
}

/**
 * The services of a run with `n` services: kube-system/kube-dns first (its
 * one endpoint `dnsPod`), then n − 1 others, then the measured one
 * (bench/web), each over `backends`. Every ClusterIP is in 198.18.128.0/17.
 * @throws Error when n is below 1 or above 30,000 (the range's room)
 */
export function clusterServices(n: number, backends: LabPod[], dnsPod: LabPod): BenchClusterService[] {
  if (!Number.isInteger(n) || n < 1 || n > 30000) throw new Error(`bench/clusterip: ${n} services: the count must be an integer in 1..30000`);
  const http = (port: number) => [{ name: MEASURED.portName, protocol: 'TCP' as const, port, targetPort: MEASURED.targetPort }];
  const out: BenchClusterService[] = [
    {
      namespace: 'kube-system',
      name: 'kube-dns',
      clusterIP: LAB_CLUSTER_DNS.clusterIP,
      ports: [
        { name: 'dns', protocol: 'UDP', port: LAB_CLUSTER_DNS.port, targetPort: LAB_CLUSTER_DNS.port },
        { name: 'dns-tcp', protocol: 'TCP', port: LAB_CLUSTER_DNS.port, targetPort: LAB_CLUSTER_DNS.port },
      ],
      endpoints: [dnsPod],
    },
  ];
  for (let i = 0; i < n - 1; i++) out.push({ namespace: MEASURED.namespace, name: `svc-${i}`, clusterIP: u32ToIp(OTHERS_BASE + i), ports: http(MEASURED.port), endpoints: backends });
  out.push({ namespace: MEASURED.namespace, name: MEASURED.name, clusterIP: MEASURED.clusterIP, ports: http(MEASURED.port), endpoints: backends });
  return out;
}

/** The services as a manifests file (a v1 List in JSON: type ClusterIP Services and their EndpointSlices). */
export function clusterManifests(services: BenchClusterService[]): string {
  const items: unknown[] = [];
  for (const s of services) {
    if (s.namespace === 'kube-system' && s.name === 'kube-dns') items.push(kubeDnsService());
    else
      items.push({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: s.name, namespace: s.namespace, labels: { app: s.name } },
        spec: {
          type: 'ClusterIP',
          clusterIP: s.clusterIP,
          clusterIPs: [s.clusterIP],
          internalTrafficPolicy: 'Cluster',
          ipFamilies: ['IPv4'],
          ipFamilyPolicy: 'SingleStack',
          sessionAffinity: 'None',
          selector: { app: s.name },
          ports: s.ports.map((p) => ({ name: p.name, protocol: p.protocol, port: p.port, targetPort: p.targetPort })),
        },
      });
    items.push(slice(s.name, s.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })), s.endpoints, s.namespace));
  }
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items });
}

/** The services as kube-proxy's generators take them: one entry per service port, endpoints at the target port. */
export function kubeProxyServices(services: BenchClusterService[]): kp.ClusterIPService[] {
  return services.flatMap((s) =>
    s.ports.map((p) => ({
      namespace: s.namespace,
      name: s.name,
      portName: p.name,
      vip: s.clusterIP,
      port: p.port,
      protocol: p.protocol,
      endpoints: s.endpoints.map((e) => ({ ip: e.ip, port: p.targetPort, nodeName: e.node })),
    })),
  );
}

/** Build bench/e2e/connect-probe.c into `dir`; returns the binary's path. */
function buildProbe(dir: string): string {
  const out = path.join(dir, 'connect-probe');
  execFileSync('clang', ['-O2', '-Wall', '-Werror', '-o', out, path.join(repoRoot, 'bench/e2e/connect-probe.c')], { stdio: ['ignore', 'inherit', 'inherit'] });
  return out;
}

/** Busy CPU time of the whole machine so far (user, nice, system, irq, softirq of /proc/stat's `cpu` line), in clock ticks. */
function busyTicks(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6];
}

/**
 * Wait until the machine is quiet: under 10% of one CPU busy over a 300-ms
 * window, at most `timeoutMs`. Processes are not enough to watch: after a
 * layout is restored or removed the kernel may still be freeing it in a
 * worker, and an agent that has just programmed 10,000 services still
 * collects garbage; a connect measured then would be charged for their work.
 * @returns whether it became quiet
 */
async function waitQuiet(timeoutMs: number): Promise<boolean> {
  const hz = 100; // USER_HZ on Linux
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const t0 = busyTicks();
    await new Promise((r) => setTimeout(r, 300));
    if ((busyTicks() - t0) / hz <= 0.3 * 0.1) return true;
  }
  return false;
}

/**
 * dnsperf's report: queries per second, and the queries sent, completed,
 * lost and answered NOERROR.
 * @throws Error naming `what` when the report lacks them
 */
export function parseDnsperf(out: string, what: string): { qps: number; sent: number; completed: number; lost: number; noerror: number } {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) throw new Error(`bench/clusterip: ${what}: dnsperf's report has no ${re.source.split('\\')[0].trim()}:\n${out.slice(-1500)}`);
    return Number(m[1]);
  };
  const noerror = /Response codes:.*\bNOERROR (\d+)/.exec(out);
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    noerror: noerror ? Number(noerror[1]) : 0,
  };
}

/** `1 service`, `1,000 services`. */
const svcs = (n: number) => (n === 1 ? '1 service' : `${n.toLocaleString('en')} services`);

/** `xs` rotated left by `k` (the order of a round). */
function rotate<T>(xs: readonly T[], k: number): T[] {
  const s = ((k % xs.length) + xs.length) % xs.length;
  return [...xs.slice(s), ...xs.slice(0, s)];
}

/** What each system is, for labels. */
const DESCRIPTION: Record<System, string> = {
  xlb: 'xlb (socket hooks) to the ClusterIP',
  direct: 'direct to the backend pod, nothing in the path',
  'direct-hooked': "direct to the backend pod, xlb's hooks attached",
  'iptables-legacy': "kube-proxy's iptables layout (iptables-legacy) to the ClusterIP",
  'iptables-nft': "kube-proxy's iptables layout (iptables-nft) to the ClusterIP",
  nft: "kube-proxy's nftables layout (nft) to the ClusterIP",
};
const SYSTEMS: System[] = ['xlb', 'direct', 'direct-hooked', ...KUBE_PROXY];
/** The systems measured while xlb's agents run, alternating batch by batch. */
const XLB_GROUP = ['xlb', 'direct', 'direct-hooked'] as const;
/** The DNS ways: through the ClusterIP by xlb or by kube-proxy's iptables layout, or to the DNS pod. */
type DnsWay = 'xlb' | 'direct' | 'iptables-legacy';

/** The connects of one system at one size, over all rounds. */
interface Samples {
  medians: number[];
  p99s: number[];
  failed: number;
  connects: number;
}

/** Run the benchmark and write bench/results/clusterip.{json,svg}. */
export async function run(opts: { quick: boolean }): Promise<BenchResult> {
  requireRoot('bench/clusterip');
  for (const [t, pkg] of [
    ['iptables-legacy-restore', 'iptables'],
    ['iptables-nft-restore', 'iptables'],
    ['nft', 'nftables'],
    ['clang', 'clang'],
    ['dnsperf', 'dnsperf'],
    ['curl', 'curl'],
    ['nsenter', 'util-linux'],
  ])
    requireTool('bench/clusterip', t, pkg);
  const plan = opts.quick ? QUICK : FULL;
  const fewest = plan.sizes[0];
  const most = plan.sizes[plan.sizes.length - 1];
  const batches = plan.rounds * plan.batchesPerRound;
  const res = new BenchResult('clusterip', 'A pod connecting to a ClusterIP: xlb socket hooks, kube-proxy rule layouts, direct', opts.quick);
  res.method.push(
    `Lab: one node, pods n1p1 (the client), n1p2 and n1p3 (the backends: Node HTTP servers on 8080), the DNS pod n1dns (dnsmasq). Services: N in ${plan.sizes.join(', ')} of type ClusterIP in 198.18.128.0/17, port 80 → 8080, the two backends each: kube-system/kube-dns first, bench/web (${MEASURED.clusterIP}, the measured one) last in the manifests and in every chain.`,
    `connect(): bench/e2e/connect-probe.c run as pod ${CLIENT_POD} (its cgroup, its network namespace): blocking TCP connects one after another, CLOCK_MONOTONIC around connect(), ${CONNECT_WARMUP} warm-up connects per run; failed connects are counted, never timed. Each run waits for a quiet machine (under 10% of a CPU for 300 ms, at most ${QUIET_TIMEOUT_MS / 1000} s). The client pod has ephemeral ports 1024-65535 and net.ipv4.tcp_tw_reuse=1: with the default range, tens of thousands of connects to one address within TIME_WAIT's 60 s made each connect() search ~3 ms for a free port.`,
    `Systems: xlb (agents running, socket hooks on the node's cgroup, the probe to the ClusterIP); kube-proxy's nat layouts for the same services (bench/convergence/kubeproxy.ts iptablesClusterIP / nftClusterIP, cluster CIDR ${CLUSTER_CIDR}) restored with iptables-legacy-restore, iptables-nft-restore and nft -f in the node's namespace, agents stopped; direct to ${BACKEND_PODS[0]}:8080 from the pod's namespace but a cgroup outside the node's (no hook, no rule), and direct-hooked, the same as the pod (xlb's hooks attached, not matching).`,
    `Order: ${plan.rounds} rounds; each measures every system at every size (sizes up, then down), ${plan.batchesPerRound} batches of ${plan.connectsPerBatch} connects per system. Agents running: xlb, direct and direct-hooked alternate batch by batch (one probe run per batch) in a rotating order. Agents stopped: the three layouts in a rotating order, each restored, checked, measured (one probe run of ${plan.batchesPerRound} batches) and removed. Which of the two groups comes first alternates. Every figure has ${batches} runs: one run = the median of one batch; the batch p99s are the connect-p99 figures.`,
    `Checks: with the agents stopped and no rules the ClusterIP must not answer; through xlb and through each layout an HTTP request must reach a backend that sees the pod's own source address; through each layout 20 probe connects must be counted by an nft rule that matches connections DNATed from the ClusterIP to a backend; during xlb's and the direct connects node1's conntrack table must not grow (no NAT in the path, no layout left behind).`,
    `Ratios: each system's connect figure has its median over direct's; the ratio figures pair batches of the same round (batch i of one system over batch i of the other): xlb over direct, held to ≤ ${DIRECT_TARGET}; xlb over direct-hooked; kube-proxy's layouts over xlb; growth = batch at ${svcs(most)} over the batch at ${svcs(fewest)}, xlb's held to ≤ ${GROWTH_TARGET}.`,
    `DNS at ${svcs(most)}: dnsperf -c 1 -l ${plan.dnsSeconds} (up to 100 queries outstanding), ${plan.dnsRunsPerRound} run(s) per way and round, ${DNS_QUERIES.length} names dnsmasq answers (${DNS_QUERIES.map((q) => q.split(' ')[0]).join(', ')}): as pod ${CLIENT_POD} to kube-dns's ClusterIP ${LAB_CLUSTER_DNS.clusterIP} through xlb, alternating with direct to the DNS pod's IP (from outside the hooks' cgroup, agents running), and as the pod to the ClusterIP through kube-proxy's iptables layout (iptables-legacy, agents stopped); kube-dns has the one DNS pod n1dns as its endpoint, so every way reaches the same server.`,
  );
  res.note('The probe, the pods, dnsmasq and dnsperf share the 2 cores of this machine with whatever else runs on it: read the medians over many batches, the ratios (measured in the same rounds) and the spread, not single samples.');
  if (opts.quick) res.note(`Quick mode: ${plan.sizes.join(' and ')} services, ${plan.rounds} rounds of ${plan.batchesPerRound} × ${plan.connectsPerBatch} connects; a full run adds 10,000 services and has ${FULL.rounds} rounds of ${FULL.batchesPerRound} × ${FULL.connectsPerBatch}.`);

  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-bench-clusterip-'));
  const samples = new Map<string, Samples>();
  const dnsRuns = new Map<DnsWay, number[]>();
  const restoreMs = new Map<string, number[]>();
  /** Probe and dnsperf runs that started without the machine having been quiet. */
  const notQuiet: string[] = [];
  let lab: LabStatus | undefined;
  // The direct connects run here: in the client pod's network namespace, but outside the node's cgroup (no socket hook).
  const outsideCgroup = path.join(ensureCgroup2Root(), `xlb-bench-clusterip-${path.basename(stateDir).slice(-6)}`);
  try {
    createCgroup(outsideCgroup);
    const probe = buildProbe(stateDir);
    const queryFile = path.join(stateDir, 'queries.txt');
    fs.writeFileSync(queryFile, `${DNS_QUERIES.join('\n')}\n`);
    // dnsmasq answers for the services of the manifests the lab starts with: the smallest set (its names are the queries').
    const seed = path.join(stateDir, 'seed.json');
    const conventional = (j: number): LabPod => ({ name: `n1p${j}`, ip: `198.19.1.${10 + j}`, node: 'node1' });
    fs.writeFileSync(seed, clusterManifests(clusterServices(fewest, [conventional(2), conventional(3)], { name: 'n1dns', ip: '198.19.1.2', node: 'node1', namespace: 'kube-system' })));
    lab = await labUp({ nodes: 1, podsPerNode: 3, agents: true, announce: 'static', stateDir: path.join(stateDir, 'lab'), manifests: seed });
    const L = lab;
    const node = L.nodes[0];
    const pod = (name: string): LabPodStatus => {
      const p = L.pods.find((x) => x.name === name);
      if (!p) throw new Error(`bench/clusterip: the lab has no pod ${name}`);
      return p;
    };
    const backends = BACKEND_PODS.map(pod);
    const dnsPod = L.clusterDns.pods[0];
    // Tens of thousands of connects to one address within TIME_WAIT's 60 s fill the client's ephemeral ports
    // for that address, and connect() turns into a search for a free port (~3 ms each here past ~14,000
    // sockets in TIME_WAIT): a wider range, and ports whose TIME_WAIT is over a second old reused.
    await sh('ip', ['netns', 'exec', pod(CLIENT_POD).netns, 'sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=1']);
    /** Run argv as the client pod; `outside`: in the pod's network namespace but a cgroup outside the node's, where no socket hook applies. */
    const asClient = async (argv: string[], timeoutMs = 30_000, outside = false) => {
      const a = outside ? cgroupExecArgv(outsideCgroup, ['ip', 'netns', 'exec', pod(CLIENT_POD).netns, ...argv]) : labExecArgv(L.stateDir, CLIENT_POD, argv);
      return sh(a[0], a.slice(1), { timeoutMs });
    };
    const inNode = (argv: string[], input?: string) => sh('nsenter', [`--net=/run/netns/${node.netns}`, '--', ...argv], { input, timeoutMs: 300_000 });
    const conntrackCount = async () => Number((await inNode(['cat', '/proc/sys/net/netfilter/nf_conntrack_count']).catch(() => '0')).trim()) || 0;
    let agentsRunning = true;
    const stopAgents = async () => {
      if (!agentsRunning) return;
      for (const n of L.nodes) await labStopAgent(L.stateDir, n.name);
      agentsRunning = false;
    };
    await stopAgents(); // they started with the seed; each round starts them on its own manifests

    /** An HTTP request through `url` from the client pod: answered by a backend that saw the pod's own address. */
    const checkReachesBackend = async (what: string, url: string) => {
      const body = (await asClient(['curl', '-s', '-m', '2', url])).trim();
      const m = /^(\S+) (\S+):\d+$/.exec(body);
      if (!m || !BACKEND_PODS.includes(m[1]) || m[2] !== pod(CLIENT_POD).ip)
        throw new Error(`bench/clusterip: ${what}: ${url} answered ${JSON.stringify(body.slice(0, 80))}, not a backend (${BACKEND_PODS.join(', ')}) seeing ${pod(CLIENT_POD).ip}`);
    };

    /** One probe run of `system` at size n: `batches` × connectsPerBatch connects to host:port. */
    const measure = async (system: System, n: number, host: string, port: number, batches: number) => {
      const what = `${system}, ${svcs(n)}`;
      const count = batches * plan.connectsPerBatch;
      if (!(await waitQuiet(QUIET_TIMEOUT_MS))) notQuiet.push(what);
      const ct0 = await conntrackCount();
      const out = await asClient([probe, host, String(port), String(count), String(CONNECT_WARMUP)], 120_000, system === 'direct');
      const ct1 = await conntrackCount();
      let p: ReturnType<typeof parseProbe>;
      try {
        p = parseProbe(out.trim().split('\n').pop() ?? '', what);
      } catch (e) {
        throw new Error(`bench/clusterip: ${(e as Error).message}`);
      }
      if (p.failed) res.note(`${what}: ${p.failed} of ${count} connects failed (${p.error}); they are not timed.`);
      if (p.failed > count * 0.01) throw new Error(`bench/clusterip: ${what}: ${p.failed} of ${count} connects failed (${p.error})`);
      // xlb and the direct connects pass no NAT: node1's conntrack must not even be running for them.
      if (!(KUBE_PROXY as readonly string[]).includes(system) && ct1 > ct0)
        throw new Error(`bench/clusterip: ${what}: node1's conntrack table grew from ${ct0} to ${ct1} entries: a kube-proxy layout was left behind`);
      const per = Math.floor(p.ns.length / batches);
      const b = batchStats(p.ns, batches, per);
      const key = `${system}/${n}`;
      const acc = samples.get(key) ?? { medians: [], p99s: [], failed: 0, connects: 0 };
      acc.medians.push(...b.medians);
      acc.p99s.push(...b.p99s);
      acc.failed += p.failed;
      acc.connects += count;
      samples.set(key, acc);
      console.log(`clusterip: ${what}: ${sig(summarize(b.medians).median / 1000)} µs (batch p99 ${sig(summarize(b.p99s).median / 1000)} µs)`);
    };

    /** One dnsperf run as the client pod (direct: outside the hooks' cgroup) against `server`. */
    const dns = async (way: DnsWay, server: string) => {
      const what = `DNS ${way} (${server})`;
      if (!(await waitQuiet(QUIET_TIMEOUT_MS))) notQuiet.push(what);
      const argv = ['dnsperf', '-s', server, '-p', String(LAB_CLUSTER_DNS.port), '-d', queryFile, '-l', String(plan.dnsSeconds), '-c', '1'];
      const d = parseDnsperf(await asClient(argv, (plan.dnsSeconds + 30) * 1000, way === 'direct'), what);
      if (d.lost > d.sent * 0.01 || d.noerror < d.completed) throw new Error(`bench/clusterip: ${what}: ${d.lost} of ${d.sent} queries lost, ${d.completed - d.noerror} answered other than NOERROR`);
      dnsRuns.set(way, [...(dnsRuns.get(way) ?? []), d.qps]);
      console.log(`clusterip: ${what}: ${sig(d.qps)} queries/s`);
    };

    /**
     * xlb's agents on the manifests of n services: xlb, direct and direct with the hooks, batch by batch in a
     * rotating order (one probe run per batch, so the three alternate within the round); DNS at the largest size.
     */
    const xlbGroup = async (r: number, n: number, services: BenchClusterService[]) => {
      fs.writeFileSync(L.manifests, clusterManifests(services));
      for (const x of L.nodes) await labStartAgent(L.stateDir, x.name);
      agentsRunning = true;
      await waitFor(
        async () => {
          const v = (await apiGet(node.api, `/v1/services/${MEASURED.namespace}/${MEASURED.name}`, { allowError: true, timeoutMs: 5000 })) as { ports?: Array<{ frontends?: Array<{ kind?: string; served?: boolean }> }> };
          return !!v.ports?.[0]?.frontends?.some((f) => f.kind === 'ClusterIP' && f.served);
        },
        120_000,
        `node1's agent to serve ${MEASURED.namespace}/${MEASURED.name}'s ClusterIP with ${svcs(n)}`,
        100,
      );
      // The agent has just programmed n services: let it settle (measure waits for a quiet machine too, but only 5 s).
      await waitQuiet(30_000);
      await checkReachesBackend(`xlb, ${svcs(n)}`, `http://${MEASURED.clusterIP}:${MEASURED.port}/`);
      for (let b = 0; b < plan.batchesPerRound; b++) {
        for (const system of rotate(XLB_GROUP, r + b)) {
          if (system === 'xlb') await measure('xlb', n, MEASURED.clusterIP, MEASURED.port, 1);
          else await measure(system, n, backends[0].ip, MEASURED.targetPort, 1);
        }
      }
      if (n === most) {
        for (let k = 0; k < plan.dnsRunsPerRound; k++) {
          for (const way of rotate(['xlb', 'direct'] as const, r + k)) await dns(way, way === 'xlb' ? LAB_CLUSTER_DNS.clusterIP : dnsPod.ip);
        }
      }
      await stopAgents();
    };

    const install = async (system: KubeProxySystem, services: kp.ClusterIPService[]) => {
      if (system === 'nft') await inNode(['nft', '-f', '-'], kp.nftClusterIP(services, CLUSTER_CIDR));
      else await inNode([`${system}-restore`, '-w'], kp.iptablesClusterIP(services, CLUSTER_CIDR));
    };
    const uninstall = async (system: KubeProxySystem) => {
      if (system === 'nft') await inNode(['nft', '-f', '-'], kp.NFT_EMPTY);
      else if (system === 'iptables-legacy') await inNode(['iptables-legacy-restore', '-w'], kp.IPTABLES_EMPTY);
      // iptables-nft's nat table is an nf_tables table: delete it whole, base chains and all.
      else await inNode(['nft', 'delete', 'table', 'ip', 'nat']);
    };
    /** 20 probe connects through the layout, counted by a separate nft table as connections DNATed from the ClusterIP to a backend. */
    const checkThroughRules = async (what: string) => {
      const check = 'xlb-bench-check';
      const backendSet = backends.map((b) => b.ip).join(', ');
      await inNode(
        ['nft', '-f', '-'],
        [
          `add table ip ${check}`,
          `add chain ip ${check} seen { type filter hook postrouting priority 300 ; policy accept ; }`,
          `add rule ip ${check} seen ct state new ct status dnat ct original ip daddr ${MEASURED.clusterIP} ip daddr { ${backendSet} } tcp dport ${MEASURED.targetPort} counter`,
          '',
        ].join('\n'),
      );
      try {
        const p = parseProbe((await asClient([probe, MEASURED.clusterIP, String(MEASURED.port), '20', '0'])).trim().split('\n').pop() ?? '', what);
        const listed = await inNode(['nft', 'list', 'table', 'ip', check]);
        const counted = Number(/counter packets (\d+)/.exec(listed)?.[1] ?? -1);
        if (p.failed || counted !== 20) throw new Error(`bench/clusterip: ${what}: of 20 connects to ${MEASURED.clusterIP}:${MEASURED.port}, ${20 - p.failed} succeeded and ${counted} were DNATed by the rules`);
      } finally {
        await inNode(['nft', 'delete', 'table', 'ip', check]);
      }
    };

    /** The agents stopped: each kube-proxy layout in turn (in a rotating order), restored, checked, measured, removed. */
    const kubeGroup = async (r: number, n: number, services: kp.ClusterIPService[]) => {
      await stopAgents();
      // Nothing may answer for the ClusterIP now: no socket hook, no rule.
      const none = await asClient(['curl', '-s', '--connect-timeout', '0.5', '-m', '1', `http://${MEASURED.clusterIP}:${MEASURED.port}/`]).then(
        (body) => body,
        () => undefined,
      );
      if (none !== undefined) throw new Error(`bench/clusterip: with the agents stopped and no rules, ${MEASURED.clusterIP} still answered ${JSON.stringify(none.slice(0, 80))}`);
      for (const system of rotate(KUBE_PROXY, r)) {
        const t0 = performance.now();
        await install(system, services);
        const ms = performance.now() - t0;
        restoreMs.set(`${system}/${n}`, [...(restoreMs.get(`${system}/${n}`) ?? []), ms]);
        try {
          await checkReachesBackend(`${system}, ${svcs(n)}`, `http://${MEASURED.clusterIP}:${MEASURED.port}/`);
          await checkThroughRules(`${system}, ${svcs(n)}`);
          await measure(system, n, MEASURED.clusterIP, MEASURED.port, plan.batchesPerRound);
          if (system === 'iptables-legacy' && n === most) for (let k = 0; k < plan.dnsRunsPerRound; k++) await dns('iptables-legacy', LAB_CLUSTER_DNS.clusterIP);
        } finally {
          await uninstall(system);
        }
        if (r === 0) console.log(`clusterip: ${system}: ${svcs(n)} restored in ${sig(ms / 1000)} s`);
      }
    };

    for (let r = 0; r < plan.rounds; r++) {
      const sizes = r % 2 ? [...plan.sizes].reverse() : plan.sizes;
      for (const [k, n] of sizes.entries()) {
        const services = clusterServices(n, backends, dnsPod);
        const groups = (r + k) % 2 ? (['kube', 'xlb'] as const) : (['xlb', 'kube'] as const);
        console.log(`clusterip: round ${r + 1}/${plan.rounds}, ${svcs(n)} (${groups.join(' then ')})`);
        for (const g of groups) {
          if (g === 'xlb') await xlbGroup(r, n, services);
          else await kubeGroup(r, n, kubeProxyServices(services));
        }
      }
    }
  } finally {
    if (lab) await labDown(lab.stateDir);
    await removeCgroup(outsideCgroup);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }

  if (notQuiet.length) res.note(`${notQuiet.length} probe or dnsperf runs started without the machine quiet (under 10% of a CPU for 300 ms) within ${QUIET_TIMEOUT_MS / 1000} s: ${[...new Set(notQuiet)].join('; ')}.`);

  // Figures: connect() per system and size, its batch p99s, ratios and growth.
  const get = (system: System, n: number) => {
    const s = samples.get(`${system}/${n}`);
    if (!s || s.medians.length !== batches) throw new Error(`bench/clusterip: ${system}, ${svcs(n)}: ${s?.medians.length ?? 0} batches measured, ${batches} planned`);
    return s;
  };
  for (const n of plan.sizes) {
    for (const system of SYSTEMS) {
      const s = get(system, n);
      res.add({
        id: `${system}.connect.services-${n}`,
        label: `${DESCRIPTION[system]}: connect(), ${svcs(n)}${system === 'direct' ? '' : ' (ratio: over direct)'}`,
        unit: 'ns',
        runs: s.medians,
        params: { system, metric: 'connect', services: n, batches, connectsPerBatch: plan.connectsPerBatch, failed: s.failed, headline: system === 'xlb' && n === most },
        baseline: system === 'direct' ? undefined : `direct.connect.services-${n}`,
      });
      res.add({
        id: `${system}.connect-p99.services-${n}`,
        label: `${DESCRIPTION[system]}: connect() p99 of each batch, ${svcs(n)}`,
        unit: 'ns',
        runs: s.p99s,
        params: { system, metric: 'connect-p99', services: n },
        baseline: system === 'direct' ? undefined : `direct.connect-p99.services-${n}`,
      });
    }
  }
  // Ratios paired by round: batch i of one system over batch i of the other (the same round, measured minutes
  // apart at most), so that a slow round of the machine cancels instead of landing on one side.
  const paired = (a: Samples, b: Samples) => a.medians.map((v, i) => v / b.medians[i]);
  for (const n of plan.sizes) {
    res.add({
      id: `ratio.xlb-vs-direct.services-${n}`,
      label: `xlb's connect() to the ClusterIP over the direct connect to the backend (paired by round), ${svcs(n)}`,
      unit: 'ratio',
      runs: paired(get('xlb', n), get('direct', n)),
      params: { metric: 'ratio-direct', services: n, headline: true },
      target: { max: DIRECT_TARGET, source: 'the issue: xlb within 1.1x of the direct connect at every size' },
    });
    res.add({
      id: `ratio.xlb-vs-direct-hooked.services-${n}`,
      label: `xlb's connect() to the ClusterIP over the direct connect with xlb's hooks attached (paired by round), ${svcs(n)}`,
      unit: 'ratio',
      runs: paired(get('xlb', n), get('direct-hooked', n)),
      params: { metric: 'ratio-direct-hooked', services: n },
    });
    for (const system of KUBE_PROXY) {
      res.add({
        id: `ratio.${system}-vs-xlb.services-${n}`,
        label: `${system}'s connect() to the ClusterIP over xlb's (paired by round), ${svcs(n)}`,
        unit: 'ratio',
        runs: paired(get(system, n), get('xlb', n)),
        params: { system, metric: 'ratio-xlb', services: n, headline: n === most },
      });
    }
  }
  for (const system of SYSTEMS) {
    res.add({
      id: `growth.${system}.connect`,
      label: `${system}: connect() at ${svcs(most)} over ${svcs(fewest)} (paired by round)`,
      unit: 'ratio',
      runs: paired(get(system, most), get(system, fewest)),
      params: { system, metric: 'connect-growth', headline: !system.startsWith('direct') },
      ...(system === 'xlb' ? { target: { max: GROWTH_TARGET, source: "the issue: xlb's connect() flat in the number of services" } } : {}),
    });
  }
  // How long each layout took to restore (it sets how long a run takes; bench/convergence measures restores properly).
  for (const system of KUBE_PROXY) {
    for (const n of plan.sizes) {
      res.add({
        id: `${system}.restore.services-${n}`,
        label: `${system}: kube-proxy's ClusterIP layout for ${svcs(n)} restored into the node's empty nat table (wall time of the tool)`,
        unit: 'ms',
        runs: restoreMs.get(`${system}/${n}`) ?? [],
        params: { system, metric: 'restore', services: n },
      });
    }
  }
  const dnsWays: DnsWay[] = ['xlb', 'direct', 'iptables-legacy'];
  for (const way of dnsWays) {
    const runs = dnsRuns.get(way) ?? [];
    if (runs.length !== plan.rounds * plan.dnsRunsPerRound) throw new Error(`bench/clusterip: DNS ${way}: ${runs.length} dnsperf runs, ${plan.rounds * plan.dnsRunsPerRound} planned`);
    res.add({
      id: `dns.${way}.qps`,
      label:
        way === 'direct'
          ? `DNS lookups/s to the DNS pod directly (dnsperf, ${svcs(most)})`
          : `DNS lookups/s to kube-dns's ClusterIP through ${way === 'xlb' ? 'xlb' : "kube-proxy's iptables layout (iptables-legacy)"} (ratio: over direct), ${svcs(most)}`,
      unit: 'queries/s',
      runs,
      params: { way, metric: 'dns-qps', services: most, seconds: plan.dnsSeconds, headline: way !== 'direct' },
      baseline: way === 'direct' ? undefined : 'dns.direct.qps',
    });
  }

  const rows: Array<Array<string | number>> = [];
  for (const n of plan.sizes) {
    for (const system of SYSTEMS) {
      const c = res.get(`${system}.connect.services-${n}`);
      const p = res.get(`${system}.connect-p99.services-${n}`);
      const vsXlb = system === 'xlb' ? '' : times(c.median / res.get(`xlb.connect.services-${n}`).median);
      rows.push([`${system} (N=${n})`, `${sig(c.median / 1000)} ${pct(c.spread)}`, sig(p.median / 1000), c.ratio === undefined ? '' : times(c.ratio), vsXlb]);
    }
  }
  printTable('ClusterIP connect(): µs, median of batch medians (spread) / median of batch p99s; median over direct\'s (nothing in the path), over xlb\'s', ['system', 'median µs', 'p99 µs', '/ direct', '/ xlb'], rows);
  for (const n of plan.sizes) {
    const g = res.get(`ratio.xlb-vs-direct.services-${n}`);
    console.log(`clusterip: ${g.label}: ${times(g.median)} ${pct(g.spread)} (target <= ${DIRECT_TARGET}: ${g.met ? 'met' : 'NOT met'})`);
  }
  for (const system of SYSTEMS) {
    const g = res.get(`growth.${system}.connect`);
    console.log(`clusterip: ${g.label}: ${times(g.median)} ${pct(g.spread)}${g.target ? ` (target <= ${GROWTH_TARGET}: ${g.met ? 'met' : 'NOT met'})` : ''}`);
  }
  for (const way of dnsWays) {
    const d = res.get(`dns.${way}.qps`);
    console.log(`clusterip: ${d.label}: ${sig(d.median)} ${pct(d.spread)}${d.ratio !== undefined ? ` (${times(d.ratio)} of direct)` : ''}`);
  }

  const bars: Array<{ panel: string; x: string; series: string; value: number }> = [];
  for (const n of plan.sizes) {
    for (const system of SYSTEMS) {
      const c = res.get(`${system}.connect.services-${n}`);
      bars.push({ panel: 'connect() to the ClusterIP, µs (lower is better)', x: svcs(n), series: system, value: +(c.median / 1000).toFixed(1) });
      if (system !== 'direct') bars.push({ panel: 'over direct (target for xlb: ≤ 1.1)', x: svcs(n), series: system, value: +(c.ratio ?? 0).toFixed(2) });
    }
  }
  for (const way of dnsWays) bars.push({ panel: `DNS lookups/s (dnsperf, ${most.toLocaleString('en')} services)`, x: 'kube-dns', series: way, value: Math.round(res.get(`dns.${way}.qps`).median) });
  res.write(
    await groupedBars(bars, {
      title: 'A pod connecting to a ClusterIP: xlb vs kube-proxy rule layouts vs direct (medians)',
      yTitle: '',
      seriesOrder: [...SYSTEMS],
      rules: [{ value: DIRECT_TARGET, label: 'xlb target 1.1x', panel: 'over direct (target for xlb: ≤ 1.1)' }],
    }),
  );
  return res;
}

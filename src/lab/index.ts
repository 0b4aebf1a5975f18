/**
 * The lab: network namespaces that stand in for a cluster and its router.
 *
 *   client (198.18.1.2) ── router (198.18.1.1 | 198.18.0.1) ── fabric bridge
 *                                                              ├── node1 eth0 198.18.0.11 ── pods 198.19.1.11, .12, ...
 *                                                              └── node2 eth0 198.18.0.12 ── pods 198.19.2.11, .12, ...
 *
 * The router is a BIRD 2 (bird.ts) with an eBGP session to every node: each
 * node's agent announces its VIPs through gobgpd and the router installs one
 * equal-cost multipath route per VIP (L4 hashing). With `announce: 'static'`
 * the router instead sends the whole VIP range 192.0.2.0/24 to every node by
 * static ECMP routes (no agents needed: the benchmarks' baseline). Each node
 * runs one xlb agent with XDP on eth0.
 * Pods are wired as a CNI would: a veth per pod, a /32 on the pod, the node's
 * end answering for the pod's gateway 198.19.N.1, a host route per pod.
 * Every veth is created inside the namespaces, so the machine's own
 * interfaces are never touched.
 *
 * Each node also has a cgroup v2 subtree, as a kubelet has:
 *
 *   <cgroup2 root>/xlb-lab-<suffix>/node1/        the node's agent attaches socket programs here (socketLB.cgroupRoot)
 *                                      ├── host/  the node's own processes started by tests (labNodeExec)
 *                                      ├── n1p1/  every process of pod n1p1 (its pod-server, labPodExec commands)
 *                                      └── n1dns/ the node's cluster DNS pod (dnsmasq)
 *
 * Every process of a pod runs in its pod's cgroup and network namespace and
 * sees the pod's /etc/resolv.conf (cluster DNS first, as the kubelet writes
 * it for dnsPolicy ClusterFirst): `ip netns exec` bind-mounts
 * /etc/netns/<pod netns>/resolv.conf over /etc/resolv.conf. The agents run
 * outside these cgroups. The cluster DNS is Service kube-system/kube-dns
 * (ClusterIP 198.18.128.53) over one dnsmasq per node (dns.ts), in a DNS
 * pod of its own (n1dns, 198.19.1.2, ...), so the other services keep
 * their backends; it answers for the services of the manifests as they are
 * at `labUp` (later edits of the file are not followed).
 *
 * Names carry a per-run suffix; everything made (namespaces, cgroups,
 * /etc/netns directories, processes) is recorded in <stateDir>/lab.json as
 * it is made, so `labDown` also removes a lab that failed half-way.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { ipn, nsExec, sh } from './sh.js';
import { LAB_CLUSTER_DNS, labDnsPod, labManifests, type LabPod } from './manifests.js';
import { clusterDnsRecords, dnsmasqArgv, podResolvConf } from './dns.js';
import { cgroupExecArgv, createCgroup, ensureCgroup2Root, removeCgroup } from '../util/cgroup.js';
import { apiGet } from '../cli/client.js';
import { waitFor } from '../util/wait.js';
import { ensureBpffs, PIN_BASE, removePins } from '../datapath/bpf.js';
import { birdConfig, birdEstablished, birdRoutes, LAB_NODE_ASN, LAB_ROUTER_ASN } from './bird.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const XDP_PASS_OBJ = path.join(repo, 'xdp/build/xlb_xdp_pass.bpf.o');
/** The port of the lab agents' metrics listeners (deploy/20-configmap.yaml's). */
export const LAB_METRICS_PORT = 9877;
/** Pin directories of lab agents: /sys/fs/bpf/xlb/lab-<suffix>-<node>. */

/** One node of the lab. */
export interface LabNode {
  name: string;
  netns: string;
  ip: string;
  mac: string;
  agentPid: number | null;
  /** The agent's API: unix:<stateDir>/<node>.sock */
  api: string;
  /** The agent's Hubble Observer API (gRPC): unix:<stateDir>/<node>-hubble.sock */
  hubble: string;
  /** The agent's metrics listener (metrics.listen), as Prometheus would scrape it: <node IP>:9877. */
  metrics: string;
  podCidr: string;
  /** The node's cgroup v2 subtree (its agent's socketLB.cgroupRoot): <lab cgroup>/<node>. */
  cgroup: string;
  /** Where the node's own processes started by tests run: <node cgroup>/host. */
  hostCgroup: string;
}

/** One pod of the lab. */
export interface LabPodStatus extends LabPod {
  netns: string;
  /** The pod's workload (pod-server; dnsmasq in a DNS pod). */
  pid: number | null;
  /** The pod's cgroup v2 directory: <node cgroup>/<pod>. */
  cgroup: string;
}

/** A service frontend of the lab's manifests with its backends. */
export interface LabService {
  namespace: string;
  name: string;
  vip: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  backends: string[];
}

/**
 * How the client reaches the VIPs: the router learns them by BGP from the
 * agents (default), or has static routes to every node, or (l2) the client
 * sits on the nodes' own segment and finds each VIP by ARP, answered by the
 * node that owns it.
 */
export type LabAnnounce = 'bgp' | 'static' | 'l2';

/** `xlb lab status --json`. */
export interface LabStatus {
  suffix: string;
  announce: LabAnnounce;
  /** BIRD's control socket (for `birdc -s`), in BGP mode. */
  routerBirdSocket?: string;
  stateDir: string;
  client: string;
  clientIp: string;
  router: string;
  fabric: string;
  manifests: string;
  /** The lab's cgroup v2 directory: <cgroup2 root>/xlb-lab-<suffix>, one subtree per node below. */
  cgroup: string;
  nodes: LabNode[];
  /** Workload pods (pod-server): the services' backends and spare pods. */
  pods: LabPodStatus[];
  /** The cluster DNS: Service kube-system/kube-dns's ClusterIP and its pods (one dnsmasq per node). */
  clusterDns: { clusterIP: string; pods: LabPodStatus[] };
  services: LabService[];
  /** The command the agents run as `xlb` (see {@link LabUpOptions.agentCommand}); left out: this checkout's sources through tsx. */
  agentCommand?: string[];
}

/** What lab.json records: the status plus everything to undo. */
interface LabState extends Omit<LabStatus, 'services'> {
  namespaces: string[];
  pids: number[];
  /** cgroup directories, recorded before each is made. */
  cgroups: string[];
  /** /etc/netns/<netns> directories (pods' resolv.conf), recorded before each is made. */
  etcNetns: string[];
  /** Whether the lab made /etc/netns itself (then removes it when empty). */
  madeEtcNetns?: boolean;
}

/** Options of {@link labUp}. */
export interface LabUpOptions {
  nodes?: number;
  podsPerNode?: number;
  /** Backends per node in the generated manifests (the rest are spare pods). Default 2. */
  backendsPerNode?: number;
  /** A manifests file to use instead of the generated one. */
  manifests?: string;
  agents?: boolean;
  stateDir?: string;
  /** How the router learns VIPs; default 'bgp'. */
  announce?: LabAnnounce;
  /** Extra agent configuration merged into each node's config (tests). */
  agentConfig?: Record<string, unknown>;
  /**
   * The command that runs `xlb` for the agents, the agent's arguments
   * appended (e.g. `['/opt/xlb/bin/xlb']`, or with `env VAR=...` before it).
   * Default: this checkout's sources through tsx. Kept in lab.json, so
   * {@link labStartAgent} runs the same.
   */
  agentCommand?: string[];
}

/** `xlb` from this checkout: its sources through tsx, with the Node.js running the lab. */
const CHECKOUT_XLB = () => [process.execPath, '--import', 'tsx', path.join(repo, 'src/cli/main.ts')];

export const DEFAULT_STATE_DIR = '/run/xlb-lab';
const stateFile = (dir: string) => path.join(dir, 'lab.json');

function save(st: LabState): void {
  fs.writeFileSync(stateFile(st.stateDir), JSON.stringify(st, null, 2));
}

/** Start `argv` detached, output to `log`; returns its pid. */
function spawnDetached(argv: string[], log: string, what: string): number {
  const fd = fs.openSync(log, 'a');
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', fd, fd], cwd: repo });
  fs.closeSync(fd);
  child.unref();
  if (!child.pid) throw new Error(`could not start ${what}`);
  return child.pid;
}

/**
 * Start a detached process inside network namespace `ns`; its output goes to
 * `log`. nsenter (not `ip netns exec`) so that the process keeps the host's
 * mounts: `ip netns exec` remounts /sys, which hides /sys/fs/bpf and would
 * put an agent's pins in a private bpffs that `lab down` cannot see.
 */
function spawnIn(ns: string, argv: string[], log: string): number {
  return spawnDetached(['nsenter', `--net=/run/netns/${ns}`, '--', ...argv], log, `${argv.join(' ')} in ${ns}`);
}

/**
 * The argv that runs `argv` as pod `p`: in the pod's cgroup (joined first:
 * `ip netns exec` remounts /sys, hiding the cgroup2 mount when it lives
 * there), then in its network namespace with its /etc/netns resolv.conf.
 */
function podArgv(p: LabPodStatus, argv: string[]): string[] {
  return cgroupExecArgv(p.cgroup, ['ip', 'netns', 'exec', p.netns, ...argv]);
}

/**
 * The argv that runs `argv` as node `n`'s own process: in <node>/host and the
 * node's network namespace, with the host's mounts (bpffs, cgroup2) and
 * resolv.conf, as a process of a real node has.
 */
function nodeArgv(n: LabNode, argv: string[]): string[] {
  return cgroupExecArgv(n.hostCgroup, ['nsenter', `--net=/run/netns/${n.netns}`, '--', ...argv]);
}

/** Turn off checksum and segmentation offloads: XDP_TX would send unfinished checksums. */
async function noOffloads(ns: string, dev: string): Promise<void> {
  await sh('ip', ['netns', 'exec', ns, 'ethtool', '-K', dev, 'tx', 'off', 'tso', 'off', 'gso', 'off']).catch((e) => {
    throw new Error(`ethtool in ${ns} ${dev} (install the ethtool package): ${(e as Error).message}`);
  });
}

async function sysctl(ns: string, ...kv: string[]): Promise<void> {
  await nsExec(ns, ['sysctl', '-q', '-w', ...kv]);
}

/**
 * Bring a lab up and return its status. Refuses when a lab already lives in
 * `stateDir`. On any failure, removes what it made and rethrows.
 */
export async function labUp(opts: LabUpOptions = {}): Promise<LabStatus> {
  const nodes = opts.nodes ?? 2;
  const podsPerNode = opts.podsPerNode ?? 2;
  const backendsPerNode = Math.min(opts.backendsPerNode ?? 2, podsPerNode);
  const stateDir = path.resolve(opts.stateDir ?? DEFAULT_STATE_DIR);
  if (nodes < 1 || nodes > 50) throw new Error(`--nodes: 1..50 (got ${nodes})`);
  if (opts.agentCommand && (!opts.agentCommand.length || opts.agentCommand.some((a) => typeof a !== 'string' || !a))) throw new Error(`agentCommand: a command and its arguments, none empty (got ${JSON.stringify(opts.agentCommand)})`);
  if (fs.existsSync(stateFile(stateDir))) {
    const old = JSON.parse(fs.readFileSync(stateFile(stateDir), 'utf8')) as LabState;
    throw new Error(`a lab (suffix ${old.suffix}) already exists in ${stateDir}: run xlb lab down --state-dir ${stateDir} first`);
  }
  if (!fs.existsSync(XDP_PASS_OBJ)) throw new Error(`${XDP_PASS_OBJ} is missing: run make -C xdp (scripts/setup.sh does)`);
  ensureBpffs();
  fs.mkdirSync(stateDir, { recursive: true });
  const announce = opts.announce ?? 'bgp';
  if (!['bgp', 'static', 'l2'].includes(announce)) throw new Error(`--announce: bgp, static or l2 (got ${JSON.stringify(announce)})`);
  if (announce === 'l2' && spawnSync('sh', ['-c', 'command -v arping']).status !== 0) throw new Error('arping is missing: install iputils-arping (scripts/setup.sh does)');
  if (spawnSync('sh', ['-c', 'command -v dnsmasq']).status !== 0) throw new Error('dnsmasq is missing: install dnsmasq-base (scripts/setup.sh does)');
  const cgroupRoot = ensureCgroup2Root();
  if (announce === 'bgp') {
    for (const bin of ['bird', 'birdc', 'gobgpd']) {
      if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) throw new Error(`${bin} is missing: install bird2 and gobgpd (scripts/setup.sh does)`);
    }
  }
  const sfx = randomBytes(2).toString('hex');
  const st: LabState = {
    suffix: sfx,
    announce,
    stateDir,
    client: `xlb-client-${sfx}`,
    // In layer 2 mode the client is on the nodes' segment.
    clientIp: announce === 'l2' ? '198.18.0.2' : '198.18.1.2',
    router: `xlb-router-${sfx}`,
    fabric: `xlb-fabric-${sfx}`,
    manifests: path.join(stateDir, 'manifests.yaml'),
    cgroup: path.join(cgroupRoot, `xlb-lab-${sfx}`),
    nodes: [],
    pods: [],
    clusterDns: { clusterIP: LAB_CLUSTER_DNS.clusterIP, pods: [] },
    namespaces: [],
    pids: [],
    cgroups: [],
    etcNetns: [],
    ...(opts.agentCommand ? { agentCommand: opts.agentCommand } : {}),
  };
  save(st);
  try {
    const addNs = async (ns: string) => {
      await sh('ip', ['netns', 'add', ns]);
      st.namespaces.push(ns);
      save(st);
      await ipn(ns, 'link', 'set', 'lo', 'up');
    };
    const addCgroup = (dir: string) => {
      st.cgroups.push(dir);
      save(st);
      createCgroup(dir);
    };
    /** A pod's resolv.conf, which `ip netns exec` shows it as /etc/resolv.conf. */
    const addResolvConf = (ns: string, namespace: string) => {
      if (!fs.existsSync('/etc/netns')) st.madeEtcNetns = true;
      const dir = path.join('/etc/netns', ns);
      st.etcNetns.push(dir);
      save(st);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'resolv.conf'), podResolvConf(namespace));
    };
    /** Pod `pod` on node `i`, wired as a CNI would, with its cgroup; the node's end of its veth is `veth`. */
    const addPod = async (i: number, node: LabNode, pod: LabPod, veth: string, clusterFirst: boolean): Promise<LabPodStatus> => {
      const pns = `xlb-${pod.name}-${sfx}`;
      await addNs(pns);
      const cgroup = path.join(node.cgroup, pod.name);
      addCgroup(cgroup);
      // CoreDNS's own pods have dnsPolicy Default (the node's resolv.conf); the rest ClusterFirst.
      if (clusterFirst) addResolvConf(pns, pod.namespace ?? 'default');
      await ipn(pns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', veth, 'netns', node.netns);
      await ipn(pns, 'addr', 'add', `${pod.ip}/32`, 'dev', 'eth0');
      await ipn(pns, 'link', 'set', 'eth0', 'up');
      await ipn(pns, 'route', 'add', `198.19.${i}.1`, 'dev', 'eth0', 'scope', 'link');
      await ipn(pns, 'route', 'add', 'default', 'via', `198.19.${i}.1`, 'dev', 'eth0');
      await noOffloads(pns, 'eth0');
      await ipn(node.netns, 'addr', 'add', `198.19.${i}.1/32`, 'dev', veth);
      await ipn(node.netns, 'link', 'set', veth, 'up');
      await ipn(node.netns, 'route', 'add', `${pod.ip}/32`, 'dev', veth, 'scope', 'link');
      return { ...pod, netns: pns, pid: null, cgroup };
    };
    addCgroup(st.cgroup);
    for (const ns of [st.client, st.router, st.fabric]) await addNs(ns);

    // Fabric bridge, router legs, client.
    await ipn(st.fabric, 'link', 'add', 'br0', 'type', 'bridge');
    await ipn(st.fabric, 'link', 'set', 'br0', 'up');
    await ipn(st.router, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'r0', 'netns', st.fabric);
    await ipn(st.fabric, 'link', 'set', 'r0', 'master', 'br0', 'up');
    await ipn(st.router, 'addr', 'add', '198.18.0.1/24', 'dev', 'eth0');
    await ipn(st.router, 'link', 'set', 'eth0', 'up');
    if (announce === 'l2') {
      // The client on the fabric; the VIP range is on-link, so the client ARPs for each VIP.
      await ipn(st.client, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'c0', 'netns', st.fabric);
      await ipn(st.fabric, 'link', 'set', 'c0', 'master', 'br0', 'up');
      await ipn(st.client, 'addr', 'add', `${st.clientIp}/24`, 'dev', 'eth0');
      await ipn(st.client, 'link', 'set', 'eth0', 'up');
      await ipn(st.client, 'route', 'add', '192.0.2.0/24', 'dev', 'eth0', 'scope', 'link');
      await ipn(st.client, 'route', 'add', 'default', 'via', '198.18.0.1');
      await noOffloads(st.fabric, 'c0');
    } else {
      await ipn(st.router, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', st.client);
      await ipn(st.router, 'addr', 'add', '198.18.1.1/24', 'dev', 'eth1');
      await ipn(st.router, 'link', 'set', 'eth1', 'up');
      await ipn(st.client, 'addr', 'add', `${st.clientIp}/24`, 'dev', 'eth0');
      await ipn(st.client, 'link', 'set', 'eth0', 'up');
      await ipn(st.client, 'route', 'add', 'default', 'via', '198.18.1.1');
      await noOffloads(st.router, 'eth1');
    }
    await sysctl(st.router, 'net.ipv4.ip_forward=1', 'net.ipv4.fib_multipath_hash_policy=1');
    for (const [ns, dev] of [[st.client, 'eth0'], [st.router, 'eth0'], [st.fabric, 'r0']]) await noOffloads(ns, dev);

    // Nodes and their pods.
    for (let i = 1; i <= nodes; i++) {
      const name = `node${i}`;
      const ns = `xlb-node${i}-${sfx}`;
      await addNs(ns);
      const ip = `198.18.0.${10 + i}`;
      await ipn(ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `n${i}`, 'netns', st.fabric);
      await ipn(st.fabric, 'link', 'set', `n${i}`, 'master', 'br0', 'up');
      // XDP_TX from the node's eth0 lands on this peer: it needs an XDP program.
      await ipn(st.fabric, 'link', 'set', 'dev', `n${i}`, 'xdpdrv', 'obj', XDP_PASS_OBJ, 'sec', 'xdp');
      await noOffloads(st.fabric, `n${i}`);
      await ipn(ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0');
      await ipn(ns, 'link', 'set', 'eth0', 'up');
      await ipn(ns, 'route', 'add', 'default', 'via', '198.18.0.1');
      await sysctl(ns, 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0');
      const mac = JSON.parse(await ipn(ns, '-j', 'link', 'show', 'eth0'))[0].address as string;
      const cgroup = path.join(st.cgroup, name);
      const node: LabNode = {
        name,
        netns: ns,
        ip,
        mac,
        agentPid: null,
        api: `unix:${path.join(stateDir, `${name}.sock`)}`,
        hubble: `unix:${path.join(stateDir, `${name}-hubble.sock`)}`,
        metrics: `${ip}:${LAB_METRICS_PORT}`,
        podCidr: `198.19.${i}.0/24`,
        cgroup,
        hostCgroup: path.join(cgroup, 'host'),
      };
      st.nodes.push(node);
      addCgroup(node.cgroup);
      addCgroup(node.hostCgroup);
      for (let j = 1; j <= podsPerNode; j++) {
        st.pods.push(await addPod(i, node, { name: `n${i}p${j}`, ip: `198.19.${i}.${10 + j}`, node: name }, `p${j}`, true));
        save(st);
      }
      st.clusterDns.pods.push(await addPod(i, node, labDnsPod(i), 'pdns', false));
      save(st);
    }
    // Pod CIDRs of the other nodes, and the VIP range over all nodes.
    for (const n of st.nodes) {
      for (const m of st.nodes) if (m !== n) await ipn(n.netns, 'route', 'add', m.podCidr, 'via', m.ip);
    }
    if (announce === 'static') await ipn(st.router, 'route', 'add', '192.0.2.0/24', ...st.nodes.flatMap((n) => ['nexthop', 'via', n.ip]));
    else if (announce === 'bgp') {
      const conf = path.join(stateDir, 'bird.conf');
      st.routerBirdSocket = path.join(stateDir, 'bird.ctl');
      fs.writeFileSync(conf, birdConfig('198.18.0.1', st.nodes));
      const pid = spawnIn(st.router, ['bird', '-f', '-c', conf, '-s', st.routerBirdSocket, '-P', path.join(stateDir, 'bird.pid')], path.join(stateDir, 'bird.log'));
      st.pids.push(pid);
      save(st);
      await waitFor(() => fs.existsSync(st.routerBirdSocket!), 5000, 'BIRD to open its control socket', 50);
    }

    // Manifests: the agents' services, and the names the cluster DNS answers.
    if (opts.manifests) fs.copyFileSync(opts.manifests, st.manifests);
    else {
      const backends = st.pods.filter((p) => Number(p.name.split('p')[1]) <= backendsPerNode);
      fs.writeFileSync(st.manifests, labManifests(backends.map(({ name, ip, node }) => ({ name, ip, node })), st.clusterDns.pods.map(({ name, ip, node, namespace }) => ({ name, ip, node, namespace }))));
    }

    // Workloads, each in its pod's cgroup and network namespace.
    for (const p of st.pods) {
      const argv = [process.execPath, '--import', 'tsx', path.join(repo, 'src/lab/pod-server.ts'), '--name', p.name, '--http-port', '8080', '--udp-port', '5353'];
      p.pid = spawnDetached(podArgv(p, argv), path.join(stateDir, `${p.name}.log`), `pod-server in ${p.name}`);
      st.pids.push(p.pid);
      save(st);
    }
    const records = clusterDnsRecords(readManifestObjects(st.manifests));
    for (const p of st.clusterDns.pods) {
      const argv = dnsmasqArgv({ listen: p.ip, pod: p.name, records, pidFile: path.join(stateDir, `${p.name}-dnsmasq.pid`) });
      p.pid = spawnDetached(podArgv(p, argv), path.join(stateDir, `${p.name}.log`), `dnsmasq in ${p.name}`);
      st.pids.push(p.pid);
      save(st);
    }
    for (const p of st.clusterDns.pods) await waitDnsListening(p, stateDir);
    for (const p of st.pods) {
      const node = st.nodes.find((n) => n.name === p.node)!;
      await waitFor(
        async () => (await nsExec(node.netns, ['curl', '-s', '-m', '1', `http://${p.ip}:8080/`])).startsWith(p.name),
        30000,
        `pod ${p.name} to serve HTTP`,
        100,
      );
    }

    // Agents.
    if (opts.agents !== false) {
      for (const n of st.nodes) {
        const cfg = {
          node: { name: n.name, addresses: [n.ip] },
          interfaces: ['eth0'],
          source: { file: { path: st.manifests } },
          api: { listen: n.api },
          hubble: { listen: n.hubble },
          // As the DaemonSet's configuration does: Prometheus scrapes the node's address.
          metrics: { listen: n.metrics },
          log: { level: 'info' },
          ...(announce === 'bgp'
            ? {
                bgp: {
                  asn: LAB_NODE_ASN,
                  // Listening too, so BIRD reconnects at once after gobgpd restarts (gobgp waits 5..10 s before connecting out).
                  listenPort: 179,
                  neighbors: [{ address: '198.18.0.1', asn: LAB_ROUTER_ASN, holdTime: 9, keepaliveTime: 3 }],
                  gobgpd: { apiSocket: path.join(stateDir, `${n.name}-gobgpd.sock`) },
                },
              }
            : announce === 'l2'
              ? { l2: { peers: st.nodes.map((m) => ({ name: m.name, address: m.ip })), heartbeat: { intervalMs: 200, deadAfterMissed: 5 } } }
              : {}),
          ...(opts.agentConfig ?? {}),
          // datapath keys of agentConfig go with the lab's own (the instance is per node)
          // A hairpin address of the lab's own range (it never leaves a pod's interface).
          datapath: { instance: `lab-${sfx}-${n.name}`, conntrackSize: 65536, hairpinAddress: '198.18.255.1', ...((opts.agentConfig?.datapath as object | undefined) ?? {}) },
          // Socket LB serves the node's pods and host processes: its own cgroup subtree, not the machine's.
          socketLB: { cgroupRoot: n.cgroup, ...((opts.agentConfig?.socketLB as object | undefined) ?? {}) },
        };
        const cfgPath = path.join(stateDir, `${n.name}.yaml`);
        fs.writeFileSync(cfgPath, stringify(cfg));
        n.agentPid = spawnIn(n.netns, [...(st.agentCommand ?? CHECKOUT_XLB()), 'agent', '--config', cfgPath], path.join(stateDir, `${n.name}.log`));
        st.pids.push(n.agentPid);
        save(st);
      }
      for (const n of st.nodes) await waitAgentReady(n, stateDir);
      if (announce === 'bgp') await waitRoutesConverged(st);
      if (announce === 'l2') await waitL2Converged(st);
    }
    save(st);
    return { ...publicStatus(st), services: readServices(st) };
  } catch (e) {
    await labDown(stateDir).catch(() => undefined);
    throw e;
  }
}

/** One VIP's routes: what BIRD learned (one path per node) and the router's kernel next hops. */
export interface LabRoute {
  vip: string;
  /** Nodes (BIRD protocol names) that announce the VIP. */
  from: string[];
  /** Next hops of the router's kernel route for the VIP /32 (ECMP when more than one). */
  kernelNextHops: string[];
}

/** The router's routes for VIPs (192.0.2.0/24 and 203.0.113.0/24 /32s), in BGP mode. */
export async function labRoutes(st: Pick<LabStatus, 'router' | 'routerBirdSocket'>): Promise<LabRoute[]> {
  if (!st.routerBirdSocket) throw new Error('the lab runs without BGP (lab up --announce static): the router has static routes only');
  const bird = birdRoutes(st.routerBirdSocket);
  const kernel = JSON.parse(await ipn(st.router, '-j', 'route', 'show', 'proto', 'bird')) as Array<{ dst: string; gateway?: string; nexthops?: Array<{ gateway: string }> }>;
  const out: LabRoute[] = [];
  for (const [prefix, paths] of bird) {
    if (!/^(192\.0\.2|203\.0\.113)\.\d+\/32$/.test(prefix)) continue;
    const vip = prefix.slice(0, -3);
    const k = kernel.find((r) => r.dst === vip || r.dst === prefix);
    out.push({
      vip,
      from: paths.map((p) => p.protocol).sort(),
      kernelNextHops: k ? (k.nexthops?.map((h) => h.gateway) ?? (k.gateway ? [k.gateway] : [])).sort() : [],
    });
  }
  return out.sort((a, b) => a.vip.localeCompare(b.vip, 'en', { numeric: true }));
}

/**
 * Wait until BIRD has a session with every node and, for every VIP an agent
 * announces, one path per announcing node, installed as the kernel's ECMP route.
 */
export async function waitRoutesConverged(st: Pick<LabStatus, 'router' | 'routerBirdSocket' | 'nodes'>, timeoutMs = 20000): Promise<void> {
  const sock = st.routerBirdSocket!;
  await waitFor(() => st.nodes.every((n) => birdEstablished(sock, n.name)), timeoutMs, 'BIRD sessions with every node to be Established', 100);
  await waitFor(
    async () => {
      const want = new Map<string, string[]>();
      for (const n of st.nodes) {
        const b = (await apiGet(n.api, '/v1/bgp', { timeoutMs: 1000 })) as { announced: Array<{ vip: string }>; pending: string[] };
        if (b.pending.length) return false;
        for (const a of b.announced) want.set(a.vip, [...(want.get(a.vip) ?? []), n.name].sort());
      }
      const have = await labRoutes(st);
      return (
        have.length === want.size &&
        have.every((r) => JSON.stringify(r.from) === JSON.stringify(want.get(r.vip)) && r.kernelNextHops.length === r.from.length)
      );
    },
    timeoutMs,
    'the router to hold every announced VIP with one path per announcing node',
    100,
  );
}

/** One VIP's owner in layer 2 mode, as the agents report it. */
export interface LabL2Owner {
  vip: string;
  /** Nodes that say they answer ARP for it (exactly one when converged). */
  answering: string[];
}

/** Which node answers ARP for each VIP, from every agent's /v1/l2. */
export async function labL2Owners(st: Pick<LabStatus, 'nodes'>): Promise<LabL2Owner[]> {
  const by = new Map<string, string[]>();
  for (const n of st.nodes) {
    // An agent that is not running (stopped by a test) answers for nothing.
    const l2 = (await apiGet(n.api, '/v1/l2', { timeoutMs: 1000 }).catch(() => undefined)) as { vips: Array<{ vip: string; local: boolean }> } | undefined;
    if (!l2) continue;
    for (const v of l2.vips) {
      if (!by.has(v.vip)) by.set(v.vip, []);
      if (v.local) by.get(v.vip)!.push(n.name);
    }
  }
  return [...by].map(([vip, answering]) => ({ vip, answering: answering.sort() })).sort((a, b) => a.vip.localeCompare(b.vip, 'en', { numeric: true }));
}

/** Wait until every VIP the agents know has exactly one node answering ARP for it. */
export async function waitL2Converged(st: Pick<LabStatus, 'nodes'>, timeoutMs = 20000): Promise<void> {
  await waitFor(
    async () => {
      const owners = await labL2Owners(st);
      return owners.length > 0 && owners.every((o) => o.answering.length === 1);
    },
    timeoutMs,
    'every VIP to have exactly one node answering ARP',
    100,
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Wait for a node's agent to answer /readyz; a dead agent fails with its log's tail. */
export async function waitAgentReady(n: LabNode, stateDir: string, timeoutMs = 30000): Promise<void> {
  const log = path.join(stateDir, `${n.name}.log`);
  try {
    // waitFor keeps polling through errors, so an exit ends the wait as a result instead.
    let exited = false;
    await waitFor(
      async () => {
        if (n.agentPid && !alive(n.agentPid)) return (exited = true);
        const r = (await apiGet(n.api, '/readyz', { allowError: true, timeoutMs: 1000 })) as { status?: string };
        return r.status === 'ready';
      },
      timeoutMs,
      `agent on ${n.name} to be ready`,
      100,
    );
    if (exited) throw new Error(`agent on ${n.name} exited before it was ready`);
  } catch (e) {
    const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
    throw new Error(`${(e as Error).message}\n--- ${log} ---\n${tail}`);
  }
}

function publicStatus(st: LabState): Omit<LabStatus, 'services'> {
  const { namespaces: _n, pids: _p, cgroups: _c, etcNetns: _e, madeEtcNetns: _m, ...rest } = st;
  return rest;
}

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The objects of a manifests file (YAML documents, `kind: List` items flattened). @throws Error when the file cannot be read */
export function readManifestObjects(file: string): Obj[] {
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => d.toJS() as Obj);
  return docs.flatMap((d) => (d?.kind === 'List' ? d.items : [d])).filter(Boolean);
}

/**
 * Wait until DNS pod `p`'s dnsmasq listens on its pod IP, UDP and TCP port
 * 53 (the kernel then queues queries until it reads them); a dnsmasq that
 * exited fails at once, with its log's tail.
 */
async function waitDnsListening(p: LabPodStatus, stateDir: string): Promise<void> {
  const log = path.join(stateDir, `${p.name}.log`);
  const port = LAB_CLUSTER_DNS.port;
  try {
    let exited = false;
    await waitFor(
      async () => {
        if (p.pid && !alive(p.pid)) return (exited = true);
        const out = await nsExec(p.netns, ['ss', '-H', '-l', '-n', '-t', '-u', `sport = :${port}`]);
        const lines = out.split('\n').filter((l) => l.includes(`${p.ip}:${port}`));
        return lines.some((l) => l.startsWith('udp')) && lines.some((l) => l.startsWith('tcp'));
      },
      10000,
      `dnsmasq in ${p.name} to listen on ${p.ip}:${port} (UDP and TCP)`,
      50,
    );
    if (exited) throw new Error(`dnsmasq in ${p.name} exited`);
  } catch (e) {
    const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
    throw new Error(`${(e as Error).message}\n--- ${log} ---\n${tail}`);
  }
}

/** Services of the manifests file: LoadBalancer VIPs and NodePorts (first node IP), with backends. */
function readServices(st: LabState): LabService[] {
  if (!fs.existsSync(st.manifests)) return [];
  const objects = readManifestObjects(st.manifests);
  const out: LabService[] = [];
  for (const svc of objects.filter((o) => o.kind === 'Service')) {
    const ns = svc.metadata?.namespace ?? 'default';
    const slices = objects.filter((o) => o.kind === 'EndpointSlice' && (o.metadata?.namespace ?? 'default') === ns && o.metadata?.labels?.['kubernetes.io/service-name'] === svc.metadata.name);
    for (const p of svc.spec?.ports ?? []) {
      const protocol = (p.protocol ?? 'TCP') as 'TCP' | 'UDP';
      const backends = slices.flatMap((s) => {
        const sp = (s.ports ?? []).find((x: Obj) => (x.name ?? '') === (p.name ?? '') && (x.protocol ?? 'TCP') === protocol);
        if (!sp) return [];
        return (s.endpoints ?? []).filter((e: Obj) => e.conditions?.ready !== false).map((e: Obj) => `${e.addresses[0]}:${sp.port}`);
      });
      const base = { namespace: ns, name: svc.metadata.name as string, protocol, backends };
      if (svc.spec.type === 'LoadBalancer') {
        const vips: string[] = (svc.status?.loadBalancer?.ingress ?? []).map((i: Obj) => i.ip).filter(Boolean);
        if (!vips.length && svc.spec.loadBalancerIP) vips.push(svc.spec.loadBalancerIP);
        for (const vip of vips) out.push({ ...base, vip, port: p.port });
      } else if (svc.spec.type === 'NodePort' && p.nodePort && st.nodes.length) {
        out.push({ ...base, vip: st.nodes[0].ip, port: p.nodePort });
      }
    }
  }
  return out;
}

function readState(stateDir: string): LabState {
  const file = stateFile(path.resolve(stateDir));
  if (!fs.existsSync(file)) throw new Error(`no lab in ${stateDir} (xlb lab up first)`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as LabState;
}

/**
 * Stop one node's agent with SIGTERM (a clean stop: announcements withdrawn,
 * programs detached) and wait until it has exited.
 * @throws Error naming the node when it has no running agent or does not exit within 10 s
 */
export async function labStopAgent(stateDir: string, node: string): Promise<void> {
  const st = readState(stateDir);
  const n = st.nodes.find((x) => x.name === node);
  if (!n) throw new Error(`lab: no node ${node}`);
  if (!n.agentPid || !alive(n.agentPid)) throw new Error(`lab: ${node} has no running agent`);
  process.kill(n.agentPid, 'SIGTERM');
  const pid = n.agentPid;
  try {
    await waitFor(() => !alive(pid), 10000, `agent on ${node} to exit`, 20);
  } catch (e) {
    const log = path.join(st.stateDir, `${n.name}.log`);
    const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
    throw new Error(`${(e as Error).message}\n--- ${log} ---\n${tail}`);
  }
  n.agentPid = null;
  save(st);
}

/**
 * Kill one node's agent with SIGKILL (kill -9: no clean stop, whatever it
 * had attached and pinned stays) and wait until it has exited. Its gobgpd
 * keeps running, detached, and the next agent adopts it. Start it again
 * with {@link labStartAgent}.
 * @throws Error naming the node when it has no running agent or it has not exited within 10 s
 */
export async function labKillAgent(stateDir: string, node: string): Promise<void> {
  const st = readState(stateDir);
  const n = st.nodes.find((x) => x.name === node);
  if (!n) throw new Error(`lab: no node ${node}`);
  if (!n.agentPid || !alive(n.agentPid)) throw new Error(`lab: ${node} has no running agent`);
  const pid = n.agentPid;
  process.kill(pid, 'SIGKILL');
  await waitFor(() => !alive(pid), 10000, `agent on ${node} to die of SIGKILL`, 20);
  n.agentPid = null;
  save(st);
}

/**
 * Start one node's agent again (after {@link labStopAgent}), optionally with
 * its configuration edited first, and wait for it to be ready.
 * @param edit receives the node's agent configuration (as YAML data) and returns the one to use
 * @param opts.args more `xlb agent` arguments (e.g. `--kubeconfig FILE`)
 */
export async function labStartAgent(
  stateDir: string,
  node: string,
  edit?: (cfg: Record<string, any>) => Record<string, unknown>, // eslint-disable-line @typescript-eslint/no-explicit-any
  opts: { args?: string[] } = {},
): Promise<LabNode> {
  const st = readState(stateDir);
  const n = st.nodes.find((x) => x.name === node);
  if (!n) throw new Error(`lab: no node ${node}`);
  if (n.agentPid && alive(n.agentPid)) throw new Error(`lab: ${node}'s agent is running (pid ${n.agentPid})`);
  const cfgPath = path.join(st.stateDir, `${n.name}.yaml`);
  if (edit) fs.writeFileSync(cfgPath, stringify(edit(parseAllDocuments(fs.readFileSync(cfgPath, 'utf8'))[0].toJS())));
  n.agentPid = spawnIn(n.netns, [...(st.agentCommand ?? CHECKOUT_XLB()), 'agent', '--config', cfgPath, ...(opts.args ?? [])], path.join(st.stateDir, `${n.name}.log`));
  st.pids.push(n.agentPid);
  save(st);
  await waitAgentReady(n, st.stateDir);
  return n;
}

/** Status of the lab in `stateDir`. @throws Error when there is none */
export async function labStatus(stateDir = DEFAULT_STATE_DIR): Promise<LabStatus> {
  const file = stateFile(path.resolve(stateDir));
  if (!fs.existsSync(file)) throw new Error(`no lab in ${stateDir} (xlb lab up first)`);
  const st = JSON.parse(fs.readFileSync(file, 'utf8')) as LabState;
  return { ...publicStatus(st), services: readServices(st) };
}

/** Run argv in one of the lab's namespaces and return stdout. */
export function labExec(netns: string, argv: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return nsExec(netns, argv, opts);
}

/** Options of {@link labPodExec} and {@link labNodeExec}. */
export interface LabExecOptions {
  /** Kill the command after this long (ms); default 30000. */
  timeoutMs?: number;
  /** Written to the command's stdin. */
  input?: string;
}

/** A pod of the lab by name: a workload pod or a cluster DNS pod. */
function findPod(st: LabState, pod: string): LabPodStatus | undefined {
  return [...st.pods, ...(st.clusterDns?.pods ?? [])].find((p) => p.name === pod);
}

/**
 * The command line that runs `argv` as `target` of the lab in `stateDir`:
 * a pod's name (see {@link labPodExec}) or a node's (see {@link labNodeExec}).
 * For callers that run it themselves (`xlb lab exec` with the terminal).
 * @throws Error when there is no lab, or no pod or node of that name
 */
export function labExecArgv(stateDir: string, target: string, argv: string[]): string[] {
  const st = readState(stateDir);
  const pod = findPod(st, target);
  if (pod) return podArgv(pod, argv);
  const node = st.nodes.find((n) => n.name === target);
  if (node) return nodeArgv(node, argv);
  const names = [...st.pods, ...(st.clusterDns?.pods ?? []), ...st.nodes].map((x) => x.name).join(', ');
  throw new Error(`lab: no pod or node ${JSON.stringify(target)} (there are ${names})`);
}

/**
 * Run `argv` as a process of pod `pod`: in the pod's cgroup and network
 * namespace, seeing the pod's /etc/resolv.conf (cluster DNS 198.18.128.53,
 * search `default.svc.cluster.local svc.cluster.local cluster.local`,
 * ndots:5). Whatever it leaves running stays in the pod's cgroup until
 * `labDown`.
 * @returns the command's stdout
 * @throws Error naming a pod that does not exist; CommandError (with stdout) when the command fails or times out
 */
export function labPodExec(stateDir: string, pod: string, argv: string[], opts: LabExecOptions = {}): Promise<string> {
  const p = findPod(readState(stateDir), pod);
  if (!p) throw new Error(`lab: no pod ${pod}`);
  const [cmd, ...args] = podArgv(p, argv);
  return sh(cmd, args, opts);
}

/**
 * Run `argv` as a process of node `node` itself (not of a pod): in the
 * node's cgroup <node>/host and its network namespace, with the machine's
 * mounts and resolv.conf.
 * @returns the command's stdout
 * @throws Error naming a node that does not exist; CommandError (with stdout) when the command fails or times out
 */
export function labNodeExec(stateDir: string, node: string, argv: string[], opts: LabExecOptions = {}): Promise<string> {
  const n = readState(stateDir).nodes.find((x) => x.name === node);
  if (!n) throw new Error(`lab: no node ${node}`);
  const [cmd, ...args] = nodeArgv(n, argv);
  return sh(cmd, args, opts);
}

/**
 * Take the lab in `stateDir` down: agents get SIGTERM (so they detach and
 * unpin), then everything still running gets SIGKILL, and whatever still
 * runs in the lab's cgroups (commands left by labPodExec, dnsmasq's TCP
 * children) is killed with them; cgroups, namespaces, /etc/netns
 * directories, pins and the state directory are removed. Safe on a
 * half-built lab and when called twice.
 * @throws Error when a cgroup cannot be removed; lab.json then stays, so a second call retries
 */
export async function labDown(stateDir = DEFAULT_STATE_DIR): Promise<void> {
  stateDir = path.resolve(stateDir);
  const file = stateFile(stateDir);
  if (!fs.existsSync(file)) return;
  const st = JSON.parse(fs.readFileSync(file, 'utf8')) as LabState;
  for (const pid of st.pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  await waitFor(() => st.pids.every((p) => !alive(p)), 8000, 'lab processes to exit').catch(() => {
    for (const pid of st.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
  await waitFor(() => st.pids.every((p) => !alive(p)), 5000, 'lab processes to die').catch(() => undefined);
  // An agent's stop is a restart: its gobgpd keeps running for the next agent. The lab is leaving: stop them.
  if (st.announce === 'bgp') {
    const { stopKeptGobgpd } = await import('../bgp/gobgpd.js');
    for (const n of st.nodes) await stopKeptGobgpd({ gobgpd: { apiSocket: path.join(stateDir, `${n.name}-gobgpd.sock`) } }).catch(() => undefined);
  }
  // Deepest first; each removal kills what runs below it and tolerates a cgroup already gone.
  const failed: string[] = [];
  for (const dir of [...(st.cgroups ?? [])].reverse()) {
    await removeCgroup(dir).catch((e: Error) => failed.push(e.message));
  }
  for (const ns of [...st.namespaces].reverse()) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
  for (const dir of st.etcNetns ?? []) fs.rmSync(dir, { recursive: true, force: true });
  if (st.madeEtcNetns) {
    try {
      fs.rmdirSync('/etc/netns');
    } catch {
      /* not empty (another lab's or someone else's), or gone */
    }
  }
  if (fs.existsSync(PIN_BASE)) {
    for (const d of fs.readdirSync(PIN_BASE)) if (d.startsWith(`lab-${st.suffix}-`)) removePins(path.join(PIN_BASE, d));
  }
  if (failed.length) {
    st.cgroups = st.cgroups.filter((d) => fs.existsSync(d));
    save(st);
    throw new Error(`lab down: ${failed.join('; ')}`);
  }
  fs.rmSync(stateDir, { recursive: true, force: true });
}

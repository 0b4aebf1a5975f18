/**
 * The lab as a connectivity test environment (env.ts): clients and servers
 * are the lab's pods (each runs the pod-server: HTTP and UDP echo), the
 * outside client is the lab's client namespace, commands run through the
 * lab's own exec (a pod's cgroup, network namespace and resolv.conf; a
 * node's host cgroup and namespace), and the test services go into the
 * manifests file the agents follow.
 *
 * Per node, the pod with the highest number (n1p3 of n1p1..n1p3) is the
 * test client and the others are the servers; a node with one pod uses it as
 * both. The test services take addresses the lab's manifests do not use:
 * ClusterIPs from 198.18.128.240, VIPs from 192.0.2.240, NodePorts from
 * 32700. The file is put back as it was afterwards (or, when someone else
 * edited it meanwhile, only the test services are taken out of it). One run
 * at a time per lab: <state-dir>/connectivity.lock holds the running test's
 * pid.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { labExecArgv, labStatus, readManifestObjects, waitL2Converged, waitRoutesConverged, type LabStatus } from '../lab/index.js';
import { service, slice } from '../lab/manifests.js';
import { apiGet } from '../cli/client.js';
import { editObjects } from '../demo/manifests.js';
import { ipToU32, u32ToIp } from '../util/ip.js';
import { TEST_PREFIX } from './services.js';
import type { Actor, ConnectivityEnv, DeployedService, EnvNode, EnvPod, ExecResult, TestServiceSpec } from './env.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Where the lab's test services take their addresses from (the first free ones up). */
export const LAB_TEST_ADDRESSES = { clusterIP: '198.18.128.240', vip: '192.0.2.240', nodePort: 32700 } as const;

/** The namespace of the lab's test services: the lab's pods' own. */
const NAMESPACE = 'default';

/** Whether `o` is one of the connectivity test's objects (a Service or EndpointSlice of a test service). */
export function isTestObject(o: Obj): boolean {
  const ns = o?.metadata?.namespace ?? 'default';
  if (ns !== NAMESPACE) return false;
  if (o.kind === 'Service') return String(o.metadata?.name ?? '').startsWith(TEST_PREFIX);
  if (o.kind === 'EndpointSlice') return String(o.metadata?.labels?.['kubernetes.io/service-name'] ?? '').startsWith(TEST_PREFIX);
  return false;
}

/** Addresses and node ports the objects use (ClusterIPs, VIPs, external IPs; node ports and health check ports). */
function usedAddresses(objects: Obj[]): { ips: Set<string>; ports: Set<number> } {
  const ips = new Set<string>();
  const ports = new Set<number>();
  for (const o of objects) {
    if (o?.kind !== 'Service') continue;
    const s = o.spec ?? {};
    for (const ip of [s.clusterIP, ...(s.clusterIPs ?? []), s.loadBalancerIP, ...(s.externalIPs ?? []), ...(o.status?.loadBalancer?.ingress ?? []).map((i: Obj) => i?.ip)]) if (typeof ip === 'string') ips.add(ip);
    for (const p of s.ports ?? []) if (typeof p?.nodePort === 'number') ports.add(p.nodePort);
    if (typeof s.healthCheckNodePort === 'number') ports.add(s.healthCheckNodePort);
  }
  return { ips, ports };
}

/**
 * The objects (a Service and its EndpointSlice each) of `specs`, with
 * addresses that `others` do not use.
 * @throws Error when the lab's ranges for test addresses are used up
 */
export function labTestObjects(specs: TestServiceSpec[], others: Obj[]): { objects: Obj[]; services: DeployedService[] } {
  const used = usedAddresses(others);
  const next = (start: string, what: string) => {
    let n = ipToU32(start);
    return () => {
      while (used.ips.has(u32ToIp(n)) && (n & 255) < 255) n++;
      if ((n & 255) === 255) throw new Error(`no free ${what} from ${start} up in the lab's manifests`);
      const ip = u32ToIp(n++);
      used.ips.add(ip);
      return ip;
    };
  };
  const clusterIP = next(LAB_TEST_ADDRESSES.clusterIP, 'ClusterIP');
  const vip = next(LAB_TEST_ADDRESSES.vip, 'VIP');
  let port = LAB_TEST_ADDRESSES.nodePort;
  const nodePort = () => {
    while (used.ports.has(port)) port++;
    if (port > 32767) throw new Error(`no free NodePort from ${LAB_TEST_ADDRESSES.nodePort} up in the lab's manifests`);
    used.ports.add(port);
    return port++;
  };
  const objects: Obj[] = [];
  const services: DeployedService[] = [];
  for (const spec of specs) {
    const d: DeployedService = { spec, namespace: NAMESPACE, clusterIP: clusterIP(), nodePorts: {} };
    if (spec.type === 'LoadBalancer') d.vip = vip();
    if (spec.type !== 'ClusterIP') for (const p of spec.ports) d.nodePorts[p.name] = nodePort();
    const svc: Obj = service(
      spec.name,
      {
        type: spec.type,
        clusterIP: d.clusterIP,
        clusterIPs: [d.clusterIP],
        ...(spec.type !== 'ClusterIP' ? { externalTrafficPolicy: spec.externalTrafficPolicy ?? 'Cluster' } : {}),
        ...(spec.sessionAffinity ? { sessionAffinity: spec.sessionAffinity, sessionAffinityConfig: { clientIP: { timeoutSeconds: 10800 } } } : {}),
        ...(spec.sourceRanges ? { loadBalancerSourceRanges: spec.sourceRanges } : {}),
        ports: spec.ports.map((p) => ({ name: p.name, protocol: p.protocol, port: p.port, targetPort: p.targetPort, ...(d.nodePorts[p.name] ? { nodePort: d.nodePorts[p.name] } : {}) })),
      },
      d.vip ? { ingress: [{ ip: d.vip, ipMode: 'VIP' }] } : {},
    );
    svc.metadata.labels = { ...svc.metadata.labels, 'app.kubernetes.io/part-of': 'xlb-connectivity-test' };
    objects.push(
      svc,
      slice(
        spec.name,
        spec.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })),
        spec.backends.map((b) => ({ name: b.name, ip: b.ip, node: b.node, namespace: b.namespace })),
        NAMESPACE,
      ),
    );
    services.push(d);
  }
  return { objects, services };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Write `text` to `file` by a rename, so that the agents never read half of it. */
function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/** The lab in a state directory as a connectivity test environment. Create with {@link LabEnvironment.open}. */
export class LabEnvironment implements ConnectivityEnv {
  readonly description: string;
  readonly announce: LabStatus['announce'];
  readonly nodes: EnvNode[];
  readonly clients: EnvPod[];
  readonly servers: EnvPod[];
  readonly outside: { name: string; ip: string };
  readonly dnsTarget?: ConnectivityEnv['dnsTarget'];
  private readonly lock: string;
  /** The manifests file as it was before deploy (test objects of an earlier run taken out), and as deploy wrote it. */
  private original?: string;
  private written?: string;
  private locked = false;

  private constructor(private readonly lab: LabStatus) {
    this.description = `lab ${lab.stateDir} (${lab.nodes.length} node${lab.nodes.length === 1 ? '' : 's'})`;
    this.announce = lab.announce;
    this.nodes = lab.nodes.map((n) => ({ name: n.name, ip: n.ip, api: n.api }));
    this.clients = [];
    this.servers = [];
    for (const n of lab.nodes) {
      const pods = lab.pods
        .filter((p) => p.node === n.name)
        .sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }))
        .map((p) => ({ name: p.name, namespace: p.namespace ?? 'default', node: p.node, ip: p.ip }));
      if (!pods.length) continue;
      this.clients.push(pods[pods.length - 1]);
      this.servers.push(...(pods.length > 1 ? pods.slice(0, -1) : pods));
    }
    this.outside = { name: 'client', ip: lab.clientIp };
    this.lock = path.join(lab.stateDir, 'connectivity.lock');
    // The cluster DNS answers for the services of the manifests as they were at `lab up`: default/web is the lab's.
    const web = fs.existsSync(lab.manifests) ? readManifestObjects(lab.manifests).find((o) => o.kind === 'Service' && o.metadata?.name === 'web' && (o.metadata?.namespace ?? 'default') === 'default') : undefined;
    const http = web?.spec?.ports?.find((p: Obj) => (p.protocol ?? 'TCP') === 'TCP');
    if (web?.spec?.clusterIP && http && lab.clusterDns) this.dnsTarget = { name: 'default/web', fqdn: 'web.default.svc.cluster.local', clusterIP: web.spec.clusterIP, port: http.port };
  }

  /**
   * The lab in `stateDir`.
   * @throws Error when there is no lab there, or it has no pods
   */
  static async open(stateDir: string): Promise<LabEnvironment> {
    const env = new LabEnvironment(await labStatus(stateDir));
    if (!env.clients.length) throw new Error(`the lab in ${stateDir} has no pods`);
    return env;
  }

  exec(actor: Actor, argv: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<ExecResult> {
    const full =
      actor.kind === 'outside' ? ['ip', 'netns', 'exec', this.lab.client, ...argv] : labExecArgv(this.lab.stateDir, actor.kind === 'pod' ? actor.pod.name : actor.node.name, argv);
    return new Promise((resolve, reject) => {
      const child = execFile(full[0], full.slice(1), { timeout: opts.timeoutMs ?? 10_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
        if (err && typeof err.code === 'string') return reject(new Error(`${full[0]}: ${err.message}`)); // could not start (ENOENT, ...)
        resolve({ status: err ? (err.killed ? null : (err.code as number | undefined) ?? null) : 0, stdout: String(stdout), stderr: String(stderr) });
      });
      child.stdin?.end(opts.input ?? '');
    });
  }

  agent(node: EnvNode, p: string): Promise<unknown> {
    return apiGet(node.api, p, { timeoutMs: 3000 });
  }

  async deploy(specs: TestServiceSpec[]): Promise<DeployedService[]> {
    this.takeLock();
    const file = this.lab.manifests;
    const text = fs.readFileSync(file, 'utf8');
    const objects = readManifestObjects(file);
    const kept = objects.filter((o) => !isTestObject(o));
    // Test services an earlier run left (killed before it could clean up) go now.
    const original = kept.length === objects.length ? text : stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items: kept });
    const { objects: ours, services } = labTestObjects(specs, kept);
    const written = stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items: [...kept, ...ours] });
    this.original = original;
    writeAtomically(file, written);
    this.written = written;
    return services;
  }

  async settle(timeoutMs: number): Promise<void> {
    if (this.announce === 'bgp') await waitRoutesConverged(this.lab, timeoutMs);
    else if (this.announce === 'l2') await waitL2Converged(this.lab, timeoutMs);
  }

  async cleanup(): Promise<void> {
    try {
      if (this.original === undefined) return;
      const file = this.lab.manifests;
      if (this.written !== undefined && fs.readFileSync(file, 'utf8') === this.written) writeAtomically(file, this.original);
      else editObjects(file, (objects) => objects.filter((o) => !isTestObject(o)));
      this.original = this.written = undefined;
    } finally {
      this.releaseLock();
    }
  }

  private takeLock(): void {
    if (this.locked) return;
    try {
      fs.writeFileSync(this.lock, `${process.pid}\n`, { flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(fs.readFileSync(this.lock, 'utf8').trim());
      if (pid && pid !== process.pid && alive(pid)) throw new Error(`another xlb connectivity test (pid ${pid}) is running on the lab in ${this.lab.stateDir}`);
      fs.writeFileSync(this.lock, `${process.pid}\n`);
    }
    this.locked = true;
  }

  private releaseLock(): void {
    if (!this.locked) return;
    fs.rmSync(this.lock, { force: true });
    this.locked = false;
  }
}

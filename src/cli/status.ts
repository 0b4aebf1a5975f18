/**
 * `xlb status`, as `cilium status`: each agent's readiness, attached
 * programs, services, BGP sessions, layer 2 ownerships and LB IPAM, read
 * from its API; one agent (`--api`) or every agent of a lab (`--lab`).
 * Anything not ready (an agent not ready or not answering, a BGP session not
 * Established, a VIP that no node answers ARP for) makes the whole status
 * not ready, which the command turns into a non-zero exit.
 */
import { apiGet } from './client.js';

/** One agent's status. */
export interface AgentStatus {
  /** The node's name (as the agent reports it, or the lab's). */
  node: string;
  /** The API it was read from. */
  api: string;
  /** Whether the API answered at all. */
  reachable: boolean;
  /** Why it did not answer. */
  error?: string;
  /** /readyz: the first full sync is programmed. */
  ready: boolean;
  /** Programs attached: `hook@interface` (XDP, tc) or `hook` (socket hooks). */
  programs: string[];
  /** Service ports programmed. */
  services: number;
  /** BGP sessions: Established of all (absent: no BGP on this agent). */
  bgp?: { established: number; peers: number; down: string[] };
  /**
   * Layer 2 (absent: no layer 2): VIPs this node answers ARP for, how many
   * it would announce, those no node answers for, and (read from metrics)
   * the VIPs it would announce, for {@link markUnowned}.
   */
  l2?: { owned: string[]; vips: number; unowned: string[]; candidates?: string[] };
  /** LB IPAM pools (absent: not the Kubernetes source or no IPAM). */
  ipam?: { leader?: string; pools: Array<{ pool: string; size: number; used: number }> };
  /** Drops by reason, those that are not 0. */
  drops: Record<string, string>;
}

/** What makes one agent not ready, in words; empty when it is ready. */
export function notReady(s: AgentStatus): string[] {
  const why: string[] = [];
  if (!s.reachable) return [`${s.node}: API ${s.api} does not answer (${s.error ?? 'no answer'})`];
  if (!s.ready) why.push(`${s.node}: not ready (first sync not programmed)`);
  for (const p of s.bgp?.down ?? []) why.push(`${s.node}: BGP session with ${p} not Established`);
  for (const v of s.l2?.unowned ?? []) why.push(`${s.node}: no node answers ARP for ${v}`);
  return why;
}

type Get = (api: string, path: string, opts?: { allowError?: boolean }) => Promise<unknown>;

/**
 * Read one agent's status from its API (`HOST:PORT` or `unix:/path`).
 * Never throws: an agent that does not answer is reported as such.
 * @param node the name to report when the agent cannot say its own
 */
export async function agentStatus(api: string, node = '', get: Get = apiGet): Promise<AgentStatus> {
  const out: AgentStatus = { node, api, reachable: false, ready: false, programs: [], services: 0, drops: {} };
  try {
    const ready = (await get(api, '/readyz', { allowError: true })) as { status?: string };
    out.reachable = true;
    out.ready = ready.status === 'ready';
    const who = (await get(api, '/v1/node', { allowError: true })) as { name?: string };
    if (who.name) out.node = who.name;
    const dp = (await get(api, '/v1/datapath')) as { attachments: Array<{ interface?: string; hook?: string }>; drops: Record<string, string> };
    out.programs = dp.attachments.map((a) => (a.interface ? `${a.hook}@${a.interface}` : `${a.hook}`));
    out.drops = Object.fromEntries(Object.entries(dp.drops).filter(([, n]) => n !== '0'));
    out.services = ((await get(api, '/v1/services')) as { services: unknown[] }).services.length;
    const bgp = (await get(api, '/v1/bgp', { allowError: true })) as { peers?: Array<{ address: string; state: string }> };
    if (bgp.peers) {
      const down = bgp.peers.filter((p) => p.state !== 'established').map((p) => p.address);
      out.bgp = { established: bgp.peers.length - down.length, peers: bgp.peers.length, down };
    }
    const l2 = (await get(api, '/v1/l2', { allowError: true })) as { vips?: Array<{ vip: string; owner?: string | null; local: boolean }> };
    if (l2.vips) out.l2 = { owned: l2.vips.filter((v) => v.local).map((v) => v.vip), vips: l2.vips.length, unowned: l2.vips.filter((v) => !v.owner).map((v) => v.vip) };
    const k8s = (await get(api, '/v1/kubernetes', { allowError: true })) as { ipam?: { leader?: string; pools?: Array<{ pool: string; size: number; used: number }> } };
    if (k8s.ipam?.pools) out.ipam = { leader: k8s.ipam.leader, pools: k8s.ipam.pools };
    if (!out.node) out.node = api;
  } catch (e) {
    if (!out.node) out.node = api;
    if (!out.reachable) out.error = (e as Error).message;
    else out.error = `partly read: ${(e as Error).message}`;
  }
  return out;
}

/**
 * Poll `read` until every agent is ready or `timeoutMs` passes; returns the
 * last statuses read.
 */
export async function waitReady(read: () => Promise<AgentStatus[]>, timeoutMs: number, intervalMs = 500): Promise<AgentStatus[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = await read();
    if (all.every((s) => notReady(s).length === 0) || Date.now() >= deadline) return all;
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
  }
}

/** One line a agent for the table: node, ready, programs, services, BGP, L2, IPAM. */
export function statusRow(s: AgentStatus): Record<string, string> {
  return {
    node: s.node,
    ready: !s.reachable ? 'unreachable' : s.ready ? 'yes' : 'no',
    programs: String(s.programs.length),
    services: String(s.services),
    bgp: s.bgp ? `${s.bgp.established}/${s.bgp.peers} established` : '-',
    l2: s.l2 ? `${s.l2.owned.length} of ${s.l2.vips} VIPs here` : '-',
    ipam: s.ipam ? s.ipam.pools.map((p) => `${p.pool} ${p.used}/${p.size}`).join(', ') || 'no pools' : '-',
  };
}

/** One sample of the Prometheus text format: name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * The samples of a Prometheus text exposition (format 0.0.4: `name{l="v",...} value`),
 * comments and blank lines skipped; label values unescaped (`\\`, `\"`, `\n`).
 */
export function parseMetricsText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/**
 * An agent's status from its metrics (what `xlb status --kubernetes` reads
 * through the API server's pod proxy, since the API stays on loopback):
 * `xlb_agent_ready`, `xlb_datapath_programs_attached`, `xlb_services`,
 * `xlb_bgp_session_state`, `xlb_l2_vip_owned`, the IPAM pools (leader only)
 * and `xlb_drops_total`. VIPs without an owner need every agent's figures:
 * {@link markUnowned} fills them in.
 */
export function statusFromMetrics(node: string, api: string, text: string): AgentStatus {
  const samples = parseMetricsText(text);
  const of = (name: string) => samples.filter((s) => s.name === name);
  const out: AgentStatus = { node, api, reachable: true, ready: of('xlb_agent_ready')[0]?.value === 1, programs: [], services: of('xlb_services')[0]?.value ?? 0, drops: {} };
  for (const p of of('xlb_datapath_programs_attached')) for (let i = 0; i < p.value; i++) out.programs.push(p.labels.hook);
  const sessions = of('xlb_bgp_session_state').filter((s) => s.value === 1);
  if (sessions.length) {
    const down = sessions.filter((s) => s.labels.state !== 'established').map((s) => s.labels.peer);
    out.bgp = { established: sessions.length - down.length, peers: sessions.length, down };
  }
  const vips = of('xlb_l2_vip_owned');
  if (vips.length) out.l2 = { owned: vips.filter((v) => v.value === 1).map((v) => v.labels.vip), vips: vips.length, unowned: [], candidates: vips.map((v) => v.labels.vip) };
  const size = of('xlb_ipam_pool_addresses');
  if (size.length) {
    const used = new Map(of('xlb_ipam_pool_addresses_allocated').map((s) => [s.labels.pool, s.value]));
    out.ipam = { leader: node, pools: size.map((s) => ({ pool: s.labels.pool, size: s.value, used: used.get(s.labels.pool) ?? 0 })) };
  }
  for (const d of of('xlb_drops_total')) if (d.value > 0) out.drops[d.labels.reason] = String(d.value);
  return out;
}

/**
 * Over agents read from their metrics: a VIP some agent would announce but
 * no agent owns is reported as unowned by each agent that would announce it.
 */
export function markUnowned(all: AgentStatus[]): void {
  const owned = new Set(all.flatMap((s) => s.l2?.owned ?? []));
  for (const s of all) if (s.l2?.candidates) s.l2.unowned = s.l2.candidates.filter((v) => !owned.has(v));
}

/** How long `xlb status --kubernetes` waits for one agent's metrics through the API server, ms. */
export const PROXY_TIMEOUT_MS = 10_000;

/** Where `xlb status --kubernetes` finds the agents. */
export interface ClusterOptions {
  /** A kubeconfig file; default: in-cluster, or ~/.kube/config. */
  kubeconfig?: string;
  /** The agents' namespace (the chart's release namespace). */
  namespace: string;
  /** The agents' pods (the DaemonSet's selector). */
  selector: string;
  /** The agents' metrics listener port (metrics.listen; the chart's 9877). */
  metricsPort: number;
}

/**
 * Every agent of a cluster: the pods of the DaemonSet, each read through the
 * API server's pod proxy at its metrics listener (the API itself stays on
 * the node's loopback). Needs `list` on pods and `get` on `pods/proxy` in
 * the agents' namespace. A pod that is not running, or whose metrics cannot
 * be read, is reported as not answering.
 * @throws Error naming the kubeconfig or the namespace when the pods cannot be listed
 */
export async function clusterStatus(o: ClusterOptions): Promise<AgentStatus[]> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
  else kc.loadFromDefault();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  let pods: Awaited<ReturnType<typeof core.listNamespacedPod>>;
  try {
    pods = await core.listNamespacedPod({ namespace: o.namespace, labelSelector: o.selector });
  } catch (e) {
    throw new Error(`listing pods ${o.selector} in namespace ${o.namespace}: ${(e as Error).message}`);
  }
  const all = await Promise.all(
    pods.items.map(async (pod): Promise<AgentStatus> => {
      const name = pod.metadata?.name ?? '';
      const node = pod.spec?.nodeName ?? name;
      const api = `pod ${o.namespace}/${name}:${o.metricsPort}`;
      try {
        const read = core.connectGetNamespacedPodProxyWithPath({ name: `${name}:${o.metricsPort}`, namespace: o.namespace, path: 'metrics' });
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${PROXY_TIMEOUT_MS / 1000} s`)), PROXY_TIMEOUT_MS)));
        const text = await Promise.race([read, late]).finally(() => clearTimeout(timer));
        return statusFromMetrics(node, api, String(text));
      } catch (e) {
        return { node, api, reachable: false, error: `${pod.status?.phase ?? 'unknown phase'}: ${(e as Error).message.split('\n')[0]}`, ready: false, programs: [], services: 0, drops: {} };
      }
    }),
  );
  markUnowned(all);
  return all.sort((a, b) => a.node.localeCompare(b.node));
}

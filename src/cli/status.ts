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
  /** Layer 2: VIPs this node answers ARP for, and VIPs no node answers for (absent: no layer 2). */
  l2?: { owned: string[]; vips: number; unowned: string[] };
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

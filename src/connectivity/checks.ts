/**
 * The checks of `xlb connectivity test`, as data: each a name, what it
 * shows, a deadline, and a run over the environment (env.ts) and the test
 * services (services.ts) that says pass, fail (and why) or skip (and why).
 * A check fails on the first thing that is wrong and names the client, the
 * address and what the client got.
 *
 *   pod-to-clusterip/tcp         every client pod, its connections spread over backends on its own and other nodes, each seeing the pod's own address
 *   pod-to-clusterip/udp         every client pod, datagrams to the ClusterIP answered
 *   pod-to-nodeport/same-node    every client pod, the NodePort on its own node's address
 *   pod-to-nodeport/other-node   every client pod, the NodePort on every other node's address
 *   host-to-clusterip            every node's own process, TCP and UDP to the ClusterIP
 *   hairpin                      a pod through a ClusterIP whose only backend is itself
 *   dns                          every client pod resolves a service by name through the cluster DNS and calls it by name
 *   outside-to-loadbalancer/tcp  the outside client, connections to the VIP, through BGP, layer 2 or static routes (reported)
 *   outside-to-loadbalancer/udp  the outside client, datagrams to the VIP
 *   outside-to-nodeport          the outside client, the NodePort on every node
 *   session-affinity/pod         sessionAffinity ClientIP: every client pod's connections to the ClusterIP land on one backend
 *   session-affinity/outside     the outside client's connections to each node's NodePort land on one backend (affinity is per node)
 *   source-ranges/denied         a client outside loadBalancerSourceRanges gets no connection, and a node records the drop (source_range)
 *   source-ranges/allowed        a client inside loadBalancerSourceRanges is served
 *   traffic-policy-local         externalTrafficPolicy Local: only nodes with a local endpoint announce and serve, and the backend sees the client's own address
 */
import type { Actor, ConnectivityEnv, DeployedService, EnvNode, EnvPod } from './env.js';
import { HTTP_PORT, UDP_PORT, deployed } from './services.js';
import { actorName, dnsProbe, httpProbe, udpProbe, type Echo } from './probes.js';

/** A check's verdict. */
export type CheckStatus = 'pass' | 'fail' | 'skip';

/** What one check found: its verdict and, in words, what it saw (on a failure: what went wrong, where). */
export interface CheckResult {
  status: CheckStatus;
  detail: string;
}

/** What a check runs over. */
export interface CheckContext {
  env: ConnectivityEnv;
  services: DeployedService[];
  /** True once the check's deadline has passed: loops stop (the runner has reported the timeout already). */
  expired(): boolean;
}

/** One check. */
export interface Check {
  /** `area/variant`, as `--test REGEX` matches it. */
  name: string;
  /** What passing shows, one sentence. */
  description: string;
  /** Its deadline, ms: past it the check fails as timed out. */
  timeoutMs: number;
  run(ctx: CheckContext): Promise<CheckResult>;
}

const pass = (detail: string): CheckResult => ({ status: 'pass', detail });
const fail = (detail: string): CheckResult => ({ status: 'fail', detail });
const skip = (detail: string): CheckResult => ({ status: 'skip', detail });

const asPod = (pod: EnvPod): Actor => ({ kind: 'pod', pod });
const asNode = (node: EnvNode): Actor => ({ kind: 'node', node });
const OUTSIDE: Actor = { kind: 'outside' };

/** Names, sorted and joined: `n1p1, n2p1`. */
const list = (xs: Iterable<string>) => [...new Set(xs)].sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).join(', ');

/** The first `max` problems, and how many more there were. */
function problems(ps: string[], max = 3): string {
  return ps.length <= max ? ps.join('; ') : `${ps.slice(0, max).join('; ')}; and ${ps.length - max} more`;
}

/**
 * `count` HTTP requests, each on a new connection, from `actor` to
 * `host:port`; each must be answered by one of `backends`.
 * @returns the echoes, or the first problem in words
 */
async function requests(ctx: CheckContext, actor: Actor, host: string, port: number, backends: EnvPod[], count: number): Promise<{ echoes: Echo[] } | { problem: string }> {
  const names = new Set(backends.map((b) => b.name));
  const echoes: Echo[] = [];
  for (let i = 0; i < count && !ctx.expired(); i++) {
    const r = await httpProbe(ctx.env, actor, host, port);
    const where = `${actorName(ctx.env, actor)} → ${host}:${port}`;
    if (!r.ok) return { problem: `${where}: ${r.error}${i ? ` (after ${i} answered)` : ''}` };
    if (!names.has(r.value.pod)) return { problem: `${where}: answered by ${r.value.pod}, which is not a backend (${list(names)})` };
    echoes.push(r.value);
  }
  return { echoes };
}

/** `count` datagrams from `actor` to `host:port`, each answered by one of `backends`. @returns the pods that answered, or the first problem */
async function datagrams(ctx: CheckContext, actor: Actor, host: string, port: number, backends: EnvPod[], count: number): Promise<{ pods: string[] } | { problem: string }> {
  const names = new Set(backends.map((b) => b.name));
  const pods: string[] = [];
  for (let i = 0; i < count && !ctx.expired(); i++) {
    const r = await udpProbe(ctx.env, actor, host, port);
    const where = `${actorName(ctx.env, actor)} → ${host}:${port}/udp`;
    if (!r.ok) return { problem: `${where}: ${r.error}${i ? ` (after ${i} answered)` : ''}` };
    if (!names.has(r.value)) return { problem: `${where}: answered by ${r.value}, which is not a backend (${list(names)})` };
    pods.push(r.value);
  }
  return { pods };
}

/**
 * How the outside reaches `vip`, from the agents: the nodes that announce it
 * by BGP, or the node that answers ARP for it.
 * @returns the announcing nodes and a phrase for the report, or a problem (no node announces it)
 */
async function announcement(env: ConnectivityEnv, vip: string): Promise<{ nodes: string[]; how: string } | { problem: string }> {
  if (env.announce === 'static') return { nodes: env.nodes.map((n) => n.name), how: 'static routes to every node' };
  const nodes: string[] = [];
  for (const n of env.nodes) {
    if (env.announce === 'bgp') {
      const b = (await env.agent(n, '/v1/bgp')) as { announced: Array<{ vip: string }> };
      if (b.announced.some((a) => a.vip === vip)) nodes.push(n.name);
    } else {
      const l2 = (await env.agent(n, '/v1/l2')) as { vips: Array<{ vip: string; local: boolean }> };
      if (l2.vips.some((v) => v.vip === vip && v.local)) nodes.push(n.name);
    }
  }
  if (env.announce === 'bgp') return nodes.length ? { nodes, how: `BGP, announced by ${list(nodes)}` } : { problem: `no node announces ${vip} by BGP` };
  if (nodes.length !== 1) return { problem: nodes.length ? `${list(nodes)} all answer ARP for ${vip}` : `no node answers ARP for ${vip}` };
  return { nodes, how: `layer 2, ${nodes[0]} answers ARP` };
}

const podToClusterIpTcp: Check = {
  name: 'pod-to-clusterip/tcp',
  description: "every client pod reaches the ClusterIP over TCP, on backends of its own node and of another node, and each backend sees the pod's own address (no NAT)",
  timeoutMs: 30_000,
  async run(ctx) {
    const echo = deployed(ctx.services, 'echo');
    const nodeOf = new Map(echo.spec.backends.map((b) => [b.name, b.node]));
    const found: string[] = [];
    const bad: string[] = [];
    for (const c of ctx.env.clients) {
      const wantSame = echo.spec.backends.some((b) => b.node === c.node);
      const wantOther = echo.spec.backends.some((b) => b.node !== c.node);
      const seen = new Set<string>();
      let same = false;
      let other = false;
      let problem = '';
      // New connections until both kinds of backend have answered (they spread by Maglev over the socket cookie).
      for (let i = 0; i < 24 && !(same === wantSame && other === wantOther) && !ctx.expired(); i++) {
        const r = await requests(ctx, asPod(c), echo.clusterIP, HTTP_PORT.port, echo.spec.backends, 1);
        if ('problem' in r) {
          problem = r.problem;
          break;
        }
        const e = r.echoes[0];
        if (e.peer !== c.ip) {
          problem = `${c.name} → ${echo.clusterIP}:${HTTP_PORT.port}: ${e.pod} saw ${e.peer}, not the pod's own ${c.ip}`;
          break;
        }
        seen.add(e.pod);
        if (nodeOf.get(e.pod) === c.node) same = true;
        else other = true;
      }
      if (!problem && wantSame && !same) problem = `${c.name}: no connection reached a backend on its own node ${c.node} (answered by ${list(seen)})`;
      if (!problem && wantOther && !other) problem = `${c.name}: no connection reached a backend on another node (answered by ${list(seen)})`;
      if (problem) bad.push(problem);
      else found.push(`${c.name} → ${list(seen)}`);
    }
    if (bad.length) return fail(problems(bad));
    return pass(`${echo.clusterIP}:${HTTP_PORT.port}: ${found.join('; ')}; each saw the pod's own address`);
  },
};

const podToClusterIpUdp: Check = {
  name: 'pod-to-clusterip/udp',
  description: 'every client pod reaches the ClusterIP over UDP (a connected socket) and gets the answers',
  timeoutMs: 30_000,
  async run(ctx) {
    const echo = deployed(ctx.services, 'echo');
    const bad: string[] = [];
    const answered = new Set<string>();
    for (const c of ctx.env.clients) {
      const r = await datagrams(ctx, asPod(c), echo.clusterIP, UDP_PORT.port, echo.spec.backends, 3);
      if ('problem' in r) bad.push(r.problem);
      else r.pods.forEach((p) => answered.add(p));
    }
    if (bad.length) return fail(problems(bad));
    return pass(`${echo.clusterIP}:${UDP_PORT.port}/udp from ${list(ctx.env.clients.map((c) => c.name))}: answered by ${list(answered)}`);
  },
};

/** Every client to the echo service's NodePort on the nodes `targets(client)` gives. */
async function podToNodePort(ctx: CheckContext, targets: (c: EnvPod) => EnvNode[]): Promise<CheckResult> {
  const echo = deployed(ctx.services, 'echo');
  const port = echo.nodePorts[HTTP_PORT.name];
  const bad: string[] = [];
  const done: string[] = [];
  for (const c of ctx.env.clients) {
    for (const n of targets(c)) {
      const r = await requests(ctx, asPod(c), n.ip, port, echo.spec.backends, 2);
      if ('problem' in r) bad.push(`${r.problem} (${n.name}'s NodePort)`);
      else done.push(`${c.name} → ${n.name}`);
    }
  }
  if (bad.length) return fail(problems(bad));
  return pass(`NodePort ${port}: ${done.join(', ')}`);
}

const podToNodePortSame: Check = {
  name: 'pod-to-nodeport/same-node',
  description: "every client pod reaches the NodePort on its own node's address",
  timeoutMs: 30_000,
  run: (ctx) => podToNodePort(ctx, (c) => ctx.env.nodes.filter((n) => n.name === c.node)),
};

const podToNodePortOther: Check = {
  name: 'pod-to-nodeport/other-node',
  description: "every client pod reaches the NodePort on every other node's address",
  timeoutMs: 30_000,
  async run(ctx) {
    if (ctx.env.nodes.length < 2) return skip('one node only');
    return podToNodePort(ctx, (c) => ctx.env.nodes.filter((n) => n.name !== c.node));
  },
};

const hostToClusterIp: Check = {
  name: 'host-to-clusterip',
  description: "every node's own processes reach the ClusterIP over TCP and UDP",
  timeoutMs: 30_000,
  async run(ctx) {
    const echo = deployed(ctx.services, 'echo');
    const bad: string[] = [];
    for (const n of ctx.env.nodes) {
      const t = await requests(ctx, asNode(n), echo.clusterIP, HTTP_PORT.port, echo.spec.backends, 2);
      if ('problem' in t) bad.push(t.problem);
      const u = await datagrams(ctx, asNode(n), echo.clusterIP, UDP_PORT.port, echo.spec.backends, 1);
      if ('problem' in u) bad.push(u.problem);
    }
    if (bad.length) return fail(problems(bad));
    return pass(`${echo.clusterIP} TCP ${HTTP_PORT.port} and UDP ${UDP_PORT.port} from ${list(ctx.env.nodes.map((n) => n.name))}`);
  },
};

const hairpin: Check = {
  name: 'hairpin',
  description: 'a pod reaches a ClusterIP whose only backend is the pod itself',
  timeoutMs: 20_000,
  async run(ctx) {
    const svc = deployed(ctx.services, 'hairpin');
    const self = svc.spec.backends[0];
    const r = await requests(ctx, asPod(self), svc.clusterIP, HTTP_PORT.port, svc.spec.backends, 3);
    if ('problem' in r) return fail(r.problem);
    return pass(`${self.name} → ${svc.clusterIP}:${HTTP_PORT.port} → ${self.name} itself, 3 connections`);
  },
};

const dns: Check = {
  name: 'dns',
  description: "every client pod resolves a service's name through the cluster DNS to its ClusterIP and calls the service by that name",
  timeoutMs: 30_000,
  async run(ctx) {
    const t = ctx.env.dnsTarget;
    if (!t) return skip('the cluster DNS names no service that answers HTTP here (the lab: default/web)');
    const bad: string[] = [];
    const answered = new Set<string>();
    for (const c of ctx.env.clients) {
      const r = await dnsProbe(ctx.env, asPod(c), t.fqdn);
      if (!r.ok) {
        bad.push(`${c.name}: dig ${t.fqdn}: ${r.error}`);
        continue;
      }
      if (r.value.length !== 1 || r.value[0] !== t.clusterIP) {
        bad.push(`${c.name}: ${t.fqdn} resolved to ${r.value.length ? r.value.join(' ') : 'nothing'}, not ${t.clusterIP}`);
        continue;
      }
      const h = await httpProbe(ctx.env, asPod(c), t.fqdn, t.port);
      if (!h.ok) bad.push(`${c.name} → http://${t.fqdn}:${t.port}/: ${h.error}`);
      else answered.add(h.value.pod);
    }
    if (bad.length) return fail(problems(bad));
    return pass(`${t.fqdn} → ${t.clusterIP}; http://${t.fqdn}:${t.port}/ answered by ${list(answered)}`);
  },
};

const outsideToLbTcp: Check = {
  name: 'outside-to-loadbalancer/tcp',
  description: 'the client outside the cluster reaches the LoadBalancer VIP over TCP (12 connections, spread over the nodes that announce it)',
  timeoutMs: 45_000,
  async run(ctx) {
    const echo = deployed(ctx.services, 'echo');
    const a = await announcement(ctx.env, echo.vip!);
    if ('problem' in a) return fail(a.problem);
    const r = await requests(ctx, OUTSIDE, echo.vip!, HTTP_PORT.port, echo.spec.backends, 12);
    if ('problem' in r) return fail(`${r.problem}; through ${a.how}`);
    return pass(`${echo.vip}:${HTTP_PORT.port} through ${a.how}: 12 connections answered by ${list(r.echoes.map((e) => e.pod))}`);
  },
};

const outsideToLbUdp: Check = {
  name: 'outside-to-loadbalancer/udp',
  description: 'the client outside the cluster reaches the LoadBalancer VIP over UDP',
  timeoutMs: 45_000,
  async run(ctx) {
    const echo = deployed(ctx.services, 'echo');
    const a = await announcement(ctx.env, echo.vip!);
    if ('problem' in a) return fail(a.problem);
    const r = await datagrams(ctx, OUTSIDE, echo.vip!, UDP_PORT.port, echo.spec.backends, 6);
    if ('problem' in r) return fail(`${r.problem}; through ${a.how}`);
    return pass(`${echo.vip}:${UDP_PORT.port}/udp through ${a.how}: 6 datagrams answered by ${list(r.pods)}`);
  },
};

const outsideToNodePort: Check = {
  name: 'outside-to-nodeport',
  description: 'the client outside the cluster reaches the NodePort on every node',
  timeoutMs: 45_000,
  async run(ctx) {
    const echo = deployed(ctx.services, 'echo');
    const port = echo.nodePorts[HTTP_PORT.name];
    const bad: string[] = [];
    for (const n of ctx.env.nodes) {
      const r = await requests(ctx, OUTSIDE, n.ip, port, echo.spec.backends, 2);
      if ('problem' in r) bad.push(`${n.name}: ${r.problem}`);
    }
    if (bad.length) return fail(problems(bad));
    return pass(`NodePort ${port} on ${list(ctx.env.nodes.map((n) => n.name))}`);
  },
};

/** The one backend that `count` connections of `actor` to `host:port` all reached, or the problem (the backends they spread over). */
async function stuck(ctx: CheckContext, actor: Actor, host: string, port: number, svc: DeployedService, count: number): Promise<{ pod: string } | { problem: string }> {
  const r = await requests(ctx, actor, host, port, svc.spec.backends, count);
  if ('problem' in r) return r;
  const pods = new Set(r.echoes.map((e) => e.pod));
  if (pods.size !== 1) return { problem: `${actorName(ctx.env, actor)} → ${host}:${port}: ${count} connections went to ${pods.size} backends (${list(pods)}), not one` };
  return { pod: [...pods][0] };
}

const affinityPod: Check = {
  name: 'session-affinity/pod',
  description: "sessionAffinity ClientIP: all of a client pod's connections to the ClusterIP go to one backend",
  timeoutMs: 40_000,
  async run(ctx) {
    const svc = deployed(ctx.services, 'affinity');
    if (svc.spec.backends.length < 2) return skip('the service has fewer than 2 backends: nothing to show');
    const bad: string[] = [];
    const got: string[] = [];
    for (const c of ctx.env.clients) {
      const r = await stuck(ctx, asPod(c), svc.clusterIP, HTTP_PORT.port, svc, 8);
      if ('problem' in r) bad.push(r.problem);
      else got.push(`${c.name} → ${r.pod}`);
    }
    if (bad.length) return fail(problems(bad));
    return pass(`${svc.clusterIP}:${HTTP_PORT.port}, 8 connections each: ${got.join(', ')}`);
  },
};

const affinityOutside: Check = {
  name: 'session-affinity/outside',
  description: "sessionAffinity ClientIP: all of the outside client's connections to a node's NodePort go to one backend (affinity is kept per node)",
  timeoutMs: 40_000,
  async run(ctx) {
    const svc = deployed(ctx.services, 'affinity');
    if (svc.spec.backends.length < 2) return skip('the service has fewer than 2 backends: nothing to show');
    const port = svc.nodePorts[HTTP_PORT.name];
    const bad: string[] = [];
    const got: string[] = [];
    for (const n of ctx.env.nodes) {
      const r = await stuck(ctx, OUTSIDE, n.ip, port, svc, 8);
      if ('problem' in r) bad.push(`${n.name}: ${r.problem}`);
      else got.push(`${n.name} → ${r.pod}`);
    }
    if (bad.length) return fail(problems(bad));
    return pass(`NodePort ${port}, 8 connections each: ${got.join(', ')}`);
  },
};

interface DropFlow {
  node: string;
  dropReason?: string;
  source: { ip: string; port: number };
  destination: { ip: string; port: number };
}

const sourceRangesDenied: Check = {
  name: 'source-ranges/denied',
  description: 'loadBalancerSourceRanges: the outside client, not in the ranges, gets no connection to the VIP, and a node records the drop with reason source_range',
  timeoutMs: 30_000,
  async run(ctx) {
    const svc = deployed(ctx.services, 'denied');
    const ranges = (svc.spec.sourceRanges ?? []).join(',');
    const a = await announcement(ctx.env, svc.vip!);
    if ('problem' in a) return fail(a.problem);
    let lastError = '';
    // Source ports of this run's own connections (below the kernel's ephemeral range), so that an
    // earlier run's drops do not count; a drop shows only on the node the router chose: new
    // connections until one has recorded it.
    const firstPort = 20000 + Math.floor(Math.random() * 9000);
    const since = new Date(Date.now() - 60_000).toISOString();
    for (let i = 0; i < 8 && !ctx.expired(); i++) {
      const localPort = firstPort + i;
      const r = await httpProbe(ctx.env, OUTSIDE, svc.vip!, HTTP_PORT.port, { localPort });
      if (r.ok) return fail(`${ctx.env.outside.ip} → ${svc.vip}:${HTTP_PORT.port} was answered by ${r.value.pod}, although ${ctx.env.outside.ip} is outside ${ranges}`);
      lastError = r.error;
      let flowsOn = 0;
      for (const n of ctx.env.nodes) {
        let flows: DropFlow[];
        try {
          flows = ((await ctx.env.agent(n, `/v1/flows?verdict=DROPPED&from-ip=${ctx.env.outside.ip}&to-ip=${svc.vip}&since=${since}&last=100`)) as { flows: DropFlow[] }).flows;
        } catch {
          continue; // this agent records no flows (flows.eventsPerSecond 0)
        }
        flowsOn++;
        const d = flows.find((f) => f.dropReason === 'source_range' && f.destination.port === HTTP_PORT.port && f.source.port === localPort);
        if (d) return pass(`${ctx.env.outside.ip} → ${svc.vip}:${HTTP_PORT.port} (ranges ${ranges}, through ${a.how}): ${lastError}; ${d.node} dropped it (source_range)`);
      }
      if (!flowsOn) return pass(`${ctx.env.outside.ip} → ${svc.vip}:${HTTP_PORT.port} (ranges ${ranges}): ${lastError} (no agent records flows: the drop itself is not shown)`);
    }
    return fail(`${ctx.env.outside.ip} → ${svc.vip}:${HTTP_PORT.port}: no answer (${lastError}), but no node recorded a source_range drop: the connection failed for another reason`);
  },
};

const sourceRangesAllowed: Check = {
  name: 'source-ranges/allowed',
  description: 'loadBalancerSourceRanges: the outside client, in the ranges, is served by the VIP',
  timeoutMs: 30_000,
  async run(ctx) {
    const svc = deployed(ctx.services, 'allowed');
    const a = await announcement(ctx.env, svc.vip!);
    if ('problem' in a) return fail(a.problem);
    const r = await requests(ctx, OUTSIDE, svc.vip!, HTTP_PORT.port, svc.spec.backends, 4);
    if ('problem' in r) return fail(`${r.problem} (ranges ${(svc.spec.sourceRanges ?? []).join(',')}, through ${a.how})`);
    return pass(`${svc.vip}:${HTTP_PORT.port} (ranges ${(svc.spec.sourceRanges ?? []).join(',')}): 4 connections answered`);
  },
};

const trafficPolicyLocal: Check = {
  name: 'traffic-policy-local',
  description: "externalTrafficPolicy Local: only nodes with a local endpoint announce the VIP and serve the NodePort, and the backend sees the outside client's own address",
  timeoutMs: 45_000,
  async run(ctx) {
    const svc = deployed(ctx.services, 'local');
    const port = svc.nodePorts[HTTP_PORT.name];
    const localNodes = new Set(svc.spec.backends.map((b) => b.node));
    const client = ctx.env.outside.ip;
    const bad: string[] = [];
    const notes: string[] = [];
    const seesClient = (r: Awaited<ReturnType<typeof requests>>, what: string) => {
      if ('problem' in r) return bad.push(`${what}: ${r.problem}`);
      const other = r.echoes.find((e) => e.peer !== client);
      if (other) bad.push(`${what}: ${other.pod} saw ${other.peer}, not the client's own ${client}`);
    };
    if (ctx.env.announce !== 'static') {
      const a = await announcement(ctx.env, svc.vip!);
      if ('problem' in a) return fail(a.problem);
      const strays = a.nodes.filter((n) => !localNodes.has(n));
      if (strays.length) bad.push(`${list(strays)} ${ctx.env.announce === 'bgp' ? 'announce' : 'answers ARP for'} ${svc.vip} without a local endpoint`);
      seesClient(await requests(ctx, OUTSIDE, svc.vip!, HTTP_PORT.port, svc.spec.backends, 8), `${svc.vip}:${HTTP_PORT.port}`);
      notes.push(`${svc.vip} through ${a.how}`);
    } else notes.push('static routes send the VIP to every node: checked through the NodePorts');
    for (const n of ctx.env.nodes) {
      if (localNodes.has(n.name)) {
        seesClient(await requests(ctx, OUTSIDE, n.ip, port, svc.spec.backends, 2), `${n.name}'s NodePort ${port}`);
        continue;
      }
      const r = await httpProbe(ctx.env, OUTSIDE, n.ip, port);
      if (r.ok) bad.push(`${n.name} has no local endpoint but its NodePort ${port} was answered by ${r.value.pod}`);
    }
    if (bad.length) return fail(problems(bad));
    const others = ctx.env.nodes.filter((n) => !localNodes.has(n.name)).map((n) => n.name);
    return pass(`${notes.join('; ')}; served by ${list(svc.spec.backends.map((b) => b.name))} on ${list(localNodes)}, which saw ${client}${others.length ? `; ${list(others)} did not serve` : ''}`);
  },
};

/** Every check, in the order they run. */
export const CHECKS: readonly Check[] = [
  podToClusterIpTcp,
  podToClusterIpUdp,
  podToNodePortSame,
  podToNodePortOther,
  hostToClusterIp,
  hairpin,
  dns,
  outsideToLbTcp,
  outsideToLbUdp,
  outsideToNodePort,
  affinityPod,
  affinityOutside,
  sourceRangesDenied,
  sourceRangesAllowed,
  trafficPolicyLocal,
];

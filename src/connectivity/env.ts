/**
 * What `xlb connectivity test` needs from the place it tests: a small
 * interface over "run this command as that client, read that agent's API,
 * deploy these services". The checks (checks.ts) see nothing else, so the
 * same list runs wherever an environment can be written for: the lab
 * (lab.ts: network namespaces, the agents' manifests file) today, a
 * Kubernetes cluster (test pods and Services through the API server) later.
 *
 * The servers are pods that run the lab's pod-server protocol
 * (src/lab/pod-server.ts): HTTP `GET /` on their target port answers
 * `POD-NAME CLIENT-IP:CLIENT-PORT` (the pod's name, then the peer address
 * it saw), and a UDP datagram on the UDP target port is answered with
 * `POD-NAME`. The clients need `curl`, `dig` and `socat`.
 */

/** A node of the environment, with its agent. */
export interface EnvNode {
  name: string;
  /** The node's address, where its NodePorts are served (IPv4). */
  ip: string;
  /** The node's agent API: `HOST:PORT` or `unix:/path` (as `xlb --api` takes it). */
  api: string;
}

/** A pod: a test client or a test server. */
export interface EnvPod {
  name: string;
  namespace: string;
  /** The node it runs on ({@link EnvNode.name}). */
  node: string;
  /** Its pod IP (IPv4). */
  ip: string;
}

/** Who runs a command: a pod (its network namespace, cgroup and resolv.conf), a node's own process, or the client outside the cluster. */
export type Actor = { kind: 'pod'; pod: EnvPod } | { kind: 'node'; node: EnvNode } | { kind: 'outside' };

/** What a command did. A command that could not be started at all is an error thrown by {@link ConnectivityEnv.exec} instead. */
export interface ExecResult {
  /** Exit status; null when it was killed (by its timeout). */
  status: number | null;
  stdout: string;
  stderr: string;
}

/** How clients outside the cluster reach LoadBalancer VIPs. */
export type Announce = 'bgp' | 'l2' | 'static';

/** A service port of a test service (TCP or UDP). */
export interface TestServicePort {
  /** The port's name (DNS label), e.g. `http`. */
  name: string;
  protocol: 'TCP' | 'UDP';
  port: number;
  /** The servers' port: 8080 for HTTP, 5353 for UDP echo. */
  targetPort: number;
}

/** A Service the connectivity test deploys for its checks, before the environment gives it addresses. */
export interface TestServiceSpec {
  /** `xlb-ct-...`: every test service's name has this prefix, so they are easy to tell (and clean) apart. */
  name: string;
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  ports: TestServicePort[];
  /** Its endpoints, all ready. */
  backends: EnvPod[];
  /** `sessionAffinity: ClientIP` (default None). */
  sessionAffinity?: 'ClientIP';
  /** `loadBalancerSourceRanges` (CIDRs). */
  sourceRanges?: string[];
  /** `externalTrafficPolicy` (default Cluster). */
  externalTrafficPolicy?: 'Cluster' | 'Local';
}

/** A test service as deployed, with the addresses the environment gave it. */
export interface DeployedService {
  spec: TestServiceSpec;
  namespace: string;
  clusterIP: string;
  /** The LoadBalancer VIP (LoadBalancer services only). */
  vip?: string;
  /** Node port by port name (NodePort and LoadBalancer services). */
  nodePorts: Record<string, number>;
}

/**
 * The place under test. Implementations: {@link import('./lab.js').LabEnvironment}.
 * Every method may throw an Error whose message says what is wrong in the
 * environment (not in a checked path): the run then fails as a whole.
 */
export interface ConnectivityEnv {
  /** What is tested, for the report's first line, e.g. `lab /run/xlb-lab`. */
  readonly description: string;
  /** How the outside client reaches LoadBalancer VIPs. */
  readonly announce: Announce;
  readonly nodes: EnvNode[];
  /** Test clients: one pod per node, none of them a backend of another test service. */
  readonly clients: EnvPod[];
  /** Test servers: the backends of the test services, on every node when there are enough pods. */
  readonly servers: EnvPod[];
  /** The client outside the cluster: its address as the nodes see it. */
  readonly outside: { name: string; ip: string };
  /**
   * A Service that the cluster DNS names and that answers HTTP as the
   * servers do (the lab: default/web); undefined when there is none, and the
   * DNS check is skipped.
   */
  readonly dnsTarget?: { name: string; fqdn: string; clusterIP: string; port: number };
  /**
   * Run `argv` as `actor`; never throws for a non-zero exit.
   * @param opts.timeoutMs the command is killed after this long (default 10000)
   * @param opts.input written to its stdin (default: none, stdin closed)
   */
  exec(actor: Actor, argv: string[], opts?: { timeoutMs?: number; input?: string }): Promise<ExecResult>;
  /** GET `path` from node `node`'s agent API, parsed JSON. @throws Error when the agent does not answer or answers an error */
  agent(node: EnvNode, path: string): Promise<unknown>;
  /**
   * Create the test services (replacing those of an earlier run) and return
   * them with their addresses. Returns once they are written, not once they
   * are programmed.
   */
  deploy(specs: TestServiceSpec[]): Promise<DeployedService[]>;
  /**
   * Wait, after every agent has programmed the test services, until outside
   * clients can reach their VIPs (the router holds the announced routes, or
   * each VIP has its layer 2 owner).
   * @throws Error naming what did not happen within `timeoutMs`
   */
  settle(timeoutMs: number): Promise<void>;
  /** Remove the test services (idempotent; safe after a failed or partial deploy). */
  cleanup(): Promise<void>;
}

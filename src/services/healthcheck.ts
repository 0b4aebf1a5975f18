/**
 * Service health checks: for every LoadBalancer service with
 * externalTrafficPolicy Local, the node answers HTTP on the service's
 * `spec.healthCheckNodePort`, so that external load balancers and cloud
 * controllers send traffic only to nodes that have a local endpoint.
 * This is kube-proxy's ServiceHealthServer (pkg/proxy/healthcheck/service_health.go).
 *
 * The rules, as kube-proxy applies them:
 *
 * - Which services: type LoadBalancer with externalTrafficPolicy Local and a
 *   non-zero healthCheckNodePort (`NeedsHealthCheck`, `HealthCheckNodePorts`).
 * - The count: per service (namespace/name, all its ports together), the
 *   number of distinct endpoint addresses that are ready and on this node
 *   (`EndpointsMap.LocalReadyEndpoints`, pkg/proxy/endpointschangetracker.go).
 *   Terminating endpoints are not ready, so a node left with only
 *   terminating endpoints fails the check and is drained.
 * - The answer, to any method and any path:
 *
 *   | local endpoints | proxy healthy | status | X-Load-Balancing-Endpoint-Weight |
 *   |-----------------|---------------|--------|----------------------------------|
 *   | 0               | any           | 503    | 0                                |
 *   | N > 0           | true          | 200    | N                                |
 *   | N > 0           | false         | 503    | N                                |
 *
 *   with `Content-Type: application/json`, `X-Content-Type-Options: nosniff`
 *   and the body (tabs, no trailing newline, as kube-proxy writes it):
 *
 *       {
 *       	"service": {
 *       		"namespace": "ns",
 *       		"name": "web"
 *       	},
 *       	"localEndpoints": 2,
 *       	"serviceProxyHealthy": true
 *       }
 *
 *   "Proxy healthy" is kube-proxy's own /healthz state; xlb's equivalent is
 *   the agent's readiness, passed in as `proxyHealthy`.
 *
 * Where xlb differs, on purpose: kube-proxy binds a service's port on all
 * addresses or none (one failure closes the rest until the next sync); xlb
 * keeps the addresses that bound and retries only the failed ones. Two
 * services naming one port: kube-proxy lets the bind race decide (map
 * order); xlb gives the port to the first by namespace/name and reports the
 * other.
 */
import http from 'node:http';
import net from 'node:net';
import type { InputIssue } from '../model/types.js';
import type { DesiredService } from './types.js';

/** One health check to serve: a service, its `spec.healthCheckNodePort`, its count. */
export interface HealthCheckService {
  namespace: string;
  name: string;
  /** `spec.healthCheckNodePort`, 1..65535. */
  port: number;
  /** Ready endpoints of the service on this node (distinct addresses), >= 0. */
  localEndpoints: number;
}

/** A problem serving one health check: `{ object: 'Service ns/name', field: 'spec.healthCheckNodePort', message }`. */
export type HealthCheckIssue = InputIssue;

/** The logger calls the server makes (pino's Logger fits). */
export interface HealthCheckLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** One wanted health check as the API shows it. */
export interface HealthCheckStatus {
  /** `namespace/name`. */
  service: string;
  namespace: string;
  name: string;
  port: number;
  localEndpoints: number;
  /** Addresses listening now, in the order the server was given them. */
  addresses: string[];
  /** What is wrong now (bind failures, port claimed by another service), absent when nothing. */
  lastError?: string;
}

const FIELD = 'spec.healthCheckNodePort';

// ---------------------------------------------------------------------------
// The count (pure).

/**
 * kube-proxy's `EndpointsMap.LocalReadyEndpoints`
 * (pkg/proxy/endpointschangetracker.go): for each service, the number of
 * distinct addresses among its endpoints that are ready and local, over all
 * its ports (10.0.0.1:80 and 10.0.0.1:443 count once). Services with none
 * are absent.
 *
 * @param ports translated service ports (several per service)
 * @returns `namespace/name` → count (> 0)
 */
export function localReadyEndpoints(ports: readonly DesiredService[]): Map<string, number> {
  const addrs = new Map<string, Set<string>>();
  for (const sp of ports) {
    for (const b of sp.backends) {
      if (!b.ready || !b.local) continue;
      const key = `${sp.namespace}/${sp.name}`;
      let set = addrs.get(key);
      if (!set) addrs.set(key, (set = new Set()));
      set.add(b.addr);
    }
  }
  const counts = new Map<string, number>();
  for (const [key, set] of addrs) counts.set(key, set.size);
  return counts;
}

/**
 * The health checks a node serves for a set of translated service ports:
 * kube-proxy's `HealthCheckNodePorts` (services of type LoadBalancer with
 * externalTrafficPolicy Local, core/v1 `NeedsHealthCheck`) joined with
 * {@link localReadyEndpoints} (0 when the service has no local ready endpoint).
 *
 * Issues: such a service without a healthCheckNodePort (the API server
 * always allocates one; a manifest may omit it) gets none served.
 *
 * @returns services sorted by namespace then name, input for {@link HealthCheckServer.sync}
 */
export function healthCheckServices(ports: readonly DesiredService[]): { services: HealthCheckService[]; issues: HealthCheckIssue[] } {
  const counts = localReadyEndpoints(ports);
  const seen = new Set<string>();
  const services: HealthCheckService[] = [];
  const issues: HealthCheckIssue[] = [];
  for (const sp of ports) {
    if (sp.type !== 'LoadBalancer' || sp.externalTrafficPolicy !== 'Local') continue;
    const key = `${sp.namespace}/${sp.name}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (!sp.healthCheckNodePort) {
      issues.push({ object: `Service ${key}`, field: FIELD, message: 'required for type LoadBalancer with externalTrafficPolicy Local; no health check is served' });
      continue;
    }
    services.push({ namespace: sp.namespace, name: sp.name, port: sp.healthCheckNodePort, localEndpoints: counts.get(key) ?? 0 });
  }
  services.sort(byName);
  return { services, issues };
}

function byName(a: { namespace: string; name: string }, b: { namespace: string; name: string }): number {
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

// ---------------------------------------------------------------------------
// The answer.

/** kube-proxy's health check body: JSON, tab-indented, no trailing newline. */
function body(namespace: string, name: string, count: number, proxyHealthy: boolean): string {
  return [
    '{',
    '\t"service": {',
    `\t\t"namespace": ${JSON.stringify(namespace)},`,
    `\t\t"name": ${JSON.stringify(name)}`,
    '\t},',
    `\t"localEndpoints": ${count},`,
    `\t"serviceProxyHealthy": ${proxyHealthy}`,
    '}',
  ].join('\n');
}

// ---------------------------------------------------------------------------
// The listeners.

/** One wanted service and its listeners (one per address). */
interface Instance {
  namespace: string;
  name: string;
  port: number;
  localEndpoints: number;
  /** address → listening server. */
  listeners: Map<string, http.Server>;
  /** address → why it failed to bind at the last attempt. */
  bindErrors: Map<string, string>;
  /** Set when another service holds the port. */
  conflict?: string;
}

/**
 * Serves the health checks of {@link HealthCheckService}s on the node's
 * addresses, one listener per (address, port). Calls are serialized: each
 * waits for the one before it.
 *
 * Failures never throw: a port that cannot be bound (in use, address not on
 * the node, no permission) is returned as an issue, the other ports and
 * addresses still serve, and the next `sync` or `setAddresses` tries again.
 */
export class HealthCheckServer {
  private addresses: string[] = [];
  private addressIssues: HealthCheckIssue[] = [];
  private inputIssues: HealthCheckIssue[] = [];
  private wanted: HealthCheckService[] = [];
  private readonly instances = new Map<string, Instance>();
  private readonly log?: HealthCheckLog;
  private readonly proxyHealthy: () => boolean;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  /**
   * @param opts.addresses IP addresses to listen on (the node's; `0.0.0.0`
   *   means every IPv4 address, as kube-proxy with nodePortAddresses unset).
   *   Bad entries are reported as issues by the first `sync`.
   * @param opts.log pino-like logger (info: opened/closed; warn: bind failures)
   * @param opts.proxyHealthy the agent's readiness, read at each request;
   *   false (or a throw) answers 503 whatever the count. Default: always true.
   */
  constructor(opts: { addresses: string[]; log?: HealthCheckLog; proxyHealthy?: () => boolean }) {
    this.log = opts.log;
    this.proxyHealthy = opts.proxyHealthy ?? (() => true);
    this.takeAddresses(opts.addresses);
  }

  /**
   * Make the listeners match exactly these services: open new ports, close
   * ports no longer wanted (or whose number changed), update counts in place
   * (no re-listen, open connections stay), retry binds that failed.
   * After `stop`, does nothing and returns [].
   *
   * @returns every current problem: invalid entries (port not 1..65535,
   *   count not a non-negative integer, service listed twice), a port held by
   *   a service first by namespace/name, binds that failed, bad addresses
   */
  sync(services: readonly HealthCheckService[]): Promise<HealthCheckIssue[]> {
    return this.serialized([], async () => {
      this.takeServices(services);
      return this.reconcile();
    });
  }

  /**
   * Listen on these addresses instead (node addresses change at run time):
   * every port opens on the new addresses and closes on the ones dropped;
   * listeners on addresses kept are left alone.
   *
   * @returns every current problem, as {@link sync}
   */
  setAddresses(addresses: readonly string[]): Promise<HealthCheckIssue[]> {
    return this.serialized([], async () => {
      this.takeAddresses(addresses);
      return this.reconcile();
    });
  }

  /** What is wanted and what listens, sorted by namespace then name. */
  status(): HealthCheckStatus[] {
    const out: HealthCheckStatus[] = [];
    for (const inst of this.instances.values()) {
      const s: HealthCheckStatus = {
        service: `${inst.namespace}/${inst.name}`,
        namespace: inst.namespace,
        name: inst.name,
        port: inst.port,
        localEndpoints: inst.localEndpoints,
        addresses: this.addresses.filter((a) => inst.listeners.has(a)),
      };
      const errors = inst.conflict !== undefined ? [inst.conflict] : [...inst.bindErrors].map(([a, e]) => `${hostPort(a, inst.port)}: ${e}`);
      if (errors.length) s.lastError = errors.join('; ');
      out.push(s);
    }
    return out.sort(byName);
  }

  /** Close every listener and every open connection (keep-alive included). Idempotent. */
  stop(): Promise<void> {
    return this.serialized(undefined, async () => {
      this.stopped = true;
      const all = [...this.instances.values()];
      this.instances.clear();
      await Promise.all(all.map((inst) => this.closeAll(inst)));
    });
  }

  // -------------------------------------------------------------------------

  /** Run fn after every call before it; after `stop`, answer `whenStopped` instead. */
  private serialized<T>(whenStopped: T, fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => (this.stopped ? whenStopped : fn()));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Validate addresses; keep the good ones, deduplicated. */
  private takeAddresses(addresses: readonly string[]): void {
    this.addressIssues = [];
    const good: string[] = [];
    addresses.forEach((a, i) => {
      if (net.isIP(a) === 0) this.addressIssues.push({ object: 'Node', field: `addresses[${i}]`, message: `not an IP address: ${JSON.stringify(a)}; health checks do not listen on it` });
      else if (!good.includes(a)) good.push(a);
    });
    this.addresses = good;
  }

  /** Validate services; keep the first entry of each namespace/name. */
  private takeServices(services: readonly HealthCheckService[]): void {
    this.inputIssues = [];
    const seen = new Set<string>();
    const good: HealthCheckService[] = [];
    for (const s of services) {
      const object = `Service ${s.namespace}/${s.name}`;
      if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) {
        this.inputIssues.push({ object, field: FIELD, message: `must be a port 1..65535 (got ${JSON.stringify(s.port)}); no health check is served` });
      } else if (!Number.isInteger(s.localEndpoints) || s.localEndpoints < 0) {
        this.inputIssues.push({ object, field: 'localEndpoints', message: `must be a non-negative integer (got ${JSON.stringify(s.localEndpoints)}); no health check is served` });
      } else if (seen.has(object)) {
        this.inputIssues.push({ object, field: FIELD, message: 'service listed twice; the first entry is served' });
      } else {
        seen.add(object);
        good.push({ namespace: s.namespace, name: s.name, port: s.port, localEndpoints: s.localEndpoints });
      }
    }
    this.wanted = good.sort(byName);
  }

  /** Bring listeners in line with `wanted` and `addresses`; returns the current issues. */
  private async reconcile(): Promise<HealthCheckIssue[]> {
    // Who gets each port: the first service by namespace/name.
    const owner = new Map<number, string>();
    const conflicts = new Map<string, string>();
    for (const s of this.wanted) {
      const key = `${s.namespace}/${s.name}`;
      const holder = owner.get(s.port);
      if (holder === undefined) owner.set(s.port, key);
      else conflicts.set(key, `port ${s.port} is also the health check port of Service ${holder}, which keeps it`);
    }

    // Close first, so that a port moving from one service to another is free to bind.
    const wantedByKey = new Map(this.wanted.map((s) => [`${s.namespace}/${s.name}`, s]));
    const closing: Promise<void>[] = [];
    for (const [key, inst] of this.instances) {
      const want = wantedByKey.get(key);
      if (!want || want.port !== inst.port) {
        closing.push(this.closeAll(inst));
        this.instances.delete(key);
      } else if (conflicts.has(key)) {
        closing.push(this.closeAll(inst));
      } else {
        for (const addr of inst.listeners.keys()) if (!this.addresses.includes(addr)) closing.push(this.closeOne(inst, addr));
      }
    }
    await Promise.all(closing);

    // Then update counts and open what is missing.
    const opening: Promise<void>[] = [];
    for (const s of this.wanted) {
      const key = `${s.namespace}/${s.name}`;
      let inst = this.instances.get(key);
      if (!inst) {
        inst = { namespace: s.namespace, name: s.name, port: s.port, localEndpoints: 0, listeners: new Map(), bindErrors: new Map() };
        this.instances.set(key, inst);
      }
      inst.localEndpoints = s.localEndpoints;
      inst.conflict = conflicts.get(key);
      for (const addr of inst.bindErrors.keys()) if (!this.addresses.includes(addr)) inst.bindErrors.delete(addr);
      if (inst.conflict !== undefined) {
        inst.bindErrors.clear();
        continue;
      }
      for (const addr of this.addresses) if (!inst.listeners.has(addr)) opening.push(this.open(inst, addr));
    }
    await Promise.all(opening);

    const issues = [...this.inputIssues, ...this.addressIssues];
    for (const inst of this.instances.values()) {
      const object = `Service ${inst.namespace}/${inst.name}`;
      if (inst.conflict !== undefined) issues.push({ object, field: FIELD, message: inst.conflict });
      for (const [addr, err] of inst.bindErrors) {
        issues.push({ object, field: FIELD, message: `cannot listen on ${hostPort(addr, inst.port)}: ${err}; retried on the next sync` });
      }
    }
    return issues;
  }

  /** Listen on (addr, inst.port); a failure is recorded in inst.bindErrors, never thrown. */
  private async open(inst: Instance, addr: string): Promise<void> {
    const server = http.createServer((req, res) => this.answer(inst, req, res));
    const where = hostPort(addr, inst.port);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: addr, port: inst.port, exclusive: true }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      const why = describeError(e);
      if (inst.bindErrors.get(addr) !== why) {
        this.log?.warn({ service: `${inst.namespace}/${inst.name}`, address: where, err: why }, 'health check: cannot listen');
      }
      inst.bindErrors.set(addr, why);
      return;
    }
    server.on('error', (e) => this.log?.warn({ service: `${inst.namespace}/${inst.name}`, address: where, err: describeError(e) }, 'health check: listener error'));
    inst.bindErrors.delete(addr);
    inst.listeners.set(addr, server);
    this.log?.info({ service: `${inst.namespace}/${inst.name}`, address: where }, 'health check: listening');
  }

  /** The answer to any request (kube-proxy's hcHandler.ServeHTTP). */
  private answer(inst: Instance, req: http.IncomingMessage, res: http.ServerResponse): void {
    let healthy: boolean;
    try {
      healthy = this.proxyHealthy() === true;
    } catch {
      healthy = false;
    }
    const count = inst.localEndpoints;
    const text = body(inst.namespace, inst.name, count, healthy);
    res.writeHead(count !== 0 && healthy ? 200 : 503, {
      'Content-Type': 'application/json',
      'X-Content-Type-Options': 'nosniff',
      'X-Load-Balancing-Endpoint-Weight': String(count),
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(req.method === 'HEAD' ? undefined : text);
  }

  private async closeAll(inst: Instance): Promise<void> {
    inst.bindErrors.clear();
    await Promise.all([...inst.listeners.keys()].map((addr) => this.closeOne(inst, addr)));
  }

  /** Stop listening on addr and drop its connections (idle keep-alive ones included). */
  private async closeOne(inst: Instance, addr: string): Promise<void> {
    const server = inst.listeners.get(addr);
    if (!server) return;
    inst.listeners.delete(addr);
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    this.log?.info({ service: `${inst.namespace}/${inst.name}`, address: hostPort(addr, inst.port) }, 'health check: closed');
  }
}

/** `10.0.0.1:30000`, `[fd00::1]:30000`. */
function hostPort(addr: string, port: number): string {
  return net.isIPv6(addr) ? `[${addr}]:${port}` : `${addr}:${port}`;
}

const ERRNO_WORDS: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'address not available on this node',
  EACCES: 'permission denied',
};

/** `address already in use (EADDRINUSE)`, or the error's message. */
function describeError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code && ERRNO_WORDS[code]) return `${ERRNO_WORDS[code]} (${code})`;
  return e instanceof Error ? e.message : String(e);
}

/**
 * The agent's HTTP API (fastify), read-only: it reads the agent's state and
 * never changes it. Listens on loopback by default, or on a unix socket
 * (`unix:/path`), which is how the lab's CLI reaches agents in other network
 * namespaces.
 *
 * A second, optional listener (`metrics.listen`, {@link startMetrics})
 * serves only /metrics and /healthz, for Prometheus.
 *
 * Routes: GET /healthz, /readyz, /metrics, /v1/services,
 * /v1/node, /v1/services/:namespace/:name, /v1/services/:namespace/:name/flow?flow=...,
 * /v1/datapath, /v1/bgp, /v1/l2, /v1/issues, /v1/conntrack?src=&dst=&backend=&service=&protocol=&limit=,
 * /v1/flows?last=&since=&from-ip=&to-ip=&from-pod=&to-service=&verdict=&protocol=&port=&node=,
 * /v1/servicemap?namespace=&window=&last= (servicemap.ts). Errors are JSON
 * `{ error, message }` with a code from errors.ts.
 *
 * It also serves the service map page, GET /ui/ (its files in src/ui/ and
 * cytoscape's from node_modules: no other host is reached), which polls
 * /v1/servicemap.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { packagePath } from '../util/package-root.js';
import type { Registry } from 'prom-client';
import type { ServiceView } from '../services/controller.js';
import type { InputIssue } from '../model/types.js';
import type { MapFill } from '../datapath/lbmaps.js';
import { ApiError, parseConntrackQuery, parseFlow, parseFlowsQuery, parseServiceMapQuery, strictQuery, type ConntrackQuery, type Flow } from './errors.js';
import type { Flow as ObservedFlow, FlowQuery, PodRef } from '../flows/flows.js';
import { serviceMap } from './servicemap.js';
import type { ConntrackListing } from '../datapath/conntrack_list.js';

/** What the API reads from the agent. */
export interface AgentView {
  /** Started and not stopping. */
  healthy(): boolean;
  /** The first full sync is programmed. */
  ready(): boolean;
  services(): ServiceView[];
  issues(): InputIssue[];
  datapath(): { attachments: unknown[]; maps: MapFill[]; pinDir?: string; neighbors: unknown[]; drops: Record<string, string> };
  /** Which backend a flow goes to for the service port `key` (undefined if the service has no table). */
  predict(key: string, flow: Flow): { backend: { id: number; addr: string; port: number } | null; hash: number; slot: number; tableSize: number } | undefined;
  registry: Registry;
  /** The BGP announcer's status; undefined when BGP is not configured. */
  bgp?(): unknown;
  /** The layer 2 announcer's status; undefined when L2 is not configured. */
  l2?(): unknown;
  /** The Kubernetes source's informers and LB IPAM; undefined with the file source. */
  kubernetes?(): unknown;
  /** The conntrack table, filtered (undefined: no datapath, as in tests with fake maps). */
  conntrack?(query: ConntrackQuery): ConntrackListing | undefined;
  /** The last flows, filtered (undefined: no datapath, or flow events off). */
  flowsView?(query: FlowQuery): { flows: ObservedFlow[]; suppressed: string; capacity: number } | undefined;
  /** The node the agent runs on (the service map names whose flows it shows). */
  node?: { name: string; addresses?: string[] };
  /** The pod at `ip` (`namespace/name`, and its node), from the EndpointSlices; undefined when none is known. */
  podOf?(ip: string): PodRef | undefined;
}

/**
 * The files of the service map page: GET /ui/<name> → [path on disk, content type].
 * cytoscape's browser build comes from its npm package (a runtime dependency).
 */
const UI_DIR = packagePath('src/ui');
const UI_FILES: Record<string, [file: () => string, type: string]> = {
  '': [() => path.join(UI_DIR, 'index.html'), 'text/html; charset=utf-8'],
  'servicemap.js': [() => path.join(UI_DIR, 'servicemap.js'), 'text/javascript; charset=utf-8'],
  'servicemap.css': [() => path.join(UI_DIR, 'servicemap.css'), 'text/css; charset=utf-8'],
  'cytoscape.min.js': [() => createRequire(import.meta.url).resolve('cytoscape/dist/cytoscape.min.js'), 'text/javascript; charset=utf-8'],
};
/**
 * The page loads only its own files and calls only this API; inline styles
 * are allowed because cytoscape sizes its canvases with them.
 */
const UI_CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * `HOST:PORT`, `[IPv6]:PORT` or `unix:/path` as fastify listen options
 * (an IPv6 host without its brackets, as the socket API takes it).
 * @param field the configuration key it came from, named in the error
 * @throws Error naming `field` when `listen` is neither
 */
export function listenOptions(listen: string, field = 'api.listen'): { host: string; port: number } | { path: string } {
  if (listen.startsWith('unix:')) return { path: listen.slice(5) };
  const i = listen.lastIndexOf(':');
  const port = Number(listen.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${field}: expected HOST:PORT or unix:/path (got ${JSON.stringify(listen)})`);
  const host = listen.slice(0, i);
  return { host: host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, port };
}

function serviceSummary(s: ServiceView) {
  return {
    namespace: s.namespace,
    name: s.name,
    port: s.portName,
    protocol: s.protocol,
    serviceId: s.serviceId,
    frontends: s.frontends,
    backends: s.backends.length,
    readyBackends: s.backends.filter((b) => b.state === 'ready').length,
    tableSize: s.tableSize,
  };
}

/** GET /healthz: 200 `{status: ok}` while the agent runs, 503 once it is stopping. */
function addHealthz(app: FastifyInstance, agent: Pick<AgentView, 'healthy'>): void {
  app.get('/healthz', async (_req, reply) => (agent.healthy() ? { status: 'ok' } : reply.code(503).send({ status: 'stopping' })));
}

/** GET /metrics: the registry in Prometheus' text format. */
function addMetrics(app: FastifyInstance, agent: Pick<AgentView, 'registry'>): void {
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', agent.registry.contentType);
    return agent.registry.metrics();
  });
}

/**
 * The metrics listener's app (not listening): GET /metrics and /healthz,
 * nothing else (404 `not_found`), so that Prometheus can scrape a node's
 * address without reaching the API.
 */
export function buildMetricsApi(agent: Pick<AgentView, 'healthy' | 'registry'>): FastifyInstance {
  const app = Fastify({ logger: false });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url} (this listener serves /metrics and /healthz only)` }));
  addHealthz(app, agent);
  addMetrics(app, agent);
  return app;
}

/** Build the fastify app (not listening): tests call `app.inject()`. */
export function buildApi(agent: AgentView): FastifyInstance {
  const app = Fastify({ logger: false });
  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof ApiError) return reply.code(err.status).send({ error: err.code, message: err.message });
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    return reply.code(status).send({ error: status === 404 ? 'not_found' : status < 500 ? 'bad_request' : 'internal', message: (err as Error).message });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url}` }));
  // The /v1 routes other than the flow prediction take no query parameters:
  // one given is a 400 naming it (probes and /metrics leave theirs alone).
  app.addHook('preHandler', async (req) => {
    const url = req.routeOptions.url ?? '';
    if (url.startsWith('/v1/') && !url.endsWith('/flow') && url !== '/v1/conntrack' && url !== '/v1/flows' && url !== '/v1/servicemap') strictQuery(req.query, []);
  });

  addHealthz(app, agent);
  app.get('/readyz', async (_req, reply) => (agent.ready() ? { status: 'ready' } : reply.code(503).send({ status: 'not ready' })));
  addMetrics(app, agent);
  app.get('/v1/services', async () => ({ services: agent.services().map(serviceSummary) }));
  app.get<{ Params: { namespace: string; name: string } }>('/v1/services/:namespace/:name', async (req) => {
    const ports = agent.services().filter((s) => s.namespace === req.params.namespace && s.name === req.params.name);
    if (!ports.length) throw new ApiError('service_not_found', 404, `service ${req.params.namespace}/${req.params.name} is not programmed`);
    return { namespace: req.params.namespace, name: req.params.name, ports };
  });
  app.get<{ Params: { namespace: string; name: string } }>(
    '/v1/services/:namespace/:name/flow',
    async (req) => {
      const q = strictQuery(req.query, ['flow', 'port'] as const);
      const flow = parseFlow(q.flow);
      const ports = agent
        .services()
        .filter((s) => s.namespace === req.params.namespace && s.name === req.params.name && s.protocol === flow.protocol);
      const port = q.port !== undefined ? ports.find((s) => s.portName === q.port) : ports.find((s) => s.frontends.some((f) => f.port === flow.dport)) ?? ports[0];
      if (!port) throw new ApiError('service_not_found', 404, `service ${req.params.namespace}/${req.params.name} has no ${flow.protocol} port${q.port !== undefined ? ` named ${q.port}` : ''}`);
      const p = agent.predict(port.key, flow);
      if (!p) throw new ApiError('no_table', 409, `service ${port.key} has no Maglev table (no ready backend)`);
      return { service: port.key, flow, ...p };
    },
  );
  app.get('/v1/node', async () => ({ name: agent.node?.name ?? '', addresses: agent.node?.addresses ?? [] }));
  app.get('/v1/datapath', async () => agent.datapath());
  app.get('/v1/bgp', async () => {
    const st = agent.bgp?.();
    if (st === undefined) throw new ApiError('bgp_disabled', 404, 'BGP is not configured on this agent (no bgp section in its configuration)');
    return st;
  });
  app.get('/v1/l2', async () => {
    const st = agent.l2?.();
    if (st === undefined) throw new ApiError('l2_disabled', 404, 'layer 2 announcements are not configured on this agent (no l2 section in its configuration)');
    return st;
  });
  app.get('/v1/kubernetes', async () => {
    const st = agent.kubernetes?.();
    if (st === undefined) throw new ApiError('kubernetes_disabled', 404, 'this agent reads a manifests file, not the Kubernetes API (source.file in its configuration)');
    return st;
  });
  app.get('/v1/issues', async () => ({ issues: agent.issues() }));
  app.get('/v1/conntrack', async (req) => {
    const query = parseConntrackQuery(req.query);
    if (query.service && !agent.services().some((s) => `${s.namespace}/${s.name}` === query.service)) {
      throw new ApiError('service_not_found', 404, `service ${query.service} is not programmed`);
    }
    const listing = agent.conntrack?.(query);
    if (!listing) throw new ApiError('no_datapath', 404, 'this agent has no datapath to read conntrack from');
    return listing;
  });
  app.get('/v1/flows', async (req) => {
    const query = parseFlowsQuery(req.query, Date.now());
    const view = agent.flowsView?.(query);
    if (!view) throw new ApiError('no_flows', 404, 'this agent records no flows (no datapath, or flows.eventsPerSecond is 0)');
    return view;
  });
  // A 200 with flows.enabled false when the agent records no flows: the page draws the services all the same.
  app.get('/v1/servicemap', async (req) => {
    const query = parseServiceMapQuery(req.query);
    const now = Date.now();
    return serviceMap(agent.services(), { flows: agent.flowsView?.({}), podOf: agent.podOf?.bind(agent), node: agent.node?.name }, query, now);
  });
  // The page's relative links (servicemap.js, ../v1/servicemap) need the trailing slash.
  app.get('/ui', async (_req, reply) => reply.redirect('/ui/', 302));
  const uiCache = new Map<string, Buffer>();
  const uiFile = (name: string) => async (_req: unknown, reply: FastifyReply) => {
    const entry = Object.hasOwn(UI_FILES, name) ? UI_FILES[name] : undefined;
    if (!entry) throw new ApiError('not_found', 404, `no file ${JSON.stringify(name)} in the service map page (known: ${Object.keys(UI_FILES).filter(Boolean).join(', ')})`);
    let body = uiCache.get(name);
    if (!body) {
      body = fs.readFileSync(entry[0]());
      uiCache.set(name, body);
    }
    reply.header('content-type', entry[1]).header('content-security-policy', UI_CSP).header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache');
    return reply.send(body);
  };
  app.get('/ui/', uiFile(''));
  app.get<{ Params: { file: string } }>('/ui/:file', async (req, reply) => uiFile(req.params.file)(req, reply));
  return app;
}

/**
 * Build and listen. A stale unix socket file is removed first.
 * @throws Error naming api.listen and the address when it cannot listen
 */
export async function startApi(agent: AgentView, listen: string): Promise<FastifyInstance> {
  return listenOn(buildApi(agent), listen, 'api.listen');
}

/**
 * Build the metrics listener ({@link buildMetricsApi}) and listen on
 * `listen` (`HOST:PORT`, `metrics.listen`).
 * @throws Error naming metrics.listen and the address when it cannot listen
 */
export async function startMetrics(agent: Pick<AgentView, 'healthy' | 'registry'>, listen: string): Promise<FastifyInstance> {
  return listenOn(buildMetricsApi(agent), listen, 'metrics.listen');
}

async function listenOn(app: FastifyInstance, listen: string, field: string): Promise<FastifyInstance> {
  const opts = listenOptions(listen, field);
  if ('path' in opts) fs.rmSync(opts.path, { force: true });
  try {
    await app.listen(opts);
  } catch (e) {
    await app.close().catch(() => undefined);
    throw new Error(`${field} ${listen}: ${(e as Error).message}`);
  }
  return app;
}

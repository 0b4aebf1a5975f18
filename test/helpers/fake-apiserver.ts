/**
 * An API server inside the tests that speaks the real list/watch protocol
 * (Kubernetes API concepts, "Efficient detection of changes" and "Retrieving
 * large results sets in chunks") for the resources xlb reads and writes:
 * core/v1 services, nodes, events; discovery.k8s.io/v1 endpointslices;
 * coordination.k8s.io/v1 leases.
 *
 * - One resourceVersion counter for everything, as etcd's revision is.
 * - GET on a collection lists (`limit`/`continue` chunking from a consistent
 *   snapshot, `remainingItemCount`, list `metadata.resourceVersion`;
 *   `resourceVersion=0` answers whole, ignoring `limit`, as the watch cache
 *   does); list items carry no kind/apiVersion, as the real server's do not.
 * - `?watch=true&resourceVersion=N` streams newline-delimited JSON events
 *   (ADDED, MODIFIED, DELETED, BOOKMARK with `allowWatchBookmarks=true`,
 *   ERROR) with chunked transfer encoding; events after N are replayed from
 *   history; N older than the last compaction gets `200` and an ERROR event
 *   whose object is a Status with code 410 (reason Expired), then the stream
 *   ends, which is what kube-apiserver does.
 * - POST, PUT (with resourceVersion preconditions: 409 Conflict), PATCH
 *   (merge, strategic merge treated as merge, JSON patch), DELETE; the
 *   `status` subresource of services and of xlb's custom resources; lease
 *   MicroTime fields are checked for the 6-digit fraction the server's
 *   RFC3339Micro parser needs.
 * - xlb's custom resources (xlb.io/v1alpha1, cluster-scoped) as their CRDs
 *   in deploy/helm/xlb/crds define them: every write is checked against the
 *   CRD's openAPIV3Schema and its defaults applied (crd-schema.ts; 422
 *   Invalid otherwise, as kube-apiserver answers), `metadata.generation`
 *   starts at 1 and grows when `spec` changes, a write of the main resource
 *   keeps `status` and a status write keeps everything else. A CRD can be
 *   taken away ({@link FakeApiServer.setServed}): its paths answer 404.
 * - Selectors: `fieldSelector` on metadata.name / metadata.namespace,
 *   `labelSelector` with `k`, `!k`, `k=v`, `k==v`, `k!=v`.
 *
 * Test controls: {@link FakeApiServer.upsert}, {@link FakeApiServer.remove},
 * {@link FakeApiServer.injectRaw} (objects that bypass validation),
 * {@link FakeApiServer.dropWatches}, {@link FakeApiServer.holdWatches},
 * {@link FakeApiServer.compact}, {@link FakeApiServer.sendBookmarks},
 * {@link FakeApiServer.failNext}. Plain HTTP on 127.0.0.1, random port; the
 * kubeconfig it writes uses a bearer token the server checks.
 */
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { crValidator, type CrValidator } from './crd-schema.js';

/** A resource the fake serves. */
export interface ResourceDef {
  /** '' for core. */
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

/** The resources served, by plural. */
export const RESOURCES = {
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  nodes: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  events: { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  endpointslices: { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  loadbalancerippools: { group: 'xlb.io', version: 'v1alpha1', plural: 'loadbalancerippools', kind: 'LoadBalancerIPPool', namespaced: false },
  bgppeers: { group: 'xlb.io', version: 'v1alpha1', plural: 'bgppeers', kind: 'BGPPeer', namespaced: false },
  l2announcementpolicies: { group: 'xlb.io', version: 'v1alpha1', plural: 'l2announcementpolicies', kind: 'L2AnnouncementPolicy', namespaced: false },
  bgpadvertisements: { group: 'xlb.io', version: 'v1alpha1', plural: 'bgpadvertisements', kind: 'BGPAdvertisement', namespaced: false },
} as const satisfies Record<string, ResourceDef>;

/** Resources defined by a CRD (xlb's): schema-checked, with generation and a status subresource. */
const CUSTOM = new Set<Resource>(['loadbalancerippools', 'bgppeers', 'l2announcementpolicies', 'bgpadvertisements']);
/** Resources with a `status` subresource. */
const WITH_STATUS = new Set<Resource>(['services', ...CUSTOM]);

/** Plural name of a served resource. */
export type Resource = keyof typeof RESOURCES;

/** A stored object (raw JSON). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type KObject = Record<string, any> & { metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown } };

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEntry {
  rv: number;
  resource: Resource;
  type: EventType;
  object: KObject;
}

interface Watcher {
  resource: Resource;
  namespace?: string;
  field: Selector;
  label: Selector;
  bookmarks: boolean;
  res: http.ServerResponse;
  timer?: NodeJS.Timeout;
}

interface ListSnapshot {
  rv: number;
  items: KObject[];
}

type Selector = (o: KObject) => boolean;

/** A request as the server saw it, for assertions. */
export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  watch: boolean;
}

/** A fault to inject on the next matching requests. */
export interface Fault {
  method?: string;
  /** Matched against the path (without query). */
  path?: RegExp;
  /** Only watch requests (true), only non-watch (false), or both (undefined). */
  watch?: boolean;
  status: number;
  /** Status `reason`, default from the code. */
  reason?: string;
  /** How many requests fail, default 1. */
  count?: number;
}

/** Options of {@link FakeApiServer.start}. */
export interface FakeApiServerOptions {
  /** Send a BOOKMARK to every bookmark-enabled watch this often, ms; 0 (default): only on {@link FakeApiServer.sendBookmarks}. */
  bookmarkIntervalMs?: number;
  /** Bearer token the server requires; default random. */
  token?: string;
  /**
   * Called when a list response's last byte has been handed to the kernel
   * (on loopback: it is in the client's receive queue), with the resource
   * and that time on the wall clock shared by processes
   * (performance.timeOrigin + performance.now(), ms): when the list
   * arrived, as the sender sees it. For benchmarks.
   */
  onListSent?: (resource: string, sentAtMs: number) => void;
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Expired',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
};

/** A meta/v1 Status, as the server sends for errors. */
export function statusObject(code: number, message: string, reason = REASONS[code] ?? 'Unknown', details?: Record<string, unknown>): KObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {} as KObject['metadata'], status: 'Failure', message, reason, code, ...(details ? { details } : {}) };
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
  }
}

const clone = <T>(o: T): T => structuredClone(o);
const keyOf = (ns: string | undefined, name: string) => `${ns ?? ''}/${name}`;

/** RFC3339 with exactly 6 fractional digits (metav1.MicroTime's wire form). */
const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/;
/** RFC3339 (metav1.Time), fraction optional. */
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function parseLabelSelector(s: string | undefined): Selector {
  if (!s) return () => true;
  const labels = (o: KObject) => (o.metadata.labels ?? {}) as Record<string, string>;
  const reqs = s.split(',').map((r) => r.trim()).filter(Boolean).map((r): Selector => {
    let m: RegExpExecArray | null;
    if ((m = /^!([^=!]+)$/.exec(r))) return (o) => !(m![1] in labels(o));
    if ((m = /^([^=!]+)!=(.*)$/.exec(r))) return (o) => labels(o)[m![1]] !== m![2];
    if ((m = /^([^=!]+)==?(.*)$/.exec(r))) return (o) => labels(o)[m![1]] === m![2];
    if ((m = /^([^=!]+)$/.exec(r))) return (o) => m![1] in labels(o);
    throw new HttpError(400, `unable to parse requirement: ${r}`);
  });
  return (o) => reqs.every((f) => f(o));
}

function parseFieldSelector(s: string | undefined): Selector {
  if (!s) return () => true;
  const reqs = s.split(',').map((r): Selector => {
    const m = /^(metadata\.name|metadata\.namespace)(==?|!=)(.*)$/.exec(r.trim());
    if (!m) throw new HttpError(400, `field label not supported: ${r}`);
    const get = (o: KObject) => (m[1] === 'metadata.name' ? o.metadata.name : (o.metadata.namespace ?? ''));
    return m[2] === '!=' ? (o) => get(o) !== m[3] : (o) => get(o) === m[3];
  });
  return (o) => reqs.every((f) => f(o));
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** RFC 6902 JSON patch (add, replace, remove, test). */
function jsonPatch(doc: KObject, ops: unknown): KObject {
  if (!Array.isArray(ops)) throw new HttpError(400, 'json patch: body must be a list of operations');
  const out = clone(doc);
  for (const op of ops as Array<{ op: string; path: string; value?: unknown }>) {
    const parts = op.path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop();
    if (last === undefined) throw new HttpError(422, `json patch: bad path ${op.path}`);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let parent: any = out;
    for (const p of parts) {
      if (parent[p] === undefined) {
        if (op.op === 'test') throw new HttpError(422, `json patch: test failed at ${op.path}`);
        throw new HttpError(422, `json patch: missing ${op.path}`);
      }
      parent = parent[p];
    }
    switch (op.op) {
      case 'add':
      case 'replace':
        if (op.op === 'replace' && !(last in parent)) throw new HttpError(422, `json patch: replace of missing ${op.path}`);
        if (Array.isArray(parent)) {
          if (last === '-') parent.push(op.value);
          else if (op.op === 'add') parent.splice(Number(last), 0, op.value);
          else parent[Number(last)] = op.value;
        } else parent[last] = op.value;
        break;
      case 'remove':
        if (!(last in parent)) throw new HttpError(422, `json patch: remove of missing ${op.path}`);
        if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete parent[last];
        break;
      case 'test':
        if (JSON.stringify(parent[last]) !== JSON.stringify(op.value)) throw new HttpError(422, `json patch: test failed at ${op.path}`);
        break;
      default:
        throw new HttpError(422, `json patch: unsupported op ${op.op}`);
    }
  }
  return out;
}

/** The in-test API server. See the module comment. */
export class FakeApiServer {
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private readonly stores = new Map<Resource, Map<string, KObject>>();
  private readonly history: HistoryEntry[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly snapshots = new Map<string, ListSnapshot>();
  private readonly held: Array<() => void> = [];
  private readonly faults: Fault[] = [];
  private readonly clients = new Map<string, string>();
  private readonly blocked = new Set<string>();
  /** Custom resources whose CRD is taken away (their paths answer 404). */
  private readonly unserved = new Set<Resource>();
  private readonly validators = new Map<Resource, CrValidator | undefined>();
  private rv = 100;
  /** Watches and continue tokens older than this get 410. */
  private compactedBefore = 0;
  private holding = false;
  private bookmarkTimer?: NodeJS.Timeout;
  private dir = '';
  /** Every request served, in order. */
  readonly requests: RequestRecord[] = [];
  url = '';
  kubeconfigPath = '';
  readonly token: string;

  private constructor(private readonly opts: FakeApiServerOptions) {
    this.token = opts.token ?? randomUUID();
    for (const r of Object.keys(RESOURCES) as Resource[]) this.stores.set(r, new Map());
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (!res.headersSent) this.sendStatus(res, 500, `fake apiserver: ${(e as Error).stack}`);
        else res.destroy();
      });
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  /** Listen on 127.0.0.1 (random port) and write the kubeconfig. */
  static async start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const s = new FakeApiServer(opts);
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    const port = (s.server.address() as AddressInfo).port;
    s.url = `http://127.0.0.1:${port}`;
    s.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-fake-apiserver-'));
    s.kubeconfigPath = path.join(s.dir, 'kubeconfig');
    // JSON is YAML: client-node's loader reads it as is.
    const kubeconfig = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: s.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'xlb', user: { token: s.token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'xlb' } }],
      'current-context': 'fake',
    };
    fs.writeFileSync(s.kubeconfigPath, JSON.stringify(kubeconfig, null, 2));
    if (opts.bookmarkIntervalMs) s.bookmarkTimer = setInterval(() => s.sendBookmarks(), opts.bookmarkIntervalMs);
    return s;
  }

  /** Stop listening, end every connection, remove the kubeconfig. */
  async close(): Promise<void> {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    for (const w of this.watchers) if (w.timer) clearTimeout(w.timer);
    this.watchers.clear();
    for (const release of this.held.splice(0)) release();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** The current resourceVersion (the last write's). */
  get resourceVersion(): number {
    return this.rv;
  }

  /** Number of open watch streams, per resource when given. */
  watchCount(resource?: Resource): number {
    return [...this.watchers].filter((w) => !resource || w.resource === resource).length;
  }

  /** Requests seen so far that match. */
  countRequests(filter: { method?: string; path?: RegExp; watch?: boolean }): number {
    return this.requests.filter(
      (r) => (!filter.method || r.method === filter.method) && (!filter.path || filter.path.test(r.path)) && (filter.watch === undefined || r.watch === filter.watch),
    ).length;
  }

  // -------------------------------------------------------------------------
  // Test controls.

  /**
   * A kubeconfig for one named client (its own token), so that a test can
   * cut that client off with {@link blockClient}. Returns the file path.
   */
  clientKubeconfig(name: string): string {
    const token = `${this.token}-${name}`;
    this.clients.set(name, token);
    const file = path.join(this.dir, `kubeconfig-${name}`);
    const kc = JSON.parse(fs.readFileSync(this.kubeconfigPath, 'utf8'));
    kc.users[0].user.token = token;
    fs.writeFileSync(file, JSON.stringify(kc, null, 2));
    return file;
  }

  /** Cut a named client off (its connections are reset, as in a partition), or let it back. */
  blockClient(name: string, blocked = true): void {
    if (blocked) this.blocked.add(name);
    else this.blocked.delete(name);
  }

  /** A copy of a stored object. */
  get(resource: Resource, namespace: string | undefined, name: string): KObject | undefined {
    const o = this.stores.get(resource)!.get(keyOf(RESOURCES[resource].namespaced ? namespace : undefined, name));
    return o ? clone(o) : undefined;
  }

  /** Copies of every stored object of a resource. */
  list(resource: Resource): KObject[] {
    return [...this.stores.get(resource)!.values()].map(clone);
  }

  /**
   * Create or replace an object (no precondition), as another client would;
   * emits ADDED or MODIFIED. Returns the stored copy. A custom resource is
   * checked against its CRD's schema and defaulted, and keeps its status
   * unless `obj` carries one.
   * @throws Error `<Kind>.<group> "<name>" is invalid: <field>: <problem>` for a custom resource the schema refuses
   */
  upsert(resource: Resource, obj: Record<string, unknown>): KObject {
    const o = clone(obj) as KObject;
    if (CUSTOM.has(resource)) {
      const prev = this.stores.get(resource)!.get(keyOf(undefined, o.metadata?.name));
      if (prev && o.status === undefined && prev.status !== undefined) o.status = clone(prev.status);
      this.checkSchema(resource, o);
    }
    return this.write(resource, o);
  }

  /** Serve a custom resource or take its CRD away (its paths answer 404, its watches end); served by default. */
  setServed(resource: Resource, served: boolean): void {
    if (served) this.unserved.delete(resource);
    else {
      this.unserved.add(resource);
      for (const w of [...this.watchers]) if (w.resource === resource) this.endWatch(w, false);
    }
  }

  /** Many objects at once (each its own resourceVersion), without per-object copies of the input. */
  upsertMany(resource: Resource, objs: Array<Record<string, unknown>>): void {
    for (const o of objs) this.write(resource, o as KObject, false);
  }

  /** Store an object exactly as given (no defaults, no validation): for invalid input. */
  injectRaw(resource: Resource, obj: Record<string, unknown>): KObject {
    return this.write(resource, clone(obj) as KObject);
  }

  /** Delete an object; emits DELETED. Returns whether it existed. */
  remove(resource: Resource, namespace: string | undefined, name: string): boolean {
    const store = this.stores.get(resource)!;
    const k = keyOf(RESOURCES[resource].namespaced ? namespace : undefined, name);
    const o = store.get(k);
    if (!o) return false;
    store.delete(k);
    const rv = ++this.rv;
    const last = clone(o);
    last.metadata.resourceVersion = String(rv);
    this.publish({ rv, resource, type: 'DELETED', object: last });
    return true;
  }

  /**
   * End every open watch stream: abruptly (the socket is destroyed, the
   * client sees an error), or `graceful` (the chunked body ends, as on the
   * server's own timeout). Returns how many were open.
   */
  dropWatches(opts: { graceful?: boolean; resource?: Resource } = {}): number {
    let n = 0;
    for (const w of [...this.watchers]) {
      if (opts.resource && w.resource !== opts.resource) continue;
      n++;
      this.endWatch(w, !opts.graceful);
    }
    return n;
  }

  /** Park new watch requests (no answer) until {@link releaseWatches}. */
  holdWatches(): void {
    this.holding = true;
  }

  /** Serve the parked watch requests and stop parking. */
  releaseWatches(): void {
    this.holding = false;
    for (const release of this.held.splice(0)) release();
  }

  /** Number of parked watch requests. */
  heldWatchCount(): number {
    return this.held.length;
  }

  /**
   * Compact history: every resourceVersion before the current one is gone,
   * so a watch from an older version gets 410 Gone and so does a continue
   * token of an older list.
   */
  compact(): void {
    this.compactedBefore = this.rv;
    this.history.length = 0;
    for (const [id, s] of this.snapshots) if (s.rv < this.compactedBefore) this.snapshots.delete(id);
  }

  /** Send a BOOKMARK at the current resourceVersion to every watch that asked for bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const { group, version, kind } = RESOURCES[w.resource];
      this.writeLine(w, { type: 'BOOKMARK', object: { kind, apiVersion: group ? `${group}/${version}` : version, metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  /** Write a raw line (e.g. not JSON) to every watch of a resource. */
  injectWatchLine(resource: Resource, line: string): void {
    for (const w of this.watchers) if (w.resource === resource) w.res.write(`${line}\n`);
  }

  /** Fail the next matching requests with a Status of `status`. */
  failNext(fault: Fault): void {
    this.faults.push({ count: 1, ...fault });
  }

  // -------------------------------------------------------------------------
  // Storage.

  private write(resource: Resource, obj: KObject, copyOut = true): KObject {
    const def = RESOURCES[resource];
    if (!obj.metadata || typeof obj.metadata.name !== 'string' || !obj.metadata.name) throw new Error(`fake apiserver: ${def.kind} without metadata.name`);
    if (def.namespaced) obj.metadata.namespace ??= 'default';
    else delete obj.metadata.namespace;
    const store = this.stores.get(resource)!;
    const k = keyOf(obj.metadata.namespace, obj.metadata.name);
    const prev = store.get(k);
    const rv = ++this.rv;
    obj.apiVersion = def.group ? `${def.group}/${def.version}` : def.version;
    obj.kind = def.kind;
    obj.metadata.resourceVersion = String(rv);
    obj.metadata.uid = prev?.metadata.uid ?? obj.metadata.uid ?? randomUUID();
    obj.metadata.creationTimestamp = prev?.metadata.creationTimestamp ?? obj.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    if (resource === 'services') {
      obj.status ??= { loadBalancer: {} };
    }
    if (CUSTOM.has(resource)) {
      const gen = typeof prev?.metadata.generation === 'number' ? prev.metadata.generation : 0;
      obj.metadata.generation = !prev || !isDeepStrictEqual(prev.spec, obj.spec) ? gen + 1 : gen;
    }
    store.set(k, obj);
    this.publish({ rv, resource, type: prev ? 'MODIFIED' : 'ADDED', object: obj });
    return copyOut ? clone(obj) : obj;
  }

  private publish(e: HistoryEntry): void {
    this.history.push(e);
    for (const w of this.watchers) if (this.matches(w, e)) this.writeLine(w, { type: e.type, object: e.object });
  }

  private matches(w: Watcher, e: HistoryEntry): boolean {
    return e.resource === w.resource && (!w.namespace || e.object.metadata.namespace === w.namespace) && w.field(e.object) && w.label(e.object);
  }

  private writeLine(w: Watcher, event: unknown): void {
    if (!w.res.writableEnded && !w.res.destroyed) w.res.write(`${JSON.stringify(event)}\n`);
  }

  private endWatch(w: Watcher, abrupt: boolean): void {
    this.watchers.delete(w);
    if (w.timer) clearTimeout(w.timer);
    if (abrupt) w.res.socket?.destroy();
    else w.res.end();
  }

  // -------------------------------------------------------------------------
  // HTTP.

  private sendJson(res: http.ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private sendStatus(res: http.ServerResponse, code: number, message: string, reason?: string): void {
    this.sendJson(res, code, statusObject(code, message, reason));
  }

  private async readBody(req: http.IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new HttpError(400, `body is not JSON: ${text.slice(0, 80)}`);
    }
  }

  /** Forward a GET to a pod's `status.podIP` (port from `NAME:PORT`, else 80), as the API server's pod proxy does. */
  private async proxyToPod(namespace: string, nameAndPort: string, url: URL, res: http.ServerResponse): Promise<void> {
    const [name, port] = nameAndPort.split(':');
    const pod = this.stores.get('pods')!.get(keyOf(namespace, name));
    if (!pod) throw new HttpError(404, `pods "${name}" not found`, 'NotFound');
    const ip = (pod as { status?: { podIP?: string } }).status?.podIP;
    if (!ip) throw new HttpError(503, `pod ${name} has no IP`);
    const rest = url.pathname.split('/proxy')[1] || '/';
    await new Promise<void>((resolve) => {
      const upstream = http.get({ host: ip, port: Number(port ?? 80), path: `${rest}${url.search}` }, (up) => {
        res.writeHead(up.statusCode ?? 502, { 'content-type': up.headers['content-type'] ?? 'text/plain' });
        up.pipe(res);
        up.on('end', resolve);
      });
      upstream.on('error', (e) => {
        this.sendStatus(res, 503, `error trying to reach service: ${e.message}`, 'ServiceUnavailable');
        resolve();
      });
    });
  }

  /** `/api/v1/...` or `/apis/G/V/...` → resource, namespace, name, subresource. */
  private route(pathname: string): { resource: Resource; namespace?: string; name?: string; sub?: string } {
    // Segments decoded, as the API server decodes them (`NAME%3APORT` of a pod proxy).
    const parts = pathname.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
    let group: string;
    let version: string;
    let rest: string[];
    if (parts[0] === 'api') [group, version, rest] = ['', parts[1], parts.slice(2)];
    else if (parts[0] === 'apis') [group, version, rest] = [parts[1], parts[2], parts.slice(3)];
    else throw new HttpError(404, `the server could not find the requested resource (${pathname})`);
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const entry = Object.entries(RESOURCES).find(([, d]) => d.group === group && d.version === version && d.plural === rest[0]);
    if (!entry) throw new HttpError(404, `the server could not find the requested resource (${pathname})`);
    const resource = entry[0] as Resource;
    if (this.unserved.has(resource)) throw new HttpError(404, `the server could not find the requested resource (${pathname})`, 'NotFound');
    if (namespace !== undefined && !entry[1].namespaced) throw new HttpError(404, `${entry[1].plural} is not namespaced`);
    return { resource, namespace, name: rest[1], sub: rest[2] };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const query = Object.fromEntries(url.searchParams);
    const watch = query.watch === 'true' || query.watch === '1';
    const method = req.method ?? 'GET';
    this.requests.push({ method, path: url.pathname, query, watch });
    try {
      const auth = req.headers.authorization;
      const client = [...this.clients].find(([, t]) => auth === `Bearer ${t}`)?.[0];
      if (auth !== `Bearer ${this.token}` && client === undefined) throw new HttpError(401, 'Unauthorized');
      if (client !== undefined && this.blocked.has(client)) {
        req.socket.destroy();
        return;
      }
      const fault = this.faults.find(
        (f) => (!f.method || f.method === method) && (!f.path || f.path.test(url.pathname)) && (f.watch === undefined || f.watch === watch),
      );
      if (fault) {
        if (--fault.count! <= 0) this.faults.splice(this.faults.indexOf(fault), 1);
        throw new HttpError(fault.status, `injected fault ${fault.status}`, fault.reason);
      }
      const r = this.route(url.pathname);
      const def = RESOURCES[r.resource];
      // The API server's proxy to a pod (GET .../pods/NAME[:PORT]/proxy/PATH): to its status.podIP.
      if (r.resource === 'pods' && r.sub === 'proxy' && method === 'GET') return await this.proxyToPod(r.namespace!, r.name!, url, res);
      if (method === 'GET' && watch) {
        if (r.name) throw new HttpError(400, 'watch of a single object: use a fieldSelector');
        if (this.holding) {
          await new Promise<void>((resolve) => this.held.push(resolve));
          if (req.socket.destroyed) return;
        }
        return this.serveWatch(r.resource, r.namespace, query, res);
      }
      if (method === 'GET' && !r.name) return this.serveList(r.resource, r.namespace, query, res);
      if (method === 'GET') {
        const o = this.stores.get(r.resource)!.get(keyOf(r.namespace, r.name!));
        if (!o) throw new HttpError(404, `${def.plural} "${r.name}" not found`, 'NotFound');
        return this.sendJson(res, 200, o);
      }
      const body = await this.readBody(req);
      if (method === 'POST' && !r.name) return this.sendJson(res, 201, this.create(r.resource, r.namespace, body));
      if (!r.name) throw new HttpError(405, `${method} on a collection`);
      if (method === 'DELETE') {
        const existed = this.remove(r.resource, r.namespace, r.name);
        if (!existed) throw new HttpError(404, `${def.plural} "${r.name}" not found`, 'NotFound');
        return this.sendJson(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: r.name, kind: def.plural } });
      }
      if (method === 'PUT' || method === 'PATCH') {
        if (r.sub && !(WITH_STATUS.has(r.resource) && r.sub === 'status')) throw new HttpError(404, `no subresource ${r.sub} on ${def.plural}`);
        const cur = this.stores.get(r.resource)!.get(keyOf(r.namespace, r.name));
        if (!cur) throw new HttpError(404, `${def.plural} "${r.name}" not found`, 'NotFound');
        let next: KObject;
        if (method === 'PUT') {
          next = body as KObject;
          if (!next || typeof next !== 'object' || !next.metadata) throw new HttpError(400, 'PUT body must be an object with metadata');
          if (next.metadata.name !== r.name) throw new HttpError(400, `the name of the object (${next.metadata.name}) does not match the name on the URL (${r.name})`);
        } else {
          const ct = String(req.headers['content-type'] ?? '').split(';')[0].trim();
          if (ct === 'application/json-patch+json') next = jsonPatch(cur, body);
          else if (ct === 'application/merge-patch+json' || ct === 'application/strategic-merge-patch+json') next = mergePatch(clone(cur), body) as KObject;
          else throw new HttpError(415, `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${ct})`);
        }
        const want = next.metadata?.resourceVersion;
        if (want !== undefined && want !== '' && want !== cur.metadata.resourceVersion) {
          throw new HttpError(
            409,
            `Operation cannot be fulfilled on ${def.plural}${def.group ? `.${def.group}` : ''} "${r.name}": the object has been modified; please apply your changes to the latest version and try again`,
          );
        }
        if (WITH_STATUS.has(r.resource)) {
          // The status subresource changes only status; the main resource never does.
          next = r.sub === 'status' ? { ...clone(cur), status: next.status ?? {} } : { ...next, status: clone(cur.status) };
          if (next.status === undefined) delete next.status;
        }
        next.metadata = { ...next.metadata, namespace: cur.metadata.namespace, name: cur.metadata.name };
        this.validate(r.resource, next);
        return this.sendJson(res, 200, this.write(r.resource, next));
      }
      throw new HttpError(405, `method ${method} not allowed`);
    } catch (e) {
      if (e instanceof HttpError) return this.sendStatus(res, e.code, e.message, e.reason);
      throw e;
    }
  }

  private create(resource: Resource, namespace: string | undefined, body: unknown): KObject {
    const def = RESOURCES[resource];
    if (!body || typeof body !== 'object') throw new HttpError(400, 'POST body must be an object');
    const o = body as KObject;
    o.metadata ??= {} as KObject['metadata'];
    if (def.namespaced) {
      if (o.metadata.namespace && namespace && o.metadata.namespace !== namespace) {
        throw new HttpError(400, `the namespace of the provided object does not match the namespace sent on the request`);
      }
      o.metadata.namespace = namespace ?? o.metadata.namespace ?? 'default';
    }
    if (!o.metadata.name && typeof o.metadata.generateName === 'string') o.metadata.name = `${o.metadata.generateName}${randomUUID().slice(0, 5)}`;
    if (!o.metadata.name) throw new HttpError(422, `${def.kind} is invalid: metadata.name: Required value: name or generateName is required`);
    if (this.stores.get(resource)!.has(keyOf(o.metadata.namespace, o.metadata.name))) {
      throw new HttpError(409, `${def.plural}${def.group ? `.${def.group}` : ''} "${o.metadata.name}" already exists`, 'AlreadyExists');
    }
    if (o.metadata.resourceVersion) throw new HttpError(422, 'metadata.resourceVersion: Invalid value: must be empty on create');
    this.validate(resource, o);
    return this.write(resource, o);
  }

  /** Check a custom resource against its CRD's schema, applying its defaults (422 Invalid). */
  private checkSchema(resource: Resource, o: KObject): void {
    if (!this.validators.has(resource)) this.validators.set(resource, crValidator(RESOURCES[resource].plural, { useDefaults: true }));
    const v = this.validators.get(resource);
    if (!v) return; // no CRD file yet: accepted as is
    const errors = v.check(o);
    if (errors.length) throw new HttpError(422, `${v.kind}.${RESOURCES[resource].group} "${o.metadata?.name}" is invalid: ${errors.join(', ')}`, 'Invalid');
  }

  /** The checks of kube-apiserver that the clients here can trip over. */
  private validate(resource: Resource, o: KObject): void {
    if (CUSTOM.has(resource)) this.checkSchema(resource, o);
    if (resource === 'leases') {
      for (const f of ['renewTime', 'acquireTime'] as const) {
        const v = o.spec?.[f];
        if (v !== undefined && v !== null && !(typeof v === 'string' && MICRO_TIME.test(v))) {
          throw new HttpError(400, `Lease in version "v1" cannot be handled as a Lease: spec.${f}: parsing time ${JSON.stringify(v)} as RFC3339Micro failed`);
        }
      }
      const d = o.spec?.leaseDurationSeconds;
      if (d !== undefined && (!Number.isInteger(d) || d <= 0)) throw new HttpError(422, `Lease is invalid: spec.leaseDurationSeconds: must be greater than 0`);
    }
    if (resource === 'events') {
      const io = o.involvedObject;
      if (!io || typeof io !== 'object' || !io.name) throw new HttpError(422, 'Event is invalid: involvedObject.name: Required value');
      if (io.namespace && io.namespace !== o.metadata.namespace) throw new HttpError(422, 'Event is invalid: involvedObject.namespace: Invalid value: does not match event.namespace');
      for (const f of ['firstTimestamp', 'lastTimestamp'] as const) {
        const v = o[f];
        if (v !== undefined && v !== null && !(typeof v === 'string' && TIME.test(v))) throw new HttpError(400, `Event: ${f}: parsing time ${JSON.stringify(v)} as RFC3339 failed`);
      }
      if (!o.reason || !o.message) throw new HttpError(422, 'Event is invalid: reason and message are required');
    }
    if (resource === 'services' && o.status?.loadBalancer?.ingress) {
      const ingress = o.status.loadBalancer.ingress;
      if (!Array.isArray(ingress)) throw new HttpError(400, 'status.loadBalancer.ingress: must be a list');
      for (const [i, g] of ingress.entries()) {
        if (g.ip !== undefined && !/^\d+\.\d+\.\d+\.\d+$|:/.test(g.ip)) throw new HttpError(422, `Service is invalid: status.loadBalancer.ingress[${i}].ip: must be a valid IP address`);
      }
    }
  }

  private serveList(resource: Resource, namespace: string | undefined, query: Record<string, string>, res: http.ServerResponse): void {
    const def = RESOURCES[resource];
    // resourceVersion=0 is served from the watch cache, where kube-apiserver
    // ignores limit: the whole list in one response.
    const limit = query.limit && !(query.resourceVersion === '0' && !query.continue) ? Number(query.limit) : 0;
    let snap: ListSnapshot;
    let offset = 0;
    let id: string;
    if (query.continue) {
      let tok: { id: string; offset: number };
      try {
        tok = JSON.parse(Buffer.from(query.continue, 'base64').toString('utf8'));
      } catch {
        throw new HttpError(400, 'continue key is not valid');
      }
      const s = this.snapshots.get(tok.id);
      if (!s) {
        throw new HttpError(
          410,
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
          'Expired',
        );
      }
      snap = s;
      id = tok.id;
      offset = tok.offset;
    } else {
      const field = parseFieldSelector(query.fieldSelector);
      const label = parseLabelSelector(query.labelSelector);
      const items = [...this.stores.get(resource)!.values()]
        .filter((o) => (!namespace || o.metadata.namespace === namespace) && field(o) && label(o))
        .sort((a, b) => (keyOf(a.metadata.namespace, a.metadata.name) < keyOf(b.metadata.namespace, b.metadata.name) ? -1 : 1));
      snap = { rv: this.rv, items };
      id = randomUUID();
    }
    const end = limit > 0 ? Math.min(offset + limit, snap.items.length) : snap.items.length;
    const more = end < snap.items.length;
    if (more) this.snapshots.set(id, snap);
    else this.snapshots.delete(id);
    // List items carry no kind/apiVersion: the list's kind says it.
    const items = snap.items.slice(offset, end).map((o) => {
      const { kind: _k, apiVersion: _a, ...rest } = o;
      return rest;
    });
    const metadata: Record<string, unknown> = { resourceVersion: String(snap.rv) };
    if (more) {
      metadata.continue = Buffer.from(JSON.stringify({ id, offset: end })).toString('base64');
      metadata.remainingItemCount = snap.items.length - end;
    }
    // Streamed in chunks, as large lists are.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(`{"kind":"${def.kind}List","apiVersion":"${def.group ? `${def.group}/${def.version}` : def.version}","metadata":${JSON.stringify(metadata)},"items":[`);
    const CHUNK = 200;
    for (let i = 0; i < items.length; i += CHUNK) {
      res.write((i ? ',' : '') + items.slice(i, i + CHUNK).map((o) => JSON.stringify(o)).join(','));
    }
    res.end(']}', () => this.opts.onListSent?.(resource, performance.timeOrigin + performance.now()));
  }

  private serveWatch(resource: Resource, namespace: string | undefined, query: Record<string, string>, res: http.ServerResponse): void {
    const w: Watcher = {
      resource,
      namespace,
      field: parseFieldSelector(query.fieldSelector),
      label: parseLabelSelector(query.labelSelector),
      bookmarks: query.allowWatchBookmarks === 'true',
      res,
    };
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const from = query.resourceVersion;
    if (from && from !== '0' && Number(from) < this.compactedBefore) {
      this.writeLine(w, { type: 'ERROR', object: statusObject(410, `too old resource version: ${from} (${this.compactedBefore})`, 'Expired') });
      res.end();
      return;
    }
    if (!from || from === '0') {
      // "Start at most recent": synthetic ADDED for what exists.
      for (const o of this.stores.get(resource)!.values()) if (this.matches(w, { rv: 0, resource, type: 'ADDED', object: o })) this.writeLine(w, { type: 'ADDED', object: o });
    } else {
      for (const e of this.history) if (e.rv > Number(from) && this.matches(w, e)) this.writeLine(w, { type: e.type, object: e.object });
    }
    this.watchers.add(w);
    res.on('close', () => {
      this.watchers.delete(w);
      if (w.timer) clearTimeout(w.timer);
    });
    const timeout = Number(query.timeoutSeconds);
    if (timeout > 0) w.timer = setTimeout(() => this.endWatch(w, false), timeout * 1000);
  }
}

// ---------------------------------------------------------------------------
// Fixtures shared by the Kubernetes tests and the benchmark.

/** A logger that keeps its lines, so tests can assert what was reported. */
export function recordingLog() {
  const lines: Array<{ level: string; obj: unknown; msg: string }> = [];
  const at =
    (level: string) =>
    (obj: unknown, msg?: string): void => {
      lines.push({ level, obj, msg: msg ?? (typeof obj === 'string' ? obj : '') });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Options of {@link serviceObject}. */
export interface ServiceFixture {
  ns?: string;
  type?: string;
  port?: number;
  nodePort?: number;
  /** status.loadBalancer.ingress[0].ip */
  lbIP?: string;
  clusterIP?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  loadBalancerClass?: string;
  loadBalancerIP?: string;
}

/** A v1 Service shaped as kubectl shows it, one TCP port `http` → 8080. */
export function serviceObject(name: string, o: ServiceFixture = {}) {
  const clusterIP = o.clusterIP ?? '10.96.0.10';
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: o.ns ?? 'default', ...(o.labels ? { labels: o.labels } : {}), ...(o.annotations ? { annotations: o.annotations } : {}) },
    spec: {
      type: o.type ?? 'ClusterIP',
      clusterIP,
      clusterIPs: [clusterIP],
      ports: [{ name: 'http', protocol: 'TCP', port: o.port ?? 80, targetPort: 8080, ...(o.nodePort ? { nodePort: o.nodePort } : {}) }],
      ...(o.loadBalancerClass ? { loadBalancerClass: o.loadBalancerClass } : {}),
      ...(o.loadBalancerIP ? { loadBalancerIP: o.loadBalancerIP } : {}),
      sessionAffinity: 'None',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      internalTrafficPolicy: 'Cluster',
      ...(o.type === 'LoadBalancer' || o.type === 'NodePort' ? { externalTrafficPolicy: 'Cluster' } : {}),
    },
    status: o.lbIP ? { loadBalancer: { ingress: [{ ip: o.lbIP, ipMode: 'VIP' }] } } : { loadBalancer: {} },
  };
}

/** A discovery.k8s.io/v1 EndpointSlice of `svc` with one endpoint per address, port `http` 8080. */
export function sliceObject(name: string, svc: string, addrs: string[], o: { ns?: string; node?: string; ready?: boolean } = {}) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: o.ns ?? 'default', labels: { 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    endpoints: addrs.map((a, i) => ({
      addresses: [a],
      conditions: { ready: o.ready ?? true, serving: o.ready ?? true, terminating: false },
      nodeName: o.node ?? 'node-a',
      targetRef: { kind: 'Pod', namespace: o.ns ?? 'default', name: `${svc}-${i}` },
    })),
  };
}

/** A v1 Node with these InternalIP addresses. */
export function nodeObject(name: string, addrs: string[]) {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name },
    status: { addresses: [...addrs.map((a) => ({ type: 'InternalIP', address: a })), { type: 'Hostname', address: name }] },
  };
}

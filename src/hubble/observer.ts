/**
 * Hubble's Observer API, served by the agent over gRPC (@grpc/grpc-js), so
 * that Hubble's clients read xlb's flows: `observer.Observer`'s GetFlows,
 * GetNodes and ServerStatus, with the messages of api/hubble/*.proto (xlb's
 * subset of Hubble's published API, field numbers as Hubble's). The
 * `.proto` files are loaded at run time with @grpc/proto-loader.
 *
 * GetFlows, as Hubble's: the flows held (the last `number`, or the first
 * with `first`; all when `number` is 0; only those within `since`..`until`),
 * filtered (a flow is sent when it matches one `whitelist` filter, or there
 * is none, and no `blacklist` filter), oldest first; then with `follow`, new
 * flows as the agent reads them, until the client cancels or `until` passes.
 *
 * A slow client cannot make the agent buffer without bound: once gRPC's
 * buffer for a stream is full, at most {@link STREAM_QUEUE_MAX} flows wait
 * for it; the flows after those are counted and the client is told with a
 * `lost_events` message (source OBSERVER_EVENTS_QUEUE) when it catches up.
 * A client that goes away costs its subscription, removed at once.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import fs from 'node:fs';
import path from 'node:path';
import { packagePath, packageVersion } from '../util/package-root.js';
import type { Flow } from '../flows/flows.js';
import { compileFilter, FilterError, msOf, timestampOf, toHubbleFlow, type HubbleFilter } from './flow.js';

/** Where the Hubble `.proto` subset lives (api/hubble in the checkout or image). */
export const HUBBLE_PROTO_DIR = packagePath('api/hubble');

/** proto-loader options: Hubble's field names as written, enums by name, 64-bit integers as numbers. */
export const HUBBLE_LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: false, arrays: true, oneofs: true };

/** Flows a slow follower may have waiting beyond gRPC's own buffer before later ones are counted as lost. */
export const STREAM_QUEUE_MAX = 1024;

/** What the Observer API reads from the agent. */
export interface FlowSource {
  /** This node's name. */
  node: string;
  /** Every flow held, oldest first. */
  all(): Flow[];
  /** Flows the buffer holds at most. */
  capacity: number;
  /** Flows seen since the agent started. */
  seen(): number;
  /** Hear each new flow; returns the call that stops it. */
  subscribe(listener: (f: Flow) => void): () => void;
  /** Hand on the datapath's waiting events now (so a request sees the newest flows). */
  poll?(): void;
}

/** The `observer.Observer` service definition, loaded from {@link HUBBLE_PROTO_DIR}. @throws Error naming the file when it cannot be loaded */
export function loadObserverService(protoDir = HUBBLE_PROTO_DIR): grpc.ServiceDefinition {
  const file = path.join(protoDir, 'observer/observer.proto');
  if (!fs.existsSync(file)) throw new Error(`hubble: ${file} is missing`);
  const def = protoLoader.loadSync('observer/observer.proto', { ...HUBBLE_LOADER_OPTIONS, includeDirs: [protoDir] });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { observer: { Observer: grpc.ServiceClientConstructor } };
  return pkg.observer.Observer.service;
}

interface GetFlowsRequest {
  number?: number;
  first?: boolean;
  follow?: boolean;
  whitelist?: HubbleFilter[];
  blacklist?: HubbleFilter[];
  since?: { seconds?: number; nanos?: number };
  until?: { seconds?: number; nanos?: number };
}

/**
 * The flows a GetFlows request selects from those held, and the predicate
 * new flows must pass.
 * @throws FilterError for a filter that does not parse or names a field xlb cannot filter on
 */
export function selectFlows(req: GetFlowsRequest, held: Flow[]): { flows: Flow[]; accepts: (f: Flow) => boolean } {
  const white = (req.whitelist ?? []).map(compileFilter);
  const black = (req.blacklist ?? []).map(compileFilter);
  const sinceMs = req.since ? msOf(req.since) : undefined;
  const untilMs = req.until ? msOf(req.until) : undefined;
  const accepts = (f: Flow) =>
    (white.length === 0 || white.some((m) => m(f))) &&
    !black.some((m) => m(f)) &&
    (sinceMs === undefined || f.timeMs >= sinceMs) &&
    (untilMs === undefined || f.timeMs <= untilMs);
  let flows = held.filter(accepts);
  const n = Number(req.number ?? 0);
  if (n > 0) flows = req.first ? flows.slice(0, n) : flows.slice(Math.max(0, flows.length - n));
  else if (req.follow && sinceMs === undefined) flows = [];
  return { flows, accepts };
}

/**
 * The Observer service's handlers over `source` (exported for tests that serve it themselves).
 * @param address this server's address as GetNodes reports it, once bound
 */
export function observerHandlers(source: FlowSource, address: () => string): grpc.UntypedServiceImplementation {
  const started = Date.now();
  const ver = `xlb/${packageVersion()}`;
  // Flows a second over the last minute: one counter a second, in a ring.
  const perSecond = new Array<number>(60).fill(0);
  let second = Math.floor(Date.now() / 1000);
  const advance = () => {
    const now = Math.floor(Date.now() / 1000);
    for (let s = Math.max(second + 1, now - 59); s <= now; s++) perSecond[s % 60] = 0;
    second = Math.max(second, now);
  };
  source.subscribe(() => {
    advance();
    perSecond[second % 60]++;
  });
  const counts = () => ({ num_flows: source.all().length, max_flows: source.capacity, seen_flows: source.seen(), uptime_ns: (Date.now() - started) * 1e6 });

  const getFlows = (call: grpc.ServerWritableStream<GetFlowsRequest, unknown>) => {
    source.poll?.();
    let selection: ReturnType<typeof selectFlows>;
    try {
      selection = selectFlows(call.request, source.all());
    } catch (e) {
      // grpc-js ends a server stream with a status when 'error' is emitted on it.
      call.emit('error', { code: e instanceof FilterError ? grpc.status.INVALID_ARGUMENT : grpc.status.INTERNAL, details: (e as Error).message });
      return;
    }
    const untilMs = call.request.until ? msOf(call.request.until) : undefined;
    const response = (f: Flow) => ({ flow: toHubbleFlow(f), node_name: f.node, time: timestampOf(f.timeMs) });
    const queue: unknown[] = [];
    let lost = 0;
    let blocked = false;
    let done = false;
    let unsubscribe = () => {};
    const finish = () => {
      if (done) return;
      done = true;
      unsubscribe();
      queue.length = 0;
    };
    const flush = () => {
      blocked = false;
      while (queue.length && !blocked) blocked = !call.write(queue.shift());
      if (!blocked && lost) {
        blocked = !call.write({ lost_events: { source: 'OBSERVER_EVENTS_QUEUE', num_events_lost: lost }, node_name: source.node, time: timestampOf(Date.now()) });
        lost = 0;
      }
      if (!blocked && !queue.length && done) call.end();
    };
    const send = (msg: unknown, limit: number) => {
      if (blocked || queue.length) {
        if (queue.length >= limit) lost++;
        else queue.push(msg);
        return;
      }
      blocked = !call.write(msg);
    };
    call.on('drain', () => {
      if (!call.cancelled) flush();
    });
    call.on('cancelled', finish);
    call.on('close', finish);
    call.on('error', finish);
    const held = selection.flows;
    for (const f of held) send(response(f), held.length + STREAM_QUEUE_MAX);
    if (!call.request.follow) {
      done = true;
      if (!blocked && !queue.length) call.end();
      return;
    }
    unsubscribe = source.subscribe((f) => {
      if (done) return;
      if (untilMs !== undefined && f.timeMs > untilMs) {
        finish();
        if (!blocked && !queue.length) call.end();
        return;
      }
      if (selection.accepts(f)) send(response(f), STREAM_QUEUE_MAX);
    });
  };

  return {
    GetFlows: getFlows as grpc.handleServerStreamingCall<unknown, unknown>,
    ServerStatus: ((_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      source.poll?.();
      advance();
      cb(null, { ...counts(), num_connected_nodes: { value: 1 }, num_unavailable_nodes: { value: 0 }, unavailable_nodes: [], version: ver, flows_rate: perSecond.reduce((a, b) => a + b, 0) / 60 });
    }) as grpc.handleUnaryCall<unknown, unknown>,
    GetNodes: ((_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      source.poll?.();
      cb(null, { nodes: [{ name: source.node, version: ver, address: address(), state: 'NODE_CONNECTED', tls: { enabled: false, server_name: '' }, ...counts() }] });
    }) as grpc.handleUnaryCall<unknown, unknown>,
  };
}

/** A running Observer server. */
export interface HubbleServer {
  /** The address it listens on (`HOST:PORT` with the port bound, or `unix:PATH`). */
  address: string;
  /** Stop at once: open streams end with CANCELLED. */
  close(): void;
}

/**
 * Serve the Observer API on `listen` (`HOST:PORT` or `unix:PATH`, without
 * TLS, as Hubble's local socket: keep it on loopback or a unix socket).
 * @throws Error naming hubble.listen when it cannot bind
 */
export async function startHubble(source: FlowSource, listen: string, protoDir = HUBBLE_PROTO_DIR): Promise<HubbleServer> {
  const server = new grpc.Server();
  let address = listen;
  server.addService(loadObserverService(protoDir), observerHandlers(source, () => address));
  if (listen.startsWith('unix:')) fs.rmSync(listen.slice(5), { force: true });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(new Error(`hubble.listen ${listen}: ${err.message}`)) : resolve(port))),
  );
  if (!listen.startsWith('unix:')) address = `${listen.slice(0, listen.lastIndexOf(':'))}:${bound}`;
  return { address, close: () => server.forceShutdown() };
}

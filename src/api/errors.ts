/**
 * The API's error catalogue: every error a client can get has a code, a
 * status and a message naming what was wrong, created in one place.
 */
import { isIPv4 } from '../util/ip.js';
import type { FlowQuery } from '../flows/flows.js';

/** An error with a stable code and HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly code: 'bad_flow' | 'bad_query' | 'service_not_found' | 'no_table' | 'bgp_disabled' | 'l2_disabled' | 'kubernetes_disabled' | 'no_datapath' | 'no_flows' | 'not_found',
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A 5-tuple given by a user: `SRC:SPORT,DST:DPORT,PROTO`. */
export interface Flow {
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
  protocol: 'TCP' | 'UDP';
}

/** A port written as plain decimal digits: no sign, exponent, hex prefix, blank or fraction (Number() takes all of those). */
const DECIMAL = /^[0-9]{1,5}$/;

function endpoint(s: string, which: string): [string, number] {
  const i = s.lastIndexOf(':');
  const ip = s.slice(0, i);
  const text = s.slice(i + 1);
  if (i < 0 || !isIPv4(ip)) throw new ApiError('bad_flow', 400, `flow ${which}: expected IPv4:PORT (got ${JSON.stringify(s)})`);
  const port = DECIMAL.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) throw new ApiError('bad_flow', 400, `flow ${which}: port must be a decimal number 1..65535 (got ${JSON.stringify(text)})`);
  return [ip, port];
}

/**
 * The query parameters of a request, strictly: each at most once, none but
 * `allowed`. fastify hands a repeated key over as an array.
 * @throws ApiError bad_query naming the parameter
 */
export function strictQuery<K extends string>(query: unknown, allowed: readonly K[]): Partial<Record<K, string>> {
  const out: Partial<Record<K, string>> = {};
  for (const [key, value] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    if (!(allowed as readonly string[]).includes(key)) {
      throw new ApiError('bad_query', 400, `query parameter ${JSON.stringify(key)} is not known here (known: ${allowed.join(', ') || 'none'})`);
    }
    if (Array.isArray(value)) throw new ApiError('bad_query', 400, `query parameter ${key} given ${value.length} times; give it once`);
    if (typeof value !== 'string') throw new ApiError('bad_query', 400, `query parameter ${key}: expected a string`);
    out[key as K] = value;
  }
  return out;
}

/**
 * Parse `SRC:SPORT,DST:DPORT,PROTO` (PROTO tcp or udp, any case).
 * @throws ApiError bad_flow naming the part that is wrong
 */
export function parseFlow(s: string | undefined): Flow {
  if (!s) throw new ApiError('bad_flow', 400, 'flow: missing (expected SRC:SPORT,DST:DPORT,PROTO)');
  const parts = s.split(',');
  if (parts.length !== 3) throw new ApiError('bad_flow', 400, `flow: expected SRC:SPORT,DST:DPORT,PROTO (got ${JSON.stringify(s)})`);
  const [saddr, sport] = endpoint(parts[0], 'source');
  const [daddr, dport] = endpoint(parts[1], 'destination');
  const protocol = parts[2].toUpperCase();
  if (protocol !== 'TCP' && protocol !== 'UDP') throw new ApiError('bad_flow', 400, `flow protocol: expected tcp or udp (got ${JSON.stringify(parts[2])})`);
  return { saddr, sport, daddr, dport, protocol };
}

/** The query of GET /v1/conntrack, parsed (see {@link parseConntrackQuery}). */
export interface ConntrackQuery {
  src?: { addr: string; port?: number };
  dst?: { addr: string; port?: number };
  backend?: { addr: string; port?: number };
  /** `namespace/name`. */
  service?: string;
  protocol?: 'TCP' | 'UDP';
  limit: number;
}

/** Most entries one listing returns, and how many without `limit`. */
export const CONNTRACK_LIMIT_MAX = 100_000;
export const CONNTRACK_LIMIT_DEFAULT = 1000;

/** `IPv4` or `IPv4:PORT`. @throws ApiError bad_query naming the parameter */
function addressParam(name: string, s: string): { addr: string; port?: number } {
  const i = s.indexOf(':');
  const addr = i < 0 ? s : s.slice(0, i);
  if (!isIPv4(addr)) throw new ApiError('bad_query', 400, `query parameter ${name}: expected IPv4 or IPv4:PORT (got ${JSON.stringify(s)})`);
  if (i < 0) return { addr };
  const text = s.slice(i + 1);
  const port = DECIMAL.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) throw new ApiError('bad_query', 400, `query parameter ${name}: port must be a decimal number 1..65535 (got ${JSON.stringify(text)})`);
  return { addr, port };
}

/**
 * The filter of GET /v1/conntrack: `src`, `dst`, `backend` (IPv4 or
 * IPv4:PORT), `service` (NAMESPACE/NAME), `protocol` (tcp or udp, any
 * case), `limit` (1..100000, default 1000), each at most once.
 * @throws ApiError bad_query naming the parameter
 */
export function parseConntrackQuery(query: unknown): ConntrackQuery {
  const q = strictQuery(query, ['src', 'dst', 'backend', 'service', 'protocol', 'limit'] as const);
  const out: ConntrackQuery = { limit: CONNTRACK_LIMIT_DEFAULT };
  if (q.src !== undefined) out.src = addressParam('src', q.src);
  if (q.dst !== undefined) out.dst = addressParam('dst', q.dst);
  if (q.backend !== undefined) out.backend = addressParam('backend', q.backend);
  if (q.service !== undefined) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/.test(q.service)) {
      throw new ApiError('bad_query', 400, `query parameter service: expected NAMESPACE/NAME (got ${JSON.stringify(q.service)})`);
    }
    out.service = q.service;
  }
  if (q.protocol !== undefined) {
    const p = q.protocol.toUpperCase();
    if (p !== 'TCP' && p !== 'UDP') throw new ApiError('bad_query', 400, `query parameter protocol: expected tcp or udp (got ${JSON.stringify(q.protocol)})`);
    out.protocol = p;
  }
  if (q.limit !== undefined) {
    const n = /^[0-9]{1,6}$/.test(q.limit) ? Number(q.limit) : NaN;
    if (!(n >= 1 && n <= CONNTRACK_LIMIT_MAX)) throw new ApiError('bad_query', 400, `query parameter limit: expected a decimal number 1..${CONNTRACK_LIMIT_MAX} (got ${JSON.stringify(q.limit)})`);
    out.limit = n;
  }
  return out;
}

const NAMESPACED = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/;
/** A Kubernetes node name: a DNS-1123 subdomain. */
const NODE_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * The filter of GET /v1/flows: `last` (1..1000000), `since` (RFC 3339, or
 * a duration back from now: `30s`, `5m`, `2h`), `from-ip`, `to-ip`,
 * `from-pod` and `to-service` (NAMESPACE/NAME), `verdict` (FORWARDED or
 * DROPPED), `protocol` (tcp or udp), `port` (1..65535), `node` (a node
 * name), each at most once.
 * @param nowMs the time `since` durations count back from, ms since the epoch
 * @throws ApiError bad_query naming the parameter
 */
export function parseFlowsQuery(query: unknown, nowMs: number): FlowQuery {
  const q = strictQuery(query, ['last', 'since', 'from-ip', 'to-ip', 'from-pod', 'to-service', 'verdict', 'protocol', 'port', 'node'] as const);
  const out: FlowQuery = {};
  const bad = (name: string, what: string, got: string) => new ApiError('bad_query', 400, `query parameter ${name}: expected ${what} (got ${JSON.stringify(got)})`);
  if (q.last !== undefined) {
    const n = /^[0-9]{1,7}$/.test(q.last) ? Number(q.last) : NaN;
    if (!(n >= 1 && n <= 1_000_000)) throw bad('last', 'a decimal number 1..1000000', q.last);
    out.last = n;
  }
  if (q.since !== undefined) {
    const d = /^([0-9]{1,7})(s|m|h)$/.exec(q.since);
    const t = d ? nowMs - Number(d[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[d[2] as 's' | 'm' | 'h'] : /^\d{4}-\d{2}-\d{2}T/.test(q.since) ? Date.parse(q.since) : NaN;
    if (Number.isNaN(t)) throw bad('since', 'an RFC 3339 time or a duration such as 30s, 5m, 2h', q.since);
    out.sinceMs = t;
  }
  for (const [name, key] of [['from-ip', 'fromIp'], ['to-ip', 'toIp']] as const) {
    const v = q[name];
    if (v === undefined) continue;
    if (!isIPv4(v)) throw bad(name, 'an IPv4 address', v);
    out[key] = v;
  }
  for (const [name, key] of [['from-pod', 'fromPod'], ['to-service', 'toService']] as const) {
    const v = q[name];
    if (v === undefined) continue;
    if (!NAMESPACED.test(v)) throw bad(name, 'NAMESPACE/NAME', v);
    out[key] = v;
  }
  if (q.node !== undefined) {
    if (!NODE_NAME.test(q.node)) throw bad('node', 'a node name (lower-case letters, digits, "-" and ".", at most 253)', q.node);
    out.node = q.node;
  }
  if (q.verdict !== undefined) {
    const v = q.verdict.toUpperCase();
    if (v !== 'FORWARDED' && v !== 'DROPPED') throw bad('verdict', 'FORWARDED or DROPPED', q.verdict);
    out.verdict = v;
  }
  if (q.protocol !== undefined) {
    const p = q.protocol.toUpperCase();
    if (p !== 'TCP' && p !== 'UDP') throw bad('protocol', 'tcp or udp', q.protocol);
    out.protocol = p;
  }
  if (q.port !== undefined) {
    const n = DECIMAL.test(q.port) ? Number(q.port) : NaN;
    if (!(n >= 1 && n <= 65535)) throw bad('port', 'a decimal number 1..65535', q.port);
    out.port = n;
  }
  return out;
}

/** The query of GET /v1/servicemap, parsed (see {@link parseServiceMapQuery}). */
export interface ServiceMapQuery {
  /** Only the services of this namespace (and the flows to them). */
  namespace?: string;
  /** The recent window that edge counts and rates cover, ms. */
  windowMs: number;
  /** How many of the newest flows to list (0: none). */
  last: number;
}

/** The window of GET /v1/servicemap without `window`, ms, and the longest one. */
export const SERVICE_MAP_WINDOW_DEFAULT_MS = 10_000;
export const SERVICE_MAP_WINDOW_MAX_MS = 3_600_000;
/** Flows GET /v1/servicemap lists without `last`, and the most it lists. */
export const SERVICE_MAP_LAST_DEFAULT = 50;
export const SERVICE_MAP_LAST_MAX = 1000;

/**
 * The query of GET /v1/servicemap: `namespace` (a Kubernetes namespace
 * name), `window` (a duration: `10s`, `5m`; 1 s to 1 h, default 10 s),
 * `last` (0..1000 flows to list, default 50), each at most once.
 * @throws ApiError bad_query naming the parameter
 */
export function parseServiceMapQuery(query: unknown): ServiceMapQuery {
  const q = strictQuery(query, ['namespace', 'window', 'last'] as const);
  const bad = (name: string, what: string, got: string) => new ApiError('bad_query', 400, `query parameter ${name}: expected ${what} (got ${JSON.stringify(got)})`);
  const out: ServiceMapQuery = { windowMs: SERVICE_MAP_WINDOW_DEFAULT_MS, last: SERVICE_MAP_LAST_DEFAULT };
  if (q.namespace !== undefined) {
    if (q.namespace.length > 63 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(q.namespace)) throw bad('namespace', 'a namespace name (lower-case letters, digits and -, at most 63)', q.namespace);
    out.namespace = q.namespace;
  }
  if (q.window !== undefined) {
    const d = /^([0-9]{1,4})(s|m|h)$/.exec(q.window);
    const ms = d ? Number(d[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[d[2] as 's' | 'm' | 'h'] : NaN;
    if (!(ms >= 1000 && ms <= SERVICE_MAP_WINDOW_MAX_MS)) throw bad('window', 'a duration from 1s to 1h such as 10s, 5m', q.window);
    out.windowMs = ms;
  }
  if (q.last !== undefined) {
    const n = /^[0-9]{1,4}$/.test(q.last) ? Number(q.last) : NaN;
    if (!(n >= 0 && n <= SERVICE_MAP_LAST_MAX)) throw bad('last', `a decimal number 0..${SERVICE_MAP_LAST_MAX}`, q.last);
    out.last = n;
  }
  return out;
}

/**
 * xlb's flows in Hubble's shape: an enriched flow (src/flows/flows.ts) as a
 * Hubble `flow.Flow` message, and Hubble's `flow.FlowFilter` applied to
 * xlb's flows. Field names and numbers are Hubble's
 * (api/hubble/flow/flow.proto, written from Hubble's API documentation).
 *
 * What a Hubble flow of xlb says:
 * - `IP` and `l4` are the packet as xlb saw it arrive: the client's address
 *   and port, and the frontend it sent to (VIP, ClusterIP, NodePort);
 * - `destination` is the backend the flow was placed on (its pod, when it is
 *   one), `destination_service` the service;
 * - `trace_observation_point` says where: FROM_NETWORK (XDP on an external
 *   interface), TO_NETWORK (tc egress), FROM_ENDPOINT (tc on a pod's
 *   interface); socket-hook flows have Type SOCK;
 * - a drop has verdict DROPPED and `drop_reason_desc`, the Cilium drop
 *   reason for the same cause (xlb's own name stays in the xlb API).
 */
import { isIPv4, ipToU32 } from '../util/ip.js';
import type { Flow } from '../flows/flows.js';

/** Cilium's monitor message types (pkg/monitor/api): drop, trace, socket trace. */
const MESSAGE_TYPE = { drop: 1, trace: 4, traceSock: 7 } as const;

/** xlb's drop reasons (enum xlb_drop_reason) as Hubble's DropReason for the same cause. */
export const HUBBLE_DROP_REASON: Record<string, string> = {
  truncated: 'CT_TRUNCATED_OR_INVALID_HEADER',
  no_backend: 'SERVICE_BACKEND_NOT_FOUND',
  snat_exhausted: 'NO_MAPPING_FOR_NAT_MASQUERADE',
  fib_lookup: 'FIB_LOOKUP_FAILED',
  frag_needed: 'INVALID_PACKET_DROPPED',
  ct_insert: 'CT_MAP_INSERTION_FAILED',
  source_range: 'DENIED_BY_LB_SRC_RANGE_CHECK',
  sock_refused: 'SERVICE_BACKEND_NOT_FOUND',
  bad_checksum: 'INVALID_PACKET_DROPPED',
};

/** The numbers of the DropReason values above (flow.proto), for the deprecated `drop_reason` field and event sub-types. */
const DROP_REASON_NUMBER: Record<string, number> = {
  DROP_REASON_UNKNOWN: 0,
  INVALID_PACKET_DROPPED: 134,
  CT_TRUNCATED_OR_INVALID_HEADER: 135,
  CT_MAP_INSERTION_FAILED: 155,
  SERVICE_BACKEND_NOT_FOUND: 158,
  NO_MAPPING_FOR_NAT_MASQUERADE: 167,
  FIB_LOOKUP_FAILED: 169,
  DENIED_BY_LB_SRC_RANGE_CHECK: 177,
};

const OBSERVATION_POINT: Record<string, string> = {
  xdp: 'FROM_NETWORK',
  'tc-egress': 'TO_NETWORK',
  'tc-pod': 'FROM_ENDPOINT',
  sock: 'UNKNOWN_POINT',
};

/** A protobuf Timestamp (seconds and nanoseconds since the epoch) from ms since the epoch. */
export function timestampOf(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** ms since the epoch from a protobuf Timestamp as proto-loader decodes it (longs as numbers). */
export function msOf(t: { seconds?: number | string; nanos?: number }): number {
  return Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
}

function endpointOf(pod: string | undefined): { namespace?: string; pod_name?: string } {
  if (!pod) return {};
  const i = pod.indexOf('/');
  return { namespace: pod.slice(0, i), pod_name: pod.slice(i + 1) };
}

function serviceOf(f: Flow): { namespace: string; name: string } | undefined {
  const s = f.destination.service;
  if (!s) return undefined;
  const [ns, rest] = s.split('/');
  return { namespace: ns, name: rest.split(':')[0] };
}

/**
 * One xlb flow as a Hubble `flow.Flow` (a plain object for
 * @grpc/proto-loader: enums by name, 64-bit numbers as numbers).
 */
export function toHubbleFlow(f: Flow): Record<string, unknown> {
  const dropped = f.verdict === 'DROPPED';
  const dropReason = dropped ? (HUBBLE_DROP_REASON[f.dropReason ?? ''] ?? 'DROP_REASON_UNKNOWN') : 'DROP_REASON_UNKNOWN';
  const flags = new Set(f.tcpFlags);
  const sock = f.point === 'sock';
  const out: Record<string, unknown> = {
    time: timestampOf(f.timeMs),
    verdict: f.verdict,
    drop_reason: dropped ? DROP_REASON_NUMBER[dropReason] : 0,
    drop_reason_desc: dropReason,
    // A socket hook's connect() has no source yet: left empty, as Hubble leaves what it does not know.
    IP: { source: f.source.ip === '0.0.0.0' ? '' : f.source.ip, destination: f.destination.ip, ipVersion: 'IPv4' },
    l4:
      f.protocol === 'TCP'
        ? {
            TCP: {
              source_port: f.source.port,
              destination_port: f.destination.port,
              flags: { FIN: flags.has('FIN'), SYN: flags.has('SYN'), RST: flags.has('RST'), PSH: flags.has('PSH'), ACK: flags.has('ACK'), URG: flags.has('URG') },
            },
          }
        : { UDP: { source_port: f.source.port, destination_port: f.destination.port } },
    source: endpointOf(f.source.pod),
    destination: endpointOf(f.backend?.pod),
    Type: sock ? 'SOCK' : 'L3_L4',
    node_name: f.node,
    reply: false,
    is_reply: { value: false },
    event_type: dropped
      ? { type: MESSAGE_TYPE.drop, sub_type: DROP_REASON_NUMBER[dropReason] }
      : { type: sock ? MESSAGE_TYPE.traceSock : MESSAGE_TYPE.trace, sub_type: 0 },
    traffic_direction: 'INGRESS',
    trace_observation_point: OBSERVATION_POINT[f.point] ?? 'UNKNOWN_POINT',
  };
  const svc = serviceOf(f);
  if (svc) out.destination_service = svc;
  if (sock) out.sock_xlate_point = 'SOCK_XLATE_POINT_POST_DIRECTION_FWD';
  return out;
}

/** A Hubble `flow.FlowFilter` as @grpc/proto-loader decodes it (keepCase, enums as names, arrays). */
export interface HubbleFilter {
  [field: string]: unknown;
}

/** A filter xlb cannot apply: the gRPC status INVALID_ARGUMENT, naming the field and value. */
export class FilterError extends Error {}

/** Fields of flow.FlowFilter that xlb's flows carry nothing for: a filter naming one is refused, not ignored. */
const UNSUPPORTED = [
  'uuid',
  'source_fqdn',
  'destination_fqdn',
  'source_label',
  'destination_label',
  'source_workload',
  'destination_workload',
  'http_status_code',
  'dns_query',
  'source_identity',
  'destination_identity',
  'http_method',
  'http_path',
  'trace_id',
];

function listOf<T>(v: unknown): T[] {
  return Array.isArray(v) ? (v as T[]) : [];
}

/** Exact IPv4 addresses or CIDRs as one predicate. @throws FilterError naming `field` */
function ipMatcher(field: string, values: string[]): (ip: string | undefined) => boolean {
  const nets = values.map((v) => {
    const [addr, len, extra] = v.split('/');
    const bits = len === undefined ? 32 : /^[0-9]{1,2}$/.test(len) ? Number(len) : NaN;
    if (extra !== undefined || !isIPv4(addr) || !(bits >= 0 && bits <= 32)) throw new FilterError(`flow filter ${field}: ${JSON.stringify(v)} is not an IPv4 address or CIDR`);
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
    return { net: (ipToU32(addr) & mask) >>> 0, mask };
  });
  return (ip) => ip !== undefined && isIPv4(ip) && nets.some((n) => ((ipToU32(ip) & n.mask) >>> 0) === n.net);
}

/**
 * Hubble's pod and service filter syntax: `namespace/name-prefix`,
 * `namespace/` (the whole namespace), or `name-prefix` (any namespace).
 */
function nameMatcher(values: string[]): (name: string | undefined) => boolean {
  return (name) => {
    if (!name) return false;
    const [ns, n] = name.split('/');
    return values.some((v) => {
      const i = v.indexOf('/');
      if (i < 0) return n.startsWith(v);
      return v.slice(0, i) === ns && n.startsWith(v.slice(i + 1));
    });
  };
}

/** @throws FilterError naming `field` when a value is not a port */
function portMatcher(field: string, values: string[]): (...ports: Array<number | undefined>) => boolean {
  const ports = values.map((v) => {
    const n = /^[0-9]{1,5}$/.test(v) ? Number(v) : NaN;
    if (!(n >= 0 && n <= 65535)) throw new FilterError(`flow filter ${field}: ${JSON.stringify(v)} is not a port (0..65535)`);
    return n;
  });
  return (...got) => got.some((p) => p !== undefined && ports.includes(p));
}

/** Node name patterns: `*` for any run of characters, an optional `cluster/` part (xlb's cluster is `default`). */
function globMatcher(values: string[]): (name: string) => boolean {
  const res = values.map((v) => {
    const i = v.indexOf('/');
    const cluster = i < 0 ? '*' : v.slice(0, i) || '*';
    const node = i < 0 ? v : v.slice(i + 1) || '*';
    const re = (p: string) => new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    return { cluster: re(cluster), node: re(node) };
  });
  return (name) => res.some((r) => r.cluster.test('default') && r.node.test(name));
}

const TCP_FLAG_FIELDS = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR', 'NS'];

/**
 * One Hubble flow filter as a predicate on xlb's flows: every field given
 * must match, and a field with several values matches when one does.
 * `destination_ip` and `destination_port` match the frontend the client
 * sent to or the backend the flow was placed on; `destination_pod` the
 * backend's pod.
 * @throws FilterError naming the field and the value, for a value that does
 *   not parse or a field xlb's flows carry nothing for (labels, FQDNs, L7)
 */
export function compileFilter(filter: HubbleFilter): (f: Flow) => boolean {
  for (const field of UNSUPPORTED) {
    if (listOf(filter[field]).length) throw new FilterError(`flow filter ${field} is not supported by xlb: its flows carry no ${field.replace(/^(source|destination)_/, '').replace(/_/g, ' ')}`);
  }
  const tests: Array<(f: Flow) => boolean> = [];
  const strings = (field: string) => listOf<string>(filter[field]);
  if (strings('source_ip').length) {
    const m = ipMatcher('source_ip', strings('source_ip'));
    tests.push((f) => m(f.source.ip));
  }
  if (strings('destination_ip').length) {
    const m = ipMatcher('destination_ip', strings('destination_ip'));
    tests.push((f) => m(f.destination.ip) || m(f.backend?.ip));
  }
  if (strings('source_pod').length) {
    const m = nameMatcher(strings('source_pod'));
    tests.push((f) => m(f.source.pod));
  }
  if (strings('destination_pod').length) {
    const m = nameMatcher(strings('destination_pod'));
    tests.push((f) => m(f.backend?.pod));
  }
  if (strings('source_service').length) tests.push(() => false);
  if (strings('destination_service').length) {
    const m = nameMatcher(strings('destination_service'));
    tests.push((f) => m(f.destination.service?.split(':')[0]));
  }
  if (strings('verdict').length) {
    const v = strings('verdict');
    tests.push((f) => v.includes(f.verdict));
  }
  if (strings('protocol').length) {
    const p = strings('protocol').map((s) => s.toLowerCase());
    tests.push((f) => p.includes(f.protocol.toLowerCase()));
  }
  if (strings('source_port').length) {
    const m = portMatcher('source_port', strings('source_port'));
    tests.push((f) => m(f.source.port));
  }
  if (strings('destination_port').length) {
    const m = portMatcher('destination_port', strings('destination_port'));
    tests.push((f) => m(f.destination.port, f.backend?.port));
  }
  if (listOf<boolean>(filter.reply).length) {
    const r = listOf<boolean>(filter.reply);
    tests.push(() => r.includes(false));
  }
  if (strings('traffic_direction').length) {
    const d = strings('traffic_direction');
    tests.push(() => d.includes('INGRESS'));
  }
  if (strings('ip_version').length) {
    const v = strings('ip_version');
    tests.push(() => v.includes('IPv4'));
  }
  if (strings('node_name').length) {
    const m = globMatcher(strings('node_name'));
    tests.push((f) => m(f.node));
  }
  const flagSets = listOf<Record<string, boolean>>(filter.tcp_flags);
  if (flagSets.length) {
    tests.push((f) => f.protocol === 'TCP' && flagSets.some((set) => TCP_FLAG_FIELDS.every((k) => !set[k] || f.tcpFlags.includes(k))));
  }
  const eventTypes = listOf<{ type?: number; match_sub_type?: boolean; sub_type?: number }>(filter.event_type);
  if (eventTypes.length) {
    tests.push((f) => {
      const e = toHubbleFlow(f).event_type as { type: number; sub_type: number };
      return eventTypes.some((t) => (t.type ?? 0) === e.type && (!t.match_sub_type || (t.sub_type ?? 0) === e.sub_type));
    });
  }
  return (f) => tests.every((t) => t(f));
}

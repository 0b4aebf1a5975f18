/**
 * The agent's configuration file, as a zod schema: every key, its default and
 * its allowed values.
 * Objects are strict: an unknown key anywhere is an error naming its path,
 * so a misspelt key is never silently ignored.
 *
 * Whether the interfaces exist is checked by the agent at start, not here:
 * this schema is pure and the same file may be validated on another machine.
 */
import net from 'node:net';
import { z } from 'zod';
import { MAGLEV_TABLE_SIZES, DEFAULT_BACKEND_MULTIPLIER } from '../maglev/index.js';
import { isIPv4 } from '../util/ip.js';
import { enums } from '../datapath/layouts.generated.js';
import { bgpConfigSchema } from '../bgp/config.js';
import { l2ConfigSchema } from '../l2/config.js';
import { ipamConfigSchema } from '../ipam/config.js';

/** Message for a missing key, else `msg`: zod reports both through the same check. */
const need =
  (msg: string) =>
  (iss: { input?: unknown }): string =>
    iss.input === undefined ? 'required' : msg;
const check = <T>(pred: (v: unknown) => boolean, msg: string) => z.custom<T>(pred, { error: need(msg) });
const isInt = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
const obj = <S extends z.ZodRawShape>(shape: S) => z.strictObject(shape, { error: need('must be a map') });
const list = <T extends z.ZodType>(item: T) => z.array(item, { error: need('must be a list') });

/** DNS-1123 subdomain: what Kubernetes allows as a node name. */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Linux interface names: 1..15 bytes (IFNAMSIZ 16 with the NUL), no '/', ':' or whitespace. */
const IFNAME = /^[^/:\s]{1,15}$/;
/** Pin directory names under /sys/fs/bpf/xlb/. */
const INSTANCE = /^[a-z0-9-]{1,48}$/;
/** Log levels of pino. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const nonEmptyString = check<string>((v) => typeof v === 'string' && v.length > 0, 'must be a non-empty string');
const tableSize = check<number>(
  (v) => MAGLEV_TABLE_SIZES.includes(v as number),
  `must be one of the Maglev table sizes ${MAGLEV_TABLE_SIZES.join(', ')}`,
);
const port = check<number>((v) => isInt(v, 1, 65535), 'must be an integer 1..65535');

/**
 * `HOST:PORT` (HOST an IPv4 address, a host name, or `[IPv6]`; PORT 0..65535,
 * 0 letting the kernel pick) or `unix:PATH`.
 */
export function isListenAddress(v: unknown): v is string {
  if (typeof v !== 'string') return false;
  if (v.startsWith('unix:')) return v.length > 'unix:'.length;
  const m = /^(\[([^\]]+)\]|[^:[\]]+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[3]) > 65535) return false;
  if (m[2] !== undefined) return net.isIPv6(m[2]);
  return isIPv4(m[1]) || /^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$/.test(m[1]);
}

/**
 * Whether two `HOST:PORT` listen addresses would take the same socket: the
 * same port (not 0) and the same host, or either host a wildcard
 * (`0.0.0.0`, `[::]`). Host names are not resolved.
 */
function listenersClash(a: string, b: string): boolean {
  if (a.startsWith('unix:') || b.startsWith('unix:')) return a === b;
  const split = (v: string) => {
    const i = v.lastIndexOf(':');
    return { host: v.slice(0, i), port: v.slice(i + 1) };
  };
  const x = split(a);
  const y = split(b);
  if (x.port !== y.port || Number(x.port) === 0) return false;
  const wildcard = (h: string) => h === '0.0.0.0' || h === '[::]';
  return x.host === y.host || wildcard(x.host) || wildcard(y.host);
}

const maglev = obj({
  minTableSize: tableSize.default(251),
  maxTableSize: tableSize.default(131071),
  backendMultiplier: check<number>((v) => typeof v === 'number' && Number.isFinite(v) && v > 0, 'must be a number > 0').default(
    DEFAULT_BACKEND_MULTIPLIER,
  ),
}).superRefine((m, ctx) => {
  if (m.minTableSize > m.maxTableSize) {
    ctx.addIssue({ code: 'custom', path: ['minTableSize'], input: m.minTableSize, message: `must be <= maxTableSize ${m.maxTableSize}` });
  }
});

const snatPorts = obj({
  min: port.default(enums.xlb_limits.XLB_SNAT_PORT_MIN_DEFAULT),
  max: port.default(enums.xlb_limits.XLB_SNAT_PORT_MAX_DEFAULT),
}).superRefine((p, ctx) => {
  if (p.min > p.max) ctx.addIssue({ code: 'custom', path: ['min'], input: p.min, message: `must be <= max ${p.max}` });
});

const lifetime = (dflt: number) => check<number>((v) => isInt(v, 1, 31536000), 'must be a whole number of seconds 1..31536000').default(dflt);
const L = enums.xlb_limits;
/** Conntrack lifetimes in seconds; the defaults are the datapath's (xlb_types.h), Cilium's. */
const conntrackLifetimes = obj({
  tcp: lifetime(L.XLB_CT_TIMEOUT_TCP),
  tcpSyn: lifetime(L.XLB_CT_TIMEOUT_TCP_SYN),
  tcpFin: lifetime(L.XLB_CT_TIMEOUT_TCP_FIN),
  any: lifetime(L.XLB_CT_TIMEOUT_ANY),
});

const source = obj({
  file: obj({
    path: nonEmptyString,
    maxBytes: check<number>((v) => isInt(v, 1024, 1 << 30), 'must be an integer 1024..1073741824 (bytes)').default(4 << 20),
    settleMs: check<number>((v) => isInt(v, 0, 60000), 'must be an integer 0..60000 (ms)').default(50),
  }).optional(),
  kubernetes: obj({
    kubeconfig: nonEmptyString.optional(),
    maxObjects: check<number>((v) => isInt(v, 1, 10_000_000), 'must be an integer 1..10000000 (objects of one kind)').default(100_000),
  }).optional(),
}).superRefine((s, ctx) => {
  const given = [s.file && 'file', s.kubernetes && 'kubernetes'].filter(Boolean);
  if (given.length !== 1) {
    ctx.addIssue({
      code: 'custom',
      path: [],
      input: s,
      message: given.length ? 'exactly one of file, kubernetes; both are given' : 'exactly one of file, kubernetes is required',
    });
  }
});

/**
 * The configuration schema. Sections other than `node`, `interfaces` and
 * `source` may be left out; their keys then take the defaults shown.
 *
 * - `node.name` (required): the node's name, matched against EndpointSlice
 *   `endpoints[].nodeName` to tell local backends. `xlb agent` fills it in
 *   when the file and the command line leave it out (config/discover.ts).
 * - `node.addresses`: IPv4 node addresses (NodePort frontends; the first is
 *   the SNAT source). Left out: the agent takes the IPv4 addresses of
 *   `interfaces`.
 * - `interfaces` (required, ≥ 1, distinct): external interfaces (XDP ingress,
 *   tc egress). `xlb agent` fills them in when left out (config/discover.ts).
 * - `source`: exactly one of `file.path` (manifests; relative to the config
 *   file) and `kubernetes` (optional `kubeconfig`, and `maxObjects`, default
 *   100,000: a list of Services or EndpointSlices with more is refused whole,
 *   the last good state staying programmed). With `file`, `maxBytes`
 *   (default 4 MiB: a larger file is refused) and `settleMs` (default 50: a
 *   file is read only once left alone that long; src/sources/file).
 * - `datapath.instance`: pin directory `/sys/fs/bpf/xlb/<instance>`,
 *   `[a-z0-9-]{1,48}`, default `xlb`. `objectDir`: directory of the BPF
 *   objects, null for `<repo>/xdp/build`. `xdpMode`: native | generic | auto
 *   (default; native, generic as a logged fallback).
 * - `datapath.maglev`: table sizes from the prime list, min ≤ max; slots per
 *   backend (`backendMultiplier`, default 100, Maglev paper section 3.4).
 * - `datapath.snatPorts`: source ports for SNAT, min ≤ max, default
 *   61000..65535 (above Linux's default ephemeral range 32768..60999).
 * - `datapath.conntrackSize`: flows the conntrack table holds,
 *   1024..16777216, default 131072 (how replies are restored is sized from
 *   it: docs/datapath.md, "Replies and SNAT ports").
 * - `flows.eventsPerSecond`: flow events (a new flow placed, a packet
 *   dropped) the datapath sends a second, per CPU, default 1,000; above it
 *   they are counted as suppressed; 0: none. `flows.buffer`: the last flows
 *   the agent keeps for `xlb observe` and GET /v1/flows (default 4,096).
 * - `datapath.synFloodGuard.newFlowsPerSecond`: new flows a second, per
 *   CPU, that get conntrack state; above it new flows are still placed by
 *   Maglev but leave no state, so a SYN flood cannot evict established
 *   flows (Katran's max_conn_rate). Default 10000; 0 turns the guard off.
 * - `datapath.hairpinAddress`: the source address tc on pod interfaces
 *   gives a pod's flow to a service it backs itself (so that the reply
 *   leaves the pod and can be restored); default 169.254.42.1, Cilium's.
 *   Never leaves the pod's interface.
 * - `datapath.conntrackLifetimes`: seconds a flow may stay silent before
 *   its entries and SNAT port may be reused: `tcp` (established, 21600),
 *   `tcpSyn` (only SYNs seen, 60), `tcpFin` (a FIN or RST seen, 10), `any`
 *   (UDP, 60); Cilium's defaults (docs/datapath.md, "Conntrack lifetimes").
 * - `api.listen`: `HOST:PORT` or `unix:PATH`, default `127.0.0.1:9876`.
 * - `hubble.listen`: where to serve Hubble's Observer gRPC API over the
 *   flows (`HOST:PORT` or `unix:PATH`, no TLS: loopback or a unix socket);
 *   left out: not served (src/hubble/observer.ts).
 * - `metrics.listen`: `HOST:PORT` (or `[IPv6]:PORT`) of a second listener
 *   that serves only `/metrics` and `/healthz`, for Prometheus to scrape
 *   (e.g. `0.0.0.0:9877` on a node) without reaching the API; not the
 *   API's address. Default null: none, the metrics are on the API's
 *   `/metrics` only.
 * - `log.level`: a pino level, default `info`.
 * - `bgp`: announce VIPs over BGP through gobgpd (src/bgp/config.ts has
 *   every key); left out: no BGP.
 * - `l2`: answer ARP for the VIPs this node owns (src/l2/config.ts has
 *   every key); left out: no layer 2 announcements.
 * - `ipam`: LB IPAM pools and its leader election (src/ipam/config.ts);
 *   only with `source.kubernetes`; left out: no addresses assigned.
 * - `announce.externalIPs`: announce `spec.externalIPs` as well as
 *   LoadBalancer VIPs (default false).
 * - `socketLB`: services reached from inside the cluster (pods and the
 *   node's own processes), balanced at the socket (cgroup v2 socket hooks,
 *   as Cilium's socket LB): `enabled` (default true); `cgroupRoot`, the
 *   cgroup v2 directory whose processes are served (default null: the root
 *   of the node's cgroup2 hierarchy wherever it is mounted, mounted at
 *   /run/xlb/cgroupv2 when it is not; Cilium's `cgroup-root`);
 *   `hostNamespaceOnly` (default false): translate only sockets of the
 *   node's own network namespace, leaving pods to `podInterfaces` (Cilium's
 *   `socketLB.hostNamespaceOnly`, for service meshes that must see the
 *   service address).
 * - `podInterfaces`: name patterns (`*` any characters) of the host side of
 *   pod interfaces, e.g. `veth*`, `lxc*`, `cali*`: tc on them translates
 *   pod traffic that the socket hooks did not (per-packet DNAT with
 *   conntrack, reverse NAT on the way back). Default none. Interfaces that
 *   appear later are attached within a second.
 */
export const ConfigSchema = obj({
  node: obj({
    name: check<string>(
      (v) => typeof v === 'string' && v.length <= 253 && DNS_SUBDOMAIN.test(v),
      'must be a node name (DNS-1123 subdomain: lower-case letters, digits, "-", ".")',
    ),
    addresses: list(check<string>((v) => typeof v === 'string' && isIPv4(v), 'not an IPv4 address'))
      .min(1, { error: 'must list at least one address, or be left out to use the interfaces\' addresses' })
      .optional(),
  }),
  interfaces: list(check<string>((v) => typeof v === 'string' && IFNAME.test(v) && v !== '.' && v !== '..', 'not an interface name (1..15 characters, no "/", ":" or spaces)'))
    .min(1, { error: 'must list at least one interface' })
    .superRefine((names, ctx) => {
      names.forEach((n, i) => {
        if (names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: [i], input: n, message: `duplicate interface (also interfaces[${names.indexOf(n)}])` });
      });
    }),
  source,
  datapath: obj({
    instance: check<string>((v) => typeof v === 'string' && INSTANCE.test(v), 'must match [a-z0-9-]{1,48}').default('xlb'),
    objectDir: check<string | null>((v) => v === null || (typeof v === 'string' && v.length > 0), 'must be a directory path or null').default(null),
    xdpMode: check<'native' | 'generic' | 'auto'>((v) => v === 'native' || v === 'generic' || v === 'auto', 'must be one of native, generic, auto').default(
      'auto',
    ),
    maglev: maglev.prefault({}),
    snatPorts: snatPorts.prefault({}),
    conntrackSize: check<number>((v) => isInt(v, 1024, 16777216), 'must be an integer 1024..16777216').default(131072),
    synFloodGuard: obj({
      newFlowsPerSecond: check<number>((v) => isInt(v, 0, 100000000), 'must be an integer 0..100000000 (0: no guard)').default(10000),
    }).prefault({}),
    conntrackLifetimes: conntrackLifetimes.prefault({}),
    hairpinAddress: check<string>((v) => typeof v === 'string' && isIPv4(v), 'not an IPv4 address').default('169.254.42.1'),
  }).prefault({}),
  api: obj({
    listen: check<string>(isListenAddress, 'must be HOST:PORT, [IPv6]:PORT or unix:PATH').default('127.0.0.1:9876'),
  }).prefault({}),
  hubble: obj({
    listen: check<string>(isListenAddress, 'must be HOST:PORT, [IPv6]:PORT or unix:PATH').optional(),
  }).prefault({}),
  metrics: obj({
    listen: check<string | null>(
      (v) => v === null || (isListenAddress(v) && !v.startsWith('unix:')),
      'must be HOST:PORT or [IPv6]:PORT (Prometheus scrapes over TCP), or null for none',
    ).default(null),
  }).prefault({}),
  flows: obj({
    eventsPerSecond: check<number>((v) => isInt(v, 0, 10000000), 'must be an integer 0..10000000 (0: no flow events)').default(1000),
    buffer: check<number>((v) => isInt(v, 16, 1000000), 'must be an integer 16..1000000 (flows)').default(4096),
  }).prefault({}),
  bgp: bgpConfigSchema.optional(),
  l2: l2ConfigSchema.optional(),
  ipam: ipamConfigSchema.optional(),
  socketLB: obj({
    enabled: check<boolean>((v) => typeof v === 'boolean', 'must be true or false').default(true),
    cgroupRoot: check<string | null>((v) => v === null || (typeof v === 'string' && v.startsWith('/')), 'must be an absolute path or null').default(null),
    hostNamespaceOnly: check<boolean>((v) => typeof v === 'boolean', 'must be true or false').default(false),
  }).prefault({}),
  podInterfaces: list(check<string>((v) => typeof v === 'string' && /^[^/:\s]{1,15}$/.test(v), 'not an interface name pattern (1..15 characters, `*` for any, no "/", ":" or spaces)')).default([]),
  announce: obj({
    externalIPs: check<boolean>((v) => typeof v === 'boolean', 'must be true or false').default(false),
  }).prefault({}),
  log: obj({
    level: check<(typeof LOG_LEVELS)[number]>((v) => LOG_LEVELS.includes(v as never), `must be one of ${LOG_LEVELS.join(', ')}`).default('info'),
  }).prefault({}),
}).superRefine((c, ctx) => {
  if (c.l2?.ownership === 'lease' && !c.source.kubernetes) {
    ctx.addIssue({ code: 'custom', path: ['l2', 'ownership'], input: undefined, message: 'lease needs source.kubernetes (the Leases live in the API server); use peers with the file source' });
  }
  if (c.l2 && c.l2.ownership !== 'lease' && !c.source.kubernetes && c.l2.peers.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['l2', 'peers'], input: undefined, message: 'must list the nodes of the layer 2 group (peers ownership, the file source\'s)' });
  }
  if (c.metrics.listen !== null && listenersClash(c.metrics.listen, c.api.listen)) {
    ctx.addIssue({ code: 'custom', path: ['metrics', 'listen'], input: c.metrics.listen, message: `must not take api.listen's port (${c.api.listen}); the API serves /metrics itself` });
  }
  if (c.bgp && c.bgp.neighbors.length === 0 && !(c.source.kubernetes && c.bgp.customResources)) {
    ctx.addIssue({
      code: 'custom',
      path: ['bgp', 'neighbors'],
      input: c.bgp.neighbors,
      message: 'must list at least one neighbor (a router to announce VIPs to), unless BGPPeer resources give them (source.kubernetes with bgp.customResources)',
    });
  }
  if (c.ipam && !c.source.kubernetes) {
    ctx.addIssue({ code: 'custom', path: ['ipam'], input: undefined, message: 'needs source.kubernetes: IPAM writes Service status through the API server' });
  }
});

/**
 * The validated configuration with defaults filled in. After `loadConfig`
 * (load.ts), `source.file.path`, `source.kubernetes.kubeconfig`,
 * `datapath.objectDir` and a `unix:` listen path are absolute.
 */
export type Config = z.output<typeof ConfigSchema>;

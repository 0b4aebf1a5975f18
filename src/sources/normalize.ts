/**
 * Normalization of Kubernetes objects into xlb's model (src/model/types.ts).
 *
 * Input is what `kubectl get -o yaml` prints (or what an informer hands over):
 * v1 `Service`, discovery.k8s.io/v1 `EndpointSlice`, and `List`s of them.
 * Output is a {@link ClusterState} with the API's defaults applied (protocol
 * TCP, targetPort = port, type ClusterIP, traffic policies Cluster,
 * sessionAffinity None), plus one {@link InputIssue} per problem found.
 * Endpoints are read as kube-proxy reads them (pkg/proxy/endpointslicecache.go):
 * conditions ready nil → true, serving nil → true, terminating nil → false;
 * an endpoint without an address is skipped; the first address is the one
 * used.
 *
 * Validation covers what matters to a load balancer (names, ports, protocols,
 * addresses, node ports, the service-name label) and unknown fields in the
 * parts read here, so that a typo such as `spec.potrs` is reported instead of
 * silently producing a service without ports. Fields that Kubernetes defines
 * but xlb does not use (ipFamilies, selector, managedFields, ...) are
 * accepted. Field names and defaults follow the Kubernetes API reference
 * (core/v1 ServiceSpec, discovery/v1 EndpointSlice).
 *
 * A problem costs the smallest part that holds it, never the whole object
 * unless the object's identity is at stake (a malformed field of one service
 * never takes that service, or any other, down):
 *
 * | problem in                                       | what goes                                   |
 * | ------------------------------------------------ | ------------------------------------------- |
 * | kind, apiVersion, metadata.name/namespace        | the object                                  |
 * | Service spec.type; no usable port left           | the Service                                 |
 * | EndpointSlice addressType; no service-name label | the EndpointSlice                           |
 * | spec.ports[i] (name, protocol, port, targetPort) | that port                                   |
 * | spec.ports[i].nodePort (range, type, duplicate)  | that node port (the port keeps its ClusterIP) |
 * | spec.clusterIP                                   | that field: no ClusterIP from it            |
 * | spec.clusterIPs[i], externalIPs[i]               | that address                                |
 * | spec.loadBalancerSourceRanges[i]                 | that range (the others still apply)         |
 * | status.loadBalancer.ingress[i] (ip, ipMode)      | that ingress point                          |
 * | externalTrafficPolicy, internalTrafficPolicy     | the field: Cluster                          |
 * | sessionAffinity / sessionAffinityConfig          | the field: None / 10800 s                   |
 * | slice ports[i]                                   | that port                                   |
 * | slice endpoints[i] (addresses, conditions)       | that endpoint                               |
 * | slice endpoints[i].addresses[j]                  | that address (no address left: the endpoint) |
 * | endpoints[i].hints, nodeName, zone, targetRef    | that field                                  |
 * | a label or annotation that is not a string       | that entry, ignored                         |
 * | an unknown field (unknownFields 'reject')        | that field, ignored                         |
 * | any other field                                  | that field, ignored                         |
 *
 * Each issue says what went ("...; this port is skipped", "...; using the
 * default None"). The returned object then has both a value and issues.
 *
 * EndpointSlices labelled `service.kubernetes.io/service-proxy-name` or
 * `service.kubernetes.io/headless` are left out (kube-proxy's informers never
 * list them: cmd/kube-proxy/app/server.go); Services with those labels are
 * kept, for the translator to report as not served.
 *
 * Pure: no I/O. The per-object functions are shared by every source.
 */
import { z } from 'zod';
import type {
  ClusterState,
  EndpointHints,
  EndpointModel,
  EndpointPortModel,
  EndpointSliceModel,
  InputIssue,
  Protocol,
  ServiceModel,
  ServicePort,
  ServiceType,
} from '../model/types.js';
import { emptyClusterState, HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL } from '../model/types.js';

export { HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL };
import { isIPv4 } from '../util/ip.js';
import { compileAccepts, type Accepts } from './accel/accepts.js';

/** Label that ties an EndpointSlice to its Service (discovery/v1). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';



/** Annotation of source ranges for cloud load balancers (core/v1 AnnotationLoadBalancerSourceRangesKey); kube-proxy does not read it. */
export const SOURCE_RANGES_ANNOTATION = 'service.beta.kubernetes.io/load-balancer-source-ranges';

/** Default `sessionAffinityConfig.clientIP.timeoutSeconds` (core/v1: 3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;

/**
 * Options of the normalizers.
 *
 * - `unknownFields`: `'reject'` (default) reports every field Kubernetes does
 *   not define in the parts read here (the field is ignored, the object
 *   kept); `'ignore'` drops them silently. A manifests file wants
 *   `'reject'` (typos); an informer talking to a newer API server than xlb
 *   knows wants `'ignore'`.
 * - `loadBalancerIPs`: where a LoadBalancer service's VIPs come from.
 *   `'status-or-spec'` (default, for manifests files that carry no status):
 *   `status.loadBalancer.ingress[].ip`, else `spec.loadBalancerIP`.
 *   `'status'` (the Kubernetes source): only the status, as kube-proxy and
 *   Cilium do: a requested address is served once an IPAM (xlb's or
 *   another) has assigned it there, never before or when it was refused.
 */
export interface NormalizeOptions {
  unknownFields?: 'reject' | 'ignore';
  loadBalancerIPs?: 'status-or-spec' | 'status';
  /**
   * Each part of an object (a Service, each of its ports and ingress points;
   * an EndpointSlice, each of its ports and endpoints) is first asked of the
   * predicate compiled from its schema (accel/accepts.ts), and read as it is
   * when that says yes (default true); any other part goes through the
   * schema, which words the issues. False: always the schema (tests compare
   * the two).
   */
  fastPath?: boolean;
}

/**
 * Result of normalizing one object.
 *
 * - `value` and no issues: the object is valid.
 * - `value` and issues: parts of the object were dropped or defaulted (each
 *   issue says which); the rest is in `value` and is served.
 * - no `value`, issues: the object is skipped (its identity, or everything
 *   that would make it useful, is unusable).
 * - no `value`, `ignored`: kube-proxy never reads this object (an
 *   EndpointSlice labelled for another proxy or a headless Service); not a
 *   problem, and `issues` is empty. The text says why.
 */
export interface ObjectResult<T> {
  value?: T;
  /** Every problem found, including those of parts that were dropped. */
  issues: InputIssue[];
  /** Why the object is left out without being a problem (see above). */
  ignored?: string;
}

/** Result of {@link normalizeObjects}. */
export interface NormalizeResult {
  state: ClusterState;
  /** Problems with input objects; each says what was dropped or defaulted, or that the object was skipped. */
  issues: InputIssue[];
  /**
   * Objects xlb does not read, as `Kind namespace/name`, with the reason in
   * parentheses when the kind is one xlb reads (`EndpointSlice shop/db-x1
   * (label service.kubernetes.io/headless: ...)`): kinds other than Service
   * and EndpointSlice (Deployments, Pods, Endpoints, ...) and EndpointSlices
   * kube-proxy does not list. Worth a debug-level log line, not an issue.
   */
  ignored: string[];
}

// ---------------------------------------------------------------------------
// Leaf validators. Each has one message so that issues read the same
// everywhere; an absent required field reads "required".

type ErrorFn = (iss: { input?: unknown }) => string;
const need =
  (msg: string): ErrorFn =>
  (iss) =>
    iss.input === undefined ? 'required' : msg;

const check = <T>(pred: (v: unknown) => boolean, msg: string) => z.custom<T>(pred, { error: need(msg) });

const isInt = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;

/** DNS-1123 subdomain (object names). */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** DNS-1123 label (namespaces, port names). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** IANA_SVC_NAME (named target ports): at most 15 characters, at least one letter. */
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/**
 * An IPv4 or IPv6 address as kube-proxy reads a Service's addresses
 * (pkg/proxy/serviceport.go: ParseIPSloppy, so `010.1.2.3` is 10.1.2.3);
 * {@link serviceAddress} gives its canonical text.
 */
const isAddress = (v: unknown): v is string => typeof v === 'string' && parseIPSloppy(v) !== undefined;
/** The canonical text of an address {@link isAddress} accepts (`010.1.2.3` → `10.1.2.3`). */
const serviceAddress = (v: string): string => parseIPSloppy(v)!;

const str = check<string>((v) => typeof v === 'string', 'must be a string');
const bool = check<boolean>((v) => typeof v === 'boolean', 'must be true or false');
const port = check<number>((v) => isInt(v, 1, 65535), 'must be an integer 1..65535');
const objectName = check<string>(
  (v) => typeof v === 'string' && v.length <= 253 && DNS_SUBDOMAIN.test(v),
  'must be a DNS-1123 subdomain (lower-case letters, digits, "-", "."; at most 253 characters)',
);
const namespaceName = check<string>(
  (v) => typeof v === 'string' && v.length <= 63 && DNS_LABEL.test(v),
  'must be a DNS-1123 label (lower-case letters, digits, "-"; at most 63 characters)',
);
const portName = check<string>(
  (v) => typeof v === 'string' && (v === '' || (v.length <= 63 && DNS_LABEL.test(v))),
  'must be empty or a DNS-1123 label (lower-case letters, digits, "-")',
);
const targetPort = check<number | string>(
  (v) => isInt(v, 1, 65535) || (typeof v === 'string' && v.length <= 15 && IANA_SVC_NAME.test(v) && /[a-z]/.test(v)),
  'must be an integer 1..65535 or a container port name',
);
const protocol = check<Protocol>((v) => v === 'TCP' || v === 'UDP' || v === 'SCTP', 'must be TCP, UDP or SCTP');
const ipAddress = check<string>(isAddress, 'not an IPv4 or IPv6 address');
const oneOf = <T extends string>(values: readonly T[]) => check<T>((v) => values.includes(v as T), `must be one of ${values.join(', ')}`);
const list = <T extends z.ZodType>(item: T) => z.array(item, { error: need('must be a list') });
/** A list whose elements the normalizer reads one by one (each element is its own unit). */
const items = list(z.unknown());
const stringMap = z.record(z.string(), str, { error: need('must be a map of strings') });

// Labels as the API server validates them (apimachinery validation:
// IsQualifiedName for keys, IsValidLabelValue for values).
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** A label key: an optional DNS subdomain prefix and "/", then a name of at most 63 characters. */
export function isLabelKey(k: string): boolean {
  const slash = k.indexOf('/');
  const name = slash < 0 ? k : k.slice(slash + 1);
  if (slash >= 0) {
    const prefix = k.slice(0, slash);
    if (!prefix || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)) return false;
  }
  return name.length > 0 && name.length <= 63 && LABEL_NAME.test(name);
}
/** A label value: empty, or at most 63 characters of letters, digits, "-", "_", ".", beginning and ending with a letter or digit. */
export function isLabelValue(v: unknown): boolean {
  return typeof v === 'string' && (v === '' || (v.length <= 63 && LABEL_NAME.test(v)));
}
const labelKey = check<string>((k) => typeof k === 'string' && isLabelKey(k), 'not a label key');
const labelValue = z.custom<string>(isLabelValue, {
  error: (iss) =>
    iss.input === undefined
      ? 'required'
      : typeof iss.input !== 'string'
        ? 'must be a string'
        : 'not a label value: empty, or at most 63 letters, digits, "-", "_", "." beginning and ending with a letter or digit',
});
const LABEL_KEY_MSG = 'not a label key: an optional DNS subdomain and "/", then at most 63 letters, digits, "-", "_", "." beginning and ending with a letter or digit';
const labelMap = z.record(labelKey, labelValue, {
  // zod hands the record's error function its keys' issues too (code invalid_key).
  error: (iss) => (iss.input === undefined ? 'required' : iss.code === 'invalid_key' ? LABEL_KEY_MSG : 'must be a map of strings'),
});

// ---------------------------------------------------------------------------
// Addresses as kube-proxy reads them: k8s.io/utils/net ParseIPSloppy and
// ParseCIDRSloppy, the parsers of Go 1.16 that the API server validated
// with for years: IPv4 octets may have leading zeros and are decimal
// ("010" is 10, never octal), IPv6 groups may too; no zone ("%eth0").

const DIGITS = /^[0-9]+$/;
const HEX = /^[0-9a-fA-F]+$/;

/** The four octets of a dotted quad, leading zeros allowed; undefined if it is not one. */
function ipv4Octets(s: string): number[] | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!DIGITS.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

/** Bytes of `:`-separated hex groups; the last may be a dotted quad when `tail`. */
function groupBytes(part: string, tail: boolean): number[] | undefined {
  if (part === '') return [];
  const groups = part.split(':');
  const out: number[] = [];
  for (let k = 0; k < groups.length; k++) {
    const g = groups[k];
    if (tail && k === groups.length - 1 && g.includes('.')) {
      const v4 = ipv4Octets(g);
      if (!v4) return undefined;
      out.push(v4[0], v4[1], v4[2], v4[3]);
      continue;
    }
    if (!HEX.test(g)) return undefined;
    const n = parseInt(g, 16);
    if (n > 0xffff) return undefined;
    out.push(n >> 8, n & 255);
  }
  return out;
}

/** The 16 bytes of an IPv6 address (`::` stands for one or more zero groups); undefined if it is not one. */
function ipv6Bytes(s: string): number[] | undefined {
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  if (halves.length === 1) {
    const b = groupBytes(s, true);
    return b && b.length === 16 ? b : undefined;
  }
  const head = groupBytes(halves[0], false);
  const tail = groupBytes(halves[1], true);
  if (!head || !tail || head.length + tail.length > 14) return undefined;
  const out = head;
  while (out.length + tail.length < 16) out.push(0);
  for (const b of tail) out.push(b);
  return out;
}

/** `::ffff:a.b.c.d`, which Go prints, and treats, as the IPv4 address a.b.c.d. */
function isV4Mapped(b: number[]): boolean {
  if (b.length !== 16 || b[10] !== 255 || b[11] !== 255) return false;
  for (let k = 0; k < 10; k++) if (b[k] !== 0) return false;
  return true;
}

/** RFC 5952 text of 16 bytes (as Go prints IPv6): lower case, the longest run of two or more zero groups (the first of equals) as `::`. */
function formatIPv6(b: number[]): string {
  const g: string[] = [];
  for (let k = 0; k < 16; k += 2) g.push(((b[k] << 8) | b[k + 1]).toString(16));
  let at = -1;
  let len = 1;
  for (let k = 0; k < 8; ) {
    if (g[k] !== '0') {
      k++;
      continue;
    }
    let end = k;
    while (end < 8 && g[end] === '0') end++;
    if (end - k > len) [at, len] = [k, end - k];
    k = end;
  }
  return at < 0 ? g.join(':') : `${g.slice(0, at).join(':')}::${g.slice(at + len).join(':')}`;
}

/**
 * An address as k8s.io/utils/net ParseIPSloppy reads it, in Go's text
 * (`010.1.2.3` → `10.1.2.3`, `FD00:0::1` → `fd00::1`, `::ffff:1.2.3.4` →
 * `1.2.3.4`); undefined if it is not an address.
 */
export function parseIPSloppy(s: string): string | undefined {
  const v4 = ipv4Octets(s);
  if (v4) return v4.join('.');
  const v6 = ipv6Bytes(s);
  if (!v6) return undefined;
  return isV4Mapped(v6) ? v6.slice(12).join('.') : formatIPv6(v6);
}

/**
 * A CIDR as k8s.io/utils/net ParseCIDRSloppy reads it, as the network it
 * names in Go's text: host bits cleared (`10.0.0.1/8` → `10.0.0.0/8`),
 * leading zeros read as decimal (`010.0.0.0/08` → `10.0.0.0/8`), IPv6 in
 * RFC 5952 text. An IPv4-mapped IPv6 network of prefix ≥ 96 is, as Go
 * makes it, the IPv4 network (`::ffff:1.2.3.0/120` → `1.2.3.0/24`).
 * No surrounding whitespace (see {@link normalizeSourceRange}).
 * @returns undefined if `s` is not ADDRESS/PREFIX with a prefix that fits
 */
export function parseCIDRSloppy(s: string): string | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const len = s.slice(slash + 1);
  if (!DIGITS.test(len)) return undefined;
  const addr = s.slice(0, slash);
  const bytes = ipv4Octets(addr) ?? ipv6Bytes(addr);
  if (!bytes) return undefined;
  const prefix = Number(len);
  if (prefix > bytes.length * 8) return undefined;
  for (let k = 0; k < bytes.length; k++) {
    const keep = Math.min(8, Math.max(0, prefix - 8 * k));
    bytes[k] &= (0xff << (8 - keep)) & 0xff;
  }
  if (bytes.length === 4) return `${bytes.join('.')}/${prefix}`;
  if (isV4Mapped(bytes)) return `${bytes.slice(12).join('.')}/${prefix - 96}`;
  return `${formatIPv6(bytes)}/${prefix}`;
}

/**
 * One `spec.loadBalancerSourceRanges` entry as kube-proxy reads it
 * (pkg/proxy/serviceport.go newBaseServiceInfo): surrounding whitespace
 * trimmed (the API server lets it through), then {@link parseCIDRSloppy}.
 * `" 10.1.2.3/28"` → `"10.1.2.0/28"`.
 * @returns the network as a CIDR string, or undefined if it is not one
 */
export function normalizeSourceRange(s: string): string | undefined {
  return parseCIDRSloppy(s.trim());
}

// ---------------------------------------------------------------------------
// Object schemas. `strict` decides whether unknown fields are issues. Lists
// whose elements are units of their own are `items`: the normalizers read
// their elements one by one, with the element schemas below.

function buildSchemas(strict: boolean) {
  const obj = <S extends z.ZodRawShape>(shape: S) =>
    strict ? z.strictObject(shape, { error: need('must be a map') }) : z.object(shape, { error: need('must be a map') });
  const anything = z.unknown().optional();

  // ObjectMeta (meta/v1): every field kubectl prints is accepted; xlb reads
  // name, namespace, labels and annotations.
  const metadata = obj({
    name: objectName,
    namespace: namespaceName.nullish(),
    generateName: anything,
    selfLink: anything,
    uid: anything,
    resourceVersion: anything,
    generation: anything,
    creationTimestamp: anything,
    deletionTimestamp: anything,
    deletionGracePeriodSeconds: anything,
    labels: labelMap.nullish(),
    annotations: stringMap.nullish(),
    ownerReferences: anything,
    finalizers: anything,
    managedFields: anything,
  });

  const servicePort = obj({
    name: portName.nullish(),
    protocol: protocol.nullish(),
    appProtocol: str.nullish(),
    port,
    targetPort: targetPort.nullish(),
    nodePort: check<number>((v) => isInt(v, 0, 65535), 'must be an integer 1..65535 (0: not allocated)').nullish(),
  });

  const ingressPoint = obj({
    ip: ipAddress.nullish(),
    hostname: str.nullish(),
    ipMode: oneOf(['VIP', 'Proxy'] as const).nullish(),
    ports: anything,
  });

  const service = obj({
    apiVersion: check<'v1'>((v) => v === 'v1', 'must be v1 for a Service').nullish(),
    kind: check<'Service'>((v) => v === 'Service', 'must be Service').nullish(),
    metadata,
    spec: obj({
      type: oneOf(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const).nullish(),
      clusterIP: check<string>((v) => v === 'None' || v === '' || isAddress(v), 'must be an IPv4 or IPv6 address, "None" or ""').nullish(),
      clusterIPs: items.nullish(),
      externalIPs: items.nullish(),
      loadBalancerIP: check<string>((v) => v === '' || isAddress(v), 'not an IPv4 or IPv6 address').nullish(),
      loadBalancerSourceRanges: items.nullish(),
      loadBalancerClass: str.nullish(),
      ports: items.nullish(),
      externalTrafficPolicy: oneOf(['Cluster', 'Local'] as const).nullish(),
      internalTrafficPolicy: oneOf(['Cluster', 'Local'] as const).nullish(),
      sessionAffinity: oneOf(['None', 'ClientIP'] as const).nullish(),
      sessionAffinityConfig: obj({
        clientIP: obj({
          timeoutSeconds: check<number>((v) => isInt(v, 1, 86400), 'must be an integer 1..86400 (seconds)').nullish(),
        }).nullish(),
      }).nullish(),
      allocateLoadBalancerNodePorts: bool.nullish(),
      // 0 is Go's "not set".
      healthCheckNodePort: check<number>((v) => isInt(v, 0, 65535), 'must be an integer 1..65535').nullish(),
      // Any string: kube-proxy does not read it, and newer values may come.
      trafficDistribution: str.nullish(),
      // Defined by Kubernetes, not used by xlb.
      selector: stringMap.nullish(),
      externalName: str.nullish(),
      ipFamilies: list(oneOf(['IPv4', 'IPv6'] as const)).nullish(),
      ipFamilyPolicy: oneOf(['SingleStack', 'PreferDualStack', 'RequireDualStack'] as const).nullish(),
      publishNotReadyAddresses: bool.nullish(),
    }),
    status: obj({
      loadBalancer: obj({ ingress: items.nullish() }).nullish(),
      conditions: anything,
    }).nullish(),
  });

  const endpointPort = obj({
    name: portName.nullish(),
    protocol: protocol.nullish(),
    appProtocol: str.nullish(),
    // The API allows a nil port ("all ports"); kube-proxy ignores such a port.
    port: check<number>((v) => isInt(v, 1, 65535), 'must be an integer 1..65535 (xlb needs a port number)'),
  });

  const hint = obj({ name: str });
  const endpoint = obj({
    addresses: items,
    conditions: obj({ ready: bool.nullish(), serving: bool.nullish(), terminating: bool.nullish() }).nullish(),
    nodeName: str.nullish(),
    zone: str.nullish(),
    targetRef: obj({
      kind: anything,
      namespace: anything,
      name: str.nullish(),
      uid: anything,
      apiVersion: anything,
      resourceVersion: anything,
      fieldPath: anything,
    }).nullish(),
    hints: obj({ forZones: list(hint).nullish(), forNodes: list(hint).nullish() }).nullish(),
    hostname: anything,
    deprecatedTopology: anything,
  });

  const endpointSlice = obj({
    apiVersion: check<'discovery.k8s.io/v1'>((v) => v === 'discovery.k8s.io/v1', 'must be discovery.k8s.io/v1 for an EndpointSlice').nullish(),
    kind: check<'EndpointSlice'>((v) => v === 'EndpointSlice', 'must be EndpointSlice').nullish(),
    metadata,
    addressType: oneOf(['IPv4', 'IPv6', 'FQDN'] as const),
    ports: items.nullish(),
    endpoints: items.nullish(),
  });

  return { service, servicePort, ingressPoint, endpointSlice, endpointPort, endpoint };
}

/** The schemas of the parts the normalizers read one by one. */
type Schemas = ReturnType<typeof buildSchemas>;
const schemaCache = new Map<boolean, Schemas>();
/**
 * Each part schema's fast yes/no, compiled from it when the schemas are
 * built (accel/accepts.ts): a part it accepts is read as it is, without
 * the schema's parse (see {@link readPart}).
 */
const acceptsOf = new WeakMap<z.ZodType, Accepts>();
function schemas(opts: NormalizeOptions | undefined): Schemas {
  const strict = (opts?.unknownFields ?? 'reject') === 'reject';
  let s = schemaCache.get(strict);
  if (!s) {
    s = buildSchemas(strict);
    for (const part of Object.values(s)) acceptsOf.set(part, compileAccepts(part));
    schemaCache.set(strict, s);
  }
  return s;
}

// ---------------------------------------------------------------------------
// Issue formatting.

/**
 * A path as Kubernetes spells fields: `spec.ports[1].port`,
 * `metadata.labels["kubernetes.io/service-name"]`.
 */
export function formatFieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(String(seg))) out += out ? `.${String(seg)}` : String(seg);
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

/** A value for an issue message, shortened: `70000`, `"10.0.0.256"`. */
export function showValue(v: unknown): string {
  let s: string;
  try {
    s = v instanceof Date ? v.toISOString() : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function rawMeta(obj: unknown): { namespace: string; name?: string } {
  const m = obj && typeof obj === 'object' ? (obj as { metadata?: unknown }).metadata : undefined;
  const meta = m && typeof m === 'object' ? (m as Record<string, unknown>) : {};
  return {
    namespace: typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : 'default',
    name: typeof meta.name === 'string' && meta.name ? meta.name : undefined,
  };
}

/**
 * How issues name an object: `Service default/web`. Without a name, `where`
 * (e.g. `manifests.yaml:12`) says which object is meant.
 */
export function objectLabel(kind: string, obj: unknown, where?: string): string {
  const { namespace, name } = rawMeta(obj);
  return `${kind} ${namespace}/${name ?? `<no name${where ? ` at ${where}` : ''}>`}`;
}

// ---------------------------------------------------------------------------
// Field-level recovery. A part (an object, one port, one endpoint) is
// validated with its schema; each problem found is mapped to its unit by
// the part's unit table below; the units are removed from a copy, which is
// validated again. A problem whose unit is the whole part makes the caller
// skip the part.

/** What a problem costs. */
interface Unit {
  /** Path, relative to the part, of the field that is removed; absent: the whole part goes. */
  drop?: PropertyKey[];
  /** What happens, for the issue: "this port is skipped", "using the default None". */
  note: string;
}
type UnitOf = (path: ReadonlyArray<PropertyKey>) => Unit;

const SERVICE_SKIPPED = 'the Service is skipped';
const SLICE_SKIPPED = 'the EndpointSlice is skipped';
const IGNORED = 'ignored';

/** metadata.* of either kind: name and namespace are the object's identity. */
function metadataUnit(path: ReadonlyArray<PropertyKey>, skipped: string): Unit {
  const field = path[1];
  if (field === undefined || field === 'name' || field === 'namespace') return { note: skipped };
  if (field === 'labels' || field === 'annotations') {
    const one = field === 'labels' ? 'label' : 'annotation';
    return path.length > 2 ? { drop: ['metadata', field, path[2]], note: `this ${one} is ignored` } : { drop: ['metadata', field], note: `the ${field} are ignored` };
  }
  return { drop: ['metadata', field], note: IGNORED };
}

/** Units of a Service (its lists' elements are read one by one, see normalizeService). */
function serviceUnit(path: ReadonlyArray<PropertyKey>): Unit {
  const [top, field] = path;
  if (top === 'metadata') return metadataUnit(path, SERVICE_SKIPPED);
  if (top === 'status') return { drop: [...path], note: IGNORED };
  if (top === undefined || top === 'apiVersion' || top === 'kind') return { note: SERVICE_SKIPPED };
  if (top !== 'spec') return { drop: [top], note: IGNORED };
  switch (field) {
    case undefined:
    case 'type':
      // Every frontend depends on the type.
      return { note: SERVICE_SKIPPED };
    case 'externalTrafficPolicy':
    case 'internalTrafficPolicy':
      return { drop: ['spec', field], note: 'using the default Cluster' };
    case 'sessionAffinity':
      return { drop: ['spec', field], note: 'using the default None' };
    case 'sessionAffinityConfig':
      return { drop: ['spec', field], note: `using the default timeout of ${DEFAULT_AFFINITY_TIMEOUT_SECONDS} s` };
    case 'clusterIP':
      return { drop: ['spec', field], note: 'ignored: no ClusterIP from this field' };
    case 'ports':
      return { drop: ['spec', field], note: 'the ports are skipped' };
    default:
      return { drop: ['spec', field], note: IGNORED };
  }
}

/** Units of one `spec.ports[i]`: a bad node port costs the node port only. */
function servicePortUnit(path: ReadonlyArray<PropertyKey>): Unit {
  if (path[0] === 'nodePort') return { drop: ['nodePort'], note: 'this port gets no node port' };
  if (path[0] === 'appProtocol') return { drop: ['appProtocol'], note: IGNORED };
  return { note: 'this port is skipped' };
}

/** Units of one `status.loadBalancer.ingress[i]`: without a readable ip and ipMode it is not captured (kube-proxy's IsVIPMode). */
function ingressUnit(path: ReadonlyArray<PropertyKey>): Unit {
  if (path[0] === 'hostname' || path[0] === 'ports') return { drop: [path[0]], note: IGNORED };
  return { note: 'this ingress point is skipped' };
}

/** Units of an EndpointSlice (ports and endpoints are read one by one). */
function sliceUnit(path: ReadonlyArray<PropertyKey>): Unit {
  const top = path[0];
  if (top === 'metadata') return metadataUnit(path, SLICE_SKIPPED);
  if (top === undefined || top === 'apiVersion' || top === 'kind' || top === 'addressType') return { note: SLICE_SKIPPED };
  if (top === 'ports' || top === 'endpoints') return { drop: [top], note: `the ${top} are skipped` };
  return { drop: [top], note: IGNORED };
}

/** Units of one slice `ports[i]`. */
function slicePortUnit(path: ReadonlyArray<PropertyKey>): Unit {
  if (path[0] === 'appProtocol') return { drop: ['appProtocol'], note: IGNORED };
  return { note: 'this port is skipped' };
}

/**
 * Units of one `endpoints[i]`. Unreadable conditions cost the endpoint (a
 * default could send new flows to a pod that is not ready); unreadable
 * hints cost the hints (an endpoint without hints makes kube-proxy fall
 * back to every endpoint, pkg/proxy/topology.go); a nodeName that is not a
 * string makes the endpoint local to no node.
 */
function endpointUnit(path: ReadonlyArray<PropertyKey>): Unit {
  const field = path[0];
  if (field === 'hints') return { drop: ['hints'], note: "this endpoint's hints are ignored" };
  if (field === 'nodeName' || field === 'zone' || field === 'targetRef') return { drop: [field], note: IGNORED };
  if (field === undefined || field === 'addresses' || field === 'conditions') return { note: 'this endpoint is skipped' };
  return { drop: [field], note: IGNORED };
}

const isObjectLike = (v: unknown): v is Record<PropertyKey, unknown> => typeof v === 'object' && v !== null;

/**
 * Read one part with `schema`, dropping the unit of each problem.
 *
 * @param at the part's path in its object, for issue fields (`['spec', 'ports', 2]`)
 * @param fast ask the schema's compiled predicate first (NormalizeOptions.fastPath)
 * @param issues receives one issue per problem, its message ending with what went
 * @returns the parsed part (what is left of it), or undefined when a
 *   problem's unit is the whole part
 */
function readPart<S extends z.ZodType>(
  schema: S,
  value: unknown,
  at: ReadonlyArray<PropertyKey>,
  unitOf: UnitOf,
  object: string,
  issues: InputIssue[],
  fast: boolean,
): z.output<S> | undefined {
  // A part the schema's compiled predicate accepts has no issue: read it as
  // it is (fields the schema does not name are left on it, and unread).
  if (fast && acceptsOf.get(schema)!(value)) return value as z.output<S>;
  const first = schema.safeParse(value, { reportInput: true });
  if (first.success) return first.data;
  const drops: PropertyKey[][] = [];
  let whole = false;
  for (const iss of first.error.issues) {
    const input = (iss as { input?: unknown }).input;
    if (iss.code === 'unrecognized_keys') {
      for (const key of iss.keys) {
        const got = isObjectLike(input) ? input[key] : undefined;
        issues.push({ object, field: formatFieldPath([...at, ...iss.path, key]), message: `unknown field (got ${showValue(got)}); ${IGNORED}` });
        drops.push([...iss.path, key]);
      }
      continue;
    }
    const unit = unitOf(iss.path);
    const got = input === undefined || iss.message === 'required' ? '' : ` (got ${showValue(input)})`;
    issues.push({ object, field: formatFieldPath([...at, ...iss.path]), message: `${iss.message}${got}; ${unit.note}` });
    if (unit.drop) drops.push(unit.drop);
    else whole = true;
  }
  if (whole) return undefined;
  const second = schema.safeParse(withoutFields(value, drops), { reportInput: true });
  if (second.success) return second.data;
  // Not expected: every unit removes what its problem was about. Should a
  // schema change break that, the part goes rather than half-read.
  const note = unitOf([]).note;
  for (const iss of second.error.issues) issues.push({ object, field: formatFieldPath([...at, ...iss.path]), message: `${iss.message}; ${note}` });
  return undefined;
}

/**
 * A copy of `value` without the fields at `paths` (object keys; a path may
 * go through list indices). Only the containers along the paths are copied;
 * the input is never changed.
 */
function withoutFields(value: unknown, paths: ReadonlyArray<ReadonlyArray<PropertyKey>>): unknown {
  if (!isObjectLike(value)) return value;
  const copies = new Map<object, Record<PropertyKey, unknown>>();
  const copyOf = (o: Record<PropertyKey, unknown>): Record<PropertyKey, unknown> => {
    let c = copies.get(o);
    if (!c) copies.set(o, (c = (Array.isArray(o) ? [...o] : { ...o }) as Record<PropertyKey, unknown>));
    return c;
  };
  const root = copyOf(value);
  const within = (inner: ReadonlyArray<PropertyKey>, outer: ReadonlyArray<PropertyKey>) => outer.length < inner.length && outer.every((k, i) => k === inner[i]);
  for (const path of paths) {
    // A field inside one that goes anyway is not visited (the copy would bring its parent back).
    if (!path.length || paths.some((other) => within(path, other))) continue;
    let orig = value;
    let copy = root;
    let k = 0;
    for (; k < path.length - 1; k++) {
      const child = orig[path[k]];
      if (!isObjectLike(child)) break;
      copy = copy[path[k]] = copyOf(child);
      orig = child;
    }
    if (k === path.length - 1) delete copy[path[k]];
  }
  return root;
}

// ---------------------------------------------------------------------------
// Services.

/** One valid entry of spec.clusterIPs (i ≥ 0) or spec.clusterIP (i = -1). */
interface ClusterIPEntry {
  ip: string;
  i: number;
}
const clusterIPField = (c: ClusterIPEntry): string => (c.i < 0 ? 'spec.clusterIP' : `spec.clusterIPs[${c.i}]`);

/**
 * Normalize one v1 Service.
 *
 * Besides the table in the module comment:
 * - ClusterIPs: `spec.clusterIPs`, as kube-proxy reads them
 *   (GetClusterIPByFamily), else `spec.clusterIP`; at most one per IP
 *   family (later ones are skipped). `"None"` in either makes the service
 *   headless (no ClusterIP); headless NodePort and LoadBalancer services
 *   are reported and stay headless (kube-proxy skips them).
 * - `spec.loadBalancerSourceRanges`: {@link normalizeSourceRange} each;
 *   a bad entry is skipped, the others apply. When every entry is bad, the
 *   list is empty and every source is accepted, as kube-proxy does (it
 *   skips invalid CIDRs and filters only on what is left); reported. The
 *   annotation {@link SOURCE_RANGES_ANNOTATION} is not read: kube-proxy
 *   reads only the field (pkg/proxy/serviceport.go); a LoadBalancer service
 *   that has only the annotation is reported.
 * - `spec.healthCheckNodePort`: kept for type LoadBalancer with
 *   externalTrafficPolicy Local; elsewhere reported and ignored (the API
 *   allows it only there: core/v1 validation; kube-proxy reads it only
 *   there: NeedsHealthCheck).
 * - `spec.allocateLoadBalancerNodePorts`: kept for type LoadBalancer;
 *   elsewhere reported and ignored (core/v1 validation).
 * - `spec.trafficDistribution`: any string, as written.
 * - `status.loadBalancer.ingress[]`: `ipMode: Proxy` addresses go to
 *   `proxyModeIPs`, the others (VIP, or no mode) to `loadBalancerIPs`.
 *   `spec.loadBalancerIP` counts (option `status-or-spec`) only when the
 *   status has no ingress address at all.
 *
 * @param obj the object as parsed from YAML/JSON (or from an informer);
 *   `kind` and `apiVersion` may be absent (list items omit them)
 * @param where position for the issue label when the object has no name
 * @returns see {@link ObjectResult}
 */
export function normalizeService(obj: unknown, opts?: NormalizeOptions, where?: string): ObjectResult<ServiceModel> {
  const object = objectLabel('Service', obj, where);
  const s = schemas(opts);
  const issues: InputIssue[] = [];
  const issue = (field: string, message: string) => issues.push({ object, field, message });
  const fast = opts?.fastPath !== false;
  const data = readPart(s.service, obj, [], serviceUnit, object, issues, fast);
  if (!data) return { issues };
  const { metadata, spec, status } = data;
  const type: ServiceType = spec.type ?? 'ClusterIP';

  // ClusterIPs.
  const clusterIP = spec.clusterIP && spec.clusterIP !== 'None' ? serviceAddress(spec.clusterIP) : (spec.clusterIP ?? '');
  const rawIPs = spec.clusterIPs ?? [];
  const listed: ClusterIPEntry[] = [];
  rawIPs.forEach((ip, i) => {
    if (ip === 'None') listed.push({ ip, i });
    else if (isAddress(ip)) listed.push({ ip: serviceAddress(ip), i });
    else issue(`spec.clusterIPs[${i}]`, `must be an IPv4 or IPv6 address or "None" (got ${showValue(ip)}); this address is skipped`);
  });
  const primaryListed = listed.length > 0 && listed[0].i === 0;
  if (clusterIP && primaryListed && listed[0].ip !== clusterIP) {
    issue('spec.clusterIPs[0]', `must equal spec.clusterIP ${showValue(clusterIP)} (got ${showValue(listed[0].ip)}); spec.clusterIPs is used, as kube-proxy does`);
  }
  const candidates = primaryListed || !clusterIP ? listed : [{ ip: clusterIP, i: -1 }, ...listed];
  const headless = candidates.length > 0 && candidates[0].ip === 'None';
  const clusterIPs: string[] = [];
  if (headless) {
    for (const c of candidates.slice(1)) issue(clusterIPField(c), `"None" (headless) must be the only entry (got ${showValue(c.ip)}); the service is headless, this address is ignored`);
    if (type === 'NodePort' || type === 'LoadBalancer') {
      issue('spec.clusterIP', `"None" (headless) is not allowed for type ${type}; the service stays headless and gets no frontend (kube-proxy skips it)`);
    }
  } else {
    let v4 = false;
    let v6 = false;
    for (const c of candidates) {
      if (c.ip === 'None') {
        issue(clusterIPField(c), `"None" must be the only entry (got ${showValue(rawIPs)}); this entry is skipped`);
        continue;
      }
      const four = isIPv4(c.ip);
      if (four ? v4 : v6) {
        issue(clusterIPField(c), `at most one address per IP family (got ${showValue(rawIPs)}); this address is skipped`);
        continue;
      }
      if (four) v4 = true;
      else v6 = true;
      clusterIPs.push(c.ip);
    }
  }

  // Ports: each one is read on its own.
  const rawPorts = spec.ports ?? [];
  const ports: ServicePort[] = [];
  const byName = new Map<string, number>();
  const byPort = new Map<string, number>();
  const byNodePort = new Map<string, number>();
  for (let i = 0; i < rawPorts.length; i++) {
    const p = readPart(s.servicePort, rawPorts[i], ['spec', 'ports', i], servicePortUnit, object, issues, fast);
    if (!p) continue;
    const name = p.name ?? '';
    const proto: Protocol = p.protocol ?? 'TCP';
    const prevName = byName.get(name);
    if (prevName !== undefined) {
      issue(`spec.ports[${i}].name`, `duplicate port name ${showValue(name)} (also spec.ports[${prevName}].name); this port is skipped`);
      continue;
    }
    const portKey = `${p.port}/${proto}`;
    const prevPort = byPort.get(portKey);
    if (prevPort !== undefined) {
      issue(`spec.ports[${i}].port`, `duplicate port ${portKey} (also spec.ports[${prevPort}]); this port is skipped`);
      continue;
    }
    byName.set(name, i);
    byPort.set(portKey, i);
    let nodePort = p.nodePort ? p.nodePort : undefined;
    if (nodePort !== undefined) {
      const nodePortKey = `${nodePort}/${proto}`;
      const prev = byNodePort.get(nodePortKey);
      if (type !== 'NodePort' && type !== 'LoadBalancer') {
        issue(`spec.ports[${i}].nodePort`, `only allowed for types NodePort and LoadBalancer, not ${type} (got ${nodePort}); this port gets no node port`);
        nodePort = undefined;
      } else if (prev !== undefined) {
        issue(`spec.ports[${i}].nodePort`, `duplicate node port ${nodePortKey} (also spec.ports[${prev}]); this port gets no node port`);
        nodePort = undefined;
      } else byNodePort.set(nodePortKey, i);
    }
    const sp: ServicePort = { name, protocol: proto, port: p.port, targetPort: p.targetPort ?? p.port };
    if (nodePort !== undefined) sp.nodePort = nodePort;
    ports.push(sp);
  }

  const externalIPs: string[] = [];
  (spec.externalIPs ?? []).forEach((ip, i) => {
    if (isAddress(ip)) externalIPs.push(serviceAddress(ip));
    else issue(`spec.externalIPs[${i}]`, `not an IPv4 or IPv6 address (got ${showValue(ip)}); this address is skipped`);
  });

  const rawRanges = spec.loadBalancerSourceRanges ?? [];
  const loadBalancerSourceRanges: string[] = [];
  rawRanges.forEach((r, i) => {
    const cidr = typeof r === 'string' ? normalizeSourceRange(r) : undefined;
    if (cidr !== undefined) loadBalancerSourceRanges.push(cidr);
    else issue(`spec.loadBalancerSourceRanges[${i}]`, `not a CIDR (ADDRESS/PREFIX) (got ${showValue(r)}); this range is skipped`);
  });
  if (rawRanges.length && !loadBalancerSourceRanges.length) {
    issue('spec.loadBalancerSourceRanges', 'no usable range left: every source address is accepted, as kube-proxy does with no range');
  }
  const annotations = metadata.annotations ?? {};
  const annotated = annotations[SOURCE_RANGES_ANNOTATION];
  if (type === 'LoadBalancer' && !rawRanges.length && annotated !== undefined && annotated.trim()) {
    issue(
      formatFieldPath(['metadata', 'annotations', SOURCE_RANGES_ANNOTATION]),
      `not applied: kube-proxy reads only spec.loadBalancerSourceRanges (this annotation is for cloud load balancers); every source address is accepted (got ${showValue(annotated)})`,
    );
  }

  // Ingress points, each on its own. Proxy-mode ones (KEP-1860) are reached
  // through an external proxy, not on the VIP itself: kube-proxy does not
  // capture them either (IsVIPMode).
  const ingressIPs: string[] = [];
  const proxyModeIPs: string[] = [];
  const rawIngress = status?.loadBalancer?.ingress ?? [];
  for (let i = 0; i < rawIngress.length; i++) {
    const g = readPart(s.ingressPoint, rawIngress[i], ['status', 'loadBalancer', 'ingress', i], ingressUnit, object, issues, fast);
    if (!g?.ip) continue;
    if (g.ipMode === 'Proxy') proxyModeIPs.push(serviceAddress(g.ip));
    else ingressIPs.push(serviceAddress(g.ip));
  }
  const fromSpec = (opts?.loadBalancerIPs ?? 'status-or-spec') === 'status-or-spec' && spec.loadBalancerIP ? [serviceAddress(spec.loadBalancerIP)] : [];
  const loadBalancerIPs = ingressIPs.length || proxyModeIPs.length ? ingressIPs : fromSpec;

  // Last, so that every other problem is reported too.
  if (!ports.length && !headless && type !== 'ExternalName') {
    issue(
      'spec.ports',
      rawPorts.length
        ? `no usable port left: a service of type ${type} needs at least one port; ${SERVICE_SKIPPED}`
        : `required: a service of type ${type} needs at least one port; ${SERVICE_SKIPPED}`,
    );
    return { issues };
  }

  const externalTrafficPolicy = spec.externalTrafficPolicy ?? 'Cluster';
  const sessionAffinity = spec.sessionAffinity ?? 'None';
  const model: ServiceModel = {
    namespace: metadata.namespace ?? 'default',
    name: metadata.name,
    type,
    clusterIPs,
    headless,
    externalIPs,
    loadBalancerIPs,
    ports,
    externalTrafficPolicy,
    internalTrafficPolicy: spec.internalTrafficPolicy ?? 'Cluster',
    sessionAffinity,
    loadBalancerSourceRanges,
    // Copies: a part read as it is (readPart's fast path) is the input's own object.
    labels: { ...metadata.labels },
    annotations: { ...annotations },
  };
  // Optional fields, always in this order (sources compare models as JSON).
  if (sessionAffinity === 'ClientIP') {
    model.sessionAffinityTimeoutSeconds = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  }
  if (spec.loadBalancerClass) model.loadBalancerClass = spec.loadBalancerClass;
  if (spec.trafficDistribution) model.trafficDistribution = spec.trafficDistribution;
  if (spec.healthCheckNodePort) {
    if (type === 'LoadBalancer' && externalTrafficPolicy === 'Local') model.healthCheckNodePort = spec.healthCheckNodePort;
    else {
      issue(
        'spec.healthCheckNodePort',
        `may only be set when type is LoadBalancer and externalTrafficPolicy is Local, not ${type} with ${externalTrafficPolicy} (got ${spec.healthCheckNodePort}); ${IGNORED}`,
      );
    }
  }
  if (spec.allocateLoadBalancerNodePorts !== undefined && spec.allocateLoadBalancerNodePorts !== null) {
    if (type === 'LoadBalancer') model.allocateLoadBalancerNodePorts = spec.allocateLoadBalancerNodePorts;
    else issue('spec.allocateLoadBalancerNodePorts', `may only be used when type is LoadBalancer, not ${type}; ${IGNORED}`);
  }
  if (proxyModeIPs.length) model.proxyModeIPs = proxyModeIPs;
  const created = (metadata as { creationTimestamp?: unknown }).creationTimestamp;
  if (typeof created === 'string' && !Number.isNaN(Date.parse(created))) model.createdAt = created;
  return { value: model, issues };
}

// ---------------------------------------------------------------------------
// EndpointSlices.

type SliceData = z.output<Schemas['endpointSlice']>;
type SlicePortData = z.output<Schemas['endpointPort']>;
type EndpointData = z.output<Schemas['endpoint']>;

const SERVICE_NAME_FIELD = formatFieldPath(['metadata', 'labels', SERVICE_NAME_LABEL]);
const NO_PATH: PropertyKey[] = [];

/**
 * Why kube-proxy never sees this object, or undefined: its informers list
 * `!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless`
 * (cmd/kube-proxy/app/server.go). Read from the raw object, before any
 * validation: what kube-proxy does not list cannot be a problem.
 */
function notForKubeProxy(obj: unknown): string | undefined {
  const labels = (obj as { metadata?: { labels?: Record<string, unknown> } } | null | undefined)?.metadata?.labels;
  if (typeof labels !== 'object' || labels === null) return undefined;
  if (labels[SERVICE_PROXY_NAME_LABEL] !== undefined) return `label ${SERVICE_PROXY_NAME_LABEL}: another proxy serves it, kube-proxy does not read it`;
  if (labels[HEADLESS_LABEL] !== undefined) return `label ${HEADLESS_LABEL}: endpoints of a headless Service, kube-proxy does not read it`;
  return undefined;
}

/**
 * Normalize one discovery.k8s.io/v1 EndpointSlice.
 *
 * Endpoints as kube-proxy reads them (pkg/proxy/endpointslicecache.go):
 * conditions ready nil → true, serving nil → true, terminating nil →
 * false; hints absent unless the endpoint has `hints` (then `forZones` and
 * `forNodes` names, empty lists for absent ones). Addresses must match
 * `addressType`: IPv4 and IPv6 as ParseIPSloppy reads them, kept in Go's
 * text (`010.0.0.1` → `10.0.0.1`), FQDN any non-empty name; a bad address
 * is skipped, an endpoint with no address left is skipped (kube-proxy
 * ignores one without addresses). A port without a number is skipped, as
 * kube-proxy does. A slice labelled for another proxy or a headless
 * Service comes back as `ignored`.
 *
 * @param obj the object as parsed (kind/apiVersion may be absent)
 * @param where position for the issue label when the object has no name
 * @returns see {@link ObjectResult}
 */
export function normalizeEndpointSlice(obj: unknown, opts?: NormalizeOptions, where?: string): ObjectResult<EndpointSliceModel> {
  const notRead = notForKubeProxy(obj);
  if (notRead !== undefined) return { issues: [], ignored: notRead };
  const object = objectLabel('EndpointSlice', obj, where);
  const s = schemas(opts);
  // No closures in this function: tsx, which runs xlb, names each closure
  // as it is made (a defineProperty each, 10,000 per list).
  const fast = opts?.fastPath !== false;
  const issues: InputIssue[] = [];
  const data = readPart(s.endpointSlice, obj, NO_PATH, sliceUnit, object, issues, fast);
  if (!data) return { issues };
  const { metadata, addressType } = data;

  const serviceName = metadata.labels?.[SERVICE_NAME_LABEL];
  if (!serviceName) issues.push(sliceIssue(object, SERVICE_NAME_FIELD, `required: names the Service this slice belongs to; ${SLICE_SKIPPED}`));
  // The API server's limits (discovery/v1 validation): a slice beyond them
  // could not exist in a cluster, and would cost the agent without bound.
  if ((data.endpoints?.length ?? 0) > MAX_SLICE_ENDPOINTS) {
    return { issues: [...issues, sliceIssue(object, 'endpoints', `${data.endpoints!.length} endpoints, more than the ${MAX_SLICE_ENDPOINTS} an EndpointSlice may hold; ${SLICE_SKIPPED}`)] };
  }
  if ((data.ports?.length ?? 0) > MAX_SLICE_PORTS) {
    return { issues: [...issues, sliceIssue(object, 'ports', `${data.ports!.length} ports, more than the ${MAX_SLICE_PORTS} an EndpointSlice may hold; ${SLICE_SKIPPED}`)] };
  }

  const ports: EndpointPortModel[] = [];
  const portAt: number[] = [];
  const slicePorts = data.ports ?? [];
  for (let i = 0; i < slicePorts.length; i++) {
    const raw = slicePorts[i];
    const p = readPart(s.endpointPort, raw, ['ports', i], slicePortUnit, object, issues, fast);
    if (!p) continue;
    const name = p.name ?? '';
    // Duplicates by a scan: a slice has a port or two (no Map per slice).
    let prev = -1;
    for (let k = 0; k < ports.length && prev < 0; k++) if (ports[k].name === name) prev = portAt[k];
    if (prev >= 0) {
      issues.push(sliceIssue(object, `ports[${i}].name`, `duplicate port name ${showValue(name)} (also ports[${prev}].name); this port is skipped`));
      continue;
    }
    ports.push({ name, protocol: p.protocol ?? 'TCP', port: p.port });
    portAt.push(i);
  }

  const endpoints: EndpointModel[] = [];
  const sliceEndpoints = data.endpoints ?? [];
  for (let i = 0; i < sliceEndpoints.length; i++) {
    const raw = sliceEndpoints[i];
    const e = readPart(s.endpoint, raw, ['endpoints', i], endpointUnit, object, issues, fast);
    if (!e) continue;
    const addresses = readAddresses(e.addresses, addressType, object, i, issues);
    if (!addresses) continue;
    const c = e.conditions;
    const ready = c?.ready ?? true;
    const serving = c?.serving ?? true;
    const terminating = c?.terminating ?? false;
    const nodeName = e.nodeName || undefined;
    const zone = e.zone || undefined;
    const targetName = e.targetRef?.name || undefined;
    let m: EndpointModel;
    if (nodeName && targetName) {
      // The common endpoints, each in one literal: fields added to an
      // object after its literal go to a separate property array (a second
      // object per endpoint for the garbage collector to copy).
      m = zone
        ? { addresses, ready, serving, terminating, nodeName, zone, targetName }
        : { addresses, ready, serving, terminating, nodeName, targetName };
    } else {
      m = { addresses, ready, serving, terminating };
      if (nodeName) m.nodeName = nodeName;
      if (zone) m.zone = zone;
      if (targetName) m.targetName = targetName;
    }
    const h = e.hints;
    if (h) m.hints = { forZones: hintNames(h.forZones), forNodes: hintNames(h.forNodes) } satisfies EndpointHints;
    endpoints.push(m);
  }
  if (!serviceName) return { issues };

  return {
    value: {
      namespace: metadata.namespace ?? 'default',
      name: metadata.name,
      serviceName,
      addressType,
      ports,
      endpoints,
    },
    issues,
  };
}

/** An issue of an EndpointSlice. */
/** Endpoints and ports an EndpointSlice may hold (k8s.io/api discovery/v1: maxEndpoints, maxPorts). */
export const MAX_SLICE_ENDPOINTS = 1000;
export const MAX_SLICE_PORTS = 100;

function sliceIssue(object: string, field: string, message: string): InputIssue {
  return { object, field, message };
}

/** One endpoint address as kube-proxy reads it for the slice's addressType, or undefined. */
function sliceAddress(addressType: 'IPv4' | 'IPv6' | 'FQDN', a: unknown): string | undefined {
  if (typeof a !== 'string') return undefined;
  if (addressType === 'IPv4') {
    if (isIPv4(a)) return a;
    const o = ipv4Octets(a);
    return o ? o.join('.') : undefined;
  }
  if (addressType === 'IPv6') {
    // The API takes no IPv4-mapped address as IPv6 (IsValidIPv6Address).
    const b = ipv6Bytes(a);
    return b && !isV4Mapped(b) ? formatIPv6(b) : undefined;
  }
  return a.length > 0 && a.length <= 253 ? a : undefined;
}

/**
 * The usable addresses of `endpoints[i]`: the same array when every one is
 * as kube-proxy prints it, else a copy without the bad ones (each
 * reported). Undefined, reported, when none is left.
 */
function readAddresses(
  raw: unknown[],
  addressType: 'IPv4' | 'IPv6' | 'FQDN',
  object: string,
  i: number,
  issues: InputIssue[],
): string[] | undefined {
  let out = raw as string[];
  for (let j = 0; j < raw.length; j++) {
    const a = raw[j];
    const read = sliceAddress(addressType, a);
    if (read === a && out === raw) continue;
    if (out === raw) out = (raw as string[]).slice(0, j);
    if (read !== undefined) out.push(read);
    else issues.push(sliceIssue(object, `endpoints[${i}].addresses[${j}]`, `not an ${addressType} address (got ${showValue(a)}); this address is skipped`));
  }
  if (out.length) return out;
  issues.push(
    sliceIssue(
      object,
      `endpoints[${i}].addresses`,
      raw.length ? 'no usable address left; this endpoint is skipped' : 'required: at least one address; this endpoint is skipped (kube-proxy ignores it too)',
    ),
  );
  return undefined;
}

/** The empty list of hints, shared (frozen) by every endpoint without hints of a kind. */
const NO_HINTS = Object.freeze([]) as unknown as string[];

/** `hints.forZones[].name` or `hints.forNodes[].name`; [] when absent or empty. */
function hintNames(list: ReadonlyArray<{ name: string }> | null | undefined): string[] {
  if (!list || !list.length) return NO_HINTS;
  const out: string[] = [];
  for (let k = 0; k < list.length; k++) out.push(list[k].name);
  return out;
}

// ---------------------------------------------------------------------------
// The fast path for EndpointSlices: what the schemas' compiled predicates
// say of a whole slice.

/**
 * Whether every part of `obj` (the slice, each port, each endpoint) passes
 * the EndpointSlice schemas (unknown fields ignored) without an issue, as
 * the predicates compiled from them say (accel/accepts.ts). False may
 * still be a valid slice: the schema decides.
 */
export function plainEndpointSlice(obj: unknown): boolean {
  const s = schemas({ unknownFields: 'ignore' });
  if (!acceptsOf.get(s.endpointSlice)!(obj)) return false;
  const o = obj as { ports?: unknown[] | null; endpoints?: unknown[] | null };
  for (const p of o.ports ?? []) if (!acceptsOf.get(s.endpointPort)!(p)) return false;
  for (const e of o.endpoints ?? []) if (!acceptsOf.get(s.endpoint)!(e)) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Whole inputs.

/**
 * Normalize a list of parsed objects (documents of a manifests file, items of
 * a `List`, `ServiceList` or `EndpointSliceList`) into one snapshot.
 *
 * `null`/`undefined` entries (empty YAML documents) are skipped. Objects of
 * other kinds, and EndpointSlices kube-proxy does not read, are listed in
 * `ignored`. An object kept with parts dropped is in the state and its
 * issues in `issues`. A second object with the same kind and
 * `namespace/name` is an issue and skipped: the first one wins.
 *
 * @param where names entry i for issues about objects without a name
 *   (default `item i`); the file source passes `FILE:LINE`
 */
export function normalizeObjects(objects: unknown[], opts?: NormalizeOptions, where?: (index: number) => string): NormalizeResult {
  const state = emptyClusterState();
  const issues: InputIssue[] = [];
  const ignored: string[] = [];

  const keep = <T extends { namespace: string; name: string }>(kind: string, r: ObjectResult<T>, into: Map<string, T>, at: string): void => {
    if (!r.value) return void issues.push(...r.issues);
    const key = `${r.value.namespace}/${r.value.name}`;
    if (into.has(key)) {
      issues.push({ object: `${kind} ${key}`, field: 'metadata.name', message: `duplicate ${kind} ${key} at ${at}; the first one is used` });
      return;
    }
    issues.push(...r.issues);
    into.set(key, r.value);
  };

  const visit = (raw: unknown, at: string): void => {
    if (raw === null || raw === undefined) return;
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      issues.push({ object: at, field: '', message: `not a Kubernetes object (got ${showValue(raw)})` });
      return;
    }
    const kind = (raw as { kind?: unknown }).kind;
    if (typeof kind !== 'string' || !kind) {
      issues.push({ object: `object at ${at}`, field: 'kind', message: kind === undefined ? 'required' : `must be a string (got ${showValue(kind)})` });
      return;
    }
    // `List` (kubectl's) and typed lists such as `ServiceList` (the API's).
    const isList = kind === 'List' || (kind.endsWith('List') && 'items' in raw);
    if (isList) {
      const list = (raw as { items?: unknown }).items;
      if (list === null || list === undefined) return;
      if (!Array.isArray(list)) {
        issues.push({ object: `${kind} at ${at}`, field: 'items', message: `must be a list (got ${showValue(list)})` });
        return;
      }
      list.forEach((item, i) => visit(item, `${at} items[${i}]`));
      return;
    }
    const { namespace, name } = rawMeta(raw);
    if (kind === 'Service') return keep('Service', normalizeService(raw, opts, at), state.services, at);
    if (kind === 'EndpointSlice') {
      const r = normalizeEndpointSlice(raw, opts, at);
      if (r.ignored !== undefined) return void ignored.push(`EndpointSlice ${namespace}/${name ?? `<no name at ${at}>`} (${r.ignored})`);
      return keep('EndpointSlice', r, state.endpointSlices, at);
    }
    ignored.push(`${kind} ${namespace}/${name ?? `<no name at ${at}>`}`);
  };

  objects.forEach((o, i) => visit(o, where ? where(i) : `item ${i}`));
  return { state, issues, ignored };
}

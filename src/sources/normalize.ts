/**
 * Normalization of Kubernetes objects into xlb's model (src/model/types.ts).
 *
 * Input is what `kubectl get -o yaml` prints (or what an informer hands over):
 * v1 `Service`, discovery.k8s.io/v1 `EndpointSlice`, and `List`s of them.
 * Output is a {@link ClusterState} with the API's defaults applied (protocol
 * TCP, targetPort = port, endpoint conditions ready nil → true, serving nil →
 * ready, terminating nil → false, type ClusterIP, traffic policies Cluster,
 * sessionAffinity None), plus one {@link InputIssue} per problem found.
 *
 * Validation covers what matters to a load balancer (names, ports, protocols,
 * addresses, node ports, the service-name label) and unknown fields in the
 * parts read here, so that a typo such as `spec.potrs` is reported instead of
 * silently producing a service without ports. Fields that Kubernetes defines
 * but xlb does not use (ipFamilies, selector, managedFields, ...) are
 * accepted. An object with any issue is skipped whole; every other object
 * still applies. Field names and defaults follow the Kubernetes API reference
 * (core/v1 ServiceSpec, discovery/v1 EndpointSlice).
 *
 * Pure: no I/O. The per-object functions are shared by every source.
 */
import net from 'node:net';
import { z } from 'zod';
import type {
  ClusterState,
  EndpointModel,
  EndpointPortModel,
  EndpointSliceModel,
  InputIssue,
  Protocol,
  ServiceModel,
  ServicePort,
  ServiceType,
} from '../model/types.js';
import { emptyClusterState } from '../model/types.js';
import { isIPv4 } from '../util/ip.js';

/** Label that ties an EndpointSlice to its Service (discovery/v1). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** Default `sessionAffinityConfig.clientIP.timeoutSeconds` (core/v1: 3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;

/**
 * Options of the normalizers.
 *
 * - `unknownFields`: `'reject'` (default) reports every field Kubernetes does
 *   not define in the parts read here and skips the object; `'ignore'` drops
 *   them silently. A manifests file wants `'reject'` (typos); an informer
 *   talking to a newer API server than xlb knows may want `'ignore'`.
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
   * With `unknownFields: 'ignore'`, an EndpointSlice of the plain
   * well-formed shape is checked by a hand-written test of exactly what the
   * schema checks ({@link plainEndpointSlice}) instead of the schema
   * (default true); anything else, and every object with an issue, goes
   * through the schema, which words the issues. False: always the schema
   * (tests compare the two).
   */
  fastPath?: boolean;
}

/** Result of normalizing one object: the model, or issues and no model. */
export interface ObjectResult<T> {
  /** Set when the object is valid; absent when it has issues. */
  value?: T;
  /** Every problem found; non-empty exactly when `value` is absent. */
  issues: InputIssue[];
}

/** Result of {@link normalizeObjects}. */
export interface NormalizeResult {
  state: ClusterState;
  /** Problems with input objects; each named object was skipped. */
  issues: InputIssue[];
  /**
   * Objects of kinds xlb does not read (Deployments, Pods, Endpoints, ...),
   * as `Kind namespace/name`: worth a debug-level log line, not an issue.
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
const ipAddress = check<string>((v) => typeof v === 'string' && (isIPv4(v) || net.isIPv6(v)), 'not an IPv4 or IPv6 address');
const cidr = check<string>((v) => typeof v === 'string' && isCidr(v), 'not a CIDR (ADDRESS/PREFIX)');
const oneOf = <T extends string>(values: readonly T[]) => check<T>((v) => values.includes(v as T), `must be one of ${values.join(', ')}`);
const list = <T extends z.ZodType>(item: T) => z.array(item, { error: need('must be a list') });
const stringMap = z.record(z.string(), str, { error: need('must be a map of strings') });

function isCidr(s: string): boolean {
  const [addr, len, extra] = s.split('/');
  if (extra !== undefined || len === undefined || !/^\d{1,3}$/.test(len)) return false;
  if (isIPv4(addr)) return Number(len) <= 32;
  return net.isIPv6(addr) && Number(len) <= 128;
}

// ---------------------------------------------------------------------------
// Object schemas. `strict` decides whether unknown fields are issues.

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
    labels: stringMap.nullish(),
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

  const service = obj({
    apiVersion: check<'v1'>((v) => v === 'v1', 'must be v1 for a Service').nullish(),
    kind: check<'Service'>((v) => v === 'Service', 'must be Service').nullish(),
    metadata,
    spec: obj({
      type: oneOf(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const).nullish(),
      clusterIP: check<string>((v) => v === 'None' || v === '' || (typeof v === 'string' && (isIPv4(v) || net.isIPv6(v))), 'must be an IPv4 or IPv6 address, "None" or ""').nullish(),
      clusterIPs: list(check<string>((v) => v === 'None' || (typeof v === 'string' && (isIPv4(v) || net.isIPv6(v))), 'must be an IPv4 or IPv6 address or "None"')).nullish(),
      externalIPs: list(ipAddress).nullish(),
      loadBalancerIP: check<string>((v) => v === '' || (typeof v === 'string' && (isIPv4(v) || net.isIPv6(v))), 'not an IPv4 or IPv6 address').nullish(),
      loadBalancerSourceRanges: list(cidr).nullish(),
      loadBalancerClass: str.nullish(),
      ports: list(servicePort).nullish(),
      externalTrafficPolicy: oneOf(['Cluster', 'Local'] as const).nullish(),
      internalTrafficPolicy: oneOf(['Cluster', 'Local'] as const).nullish(),
      sessionAffinity: oneOf(['None', 'ClientIP'] as const).nullish(),
      sessionAffinityConfig: obj({
        clientIP: obj({
          timeoutSeconds: check<number>((v) => isInt(v, 1, 86400), 'must be an integer 1..86400 (seconds)').nullish(),
        }).nullish(),
      }).nullish(),
      // Defined by Kubernetes, not used by xlb.
      selector: stringMap.nullish(),
      externalName: str.nullish(),
      ipFamilies: list(oneOf(['IPv4', 'IPv6'] as const)).nullish(),
      ipFamilyPolicy: oneOf(['SingleStack', 'PreferDualStack', 'RequireDualStack'] as const).nullish(),
      allocateLoadBalancerNodePorts: bool.nullish(),
      publishNotReadyAddresses: bool.nullish(),
      healthCheckNodePort: anything,
      trafficDistribution: anything,
    }),
    status: obj({
      loadBalancer: obj({
        ingress: list(
          obj({
            ip: ipAddress.nullish(),
            hostname: str.nullish(),
            ipMode: oneOf(['VIP', 'Proxy'] as const).nullish(),
            ports: anything,
          }),
        ).nullish(),
      }).nullish(),
      conditions: anything,
    }).nullish(),
  });

  const endpointPort = obj({
    name: portName.nullish(),
    protocol: protocol.nullish(),
    appProtocol: str.nullish(),
    // The API allows a nil port ("all ports"); xlb cannot map that to a backend.
    port: check<number>((v) => isInt(v, 1, 65535), 'must be an integer 1..65535 (xlb needs a port number)'),
  });

  const endpoint = obj({
    addresses: list(str),
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
    hostname: anything,
    hints: anything,
    deprecatedTopology: anything,
  });

  const endpointSlice = obj({
    apiVersion: check<'discovery.k8s.io/v1'>((v) => v === 'discovery.k8s.io/v1', 'must be discovery.k8s.io/v1 for an EndpointSlice').nullish(),
    kind: check<'EndpointSlice'>((v) => v === 'EndpointSlice', 'must be EndpointSlice').nullish(),
    metadata,
    addressType: oneOf(['IPv4', 'IPv6', 'FQDN'] as const),
    ports: list(endpointPort).nullish(),
    endpoints: list(endpoint).nullish(),
  });

  return { service, endpointSlice };
}

type Schemas = ReturnType<typeof buildSchemas>;
const schemaCache = new Map<boolean, Schemas>();
function schemas(opts: NormalizeOptions | undefined): Schemas {
  const strict = (opts?.unknownFields ?? 'reject') === 'reject';
  let s = schemaCache.get(strict);
  if (!s) schemaCache.set(strict, (s = buildSchemas(strict)));
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

function zodIssues(object: string, error: z.ZodError): InputIssue[] {
  const out: InputIssue[] = [];
  for (const iss of error.issues) {
    const input = (iss as { input?: unknown }).input;
    if (iss.code === 'unrecognized_keys') {
      for (const key of iss.keys) {
        const value = input && typeof input === 'object' ? (input as Record<string, unknown>)[key] : undefined;
        out.push({ object, field: formatFieldPath([...iss.path, key]), message: `unknown field (got ${showValue(value)})` });
      }
      continue;
    }
    const got = input === undefined || iss.message === 'required' ? '' : ` (got ${showValue(input)})`;
    out.push({ object, field: formatFieldPath(iss.path), message: `${iss.message}${got}` });
  }
  return out;
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
// Services.

/**
 * Normalize one v1 Service.
 *
 * @param obj the object as parsed from YAML/JSON (or from an informer);
 *   `kind` and `apiVersion` may be absent (list items omit them)
 * @param where position for the issue label when the object has no name
 * @returns the {@link ServiceModel}, or the issues that made it invalid
 */
export function normalizeService(obj: unknown, opts?: NormalizeOptions, where?: string): ObjectResult<ServiceModel> {
  const object = objectLabel('Service', obj, where);
  const parsed = schemas(opts).service.safeParse(obj, { reportInput: true });
  if (!parsed.success) return { issues: zodIssues(object, parsed.error) };
  const { metadata, spec, status } = parsed.data;
  const issues: InputIssue[] = [];
  const issue = (field: string, message: string) => issues.push({ object, field, message });

  const type: ServiceType = spec.type ?? 'ClusterIP';
  const clusterIP = spec.clusterIP ?? undefined;
  let clusterIPs = spec.clusterIPs ?? (clusterIP !== undefined && clusterIP !== '' ? [clusterIP] : []);
  if (clusterIP !== undefined && clusterIP !== '' && clusterIPs.length && clusterIPs[0] !== clusterIP) {
    issue('spec.clusterIPs[0]', `must equal spec.clusterIP ${showValue(clusterIP)} (got ${showValue(clusterIPs[0])})`);
  }
  const headless = clusterIP === 'None' || clusterIPs[0] === 'None';
  clusterIPs.forEach((ip, i) => {
    if (ip === 'None' && (i > 0 || clusterIPs.length > 1)) issue(`spec.clusterIPs[${i}]`, `"None" must be the only entry (got ${showValue(clusterIPs)})`);
  });
  if (headless) clusterIPs = [];
  if (clusterIPs.length > 2 || (clusterIPs.length === 2 && isIPv4(clusterIPs[0]) === isIPv4(clusterIPs[1]))) {
    issue('spec.clusterIPs', `at most one address per family (got ${showValue(clusterIPs)})`);
  }
  if (headless && (type === 'NodePort' || type === 'LoadBalancer')) {
    issue('spec.clusterIP', `"None" (headless) is not allowed for type ${type}`);
  }

  const rawPorts = spec.ports ?? [];
  if (!rawPorts.length && !headless && type !== 'ExternalName') {
    issue('spec.ports', `required: a service of type ${type} needs at least one port`);
  }
  const ports: ServicePort[] = [];
  const byName = new Map<string, number>();
  const byPort = new Map<string, number>();
  const byNodePort = new Map<string, number>();
  rawPorts.forEach((p, i) => {
    const name = p.name ?? '';
    const proto: Protocol = p.protocol ?? 'TCP';
    const prevName = byName.get(name);
    if (prevName !== undefined) issue(`spec.ports[${i}].name`, `duplicate port name ${showValue(name)} (also spec.ports[${prevName}].name)`);
    else byName.set(name, i);
    const prevPort = byPort.get(`${p.port}/${proto}`);
    if (prevPort !== undefined) issue(`spec.ports[${i}].port`, `duplicate port ${p.port}/${proto} (also spec.ports[${prevPort}])`);
    else byPort.set(`${p.port}/${proto}`, i);
    const nodePort = p.nodePort ? p.nodePort : undefined;
    if (nodePort !== undefined) {
      if (type !== 'NodePort' && type !== 'LoadBalancer') {
        issue(`spec.ports[${i}].nodePort`, `only allowed for types NodePort and LoadBalancer, not ${type} (got ${nodePort})`);
      }
      const prev = byNodePort.get(`${nodePort}/${proto}`);
      if (prev !== undefined) issue(`spec.ports[${i}].nodePort`, `duplicate node port ${nodePort}/${proto} (also spec.ports[${prev}])`);
      else byNodePort.set(`${nodePort}/${proto}`, i);
    }
    const sp: ServicePort = { name, protocol: proto, port: p.port, targetPort: p.targetPort ?? p.port };
    if (nodePort !== undefined) sp.nodePort = nodePort;
    ports.push(sp);
  });

  // Proxy-mode ingress points (KEP-1860) are reached through an external
  // proxy, not on the VIP itself: kube-proxy does not capture them either.
  const ingressIPs = (status?.loadBalancer?.ingress ?? []).filter((g) => g.ip && g.ipMode !== 'Proxy').map((g) => g.ip as string);
  const fromSpec = (opts?.loadBalancerIPs ?? 'status-or-spec') === 'status-or-spec' && spec.loadBalancerIP ? [spec.loadBalancerIP] : [];
  const loadBalancerIPs = ingressIPs.length ? ingressIPs : fromSpec;
  const sessionAffinity = spec.sessionAffinity ?? 'None';
  if (issues.length) return { issues };

  const model: ServiceModel = {
    namespace: metadata.namespace ?? 'default',
    name: metadata.name,
    type,
    clusterIPs,
    headless,
    externalIPs: spec.externalIPs ?? [],
    loadBalancerIPs,
    ports,
    externalTrafficPolicy: spec.externalTrafficPolicy ?? 'Cluster',
    internalTrafficPolicy: spec.internalTrafficPolicy ?? 'Cluster',
    sessionAffinity,
    loadBalancerSourceRanges: spec.loadBalancerSourceRanges ?? [],
    labels: metadata.labels ?? {},
    annotations: metadata.annotations ?? {},
  };
  if (sessionAffinity === 'ClientIP') {
    model.sessionAffinityTimeoutSeconds = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  }
  if (spec.loadBalancerClass) model.loadBalancerClass = spec.loadBalancerClass;
  return { value: model, issues: [] };
}

// ---------------------------------------------------------------------------
// EndpointSlices.

/**
 * Normalize one discovery.k8s.io/v1 EndpointSlice.
 *
 * Endpoint addresses must match `addressType` (IPv4, IPv6; FQDN slices take
 * any non-empty name). Conditions get the API's defaults: ready nil → true,
 * serving nil → ready, terminating nil → false.
 *
 * @param obj the object as parsed (kind/apiVersion may be absent)
 * @param where position for the issue label when the object has no name
 * @returns the {@link EndpointSliceModel}, or the issues that made it invalid
 */
export function normalizeEndpointSlice(obj: unknown, opts?: NormalizeOptions, where?: string): ObjectResult<EndpointSliceModel> {
  const object = objectLabel('EndpointSlice', obj, where);
  type Parsed = z.output<Schemas['endpointSlice']>;
  let data: Parsed;
  if (opts?.unknownFields === 'ignore' && opts.fastPath !== false && plainEndpointSlice(obj)) {
    // What the schema would return (it has no transforms; unknown keys,
    // which it would drop, are not read below).
    data = obj as Parsed;
  } else {
    const parsed = schemas(opts).endpointSlice.safeParse(obj, { reportInput: true });
    if (!parsed.success) return { issues: zodIssues(object, parsed.error) };
    data = parsed.data;
  }
  const { metadata, addressType } = data;
  // No closures per slice: tsx, which runs xlb, names each closure as it is
  // made (a defineProperty each, 10,000 per list).
  const issues: InputIssue[] = [];

  const serviceName = metadata.labels?.[SERVICE_NAME_LABEL];
  if (!serviceName) {
    issues.push(sliceIssue(object, formatFieldPath(['metadata', 'labels', SERVICE_NAME_LABEL]), 'required: names the Service this slice belongs to'));
  }

  const ports: EndpointPortModel[] = [];
  const slicePorts = data.ports ?? [];
  for (let i = 0; i < slicePorts.length; i++) {
    const p = slicePorts[i];
    const name = p.name ?? '';
    // Duplicates by a scan: a slice has a port or two (no Map per slice).
    let prev = -1;
    for (let k = 0; k < i && prev < 0; k++) if ((slicePorts[k].name ?? '') === name) prev = k;
    if (prev >= 0) issues.push(sliceIssue(object, `ports[${i}].name`, `duplicate port name ${showValue(name)} (also ports[${prev}].name)`));
    ports.push({ name, protocol: p.protocol ?? 'TCP', port: p.port });
  }

  const validAddress = addressType === 'IPv4' ? isIPv4 : addressType === 'IPv6' ? isIPv6Address : isFqdnAddress;
  const endpoints: EndpointModel[] = [];
  const sliceEndpoints = data.endpoints ?? [];
  for (let i = 0; i < sliceEndpoints.length; i++) {
    const e = sliceEndpoints[i];
    if (e.addresses.length < 1 || e.addresses.length > 100) {
      issues.push(sliceIssue(object, `endpoints[${i}].addresses`, `must hold 1..100 addresses (got ${e.addresses.length})`));
    }
    for (let j = 0; j < e.addresses.length; j++) {
      const a = e.addresses[j];
      if (!validAddress(a)) issues.push(sliceIssue(object, `endpoints[${i}].addresses[${j}]`, `not an ${addressType} address (got ${showValue(a)})`));
    }
    const ready = e.conditions?.ready ?? true;
    const serving = e.conditions?.serving ?? ready;
    const terminating = e.conditions?.terminating ?? false;
    const targetName = e.targetRef?.name;
    let m: EndpointModel;
    if (e.nodeName && targetName && !e.zone) {
      // The common endpoint, in one literal: fields added to an object
      // after its literal go to a separate property array (a second object
      // per endpoint for the garbage collector to copy).
      m = { addresses: e.addresses, ready, serving, terminating, nodeName: e.nodeName, targetName };
    } else {
      m = { addresses: e.addresses, ready, serving, terminating };
      if (e.nodeName) m.nodeName = e.nodeName;
      if (e.zone) m.zone = e.zone;
      if (targetName) m.targetName = targetName;
    }
    endpoints.push(m);
  }
  if (issues.length) return { issues };

  return {
    value: {
      namespace: metadata.namespace ?? 'default',
      name: metadata.name,
      serviceName: serviceName as string,
      addressType,
      ports,
      endpoints,
    },
    issues: [],
  };
}

/** An issue of an EndpointSlice. */
function sliceIssue(object: string, field: string, message: string): InputIssue {
  return { object, field, message };
}
const isIPv6Address = (s: string): boolean => net.isIPv6(s);
const isFqdnAddress = (s: string): boolean => s.length > 0 && s.length <= 253;

// ---------------------------------------------------------------------------
// The fast path for EndpointSlices: at 10,000 slices from an informer the
// schema took ~20 µs a slice, most of the time between a list's arrival and
// its translation. These tests accept exactly what the schema (non-strict)
// accepts in the shapes the API server sends; whatever they do not accept
// goes to the schema, so they may be narrower, never wider
// (test/unit/normalize.test.ts compares both on mutated slices).

const isPlain = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};
const isNil = (v: unknown): v is null | undefined => v === undefined || v === null;
const nilOrString = (v: unknown) => isNil(v) || typeof v === 'string';
const nilOrBool = (v: unknown) => isNil(v) || typeof v === 'boolean';

/** A map of strings with no `__proto__` key (the schema's record handles that one its own way). */
function stringMapOrNil(v: unknown): boolean {
  if (isNil(v)) return true;
  if (!isPlain(v)) return false;
  for (const k in v) if (k === '__proto__' || typeof v[k] !== 'string') return false;
  return true;
}

function plainMetadata(m: unknown): boolean {
  if (!isPlain(m)) return false;
  const { name, namespace } = m;
  if (typeof name !== 'string' || name.length > 253 || !DNS_SUBDOMAIN.test(name)) return false;
  if (!isNil(namespace) && (typeof namespace !== 'string' || namespace.length > 63 || !DNS_LABEL.test(namespace))) return false;
  return stringMapOrNil(m.labels) && stringMapOrNil(m.annotations);
}

/** Whether `obj` passes the EndpointSlice schema (unknown fields ignored), by hand: see above. */
export function plainEndpointSlice(obj: unknown): boolean {
  if (!isPlain(obj)) return false;
  if (!isNil(obj.apiVersion) && obj.apiVersion !== 'discovery.k8s.io/v1') return false;
  if (!isNil(obj.kind) && obj.kind !== 'EndpointSlice') return false;
  if (!plainMetadata(obj.metadata)) return false;
  if (obj.addressType !== 'IPv4' && obj.addressType !== 'IPv6' && obj.addressType !== 'FQDN') return false;
  const ports = obj.ports;
  if (!isNil(ports)) {
    if (!Array.isArray(ports)) return false;
    for (const p of ports) {
      if (!isPlain(p)) return false;
      const name = p.name;
      if (!isNil(name) && (typeof name !== 'string' || (name !== '' && (name.length > 63 || !DNS_LABEL.test(name))))) return false;
      if (!isNil(p.protocol) && p.protocol !== 'TCP' && p.protocol !== 'UDP' && p.protocol !== 'SCTP') return false;
      if (!nilOrString(p.appProtocol) || !isInt(p.port, 1, 65535)) return false;
    }
  }
  const endpoints = obj.endpoints;
  if (!isNil(endpoints)) {
    if (!Array.isArray(endpoints)) return false;
    for (const e of endpoints) {
      if (!isPlain(e) || !Array.isArray(e.addresses)) return false;
      for (const a of e.addresses) if (typeof a !== 'string') return false;
      const c = e.conditions;
      if (!isNil(c) && (!isPlain(c) || !nilOrBool(c.ready) || !nilOrBool(c.serving) || !nilOrBool(c.terminating))) return false;
      if (!nilOrString(e.nodeName) || !nilOrString(e.zone)) return false;
      const t = e.targetRef;
      if (!isNil(t) && (!isPlain(t) || !nilOrString(t.name))) return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Whole inputs.

/**
 * Normalize a list of parsed objects (documents of a manifests file, items of
 * a `List`, `ServiceList` or `EndpointSliceList`) into one snapshot.
 *
 * `null`/`undefined` entries (empty YAML documents) are skipped. Objects of
 * other kinds are listed in `ignored`. A second object with the same kind and
 * `namespace/name` is an issue and skipped: the first one wins.
 *
 * @param where names entry i for issues about objects without a name
 *   (default `item i`); the file source passes `FILE:LINE`
 */
export function normalizeObjects(objects: unknown[], opts?: NormalizeOptions, where?: (index: number) => string): NormalizeResult {
  const state = emptyClusterState();
  const issues: InputIssue[] = [];
  const ignored: string[] = [];

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
      const items = (raw as { items?: unknown }).items;
      if (items === null || items === undefined) return;
      if (!Array.isArray(items)) {
        issues.push({ object: `${kind} at ${at}`, field: 'items', message: `must be a list (got ${showValue(items)})` });
        return;
      }
      items.forEach((item, i) => visit(item, `${at} items[${i}]`));
      return;
    }
    if (kind === 'Service') {
      const r = normalizeService(raw, opts, at);
      if (!r.value) return void issues.push(...r.issues);
      const key = `${r.value.namespace}/${r.value.name}`;
      if (state.services.has(key)) {
        issues.push({ object: `Service ${key}`, field: 'metadata.name', message: `duplicate Service ${key} at ${at}; the first one is used` });
        return;
      }
      state.services.set(key, r.value);
      return;
    }
    if (kind === 'EndpointSlice') {
      const r = normalizeEndpointSlice(raw, opts, at);
      if (!r.value) return void issues.push(...r.issues);
      const key = `${r.value.namespace}/${r.value.name}`;
      if (state.endpointSlices.has(key)) {
        issues.push({ object: `EndpointSlice ${key}`, field: 'metadata.name', message: `duplicate EndpointSlice ${key} at ${at}; the first one is used` });
        return;
      }
      state.endpointSlices.set(key, r.value);
      return;
    }
    const { namespace, name } = rawMeta(raw);
    ignored.push(`${kind} ${namespace}/${name ?? `<no name at ${at}>`}`);
  };

  objects.forEach((o, i) => visit(o, where ? where(i) : `item ${i}`));
  return { state, issues, ignored };
}

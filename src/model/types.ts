/**
 * The normalized model that every source (Kubernetes API, manifests file)
 * converts into, and that the service controller reads. It mirrors the parts
 * of v1 Service and discovery.k8s.io/v1 EndpointSlice that a load balancer
 * needs, with defaults applied and nothing else.
 *
 * Addresses are dotted-quad IPv4 strings (IPv6 is recorded, not yet served);
 * ports are integers 1..65535.
 */

/** L4 protocol of a service port (Kubernetes spelling). */
export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/** Kubernetes Service type. */
export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

/** `namespace/name`, the key of services and slices in the model. */
export type ObjectKey = string;

/** One entry of a Service's `spec.ports`. */
export interface ServicePort {
  /** `spec.ports[].name`; '' when the service has a single unnamed port. */
  name: string;
  protocol: Protocol;
  /** Frontend port on the ClusterIP, VIPs and ExternalIPs. */
  port: number;
  /** `targetPort` as written: a number, or a container port name. */
  targetPort: number | string;
  /** Allocated node port (NodePort and LoadBalancer services), if any. */
  nodePort?: number;
}

/** A v1 Service, normalized. */
export interface ServiceModel {
  namespace: string;
  name: string;
  /** `metadata.creationTimestamp` (RFC 3339), when given: of two Services claiming one frontend, the older keeps it. */
  createdAt?: string;
  type: ServiceType;
  /** `spec.clusterIPs` (or `[spec.clusterIP]`); empty for headless. */
  clusterIPs: string[];
  /** True when `spec.clusterIP` is `None`. */
  headless: boolean;
  /** `spec.externalIPs`. */
  externalIPs: string[];
  /** LoadBalancer VIPs: `status.loadBalancer.ingress[].ip`, else `spec.loadBalancerIP`. */
  loadBalancerIPs: string[];
  ports: ServicePort[];
  externalTrafficPolicy: 'Cluster' | 'Local';
  internalTrafficPolicy: 'Cluster' | 'Local';
  sessionAffinity: 'None' | 'ClientIP';
  /** `sessionAffinityConfig.clientIP.timeoutSeconds`, seconds. */
  sessionAffinityTimeoutSeconds?: number;
  loadBalancerSourceRanges: string[];
  loadBalancerClass?: string;
  /**
   * `spec.trafficDistribution` as written (`PreferClose`, `PreferSameZone`,
   * `PreferSameNode`, or a value this version does not know). kube-proxy
   * does not read it: it asks the EndpointSlice controller for hints, and
   * the hints (EndpointModel.hints) are what the proxy follows.
   */
  trafficDistribution?: string;
  /**
   * `spec.healthCheckNodePort`: the port on which the node answers a load
   * balancer's health check for a LoadBalancer service with
   * externalTrafficPolicy Local (kube-proxy's pkg/proxy/healthcheck).
   */
  healthCheckNodePort?: number;
  /** `spec.allocateLoadBalancerNodePorts` (default true): false leaves LoadBalancer ports without node ports. */
  allocateLoadBalancerNodePorts?: boolean;
  /**
   * Ingress addresses of `status.loadBalancer.ingress` with `ipMode: Proxy`
   * (KEP-1860): the load balancer proxies to the nodes, so the node does not
   * capture them (kube-proxy neither). Recorded for views.
   */
  proxyModeIPs?: string[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** One endpoint of an EndpointSlice (`endpoints[]`). */
export interface EndpointModel {
  /** `addresses`; Kubernetes treats them as fungible, xlb uses the first. */
  addresses: string[];
  /** `conditions.ready`, with the API's default (nil means true). */
  ready: boolean;
  /** `conditions.serving`; nil reads as true (kube-proxy's endpointslicecache.go). */
  serving: boolean;
  /** `conditions.terminating`, defaulting to false. */
  terminating: boolean;
  /** `nodeName`: where the endpoint runs. */
  nodeName?: string;
  zone?: string;
  /** `targetRef.name`, usually the pod name. */
  targetName?: string;
  /**
   * `hints` (topology-aware routing): the zones and nodes whose proxies
   * should use this endpoint. Absent when the slice gives none; an empty
   * list means no hint of that kind.
   */
  hints?: EndpointHints;
}

/** An endpoint's `hints` (discovery/v1 EndpointHints). */
export interface EndpointHints {
  /** `forZones[].name`. */
  forZones: string[];
  /** `forNodes[].name` (PreferSameNode). */
  forNodes: string[];
}

/** One entry of an EndpointSlice's `ports[]`. */
export interface EndpointPortModel {
  /** Matches the service port of the same name ('' for unnamed). */
  name: string;
  protocol: Protocol;
  port: number;
}

/** A discovery.k8s.io/v1 EndpointSlice, normalized. */
export interface EndpointSliceModel {
  namespace: string;
  name: string;
  /** Label `kubernetes.io/service-name`. */
  serviceName: string;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  ports: EndpointPortModel[];
  endpoints: EndpointModel[];
}

/** Everything a source knows, as one snapshot. Keys are `namespace/name`. */
export interface ClusterState {
  services: Map<ObjectKey, ServiceModel>;
  endpointSlices: Map<ObjectKey, EndpointSliceModel>;
  /**
   * Optional hint from a source that tracks its changes: every key whose
   * entry may differ (by object identity, deleted included) from the
   * previous state the source delivered. A consumer that saw that previous
   * state may look at these keys only; one that did not, or that merged
   * snapshots, must take the union of their hints or ignore them. Absent:
   * anything may have changed.
   */
  changed?: { services: readonly ObjectKey[]; endpointSlices: readonly ObjectKey[] };
}

/**
 * A problem with one input object: which object, which field, what is wrong.
 * The smallest part that holds the problem is skipped (a port, an address,
 * an endpoint, a field; the whole object only when its identity is at stake);
 * everything else is still applied.
 */
export interface InputIssue {
  /** e.g. `Service default/web` or `EndpointSlice default/web-abc12`. */
  object: string;
  /** JSON-path-like field, e.g. `spec.ports[0].port`. */
  field: string;
  message: string;
}

/** This node, as the controller needs to know it. */
export interface NodeInfo {
  name: string;
  /** The node's IPv4 addresses: NodePort frontends and the SNAT source. */
  addresses: string[];
  /**
   * The Node's labels (`topology.kubernetes.io/zone` decides which zone
   * hints apply here); empty or absent when unknown.
   */
  labels?: Record<string, string>;
}

/** Label with which an object names the proxy that serves it instead of kube-proxy (core/v1 LabelServiceProxyName). */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';

/** Label of headless Services' objects (core/v1 IsHeadlessService); kube-proxy's informers leave out whatever carries it. */
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';

/** Label of a Node's zone (core/v1 LabelTopologyZone). */
export const TOPOLOGY_ZONE_LABEL = 'topology.kubernetes.io/zone';

/** An empty snapshot. */
export function emptyClusterState(): ClusterState {
  return { services: new Map(), endpointSlices: new Map() };
}

/**
 * What one node programs for a cluster snapshot: service ports with their
 * frontends and backends. Both translations produce these shapes: the plain
 * one of kube-proxy's rules (rules.ts, the reference) and the incremental
 * one the controller runs (translate.ts), which a differential test holds
 * equal to it.
 */
import type { ServiceModel } from '../model/types.js';

/**
 * How a frontend is reached. LoadBalancer: a VIP from
 * `status.loadBalancer.ingress` (or `spec.loadBalancerIP`); ExternalIP: an
 * address of `spec.externalIPs`; NodePort: a node address (or loopback) and
 * `nodePort`; ClusterIP: the cluster IP.
 */
export type FrontendKind = 'LoadBalancer' | 'ExternalIP' | 'NodePort' | 'ClusterIP';

/** Protocols the datapath balances. SCTP service ports are reported and skipped. */
export type ServedProtocol = 'TCP' | 'UDP';

/**
 * One of kube-proxy's two endpoint sets of a service port
 * (`CategorizeEndpoints` in pkg/proxy/topology.go): `cluster`, the usable
 * endpoints cluster-wide (topology applied); `local`, the usable endpoints
 * on this node.
 */
export type EndpointSet = 'cluster' | 'local';

/** One (address, port, protocol) on which a service port is reached. */
export interface DesiredFrontend {
  /** IPv4 dotted quad. */
  addr: string;
  /** 1..65535: the service port, or the node port for kind NodePort. */
  port: number;
  protocol: ServedProtocol;
  kind: FrontendKind;
  /**
   * The set new flows from outside the cluster choose from (XDP on the
   * external interfaces): `externalTrafficPolicy`'s. Absent when the
   * frontend is not served to outside traffic (ClusterIP; NodePort on
   * loopback).
   */
  external?: EndpointSet;
  /**
   * The set new flows from inside the cluster choose from (pods and the
   * node's own processes: the socket hooks, or tc on pod interfaces):
   * `internalTrafficPolicy`'s for a ClusterIP; the cluster set for every
   * other frontend (kube-proxy sends pod and node traffic to external
   * destinations to the cluster endpoints, whatever
   * `externalTrafficPolicy` says).
   */
  internal: EndpointSet;
}

/** One endpoint of a service port. */
export interface DesiredBackend {
  /** IPv4 dotted quad: the endpoint's first address. */
  addr: string;
  /** The EndpointSlice port matching the service port, 1..65535. */
  port: number;
  protocol: ServedProtocol;
  /** Node the endpoint runs on, when the slice says. */
  nodeName?: string;
  /** True when `nodeName` is this node. */
  local: boolean;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /**
   * In the cluster set: new flows of frontends that choose from it may go
   * here (Maglev table of the cluster set). False for every endpoint when
   * the port has no cluster set.
   */
  inCluster: boolean;
  /** In the local set (as `inCluster`, for the local set). */
  inLocal: boolean;
  /** Maglev weight; every endpoint counts once. */
  weight: 1;
  /** Stable identity `${addr}:${port}/${protocol}`, e.g. `10.0.0.5:8080/TCP`. */
  name: string;
  /** `targetRef.name`, usually the pod. */
  targetName?: string;
}

/**
 * Topology applied to a cluster set (kube-proxy's topologyModeFromHints):
 * '' none (every usable endpoint), `PreferSameZone` (endpoints hinted for
 * this node's zone), `PreferSameNode` (endpoints hinted for this node).
 */
export type TopologyMode = '' | 'PreferSameZone' | 'PreferSameNode';

/** One service port as this node programs it. */
export interface DesiredService {
  /** `namespace/name:portName`; portName may be '' (`default/web:`). */
  key: string;
  namespace: string;
  name: string;
  portName: string;
  protocol: ServedProtocol;
  type: ServiceModel['type'];
  /** Frontends this service port owns, in kind order LoadBalancer, ExternalIP, NodePort, ClusterIP. */
  frontends: DesiredFrontend[];
  /** All endpoints of the port, sorted by address then port. */
  backends: DesiredBackend[];
  externalTrafficPolicy: 'Cluster' | 'Local';
  internalTrafficPolicy: 'Cluster' | 'Local';
  /** kube-proxy's UsesClusterEndpoints: some frontend chooses from the cluster set. */
  usesCluster: boolean;
  /** kube-proxy's UsesLocalEndpoints: some frontend chooses from the local set. */
  usesLocal: boolean;
  /**
   * kube-proxy's hasAnyEndpoints: some endpoint anywhere in the cluster is
   * usable. False: connections are refused (kube-proxy REJECTs); true with
   * an empty set: that set's frontends drop.
   */
  hasAnyEndpoints: boolean;
  /** Topology applied to the cluster set. */
  topology: TopologyMode;
  sessionAffinity: 'None' | 'ClientIP';
  /** Seconds, when sessionAffinity is ClientIP. */
  sessionAffinityTimeoutSeconds?: number;
  /** IPv4 CIDRs of `spec.loadBalancerSourceRanges`, normalized (IPv6 ones are reported, not served). */
  loadBalancerSourceRanges: string[];
  /** `spec.healthCheckNodePort`, for LoadBalancer with externalTrafficPolicy Local. */
  healthCheckNodePort?: number;
  /** `spec.trafficDistribution` as written. */
  trafficDistribution?: string;
}

/**
 * Cluster model objects (src/model/types.ts) for the translation tests,
 * written as a source hands them over: a Service with the values Kubernetes
 * defaults to, and a snapshot keyed `namespace/name`.
 */
import type { ClusterState, EndpointSliceModel, ServiceModel } from '../../src/model/types.js';

/**
 * A Service `namespace/name` of type ClusterIP with no addresses and no
 * ports, policies Cluster, affinity None, no labels or annotations; `over`
 * sets any other field (keys keep the order of this default, extra ones follow).
 */
export function serviceModel({ namespace, name, ...over }: Pick<ServiceModel, 'namespace' | 'name'> & Partial<ServiceModel>): ServiceModel {
  return {
    namespace,
    name,
    type: 'ClusterIP',
    clusterIPs: [],
    headless: false,
    externalIPs: [],
    loadBalancerIPs: [],
    ports: [],
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    sessionAffinity: 'None',
    loadBalancerSourceRanges: [],
    labels: {},
    annotations: {},
    ...over,
  };
}

/** A snapshot holding `services` and `slices`, each keyed `namespace/name` (a later one of the same key wins). */
export function clusterState(services: ServiceModel[], slices: EndpointSliceModel[] = []): ClusterState {
  return {
    services: new Map(services.map((s) => [`${s.namespace}/${s.name}`, s])),
    endpointSlices: new Map(slices.map((s) => [`${s.namespace}/${s.name}`, s])),
  };
}

/**
 * LB IPAM: addresses for LoadBalancer services from configured pools,
 * written to `status.loadBalancer.ingress` by the leader (see controller.ts).
 */
export { ipamConfigSchema, ipamPoolSchema, parseIpamConfig, poolsFromConfig, type IpamConfig } from './config.js';
export { Pool, parseAddressEntry, overlap, type AddressRange, type PoolScope } from './pool.js';
export {
  Allocator,
  XLB_LB_CLASS,
  LB_IPS_ANNOTATION,
  POOL_ANNOTATION,
  lbServiceFromRaw,
  managedByXlb,
  requestedAddress,
  type Decision,
  type FailureReason,
  type LbService,
} from './allocator.js';
export { KubeIpamApi, EVENT_AGGREGATION_MS, EVENT_COMPONENT, type IpamApi, type ServiceRef } from './api.js';
export { IpamController, EVENT_REASONS, type IpamControllerOptions, type IpamStats } from './controller.js';

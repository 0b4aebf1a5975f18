/** Leader election over coordination.k8s.io/v1 Leases (see elector.ts). */
export {
  LeaseElector,
  kubeLeaseClient,
  DEFAULT_LEASE_DURATION_MS,
  DEFAULT_RENEW_DEADLINE_MS,
  DEFAULT_RETRY_PERIOD_MS,
  JITTER_FACTOR,
  type LeaseElectorOptions,
  type LeaseClient,
} from './elector.js';
export { leaderElectionSchema, electorTimes, DEFAULT_LEASE_NAMESPACE, type LeaderElectionConfig } from './config.js';

/**
 * Lease settings, as zod schema fragments for the sections that use
 * coordination.k8s.io Leases: `ipam.leaderElection` (one Lease, one leader:
 * {@link leaderElectionSchema}) and `l2.lease` (one Lease per service, its
 * name derived from the service: {@link leaseSectionSchema} alone). Strict:
 * unknown keys are errors. Times are seconds, as on the Lease and in
 * kube-controller-manager's `--leader-elect-*` flags.
 *
 * ```yaml
 * leaderElection:
 *   namespace: xlb-system      # where the Lease lives (the DaemonSet's namespace)
 *   leaseName: xlb-ipam
 *   leaseDurationSeconds: 15   # a silent leader is replaced after this
 *   renewDeadlineSeconds: 10   # the leader gives up after failing to renew this long
 *   retryPeriodSeconds: 2      # between attempts
 * ```
 */
import { z } from 'zod';

/** client-go's JitterFactor: candidates retry after retryPeriod × U[1, 1.2]. */
export const JITTER_FACTOR = 1.2;

/** DNS-1123 label (namespaces). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** DNS-1123 subdomain (object names). */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Namespace of the Lease unless configured: the one deploy/ creates. */
export const DEFAULT_LEASE_NAMESPACE = 'xlb-system';

/**
 * The Lease fields every lease section has (namespace, and the three times
 * in seconds with `defaults`), checked as client-go checks them: lease
 * duration > renew deadline > JITTER_FACTOR × retry period.
 */
export function leaseSectionSchema<S extends z.ZodRawShape>(defaults: { leaseDurationSeconds: number; renewDeadlineSeconds: number; retryPeriodSeconds: number }, extra: S) {
  return z
    .strictObject({
      namespace: z
        .string()
        .max(63)
        .regex(DNS_LABEL, { error: 'must be a namespace name (DNS-1123 label)' })
        .default(DEFAULT_LEASE_NAMESPACE),
      ...extra,
      leaseDurationSeconds: z.int().min(1).max(3600).default(defaults.leaseDurationSeconds),
      renewDeadlineSeconds: z.number().positive().max(3600).default(defaults.renewDeadlineSeconds),
      retryPeriodSeconds: z.number().positive().max(600).default(defaults.retryPeriodSeconds),
    })
    .superRefine((parsed, ctx) => {
      const c = parsed as unknown as { leaseDurationSeconds: number; renewDeadlineSeconds: number; retryPeriodSeconds: number };
      if (!(c.leaseDurationSeconds > c.renewDeadlineSeconds)) {
        ctx.addIssue({ code: 'custom', path: ['renewDeadlineSeconds'], message: `${c.renewDeadlineSeconds} must be below leaseDurationSeconds ${c.leaseDurationSeconds}` });
      }
      if (!(c.renewDeadlineSeconds > JITTER_FACTOR * c.retryPeriodSeconds)) {
        ctx.addIssue({ code: 'custom', path: ['retryPeriodSeconds'], message: `${c.retryPeriodSeconds} × ${JITTER_FACTOR} must be below renewDeadlineSeconds ${c.renewDeadlineSeconds}` });
      }
    });
}

/** Schema of a leader election section (client-go's 15/10/2 s); `leaseName` defaults per user (`defaultName`). */
export function leaderElectionSchema(defaultName: string) {
  return leaseSectionSchema(
    { leaseDurationSeconds: 15, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 },
    { leaseName: z.string().max(253).regex(DNS_SUBDOMAIN, { error: 'must be an object name (DNS-1123 subdomain)' }).default(defaultName) },
  );
}

/** A leader election section after parsing. */
export type LeaderElectionConfig = z.infer<ReturnType<typeof leaderElectionSchema>>;

/** Elector timing options (ms) from a parsed section. */
export function electorTimes(c: LeaderElectionConfig): { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number } {
  return { leaseDurationMs: c.leaseDurationSeconds * 1000, renewDeadlineMs: c.renewDeadlineSeconds * 1000, retryPeriodMs: c.retryPeriodSeconds * 1000 };
}

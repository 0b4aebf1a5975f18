/**
 * The `ipam:` section of the agent configuration (LB IPAM), as a zod schema
 * fragment (the agent's schema nests it under `ipam`). Strict: unknown keys
 * are errors. Issue paths are relative to the section; messages carry no
 * path, so the agent's formatter prefixes `ipam.` + path.
 *
 * ```yaml
 * ipam:
 *   pools:
 *     - name: public
 *       addresses: ["203.0.113.0/28", "192.0.2.10-192.0.2.20", "192.0.2.99"]
 *       avoidNetworkAndBroadcast: true   # default: a CIDR shorter than /31 loses its first and last address
 *       autoAssign: true                 # false: only services that ask for this pool or one of its addresses
 *       namespaces: [prod]               # optional: only services in these namespaces
 *       serviceSelector: { matchLabels: { exposure: public } }   # optional; matchExpressions too
 *   customResources: true            # default: LoadBalancerIPPool resources add pools while running
 *   leaderElection: { namespace: xlb-system, leaseName: xlb-ipam }   # src/leader/config.ts
 * ```
 *
 * Pools are tried in order for services that ask for no address. Pools must
 * not overlap (one address, one owner). See pool.ts for the address syntax
 * and why network and broadcast addresses are avoided.
 *
 * With `customResources` (the default), pools also come from the
 * cluster-scoped LoadBalancerIPPool resources (group xlb.io), followed live
 * (custom-pools.ts); the pools here come first and win any conflict with
 * them. `pools` may then be empty.
 */
import { z } from 'zod';
import { parseConfigSection } from '../config/zod-errors.js';
import { leaderElectionSchema } from '../leader/config.js';
import { Pool, overlap, parseAddressEntry, type AddressRange } from './pool.js';

/** A meta/v1 LabelSelector: matchLabels and matchExpressions, ANDed. */
export const labelSelectorSchema = z
  .strictObject({
    matchLabels: z.record(z.string(), z.string()).optional(),
    matchExpressions: z
      .array(
        z
          .strictObject({
            key: z.string().min(1),
            operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
            values: z.array(z.string()).optional(),
          })
          .superRefine((r, ctx) => {
            const n = r.values?.length ?? 0;
            if ((r.operator === 'In' || r.operator === 'NotIn') && n === 0) ctx.addIssue({ code: 'custom', path: ['values'], message: `must be non-empty when operator is ${r.operator}` });
            if ((r.operator === 'Exists' || r.operator === 'DoesNotExist') && n > 0) ctx.addIssue({ code: 'custom', path: ['values'], message: `must be empty when operator is ${r.operator}` });
          }),
      )
      .optional(),
  });

/** DNS-1123 label: pool names appear in the `xlb.io/address-pool` annotation and in Events. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const label = (what: string) =>
  z
    .string({ error: `must be ${what}` })
    .max(63, { error: `must be ${what} of at most 63 characters` })
    .regex(DNS_LABEL, { error: `must be ${what} (DNS-1123 label: lower-case letters, digits, "-")` });

/** One pool as written in the configuration. */
export const ipamPoolSchema = z.strictObject({
  name: label('a pool name'),
  addresses: z.array(z.string({ error: 'must be a CIDR, a range FIRST-LAST or an address' })).min(1, { error: 'must list at least one CIDR, range or address' }),
  avoidNetworkAndBroadcast: z.boolean().default(true),
  autoAssign: z.boolean().default(true),
  namespaces: z.array(label('a namespace name')).min(1).optional(),
  serviceSelector: labelSelectorSchema.optional(),
});

/** The `ipam:` section. */
export const ipamConfigSchema = z
  .strictObject({
    pools: z.array(ipamPoolSchema).default([]),
    /** Follow LoadBalancerIPPool resources as well (custom-pools.ts). */
    customResources: z.boolean().default(true),
    leaderElection: leaderElectionSchema('xlb-ipam').prefault({}),
  })
  .superRefine((cfg, ctx) => {
    if (!cfg.customResources && cfg.pools.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['pools'], message: 'must list at least one pool when customResources is false (no LoadBalancerIPPool is read then)' });
    }
    const parsed: Array<{ name: string; ranges: AddressRange[] }> = [];
    cfg.pools.forEach((p, i) => {
      const first = cfg.pools.findIndex((q) => q.name === p.name);
      if (first !== i) ctx.addIssue({ code: 'custom', path: ['pools', i, 'name'], message: `duplicate pool name ${p.name} (also ipam.pools[${first}].name)` });
      const ranges: AddressRange[] = [];
      p.addresses.forEach((a, j) => {
        try {
          const r = parseAddressEntry(a, p.avoidNetworkAndBroadcast);
          const clash = overlap([r], ranges);
          if (clash) ctx.addIssue({ code: 'custom', path: ['pools', i, 'addresses', j], message: `overlaps an earlier entry of the same pool (at ${clash})` });
          else ranges.push(r);
        } catch (e) {
          ctx.addIssue({ code: 'custom', path: ['pools', i, 'addresses', j], message: (e as Error).message });
        }
      });
      for (const q of parsed) {
        const clash = overlap(ranges, q.ranges);
        if (clash) ctx.addIssue({ code: 'custom', path: ['pools', i, 'addresses'], message: `overlaps pool ${q.name} (at ${clash}): an address belongs to one pool` });
      }
      parsed.push({ name: p.name, ranges });
    });
  });

/** The `ipam:` section after parsing (defaults applied). */
export type IpamConfig = z.infer<typeof ipamConfigSchema>;

/**
 * Parse the `ipam:` section on its own (tests and tools; the agent parses it
 * as part of its whole schema).
 * @throws Error listing every problem as `ipam.<path>: <message>`
 */
export function parseIpamConfig(input: unknown): IpamConfig {
  return parseConfigSection(ipamConfigSchema, 'ipam', input);
}

/** The pools of a parsed section, in order. */
export function poolsFromConfig(cfg: Pick<IpamConfig, 'pools'>): Pool[] {
  return cfg.pools.map(
    (p) =>
      new Pool(
        p.name,
        p.addresses.map((a) => parseAddressEntry(a, p.avoidNetworkAndBroadcast)),
        {
          autoAssign: p.autoAssign,
          ...(p.namespaces ? { namespaces: p.namespaces } : {}),
          ...(p.serviceSelector?.matchLabels ? { matchLabels: p.serviceSelector.matchLabels } : {}),
          ...(p.serviceSelector?.matchExpressions ? { matchExpressions: p.serviceSelector.matchExpressions } : {}),
        },
      ),
  );
}

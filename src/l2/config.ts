/**
 * The `l2:` section of the agent configuration, as a zod schema fragment
 * (the agent's schema nests it under `l2`). Strict: unknown keys are errors.
 * Issue paths are relative to the section (`['peers', 1, 'address']`);
 * messages carry no path, so the agent's formatter prefixes `l2.` + path.
 *
 * ```yaml
 * l2:
 *   interfaces: [eth0, eth1.100]  # where ARP is answered; default: the agent's interfaces
 *   peers:                        # every node of the L2 group; this node's own entry is skipped
 *     - { name: node-a, address: 198.18.0.11 }
 *     - { name: node-b, address: 198.18.0.12 }
 *   port: 7947                    # UDP heartbeat port (listen, and peers' default)
 *   heartbeat: { intervalMs: 200, deadAfterMissed: 5, restartHoldMs: 30000 }   # a silent peer is dead after 1 s;
 *                                 # a restarting one is held 30 s
 *   gratuitousArp: { count: 3, intervalMs: 200, setNonlocalBind: true }
 *   ownership: auto               # peers | lease | auto (lease with the Kubernetes source)
 *   lease: { namespace: xlb-system, leaseDurationSeconds: 5, renewDeadlineSeconds: 3, retryPeriodSeconds: 1 }
 *   customResources: true         # default: L2AnnouncementPolicy resources, with the Kubernetes source
 * ```
 *
 * With the defaults a node that drops off loses its VIPs after
 * intervalMs × deadAfterMissed = 1 s of silence, plus at most a quarter
 * interval until the liveness check sees it: 1.05 s, under the 3 s target
 * (Cilium's default lease of 15 s takes 10 to 20 s; MetalLB promises "a few
 * seconds").
 */
import { z } from 'zod';
import { parseConfigSection } from '../config/zod-errors.js';
import { leaseSectionSchema } from '../leader/config.js';

/** DNS-1123 subdomain: what Kubernetes allows as a node name (as `node.name`). */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Linux interface names: 1..15 bytes (IFNAMSIZ 16 with the NUL), no '/', ':' or whitespace. */
const IFNAME = /^[^/:\s]{1,15}$/;

/** Default UDP port of the heartbeats: next to memberlist's 7946 (MetalLB's), not on it. */
export const DEFAULT_L2_PORT = 7947;

const ipv4 = z.ipv4({ error: 'must be an IPv4 address' });
const port = z.int({ error: 'must be an integer 1..65535' }).min(1, { error: 'must be an integer 1..65535' }).max(65535, { error: 'must be an integer 1..65535' });
const nodeName = z
  .string({ error: 'must be a node name' })
  .max(253, { error: 'must be a node name of at most 253 characters' })
  .regex(DNS_SUBDOMAIN, { error: 'must be a node name (DNS-1123 subdomain: lower-case letters, digits, "-", ".")' });
const ifname = z
  .string({ error: 'must be an interface name' })
  .regex(IFNAME, { error: 'not an interface name (1..15 characters, no "/", ":" or spaces)' })
  .refine((n) => n !== '.' && n !== '..', { error: 'not an interface name' });

/** One node of the layer 2 group: where its heartbeats come from and go to. */
export const l2PeerSchema = z.strictObject({
  /** The node's `node.name`; heartbeats carry it. */
  name: nodeName,
  /** The node's address on the fabric: heartbeats are sent there. */
  address: ipv4,
  /** Its heartbeat port; default `l2.port`. */
  port: port.optional(),
});

/** Heartbeat timing: how fast a silent peer is declared dead. */
export const l2HeartbeatSchema = z.strictObject({
  /** Milliseconds between heartbeats to each peer, 20..10000; default 200. */
  intervalMs: z.int().min(20).max(10000).default(200),
  /** A peer is dead after this many intervals without a heartbeat, 2..100; default 5 (1 s). */
  deadAfterMissed: z.int().min(2).max(100).default(5),
  /**
   * When this node's agent stops to start again (SIGTERM, an upgrade), how
   * long its peers hold its VIPs for it (they take none of them, it keeps
   * answering ARP), ms, 1000..600000; default 30000. Its next agent ends the
   * hold as soon as it heartbeats. A kill -9 sends nothing: deadAfterMissed
   * applies then.
   */
  restartHoldMs: z.int().min(1000).max(600_000).default(30_000),
});

/** Gratuitous ARP sent on taking a VIP over (RFC 5227 2.4 "announcement", and the reply form). */
export const l2GarpSchema = z.strictObject({
  /** Rounds of (request form, reply form) per VIP and interface, 0..20; default 3. 0: none. */
  count: z.int().min(0).max(20).default(3),
  /** Milliseconds between rounds, 10..10000; default 200. */
  intervalMs: z.int().min(10).max(10000).default(200),
  /**
   * arping binds to the VIP, which no interface of the node carries: that
   * needs net.ipv4.ip_nonlocal_bind=1 in the node's network namespace.
   * true (default): the agent sets it at start; false: the agent refuses to
   * start while it is 0 (set it yourself).
   */
  setNonlocalBind: z.boolean().default(true),
});

/**
 * The `l2.lease` section (lease-ownership.ts): where the per-service Leases live and their times.
 * Defaults 5 s / 3 s / 1 s: a node that dies loses its VIPs within 5 s plus
 * at most 1.2 retry periods (6.2 s; Cilium's defaults 15 s / 5 s / 2 s take
 * 10 to 20 s), a clean stop or a link going down hands over within about
 * one retry period.
 */
export const l2LeaseSchema = leaseSectionSchema({ leaseDurationSeconds: 5, renewDeadlineSeconds: 3, retryPeriodSeconds: 1 }, {});

/** The `l2.lease` section after parsing. */
export type L2LeaseConfig = z.infer<typeof l2LeaseSchema>;

/** The `l2:` section. Cross-field rules are checked after the fields. */
export const l2ConfigSchema = z
  .strictObject({
    /**
     * Interfaces on which the owner answers ARP and sends gratuitous ARP.
     * Each must carry xlb's XDP program, or be a VLAN sub-interface (e.g.
     * `eth0.100`) of one that does. Default: the agent's `interfaces`.
     */
    interfaces: z
      .array(ifname)
      .min(1, { error: 'must list at least one interface, or be left out to use the agent\'s interfaces' })
      .optional(),
    /** The nodes that share the VIPs (this node's own entry may be listed and is skipped). */
    peers: z.array(l2PeerSchema).default([]),
    /** UDP port heartbeats are received on (and sent to, unless a peer says otherwise); default 7947. */
    port: port.default(DEFAULT_L2_PORT),
    /** Address the heartbeat socket binds to; default this node's `peers[]` address if listed, else 0.0.0.0. */
    bindAddress: ipv4.optional(),
    heartbeat: l2HeartbeatSchema.prefault({}),
    gratuitousArp: l2GarpSchema.prefault({}),
    /**
     * How nodes agree on owners: `peers` (heartbeats between `peers` and
     * rendezvous hashing, no API server), `lease` (one coordination.k8s.io
     * Lease per service; needs source.kubernetes), or `auto` (default):
     * `lease` with the Kubernetes source, else `peers`.
     */
    ownership: z.enum(['auto', 'peers', 'lease'], { error: 'must be one of auto, peers, lease' }).default('auto'),
    /** The per-service Leases of `lease` ownership (lease-ownership.ts). */
    lease: l2LeaseSchema.prefault({}),
    /**
     * With the Kubernetes source: follow L2AnnouncementPolicy resources
     * (policy-resources.ts), which, once one is accepted, decide which VIPs
     * this node announces and on which interfaces. Default true.
     */
    customResources: z.boolean().default(true),
  })
  .superRefine((cfg, ctx) => {
    const names = new Map<string, number>();
    const endpoints = new Map<string, number>();
    cfg.peers.forEach((p, i) => {
      const n = names.get(p.name);
      if (n !== undefined) ctx.addIssue({ code: 'custom', path: ['peers', i, 'name'], input: p.name, message: `duplicate peer name ${p.name} (also l2.peers[${n}].name)` });
      else names.set(p.name, i);
      const ep = `${p.address}:${p.port ?? cfg.port}`;
      const e = endpoints.get(ep);
      if (e !== undefined) ctx.addIssue({ code: 'custom', path: ['peers', i, 'address'], input: p.address, message: `duplicate peer endpoint ${ep} (also l2.peers[${e}])` });
      else endpoints.set(ep, i);
    });
    (cfg.interfaces ?? []).forEach((n, i, all) => {
      if (all.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: ['interfaces', i], input: n, message: `duplicate interface (also l2.interfaces[${all.indexOf(n)}])` });
    });
  });

/** The `l2:` section after parsing (defaults applied). */
export type L2Config = z.infer<typeof l2ConfigSchema>;
/** One peer after parsing. */
export type L2PeerConfig = z.infer<typeof l2PeerSchema>;

/**
 * Parse the `l2:` section on its own (the agent parses it as part of its
 * whole schema; tests and tools use this).
 * @throws Error listing every problem as `l2.<path>: <message>`
 */
export function parseL2Config(input: unknown): L2Config {
  return parseConfigSection(l2ConfigSchema, 'l2', input);
}

/**
 * Worst-case time in ms from a node's last heartbeat to a peer declaring it
 * dead: deadAfterMissed intervals of silence, then up to a quarter interval
 * until the liveness check sees it (peer-ownership.ts, expiryCheckMs).
 */
export function failoverBudgetMs(cfg: Pick<L2Config, 'heartbeat'>): number {
  const { intervalMs, deadAfterMissed } = cfg.heartbeat;
  return intervalMs * deadAfterMissed + Math.max(10, Math.floor(intervalMs / 4));
}

/**
 * The `bgp:` section of the agent configuration, as a zod schema fragment
 * (the agent's schema nests it under `bgp`). Strict: unknown keys are errors.
 * Issue paths are relative to the section (`['neighbors', 1, 'address']`);
 * messages carry no path, so the agent's formatter prefixes `bgp.` + path.
 *
 * ```yaml
 * bgp:
 *   asn: 64513                 # this node's AS
 *   routerId: 198.18.200.2     # default: nodeAddress
 *   nodeAddress: 198.18.200.2  # next hop of announced VIPs; default: the node's first address
 *   listenPort: -1             # -1: do not accept sessions, connect out only (default)
 *   communities: ["65000:100"]
 *   largeCommunities: ["64513:1:2"]
 *   neighbors:
 *     - { address: 198.18.200.1, asn: 64512, holdTime: 9, keepaliveTime: 3 }
 *   gobgpd: { apiPort: 50051 } # or { apiSocket: /run/xlb/gobgpd.sock } or { external: "10.0.0.1:50051" }
 *   customResources: true     # default: also peer with the BGPPeer resources selecting this node
 * ```
 *
 * With the Kubernetes source and `customResources`, neighbors also come from
 * BGPPeer resources (peer-resources.ts), and `neighbors` may be empty.
 *
 * The gobgpd xlb runs outlives the agent (gobgpd.ts): an agent restart
 * neither withdraws a route nor drops a session.
 */
import { z } from 'zod';
import { parseConfigSection } from '../config/zod-errors.js';
import { parseCommunity, parseLargeCommunity } from './communities.js';

/** An AS number: 1..4294967295 (4-octet AS numbers, RFC 6793; 0 is reserved, RFC 7607). */
const ASN_MSG = 'must be an AS number 1..4294967295 (RFC 6793; 0 is reserved, RFC 7607)';
const asn = z.int({ error: ASN_MSG }).min(1, { error: ASN_MSG }).max(4294967295, { error: ASN_MSG });

const ipv4 = z.ipv4({ error: 'must be an IPv4 address' });

/** A standard community string, checked by {@link parseCommunity}. */
const community = z.string().superRefine((s, ctx) => {
  try {
    parseCommunity(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(/^community: /, '') });
  }
});

/** A large community string, checked by {@link parseLargeCommunity}. */
const largeCommunity = z.string().superRefine((s, ctx) => {
  try {
    parseLargeCommunity(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(/^large community: /, '') });
  }
});

/** One BGP neighbor (a router this node peers with). Times are seconds. */
export const bgpNeighborSchema = z.strictObject({
  address: ipv4,
  asn,
  /** Remote TCP port; default 179. */
  port: z.int().min(1).max(65535).optional(),
  /** TCP MD5 signature key (RFC 2385); Linux caps keys at 80 bytes (TCP_MD5SIG_MAXKEYLEN). */
  password: z.string().min(1).max(80).optional(),
  /** Hold time proposed in OPEN: 0 (no keepalives) or 3..65535 (RFC 4271 section 4.2). */
  holdTime: z
    .int()
    .min(0)
    .max(65535)
    .refine((t) => t === 0 || t >= 3, 'hold time must be 0 or at least 3 seconds (RFC 4271 section 4.2)')
    .optional(),
  /** KEEPALIVE interval; must be below the hold time (RFC 4271 suggests one third). */
  keepaliveTime: z.int().min(1).max(65535).optional(),
  /** eBGP multihop TTL, 1..255 (1 = directly connected). */
  multihop: z.int().min(1).max(255).optional(),
  /** Advertise graceful restart (RFC 4724) so the router keeps routes while gobgpd restarts. */
  gracefulRestart: z.boolean().optional(),
  /** Communities added to every VIP sent to this neighbor only. */
  communities: z.array(community).optional(),
  largeCommunities: z.array(largeCommunity).optional(),
});

/** How the agent reaches gobgpd: one it supervises (TCP or unix API) or an external one. */
export const gobgpdSchema = z.strictObject({
  /** gobgpd executable; default `gobgpd` from PATH. */
  binary: z.string().min(1).optional(),
  /** API port on 127.0.0.1; default 50051. */
  apiPort: z.int().min(1).max(65535).default(50051),
  /** API on this unix socket path instead of the TCP port. */
  apiSocket: z.string().startsWith('/').optional(),
  /** `HOST:PORT` or `unix:///path` of a gobgpd run elsewhere; xlb then supervises nothing. */
  external: z
    .string()
    .regex(/^([^\s:/]+:\d{1,5}|unix:\/\/\/\S+)$/, 'external must be HOST:PORT or unix:///path')
    .optional(),
  logLevel: z.enum(['debug', 'info']).default('info'),
  /**
   * Where the pid of the gobgpd xlb runs is recorded, so that the next agent
   * adopts it (an agent restart keeps gobgpd, its sessions and routes); its
   * output goes to the same path with `.log`. Default: next to apiSocket
   * (`gobgpd.sock` → `gobgpd.pid`, `gobgpd.log`), or
   * `/run/xlb/gobgpd-<apiPort>.pid` with the TCP API.
   */
  pidFile: z.string().startsWith('/').optional(),
});

/** The `bgp:` section. Cross-field rules are checked after the fields. */
export const bgpConfigSchema = z
  .strictObject({
    asn,
    /** BGP identifier; default nodeAddress. */
    routerId: ipv4.optional(),
    /** Next hop of announced VIPs; default the node's first address (the agent fills it in). */
    nodeAddress: ipv4.optional(),
    /**
     * TCP port on which gobgpd accepts sessions: -1 (default) = none. The node
     * connects to its routers, so it needs no open port (and does not collide
     * with another BGP speaker on the node, e.g. a CNI's); routers that only
     * connect out never reach it then. Note gobgp waits 5..10 s before its
     * first outgoing connect, so listening too (e.g. 179) speeds recovery.
     */
    listenPort: z
      .int()
      .min(-1)
      .max(65535)
      .refine((p) => p !== 0, 'listenPort 0 is ambiguous (gobgp maps it to 179): use -1 for "do not listen" or 179')
      .default(-1),
    /** Communities on every announced VIP (RFC 1997 `ASN:value`). */
    communities: z.array(community).default([]),
    /** Large communities on every announced VIP (RFC 8092 `global:local1:local2`). */
    largeCommunities: z.array(largeCommunity).default([]),
    /** May be empty with BGPPeer resources (`customResources`, the Kubernetes source): the agent's schema checks that. */
    neighbors: z.array(bgpNeighborSchema).default([]),
    /** Peer with the BGPPeer resources that select this node, too (peer-resources.ts); needs the Kubernetes source. */
    customResources: z.boolean().default(true),
    gobgpd: gobgpdSchema.prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Map<string, number>();
    cfg.neighbors.forEach((n, i) => {
      const first = seen.get(n.address);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['neighbors', i, 'address'],
          input: n.address,
          message: `duplicate neighbor ${n.address} (also bgp.neighbors[${first}].address)`,
        });
      } else seen.set(n.address, i);
      if (n.keepaliveTime !== undefined && n.holdTime !== undefined && n.holdTime !== 0 && n.keepaliveTime >= n.holdTime) {
        ctx.addIssue({
          code: 'custom',
          path: ['neighbors', i, 'keepaliveTime'],
          message: `${n.keepaliveTime} s must be below holdTime ${n.holdTime} s (RFC 4271 section 4.4)`,
        });
      }
    });
    const g = cfg.gobgpd;
    if (g.external && (g.binary || g.apiSocket || g.pidFile)) {
      ctx.addIssue({ code: 'custom', path: ['gobgpd', 'external'], message: 'an external gobgpd excludes binary, apiSocket and pidFile' });
    }
  });

/** The `bgp:` section after parsing (defaults applied). */
export type BgpConfig = z.infer<typeof bgpConfigSchema>;
/** One neighbor after parsing. */
export type BgpNeighborConfig = z.infer<typeof bgpNeighborSchema>;

/**
 * Parse the `bgp:` section on its own (the agent parses it as part of its
 * whole schema; tests and tools use this).
 * @throws Error listing every problem as `bgp.<path>: <message>`
 */
export function parseBgpConfig(input: unknown): BgpConfig {
  return parseConfigSection(bgpConfigSchema, 'bgp', input);
}

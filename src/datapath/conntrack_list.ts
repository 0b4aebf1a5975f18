/**
 * The conntrack table as an operator reads it (`xlb ct list`, GET
 * /v1/conntrack; what `cilium bpf ct list global` is for Cilium): each
 * flow's client, frontend, backend, SNAT port and state, filtered, and the
 * table's totals: entries, SNAT ports held per backend, ClientIP affinity
 * entries.
 *
 * Read from the pinned maps as they are (xlb_conntrack: one entry a flow,
 * keyed by the client's 5-tuple towards the frontend, docs/datapath.md), in
 * batches; nothing is written.
 */
import type { BpfMap } from './bpf.js';
import { decode, enums, structs, type StructValue } from './codec.js';
import { readSnatWays, SNAT_WAYS } from './snat_sets.js';

const F = enums.xlb_ct_flags;

/** One conntrack entry, decoded. */
export interface ConntrackFlow {
  /** `IP:PORT` of the client (the packet's source). */
  client: string;
  /** `IP:PORT` the client sent to: a VIP, external IP, node IP (NodePort) or ClusterIP. */
  frontend: string;
  protocol: 'TCP' | 'UDP';
  /** `IP:PORT` of the backend the flow keeps. */
  backend: string;
  /** The node's source port towards a remote backend; absent when not SNATed. */
  snatPort?: number;
  /** The service ID it was placed with, and the service port's key (`namespace/name:port`) when still programmed. */
  serviceId: number;
  service?: string;
  /** TCP: `syn` (only SYNs so far), `established`, `closing` (FIN or RST seen); UDP: `udp`. */
  state: 'syn' | 'established' | 'closing' | 'udp';
  /** The entry's flags by name (snat, internal, hairpin, replied, ...). */
  flags: string[];
  /** Seconds since the client's last packet, and since the last reply found through the entry (absent: none), when the clock is known. */
  idleSeconds?: number;
  replyIdleSeconds?: number;
}

/** Which entries {@link listConntrack} returns; every field given must match. */
export interface ConntrackFilter {
  /** Client address, and port when given. */
  src?: { addr: string; port?: number };
  /** Frontend address, and port when given. */
  dst?: { addr: string; port?: number };
  /** Backend address, and port when given. */
  backend?: { addr: string; port?: number };
  /** Service IDs (of one Service's ports). */
  serviceIds?: ReadonlySet<number>;
  protocol?: 'TCP' | 'UDP';
  /** Most entries returned (the totals count all). */
  limit: number;
}

/** What {@link listConntrack} gives. */
export interface ConntrackListing {
  /** Entries in the table. */
  total: number;
  /** Entries that match the filter (`entries` holds the first `limit` of them). */
  matched: number;
  entries: ConntrackFlow[];
  /** SNAT ports held by conntrack entries, per remote backend `IP:PORT`, most first. */
  snatPortsByBackend: Array<{ backend: string; ports: number }>;
  /** Entries in xlb_affinity (sessionAffinity: ClientIP from outside). */
  affinityEntries: number;
}

/** How to name a service ID and how old a tick is. */
export interface ConntrackContext {
  /** The service port key of a service ID, when it is programmed. */
  serviceOf?: (serviceId: number) => string | undefined;
  /** Now, in the datapath's ticks (xlb_clock.h), and the seconds a tick lasts. */
  now?: number;
  tickSeconds?: number;
}

const matches = (want: { addr: string; port?: number } | undefined, addr: string, port: number): boolean =>
  !want || (want.addr === addr && (want.port === undefined || want.port === port));

/** The names of the flags set in `flags` (`XLB_CT_F_SNAT` → `snat`). */
function flagNames(flags: number): string[] {
  const out: string[] = [];
  for (const [name, bit] of Object.entries(F)) if (typeof bit === 'number' && bit && flags & bit) out.push(name.replace('XLB_CT_F_', '').toLowerCase());
  return out;
}

/**
 * The conntrack table filtered, with its totals.
 * @param maps the pinned xlb_conntrack and xlb_affinity
 * @throws BpfError naming the map when a read fails
 */
export function listConntrack(maps: { conntrack: BpfMap; affinity: BpfMap; snat?: BpfMap }, filter: ConntrackFilter, ctx: ConntrackContext = {}): ConntrackListing {
  // Flows to local backends and pods' flows, then SNATed flows (their sets; pointers are not flows).
  const all: Array<{ k: StructValue<'xlb_flow_key'>; v: StructValue<'xlb_ct_entry'> }> = maps.conntrack
    .entries()
    .map(({ key, value }) => ({ k: decode('xlb_flow_key', key), v: decode('xlb_ct_entry', value) }));
  if (maps.snat) for (const w of readSnatWays(maps.snat)) if (!w.pointer) all.push({ k: { ...w.flow, pad: 0 } as StructValue<'xlb_flow_key'>, v: w.ct });
  const entries: ConntrackFlow[] = [];
  const snat = new Map<string, number>();
  let matched = 0;
  const idle = (seen: number): number | undefined =>
    ctx.now !== undefined && ctx.tickSeconds !== undefined ? Math.max(0, ((ctx.now - seen) | 0) * ctx.tickSeconds) : undefined;
  for (const { k, v } of all) {
    const protocol = k.proto === 17 ? 'UDP' : 'TCP';
    const backend = `${v.backend_addr}:${v.backend_port}`;
    if (v.flags & F.XLB_CT_F_SNAT) snat.set(backend, (snat.get(backend) ?? 0) + 1);
    if (!matches(filter.src, k.saddr, k.sport) || !matches(filter.dst, k.daddr, k.dport) || !matches(filter.backend, v.backend_addr, v.backend_port)) continue;
    if (filter.protocol && filter.protocol !== protocol) continue;
    if (filter.serviceIds && !filter.serviceIds.has(v.service_id)) continue;
    matched++;
    if (entries.length >= filter.limit) continue;
    const flow: ConntrackFlow = {
      client: `${k.saddr}:${k.sport}`,
      frontend: `${k.daddr}:${k.dport}`,
      protocol,
      backend,
      serviceId: v.service_id,
      state: protocol === 'UDP' ? 'udp' : v.flags & F.XLB_CT_F_CLOSING ? 'closing' : v.flags & F.XLB_CT_F_ESTABLISHED ? 'established' : 'syn',
      flags: flagNames(v.flags),
    };
    if (v.flags & F.XLB_CT_F_SNAT) flow.snatPort = v.snat_port;
    const service = ctx.serviceOf?.(v.service_id);
    if (service) flow.service = service;
    const i = idle(v.seen);
    if (i !== undefined) flow.idleSeconds = i;
    const r = v.reply_seen ? idle(v.reply_seen) : undefined;
    if (r !== undefined) flow.replyIdleSeconds = r;
    entries.push(flow);
  }
  return {
    total: all.length,
    matched,
    entries,
    snatPortsByBackend: [...snat].map(([backend, ports]) => ({ backend, ports })).sort((a, b) => b.ports - a.ports || (a.backend < b.backend ? -1 : 1)),
    affinityEntries: maps.affinity.entries().length,
  };
}

/** What {@link countConntrack} gives: the table's fill and the SNAT ports its flows hold. */
export interface ConntrackCounts {
  /** Entries in xlb_conntrack. */
  entries: number;
  /** Entries of SNATed flows: each holds one SNAT port towards its backend. */
  snatPorts: number;
  /** Remote backends (`IP:PORT`) that SNATed flows go to. */
  snatBackends: number;
  /** The most SNAT ports held towards one backend `IP:PORT` (0: none). */
  snatPortsMaxPerBackend: number;
}

const CT = structs.xlb_ct_entry.fields;

/**
 * The conntrack table's totals without listing it: one walk in batches
 * ({@link BpfMap.scanBatches}, yielding to the event loop between them)
 * reading three fields of each value where it lies, so no object is made
 * per entry (docs/operations.md has the cost on a full table). SNAT ports
 * are counted from the conntrack entries, as `snatPortsByBackend` of
 * {@link listConntrack} counts them.
 * SNATed flows are counted from their sets (`snat`, xlb_snat_sets), as
 * many entries as flows.
 * @param conntrack the pinned xlb_conntrack
 * @param snat the pinned xlb_snat_sets
 * @returns rejects with a BpfError naming the map when a read fails
 */
export async function countConntrack(conntrack: BpfMap, snatSets?: BpfMap): Promise<ConntrackCounts> {
  const size = structs.xlb_ct_entry.size;
  // Backend address (network order, as stored) * 65536 + port: one number a backend.
  const snat = new Map<number, number>();
  let entries = 0;
  let snatPorts = 0;
  await conntrack.scanBatches((_keys, values, count) => {
    entries += count;
    for (let i = 0, off = 0; i < count; i++, off += size) {
      if (!(values.readUInt32LE(off + CT.flags.offset) & F.XLB_CT_F_SNAT)) continue;
      snatPorts++;
      const backend = values.readUInt32BE(off + CT.backend_addr.offset) * 65536 + values.readUInt16BE(off + CT.backend_port.offset);
      snat.set(backend, (snat.get(backend) ?? 0) + 1);
    }
  });
  if (snatSets) {
    const setSize = structs.xlb_snat_set.size;
    const S = structs.xlb_snat_set.fields;
    const wayAt = (way: number) => S.way.offset + way * structs.xlb_snat_flow.size + structs.xlb_snat_flow.fields.ct.offset;
    await snatSets.scanBatches((_keys, values, count) => {
      for (let i = 0, off = 0; i < count; i++, off += setSize) {
        for (let w = 0; w < SNAT_WAYS; w++) {
          if (!values[off + S.tag.offset + w]) continue;
          const at = off + wayAt(w);
          const flags = values.readUInt32LE(at + CT.flags.offset);
          if (!values.readUInt32LE(at + CT.seen.offset) || flags & F.XLB_CT_F_POINTER) continue;
          entries++;
          snatPorts++;
          const backend = values.readUInt32BE(at + CT.backend_addr.offset) * 65536 + values.readUInt16BE(at + CT.backend_port.offset);
          snat.set(backend, (snat.get(backend) ?? 0) + 1);
        }
      }
    });
  }
  let max = 0;
  for (const n of snat.values()) if (n > max) max = n;
  return { entries, snatPorts, snatBackends: snat.size, snatPortsMaxPerBackend: max };
}

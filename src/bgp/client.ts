/**
 * A typed client for gobgpd's gRPC API (gobgp v3, service `apipb.GobgpApi`),
 * over @grpc/grpc-js. The .proto files are loaded at run time from gobgp's
 * source package (Debian: golang-github-osrg-gobgp-dev), so the wire schema is
 * always the installed one; nothing of it is copied into the repository. The
 * image carries a copy taken from that package at build time, from the same
 * Debian release as its gobgpd (scripts/build-image-tree.sh).
 *
 * Only what a VIP announcer needs is wrapped: the global instance, peers,
 * IPv4 unicast /32 paths in the global RIB, an export policy, and peer events.
 * Every unary call has a deadline; failures become errors that name the RPC,
 * the object, and gobgpd's own message.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import fs from 'node:fs';
import path from 'node:path';
import { packagePath } from '../util/package-root.js';
import { formatCommunity, formatLargeCommunity, type LargeCommunity } from './communities.js';

/** Where Debian's golang-github-osrg-gobgp-dev installs gobgp's API protos. */
export const DEBIAN_PROTO_DIR = '/usr/share/gocode/src/github.com/osrg/gobgp/api';

/** Where the image's tree has its copy of them: `<package root>/api/gobgp` (none in a checkout). */
export const BUNDLED_PROTO_DIR = packagePath('api/gobgp');

/**
 * The protos loaded unless `protoDir` says otherwise: the image's copy when
 * there is one, else Debian's.
 */
export const DEFAULT_PROTO_DIR = fs.existsSync(path.join(BUNDLED_PROTO_DIR, 'gobgp.proto')) ? BUNDLED_PROTO_DIR : DEBIAN_PROTO_DIR;

/** Per-call deadline: the API is local, so a slow answer means a stuck gobgpd. */
const DEFAULT_CALL_TIMEOUT_MS = 3000;

/** `type_url` prefix for google.protobuf.Any (the protobuf convention gobgp uses). */
const ANY = 'type.googleapis.com/apipb.';

/** AFI 1 / SAFI 1 (RFC 4760 section 5): IPv4 unicast, the only family xlb announces. */
const IPV4_UNICAST = { afi: 'AFI_IP', safi: 'SAFI_UNICAST' };

/** ORIGIN IGP (RFC 4271 section 5.1.1): the VIP is originated here, not learned. */
const ORIGIN_IGP = 0;

/** Session states as gobgp reports them (RFC 4271 section 8.2.2 FSM states). */
export type SessionState = 'unknown' | 'idle' | 'connect' | 'active' | 'opensent' | 'openconfirm' | 'established';

/** Global BGP instance settings (`apipb.Global`). */
export interface GlobalConfig {
  /** Local AS number, 1..4294967295. */
  asn: number;
  /** BGP identifier, dotted quad (RFC 4271 section 4.2). */
  routerId: string;
  /**
   * TCP port for incoming sessions; -1 = do not listen (gobgp opens no
   * listener for ports <= 0 after mapping 0 to 179, so 0 means 179).
   */
  listenPort: number;
  /** Addresses to listen on when listening; default all. */
  listenAddresses?: string[];
}

/** One neighbor as given to AddPeer. Times are seconds. */
export interface PeerConfig {
  address: string;
  asn: number;
  /** TCP MD5 signature password (RFC 2385). */
  password?: string;
  /** Hold time proposed in OPEN, seconds (RFC 4271 section 4.2); gobgp default 90. */
  holdTime?: number;
  /** KEEPALIVE interval, seconds; gobgp default 30. */
  keepaliveTime?: number;
  /** eBGP multihop: the TTL of outgoing packets (1 = directly connected). */
  multihop?: number;
  /** Advertise the graceful restart capability (RFC 4724) for IPv4 unicast. */
  gracefulRestart?: boolean;
  /** Restart time advertised with graceful restart, seconds; default 120. */
  restartTime?: number;
  /** Remote TCP port; default 179. */
  port?: number;
  /** The AS presented to this neighbor when not the global one (gobgp's per-neighbor `local_asn`). */
  localAsn?: number;
}

/** A peer as ListPeer reports it. */
export interface PeerInfo {
  address: string;
  asn: number;
  state: SessionState;
  /** When the session last became Established (ms since epoch), if it is. */
  establishedAt?: number;
  /** Times the session left Established since gobgpd started (`flops`). */
  flops: number;
  /** IPv4 unicast prefixes received / accepted from the peer and advertised to it. */
  received: number;
  accepted: number;
  advertised: number;
  notificationsReceived: number;
  notificationsSent: number;
}

/** An IPv4 unicast path as xlb announces it: a /32 VIP with attributes. */
export interface VipPath {
  /** The VIP (the /32 prefix's address). */
  vip: string;
  nextHop: string;
  /** Standard communities as u32 wire values (RFC 1997). */
  communities: number[];
  largeCommunities: LargeCommunity[];
  /** LOCAL_PREF (RFC 4271 section 5.1.5); absent: not set. gobgpd sends it to iBGP neighbors only. */
  localPref?: number;
}

/** A path listed from the global RIB, with where it came from. */
export interface ListedPath extends VipPath {
  /** Prefix length; xlb's own paths are /32. */
  prefixLen: number;
  /** True when the path was learned from a peer, false when added through the API. */
  fromPeer: boolean;
  best: boolean;
}

/** A peer state change from WatchEvent. */
export interface PeerEvent {
  address: string;
  state: SessionState;
}

/** A statement of the export policy: add communities for paths sent to one neighbor. */
export interface NeighborCommunityRule {
  neighbor: string;
  communities: number[];
  largeCommunities: LargeCommunity[];
}

/** Options for {@link GobgpClient}. */
export interface GobgpClientOptions {
  /** Directory holding gobgp.proto, attribute.proto, capability.proto. */
  protoDir?: string;
  /** Deadline of each unary call, ms. */
  callTimeoutMs?: number;
}

type Callback = (err: grpc.ServiceError | null, res: any) => void;
type RawClient = grpc.Client & Record<string, (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb?: Callback) => any>;

const constructors = new Map<string, grpc.ServiceClientConstructor>();

/**
 * Load gobgp's service definition from `protoDir` (cached per directory).
 * google/protobuf/{any,empty,timestamp}.proto come from protobufjs' bundled copies.
 * @throws Error naming the directory when the protos are missing
 */
function serviceConstructor(protoDir: string): grpc.ServiceClientConstructor {
  const cached = constructors.get(protoDir);
  if (cached) return cached;
  if (!fs.existsSync(`${protoDir}/gobgp.proto`)) {
    throw new Error(`gobgp API protos not found in ${protoDir} (install golang-github-osrg-gobgp-dev or set bgp proto dir)`);
  }
  const def = protoLoader.loadSync(['gobgp.proto', 'attribute.proto', 'capability.proto'], {
    includeDirs: [protoDir],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
    // json: true makes protobufjs expand google.protobuf.Any into `{ '@type', ...fields }`.
    json: true,
  });
  const ctor = (grpc.loadPackageDefinition(def) as any).apipb.GobgpApi as grpc.ServiceClientConstructor;
  constructors.set(protoDir, ctor);
  return ctor;
}

/** gobgp's SessionState enum name → ours. */
function sessionState(s: unknown): SessionState {
  const v = String(s ?? 'UNKNOWN').toLowerCase();
  return (['idle', 'connect', 'active', 'opensent', 'openconfirm', 'established'] as const).find((x) => x === v) ?? 'unknown';
}

/** google.protobuf.Timestamp (as protobufjs gives it) → ms since epoch; undefined for unset or zero. */
function timestampMs(t: any): number | undefined {
  if (!t) return undefined;
  if (typeof t === 'string') return Date.parse(t) || undefined;
  const ms = Number(t.seconds ?? 0) * 1000 + Math.floor(Number(t.nanos ?? 0) / 1e6);
  return ms > 0 ? ms : undefined;
}

/** A VIP path → `apipb.Path` with NLRI and attributes packed as Any. */
function toApiPath(p: VipPath): Record<string, unknown> {
  const pattrs: Record<string, unknown>[] = [
    { '@type': `${ANY}OriginAttribute`, origin: ORIGIN_IGP },
    { '@type': `${ANY}NextHopAttribute`, next_hop: p.nextHop },
  ];
  if (p.localPref !== undefined) pattrs.push({ '@type': `${ANY}LocalPrefAttribute`, local_pref: p.localPref });
  if (p.communities.length) pattrs.push({ '@type': `${ANY}CommunitiesAttribute`, communities: p.communities });
  if (p.largeCommunities.length) {
    pattrs.push({
      '@type': `${ANY}LargeCommunitiesAttribute`,
      communities: p.largeCommunities.map((c) => ({ global_admin: c.globalAdmin, local_data1: c.localData1, local_data2: c.localData2 })),
    });
  }
  return {
    family: IPV4_UNICAST,
    nlri: { '@type': `${ANY}IPAddressPrefix`, prefix: p.vip, prefix_len: 32 },
    pattrs,
  };
}

/** `apipb.Path` from ListPath → {@link ListedPath}; undefined for NLRI types other than IPAddressPrefix. */
function fromApiPath(p: any): ListedPath | undefined {
  const nlri = p.nlri;
  if (!nlri || !String(nlri['@type']).endsWith('.IPAddressPrefix')) return undefined;
  const out: ListedPath = {
    vip: nlri.prefix,
    prefixLen: nlri.prefix_len,
    nextHop: '',
    communities: [],
    largeCommunities: [],
    // API-added paths have no source neighbor; gobgp prints the nil address as "<nil>".
    fromPeer: Boolean(p.neighbor_ip) && p.neighbor_ip !== '<nil>' && p.neighbor_ip !== '0.0.0.0',
    best: Boolean(p.best),
  };
  for (const a of p.pattrs ?? []) {
    const type = String(a['@type']);
    if (type.endsWith('.NextHopAttribute')) out.nextHop = a.next_hop;
    else if (type.endsWith('.MpReachNLRIAttribute')) out.nextHop ||= a.next_hops?.[0] ?? '';
    else if (type.endsWith('.LocalPrefAttribute')) out.localPref = Number(a.local_pref);
    else if (type.endsWith('.CommunitiesAttribute')) out.communities = (a.communities ?? []).map(Number);
    else if (type.endsWith('.LargeCommunitiesAttribute')) {
      out.largeCommunities = (a.communities ?? []).map((c: any) => ({
        globalAdmin: Number(c.global_admin),
        localData1: Number(c.local_data1),
        localData2: Number(c.local_data2),
      }));
    }
  }
  return out;
}

/** {@link PeerConfig} → `apipb.Peer`. */
function toApiPeer(p: PeerConfig): Record<string, unknown> {
  const family = IPV4_UNICAST;
  const peer: Record<string, any> = {
    conf: { neighbor_address: p.address, peer_asn: p.asn, auth_password: p.password ?? '', ...(p.localAsn ? { local_asn: p.localAsn } : {}) },
    afi_safis: [{ config: { family, enabled: true }, mp_graceful_restart: { config: { enabled: Boolean(p.gracefulRestart) } } }],
    timers: { config: { hold_time: p.holdTime ?? 0, keepalive_interval: p.keepaliveTime ?? 0 } },
    transport: { remote_port: p.port ?? 0 },
  };
  if (p.multihop !== undefined && p.multihop > 1) peer.ebgp_multihop = { enabled: true, multihop_ttl: p.multihop };
  if (p.gracefulRestart) peer.graceful_restart = { enabled: true, restart_time: p.restartTime ?? 120 };
  return peer;
}

/** `apipb.Peer` → {@link PeerInfo}. */
function fromApiPeer(p: any): PeerInfo {
  const st = p.state ?? {};
  const v4 = (p.afi_safis ?? []).find((a: any) => a.state?.family?.afi === 'AFI_IP' && a.state?.family?.safi === 'SAFI_UNICAST')?.state ?? {};
  const state = sessionState(st.session_state);
  return {
    address: st.neighbor_address || p.conf?.neighbor_address,
    asn: Number(st.peer_asn || p.conf?.peer_asn),
    state,
    establishedAt: state === 'established' ? timestampMs(p.timers?.state?.uptime) : undefined,
    flops: Number(st.flops ?? 0),
    received: Number(v4.received ?? 0),
    accepted: Number(v4.accepted ?? 0),
    advertised: Number(v4.advertised ?? 0),
    notificationsReceived: Number(st.messages?.received?.notification ?? 0),
    notificationsSent: Number(st.messages?.sent?.notification ?? 0),
  };
}

/**
 * gobgpd's gRPC API. Construct with a grpc-js target: `127.0.0.1:50051`, or
 * `unix:///run/xlb/gobgpd.sock` for gobgpd's `--api-hosts unix://...`
 * (a filesystem socket, reachable from any network namespace).
 */
export class GobgpClient {
  private readonly raw: RawClient;
  private readonly timeoutMs: number;

  /**
   * @throws Error when the protos cannot be loaded (see {@link DEFAULT_PROTO_DIR})
   */
  constructor(readonly target: string, opts: GobgpClientOptions = {}) {
    const Ctor = serviceConstructor(opts.protoDir ?? DEFAULT_PROTO_DIR);
    this.timeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.raw = new Ctor(target, grpc.credentials.createInsecure(), {
      // grpc-js defaults to 1 s growing to 120 s between reconnects; a local
      // gobgpd that restarts must be reachable again within a second or so.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    }) as RawClient;
  }

  private unary<T = any>(method: string, req: unknown, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const deadline = Date.now() + this.timeoutMs;
      this.raw[method](req, new grpc.Metadata(), { deadline }, (err, res) => {
        if (err) reject(new Error(`gobgpd ${method}${what ? ` ${what}` : ''} at ${this.target}: ${err.details || err.message}`, { cause: err }));
        else resolve(res as T);
      });
    });
  }

  private stream<T = any>(method: string, req: unknown, what: string): Promise<T[]> {
    return new Promise((resolve, reject) => {
      const out: T[] = [];
      const call = this.raw[method](req, new grpc.Metadata(), { deadline: Date.now() + this.timeoutMs });
      call.on('data', (d: T) => out.push(d));
      call.on('error', (err: grpc.ServiceError) =>
        reject(new Error(`gobgpd ${method}${what ? ` ${what}` : ''} at ${this.target}: ${err.details || err.message}`, { cause: err })),
      );
      call.on('end', () => resolve(out));
    });
  }

  /**
   * The running global config, or undefined when gobgpd has not been started
   * (a fresh gobgpd reports AS 0).
   */
  async getBgp(): Promise<GlobalConfig | undefined> {
    const res = await this.unary('GetBgp', {}, '');
    const g = res.global ?? {};
    if (!g.asn) return undefined;
    return { asn: g.asn, routerId: g.router_id, listenPort: g.listen_port, listenAddresses: g.listen_addresses };
  }

  /** Start the BGP instance (StartBgp). @throws Error when already started or the listener cannot bind */
  async startBgp(g: GlobalConfig): Promise<void> {
    await this.unary(
      'StartBgp',
      { global: { asn: g.asn, router_id: g.routerId, listen_port: g.listenPort, listen_addresses: g.listenAddresses ?? [] } },
      `AS ${g.asn} router-id ${g.routerId}`,
    );
  }

  /** Stop the BGP instance: closes all sessions and empties the RIB (StopBgp). */
  async stopBgp(): Promise<void> {
    await this.unary('StopBgp', {}, '');
  }

  /** Add a neighbor (AddPeer). @throws Error e.g. when the neighbor already exists */
  async addPeer(p: PeerConfig): Promise<void> {
    await this.unary('AddPeer', { peer: toApiPeer(p) }, `neighbor ${p.address}`);
  }

  /** Remove a neighbor, closing its session with a Cease NOTIFICATION (DeletePeer). */
  async deletePeer(address: string): Promise<void> {
    await this.unary('DeletePeer', { address }, `neighbor ${address}`);
  }

  /** All neighbors with session state and counters (ListPeer). */
  async listPeers(): Promise<PeerInfo[]> {
    const rows = await this.stream('ListPeer', { address: '', enableAdvertised: true }, '');
    return rows.map((r: any) => fromApiPeer(r.peer));
  }

  /** Announce (or replace the attributes of) a /32 in the global RIB (AddPath). */
  async addPath(p: VipPath): Promise<void> {
    await this.unary('AddPath', { table_type: 'GLOBAL', path: toApiPath(p) }, `${p.vip}/32`);
  }

  /** Withdraw a /32 added through the API (DeletePath, matched by prefix). */
  async deletePath(p: VipPath): Promise<void> {
    await this.unary('DeletePath', { table_type: 'GLOBAL', family: IPV4_UNICAST, path: toApiPath(p) }, `${p.vip}/32`);
  }

  /**
   * Paths of the IPv4 unicast global RIB (ListPath), every path of every
   * destination; callers filter on {@link ListedPath.fromPeer}.
   */
  async listPaths(): Promise<ListedPath[]> {
    const rows = await this.stream('ListPath', { table_type: 'GLOBAL', family: IPV4_UNICAST, name: '' }, 'global ipv4-unicast');
    const out: ListedPath[] = [];
    for (const r of rows as any[]) {
      for (const p of r.destination?.paths ?? []) {
        const lp = fromApiPath(p);
        if (lp) out.push(lp);
      }
    }
    return out;
  }

  /**
   * Replace gobgpd's whole routing policy with one global export policy that
   * adds per-neighbor communities, then accepts: SetPolicies (defined sets and
   * policies; it keeps assignments as they are) and SetPolicyAssignment
   * (`global` export). An empty rule list clears both. Idempotent, so it is
   * re-applied to every new gobgpd. Paths already sent are not re-sent.
   */
  async setNeighborCommunityPolicy(rules: NeighborCommunityRule[]): Promise<void> {
    const name = 'xlb-neighbor-communities';
    const definedSets = rules.map((r, i) => ({ defined_type: 'NEIGHBOR', name: `xlb-neighbor-${i}`, list: [`${r.neighbor}/32`] }));
    const statements = rules.map((r, i) => {
      const actions: Record<string, unknown> = { route_action: 'NONE' };
      if (r.communities.length) actions.community = { type: 'ADD', communities: r.communities.map(formatCommunity) };
      if (r.largeCommunities.length) actions.large_community = { type: 'ADD', communities: r.largeCommunities.map(formatLargeCommunity) };
      return { name: `${name}-${i}`, conditions: { neighbor_set: { type: 'ANY', name: `xlb-neighbor-${i}` } }, actions };
    });
    const assign = (policies: { name: string }[]) =>
      this.unary('SetPolicyAssignment', { assignment: { name: 'global', direction: 'EXPORT', policies, default_action: 'ACCEPT' } }, 'global export');
    // The assignment may only name existing policies: unassign before removing, define before assigning.
    if (!rules.length) await assign([]);
    await this.unary('SetPolicies', { defined_sets: definedSets, policies: rules.length ? [{ name, statements }] : [] }, 'neighbor communities');
    if (rules.length) await assign([{ name }]);
  }

  /**
   * Follow peer state changes (WatchEvent with a peer filter). gobgpd first
   * replays the current peers. `onEnd` is called once when the stream ends or
   * fails (e.g. gobgpd exited), with the error if any.
   * @returns a function that cancels the watch (onEnd is not called then)
   */
  watchPeers(onEvent: (e: PeerEvent) => void, onEnd: (err?: Error) => void): () => void {
    const call = this.raw.WatchEvent({ peer: {} }, new grpc.Metadata(), {});
    let cancelled = false;
    // grpc-js may report both 'error' and 'end'; the caller hears of the end once.
    const end = (err?: Error) => {
      if (cancelled) return;
      cancelled = true;
      onEnd(err);
    };
    call.on('data', (d: any) => {
      const p = d.peer?.peer;
      if (!p || d.peer.type === 'END_OF_INIT') return;
      onEvent({ address: p.state?.neighbor_address || p.conf?.neighbor_address, state: sessionState(p.state?.session_state) });
    });
    call.on('error', (err: grpc.ServiceError) => end(new Error(`gobgpd WatchEvent at ${this.target}: ${err.details || err.message}`, { cause: err })));
    call.on('end', () => end());
    return () => {
      cancelled = true;
      call.cancel();
    };
  }

  /** Close the channel; calls in flight fail. */
  close(): void {
    this.raw.close();
  }
}

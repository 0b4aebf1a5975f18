/**
 * BGPPeer resources (xlb.io/v1alpha1, cluster-scoped; CRD in
 * deploy/helm/xlb/crds/xlb.io_bgppeers.yaml): routers the nodes peer with,
 * added, changed and deleted while the agents run, after MetalLB's BGPPeer
 * (fields `peerAddress`, `peerASN`, `myASN`, `peerPort`, `holdTime`,
 * `keepaliveTime`, `ebgpMultiHop`, `nodeSelector`, `bfdProfile`).
 *
 * Every agent with a `bgp` section watches them. A peer whose
 * `spec.nodeSelector` matches this node's labels (the Node object's, as the
 * Kubernetes source reads them; absent: every node) becomes a neighbor of
 * this node's gobgpd next to `bgp.neighbors`; it is removed when the
 * resource is deleted or stops matching, and re-added when its settings
 * change (BgpAnnouncer.setResourcePeers).
 *
 * Checks the schema cannot make (each refuses the peer everywhere, with
 * `conditions[type=Accepted]` False, a reason and a message naming the
 * field, and a Warning Event):
 * - InvalidAddress: `peerAddress` cannot be a router's (0.0.0.0/8,
 *   loopback, multicast, class E and broadcast);
 * - InvalidTimers: a hold time of 1 or 2 s, or a keepalive not below the
 *   hold time (RFC 4271 sections 4.2 and 4.4);
 * - InvalidSelector: In/NotIn without values, Exists/DoesNotExist with some;
 * - InvalidSpec: anything else that is not as the schema says (an object
 *   written under an older schema).
 * And per node (the peer is skipped on that node only, reported in its
 * entry of `status.nodes`): the address of a configured neighbor
 * (`bgp.neighbors` wins), of an older BGPPeer selecting the same node, or
 * of the node itself.
 *
 * BFD (`bfdProfile`): gobgpd has no BFD (its API, api/gobgp.proto, has no
 * such message), so a peer that asks for it is used without it:
 * Accepted True with reason AcceptedWithoutBFD, and a Warning Event.
 *
 * Status: `conditions[type=Accepted]` and `observedGeneration` are the same
 * on every node, so each agent may write them; the write carries the
 * resourceVersion it was computed from, so that one agent's write wins, the
 * others find it done, and the Event is recorded once. Each node writes only
 * its own entry of `status.nodes` (`{ state, since, message }`: the session
 * state as gobgpd reports it, or `conflict`), and removes it when it no
 * longer peers with the router.
 */
import { isDeepStrictEqual } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { InputIssue } from '../model/types.js';
import type { RawObject } from '../sources/kubernetes/informer.js';
import { CUSTOM_RESOURCES, CustomResourceWatch, XLB_API_VERSION, conditionTime, writeSharedCondition, type CustomStatusApi } from '../sources/kubernetes/custom.js';
import type { EventSink } from '../sources/kubernetes/events.js';
import { parseLabelSelector, selectorMatches, type LabelSelector } from '../sources/kubernetes/selector.js';
import { apiErrorInfo, formatApiError } from '../sources/kubernetes/kubeconfig.js';
import { Backoff, type BackoffOptions } from '../sources/kubernetes/backoff.js';
import { ipToU32, isIPv4 } from '../util/ip.js';
import type { ResourcePeer } from './announcer.js';
import type { SessionState } from './client.js';

/** The kind, as its CRD names it. */
export const PEER_KIND = CUSTOM_RESOURCES.bgpPeers;

/** `conditions[type=Accepted].reason`. */
export type PeerReason = 'Accepted' | 'AcceptedWithoutBFD' | 'InvalidAddress' | 'InvalidTimers' | 'InvalidSelector' | 'InvalidSpec';

/** What xlb made of one BGPPeer, the same on every node. */
export interface ParsedPeer {
  name: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp: string;
  /** The neighbor, when the peer is accepted. */
  peer?: ResourcePeer;
  selector?: LabelSelector;
  reason: PeerReason;
  /** Empty when accepted without remark. */
  message: string;
  field?: string;
}

/** Address blocks that cannot hold a BGP router: [first, last, why]. */
const NOT_A_ROUTER: Array<[string, string, string]> = [
  ['0.0.0.0', '0.255.255.255', 'is in 0.0.0.0/8 ("this network", RFC 1122)'],
  ['127.0.0.0', '127.255.255.255', 'is a loopback address'],
  ['224.0.0.0', '239.255.255.255', 'is a multicast address'],
  ['240.0.0.0', '255.255.255.255', 'is in 240.0.0.0/4 (reserved) or the broadcast address'],
];

const isAsn = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 4294967295;
const isInt = (v: unknown, lo: number, hi: number): v is number => Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi;

/**
 * Read one BGPPeer (the same result on every node).
 * @param globalAsn `bgp.asn`: a `myASN` equal to it is not sent as a local AS
 */
export function parsePeerResource(obj: RawObject, globalAsn: number): ParsedPeer {
  const m = obj.metadata;
  const base = {
    name: m.name,
    uid: m.uid,
    resourceVersion: m.resourceVersion,
    generation: typeof m.generation === 'number' ? m.generation : undefined,
    creationTimestamp: String(m.creationTimestamp ?? ''),
  };
  const bad = (reason: PeerReason, field: string, message: string): ParsedPeer => ({ ...base, reason, field, message: `${field}: ${message}` });
  const spec = obj.spec as Record<string, unknown> | undefined;
  if (!spec || typeof spec !== 'object') return bad('InvalidSpec', 'spec', 'is required');
  const address = spec.peerAddress;
  if (typeof address !== 'string' || !isIPv4(address)) return bad('InvalidAddress', 'spec.peerAddress', `must be an IPv4 address (got ${JSON.stringify(address)})`);
  const n = ipToU32(address);
  for (const [first, last, why] of NOT_A_ROUTER) {
    if (n >= ipToU32(first) && n <= ipToU32(last)) return bad('InvalidAddress', 'spec.peerAddress', `${address} ${why}: it cannot be a BGP router's address`);
  }
  if (!isAsn(spec.peerASN)) return bad('InvalidSpec', 'spec.peerASN', `must be an AS number 1..4294967295 (got ${JSON.stringify(spec.peerASN)})`);
  if (spec.myASN !== undefined && spec.myASN !== null && !isAsn(spec.myASN)) return bad('InvalidSpec', 'spec.myASN', `must be an AS number 1..4294967295 (got ${JSON.stringify(spec.myASN)})`);
  if (spec.peerPort !== undefined && spec.peerPort !== null && !isInt(spec.peerPort, 1, 65535)) return bad('InvalidSpec', 'spec.peerPort', `must be a port 1..65535 (got ${JSON.stringify(spec.peerPort)})`);
  const hold = spec.holdTime ?? undefined;
  const keepalive = spec.keepaliveTime ?? undefined;
  if (hold !== undefined && (!isInt(hold, 0, 65535) || hold === 1 || hold === 2)) {
    return bad('InvalidTimers', 'spec.holdTime', `must be 0 or 3..65535 seconds (RFC 4271 section 4.2; got ${JSON.stringify(hold)})`);
  }
  if (keepalive !== undefined && !isInt(keepalive, 1, 65535)) return bad('InvalidTimers', 'spec.keepaliveTime', `must be 1..65535 seconds (got ${JSON.stringify(keepalive)})`);
  if (keepalive !== undefined && hold !== undefined && hold !== 0 && keepalive >= hold) {
    return bad('InvalidTimers', 'spec.keepaliveTime', `${keepalive} s must be below holdTime ${hold} s (RFC 4271 section 4.4)`);
  }
  const multihop = spec.ebgpMultiHop ?? undefined;
  if (multihop !== undefined && !isInt(multihop, 1, 255)) return bad('InvalidSpec', 'spec.ebgpMultiHop', `must be a TTL 1..255 (got ${JSON.stringify(multihop)})`);
  const gr = spec.gracefulRestart ?? undefined;
  if (gr !== undefined && typeof gr !== 'boolean') return bad('InvalidSpec', 'spec.gracefulRestart', 'must be true or false');
  const sel = parseLabelSelector(spec.nodeSelector, 'spec.nodeSelector');
  if (sel.error) return bad('InvalidSelector', sel.error.field, sel.error.message);
  const peer: ResourcePeer = {
    resource: m.name,
    address,
    asn: spec.peerASN,
    ...(isAsn(spec.myASN) && spec.myASN !== globalAsn ? { localAsn: spec.myASN } : {}),
    ...(isInt(spec.peerPort, 1, 65535) ? { port: spec.peerPort } : {}),
    ...(hold !== undefined ? { holdTime: hold as number } : {}),
    ...(keepalive !== undefined ? { keepaliveTime: keepalive as number } : {}),
    ...(multihop !== undefined ? { multihop: multihop as number } : {}),
    ...(gr ? { gracefulRestart: true } : {}),
  };
  const bfd = typeof spec.bfdProfile === 'string' && spec.bfdProfile !== '';
  return {
    ...base,
    peer,
    selector: sel.selector,
    reason: bfd ? 'AcceptedWithoutBFD' : 'Accepted',
    message: bfd ? `spec.bfdProfile: BFD is not supported (gobgpd has no BFD); the session runs without it` : '',
    ...(bfd ? { field: 'spec.bfdProfile' } : {}),
  };
}

/** What one node does with a peer. */
export interface NodePeerVerdict {
  /** The peer is for this node (accepted, and its selector matches). */
  selected: boolean;
  /** Why a selected peer is skipped on this node. */
  conflict?: string;
}

/**
 * The neighbors this node takes from the peers (older first), and per peer
 * whether it is for this node and, if skipped here, why.
 * @param configured `bgp.neighbors` addresses
 * @param own this node's addresses
 */
export function selectPeers(
  parsed: readonly ParsedPeer[],
  labels: Record<string, string>,
  configured: readonly string[],
  own: readonly string[],
): { peers: ResourcePeer[]; verdicts: Map<string, NodePeerVerdict> } {
  const peers: ResourcePeer[] = [];
  const verdicts = new Map<string, NodePeerVerdict>();
  const ordered = [...parsed].sort((a, b) => (a.creationTimestamp !== b.creationTimestamp ? (a.creationTimestamp < b.creationTimestamp ? -1 : 1) : a.name < b.name ? -1 : 1));
  for (const p of ordered) {
    if (!p.peer || !selectorMatches(p.selector, labels)) {
      verdicts.set(p.name, { selected: false });
      continue;
    }
    const a = p.peer.address;
    let conflict: string | undefined;
    if (configured.includes(a)) conflict = `spec.peerAddress: ${a} is a neighbor of this node's configuration (bgp.neighbors); that one is used`;
    else if (own.includes(a)) conflict = `spec.peerAddress: ${a} is this node's own address`;
    else {
      const older = peers.find((q) => q.address === a);
      if (older) conflict = `spec.peerAddress: BGPPeer ${older.resource} (older) peers with ${a} from this node; that one is used`;
    }
    verdicts.set(p.name, conflict ? { selected: true, conflict } : { selected: true });
    if (!conflict) peers.push(p.peer);
  }
  return { peers, verdicts };
}

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** Options of {@link PeerResources}. */
export interface PeerResourcesOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  log: Log;
  /** `bgp.asn`. */
  globalAsn: number;
  /** `bgp.neighbors` addresses. */
  configured: string[];
  /** Told the neighbors this node takes from the resources, after every change (BgpAnnouncer.setResourcePeers). Must not throw. */
  onPeers: (peers: ResourcePeer[]) => void;
  /** A neighbor's session state and last error (BgpAnnouncer.peerState). */
  session: (address: string) => { state: SessionState; lastError?: { message: string } } | undefined;
  status: CustomStatusApi;
  events: EventSink;
  /** Status writes wait this long for more changes, ms (default 500). */
  flushDelayMs?: number;
  backoff?: BackoffOptions;
  watchTimeoutSeconds?: () => number;
}

/** Follows the BGPPeer resources for this node. See the module comment. */
export class PeerResources {
  private readonly watch: CustomResourceWatch;
  private parsed: ParsedPeer[] = [];
  private verdicts = new Map<string, NodePeerVerdict>();
  private labels?: Record<string, string>;
  private own: string[] = [];
  /** The neighbors last handed on (a status write by another node changes nothing here). */
  private lastPeers?: string;
  /** Per peer name: the state this node last reported and since when. */
  private readonly since = new Map<string, { state: string; at: string }>();
  private flushTimer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private flushAgain = false;
  private stopped = false;
  private readonly retry: Backoff;
  private st = { statusWrites: 0, statusErrors: 0 };

  constructor(private readonly opts: PeerResourcesOptions) {
    this.retry = new Backoff({ initialMs: 500, maxMs: 30_000, ...opts.backoff });
    this.watch = new CustomResourceWatch({
      kubeConfig: opts.kubeConfig,
      kind: PEER_KIND,
      log: opts.log,
      backoff: opts.backoff,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      onChange: () => this.reconcile(),
    });
  }

  /** Start following the resources. Neighbors are handed on once the resources and this node's labels are known. */
  start(): void {
    this.watch.start();
  }

  /** Stop following; no status write starts after this resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.watch.stop();
    await this.flushing;
  }

  /** This node's labels and addresses (from its Node object); the peers are selected again. */
  setNode(labels: Record<string, string>, addresses: string[]): void {
    this.labels = { ...labels };
    this.own = [...addresses];
    this.reconcile();
  }

  /** A session changed state: this node's entries in the statuses follow. */
  sessionChanged(): void {
    this.scheduleFlush();
  }

  /** The peers as read, oldest first. */
  resources(): readonly ParsedPeer[] {
    return this.parsed;
  }

  /** Refused peers, peers skipped on this node, and why resources are not read: for `/v1/issues`. */
  issues(): InputIssue[] {
    const out = this.watch.issues();
    for (const p of this.parsed) {
      const object = `BGPPeer ${p.name}`;
      if (!p.peer) out.push({ object, field: p.field ?? 'spec', message: `${p.message.replace(/^[^:]*: /, '')} (${p.reason}); no node peers with it` });
      else if (p.reason === 'AcceptedWithoutBFD') out.push({ object, field: 'spec.bfdProfile', message: p.message.replace(/^[^:]*: /, '') });
      const c = this.verdicts.get(p.name)?.conflict;
      if (c) out.push({ object, field: 'spec.peerAddress', message: `${c.replace(/^[^:]*: /, '')}; skipped on this node (${this.opts.nodeName})` });
    }
    return out;
  }

  /** The watch's state and counters (resources read, refused, selected here; status writes). */
  stats() {
    return { state: this.watch.state(), resources: this.parsed.length, refused: this.parsed.filter((p) => !p.peer).length, selected: [...this.verdicts.values()].filter((v) => v.selected && !v.conflict).length, ...this.st };
  }

  // ---------------------------------------------------------------------------

  private reconcile(): void {
    if (this.stopped || this.watch.state() === 'pending' || !this.labels) return;
    const before = new Map(this.parsed.map((p) => [p.name, p]));
    this.parsed = this.watch.objects().map((o) => parsePeerResource(o, this.opts.globalAsn));
    for (const p of this.parsed) {
      const was = before.get(p.name);
      if (!p.peer && (!was || was.message !== p.message)) this.opts.log.warn({ peer: p.name, reason: p.reason, message: p.message }, 'BGPPeer refused');
    }
    const { peers, verdicts } = selectPeers(this.parsed, this.labels, this.opts.configured, this.own);
    for (const [name, v] of verdicts) if (v.conflict && this.verdicts.get(name)?.conflict !== v.conflict) this.opts.log.warn({ peer: name, message: v.conflict }, 'BGPPeer skipped on this node');
    this.verdicts = verdicts;
    const key = JSON.stringify(peers);
    if (key !== this.lastPeers) {
      this.lastPeers = key;
      try {
        this.opts.onPeers(peers);
      } catch (e) {
        this.opts.log.error({ err: (e as Error).message }, 'bgp: applying the BGPPeer neighbors failed');
      }
    }
    this.scheduleFlush();
  }

  private scheduleFlush(delay = this.opts.flushDelayMs ?? 500): void {
    if (this.stopped || !this.labels || this.watch.state() !== 'synced') return;
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
        if (this.flushAgain) {
          this.flushAgain = false;
          this.scheduleFlush();
        }
      });
    }, delay);
  }

  private async flush(): Promise<void> {
    const objects = new Map(this.watch.objects().map((o) => [o.metadata.name, o]));
    let failed = false;
    for (const p of this.parsed) {
      if (this.stopped) return;
      const obj = objects.get(p.name);
      if (!obj) continue;
      const current = (obj.status ?? {}) as { nodes?: Record<string, unknown> };
      try {
        await this.writeAccepted(p, obj);
        await this.writeNodeEntry(p, current);
      } catch (e) {
        const code = apiErrorInfo(e).code;
        if (code === 404) continue; // deleted meanwhile
        failed = true;
        this.st.statusErrors++;
        this.opts.log.warn({ peer: p.name, err: formatApiError(e) }, 'BGPPeer status write failed; retrying after backoff');
      }
    }
    for (const name of this.since.keys()) if (!objects.has(name)) this.since.delete(name);
    if (failed) {
      const delay = this.retry.next();
      setTimeout(() => this.scheduleFlush(0), delay).unref();
    } else this.retry.reset();
  }

  /** The Accepted condition, the same on every node: one agent's write wins, and it records the Event. */
  private async writeAccepted(p: ParsedPeer, obj: RawObject): Promise<void> {
    const written = await writeSharedCondition(this.opts.status, PEER_KIND, obj, {
      type: 'Accepted',
      status: p.peer ? 'True' : 'False',
      reason: p.reason,
      message: p.message || 'peering from the nodes its nodeSelector selects',
    });
    if (!written) return;
    this.st.statusWrites++;
    if (p.reason !== 'Accepted') {
      void this.opts.events.event({ apiVersion: XLB_API_VERSION, kind: PEER_KIND.kind, name: p.name, uid: p.uid, resourceVersion: p.resourceVersion }, 'Warning', p.reason, p.message);
    }
  }

  /** This node's entry of `status.nodes`: its session with the router, a conflict, or none. */
  private async writeNodeEntry(p: ParsedPeer, current: { nodes?: Record<string, unknown> }): Promise<void> {
    const node = this.opts.nodeName;
    const v = this.verdicts.get(p.name);
    const have = current.nodes && typeof current.nodes === 'object' ? current.nodes[node] : undefined;
    let want: Record<string, unknown> | null = null;
    if (v?.selected && p.peer) {
      const s = v.conflict ? undefined : this.opts.session(p.peer.address);
      const state = v.conflict ? 'conflict' : (s?.state ?? 'unknown');
      const written = have && typeof have === 'object' ? (have as { state?: unknown; since?: unknown }) : undefined;
      // After a restart, the time written by the previous agent still holds while the state does.
      const prev = this.since.get(p.name) ?? (written?.state === state && typeof written.since === 'string' ? { state, at: written.since } : undefined);
      const at = prev && prev.state === state ? prev.at : conditionTime();
      this.since.set(p.name, { state, at });
      const message = v.conflict ?? (state !== 'established' ? s?.lastError?.message : undefined);
      want = { state, since: at, ...(message ? { message: message.slice(0, 1024) } : {}) };
    } else this.since.delete(p.name);
    if (want === null ? have === undefined : isDeepStrictEqual(have, want)) return;
    await this.opts.status.patchStatus(PEER_KIND, p.name, { nodes: { [node]: want } });
    this.st.statusWrites++;
  }
}

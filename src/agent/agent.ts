/**
 * The node agent: configuration → datapath → source → service controller →
 * API. Syncs are serialised: while one runs, only the newest snapshot waits;
 * a failed sync (a map write error) is retried with backoff and the last good
 * state stays programmed. Bad input never stops the agent: the source and the
 * controller report it as issues and skip the object.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/schema.js';
import type { ClusterState, InputIssue, NodeInfo } from '../model/types.js';
import { Datapath } from '../datapath/datapath.js';
import { ifIndex } from '../datapath/bpf.js';
import type { LBMaps } from '../datapath/lbmaps.js';
import { ServiceController } from '../services/controller.js';
import { FileSource } from '../sources/file/index.js';
// The Kubernetes client and gRPC are loaded only when configured (import()
// below): @kubernetes/client-node alone adds ~80 MB of resident memory.
import type { KubernetesSource } from '../sources/kubernetes/index.js';
import type { KubeConfig } from '@kubernetes/client-node';
import type { IpamController, IpamStats } from '../ipam/index.js';
import type { PoolResources } from '../ipam/custom-pools.js';
import type { PeerResources } from '../bgp/peer-resources.js';
import type { AdvertisementResources } from '../bgp/advertisement-resources.js';
import type { PolicyResources } from '../l2/policy-resources.js';
import { annotationIssues } from '../ipam/annotations.js';
import { managedByXlb } from '../ipam/allocator.js';
import type { LeaseElector } from '../leader/index.js';
import type { Source } from '../sources/source.js';
import { createMetrics, type AgentMetrics } from '../metrics/metrics.js';
import { listenOptions, startApi, startMetrics, type AgentView } from '../api/server.js';
import type { ConntrackQuery, Flow as FlowTuple } from '../api/errors.js';
import { enrich, FlowBuffer, PodDirectory, type Flow, type FlowQuery, type PodRef } from '../flows/flows.js';
import { FLOW_READ_INTERVAL_MS, type FlowEventReader } from '../datapath/flow_events.js';
import type { FlowSource, HubbleServer } from '../hubble/observer.js';
import { flowHash } from '../maglev/index.js';
import { nodeAddresses } from './node.js';
import { NeighborManager, type NextHopKeeper } from '../datapath/neighbors.js';
import { NextHopWatcher } from '../datapath/nexthops.js';
import type { BgpAnnouncer, BgpStatus } from '../bgp/announcer.js';
import { announcedVips } from '../announce/desired.js';
import type { Announcer } from '../announce/announcer.js';
import { L2Announcer, type L2Status } from '../l2/announcer.js';
import { FakeL2Maps, type L2Maps } from '../datapath/l2maps.js';
import { HealthCheckServer, healthCheckServices } from '../services/healthcheck.js';
import { ensureCgroup2Root } from '../util/cgroup.js';

/**
 * Whether a listener can listen on `listen` (HOST:PORT, or unix:PATH whose
 * directory exists): checked before anything is attached.
 * @param field the configuration key (`api.listen`, `hubble.listen`, `metrics.listen`), named in the error
 * @throws Error naming `field` and why
 */
async function checkListen(listen: string, field: string): Promise<void> {
  const o = listenOptions(listen, field);
  if ('path' in o) {
    if (!fs.existsSync(path.dirname(o.path))) throw new Error(`${field} ${listen}: directory ${path.dirname(o.path)} does not exist`);
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (e) => reject(new Error(`${field} ${listen}: ${(e as Error).message}`)));
    srv.listen({ host: o.host, port: o.port, exclusive: true }, () => srv.close(() => resolve()));
  });
}

/** How often the agent looks at the node's interfaces (addresses, pod interfaces), ms. */
const INTERFACE_POLL_MS = 500;

/** `GET /v1/kubernetes`: the informers, and LB IPAM when configured. */
export interface KubernetesStatus {
  /** Every informer has listed once. */
  synced: boolean;
  /** This node's NodePort addresses from its Node object. */
  nodeAddresses: string[];
  informers: ReturnType<KubernetesSource['stats']>['informers'];
  /** Snapshots delivered to the controller. */
  snapshots: number;
  /** LB IPAM: the Lease holder, whether it is this agent, and its counters. */
  ipam?: IpamStats & { leader?: string; isLeader: boolean; poolResources?: ReturnType<PoolResources['stats']> };
}

/** Retry delays after a failed sync, ms (then stays at the last). */
const RETRY_BACKOFF_MS = [50, 100, 250, 500, 1000, 2000, 5000];
/**
 * How long readiness waits for the first sync's next hops to resolve, ms:
 * the kernel sends a managed entry's first ARP request at once and retries
 * each second (retrans_time), so 2 s covers one lost request or reply.
 */
const NEIGHBOR_WAIT_MS = 2000;

/** A running agent. Start with {@link Agent.start}, stop with {@link Agent.stop}. */
/** New input issues logged in one sync; the rest are counted in one line. */
export const LOG_ISSUES_PER_SYNC = 100;

export class Agent implements AgentView {
  readonly registry: Registry;
  private readonly metrics: AgentMetrics;
  private readonly controller: ServiceController;
  private source?: Source;
  private api?: FastifyInstance;
  /** The metrics listener (`metrics.listen`), when configured. */
  private metricsApi?: FastifyInstance;
  private isReady = false;
  private stopping = false;
  private pending?: { state: ClusterState; issues: InputIssue[] };
  private syncing = false;
  private retryTimer?: NodeJS.Timeout;
  private failures = 0;
  /** The last failure to read the source (e.g. a manifests file that does not parse), until the next good snapshot. */
  private sourceError?: InputIssue;
  private neighbors?: NextHopKeeper;
  private neighborsBusy = false;
  private neighborsAgain = false;
  /** The neighbour refresh running now, if any. */
  private neighborRefresh?: Promise<void>;
  /** The first full sync is programmed; readiness waits for its next hops. */
  private readying = false;
  private bgpAnnouncer?: BgpAnnouncer;
  private l2Announcer?: L2Announcer;
  private kubeSource?: KubernetesSource;
  private ipam?: IpamController;
  private ipamElector?: LeaseElector;
  /** LoadBalancerIPPool resources (with `ipam.customResources`). */
  private poolResources?: PoolResources;
  /** BGPPeer resources (with `bgp.customResources` and the Kubernetes source). */
  private peerResources?: PeerResources;
  /** BGPAdvertisement resources (with `bgp.customResources` and the Kubernetes source). */
  private bgpAdverts?: AdvertisementResources;
  /** L2AnnouncementPolicy resources (with `l2.customResources` and the Kubernetes source). */
  private l2Policies?: PolicyResources;
  /** Per Service model (a model object is replaced when its Service changes): the IPAM annotations xlb does not honour. */
  private annotationIssueCache = new WeakMap<object, InputIssue[]>();
  /** Annotations the announcers could not use, from the last sync. */
  private announceIssues: InputIssue[] = [];
  /** The last snapshot programmed (announcers read annotations from it). */
  private programmed?: ClusterState;
  /** Resolves after each completed sync (tests and benchmarks wait on it). */
  private syncWaiters: Array<() => void> = [];
  /** The last snapshot handed over (re-synced when the node changes). */
  private lastSnapshot?: { state: ClusterState; issues: InputIssue[] };
  /** kube-proxy's health check node ports (src/services/healthcheck.ts) and their problems. */
  private healthChecks?: HealthCheckServer;
  private healthIssues: InputIssue[] = [];
  /** Issues of the last sync, as logged (object, field, message). */
  private loggedIssues = new Set<string>();
  /** Polls the interfaces: node addresses (file source) and pod interfaces. */
  private interfaceTimer?: NodeJS.Timeout;
  /** The last flows (GET /v1/flows, `xlb observe`), the datapath's events reader and its timer. */
  private readonly flows: FlowBuffer;
  private readonly pods = new PodDirectory();
  private flowReader?: FlowEventReader;
  /** Hubble's Observer API (hubble.listen). */
  private hubble?: HubbleServer;
  private flowTimer?: NodeJS.Timeout;
  /** Flow events read since the agent started. */
  private flowsRead = 0;
  /** Bumps the next-hop generation on neighbour, route and link changes. */
  nextHops?: NextHopWatcher;
  lastSyncAt = 0;

  private constructor(
    readonly config: Config,
    readonly node: NodeInfo,
    private readonly log: Logger,
    private readonly dp: Datapath | undefined,
    private readonly lbmaps: LBMaps,
  ) {
    this.controller = new ServiceController(lbmaps, node, config.datapath.maglev);
    this.flows = new FlowBuffer(config.flows.buffer);
    this.metrics = createMetrics({
      services: () => this.controller.services(),
      maps: () => this.lbmaps,
      issueCount: () => this.issues().length,
      bgp: config.bgp ? () => this.bgpAnnouncer?.status() : undefined,
      l2: config.l2 ? () => this.l2Announcer?.status() : undefined,
      restored: () => this.dp?.restored ?? [],
      floodStateless: () => this.dp?.floodStateless(),
      nextHopChanges: () => this.nextHops?.changes,
      flowEvents: () => (this.flowReader ? { read: this.flowsRead, suppressed: this.flowReader.suppressed() } : undefined),
      ready: () => this.ready(),
      attachments: () => this.dp?.attachedProgramIds() ?? [],
      conntrack: dp ? () => dp.conntrackCounts() : undefined,
      sizes: { conntrackEntries: config.datapath.conntrackSize, snatPortsPerBackend: config.datapath.snatPorts.max - config.datapath.snatPorts.min + 1 },
      informers: config.source.kubernetes ? () => this.kubeSource?.stats().informers : undefined,
      ipam: config.ipam ? () => (this.ipam ? { leader: this.ipamElector?.isLeader() ?? false, stats: this.ipam.stats() } : undefined) : undefined,
    });
    this.registry = this.metrics.registry;
  }

  /**
   * Start the agent: check interfaces, load and attach the datapath, start the
   * API, then the source. Errors here are startup errors naming what failed
   * (interface, map, file, address); nothing is left attached.
   * @param opts.lbmaps use these maps instead of loading the datapath (tests)
   * @param opts.l2maps the ARP map to use with opts.lbmaps (tests); default in memory
   * @param opts.neighbors keeps next hops resolved (tests); default a NeighborManager with the datapath, none without
   */
  static async start(config: Config, log: Logger, opts: { lbmaps?: LBMaps; l2maps?: L2Maps; neighbors?: NextHopKeeper } = {}): Promise<Agent> {
    for (const name of config.interfaces) {
      try {
        ifIndex(name);
      } catch {
        throw new Error(`interfaces: interface ${name} does not exist on this node`);
      }
    }
    const addresses = config.node.addresses?.length ? config.node.addresses : nodeAddresses(config.interfaces);
    if (!addresses.length) throw new Error(`node.addresses: none given and interfaces ${config.interfaces.join(', ')} have no IPv4 address`);
    const node: NodeInfo = { name: config.node.name, addresses, labels: {} };
    // Every check that can fail runs before anything is attached: a start
    // that fails must leave the node as it was (serving with what an earlier
    // agent left, if any).
    const kubeConfig = config.source.kubernetes ? (await import('../sources/kubernetes/index.js')).loadKubeConfig(config.source.kubernetes.kubeconfig) : undefined;
    await checkListen(config.api.listen, 'api.listen');
    if (config.hubble.listen) await checkListen(config.hubble.listen, 'hubble.listen');
    if (config.metrics.listen) await checkListen(config.metrics.listen, 'metrics.listen');
    let dp: Datapath | undefined;
    if (!opts.lbmaps) {
      // The socket hooks serve every process below the cgroup v2 root (Cilium's cgroup-root).
      const socketLB = config.socketLB.enabled ? { cgroupRoot: config.socketLB.cgroupRoot ?? ensureCgroup2Root(), hostNamespaceOnly: config.socketLB.hostNamespaceOnly } : undefined;
      dp = Datapath.start({
        instance: config.datapath.instance,
        interfaces: config.interfaces,
        nodeAddress: addresses[0],
        xdpMode: config.datapath.xdpMode,
        snatPorts: config.datapath.snatPorts,
        conntrackSize: config.datapath.conntrackSize,
        newFlowsPerSecond: config.datapath.synFloodGuard.newFlowsPerSecond,
        eventsPerSecond: config.flows.eventsPerSecond,
        conntrackLifetimes: config.datapath.conntrackLifetimes,
        hairpinAddress: config.datapath.hairpinAddress,
        objectDir: config.datapath.objectDir ?? undefined,
        socketLB,
        warn: (m) => log.warn(m),
      });
      const kept = dp.restored.filter((r) => r.outcome === 'reused').map((r) => r.map);
      log.info({ attachments: dp.attachments, pinDir: dp.pinDir, mapsKept: kept.length }, kept.length ? 'datapath taken over: programs replaced in place, maps kept' : 'datapath attached');
      for (const r of dp.restored) {
        if (r.outcome === 'migrated') log.warn({ map: r.map, entries: r.entries }, `map ${r.map}: ${r.reason}; ${r.entries} entries carried over to the new layout`);
        if (r.outcome === 'fresh') log.warn({ map: r.map }, `map ${r.map}: ${r.reason}; it starts empty`);
      }
    }
    const agent = new Agent(config, node, log, dp, opts.lbmaps ?? dp!.lbmaps);
    if (dp) {
      const d = dp;
      agent.nextHops = new NextHopWatcher(() => d.invalidateNextHops(), (m) => log.warn(m));
      agent.nextHops.start();
    }
    agent.neighbors = opts.neighbors ?? (dp ? new NeighborManager(config.interfaces, (m) => log.warn(m)) : undefined);
    if (dp && config.flows.eventsPerSecond > 0) agent.readFlowEvents(dp);
    agent.healthChecks = new HealthCheckServer({ addresses: node.addresses, log: log.child({ component: 'healthcheck' }), proxyHealthy: () => agent.ready() });
    try {
      agent.watchInterfaces();
      agent.api = await startApi(agent, config.api.listen);
      log.info({ listen: config.api.listen }, 'api listening');
      if (config.hubble.listen) {
        const { startHubble } = await import('../hubble/observer.js');
        agent.hubble = await startHubble(agent.flowSource(), config.hubble.listen);
        log.info({ listen: agent.hubble.address }, agent.flowReader ? 'hubble observer api listening' : 'hubble observer api listening, but the datapath sends no flow events (flows.eventsPerSecond is 0): it will have no flows');
      }
      if (config.metrics.listen) {
        agent.metricsApi = await startMetrics(agent, config.metrics.listen);
        log.info({ listen: config.metrics.listen }, 'metrics listening');
      }
      if (config.bgp) {
        const { BgpAnnouncer } = await import('../bgp/announcer.js');
        agent.bgpAnnouncer = await BgpAnnouncer.start(config.bgp, {
          nodeAddress: addresses[0],
          log: log.child({ component: 'bgp' }),
          // Neighbors from BGPPeer resources too: none is removed before they are read.
          resourcePeers: kubeConfig !== undefined && config.bgp.customResources,
          onPeerState: () => agent.peerResources?.sessionChanged(),
        });
        log.info({ asn: config.bgp.asn, neighbors: config.bgp.neighbors.map((n) => n.address) }, 'bgp announcer started');
      }
      // One kubeconfig (loaded above) for the source, IPAM and the layer 2 Leases.
      if (config.l2) {
        const l2Log = log.child({ component: 'l2' });
        const leases = config.l2.ownership === 'lease' || (config.l2.ownership === 'auto' && kubeConfig !== undefined);
        agent.l2Announcer = await L2Announcer.start(config.l2, {
          nodeName: config.node.name,
          xdpInterfaces: config.interfaces,
          maps: dp ? dp.l2maps : (opts.l2maps ?? new FakeL2Maps()),
          log: l2Log,
          strategy: leases ? new (await import('../l2/lease-ownership.js')).LeaseOwnership({ nodeName: config.node.name, config: config.l2.lease, kubeConfig, log: l2Log }) : undefined,
        });
        log.info({ ownership: leases ? 'lease' : 'peers', peers: config.l2.peers.map((p) => p.name), interfaces: config.l2.interfaces ?? config.interfaces }, 'l2 announcer started');
      }
      if (kubeConfig) await agent.startKubernetes(config, node, log, kubeConfig);
      else {
        const file = config.source.file!.path;
        agent.source = new FileSource(file, log, {
          maxBytes: config.source.file!.maxBytes,
          settleMs: config.source.file!.settleMs,
          onError: (err) => {
            agent.sourceError = { object: `file ${file}`, field: err.line ? `line ${err.line}` : '(file)', message: `${err.message}; the last good state stays programmed` };
          },
          onRecovered: () => {
            agent.sourceError = undefined;
          },
        });
        await agent.source.start((snap) => agent.onSnapshot(snap.state, snap.issues));
      }
    } catch (e) {
      await agent.stop();
      throw e;
    }
    return agent;
  }

  /**
   * Follow the API server: informers on Services, EndpointSlices and this
   * node's Node (src/sources/kubernetes), and, with an `ipam` section, LB
   * IPAM run by whichever agent holds the IPAM Lease (src/ipam, src/leader).
   * Resolves once the informers have listed and the first snapshot was
   * handed to the controller.
   * @throws Error naming the API server when it does not sync in time (the
   *   source's start timeout), or the kubeconfig when it cannot be loaded
   */
  private async startKubernetes(config: Config, node: NodeInfo, log: Logger, kubeConfig: KubeConfig): Promise<void> {
    const { KubernetesSource } = await import('../sources/kubernetes/index.js');
    const source = new KubernetesSource({
      kubeConfig,
      nodeName: node.name,
      log: log.child({ component: 'kubernetes' }),
      maxObjects: config.source.kubernetes?.maxObjects,
      // NodePort addresses from the Node object unless configured, and its
      // labels (the zone of topology hints). The first call comes before the
      // first snapshot; a later change is followed at once (the source then
      // delivers a snapshot to re-sync with).
      onNode: (addresses, labels) => {
        const next: NodeInfo = { ...node, labels };
        if (!config.node.addresses?.length && addresses.length) next.addresses = addresses;
        this.setNode(next);
        // BGPPeers and L2AnnouncementPolicies select nodes by their labels.
        this.peerResources?.setNode(labels, next.addresses);
        this.bgpAdverts?.setNodeLabels(labels);
        this.l2Policies?.setNodeLabels(labels);
      },
    });
    this.source = this.kubeSource = source;
    if (config.bgp?.customResources && this.bgpAnnouncer) {
      const { PeerResources } = await import('../bgp/peer-resources.js');
      const { KubeCustomStatusApi } = await import('../sources/kubernetes/custom.js');
      const { EventRecorder } = await import('../sources/kubernetes/events.js');
      const bgp = this.bgpAnnouncer;
      const bgpLog = log.child({ component: 'bgp' });
      this.peerResources = new PeerResources({
        kubeConfig,
        nodeName: node.name,
        log: bgpLog,
        globalAsn: config.bgp.asn,
        configured: config.bgp.neighbors.map((n) => n.address),
        onPeers: (peers) => bgp.setResourcePeers(peers),
        session: (address) => bgp.peerState(address),
        status: new KubeCustomStatusApi(kubeConfig),
        events: new EventRecorder(kubeConfig, 'xlb-bgp', node.name, bgpLog),
      });
      this.peerResources.start();
      const { AdvertisementResources } = await import('../bgp/advertisement-resources.js');
      this.bgpAdverts = new AdvertisementResources({
        kubeConfig,
        nodeName: node.name,
        log: bgpLog,
        // Announcements start once the agent is ready; after that, an advertisement change applies at once.
        onChange: () => {
          if (this.isReady && !this.stopping) this.updateAnnouncements();
        },
        status: new KubeCustomStatusApi(kubeConfig),
        events: new EventRecorder(kubeConfig, 'xlb-bgp', node.name, bgpLog),
      });
      this.bgpAdverts.start();
    }
    if (config.l2?.customResources && this.l2Announcer) {
      const { PolicyResources } = await import('../l2/policy-resources.js');
      const { KubeCustomStatusApi } = await import('../sources/kubernetes/custom.js');
      const { EventRecorder } = await import('../sources/kubernetes/events.js');
      const l2Log = log.child({ component: 'l2' });
      this.l2Policies = new PolicyResources({
        kubeConfig,
        nodeName: node.name,
        interfaces: config.l2.interfaces ?? config.interfaces,
        log: l2Log,
        // Announcements start once the agent is ready; after that, a policy change applies at once.
        onChange: () => {
          if (this.isReady && !this.stopping) this.updateAnnouncements();
        },
        status: new KubeCustomStatusApi(kubeConfig),
        events: new EventRecorder(kubeConfig, 'xlb-l2', node.name, l2Log),
      });
      this.l2Policies.start();
    }
    // IPAM exists (and shows in /v1/kubernetes) before the agent is ready; it
    // campaigns once the informers have synced and the pool resources are
    // known (a leader that had not read them would release their addresses).
    if (config.ipam) await this.prepareIpam(config, node, log, source);
    this.poolResources?.start();
    await source.start((snap) => this.onSnapshot(snap.state, snap.issues));
    const pools = this.poolResources;
    if (!pools) this.ipamElector?.start();
    else {
      void pools.whenReady().then(() => {
        if (!this.stopping) this.ipamElector?.start();
      });
    }
  }

  /** LB IPAM and the elector that runs it (not started). */
  private async prepareIpam(config: Config, node: NodeInfo, log: Logger, source: KubernetesSource): Promise<void> {
    if (!config.ipam) return;
    const { IpamController, KubeIpamApi, poolsFromConfig } = await import('../ipam/index.js');
    const { LeaseElector, electorTimes } = await import('../leader/index.js');
    const le = config.ipam.leaderElection;
    const ipamLog = log.child({ component: 'ipam' });
    const api = new KubeIpamApi(source.kubeConfig, node.name, ipamLog);
    const configPools = poolsFromConfig(config.ipam);
    const ipam = new IpamController({
      feed: source.serviceFeed(),
      api,
      pools: configPools,
      log: ipamLog,
      onAssignmentsChanged: () => this.poolResources?.assignmentsChanged(),
    });
    this.ipam = ipam;
    if (config.ipam.customResources) {
      const { PoolResources } = await import('../ipam/custom-pools.js');
      const { KubeCustomStatusApi } = await import('../sources/kubernetes/custom.js');
      this.poolResources = new PoolResources({
        kubeConfig: source.kubeConfig,
        log: ipamLog,
        configPools,
        onPools: (pools) => {
          ipam.setPools(pools);
          // A BGPAdvertisement's ipPools may cover other VIPs now.
          if (this.bgpAdverts && this.isReady && !this.stopping) this.updateAnnouncements();
        },
        usage: () => ipam.stats().pools,
        status: new KubeCustomStatusApi(source.kubeConfig),
        events: api.events,
      });
    }
    this.ipamElector = new LeaseElector({
      kubeConfig: source.kubeConfig,
      namespace: le.namespace,
      name: le.leaseName,
      identity: node.name,
      log: ipamLog,
      ...electorTimes(le),
      onStartedLeading: () => {
        ipamLog.info({ lease: `${le.namespace}/${le.leaseName}` }, 'leading LB IPAM');
        ipam.start();
        this.poolResources?.setLeading(true);
      },
      onStoppedLeading: () => {
        ipamLog.info('no longer leading LB IPAM');
        this.poolResources?.setLeading(false);
        ipam.stop();
      },
    });
  }

  /**
   * Follow a change of this node: NodePort frontends follow its addresses,
   * topology its labels, the health check ports its addresses. Re-syncs the
   * last snapshot at once (a source that delivers a new one replaces it).
   */
  private setNode(next: NodeInfo): void {
    const node = this.node;
    const sameAddresses = next.addresses.join() === node.addresses.join();
    const sameLabels = JSON.stringify(Object.entries(next.labels ?? {}).sort()) === JSON.stringify(Object.entries(node.labels ?? {}).sort());
    if (sameAddresses && sameLabels) return;
    if (!sameAddresses) this.log.info({ was: node.addresses, now: next.addresses }, 'node addresses changed: NodePort frontends follow');
    node.addresses = next.addresses;
    node.labels = next.labels;
    this.controller.setNode(node);
    if (!sameAddresses) void this.healthChecks?.setAddresses(node.addresses).then((issues) => this.noteHealthIssues(issues));
    if (this.lastSnapshot && !this.pending) this.onSnapshot(this.lastSnapshot.state, this.lastSnapshot.issues);
  }

  /**
   * Poll the interfaces every {@link INTERFACE_POLL_MS}: with the file
   * source and no configured addresses, the node's addresses are those of
   * its external interfaces (an address added or removed moves the NodePort
   * frontends within a second); with `podInterfaces`, new pod interfaces get
   * tc. getifaddrs and if_nameindex are netlink reads: cheap, and right in a
   * network namespace.
   */
  private watchInterfaces(): void {
    const followAddresses = !this.config.node.addresses?.length && !this.config.source.kubernetes;
    const pods = this.dp && this.config.podInterfaces.length ? this.config.podInterfaces : undefined;
    if (!followAddresses && !pods) return;
    const poll = () => {
      if (this.stopping) return;
      if (followAddresses) {
        const now = nodeAddresses(this.config.interfaces);
        if (now.length && now.join() !== this.node.addresses.join()) this.setNode({ ...this.node, addresses: now });
      }
      if (pods && this.dp) {
        const { attached, failed } = this.dp.syncPodInterfaces(pods);
        if (attached.length) this.log.info({ interfaces: attached }, 'pod interfaces: tc attached');
        for (const f of failed) this.log.warn({ interface: f.name }, `pod interface ${f.name}: tc not attached: ${f.error}`);
      }
    };
    poll();
    this.interfaceTimer = setInterval(poll, INTERFACE_POLL_MS);
    this.interfaceTimer.unref();
  }

  /** Record the health check server's problems (reported in /v1/issues). */
  private noteHealthIssues(issues: InputIssue[]): void {
    this.healthIssues = issues;
  }

  /** Open and close health check node ports for what was just programmed. */
  private syncHealthChecks(): void {
    if (!this.healthChecks) return;
    const { services, issues } = healthCheckServices(this.controller.desiredServices());
    void this.healthChecks
      .sync(services)
      .then((more) => this.noteHealthIssues([...issues, ...more]))
      .catch((e) => this.log.warn({ err: (e as Error).message }, 'health check ports: sync failed'));
  }

  /**
   * Read the datapath's flow events into the flow buffer every 100 ms,
   * enriched with the names the model has then (flows.ts).
   */
  private readFlowEvents(dp: Datapath): void {
    // Wall clock minus CLOCK_MONOTONIC (process.hrtime's clock on Linux, bpf_ktime_get_ns's).
    const wallOffsetNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
    const ctx = {
      node: this.node.name,
      wallOffsetNs,
      serviceOf: (id: number) => this.controller.serviceKeyOf(id),
      tableSizeOf: (id: number) => this.controller.tableSizeOf(id),
      pods: this.pods,
    };
    try {
      this.flowReader = dp.flowEvents((e) => {
        this.flowsRead++;
        const flow = enrich(e, ctx);
        this.flows.add(flow);
        this.metrics.observeFlow(flow);
      });
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'flow events unavailable: GET /v1/flows and xlb observe will show none');
      return;
    }
    this.flowTimer = setInterval(() => {
      try {
        this.refreshPods();
        this.flowReader?.poll();
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'reading flow events failed');
      }
    }, FLOW_READ_INTERVAL_MS);
    this.flowTimer.unref();
  }

  /** The flow buffer as the Hubble Observer API reads it. */
  flowSource(): FlowSource {
    return {
      node: this.node.name,
      all: () => this.flows.all(),
      capacity: this.flows.capacity,
      seen: () => this.flows.seen,
      subscribe: (l) => this.flows.subscribe(l),
      poll: () => this.flowReader?.poll(),
    };
  }

  /** The pods' names follow the model, read again at most once a second. */
  private refreshPods(): void {
    const state = this.lastSnapshot?.state;
    if (state && state !== this.podsOf && Date.now() - this.podsAt >= 1000) {
      this.pods.update(state, Date.now());
      this.podsOf = state;
      this.podsAt = Date.now();
    }
  }
  /** The snapshot the pods' names were last read from, and when (ms since the epoch). */
  private podsOf?: ClusterState;
  private podsAt = 0;

  /** The pod at `ip` and its node, from the EndpointSlices (also with flow events off); undefined when none is known. */
  podOf(ip: string): PodRef | undefined {
    this.refreshPods();
    return this.pods.lookup(ip);
  }

  /** The last flows matching `q` (undefined: no datapath, or events off). */
  flowsView(q: FlowQuery): { flows: Flow[]; suppressed: string; capacity: number } | undefined {
    if (!this.flowReader) return undefined;
    this.flowReader.poll();
    return { flows: this.flows.query(q), suppressed: this.flowReader.suppressed().toString(), capacity: this.flows.capacity };
  }

  private onSnapshot(state: ClusterState, issues: InputIssue[]): void {
    this.sourceError = undefined;
    this.lastSnapshot = { state, issues };
    // A snapshot not yet synced is replaced: the new one's change hint must
    // cover the old one's too (ClusterState.changed), or be dropped.
    const skipped = this.pending?.state;
    if (skipped && state.changed) {
      state = skipped.changed
        ? { ...state, changed: { services: [...skipped.changed.services, ...state.changed.services], endpointSlices: [...skipped.changed.endpointSlices, ...state.changed.endpointSlices] } }
        : { services: state.services, endpointSlices: state.endpointSlices };
    }
    this.pending = { state, issues };
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.drain();
  }

  private drain(): void {
    if (this.syncing || this.stopping || !this.pending) return;
    this.syncing = true;
    const snap = this.pending;
    this.pending = undefined;
    const t0 = performance.now();
    try {
      const r = this.controller.sync(snap.state, snap.issues);
      this.metrics.observeSync((performance.now() - t0) / 1000, true);
      this.failures = 0;
      this.lastSyncAt = Date.now();
      // Each issue is logged when it appears, not at every sync (a cluster
      // may hold hundreds of headless Services, each an issue for as long as
      // it exists); /v1/issues lists them all.
      // At most LOG_ISSUES_PER_SYNC new ones are logged a sync, then one
      // line with the count of the rest.
      const logged = new Set<string>();
      let fresh = 0;
      for (const i of r.issues) {
        const id = `${i.object}\u0000${i.field}\u0000${i.message}`;
        logged.add(id);
        if (this.loggedIssues.has(id)) continue;
        if (++fresh <= LOG_ISSUES_PER_SYNC) this.log.warn({ object: i.object, field: i.field }, `input issue: ${i.object}: ${i.field}: ${i.message}`);
      }
      if (fresh > LOG_ISSUES_PER_SYNC) this.log.warn({ unlogged: fresh - LOG_ISSUES_PER_SYNC }, `${fresh - LOG_ISSUES_PER_SYNC} more new input issues not logged; /v1/issues lists them all`);
      this.loggedIssues = logged;
      this.log.info({ services: r.services, backends: r.backends, frontends: r.frontends, writes: r.writes, ms: +r.durationMs.toFixed(2) }, 'synced');
      this.programmed = snap.state;
      this.syncHealthChecks();
      const refresh = this.refreshNeighbors();
      if (this.isReady) this.updateAnnouncements();
      else if (!this.readying) this.readyOnceForwarding(refresh);
      const waiters = this.syncWaiters;
      this.syncWaiters = [];
      for (const w of waiters) w();
    } catch (e) {
      this.metrics.observeSync((performance.now() - t0) / 1000, false);
      const delay = RETRY_BACKOFF_MS[Math.min(this.failures, RETRY_BACKOFF_MS.length - 1)];
      this.failures++;
      this.log.error({ err: (e as Error).message, retryInMs: delay }, 'sync failed; last good state stays programmed, retrying');
      // Retry the same snapshot unless a newer one arrives first.
      if (!this.pending) this.pending = snap;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.drain();
      }, delay);
    } finally {
      this.syncing = false;
    }
    if (this.pending && !this.retryTimer) setImmediate(() => this.drain());
  }

  /**
   * Tell the announcers which VIPs this node announces now. Called after each
   * successful sync, so a VIP is announced only once its service is
   * programmed here. An announcer's refusal is logged; it keeps its last set.
   */
  private updateAnnouncements(): void {
    const announcers: Array<[string, Announcer]> = [];
    if (this.bgpAnnouncer) announcers.push(['bgp', this.bgpAnnouncer]);
    if (this.l2Announcer) announcers.push(['l2', this.l2Announcer]);
    if (!announcers.length || !this.programmed) return;
    const { vips, issues } = announcedVips(this.controller.desiredServices(), this.programmed, { externalIPs: this.config.announce.externalIPs });
    this.announceIssues = issues;
    for (const [name, a] of announcers) {
      let mine = vips;
      if (name === 'l2' && this.l2Policies) {
        // Layer 2 waits for the policies (and this node's labels): until then the VIPs answered stay as they are.
        if (!this.l2Policies.ready()) continue;
        mine = this.l2Policies.select(vips, this.programmed.services);
      }
      if (name === 'bgp' && this.bgpAdverts) {
        // BGP waits for the advertisements (and this node's labels): until then the routes stay as they are.
        if (!this.bgpAdverts.ready()) continue;
        mine = this.bgpAdverts.select(vips, this.programmed.services, this.ipam?.currentPools() ?? []);
      }
      a.setDesired(mine).catch((e) => this.log.error({ err: (e as Error).message }, `${name}: desired VIPs refused; the last set stays announced`));
    }
  }

  /**
   * After the first full sync: ready (and announcing) once the next hops of
   * that sync have MACs, or after {@link NEIGHBOR_WAIT_MS} with the
   * unresolved ones logged. Until then a packet this node receives for a
   * remote backend would go to the stack SNATed and be dropped there
   * (neighbors.ts), and a restarted agent starts without entries: its
   * predecessor removed them.
   */
  private readyOnceForwarding(refresh: Promise<void>): void {
    this.readying = true;
    const t0 = performance.now();
    refresh
      .then(() => this.neighbors?.awaitResolved(NEIGHBOR_WAIT_MS) ?? [])
      .then((unresolved) => {
        if (this.stopping) return;
        if (unresolved.length) this.log.warn({ nextHops: unresolved.map((h) => `${h.addr}%${h.dev}`), waitedMs: NEIGHBOR_WAIT_MS }, 'next hops not resolved: flows through them drop until they are');
        this.isReady = true;
        this.log.info({ nextHops: this.neighbors?.list().length ?? 0, unresolved: unresolved.length, neighborMs: Math.round(performance.now() - t0) }, 'ready: first full sync programmed, its next hops waited for');
        this.updateAnnouncements();
      })
      .catch((e) => this.log.error({ err: (e as Error).message }, 'becoming ready failed'));
  }

  /**
   * Keep next hops of remote backends resolved (one refresh at a time, coalesced).
   * @returns the refresh this call started, or the running one it was coalesced into (never rejects)
   */
  private refreshNeighbors(): Promise<void> {
    if (!this.neighbors) return Promise.resolve();
    if (this.neighborsBusy) {
      this.neighborsAgain = true;
      return this.neighborRefresh ?? Promise.resolve();
    }
    this.neighborsBusy = true;
    // From the translated ports, not the views: views are built on demand (controller.ts).
    const remote = new Set<string>();
    for (const s of this.controller.desiredServices()) for (const b of s.backends) if (!b.local) remote.add(b.addr);
    return (this.neighborRefresh = this.neighbors
      .ensure(remote)
      .catch((e) => this.log.warn({ err: (e as Error).message }, 'neighbour refresh failed'))
      .finally(() => {
        this.neighborsBusy = false;
        if (this.neighborsAgain && !this.stopping) {
          this.neighborsAgain = false;
          void this.refreshNeighbors();
        }
      }));
  }

  /** Resolves after the next completed sync. */
  nextSync(): Promise<void> {
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  healthy(): boolean {
    return !this.stopping;
  }
  ready(): boolean {
    return this.isReady && !this.stopping;
  }
  services() {
    return this.controller.services();
  }
  issues(): InputIssue[] {
    return [
      ...(this.sourceError ? [this.sourceError] : []),
      ...this.controller.issues(),
      ...this.announceIssues,
      ...this.healthIssues,
      ...(this.poolResources?.issues() ?? []),
      ...(this.peerResources?.issues() ?? []),
      ...(this.bgpAdverts?.issues() ?? []),
      ...(this.l2Policies?.issues() ?? []),
      ...this.ipamAnnotationIssues(),
    ];
  }

  /**
   * With LB IPAM: the annotations of the LoadBalancer Services xlb assigns
   * that it does not honour (MetalLB's and Cilium's sharing keys, unknown
   * ones: src/ipam/annotations.ts), on every agent (the leader also records
   * them as Events).
   */
  private ipamAnnotationIssues(): InputIssue[] {
    if (!this.config.ipam || !this.lastSnapshot) return [];
    const out: InputIssue[] = [];
    for (const [key, svc] of this.lastSnapshot.state.services) {
      if (svc.type !== 'LoadBalancer') continue;
      let issues = this.annotationIssueCache.get(svc);
      if (!issues) {
        issues = managedByXlb(svc) ? annotationIssues(`Service ${key}`, svc.annotations) : [];
        this.annotationIssueCache.set(svc, issues);
      }
      for (const i of issues) out.push(i);
    }
    return out;
  }
  bgp(): BgpStatus | undefined {
    return this.bgpAnnouncer?.status();
  }
  l2(): L2Status | undefined {
    return this.l2Announcer?.status();
  }
  /** The Kubernetes source's informers and LB IPAM; undefined with the file source. */
  kubernetes(): KubernetesStatus | undefined {
    if (!this.kubeSource) return undefined;
    return {
      synced: this.kubeSource.synced(),
      nodeAddresses: this.kubeSource.nodeAddresses(),
      ...this.kubeSource.stats(),
      ipam: this.ipam
        ? {
            leader: this.ipamElector?.leader(),
            isLeader: this.ipamElector?.isLeader() ?? false,
            ...this.ipam.stats(),
            ...(this.poolResources ? { poolResources: this.poolResources.stats() } : {}),
          }
        : undefined,
    };
  }
  datapath() {
    const drops = Object.fromEntries(Object.entries(this.lbmaps.readDrops()).map(([k, v]) => [k, v.toString()]));
    return {
      attachments: this.dp?.attachedProgramIds() ?? [],
      restored: this.dp?.restored ?? [],
      maps: this.lbmaps.fill(),
      pinDir: this.dp?.pinDir,
      neighbors: this.neighbors?.list() ?? [],
      drops,
    };
  }
  conntrack(query: ConntrackQuery) {
    if (!this.dp) return undefined;
    // A Service's ports: the service IDs of their cluster and local sets.
    const ids = new Set<number>();
    if (query.service) {
      for (const v of this.controller.services()) {
        if (`${v.namespace}/${v.name}` !== query.service) continue;
        if (v.serviceIds.cluster) ids.add(v.serviceIds.cluster);
        if (v.serviceIds.local) ids.add(v.serviceIds.local);
      }
    }
    return this.dp.conntrack(
      { src: query.src, dst: query.dst, backend: query.backend, protocol: query.protocol, limit: query.limit, ...(query.service ? { serviceIds: ids } : {}) },
      (id) => this.controller.serviceKeyOf(id),
    );
  }
  predict(key: string, flow: FlowTuple) {
    const t = this.controller.tableOf(key);
    if (!t) return undefined;
    const hash = flowHash({ saddr: flow.saddr, daddr: flow.daddr, sport: flow.sport, dport: flow.dport, proto: flow.protocol === 'TCP' ? 6 : 17 });
    const slot = hash % t.table.length;
    const id = t.table[slot];
    const view = this.controller.services().find((s) => s.key === key);
    const b = view?.backends.find((x) => x.id === id);
    return { backend: b ? { id, addr: b.addr, port: b.port } : null, hash, slot, tableSize: t.table.length };
  }

  /**
   * Stop: withdraw announcements first (routers stop sending here while the
   * datapath still serves), then the source, the API, and detach the
   * datapath and remove its pins. Idempotent.
   */
  async stop(opts: { uninstall?: boolean } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const uninstall = opts.uninstall === true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.interfaceTimer) clearInterval(this.interfaceTimer);
    if (this.flowTimer) clearInterval(this.flowTimer);
    this.flowReader?.close();
    this.flowReader = undefined;
    this.nextHops?.stop();
    await this.healthChecks?.stop().catch(() => undefined);
    await Promise.all([
      // A restart keeps the routes (gobgpd keeps running) and the VIPs (XDP keeps answering ARP).
      this.bgpAnnouncer?.stop({ keepRoutes: !uninstall }).catch((e) => this.log.warn({ err: (e as Error).message }, 'bgp stop failed')),
      // An uninstall hands the VIPs over at once: peers take them before this node's datapath goes.
      this.l2Announcer?.stop({ restart: !uninstall }).catch((e) => this.log.warn({ err: (e as Error).message }, 'l2 stop failed')),
    ]);
    // IPAM stops (and gives its Lease back) while the informers still feed it.
    await this.ipamElector?.stop().catch((e) => this.log.warn({ err: (e as Error).message }, 'ipam leader election stop failed'));
    this.ipam?.stop();
    await this.poolResources?.stop().catch((e) => this.log.warn({ err: (e as Error).message }, 'pool resources stop failed'));
    await this.peerResources?.stop().catch((e) => this.log.warn({ err: (e as Error).message }, 'BGPPeer resources stop failed'));
    await this.bgpAdverts?.stop().catch((e) => this.log.warn({ err: (e as Error).message }, 'BGPAdvertisement resources stop failed'));
    await this.l2Policies?.stop().catch((e) => this.log.warn({ err: (e as Error).message }, 'L2AnnouncementPolicy resources stop failed'));
    await this.source?.stop().catch((e) => this.log.warn({ err: (e as Error).message }, 'source stop failed'));
    await this.api?.close().catch(() => undefined);
    await this.metricsApi?.close().catch(() => undefined);
    this.hubble?.close();
    // The next hops stay resolved for the programs that keep forwarding.
    await this.neighbors?.stop({ keepEntries: !uninstall });
    this.dp?.stop({ uninstall });
    this.log.info(uninstall ? 'stopped: programs detached, pins removed' : 'stopped: the datapath keeps serving until the next agent takes it over');
  }
}

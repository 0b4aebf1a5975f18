/**
 * The `xlb` command line (commander): the agent, read-only views of a running
 * agent (status, services, maglev), the lab and the demo. Views print a
 * readable table by default and JSON with `--json`.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { packageVersion } from '../util/package-root.js';
import { pino } from 'pino';
import { apiGet, defaultApi } from './client.js';
import { printTable } from './table.js';
import { integerIn, parseAddressFilter, parseApiAddress, parseIPv4, parseNamespacedName, parseNodeName, parseOutput, parseStatusOutput, parseProtocol, parseRegex, parseTextJson, parseVerdict } from './args.js';
import type { ConntrackListing } from '../datapath/conntrack_list.js';
import { formatFlow, type Flow } from '../flows/flows.js';
import type { BgpStatus } from '../bgp/announcer.js';
import type { L2Status } from '../l2/announcer.js';
import type { ServiceView } from '../services/controller.js';

const program = new Command();
program
  .name('xlb')
  .description('eBPF load balancer and kube-proxy replacement')
  .version(`xlb ${packageVersion()}`, '-V, --version')
  .showHelpAfterError();

const apiOption = () => new Option('--api <addr>', 'agent API: HOST:PORT or unix:/path').default(defaultApi()).argParser(parseApiAddress);

program
  .command('agent')
  .description('run the node agent')
  .addOption(new Option('--config <file>', 'agent configuration (YAML); without it, the options below and the defaults').env('XLB_CONFIG'))
  .option('--kubeconfig <file>', 'follow this API server (sets source.kubernetes.kubeconfig, replacing the file\'s source)')
  .addOption(new Option('--node-name <name>', 'this node\'s name, as its Node object and EndpointSlices name it (sets node.name; left out everywhere: the host name, lower-cased)').env('XLB_NODE_NAME'))
  .addOption(new Option('--interfaces <list>', 'external interfaces, comma-separated (sets interfaces; left out everywhere: the interfaces of the IPv4 default routes)').env('XLB_INTERFACES'))
  .action(async (opts: { config?: string; kubeconfig?: string; nodeName?: string; interfaces?: string }, cmd: Command) => {
    const { loadConfig } = await import('../config/load.js');
    const { hostDiscovery } = await import('../config/discover.js');
    const { Agent } = await import('../agent/agent.js');
    // An empty variable (docker-compose's `${XLB_INTERFACES:-}`) is one not set.
    const given = (v: string | undefined) => (v?.trim() ? v.trim() : undefined);
    const configFile = given(opts.config);
    if (!configFile && !opts.kubeconfig) {
      console.error('xlb agent: give --config FILE (or XLB_CONFIG), or --kubeconfig FILE');
      process.exit(2);
    }
    let config;
    const discovered: import('../config/load.js').Discovered = {};
    try {
      config = loadConfig(
        configFile,
        {
          nodeName: given(opts.nodeName),
          kubeconfig: opts.kubeconfig,
          interfaces: given(opts.interfaces)?.split(',').map((s) => s.trim()).filter(Boolean),
        },
        { discovery: hostDiscovery, discovered },
      );
    } catch (e) {
      // A value from the environment is named with the key it set.
      const fromEnv = (['config', 'nodeName', 'interfaces'] as const)
        .filter((k) => cmd.getOptionValueSource(k) === 'env')
        .map((k) => ({ config: 'XLB_CONFIG', nodeName: 'XLB_NODE_NAME', interfaces: 'XLB_INTERFACES' })[k])
        .map((v) => `${v}=${JSON.stringify(process.env[v])}`);
      console.error(`xlb agent: ${(e as Error).message}${fromEnv.length ? `\n  (from the environment: ${fromEnv.join(', ')})` : ''}`);
      process.exit(2);
    }
    const log = pino({ level: config.log.level, base: { node: config.node.name } });
    if (discovered.nodeName) log.info({ nodeName: discovered.nodeName }, 'node.name left out: the host name');
    if (discovered.interfaces) log.info({ interfaces: discovered.interfaces }, 'interfaces left out: those of the IPv4 default routes');
    // The handlers come first: a SIGTERM at any moment of the start stops
    // the agent once the start has returned (the datapath, kept, stays
    // consistent: a restart is not an uninstall; `xlb uninstall` is).
    let agent: Awaited<ReturnType<typeof Agent.start>> | undefined;
    let stopping: string | undefined;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = signal;
      if (!agent) return; // the start is still running: it stops right after
      log.info({ signal }, 'shutting down');
      await agent.stop();
      process.exit(0);
    };
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    process.on('SIGINT', () => void shutdown('SIGINT'));
    try {
      agent = await Agent.start(config, log);
    } catch (e) {
      log.fatal({ err: (e as Error).message }, 'startup failed');
      console.error(`xlb agent: ${(e as Error).message}`);
      process.exit(1);
    }
    if (stopping) {
      log.info({ signal: stopping }, 'shutting down (signalled during start)');
      await agent.stop();
      process.exit(0);
    }
    // Nothing a bad input does may bring the agent down; log what escapes.
    process.on('uncaughtException', (e) => log.error({ err: e.message, stack: e.stack }, 'uncaught exception'));
    process.on('unhandledRejection', (e) => log.error({ err: String(e) }, 'unhandled rejection'));
  });

program
  .command('uninstall')
  .description("remove this node's datapath: XDP, tc and the socket hooks detached, maps and links unpinned (an agent's stop keeps them: a restart is not an uninstall)")
  .addOption(new Option('--config <file>', 'the agent configuration the datapath was started with').env('XLB_CONFIG'))
  .addOption(new Option('--interfaces <list>', 'external interfaces, comma-separated (sets interfaces; left out everywhere: those of the IPv4 default routes, as for the agent)').env('XLB_INTERFACES'))
  .option('--instance <name>', 'pin directory /sys/fs/bpf/xlb/<name> (sets datapath.instance)')
  .action(async (opts: { config?: string; interfaces?: string; instance?: string }) => {
    const { loadConfig } = await import('../config/load.js');
    const { hostDiscovery } = await import('../config/discover.js');
    const { uninstallDatapath } = await import('../datapath/datapath.js');
    const given = (v: string | undefined) => (v?.trim() ? v.trim() : undefined);
    let config;
    try {
      config = loadConfig(
        given(opts.config),
        { nodeName: 'uninstall', interfaces: given(opts.interfaces)?.split(',').map((x) => x.trim()).filter(Boolean) },
        { discovery: hostDiscovery },
      );
    } catch (e) {
      console.error(`xlb uninstall: ${(e as Error).message}`);
      process.exit(2);
    }
    const instance = opts.instance ?? config.datapath.instance;
    const done = uninstallDatapath({ instance, interfaces: config.interfaces, podInterfaces: config.podInterfaces });
    if (config.bgp) {
      const { stopKeptGobgpd } = await import('../bgp/gobgpd.js');
      const stopped = await stopKeptGobgpd(config.bgp);
      if (stopped) done.push(stopped);
    }
    for (const d of done) console.log(`removed: ${d}`);
    if (!done.length) console.log(`nothing of instance ${instance} found`);
  });

program
  .command('status')
  .description('each agent as cilium status shows it: readiness, programs, services, BGP sessions, layer 2 owners, LB IPAM; exits 1 when anything is not ready')
  .addOption(apiOption())
  .option('--lab [state-dir]', "every agent of a lab (its state directory, default /run/xlb-lab) instead of one --api")
  .option('--kubernetes', 'every agent of the cluster: the DaemonSet\'s pods, read through the API server (their metrics listener)')
  .option('--kubeconfig <file>', 'with --kubernetes: the kubeconfig (default: in-cluster, else ~/.kube/config)')
  .option('-n, --namespace <ns>', 'with --kubernetes: the agents\' namespace', 'xlb-system')
  .option('--selector <labels>', 'with --kubernetes: the agents\' pods', 'app.kubernetes.io/name=xlb')
  .option('--metrics-port <port>', 'with --kubernetes: the agents\' metrics.listen port', integerIn(1, 65535), 9877)
  .option('--wait', 'wait until everything is ready (or --wait-duration passes)')
  .option('--wait-duration <seconds>', 'how long --wait waits', integerIn(1, 3600), 300)
  .option('-o, --output <text|json|yaml>', 'a table, or JSON or YAML', parseStatusOutput, 'text')
  .option('--json', 'the same as -o json')
  .action(async (opts: {
    api: string; lab?: string | true; kubernetes?: boolean; kubeconfig?: string; namespace: string; selector: string; metricsPort: number;
    wait?: boolean; waitDuration: number; output: 'text' | 'json' | 'yaml'; json?: boolean;
  }) => {
    const { agentStatus, clusterStatus, notReady, statusRow, waitReady } = await import('./status.js');
    if (opts.kubernetes && opts.lab !== undefined) throw new Error('--kubernetes and --lab: give one of them');
    const read = async () => {
      if (opts.kubernetes) return clusterStatus({ kubeconfig: opts.kubeconfig, namespace: opts.namespace, selector: opts.selector, metricsPort: opts.metricsPort });
      if (opts.lab === undefined) return [await agentStatus(opts.api)];
      const { labStatus } = await import('../lab/index.js');
      const lab = await labStatus(opts.lab === true ? '/run/xlb-lab' : opts.lab);
      return Promise.all(lab.nodes.map((n) => agentStatus(n.api, n.name)));
    };
    const all = opts.wait ? await waitReady(read, opts.waitDuration * 1000) : await read();
    const problems = [...(all.length ? [] : [opts.kubernetes ? `no agent pods ${opts.selector} in namespace ${opts.namespace}` : 'no agents']), ...all.flatMap(notReady)];
    // As `cilium status`: scripts and probes can wait on it.
    if (problems.length) process.exitCode = 1;
    const output = opts.json ? 'json' : opts.output;
    const doc = all.length === 1 && opts.lab === undefined && !opts.kubernetes ? { ...all[0], ok: !problems.length, problems } : { ok: !problems.length, problems, agents: all };
    if (output === 'json') return console.log(JSON.stringify(doc, null, 2));
    if (output === 'yaml') return console.log((await import('yaml')).stringify(doc).trimEnd());
    printTable(all.map(statusRow), ['node', 'ready', 'programs', 'services', 'bgp', 'l2', 'ipam']);
    for (const s of all) {
      const drops = Object.entries(s.drops);
      if (drops.length) console.log(`${s.node} drops: ${drops.map(([r, n]) => `${r}=${n}`).join(' ')}`);
    }
    console.log(problems.length ? `not ready:\n  ${problems.join('\n  ')}` : 'all ready');
  });

const connectivity = program.command('connectivity').description('end-to-end checks of every path xlb serves, as cilium connectivity test');
connectivity
  .command('test')
  .description('deploy test services, check every path xlb serves (pod to ClusterIP and NodePort, node to ClusterIP, outside to LoadBalancer and NodePort, affinity, source ranges, traffic policy Local, DNS, hairpin), one line a check; the services are removed afterwards; exits 1 when a check fails')
  .option('--lab [state-dir]', 'the lab in this state directory (default /run/xlb-lab); the only environment so far')
  .option('--test <regex>', 'only the checks whose name matches', parseRegex)
  .option('--list', 'list the checks and exit')
  .option('-o, --output <text|json>', 'one line a check, or the whole report as JSON', parseTextJson, 'text')
  .action(async (opts: { lab?: string | true; test?: RegExp; list?: boolean; output: 'text' | 'json' }) => {
    const { CHECKS } = await import('../connectivity/checks.js');
    const { formatCheck, formatSummary, runConnectivityTest, selectChecks } = await import('../connectivity/run.js');
    if (opts.list) {
      for (const c of selectChecks(opts.test, CHECKS)) console.log(`${c.name.padEnd(28)} ${c.description}`);
      return;
    }
    selectChecks(opts.test, CHECKS); // a filter that matches nothing fails before anything is deployed
    const { LabEnvironment } = await import('../connectivity/lab.js');
    const env = await LabEnvironment.open(typeof opts.lab === 'string' ? opts.lab : '/run/xlb-lab');
    const text = opts.output === 'text';
    // Ctrl-C or a kill: the test services go before the process does.
    const stop = (signal: NodeJS.Signals) => {
      void env.cleanup().finally(() => {
        console.error(`xlb connectivity test: ${signal}: test services removed`);
        process.exit(signal === 'SIGINT' ? 130 : 143);
      });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (text) console.log(`xlb connectivity test: ${env.description}, LoadBalancer VIPs through ${env.announce === 'bgp' ? 'BGP' : env.announce === 'l2' ? 'layer 2' : 'static routes'}`);
    const report = await runConnectivityTest(env, {
      filter: opts.test,
      onProgress: text ? (line) => console.log(`  ${line}`) : undefined,
      onCheck: text ? (r) => console.log(formatCheck(r)) : undefined,
    });
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    if (text) for (const line of formatSummary(report)) console.log(line);
    else console.log(JSON.stringify(report, null, 2));
    if (!report.ok) process.exitCode = 1;
  });

program
  .command('completion')
  .description('a bash completion script for xlb: source <(xlb completion bash)')
  .argument('<shell>', 'bash', (v: string) => {
    if (v !== 'bash') throw new InvalidArgumentError('only bash is supported');
    return v;
  })
  .action(async () => {
    const { bashCompletion } = await import('./completion.js');
    console.log(bashCompletion(program));
  });

program
  .command('services')
  .description('programmed services, or one service with its backends')
  .argument('[namespace/name]', 'one service, as NAMESPACE/NAME', parseNamespacedName)
  .addOption(apiOption())
  .option('--json', 'print JSON')
  .action(async (which: string | undefined, opts: { api: string; json?: boolean }) => {
    if (!which) {
      const r = (await apiGet(opts.api, '/v1/services')) as { services: Array<Record<string, unknown>> };
      if (opts.json) return console.log(JSON.stringify(r, null, 2));
      printTable(
        r.services.map((s) => ({
          ...s,
          service: `${s.namespace}/${s.name}${s.port ? `:${s.port}` : ''}`,
          frontends: (s.frontends as Array<{ addr: string; port: number; served: boolean }>).filter((f) => f.served).map((f) => `${f.addr}:${f.port}`).join(' '),
          backends: `${s.readyBackends}/${s.backends}`,
        })),
        ['service', 'protocol', 'frontends', 'backends', 'tableSize'],
      );
      return;
    }
    const r = (await apiGet(opts.api, `/v1/services/${which}`)) as { ports: ServiceView[] };
    if (opts.json) return console.log(JSON.stringify(r, null, 2));
    r.ports.forEach((p, i) => {
      if (i) console.log('');
      printServicePort(p);
    });
  });

/**
 * One service port for `xlb services NAMESPACE/NAME`: its settings, each
 * frontend with the endpoints that take new flows from outside and from
 * inside the cluster, and its backends with their sets and Maglev shares.
 */
function printServicePort(p: ServiceView): void {
  const s = p.settings;
  const tables = [p.tableSize ? `cluster M=${p.tableSize}` : '', p.localTableSize ? `local M=${p.localTableSize}` : ''].filter(Boolean).join(', ');
  console.log(`${p.key} ${p.protocol}  type ${s.type}  Maglev tables: ${tables || 'none'}`);
  const settings = [
    `externalTrafficPolicy ${s.externalTrafficPolicy}`,
    `internalTrafficPolicy ${s.internalTrafficPolicy}`,
    `sessionAffinity ${s.sessionAffinity}${s.sessionAffinityTimeoutSeconds !== undefined ? ` (${s.sessionAffinityTimeoutSeconds}s)` : ''}`,
    `topology ${s.topology || 'none'}${s.trafficDistribution ? ` (trafficDistribution ${s.trafficDistribution})` : ''}`,
    `sourceRanges ${s.loadBalancerSourceRanges.length ? s.loadBalancerSourceRanges.join(',') : 'any'}`,
    ...(s.healthCheckNodePort !== undefined ? [`healthCheckNodePort ${s.healthCheckNodePort}`] : []),
    ...(s.hasAnyEndpoints ? [] : ['no usable endpoint: connections are refused']),
  ];
  console.log(`  ${settings.join('; ')}`);
  const path = (x?: ServiceView['frontends'][number]['fromInside']) => (x ? `${x.set}: ${x.endpoints.length ? x.endpoints.join(' ') : '(none)'}` : '-');
  printTable(
    p.frontends.map((f) => ({ frontend: `${f.addr}:${f.port}`, kind: f.kind, fromOutside: path(f.fromOutside), fromInside: path(f.fromInside) })),
    ['frontend', 'kind', 'fromOutside', 'fromInside'],
  );
  printTable(
    p.backends.map((b) => ({
      ...b,
      backend: `${b.addr}:${b.port}`,
      sets: [b.inCluster ? 'cluster' : '', b.inLocal ? 'local' : ''].filter(Boolean).join(',') || '-',
      share: `${(b.share * 100).toFixed(2)}%`,
      localShare: p.localTableSize ? `${(b.localShare * 100).toFixed(2)}%` : '',
    })),
    ['backend', 'id', 'nodeName', 'local', 'state', 'sets', 'share', ...(p.localTableSize ? ['localShare'] : [])],
  );
}

program
  .command('maglev')
  .description("a service's Maglev shares, or which backend a flow goes to")
  .argument('<namespace/name>', 'the service, as NAMESPACE/NAME', parseNamespacedName)
  .option('--flow <SRC:SPORT,DST:DPORT,PROTO>', 'predict the backend of this flow')
  .addOption(apiOption())
  .option('--json', 'print JSON')
  .action(async (which: string, opts: { api: string; json?: boolean; flow?: string }) => {
    if (opts.flow) {
      const r = (await apiGet(opts.api, `/v1/services/${which}/flow?flow=${encodeURIComponent(opts.flow)}`)) as {
        service: string;
        backend: { addr: string; port: number; id: number } | null;
        hash: number;
        slot: number;
        tableSize: number;
      };
      if (opts.json) return console.log(JSON.stringify(r, null, 2));
      console.log(`${opts.flow} → ${r.backend ? `${r.backend.addr}:${r.backend.port} (backend ${r.backend.id})` : 'no backend'}  [${r.service}, hash ${r.hash}, slot ${r.slot} of ${r.tableSize}]`);
      return;
    }
    const r = (await apiGet(opts.api, `/v1/services/${which}`)) as { ports: Array<{ key: string; tableSize: number; backends: Array<{ addr: string; port: number; share: number; inTable: boolean }> }> };
    if (opts.json) return console.log(JSON.stringify(r, null, 2));
    for (const p of r.ports) {
      console.log(`${p.key}: M = ${p.tableSize}`);
      printTable(p.backends.map((b) => ({ backend: `${b.addr}:${b.port}`, inTable: b.inTable, share: `${(b.share * 100).toFixed(2)}%` })), ['backend', 'inTable', 'share']);
    }
  });

const ct = program.command('ct').description("the node's conntrack table");
ct.command('list')
  .description('flows in conntrack (client, frontend, backend, SNAT port, state), filtered, with the totals: entries, SNAT ports per backend, affinity entries')
  .option('--src <addr[:port]>', 'client address, and port', parseAddressFilter)
  .option('--dst <addr[:port]>', 'frontend address (VIP, external IP, node IP, ClusterIP), and port', parseAddressFilter)
  .option('--backend <addr[:port]>', 'backend address, and port', parseAddressFilter)
  .option('--service <namespace/name>', "one Service's flows", parseNamespacedName)
  .option('--protocol <tcp|udp>', 'one protocol', parseProtocol)
  .option('--limit <n>', 'most flows listed (the totals count all)', integerIn(1, 100_000), 1000)
  .addOption(apiOption())
  .option('--json', 'print JSON')
  .action(async (opts: { src?: string; dst?: string; backend?: string; service?: string; protocol?: string; limit: number; api: string; json?: boolean }) => {
    const q = new URLSearchParams();
    for (const k of ['src', 'dst', 'backend', 'service', 'protocol'] as const) if (opts[k] !== undefined) q.set(k, opts[k]!);
    q.set('limit', String(opts.limit));
    const r = (await apiGet(opts.api, `/v1/conntrack?${q}`)) as ConntrackListing;
    if (opts.json) return console.log(JSON.stringify(r, null, 2));
    printTable(
      r.entries.map((e) => ({
        ...e,
        protocol: e.protocol.toLowerCase(),
        snat: e.snatPort ?? '-',
        service: e.service ?? `#${e.serviceId}`,
        idle: e.idleSeconds === undefined ? '-' : `${Math.round(e.idleSeconds)}s`,
        flags: e.flags.join(',') || '-',
      })),
      ['client', 'frontend', 'protocol', 'backend', 'snat', 'state', 'service', 'idle', 'flags'],
    );
    console.log(`${r.matched} of ${r.total} entries match${r.matched > r.entries.length ? ` (${r.entries.length} listed; --limit)` : ''}; affinity entries: ${r.affinityEntries}`);
    if (r.snatPortsByBackend.length) console.log(`SNAT ports in use: ${r.snatPortsByBackend.map((b) => `${b.backend}=${b.ports}`).join(' ')}`);
  });

program
  .command('observe')
  .description('flows the datapath placed or dropped, as hubble observe shows them: the last ones, then new ones with --follow')
  .option('--last <n>', 'the last N flows (default 20; with --since, all since then)', integerIn(1, 1_000_000))
  .option('--since <time>', 'flows since an RFC 3339 time or a duration back from now (30s, 5m, 2h)')
  .option('-f, --follow', 'keep printing new flows')
  .option('--from-ip <ip>', 'source address', parseIPv4)
  .option('--to-ip <ip>', 'destination address (VIP, external IP, node IP, ClusterIP)', parseIPv4)
  .option('--from-pod <namespace/name>', 'source pod', parseNamespacedName)
  .option('--to-service <namespace/name>', 'destination service', parseNamespacedName)
  .option('--verdict <FORWARDED|DROPPED>', 'verdict', parseVerdict)
  .option('--protocol <tcp|udp>', 'protocol', parseProtocol)
  .option('--port <n>', 'source or destination port', integerIn(1, 65535))
  .option('--node <name>', 'the node that saw the flow', parseNodeName)
  .option('-o, --output <compact|json>', 'one line per flow (compact) or one JSON object per flow', parseOutput, 'compact')
  .addOption(apiOption())
  .action(
    async (opts: {
      last?: number; since?: string; follow?: boolean; fromIp?: string; toIp?: string; fromPod?: string; toService?: string;
      verdict?: string; protocol?: string; port?: number; node?: string; output: 'compact' | 'json'; api: string;
    }) => {
      const filter = new URLSearchParams();
      const set = (k: string, v: string | number | undefined) => v !== undefined && filter.set(k, String(v));
      set('from-ip', opts.fromIp);
      set('to-ip', opts.toIp);
      set('from-pod', opts.fromPod);
      set('to-service', opts.toService);
      set('verdict', opts.verdict);
      set('protocol', opts.protocol);
      set('port', opts.port);
      set('node', opts.node);
      const print = (f: Flow) => console.log(opts.output === 'json' ? JSON.stringify(f) : formatFlow(f));
      const first = new URLSearchParams(filter);
      if (opts.since !== undefined) first.set('since', opts.since);
      if (opts.last !== undefined || opts.since === undefined) first.set('last', String(opts.last ?? 20));
      const r = (await apiGet(opts.api, `/v1/flows?${first}`)) as { flows: Flow[] };
      r.flows.forEach(print);
      if (!opts.follow) return;
      // New flows: those after the last one printed (flows of the same millisecond are told apart by content).
      let after = r.flows.length ? r.flows[r.flows.length - 1].timeMs : Date.now();
      let seen = new Set(r.flows.filter((f) => f.timeMs === after).map((f) => JSON.stringify(f)));
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        const next = new URLSearchParams(filter);
        next.set('since', new Date(after).toISOString());
        const more = ((await apiGet(opts.api, `/v1/flows?${next}`)) as { flows: Flow[] }).flows.filter((f) => !seen.has(JSON.stringify(f)));
        more.forEach(print);
        if (more.length) {
          const last = more[more.length - 1].timeMs;
          if (last !== after) seen = new Set();
          after = last;
          for (const f of more) if (f.timeMs === after) seen.add(JSON.stringify(f));
        }
      }
    },
  );

const bgp = program.command('bgp').description("the node's BGP announcer: sessions with routers and announced VIPs");
bgp
  .command('peers')
  .description('BGP sessions: state, uptime, prefixes received and sent, last error')
  .addOption(apiOption())
  .option('--json', 'print JSON')
  .action(async (opts: { api: string; json?: boolean }) => {
    const r = (await apiGet(opts.api, '/v1/bgp')) as BgpStatus;
    if (opts.json) return console.log(JSON.stringify(r.peers, null, 2));
    console.log(`AS ${r.asn}, router ID ${r.routerId}, gobgpd ${r.gobgpd.target}${r.gobgpd.pid ? ` (pid ${r.gobgpd.pid})` : ''}, restarts ${r.gobgpd.restarts}`);
    printTable(
      r.peers.map((p) => ({
        peer: p.address,
        asn: p.asn,
        from: p.resource ? `BGPPeer ${p.resource}` : 'config',
        state: p.state,
        uptime: p.uptimeSeconds === undefined ? '' : `${p.uptimeSeconds}s`,
        received: p.prefixes.received,
        sent: p.prefixes.advertised,
        flaps: p.flaps,
        lastError: p.lastError?.message ?? '',
      })),
      ['peer', 'asn', 'from', 'state', 'uptime', 'received', 'sent', 'flaps', 'lastError'],
    );
  });
bgp
  .command('routes')
  .description('VIPs this node announces (and those still pending)')
  .addOption(apiOption())
  .option('--json', 'print JSON')
  .action(async (opts: { api: string; json?: boolean }) => {
    const r = (await apiGet(opts.api, '/v1/bgp')) as BgpStatus;
    if (opts.json) return console.log(JSON.stringify({ announced: r.announced, pending: r.pending }, null, 2));
    printTable(
      [
        ...r.announced.map((a) => ({ prefix: `${a.vip}/32`, nextHop: a.nextHop, service: a.service, communities: [...a.communities, ...a.largeCommunities].join(' '), state: 'announced' })),
        ...r.pending.map((v) => ({ prefix: `${v}/32`, nextHop: '', service: '', communities: '', state: 'pending' })),
      ],
      ['prefix', 'nextHop', 'service', 'communities', 'state'],
    );
  });

program
  .command('l2')
  .description('layer 2 announcements: which node answers ARP for each VIP, on which interfaces, since when; peers')
  .addOption(apiOption())
  .option('--json', 'print JSON')
  .action(async (opts: { api: string; json?: boolean }) => {
    const r = (await apiGet(opts.api, '/v1/l2')) as L2Status;
    if (opts.json) return console.log(JSON.stringify(r, null, 2));
    console.log(`node ${r.node}, ownership by ${r.ownership}, links ${r.health}, takeovers ${r.takeovers}`);
    printTable(
      r.vips.map((v) => ({ vip: v.vip, service: v.service, owner: v.owner ?? '(none)', here: v.local ? 'yes' : 'no', interfaces: v.interfaces.join(' '), since: v.since ?? '' })),
      ['vip', 'service', 'owner', 'here', 'interfaces', 'since'],
    );
    printTable(
      r.peers.map((p) => ({ peer: p.name, address: `${p.address}:${p.port}`, alive: p.alive ? 'yes' : p.left ? 'left' : 'no', lastSeen: p.lastSeenMs === null ? 'never' : `${p.lastSeenMs} ms ago`, claims: p.claims })),
      ['peer', 'address', 'alive', 'lastSeen', 'claims'],
    );
  });

const lab = program.command('lab').description('a lab of network namespaces: client, router, nodes with pods, one agent per node');
lab
  .command('up')
  .option('--nodes <n>', 'number of nodes, 1..50', integerIn(1, 50), 2)
  .option('--manifests <file>', 'Kubernetes manifests for the agents (default examples/lab-services.yaml)')
  .option('--state-dir <dir>', 'where the lab keeps its state', '/run/xlb-lab')
  .option('--no-agents', 'wire the namespaces only')
  .addOption(new Option('--announce <mode>', 'how the client reaches VIPs: BGP from the agents to the router (BIRD), static routes, or l2 (client on the nodes\' segment, ARP answered by the owner)').choices(['bgp', 'static', 'l2']).default('bgp'))
  .option('--json', 'print the status as JSON')
  .action(async (opts: { nodes: number; manifests?: string; stateDir: string; agents: boolean; announce: 'bgp' | 'static' | 'l2'; json?: boolean }) => {
    const { labUp } = await import('../lab/index.js');
    const st = await labUp({ nodes: opts.nodes, manifests: opts.manifests, stateDir: opts.stateDir, agents: opts.agents, announce: opts.announce });
    console.log(opts.json ? JSON.stringify(st, null, 2) : `lab up: ${st.nodes.length} nodes, client ${st.client}, state ${opts.stateDir}`);
  });
lab
  .command('status')
  .option('--state-dir <dir>', 'where the lab keeps its state', '/run/xlb-lab')
  .option('--json', 'print JSON')
  .action(async (opts: { stateDir: string; json?: boolean }) => {
    const { labStatus } = await import('../lab/index.js');
    const st = await labStatus(opts.stateDir);
    if (opts.json) return console.log(JSON.stringify(st, null, 2));
    console.log(`client ${st.client}   router ${st.router} (${st.announce === 'bgp' ? `BIRD, birdc -s ${st.routerBirdSocket}` : st.announce === 'l2' ? 'layer 2: client on the fabric' : 'static routes'})   manifests ${st.manifests}`);
    printTable(st.nodes as unknown as Array<Record<string, unknown>>, ['name', 'netns', 'ip', 'mac', 'agentPid', 'api', 'cgroup']);
    printTable(
      [...st.pods, ...(st.clusterDns?.pods ?? [])].map((p) => ({ ...p, pod: p.namespace ? `${p.namespace}/${p.name}` : p.name })),
      ['pod', 'node', 'ip', 'netns', 'pid', 'cgroup'],
    );
    if (st.clusterDns) console.log(`cluster DNS: kube-system/kube-dns ${st.clusterDns.clusterIP} (dnsmasq in ${st.clusterDns.pods.map((p) => p.name).join(', ')})`);
    printTable(
      st.services.map((s) => ({ ...s, service: `${s.namespace}/${s.name}`, frontend: `${s.vip}:${s.port}/${s.protocol}`, backends: s.backends.join(' ') })),
      ['service', 'frontend', 'backends'],
    );
  });
lab
  .command('exec')
  .description("run a command as a pod (its cgroup, network namespace and resolv.conf: cluster DNS) or as a node's own process (its host cgroup and network namespace)")
  .argument('<pod|node>', 'a pod (n1p1, n1dns, ...) or a node (node1, ...)')
  .argument('<command...>', 'the command and its arguments, after --')
  .option('--state-dir <dir>', 'where the lab keeps its state', '/run/xlb-lab')
  .usage('[--state-dir DIR] <pod|node> -- COMMAND [ARGS...]')
  .action(async (target: string, command: string[], opts: { stateDir: string }) => {
    const { labExecArgv } = await import('../lab/index.js');
    const { spawnSync } = await import('node:child_process');
    const { constants } = await import('node:os');
    const argv = labExecArgv(opts.stateDir, target, command);
    const r = spawnSync(argv[0], argv.slice(1), { stdio: 'inherit' });
    if (r.error) throw r.error;
    // The command's exit status; killed by a signal: 128 + its number, as a shell reports it.
    process.exit(r.status ?? 128 + (r.signal ? (constants.signals[r.signal] ?? 0) : 0));
  });
lab
  .command('down')
  .option('--state-dir <dir>', 'where the lab keeps its state', '/run/xlb-lab')
  .action(async (opts: { stateDir: string }) => {
    const { labDown } = await import('../lab/index.js');
    await labDown(opts.stateDir);
    console.log('lab down');
  });

program
  .command('demo')
  .description('bring the lab up, send traffic through xlb, show the Maglev distribution and flow stickiness, take the lab down')
  .option('--nodes <n>', 'number of nodes, 1..50', integerIn(1, 50), 2)
  .option('--requests <n>', 'HTTP requests per VIP (a new connection each)', integerIn(1, 10_000_000), 1000)
  .option('--datagrams <n>', 'UDP datagrams per UDP VIP', integerIn(1, 10_000_000), 200)
  .option('--keep', 'leave the lab up afterwards')
  .option('--state-dir <dir>', 'where the lab keeps its state', '/run/xlb-lab')
  .action(async (opts: { nodes: number; requests: number; datagrams: number; keep?: boolean; stateDir: string }) => {
    const { runDemo } = await import('../demo/demo.js');
    await runDemo(opts);
  });

program.parseAsync(process.argv).catch((e: Error) => {
  console.error(`xlb: ${e.message}`);
  process.exit(1);
});

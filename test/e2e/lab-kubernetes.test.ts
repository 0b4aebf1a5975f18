/**
 * The agent following an API server end to end: the lab's two agents are
 * restarted against the in-test API server (test/helpers/fake-apiserver.ts,
 * the real list/watch protocol), one with `xlb agent --kubeconfig FILE`, the
 * other with `source.kubernetes` in its configuration file, both with LB
 * IPAM. The client's HTTP goes through the XDP datapath of whichever node
 * the router's static ECMP route picks.
 *
 * The API server listens on the test's loopback; each node reaches it on its
 * own loopback through two socat relays (node TCP → unix socket → test TCP),
 * so the kubeconfig's `http://127.0.0.1:PORT` is right in every namespace.
 *
 * Run as root: node --import tsx --test test/e2e/lab-kubernetes.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { labDown, labExec, labStartAgent, labStopAgent, labUp, type LabNode, type LabStatus } from '../../src/lab/index.js';
import { apiGet } from '../../src/cli/client.js';
import type { CommandError } from '../../src/lab/sh.js';
import { waitFor } from '../../src/util/wait.js';
import { service, slice } from '../../src/lab/manifests.js';
import type { KubernetesStatus } from '../../src/agent/agent.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { checkMetrics } from '../helpers/promtool.js';

const suffix = randomBytes(3).toString('hex');
const stateDir = `/run/xlb-test-k8s-${suffix}`;
const relaySocket = `${stateDir}-api.sock`;
const POOL_FIRST = 200;
const POOL = `192.0.2.${POOL_FIRST}-192.0.2.${POOL_FIRST + 9}`;

let lab: LabStatus;
let api: FakeApiServer;
const relays: ChildProcess[] = [];

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function relay(argv: string[]): ChildProcess {
  const p = spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
  relays.push(p);
  return p;
}

async function kube(n: LabNode): Promise<KubernetesStatus> {
  return (await apiGet(n.api, '/v1/kubernetes')) as KubernetesStatus;
}

async function servicesOf(n: LabNode): Promise<Array<{ namespace: string; name: string; backends: number }>> {
  return ((await apiGet(n.api, '/v1/services')) as { services: never }).services;
}

/** The backend pod that answers HTTP on `vip` from the client, or '' when none does within 1 s. */
async function curlPod(vip: string): Promise<string> {
  const out = await labExec(lab.client, ['curl', '-sS', '-m', '1', `http://${vip}/`]).catch((e: Error) => {
    if (process.env.XLB_TEST_DEBUG) console.log(`curl ${vip}: ${e.message}`);
    return '';
  });
  return /^n\dp\d /.test(out) ? out.split(' ')[0] : '';
}

/**
 * Start a node's agent (`start`) and, the moment its /readyz says ready
 * (polled every 2 ms), send `n` requests to `vip` from the client at once:
 * one curl with `n` parallel connections, each from its own source port, so
 * that the router's ECMP hash sends about half of them to the restarted
 * node. Resolves with each request's HTTP code ('000': no answer in 1 s).
 */
async function burstAtReady(node: LabNode, vip: string, n: number, start: () => Promise<unknown>): Promise<string[]> {
  const started = start();
  let failed: unknown;
  started.catch((e) => (failed = e));
  await waitFor(
    async () => {
      if (failed) throw failed;
      return ((await apiGet(node.api, '/readyz', { allowError: true, timeoutMs: 200 }).catch(() => ({}))) as { status?: string }).status === 'ready';
    },
    30000,
    `${node.name}'s agent to report ready`,
    2,
  );
  const argv = ['curl', '--parallel', '--parallel-immediate', '--parallel-max', String(n), '-s', '-m', '1', '-w', '\n%{http_code}\n'];
  for (let i = 0; i < n; i++) argv.push('-o', '/dev/null', `http://${vip}/`);
  const out = await labExec(lab.client, argv).catch((e: CommandError) => e.stdout ?? '');
  await started;
  return out.split('\n').filter((l) => /^\d{3}$/.test(l));
}

function ingressOf(name: string): string | undefined {
  const svc = api.get('services', 'default', name) as Obj | undefined;
  return svc?.status?.loadBalancer?.ingress?.[0]?.ip;
}

const LEADER = { namespace: 'xlb-system', leaseName: 'xlb-ipam', leaseDurationSeconds: 3, renewDeadlineSeconds: 2, retryPeriodSeconds: 0.5 };

before(async () => {
  lab = await labUp({ nodes: 2, podsPerNode: 2, stateDir, announce: 'static' });
  api = await FakeApiServer.start({ bookmarkIntervalMs: 1000 });
  // The lab's own objects, their VIPs in status as another load balancer
  // controller (their loadBalancerClass) wrote them: xlb serves them, as
  // kube-proxy serves any status address, and its IPAM leaves them alone.
  // Then the Node objects, whose addresses become NodePort frontends.
  const docs = parseAllDocuments(fs.readFileSync(lab.manifests, 'utf8')).map((d) => d.toJS() as Obj);
  for (const o of docs.flatMap((d) => (d?.kind === 'List' ? d.items : [d])).filter(Boolean)) {
    if (o.kind === 'Service') {
      if (o.spec.type === 'LoadBalancer') o.spec.loadBalancerClass = 'example.com/other-lb';
      api.upsert('services', o);
    } else api.upsert('endpointslices', o);
  }
  for (const n of lab.nodes) {
    api.upsert('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: n.name }, status: { addresses: [{ type: 'InternalIP', address: n.ip }, { type: 'Hostname', address: n.name }] } });
  }
  const port = new URL(api.url).port;
  relay(['socat', `UNIX-LISTEN:${relaySocket},fork,unlink-early`, `TCP:127.0.0.1:${port}`]);
  await waitFor(() => fs.existsSync(relaySocket), 5000, 'the unix relay socket');
  for (const n of lab.nodes) relay(['ip', 'netns', 'exec', n.netns, 'socat', `TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr`, `UNIX-CONNECT:${relaySocket}`]);
  const ipam = { pools: [{ name: 'lab', addresses: [POOL] }], leaderElection: LEADER };
  const [n1, n2] = lab.nodes;
  await labStopAgent(stateDir, n1.name);
  await labStopAgent(stateDir, n2.name);
  // node1: the command line's --kubeconfig replaces the file's source.
  // Both as the DaemonSet runs them: no node.addresses, NodePort addresses from the Node object.
  await labStartAgent(stateDir, n1.name, (cfg) => ({ ...cfg, node: { name: cfg.node.name }, ipam }), { args: ['--kubeconfig', api.kubeconfigPath] });
  // node2: source.kubernetes in the configuration file.
  await labStartAgent(stateDir, n2.name, (cfg) => ({ ...cfg, node: { name: cfg.node.name }, source: { kubernetes: { kubeconfig: api.kubeconfigPath } }, ipam }));
});

after(async () => {
  for (const p of relays) p.kill('SIGKILL');
  await labDown(stateDir).catch(() => undefined);
  await api?.close();
  fs.rmSync(relaySocket, { force: true });
});

describe('the agent follows a Kubernetes API server', () => {
  test('both agents are ready with synced informers, NodePort addresses from their Node objects, and serve the listed services', async () => {
    for (const n of lab.nodes) {
      const k = await kube(n);
      assert.equal(k.synced, true);
      assert.deepEqual(k.nodeAddresses, [n.ip]);
      assert.deepEqual(k.informers.map((i) => i.synced), [true, true, true]);
      const names = (await servicesOf(n)).map((s) => s.name);
      for (const want of ['web', 'dns-echo', 'web-nodeport', 'mixed']) assert.ok(names.includes(want), `${n.name} serves ${want}: ${names.join(',')}`);
    }
    const pods = new Set<string>();
    await waitFor(async () => {
      pods.add(await curlPod('192.0.2.10'));
      pods.delete('');
      return pods.size >= 3;
    }, 10000, `HTTP to the web VIP to reach backends on both nodes (so far: ${[...pods].join(' ')})`);
  });

  test('a new LoadBalancer service gets an address from the pool, written to its status by the IPAM leader, and serves HTTP there', async () => {
    const web = lab.pods.filter((p) => p.name.endsWith('p1'));
    api.upsert('services', service('shop', { type: 'LoadBalancer', clusterIP: '198.18.128.40', clusterIPs: ['198.18.128.40'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 31090 }] }));
    api.upsert('endpointslices', slice('shop', [{ name: 'http', port: 8080, protocol: 'TCP' }], web));
    await waitFor(() => ingressOf('shop') !== undefined, 10000, 'IPAM to write shop\'s status');
    const vip = ingressOf('shop')!;
    const last = Number(vip.split('.')[3]);
    assert.ok(vip.startsWith('192.0.2.') && last >= POOL_FIRST && last < POOL_FIRST + 10, `${vip} from ${POOL}`);
    assert.equal(ingressOf('web'), '192.0.2.10', 'a service of another class keeps the status its controller wrote');
    const leaders = await Promise.all(lab.nodes.map(async (n) => (await kube(n)).ipam));
    assert.equal(leaders.filter((l) => l?.isLeader).length, 1, `one IPAM leader: ${JSON.stringify(leaders.map((l) => l?.leader))}`);
    const t0 = performance.now();
    const pods = new Set<string>();
    await waitFor(async () => {
      pods.add(await curlPod(vip));
      pods.delete('');
      return pods.size >= 2;
    }, 10000, `HTTP through ${vip} from both shop backends`);
    assert.deepEqual([...pods].sort(), web.map((p) => p.name).sort());
    console.log(`shop: status written and served through ${vip} within ${Math.round(performance.now() - t0)} ms of the write`);
  });

  test('metrics: informers per resource on both agents, the pool\'s usage from the IPAM leader only; promtool check metrics passes', async () => {
    for (const n of lab.nodes) {
      const text = (await apiGet(n.api, '/metrics')) as string;
      const r = checkMetrics(text);
      assert.equal(r.status, 0, `${n.name}: promtool check metrics:\n${r.output}`);
      for (const resource of ['Service', 'EndpointSlice', 'Node']) {
        assert.match(text, new RegExp(`^xlb_kubernetes_informer_synced\\{resource="${resource}"\\} 1$`, 'm'), `${n.name}: ${resource} informer synced`);
        assert.match(text, new RegExp(`^xlb_kubernetes_informer_relists_total\\{resource="${resource}"\\} \\d+$`, 'm'), `${n.name}: ${resource} relists counted`);
      }
      const leads = (await kube(n)).ipam?.isLeader === true;
      assert.match(text, new RegExp(`^xlb_ipam_leader ${leads ? 1 : 0}$`, 'm'), `${n.name}: leads IPAM: ${leads}`);
      const allocated = /^xlb_ipam_pool_addresses_allocated\{pool="lab"\} (\d+)$/m.exec(text);
      if (leads) {
        assert.ok(allocated && Number(allocated[1]) >= 1, `${n.name} (leader): shop's address allocated from pool lab: ${allocated?.[0]}`);
        assert.match(text, /^xlb_ipam_pool_addresses\{pool="lab"\} \d+$/m, `${n.name} (leader): the pool's size`);
      } else assert.equal(allocated, null, `${n.name} (not leading): no pool series`);
    }
  });

  test('an endpoint removed from a slice leaves the maps of both nodes, and traffic avoids it', async () => {
    const web = lab.pods.filter((p) => p.name.endsWith('p1'));
    const gone = web[0];
    api.upsert('endpointslices', slice('shop', [{ name: 'http', port: 8080, protocol: 'TCP' }], web.slice(1)));
    for (const n of lab.nodes) {
      await waitFor(async () => (await servicesOf(n)).find((s) => s.name === 'shop')?.backends === 1, 5000, `${n.name}: shop down to one backend`);
    }
    const vip = ingressOf('shop')!;
    for (let i = 0; i < 8; i++) assert.notEqual(await curlPod(vip), gone.name);
  });

  test('deleting a service removes it from both nodes, and its address goes back to the pool', async () => {
    const vip = ingressOf('shop')!;
    api.remove('services', 'default', 'shop');
    api.remove('endpointslices', 'default', 'shop-lab');
    for (const n of lab.nodes) {
      await waitFor(async () => !(await servicesOf(n)).some((s) => s.name === 'shop'), 5000, `${n.name}: shop removed`);
    }
    assert.equal(await curlPod(vip), '');
    // The freed address is the lowest free one again: the next service gets it.
    api.upsert('services', service('shop2', { type: 'LoadBalancer', clusterIP: '198.18.128.41', clusterIPs: ['198.18.128.41'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 31091 }] }));
    await waitFor(() => ingressOf('shop2') !== undefined, 10000, 'IPAM to assign shop2');
    assert.equal(ingressOf('shop2'), vip);
  });

  test('when the IPAM leader stops, the other agent takes the lease and assigns the next service', async () => {
    const states = await Promise.all(lab.nodes.map(async (n) => ({ n, k: await kube(n) })));
    const leader = states.find((s) => s.k.ipam?.isLeader)!;
    const other = states.find((s) => s !== leader)!;
    assert.ok(leader && other);
    const t0 = performance.now();
    await labStopAgent(stateDir, leader.n.name);
    await waitFor(async () => (await kube(other.n)).ipam?.isLeader === true, 10000, `${other.n.name} to lead IPAM`);
    console.log(`IPAM leadership moved to ${other.n.name} ${Math.round(performance.now() - t0)} ms after the leader was told to stop`);
    api.upsert('services', service('shop3', { type: 'LoadBalancer', clusterIP: '198.18.128.42', clusterIPs: ['198.18.128.42'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 31092 }] }));
    await waitFor(() => ingressOf('shop3') !== undefined, 10000, 'the new leader to assign shop3');
    assert.notEqual(ingressOf('shop3'), ingressOf('shop2'));
    // Back to two agents: the restarted one lists everything again and serves shop3 too. It
    // serves from the moment it says ready: the next hops of its remote backends (whose
    // entries the stopping agent removed) resolve before that, or a request SNATed towards
    // one would go to the stack with no neighbour and die there as a martian.
    const codes = await burstAtReady(leader.n, '192.0.2.10', 60, () => labStartAgent(stateDir, leader.n.name, undefined, { args: ['--kubeconfig', api.kubeconfigPath] }));
    assert.equal(codes.length, 60, `one code per request: ${codes.join(' ')}`);
    assert.deepEqual(codes.filter((c) => c !== '200'), [], 'every request sent the moment the restarted agent was ready got an answer');
    assert.ok((await servicesOf(leader.n)).some((s) => s.name === 'shop3'));
    assert.equal((await kube(leader.n)).ipam?.isLeader, false, 'the restarted agent does not take IPAM back');
  });

  test("an address added to the Node object serves the node ports there without a restart; removed, they go", async () => {
    const n = lab.nodes[0];
    const nodePorts = async () => {
      const r = (await apiGet(n.api, '/v1/services/default/web-nodeport')) as { ports: Array<{ frontends: Array<{ addr: string; port: number; kind: string }> }> };
      return r.ports.flatMap((p) => p.frontends.filter((f) => f.kind === 'NodePort').map((f) => f.addr)).sort();
    };
    const node = (extra: string[]) => ({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n.name, labels: { 'topology.kubernetes.io/zone': 'lab-a' } },
      status: { addresses: [{ type: 'InternalIP', address: n.ip }, ...extra.map((address) => ({ type: 'ExternalIP', address })), { type: 'Hostname', address: n.name }] },
    });
    api.upsert('nodes', node(['198.18.0.31']));
    await waitFor(async () => (await nodePorts()).includes('198.18.0.31'), 5000, 'the node port on the added address');
    assert.deepEqual(await nodePorts(), ['127.0.0.1', '198.18.0.11', '198.18.0.31']);
    assert.deepEqual((await kube(n)).nodeAddresses, [n.ip, '198.18.0.31']);
    api.upsert('nodes', node([]));
    await waitFor(async () => !(await nodePorts()).includes('198.18.0.31'), 5000, 'the node port gone with the address');
  });

  test('an invalid object from the API server is reported in /v1/issues and skipped; the rest stays served', async () => {
    const n = lab.nodes[0];
    api.upsert('services', service('broken', { type: 'LoadBalancer', clusterIP: '198.18.128.43', ports: [{ name: 'http', protocol: 'TCP', port: 70000 }] }));
    await waitFor(
      async () => ((await apiGet(n.api, '/v1/issues')) as { issues: Array<{ object: string; field: string }> }).issues.some((i) => /broken/.test(i.object) && /port/.test(i.field)),
      5000,
      'the broken service in /v1/issues',
    );
    assert.ok((await servicesOf(n)).some((s) => s.name === 'web'));
    for (let i = 0; i < 4; i++) assert.notEqual(await curlPod('192.0.2.10'), '');
  });

  test('a LoadBalancerIPPool added while the agents run serves the service waiting for it, and HTTP flows to the new VIP', async () => {
    const web = lab.pods.filter((p) => p.name.endsWith('p1'));
    // Asks for a pool that does not exist yet (with MetalLB's annotation): it waits, with a Warning.
    const late = service('late', { type: 'LoadBalancer', clusterIP: '198.18.128.45', clusterIPs: ['198.18.128.45'], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 31095 }] });
    api.upsert('services', { ...late, metadata: { ...late.metadata, annotations: { 'metallb.universe.tf/address-pool': 'extra' } } });
    api.upsert('endpointslices', slice('late', [{ name: 'http', port: 8080, protocol: 'TCP' }], web));
    await waitFor(() => api.list('events').some((e) => e.involvedObject.name === 'late' && e.reason === 'AllocationFailed'), 10000, 'late waits for its pool');
    assert.equal(ingressOf('late'), undefined);
    const t0 = performance.now();
    api.upsert('loadbalancerippools', { apiVersion: 'xlb.io/v1alpha1', kind: 'LoadBalancerIPPool', metadata: { name: 'extra' }, spec: { addresses: ['192.0.2.230-192.0.2.231'], autoAssign: false } });
    await waitFor(() => ingressOf('late') === '192.0.2.230', 10000, 'late served from the new pool');
    const pods = new Set<string>();
    await waitFor(async () => {
      pods.add(await curlPod('192.0.2.230'));
      pods.delete('');
      return pods.size >= 2;
    }, 10000, 'HTTP through 192.0.2.230 from both backends');
    console.log(`late: pool created, address written and served within ${Math.round(performance.now() - t0)} ms, no restart`);
    await waitFor(() => api.get('loadbalancerippools', undefined, 'extra')?.status?.addresses?.used === 1, 10000, "the pool's status counts it");
  });
});

/**
 * xlb as kube-proxy's replacement inside the cluster, in the lab with real
 * traffic: pods and the nodes' own processes reach every kind of service
 * frontend through the socket hooks (and, where those are bypassed, through
 * tc on the pod interfaces), and resolve names through a cluster DNS
 * service whose backends are real DNS servers (dnsmasq) on both nodes.
 *
 *   pod -> ClusterIP (spread over the backends by Maglev), by name too
 *   pod -> cluster DNS (UDP, TCP, getent), queries spread over both servers
 *   pod -> LoadBalancer VIP, short-cut on the node (the router has no route)
 *   pod -> NodePort on another node's address
 *   node process -> ClusterIP, and NodePort on 127.0.0.1
 *   ClusterIP without endpoints -> refused at once
 *   socketLB.hostNamespaceOnly with podInterfaces: pods translated by tc
 *   node addresses followed at run time (file source, no node.addresses)
 *
 * Run as root: node --import tsx --test test/e2e/lab-clusterip.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { labDown, labNodeExec, labPodExec, labStartAgent, labStopAgent, labUp, type LabStatus } from '../../src/lab/index.js';
import { ipn, sh } from '../../src/lab/sh.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';

const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-lab-clusterip-'));
let lab: LabStatus;

const WEB_CLUSTER_IP = '198.18.128.10';
const EMPTY_CLUSTER_IP = '198.18.128.20';
const DNS_CLUSTER_IP = '198.18.128.53';
const VIP = '192.0.2.10';
const NODE_PORT = 30080;
const PODS = ['n1p1', 'n1p2', 'n2p1', 'n2p2'];

/** `curl -sS -m 3 URL` as `target` (a pod or a node): the first word of the answer is the pod that served it. */
async function curl(target: string, url: string, node = false): Promise<{ pod: string; client: string }> {
  const run = node ? labNodeExec : labPodExec;
  const out = await run(stateDir, target, ['curl', '-sS', '-m', '3', url]);
  const [pod, client] = out.trim().split(' ');
  return { pod, client: client.split(':')[0] };
}

/** The error curl gives for `url` as pod `pod` (it must fail). */
async function curlError(pod: string, url: string): Promise<string> {
  try {
    await labPodExec(stateDir, pod, ['curl', '-sS', '-m', '3', url]);
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail(`${url} answered from ${pod}`);
}

/** The frontends node `node`'s agent programs for service `name`. */
async function frontendsOf(node: string, name: string, namespace = 'default'): Promise<string[]> {
  const api = lab.nodes.find((n) => n.name === node)!.api;
  const r = (await apiGet(api, `/v1/services/${namespace}/${name}`, { allowError: true })) as { ports?: Array<{ frontends: Array<{ addr: string; port: number }> }> };
  return (r.ports ?? []).flatMap((p) => p.frontends.map((f) => `${f.addr}:${f.port}`)).sort();
}

before(async () => {
  lab = await labUp({ stateDir, announce: 'static' });
});

after(async () => {
  await labDown(stateDir);
  fs.rmSync(stateDir, { recursive: true, force: true });
});

describe('pods and nodes reach services (socket hooks)', () => {
  test("a pod's calls to a ClusterIP are answered and spread over the backends; the backend sees the pod", async () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 24; i++) {
      const r = await curl('n1p1', `http://${WEB_CLUSTER_IP}/`);
      assert.ok(PODS.includes(r.pod), r.pod);
      assert.equal(r.client, '198.19.1.11', 'translated at connect(): no NAT, the backend sees the pod');
      seen.set(r.pod, (seen.get(r.pod) ?? 0) + 1);
    }
    assert.ok(seen.size >= 2, `24 connections reached only ${[...seen.keys()]}`);
  });

  test('a pod resolves names through the cluster DNS service, over UDP and TCP, and calls a service by name', async () => {
    const udp = await labPodExec(stateDir, 'n2p1', ['dig', '+short', '+time=2', '+tries=1', 'web.default.svc.cluster.local']);
    assert.equal(udp.trim(), WEB_CLUSTER_IP);
    const tcp = await labPodExec(stateDir, 'n2p1', ['dig', '+tcp', '+short', '+time=2', '+tries=1', 'web.default.svc.cluster.local']);
    assert.equal(tcp.trim(), WEB_CLUSTER_IP);
    // An ordinary resolver, through resolv.conf's search path.
    const getent = await labPodExec(stateDir, 'n2p1', ['getent', 'hosts', 'web']);
    assert.match(getent, new RegExp(`^${WEB_CLUSTER_IP.replaceAll('.', '\\.')}\\s+web\\.default\\.svc\\.cluster\\.local`));
    // dig reports that the answer came from the service address (recvmsg4 restored it).
    const full = await labPodExec(stateDir, 'n2p1', ['dig', '+time=2', '+tries=1', 'web.default.svc.cluster.local']);
    assert.match(full, new RegExp(`SERVER: ${DNS_CLUSTER_IP.replaceAll('.', '\\.')}#53\\(`));
    assert.ok(PODS.includes((await curl('n2p1', 'http://web/')).pod));
  });

  test('DNS queries spread over the DNS servers of both nodes', async () => {
    const servers = new Set<string>();
    for (let i = 0; i < 24 && servers.size < 2; i++) {
      servers.add((await labPodExec(stateDir, 'n1p2', ['dig', '+short', '+time=2', '+tries=1', 'TXT', 'whoami.lab'])).trim().replaceAll('"', ''));
    }
    assert.deepEqual([...servers].sort(), ['n1dns', 'n2dns']);
  });

  test('a pod reaches a LoadBalancer VIP on its node, without the router', async () => {
    // Only the socket hooks can answer now: the router forgets the VIPs.
    await ipn(lab.router, 'route', 'del', '192.0.2.0/24');
    try {
      const fromClient = await sh('ip', ['netns', 'exec', lab.client, 'curl', '-sS', '-m', '2', `http://${VIP}/`]).catch((e: Error) => e);
      assert.ok(fromClient instanceof Error, 'the client outside has no path to the VIP now');
      const r = await curl('n2p2', `http://${VIP}/`);
      assert.ok(PODS.includes(r.pod));
      assert.equal(r.client, '198.19.2.12');
    } finally {
      await ipn(lab.router, 'route', 'add', '192.0.2.0/24', ...lab.nodes.flatMap((n) => ['nexthop', 'via', n.ip]));
    }
  });

  test("a pod reaches a NodePort on another node's address", async () => {
    assert.ok(PODS.includes((await curl('n1p1', `http://${lab.nodes[1].ip}:${NODE_PORT}/`)).pod));
  });

  test("the node's own processes reach a ClusterIP and a NodePort on 127.0.0.1", async () => {
    assert.ok(PODS.includes((await curl('node1', `http://${WEB_CLUSTER_IP}/`, true)).pod));
    assert.ok(PODS.includes((await curl('node2', `http://127.0.0.1:${NODE_PORT}/`, true)).pod));
    const dig = await labNodeExec(stateDir, 'node1', ['dig', `@${DNS_CLUSTER_IP}`, '+short', '+time=2', '+tries=1', 'web-nodeport.default.svc.cluster.local']);
    assert.equal(dig.trim(), '198.18.128.12');
  });

  test('a ClusterIP without endpoints refuses at once', async () => {
    const docs = parseAllDocuments(fs.readFileSync(lab.manifests, 'utf8')).map((d) => d.toJS());
    docs[0].items.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'empty', namespace: 'default' },
      spec: { type: 'ClusterIP', clusterIP: EMPTY_CLUSTER_IP, clusterIPs: [EMPTY_CLUSTER_IP], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    });
    fs.writeFileSync(lab.manifests, stringify(docs[0]));
    for (const n of lab.nodes) await waitFor(async () => (await frontendsOf(n.name, 'empty')).includes(`${EMPTY_CLUSTER_IP}:80`), 10000, `${n.name} to program default/empty`);
    // Refused, not timed out: kube-proxy rejects, it does not blackhole.
    assert.match(await curlError('n1p1', `http://${EMPTY_CLUSTER_IP}/`), /Connection refused|Couldn't connect/);
  });
});

describe("kube-proxy's health check node port", () => {
  test('each node answers for its own endpoints: 200 where the service has one, 503 where it has none', async () => {
    const docs = parseAllDocuments(fs.readFileSync(lab.manifests, 'utf8')).map((d) => d.toJS());
    const n1p1 = lab.pods.find((p) => p.name === 'n1p1')!;
    docs[0].items.push(
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'local-web', namespace: 'default' },
        spec: {
          type: 'LoadBalancer',
          clusterIP: '198.18.128.21',
          clusterIPs: ['198.18.128.21'],
          externalTrafficPolicy: 'Local',
          healthCheckNodePort: 32100,
          ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 31100 }],
        },
        status: { loadBalancer: { ingress: [{ ip: '192.0.2.40', ipMode: 'VIP' }] } },
      },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'local-web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'local-web' } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        endpoints: [{ addresses: [n1p1.ip], conditions: { ready: true }, nodeName: 'node1' }],
      },
    );
    fs.writeFileSync(lab.manifests, stringify(docs[0]));
    const check = (node: { ip: string }) =>
      sh('ip', ['netns', 'exec', lab.client, 'curl', '-sS', '-m', '2', '-w', '\n%{http_code} %header{x-load-balancing-endpoint-weight}', `http://${node.ip}:32100/`]).catch(() => '');
    await waitFor(async () => (await check(lab.nodes[0])).endsWith('200 1'), 10000, "node1's health check port to answer 200");
    const answer = await check(lab.nodes[0]);
    const body = JSON.parse(answer.slice(0, answer.lastIndexOf('\n')));
    assert.deepEqual(body.service, { namespace: 'default', name: 'local-web' });
    assert.equal(body.localEndpoints, 1);
    await waitFor(async () => (await check(lab.nodes[1])).endsWith('503 0'), 10000, "node2's health check port to answer 503");
    // From outside, the VIP's local set: node2 has no endpoint and drops; node1 serves.
    const fromOutside = (await curlFromClientVia(lab.nodes[0].ip, '192.0.2.40')).split(' ')[0];
    assert.equal(fromOutside, 'n1p1');
  });
});

/** HTTP to `vip` from the client, with the router's route for it pinned to `via` for the call. */
async function curlFromClientVia(via: string, vip: string): Promise<string> {
  await ipn(lab.router, 'route', 'add', `${vip}/32`, 'via', via);
  try {
    return await sh('ip', ['netns', 'exec', lab.client, 'curl', '-sS', '-m', '3', `http://${vip}/`]);
  } finally {
    await ipn(lab.router, 'route', 'del', `${vip}/32`);
  }
}

describe('the agent follows the node and serves pods that bypass the socket hooks', () => {
  test('socketLB.hostNamespaceOnly: pods are translated by tc on their interfaces, the node by the socket hooks', async () => {
    await labStopAgent(stateDir, 'node1');
    await labStartAgent(stateDir, 'node1', (cfg) => ({ ...cfg, socketLB: { ...cfg.socketLB, hostNamespaceOnly: true }, podInterfaces: ['p*'] }));
    const api = lab.nodes[0].api;
    await waitFor(async () => {
      const dp = (await apiGet(api, '/v1/datapath')) as { attachments: Array<{ interface: string; hook: string }> };
      return dp.attachments.some((a) => a.interface === 'p1' && a.hook === 'tc-ingress');
    }, 5000, 'tc on the pod interface p1');
    const packets = async () => {
      const m = String(await apiGet(api, '/metrics'));
      return Number(/^xlb_service_packets_total\{namespace="default",name="web",port="http"\} (\d+)$/m.exec(m)?.[1] ?? 0);
    };
    const before = await packets();
    const r = await curl('n1p1', `http://${WEB_CLUSTER_IP}/`);
    assert.ok(PODS.includes(r.pod));
    // DNAT only: the backend sees the pod (unless Maglev picked the pod itself: hairpin, below).
    assert.equal(r.client, r.pod === 'n1p1' ? '198.18.255.1' : '198.19.1.11');
    // Per-packet translation counts the packets; the socket hooks count none.
    assert.ok((await packets()) > before, 'the packets went through tc');
    // The node itself is still served by the socket hooks.
    assert.ok(PODS.includes((await curl('node1', `http://${WEB_CLUSTER_IP}/`, true)).pod));
    // A pod that backs the service it calls (hairpin): n1p1 alone behind a ClusterIP.
    const docs = parseAllDocuments(fs.readFileSync(lab.manifests, 'utf8')).map((d) => d.toJS());
    docs[0].items.push(
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'self', namespace: 'default' }, spec: { type: 'ClusterIP', clusterIP: '198.18.128.22', clusterIPs: ['198.18.128.22'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'self-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'self' } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        endpoints: [{ addresses: ['198.19.1.11'], conditions: { ready: true }, nodeName: 'node1' }],
      },
    );
    fs.writeFileSync(lab.manifests, stringify(docs[0]));
    await waitFor(async () => (await frontendsOf('node1', 'self')).includes('198.18.128.22:80'), 10000, 'node1 to program default/self');
    for (let i = 0; i < 3; i++) {
      const self = await curl('n1p1', 'http://198.18.128.22/');
      assert.equal(self.pod, 'n1p1');
      assert.equal(self.client, '198.18.255.1', 'the hairpin address, so that the reply left the pod to be restored');
    }
  });

  test("node addresses are followed: an address added to the node's interface serves the node ports within seconds, and its removal stops them", async () => {
    await labStopAgent(stateDir, 'node1');
    await labStartAgent(stateDir, 'node1', (cfg) => ({ ...cfg, node: { name: cfg.node.name } }));
    const node1 = lab.nodes[0];
    await ipn(node1.netns, 'addr', 'add', '198.18.0.21/24', 'dev', 'eth0');
    await waitFor(async () => (await frontendsOf('node1', 'web-nodeport')).includes(`198.18.0.21:${NODE_PORT}`), 5000, 'the node port on the new address');
    // From node2, through the fabric: node1's XDP serves the new address.
    assert.ok(PODS.includes((await curl('node2', `http://198.18.0.21:${NODE_PORT}/`, true)).pod));
    await ipn(node1.netns, 'addr', 'del', '198.18.0.21/24', 'dev', 'eth0');
    await waitFor(async () => !(await frontendsOf('node1', 'web-nodeport')).includes(`198.18.0.21:${NODE_PORT}`), 5000, 'the node port gone with the address');
    assert.ok((await frontendsOf('node1', 'web-nodeport')).includes(`${node1.ip}:${NODE_PORT}`));
  });
});

/**
 * End to end in the lab: real namespaces, real agents with XDP and tc
 * attached, real HTTP and UDP from the client through the router to VIPs.
 * One lab for the whole file (bringing one up takes seconds), torn down in
 * `after` whatever happens.
 *
 * Run as root: node --import tsx --test test/e2e/lab.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { labDown, labExec, labUp, type LabStatus } from '../../src/lab/index.js';
import { clientTraffic, keepaliveTraffic } from '../../src/demo/demo.js';
import { sh } from '../../src/lab/sh.js';
import { editEndpoints } from '../../src/demo/manifests.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';
import { spawn } from 'node:child_process';
import { hubbleClient } from '../helpers/hubble.js';
import { checkMetrics } from '../helpers/promtool.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const stateDir = `/run/xlb-test-${randomBytes(3).toString('hex')}`;
let lab: LabStatus;

const podIp = (name: string) => lab.pods.find((p) => p.name === name)!.ip;
const podName = (ip: string) => lab.pods.find((p) => p.ip === ip)?.name;
const svc = (name: string, protocol = 'TCP') => lab.services.find((s) => s.name === name && s.protocol === protocol)!;

async function curl(url: string, extra: string[] = []): Promise<string> {
  return labExec(lab.client, ['curl', '-s', '-m', '3', ...extra, url]);
}

/** Web's backends (pod IPs) as each agent reports them, once all agree. */
async function webBackends(): Promise<string[][]> {
  return Promise.all(
    lab.nodes.map(async (n) => {
      const r = (await apiGet(n.api, '/v1/services/default/web')) as { ports: Array<{ backends: Array<{ addr: string; inTable: boolean }> }> };
      return r.ports[0].backends.filter((b) => b.inTable).map((b) => b.addr).sort();
    }),
  );
}

before(async () => {
  lab = await labUp({ nodes: 2, podsPerNode: 3, stateDir });
});

after(async () => {
  await labDown(stateDir);
});

describe('traffic through xlb', () => {
  test('HTTP to a LoadBalancer VIP reaches every backend close to its Maglev share', async () => {
    const web = svc('web');
    const [r] = await clientTraffic(lab, ['http', '--url', `http://${web.vip}/`, '--count', '400']);
    assert.equal(r.errors, 0);
    const counts = r.byBackend as Record<string, number>;
    const backends = web.backends.map((b) => podName(b.split(':')[0])!);
    assert.deepEqual(Object.keys(counts).sort(), [...backends].sort(), 'only and all of web’s backends answer');
    const shares = (await apiGet(lab.nodes[0].api, '/v1/services/default/web')) as { ports: Array<{ backends: Array<{ addr: string; share: number }> }> };
    for (const b of shares.ports[0].backends) {
      const expected = 400 * b.share;
      const got = counts[podName(b.addr)!];
      assert.ok(Math.abs(got - expected) <= 0.45 * expected, `${b.addr}: ${got} requests, Maglev share predicts ${expected.toFixed(0)}`);
    }
  });

  test('UDP datagrams to a UDP VIP are answered by every backend', async () => {
    const dns = svc('dns-echo', 'UDP');
    const [r] = await clientTraffic(lab, ['udp', '--to', `${dns.vip}:${dns.port}`, '--count', '120']);
    assert.equal(r.errors, 0, 'no datagram lost');
    assert.equal(Object.keys(r.byBackend as object).length, 4);
  });

  test('a TCP and a UDP service on the same VIP and port each reach their own servers', async () => {
    const body = await curl('http://192.0.2.12:7000/');
    assert.match(body, /^n\dp\d /, 'HTTP answered by a pod');
    const udp = await labExec(lab.client, ['sh', '-c', 'echo ping | socat -t2 - UDP:192.0.2.12:7000']);
    assert.match(udp.trim(), /^n\dp\d$/, 'UDP echo answered by a pod');
  });

  test('a NodePort answers on every node IP', async () => {
    for (const n of lab.nodes) assert.match(await curl(`http://${n.ip}:30080/`), /^n\dp\d /, `NodePort on ${n.name}`);
  });

  test('local backends see the client address; remote ones see the node IP and a SNAT port', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 24; i++) {
      const [pod, addr] = (await curl('http://192.0.2.10/')).trim().split(' ');
      const [ip, port] = addr.split(':');
      assert.ok(pod && ip, `response ${pod} ${addr}`);
      if (ip === '198.18.1.2') seen.add('client');
      else {
        assert.ok(lab.nodes.some((n) => n.ip === ip), `${pod} saw ${addr}: neither the client nor a node`);
        assert.ok(Number(port) >= 61000 && Number(port) <= 65535, `SNAT port ${port} in the configured range`);
        seen.add('snat');
      }
    }
    assert.deepEqual([...seen].sort(), ['client', 'snat'], 'both paths were exercised');
  });

  test('every node predicts the same backend for a flow, and that backend serves it', async () => {
    for (let i = 0; i < 8; i++) {
      // Below the ephemeral range (32768-60999): a port an earlier curl of
      // this file was given may still be in the client's TIME_WAIT, and
      // curl --local-port then fails at once (bind: address in use).
      const sport = 20000 + i;
      const flow = `198.18.1.2:${sport},192.0.2.10:80,tcp`;
      const predictions = await Promise.all(
        lab.nodes.map(async (n) => ((await apiGet(n.api, `/v1/services/default/web/flow?flow=${flow}`)) as { backend: { addr: string } }).backend.addr),
      );
      assert.equal(new Set(predictions).size, 1, `nodes disagree for ${flow}: ${predictions.join(' ')}`);
      const pod = (await curl('http://192.0.2.10/', ['--local-port', String(sport)])).split(' ')[0];
      assert.equal(podIp(pod), predictions[0], `flow ${flow} served by ${pod}`);
    }
  });

  test('xlb ct list shows the flow a node placed: its client, frontend, the backend Maglev chose, and a SNAT port when remote', async () => {
    // The flows of the test above: 198.18.1.2:20000.. to the web VIP, each through one of the nodes (ECMP).
    type Listing = { total: number; entries: Array<{ client: string; frontend: string; backend: string; snatPort?: number; service?: string }> };
    const flow = '198.18.1.2:20000,192.0.2.10:80,tcp';
    const predicted = ((await apiGet(lab.nodes[0].api, `/v1/services/default/web/flow?flow=${flow}`)) as { backend: { addr: string; port: number } }).backend;
    const listings = await Promise.all(lab.nodes.map(async (n) => (await apiGet(n.api, '/v1/conntrack?src=198.18.1.2:20000&dst=192.0.2.10:80')) as Listing));
    const found = listings.flatMap((l) => l.entries);
    assert.equal(found.length, 1, `one node placed it: ${JSON.stringify(found)}`);
    const [e] = found;
    assert.equal(e.backend, `${predicted.addr}:${predicted.port}`, 'the backend Maglev predicted');
    assert.match(e.service ?? '', /^default\/web:/);
    const owner = lab.nodes[listings.findIndex((l) => l.entries.length)];
    const local = predicted.addr.startsWith(owner.podCidr.split('.').slice(0, 3).join('.') + '.');
    if (local) assert.equal(e.snatPort, undefined, 'a local backend sees the client: no SNAT');
    else assert.ok(e.snatPort! >= 61000 && e.snatPort! <= 65535, `SNAT port ${e.snatPort} in the configured range`);
    // The same through the command line.
    const xlb = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/xlb.js');
    const out = await sh(process.execPath, [xlb, 'ct', 'list', '--api', owner.api, '--src', '198.18.1.2:20000', '--json']);
    assert.equal((JSON.parse(out) as Listing).entries[0].backend, e.backend);
  });

  test('xlb observe shows the flows each node placed: to the web VIP, its service, the backend pod, FORWARDED', async () => {
    const xlb = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/xlb.js');
    type Observed = {
      verdict: string;
      node: string;
      source: { ip: string; port: number };
      destination: { ip: string; port: number; service?: string };
      backend?: { ip: string; pod?: string };
      tcpFlags: string[];
      closed?: true;
      selection?: { by: string; slot?: number };
    };
    const all: Observed[] = [];
    for (const n of lab.nodes) {
      const out = await sh(process.execPath, [xlb, 'observe', '--api', n.api, '--last', '1000', '--to-ip', '192.0.2.10', '--port', '80', '-o', 'json']);
      for (const line of out.split('\n').filter(Boolean)) all.push(JSON.parse(line) as Observed);
    }
    // Each curl opens a flow (its SYN) and closes it (its first FIN): one event each.
    const flows = all.filter((f) => !f.closed);
    const closes = all.filter((f) => f.closed);
    assert.ok(closes.length >= 10, `${closes.length} closes observed`);
    for (const c of closes) assert.ok(c.tcpFlags.includes('FIN') || c.tcpFlags.includes('RST'), `a close is a FIN or RST: ${c.tcpFlags}`);
    assert.ok(flows.length >= 10, `${flows.length} flows to 192.0.2.10:80 observed`);
    for (const f of flows) {
      assert.equal(f.verdict, 'FORWARDED');
      assert.equal(f.source.ip, '198.18.1.2', 'from the lab client');
      assert.match(f.destination.service ?? '', /^default\/web:/);
      assert.deepEqual(f.tcpFlags, ['SYN'], 'a new flow’s event is its SYN: established packets make none');
      assert.ok(f.backend && svc('web').backends.some((b) => b.startsWith(`${f.backend!.ip}:`)), `backend ${f.backend?.ip} is one of web's`);
      assert.match(f.backend!.pod ?? '', /^default\//, 'the backend named by its pod');
    }
    assert.equal(new Set(flows.map((f) => f.node)).size, lab.nodes.length, 'ECMP spread the flows over both nodes');
    // Each new flow says how its backend was chosen: the Maglev slot every node predicts for it.
    const predicted = flows.filter((x) => x.source.port >= 20000 && x.source.port < 20008);
    assert.equal(predicted.length, 8, 'the eight flows of the prediction test');
    for (const f of predicted) {
      const p = (await apiGet(lab.nodes[0].api, `/v1/services/default/web/flow?flow=198.18.1.2:${f.source.port},192.0.2.10:80,tcp`)) as { slot: number };
      assert.deepEqual(f.selection, { by: 'maglev', slot: p.slot }, `flow from port ${f.source.port}: its Maglev slot`);
    }
  });

  test('xlb observe --to-service default/web --follow shows a new connection’s flow with its backend as it happens', async (t) => {
    const xlb = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/xlb.js');
    // One follower a node: ECMP takes the connection through either.
    const lines: string[] = [];
    const followers = lab.nodes.map((n) => {
      const p = spawn(process.execPath, [xlb, 'observe', '--api', n.api, '--to-service', 'default/web', '--follow', '--last', '1', '-o', 'json'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let rest = '';
      p.stdout.on('data', (b: Buffer) => {
        const parts = (rest + b.toString()).split('\n');
        rest = parts.pop()!;
        lines.push(...parts.filter(Boolean));
      });
      return p;
    });
    try {
      // Each follower has printed its --last flow: it is following now.
      await waitFor(() => lines.length >= lab.nodes.length, 10000, 'both followers to start');
      const sport = 20100;
      const started = Date.now();
      const pod = (await curl('http://192.0.2.10/', ['--local-port', String(sport)])).split(' ')[0];
      type Observed = { verdict: string; source: { port: number }; backend?: { ip: string; pod?: string } };
      let seen: Observed | undefined;
      await waitFor(() => (seen = lines.map((l) => JSON.parse(l) as Observed).find((f) => f.source.port === sport)) !== undefined, 10000, `the flow from port ${sport}`);
      t.diagnostic(`flow shown ${Date.now() - started} ms after curl started`);
      assert.equal(seen!.verdict, 'FORWARDED');
      assert.equal(seen!.backend?.ip, podIp(pod), `the backend that answered (${pod})`);
      assert.equal(seen!.backend?.pod, `default/${pod}`);
    } finally {
      for (const p of followers) p.kill();
    }
  });

  test('a generic gRPC client reads the same flows through Hubble’s Observer API', async () => {
    const xlb = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/xlb.js');
    for (const n of lab.nodes) {
      const ours = (await sh(process.execPath, [xlb, 'observe', '--api', n.api, '--last', '4096', '--to-ip', '192.0.2.10', '-o', 'json']))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { timeMs: number; source: { ip: string; port: number }; backend?: { ip: string } });
      const client = hubbleClient(n.hubble);
      try {
        const rs = await client.getFlows({ number: 4096, whitelist: [{ destination_ip: ['192.0.2.10'] }] });
        const theirs = rs.filter((r) => r.flow).map((r) => r.flow!);
        const key = (ip: string, port: number, ms: number) => `${ip}:${port}@${ms}`;
        assert.ok(theirs.length > 0, `flows through ${n.name}`);
        // The API's flows are the CLI's: same clients, same times (flows that came between the two reads aside).
        const cli = new Set(ours.map((f) => key(f.source.ip, f.source.port, f.timeMs)));
        const grpcKeys = theirs.map((f) => key(f.IP.source, f.l4.TCP.source_port, Number(f.time.seconds) * 1000 + Math.floor(f.time.nanos / 1e6)));
        assert.ok(ours.every((f) => grpcKeys.includes(key(f.source.ip, f.source.port, f.timeMs))), `every flow xlb observe shows on ${n.name} is in GetFlows`);
        assert.ok(grpcKeys.filter((k) => cli.has(k)).length === ours.length, 'and the same number');
        for (const f of theirs) {
          assert.equal(f.node_name, n.name);
          assert.equal(f.verdict, 'FORWARDED');
          assert.deepEqual(f.destination_service, { name: 'web', namespace: 'default' });
          assert.match(f.destination.pod_name, /^n\dp\d$/, 'the backend pod');
        }
        const status = await client.serverStatus();
        assert.ok(status.num_flows >= theirs.length && status.seen_flows >= status.num_flows, JSON.stringify(status));
        const { nodes } = await client.getNodes();
        assert.deepEqual(nodes.map((x) => [x.name, x.state]), [[n.name, 'NODE_CONNECTED']]);
      } finally {
        client.close();
      }
    }
  });

  test('a connection to a VIP from outside its source ranges shows as DROPPED with its reason, in xlb observe and through Hubble', async () => {
    const good = fs.readFileSync(lab.manifests, 'utf8');
    const ranged = `---
apiVersion: v1
kind: Service
metadata: {name: ranged, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  type: LoadBalancer
  clusterIP: 198.18.128.40
  clusterIPs: [198.18.128.40]
  loadBalancerSourceRanges: [203.0.113.0/24]
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 31040}]
status: {loadBalancer: {ingress: [{ip: 192.0.2.40}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ranged-lab, namespace: default, labels: {kubernetes.io/service-name: ranged}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [${podIp('n1p1')}], conditions: {ready: true}, nodeName: node1, targetRef: {kind: Pod, namespace: default, name: n1p1}}]
`;
    fs.writeFileSync(`${lab.manifests}.tmp`, `${good}${ranged}`);
    fs.renameSync(`${lab.manifests}.tmp`, lab.manifests);
    const xlb = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/xlb.js');
    type Observed = { verdict: string; dropReason?: string; destination: { service?: string } };
    try {
      let drops: Observed[] = [];
      // Each try is a SYN from the lab client (198.18.1.2, outside 203.0.113.0/24); it is dropped,
      // so curl gives up; tries go on until the router has the VIP's route and a node has dropped one.
      await waitFor(
        async () => {
          await labExec(lab.client, ['curl', '-s', '-m', '1', 'http://192.0.2.40/']).catch(() => '');
          drops = [];
          for (const n of lab.nodes) {
            const out = await sh(process.execPath, [xlb, 'observe', '--api', n.api, '--last', '100', '--to-ip', '192.0.2.40', '--verdict', 'DROPPED', '-o', 'json']);
            drops.push(...out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Observed));
          }
          return drops.length > 0;
        },
        20000,
        'a dropped SYN to 192.0.2.40',
      );
      assert.equal(drops[0].dropReason, 'source_range');
      assert.match(drops[0].destination.service ?? '', /^default\/ranged:/);
      let hubbleDrops = 0;
      for (const n of lab.nodes) {
        const client = hubbleClient(n.hubble);
        try {
          const rs = await client.getFlows({ whitelist: [{ verdict: ['DROPPED'], destination_ip: ['192.0.2.40'] }] });
          for (const r of rs.filter((x) => x.flow)) {
            assert.equal(r.flow!.drop_reason_desc, 'DENIED_BY_LB_SRC_RANGE_CHECK');
            assert.deepEqual(r.flow!.destination_service, { name: 'ranged', namespace: 'default' });
            hubbleDrops++;
          }
        } finally {
          client.close();
        }
      }
      assert.ok(hubbleDrops >= 1, 'the drop read through the Hubble API');
    } finally {
      fs.writeFileSync(`${lab.manifests}.tmp`, good);
      fs.renameSync(`${lab.manifests}.tmp`, lab.manifests);
    }
  });

  test('traffic that is not for a service passes: ping to nodes, pod to pod across nodes', async () => {
    for (const n of lab.nodes) await labExec(lab.client, ['ping', '-c', '1', '-W', '2', n.ip]);
    const out = await labExec(lab.nodes[0].netns, ['curl', '-s', '-m', '3', `http://${podIp('n2p1')}:8080/`]);
    assert.match(out, /^n2p1 /);
  });

  test('xlb status --lab shows every agent ready, with its programs, services and BGP session; yaml too', async () => {
    const xlb = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/xlb.js');
    const doc = JSON.parse(await sh(process.execPath, [xlb, 'status', '--lab', stateDir, '--wait', '--wait-duration', '30', '-o', 'json'])) as {
      ok: boolean;
      problems: string[];
      agents: Array<{ node: string; ready: boolean; programs: string[]; services: number; bgp?: { established: number; peers: number } }>;
    };
    assert.deepEqual([doc.ok, doc.problems], [true, []]);
    assert.deepEqual(doc.agents.map((a) => a.node).sort(), lab.nodes.map((n) => n.name).sort());
    for (const a of doc.agents) {
      assert.equal(a.ready, true);
      assert.ok(a.programs.some((p) => p.startsWith('xdp')), `${a.node}: XDP attached (${a.programs.join(' ')})`);
      assert.ok(a.services >= 5, `${a.node}: ${a.services} service ports`);
      assert.deepEqual(a.bgp && [a.bgp.established, a.bgp.peers], [1, 1], `${a.node}: its BGP session is Established`);
    }
    assert.match(await sh(process.execPath, [xlb, 'status', '--lab', stateDir, '-o', 'yaml']), /^ok: true$/m);
  });

  test('metrics count the packets of each service', async () => {
    const text = (await apiGet(lab.nodes[0].api, '/metrics')) as string;
    const line = text.split('\n').find((l) => l.startsWith('xlb_service_packets_total{') && l.includes('name="web"'));
    assert.ok(line && Number(line.split(' ').pop()) > 0, line ?? 'no xlb_service_packets_total for web');
    assert.match(text, /xlb_sync_duration_seconds_count \d+/);
    // The SYN-flood guard's count (no flood here) and the next-hop invalidations (at least the start's burst of neighbour changes).
    assert.match(text, /^xlb_datapath_flows_stateless_total 0$/m);
    assert.match(text, /^xlb_datapath_next_hop_invalidations_total \d+$/m);
    // Flow events were read (xlb observe's source), and none was kept back at this rate.
    assert.match(text, /^xlb_flow_events_total [1-9]\d*$/m);
    assert.match(text, /^xlb_flow_events_suppressed_total 0$/m);
  });

  test('Prometheus scrapes each node\'s metrics listener from outside: promtool check metrics passes on the real output, which has flows per service, conntrack, SNAT, readiness and build info', async () => {
    for (const n of lab.nodes) {
      // From the lab's client, through the router: as Prometheus reaches a node's address.
      const text = await labExec(lab.client, ['curl', '-s', '-m', '5', '--fail', `http://${n.metrics}/metrics`]);
      const r = checkMetrics(text);
      assert.equal(r.status, 0, `${n.name}: promtool check metrics:\n${r.output}`);
      assert.match(text, /^xlb_agent_ready 1$/m, `${n.name}: ready`);
      assert.match(text, /^xlb_build_info\{version="[^"]+",revision="[^"]+",nodejs_version="[^"]+"\} 1$/m, `${n.name}: build info`);
      // The flows the tests above sent to web's VIP went through both nodes (ECMP): counted per service port from flow events.
      const web = text.split('\n').find((l) => l.startsWith('xlb_flows_total{namespace="default",name="web",') && l.includes('verdict="FORWARDED"'));
      assert.ok(web && Number(web.split(' ').pop()) > 0, `${n.name}: ${web ?? 'no xlb_flows_total for web'}`);
      assert.match(text, /^xlb_conntrack_entries [1-9]\d*$/m, `${n.name}: the flows placed are in conntrack`);
      assert.match(text, /^xlb_conntrack_max_entries 65536$/m, `${n.name}: the lab's datapath.conntrackSize`);
      assert.match(text, /^xlb_snat_ports_in_use \d+$/m, `${n.name}: SNAT ports counted`);
      assert.match(text, /^xlb_snat_ports_per_backend 4536$/m, `${n.name}: 61000..65535`);
      assert.match(text, /^process_resident_memory_bytes \d+/m, `${n.name}: the process metrics under their usual names`);
      // The listener serves the metrics only: not the API.
      const api = await labExec(lab.client, ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${n.metrics}/v1/services`]);
      assert.equal(api, '404', `${n.name}: /v1/services is not served on the metrics listener`);
    }
  });
});

describe('changes while traffic flows', () => {
  test('keep-alive connections keep their backends while one is added and another removed; the removed one gets no new flows', async () => {
    const web = svc('web');
    const traffic = keepaliveTraffic(lab, `http://${web.vip}/`, 16);
    const rounds = traffic.rounds;
    try {
      await waitFor(() => rounds.length >= 1, 15000, 'keep-alive connections');
      const first = rounds[0];
      assert.ok(first.pods.every((p) => /^n\dp\d$/.test(p)), first.pods.join(' '));
      const removedPod = first.pods[0];
      editEndpoints(lab.manifests, 'default', 'web', { remove: [podIp(removedPod)], add: [{ ip: podIp('n1p3'), nodeName: 'node1', pod: 'n1p3' }] });
      await waitFor(
        async () => (await webBackends()).every((b) => b.includes(podIp('n1p3')) && !b.includes(podIp(removedPod))),
        3000,
        'both agents to program the new backend set',
      );
      traffic.again();
      await waitFor(() => rounds.length >= 2, 15000, 'second round on the same connections');
      const second = rounds[1];
      for (let i = 0; i < first.pods.length; i++) {
        if (first.pods[i] === removedPod) continue;
        assert.equal(second.pods[i], first.pods[i], `connection ${i} moved from ${first.pods[i]} to ${second.pods[i]}`);
        assert.equal(second.localPorts[i], first.localPorts[i], `connection ${i} was re-opened`);
      }
      const [r] = await clientTraffic(lab, ['http', '--url', `http://${web.vip}/`, '--count', '200']);
      const counts = r.byBackend as Record<string, number>;
      assert.equal(counts[removedPod] ?? 0, 0, `removed backend ${removedPod} still got new flows`);
      assert.ok((counts.n1p3 ?? 0) > 0, 'the added backend takes new flows');
    } finally {
      traffic.stop();
    }
  });

  test('invalid objects are reported by object and field, skipped, and the rest stays programmed', async () => {
    const good = fs.readFileSync(lab.manifests, 'utf8');
    const bad = `${good}---\napiVersion: v1\nkind: Service\nmetadata: {name: broken, namespace: default}\nspec:\n  type: LoadBalancer\n  ports: [{port: 70000, targetPort: 8080}]\n`;
    fs.writeFileSync(`${lab.manifests}.tmp`, bad);
    fs.renameSync(`${lab.manifests}.tmp`, lab.manifests);
    await waitFor(
      async () => {
        const r = (await apiGet(lab.nodes[0].api, '/v1/issues')) as { issues: Array<{ object: string; field: string }> };
        return r.issues.some((i) => i.object === 'Service default/broken' && i.field === 'spec.ports[0].port');
      },
      3000,
      'the issue naming Service default/broken spec.ports[0].port',
    );
    assert.match(await curl('http://192.0.2.10/'), /^n\dp\d /, 'web still served');
    // A file that does not parse at all: the last good state stays programmed.
    fs.writeFileSync(`${lab.manifests}.tmp`, `${good}\n  : : not yaml [\n`);
    fs.renameSync(`${lab.manifests}.tmp`, lab.manifests);
    await waitFor(
      async () => ((await apiGet(lab.nodes[0].api, '/v1/issues')) as { issues: Array<{ object: string }> }).issues.some((i) => i.object.startsWith('file ')),
      3000,
      'the agent to report the file that does not parse',
    );
    assert.match(await curl('http://192.0.2.10/'), /^n\dp\d /, 'web still served after a broken file');
    for (const n of lab.nodes) assert.equal(((await apiGet(n.api, '/readyz')) as { status: string }).status, 'ready');
    fs.writeFileSync(`${lab.manifests}.tmp`, good);
    fs.renameSync(`${lab.manifests}.tmp`, lab.manifests);
  });

  test('SIGTERM keeps XDP, tc and the pins for the next agent; xlb uninstall removes them', async () => {
    const n = lab.nodes[1];
    const pinDir = `/sys/fs/bpf/xlb/lab-${lab.suffix}-${n.name}`;
    assert.ok(fs.existsSync(pinDir));
    process.kill(n.agentPid!, 'SIGTERM');
    await waitFor(() => {
      try {
        process.kill(n.agentPid!, 0);
        return false;
      } catch {
        return true;
      }
    }, 10000, `agent on ${n.name} to exit`);
    // A restart is not an uninstall: the datapath keeps serving.
    assert.match(await labExec(n.netns, ['ip', '-d', 'link', 'show', 'eth0']), /prog\/xdp/, 'XDP stays on eth0');
    assert.notEqual((await labExec(n.netns, ['tc', 'filter', 'show', 'dev', 'eth0', 'egress'])).trim(), '', 'the tc filter stays');
    assert.ok(fs.existsSync(pinDir), `${pinDir} stays`);
    const cfg = path.join(lab.stateDir, `${n.name}.yaml`);
    // nsenter, not ip netns exec (which remounts /sys and hides bpffs).
    const out = await sh('nsenter', [`--net=/run/netns/${n.netns}`, '--', process.execPath, '--import', 'tsx', path.join(repo, 'src/cli/main.ts'), 'uninstall', '--config', cfg]);
    assert.match(out, /removed: XDP \(native\) from eth0/);
    assert.doesNotMatch(await labExec(n.netns, ['ip', '-d', 'link', 'show', 'eth0']), /prog\/xdp/, 'no XDP program left on eth0');
    assert.equal((await labExec(n.netns, ['tc', 'filter', 'show', 'dev', 'eth0', 'egress'])).trim(), '', 'no tc filter left on eth0 egress');
    assert.ok(!fs.existsSync(pinDir), `${pinDir} removed`);
  });
});

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
    type Observed = { verdict: string; node: string; source: { ip: string }; destination: { ip: string; port: number; service?: string }; backend?: { ip: string; pod?: string }; tcpFlags: string[] };
    const flows: Observed[] = [];
    for (const n of lab.nodes) {
      const out = await sh(process.execPath, [xlb, 'observe', '--api', n.api, '--last', '1000', '--to-ip', '192.0.2.10', '--port', '80', '-o', 'json']);
      for (const line of out.split('\n').filter(Boolean)) flows.push(JSON.parse(line) as Observed);
    }
    assert.ok(flows.length >= 10, `${flows.length} flows to 192.0.2.10:80 observed`);
    for (const f of flows) {
      assert.equal(f.verdict, 'FORWARDED');
      assert.equal(f.source.ip, '198.18.1.2', 'from the lab client');
      assert.match(f.destination.service ?? '', /^default\/web:/);
      assert.deepEqual(f.tcpFlags, ['SYN'], 'new flows only: established packets make no event');
      assert.ok(f.backend && svc('web').backends.some((b) => b.startsWith(`${f.backend!.ip}:`)), `backend ${f.backend?.ip} is one of web's`);
      assert.match(f.backend!.pod ?? '', /^default\//, 'the backend named by its pod');
    }
    assert.equal(new Set(flows.map((f) => f.node)).size, lab.nodes.length, 'ECMP spread the flows over both nodes');
  });

  test('traffic that is not for a service passes: ping to nodes, pod to pod across nodes', async () => {
    for (const n of lab.nodes) await labExec(lab.client, ['ping', '-c', '1', '-W', '2', n.ip]);
    const out = await labExec(lab.nodes[0].netns, ['curl', '-s', '-m', '3', `http://${podIp('n2p1')}:8080/`]);
    assert.match(out, /^n2p1 /);
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

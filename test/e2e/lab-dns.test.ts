/**
 * The lab's cgroups and cluster DNS, for real (root):
 * - removeCgroup on real cgroup v2 directories: process trees spread over
 *   nested cgroups die and the directories go, through cgroup.kill and
 *   through per-process signals; the calling process is moved out, not killed.
 * - A lab (agents on, static routes): each node's cgroup subtree holds its
 *   pods' processes, the agent is given that subtree and runs outside it;
 *   labPodExec and labNodeExec run in the right cgroup, network namespace
 *   and resolv.conf; each node's dnsmasq answers the Kubernetes DNS records
 *   of every lab service over UDP and TCP; labDown leaves nothing behind,
 *   also after a labUp that failed half-way.
 *
 * Run as root: node --import tsx --test test/e2e/lab-dns.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { labDown, labNodeExec, labPodExec, labUp, type LabStatus } from '../../src/lab/index.js';
import { sh } from '../../src/lab/sh.js';
import { cgroupExecArgv, cgroupOfPid, cgroupProcs, createCgroup, ensureCgroup2Root, removeCgroup } from '../../src/util/cgroup.js';
import { waitFor } from '../../src/util/wait.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/** True when `pid` has exited (gone, or a zombie nobody reaped yet). */
function dead(pid: number): boolean {
  try {
    // The state is the field after the parenthesised command name.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Everything of the machine a lab could leave behind, by name. */
async function leftovers(cgroupRoot: string): Promise<{ netns: string[]; cgroups: string[]; etcNetns: string[]; pins: string[] }> {
  const ls = (dir: string, re: RegExp) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((d) => re.test(d)).sort() : []);
  const netns = (await sh('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith('xlb-')).sort();
  return { netns, cgroups: ls(cgroupRoot, /^xlb-lab-/), etcNetns: ls('/etc/netns', /^xlb-/), pins: ls('/sys/fs/bpf/xlb', /^lab-/) };
}

describe('removeCgroup on real cgroups', () => {
  const root = ensureCgroup2Root();
  const top = path.join(root, `xlb-test-${randomBytes(3).toString('hex')}`);
  const children: ChildProcess[] = [];

  /** Start `argv` detached inside cgroup `dir`; resolves once it runs there. */
  async function startIn(dir: string, argv: string[]): Promise<ChildProcess> {
    const [cmd, ...args] = cgroupExecArgv(dir, argv);
    const child = spawn(cmd, args, { stdio: 'ignore', detached: true });
    children.push(child);
    await waitFor(() => cgroupProcs(dir).includes(child.pid!), 5000, `pid ${child.pid} to join ${dir}`);
    return child;
  }

  after(async () => {
    await removeCgroup(top).catch(() => undefined);
    for (const c of children) c.kill('SIGKILL');
  });

  for (const useCgroupKill of [true, false]) {
    test(`${useCgroupKill ? 'cgroup.kill' : 'one SIGKILL per process'}: a process tree over nested cgroups dies and every directory goes`, async () => {
      const dir = path.join(top, useCgroupKill ? 'kill' : 'signal');
      createCgroup(path.join(dir, 'a', 'b'));
      createCgroup(path.join(dir, 'c'));
      // A shell with two children in a/b; a shell that keeps forking in c.
      const tree = await startIn(path.join(dir, 'a', 'b'), ['sh', '-c', 'sleep 300 & sleep 300 & wait']);
      const forker = await startIn(path.join(dir, 'c'), ['sh', '-c', 'while :; do sleep 300 & sleep 0.05; done']);
      await waitFor(() => cgroupProcs(path.join(dir, 'a', 'b')).length === 3, 5000, 'the shell and its two sleeps in a/b');
      await waitFor(() => cgroupProcs(path.join(dir, 'c')).length >= 3, 5000, 'the forking shell to have started sleeps in c');
      assert.equal(cgroupOfPid(tree.pid!), path.join(dir, 'a', 'b'));
      const pids = [...cgroupProcs(path.join(dir, 'a', 'b')), ...cgroupProcs(path.join(dir, 'c'))];

      await removeCgroup(dir, { useCgroupKill });
      assert.equal(fs.existsSync(dir), false, `${dir} removed`);
      await waitFor(() => pids.every(dead), 5000, 'every process of the tree to be dead');
      await waitFor(() => forker.exitCode !== null || forker.signalCode !== null, 5000, 'the forking shell to exit');
      assert.equal(forker.signalCode, 'SIGKILL');
      assert.ok(fs.existsSync(top), 'the parent cgroup stays');
    });
  }

  test('the calling process is moved to the root of the hierarchy, not killed', async () => {
    const before = cgroupOfPid(process.pid);
    const dir = path.join(top, 'self');
    createCgroup(dir);
    try {
      fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(process.pid));
      assert.equal(cgroupOfPid(process.pid), dir);
      await removeCgroup(dir);
      assert.equal(fs.existsSync(dir), false);
      assert.equal(cgroupOfPid(process.pid), root);
    } finally {
      fs.writeFileSync(path.join(before, 'cgroup.procs'), String(process.pid));
    }
  });

  test('removing twice, or a cgroup that is gone, is fine', async () => {
    const dir = path.join(top, 'twice');
    createCgroup(dir);
    await removeCgroup(dir);
    await removeCgroup(dir);
    assert.equal(fs.existsSync(dir), false);
  });
});

describe('a lab with cgroups per node and pod, and a cluster DNS', () => {
  const stateDir = `/run/xlb-test-${randomBytes(3).toString('hex')}`;
  const cgroupRoot = ensureCgroup2Root();
  let lab: LabStatus;
  let objects: Obj[];
  const pod = (name: string) => [...lab.pods, ...lab.clusterDns.pods].find((p) => p.name === name)!;

  /** dig from pod `from` to `server`: the header's status, the answer records' data, and the transport used. */
  async function dig(from: string, server: string, name: string, type = 'A', transport: 'UDP' | 'TCP' = 'UDP') {
    const out = await labPodExec(stateDir, from, ['dig', transport === 'TCP' ? '+tcp' : '+notcp', '+time=2', '+tries=1', `@${server}`, name, type]);
    const status = /status: ([A-Z]+)/.exec(out)?.[1];
    const via = /^;; SERVER: .*\((UDP|TCP)\)$/m.exec(out)?.[1];
    const answers = out
      .split('\n')
      .filter((l) => l && !l.startsWith(';'))
      .map((l) => l.split(/\s+/))
      .filter((f) => f[0].toLowerCase() === `${name.toLowerCase()}.` && f[3] === type)
      .map((f) => f.slice(4).join(' '));
    return { status, answers, via };
  }

  before(async () => {
    lab = await labUp({ nodes: 2, podsPerNode: 2, stateDir, announce: 'static' });
    objects = parseAllDocuments(fs.readFileSync(lab.manifests, 'utf8'))
      .map((d) => d.toJS() as Obj)
      .flatMap((d) => (d?.kind === 'List' ? d.items : [d]));
  });

  after(async () => {
    await labDown(stateDir);
  });

  test('each node has a cgroup subtree: host and one cgroup per pod, each pod process in its own', () => {
    assert.equal(lab.cgroup, path.join(cgroupRoot, `xlb-lab-${lab.suffix}`));
    for (const n of lab.nodes) {
      assert.equal(n.cgroup, path.join(lab.cgroup, n.name));
      assert.equal(n.hostCgroup, path.join(n.cgroup, 'host'));
      const pods = [...lab.pods, ...lab.clusterDns.pods].filter((p) => p.node === n.name);
      assert.deepEqual(
        fs.readdirSync(n.cgroup, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort(),
        ['host', ...pods.map((p) => p.name)].sort(),
      );
      assert.deepEqual(cgroupProcs(n.cgroup), [], 'nothing runs in the node cgroup itself');
      assert.deepEqual(cgroupProcs(n.hostCgroup), [], 'no node process until a test starts one');
      for (const p of pods) {
        assert.equal(p.cgroup, path.join(n.cgroup, p.name));
        assert.ok(p.pid, `${p.name} has a workload`);
        assert.equal(cgroupOfPid(p.pid!), p.cgroup, `${p.name}'s workload (pid ${p.pid}) is in its cgroup`);
        assert.deepEqual(cgroupProcs(p.cgroup), [p.pid], `only ${p.name}'s workload is in its cgroup`);
      }
    }
    assert.deepEqual(cgroupProcs(lab.cgroup), []);
    assert.ok(!cgroupOfPid(process.pid).startsWith(`${lab.cgroup}/`), 'the test runner is outside the lab');
  });

  test("each agent is given its node's subtree as socketLB.cgroupRoot and runs outside it", () => {
    for (const n of lab.nodes) {
      const cfg = parseAllDocuments(fs.readFileSync(path.join(stateDir, `${n.name}.yaml`), 'utf8'))[0].toJS() as Obj;
      assert.equal(cfg.socketLB?.cgroupRoot, n.cgroup);
      assert.ok(n.agentPid);
      assert.ok(!`${cgroupOfPid(n.agentPid!)}/`.startsWith(`${lab.cgroup}/`), `agent of ${n.name} is outside the lab's cgroups`);
    }
  });

  test("labPodExec runs in the pod's cgroup and network namespace, with the pod's resolv.conf", async () => {
    for (const p of lab.pods) {
      const out = await labPodExec(stateDir, p.name, ['sh', '-c', 'cat /proc/self/cgroup; ip -4 -o addr show dev eth0; echo ---; cat /etc/resolv.conf']);
      const [head, resolv] = out.split('---\n');
      assert.equal(`${cgroupRoot}${/^0::(.*)$/m.exec(head)?.[1]}`, p.cgroup);
      assert.match(head, new RegExp(`inet ${p.ip.replace(/\./g, '\\.')}/32`));
      // As the kubelet writes it for dnsPolicy ClusterFirst, namespace default.
      assert.equal(resolv, 'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 198.18.128.53\noptions ndots:5\n');
    }
  });

  test("labNodeExec runs in the node's host cgroup and network namespace, with the machine's mounts and resolv.conf", async () => {
    for (const n of lab.nodes) {
      const out = await labNodeExec(stateDir, n.name, ['sh', '-c', 'cat /proc/self/cgroup; ip -4 -o addr show dev eth0; echo ---; cat /etc/resolv.conf']);
      const [head, resolv] = out.split('---\n');
      assert.equal(`${cgroupRoot}${/^0::(.*)$/m.exec(head)?.[1]}`, n.hostCgroup);
      assert.match(head, new RegExp(`inet ${n.ip.replace(/\./g, '\\.')}/24`));
      assert.equal(resolv, fs.readFileSync('/etc/resolv.conf', 'utf8'));
    }
    // The cgroup2 mount stays visible (ip netns exec would have remounted /sys).
    assert.match(await labNodeExec(stateDir, 'node1', ['cat', path.join(lab.nodes[0].hostCgroup, 'cgroup.procs')]), /^\d+\n$/);
  });

  test('an unknown pod or node is an error naming it', async () => {
    await assert.rejects(async () => labPodExec(stateDir, 'n9p9', ['true']), /no pod n9p9/);
    await assert.rejects(async () => labNodeExec(stateDir, 'node9', ['true']), /no node node9/);
  });

  test('the manifests have Service kube-system/kube-dns at 198.18.128.53 and its EndpointSlice over the DNS pods', () => {
    const svc = objects.find((o) => o.kind === 'Service' && o.metadata.namespace === 'kube-system' && o.metadata.name === 'kube-dns');
    assert.equal(svc?.spec.type, 'ClusterIP');
    assert.equal(svc?.spec.clusterIP, '198.18.128.53');
    assert.deepEqual(
      svc?.spec.ports.map((p: Obj) => `${p.name} ${p.port}/${p.protocol} -> ${p.targetPort}`),
      ['dns 53/UDP -> 53', 'dns-tcp 53/TCP -> 53'],
    );
    const slices = objects.filter((o) => o.kind === 'EndpointSlice' && o.metadata.labels?.['kubernetes.io/service-name'] === 'kube-dns');
    assert.equal(slices.length, 1);
    assert.equal(slices[0].metadata.namespace, 'kube-system');
    assert.deepEqual(slices[0].ports.map((p: Obj) => `${p.name} ${p.port}/${p.protocol}`), ['dns 53/UDP', 'dns-tcp 53/TCP']);
    assert.deepEqual(slices[0].endpoints.map((e: Obj) => `${e.addresses[0]} ${e.nodeName} ${e.targetRef.namespace}/${e.targetRef.name}`).sort(), [
      '198.19.1.2 node1 kube-system/n1dns',
      '198.19.2.2 node2 kube-system/n2dns',
    ]);
    assert.deepEqual(lab.clusterDns.pods.map((p) => p.ip).sort(), ['198.19.1.2', '198.19.2.2']);
    // The other services keep their backends: no DNS pod among them.
    for (const s of lab.services) for (const b of s.backends) assert.match(b, /^198\.19\.\d\.1\d:/, `${s.name} backend ${b}`);
  });

  test('each DNS pod answers web.default.svc.cluster.local with its ClusterIP over UDP and TCP, from pods on both nodes', async () => {
    for (const server of lab.clusterDns.pods) {
      for (const from of ['n1p1', 'n2p2']) {
        for (const transport of ['UDP', 'TCP'] as const) {
          const r = await dig(from, server.ip, 'web.default.svc.cluster.local', 'A', transport);
          assert.deepEqual(r, { status: 'NOERROR', answers: ['198.18.128.10'], via: transport }, `${from} -> ${server.name} over ${transport}`);
        }
      }
    }
  });

  test('every lab service has its A record, PTR and SRV per named port, as the Kubernetes DNS specification lists them', async () => {
    const services = objects.filter((o) => o.kind === 'Service');
    assert.deepEqual(services.map((s) => `${s.metadata.namespace}/${s.metadata.name}`).sort(), [
      'default/dns-echo',
      'default/mixed',
      'default/web',
      'default/web-nodeport',
      'kube-system/kube-dns',
    ]);
    const server = pod('n2dns').ip;
    for (const s of services) {
      const fqdn = `${s.metadata.name}.${s.metadata.namespace}.svc.cluster.local`;
      assert.deepEqual((await dig('n1p2', server, fqdn)).answers, [s.spec.clusterIP], fqdn);
      const ptr = s.spec.clusterIP.split('.').reverse().join('.') + '.in-addr.arpa';
      assert.deepEqual((await dig('n1p2', server, ptr, 'PTR')).answers, [`${fqdn}.`], ptr);
      for (const p of s.spec.ports) {
        const srv = `_${p.name}._${p.protocol.toLowerCase()}.${fqdn}`;
        assert.deepEqual((await dig('n1p2', server, srv, 'SRV')).answers, [`0 100 ${p.port} ${fqdn}.`], srv);
      }
    }
  });

  test('a name in cluster.local that is no service is NXDOMAIN; the schema version is there', async () => {
    const server = pod('n1dns').ip;
    assert.equal((await dig('n2p1', server, 'nope.default.svc.cluster.local')).status, 'NXDOMAIN');
    assert.deepEqual((await dig('n2p1', server, 'dns-version.cluster.local', 'TXT')).answers, ['"1.1.0"']);
  });

  test('whoami.lab names the DNS pod that answered, so queries can be told apart', async () => {
    for (const server of lab.clusterDns.pods) {
      for (const transport of ['UDP', 'TCP'] as const) {
        assert.deepEqual((await dig('n1p1', server.ip, 'whoami.lab', 'TXT', transport)).answers, [`"${server.name}"`]);
      }
    }
  });

  test('labDown removes every cgroup (killing what still runs there), /etc/netns directory, namespace and the state', async () => {
    // Something a test left running in a pod.
    const pid = Number((await labPodExec(stateDir, 'n1p1', ['sh', '-c', 'sleep 300 >/dev/null 2>&1 & echo $!'])).trim());
    assert.equal(cgroupOfPid(pid), pod('n1p1').cgroup);
    const netns = [lab.client, lab.router, lab.fabric, ...lab.nodes.map((n) => n.netns), ...lab.pods.map((p) => p.netns), ...lab.clusterDns.pods.map((p) => p.netns)];
    for (const p of lab.pods) assert.ok(fs.existsSync(`/etc/netns/${p.netns}/resolv.conf`));
    const workloads = [...lab.pods, ...lab.clusterDns.pods].map((p) => p.pid!);

    await labDown(stateDir);

    assert.equal(fs.existsSync(lab.cgroup), false, `${lab.cgroup} removed`);
    for (const p of lab.pods) assert.equal(fs.existsSync(`/etc/netns/${p.netns}`), false, `/etc/netns/${p.netns} removed`);
    const left = (await sh('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]);
    assert.deepEqual(netns.filter((n) => left.includes(n)), []);
    assert.equal(fs.existsSync(stateDir), false);
    await waitFor(() => [pid, ...workloads].every(dead), 5000, 'the pods’ processes to be dead');
    const pins = fs.existsSync('/sys/fs/bpf/xlb') ? fs.readdirSync('/sys/fs/bpf/xlb').filter((d) => d.startsWith(`lab-${lab.suffix}-`)) : [];
    assert.deepEqual(pins, []);
  });
});

describe('a lab that fails half-way', () => {
  const stateDir = `/run/xlb-test-${randomBytes(3).toString('hex')}`;

  after(async () => {
    await labDown(stateDir);
  });

  test('labUp removes what it made: cgroups with running pods, /etc/netns, namespaces', async () => {
    const cgroupRoot = ensureCgroup2Root();
    const before = await leftovers(cgroupRoot);
    // The agents fail at start-up (no such interface), after every pod and DNS server started.
    await assert.rejects(
      labUp({ nodes: 2, podsPerNode: 1, stateDir, announce: 'static', agentConfig: { interfaces: ['xlbnope0'] } }),
      /agent on node1 exited before it was ready[^]*interface xlbnope0 does not exist/,
    );
    assert.deepEqual(await leftovers(cgroupRoot), before);
    assert.equal(fs.existsSync(stateDir), false);
    // dnsmasq's command line names its pid file in the state directory.
    const running = fs
      .readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(stateDir) && !dead(Number(d));
        } catch {
          return false;
        }
      });
    assert.deepEqual(running, [], 'no process of the failed lab runs');
  });
});

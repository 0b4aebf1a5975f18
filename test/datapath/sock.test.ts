/**
 * The socket hooks (xdp/xlb_sock.bpf.c) with real sockets: socket programs
 * cannot run under BPF_PROG_TEST_RUN, so a client process runs in a test
 * cgroup (where the programs are attached) and a private network namespace
 * (where backends listen on loopback addresses), and reports what connect(),
 * sendto()/recvfrom() and getpeername() gave it. The service addresses are
 * not routed in that namespace: a connection the hooks leave alone fails
 * at once with ENETUNREACH, which is how the tests see "not translated".
 *
 * Needs root, cgroup v2 and `make -C xdp`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { attachCgroup, detachCgroup, type CgroupHook } from '../../src/datapath/bpf.js';
import { enums } from '../../src/datapath/codec.js';
import { Datapath, DROP, buildObjects, dropsDelta } from './harness.js';
import { PROTO } from '../helpers/packet.js';
import { FlowEventReader, type FlowEvent } from '../../src/datapath/flow_events.js';
import { removeNetnsQuietly } from '../helpers/system.js';
import { createCgroup, ensureCgroup2Root, removeCgroup } from '../../src/util/cgroup.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const PROBE = path.join(here, '../helpers/sock-probe.mjs');
const BACKENDS_JS = path.join(here, '../helpers/sock-backends.mjs');
const F = enums.xlb_service_flags;
const BF = enums.xlb_backend_flags;

const sfx = randomBytes(3).toString('hex');
const NS = `xlbt-sock-${sfx}`;
const NS2 = `xlbt-sock2-${sfx}`;
const BACKENDS = ['198.18.200.11', '198.18.200.12', '198.18.200.13', '198.18.200.14'];
const TCP_PORT = 8080;
const UDP_PORT = 5353;

/** Frontends: internal IDs 1 (TCP), 2 (UDP), 3 (no endpoints), 4 (ClientIP affinity), 5 (local set). */
const CLUSTER_IP = '198.18.128.10';
const EMPTY_IP = '198.18.128.20';
const OUTSIDE_ONLY_IP = '198.18.128.30';
const STICKY_IP = '198.18.128.40';
const LOCAL_SET_IP = '198.18.128.50';
const NODE_PORT = 30080;

type Result = { reply?: string; remote?: { addr: string; port: number }; from?: { addr: string; port: number }; error?: string };

let dp: Datapath;
let cgroup: string;
let backends: ChildProcess | undefined;
let events: FlowEventReader | undefined;
const heard: FlowEvent[] = [];
const hooks: CgroupHook[] = ['cgroup/connect4', 'cgroup/sendmsg4', 'cgroup/recvmsg4', 'cgroup/getpeername4'];

/** Run the probe with `ops` in namespace `ns`, inside `cg` (or outside every test cgroup when undefined). */
function probe(ops: object[], opts: { ns?: string; cg?: string | undefined } = {}): Result[] {
  const ns = opts.ns ?? NS;
  const cg = 'cg' in opts ? opts.cg : cgroup;
  const inNs = ['nsenter', `--net=/run/netns/${ns}`, process.execPath, PROBE, JSON.stringify(ops)];
  const argv = cg ? ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cg, ...inNs] : inNs;
  return JSON.parse(execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 20000 })) as Result[];
}

const tcp = (addr: string, port: number) => ({ op: 'tcp', addr, port });
const udp = (addr: string, port: number) => ({ op: 'udp', addr, port });
const backendOf = (r: Result) => r.reply?.split(' ')[0];

/** A 13-slot table cycling over `ids` (the datapath reads M from the table). */
const cycle = (ids: number[]) => Array.from({ length: 13 }, (_, i) => ids[i % ids.length]);

before(async () => {
  buildObjects();
  dp = Datapath.load({ withSock: {}, withTc: false, eventsPerTick: 10000 });
  events = new FlowEventReader({ events: dp.map('xlb_events'), limit: dp.map('xlb_event_limit') }, (e) => heard.push(e));
  for (const ns of [NS, NS2]) {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  for (const a of BACKENDS) execFileSync('ip', ['-n', NS, 'addr', 'add', `${a}/32`, 'dev', 'lo']);
  cgroup = path.join(ensureCgroup2Root(), `xlb-test-sock-${sfx}`);
  createCgroup(cgroup);
  for (const h of hooks) attachCgroup(dp.sock![h].fd, cgroup, h);

  backends = spawn('nsenter', [`--net=/run/netns/${NS}`, process.execPath, BACKENDS_JS, BACKENDS.join(','), String(TCP_PORT), String(UDP_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    backends!.stdout!.on('data', (d) => String(d).includes('ready') && resolve());
    backends!.on('exit', (code) => reject(new Error(`backends exited with ${code}`)));
  });

  // Backends 1..4 TCP, 11..14 UDP; backend 4 is the only local one, and backend 3 is out of the cluster set.
  BACKENDS.forEach((addr, i) => {
    dp.setBackend(i + 1, { addr, port: TCP_PORT, proto: PROTO.TCP, flags: i === 3 ? BF.XLB_BE_F_LOCAL : BF.XLB_BE_F_NOT_LOCAL_SET });
    dp.setBackend(i + 11, { addr, port: UDP_PORT, proto: PROTO.UDP });
  });
  dp.setTable(1, cycle([1, 2, 3, 4]));
  dp.setTable(2, cycle([11, 12, 13, 14]));
  dp.setTable(4, cycle([1, 2, 3, 4]));
  dp.setTable(5, cycle([4]));
  // ClusterIPs: served only inside the cluster (id 0).
  dp.addFrontend(CLUSTER_IP, 80, PROTO.TCP, 0, 0, 1);
  dp.addFrontend(CLUSTER_IP, 53, PROTO.UDP, 0, 0, 2);
  dp.addFrontend(EMPTY_IP, 80, PROTO.TCP, 0, 0, 3);
  dp.addFrontend(EMPTY_IP, 53, PROTO.UDP, 0, 0, 3);
  dp.addFrontend(OUTSIDE_ONLY_IP, 80, PROTO.TCP, 1, F.XLB_SVC_F_EXTERNAL, 0);
  dp.addFrontend(STICKY_IP, 80, PROTO.TCP, 0, F.XLB_SVC_F_AFFINITY, 4, 600);
  dp.addFrontend(LOCAL_SET_IP, 80, PROTO.TCP, 0, F.XLB_SVC_F_INT_LOCAL, 5);
  // A node port on loopback (as the controller writes it for every node port).
  dp.addFrontend('127.0.0.1', NODE_PORT, PROTO.TCP, 0, F.XLB_SVC_F_NODEPORT, 1);
});

after(async () => {
  backends?.kill('SIGTERM');
  for (const h of hooks) if (dp?.sock && cgroup) detachCgroup(dp.sock[h].fd, cgroup, h);
  if (cgroup) await removeCgroup(cgroup);
  removeNetnsQuietly(NS, NS2);
  events?.close();
  dp?.close();
});

describe('connect4 and getpeername4', () => {
  test('a TCP connection to a ClusterIP reaches a backend, and getpeername() gives the ClusterIP', () => {
    const rs = probe(Array.from({ length: 16 }, () => tcp(CLUSTER_IP, 80)));
    for (const r of rs) {
      assert.equal(r.error, undefined, JSON.stringify(r));
      assert.ok(BACKENDS.includes(backendOf(r)!), r.reply);
      assert.deepEqual(r.remote, { addr: CLUSTER_IP, port: 80 });
    }
    // Each socket has its own cookie, hence its own Maglev slot.
    assert.ok(new Set(rs.map(backendOf)).size >= 2, `16 connections all reached ${backendOf(rs[0])}`);
  });

  test('a service without a usable endpoint refuses at once with ECONNREFUSED, and counts it', () => {
    const before = dp.drops();
    const [r] = probe([tcp(EMPTY_IP, 80)]);
    assert.equal(r.error, 'ECONNREFUSED');
    assert.deepEqual(dropsDelta(before, dp.drops()), { XLB_DROP_SOCK_REFUSED: 1 });
    assert.equal(DROP.XLB_DROP_SOCK_REFUSED, 8);
  });

  test('node ports answer on any loopback address, and the application sees the address it dialled', () => {
    for (const lo of ['127.0.0.1', '127.0.0.2']) {
      const [r] = probe([tcp(lo, NODE_PORT)]);
      assert.ok(BACKENDS.includes(backendOf(r)!), JSON.stringify(r));
      assert.deepEqual(r.remote, { addr: lo, port: NODE_PORT });
    }
  });

  test('a frontend served only to outside traffic (no internal service ID) is left alone', () => {
    const [r] = probe([tcp(OUTSIDE_ONLY_IP, 80)]);
    assert.equal(r.error, 'ENETUNREACH');
  });

  test('a process outside the cgroup is left alone', () => {
    const [r] = probe([tcp(CLUSTER_IP, 80)], { cg: undefined });
    assert.equal(r.error, 'ENETUNREACH');
  });

  test('sessionAffinity ClientIP: every connection of one network namespace goes to the same backend', () => {
    const rs = probe(Array.from({ length: 12 }, () => tcp(STICKY_IP, 80)));
    const picked = new Set(rs.map(backendOf));
    assert.equal(picked.size, 1, [...picked].join(' '));
    assert.ok(BACKENDS.includes([...picked][0]!));
  });

  test("a frontend's internal set decides: the local set's table holds the local backend only", () => {
    const rs = probe(Array.from({ length: 6 }, () => tcp(LOCAL_SET_IP, 80)));
    assert.deepEqual([...new Set(rs.map(backendOf))], [BACKENDS[3]]);
  });
});

describe('sendmsg4 and recvmsg4 (unconnected UDP, as DNS clients use it)', () => {
  test("datagrams to a ClusterIP reach backends, and each reply's source reads as the ClusterIP", () => {
    const rs = probe(Array.from({ length: 12 }, () => udp(CLUSTER_IP, 53)));
    for (const r of rs) {
      assert.equal(r.error, undefined, JSON.stringify(r));
      assert.ok(BACKENDS.includes(r.reply!), r.reply);
      assert.deepEqual(r.from, { addr: CLUSTER_IP, port: 53 });
    }
    assert.ok(new Set(rs.map((r) => r.reply)).size >= 2, 'one socket per datagram: several backends');
  });

  test('a connected UDP socket is translated at connect(); getpeername() and the reply give the ClusterIP', () => {
    const [r] = probe([{ op: 'udpConnected', addr: CLUSTER_IP, port: 53 }]);
    assert.ok(BACKENDS.includes(r.reply!), JSON.stringify(r));
    assert.deepEqual(r.remote, { addr: CLUSTER_IP, port: 53 });
    assert.deepEqual(r.from, { addr: CLUSTER_IP, port: 53 });
  });

  test('a datagram to a service without endpoints is refused with ECONNREFUSED', () => {
    const [r] = probe([udp(EMPTY_IP, 53)]);
    assert.equal(r.error, 'ECONNREFUSED');
  });

  test('flow events: a connect() placed and a refused one each send one, at the sock point; datagrams placed send none', () => {
    events!.poll();
    heard.length = 0;
    const [placed, refused, , udpRefused] = probe([tcp(CLUSTER_IP, 80), tcp(EMPTY_IP, 80), udp(CLUSTER_IP, 53), udp(EMPTY_IP, 53)]);
    assert.equal(refused.error, 'ECONNREFUSED');
    assert.equal(udpRefused.error, 'ECONNREFUSED');
    events!.poll();
    const view = heard.map((e) => ({ type: e.type, point: e.point, protocol: e.protocol, destination: e.destination, serviceId: e.serviceId, backend: e.backend, dropReason: e.dropReason }));
    assert.deepEqual(view, [
      { type: 'new-flow', point: 'sock', protocol: 'TCP', destination: { ip: CLUSTER_IP, port: 80 }, serviceId: 1, backend: { ip: backendOf(placed)!, port: TCP_PORT }, dropReason: undefined },
      { type: 'drop', point: 'sock', protocol: 'TCP', destination: { ip: EMPTY_IP, port: 80 }, serviceId: 3, backend: undefined, dropReason: 'sock_refused' },
      { type: 'drop', point: 'sock', protocol: 'UDP', destination: { ip: EMPTY_IP, port: 53 }, serviceId: 3, backend: undefined, dropReason: 'sock_refused' },
    ]);
  });
});

describe('socketLB.hostNamespaceOnly', () => {
  test("only the host namespace's sockets are translated; a pod's are left to tc", async () => {
    // The host here is NS: its cookie, read from inside it.
    const cookie = BigInt(
      execFileSync('nsenter', [`--net=/run/netns/${NS}`, process.execPath, '--import', 'tsx', '-e', "import('./src/datapath/bpf.ts').then((m) => console.log(String(m.netnsCookie())))"], {
        encoding: 'utf8',
        cwd: path.join(here, '../..'),
      }).trim(),
    );
    const own = Datapath.load({ withSock: { hostNetnsCookie: cookie }, withTc: false });
    const cg = path.join(ensureCgroup2Root(), `xlb-test-sockhost-${sfx}`);
    try {
      createCgroup(cg);
      own.setBackend(1, { addr: BACKENDS[0], port: TCP_PORT, proto: PROTO.TCP });
      own.setTable(1, cycle([1]));
      own.addFrontend(CLUSTER_IP, 80, PROTO.TCP, 0, 0, 1);
      attachCgroup(own.sock!['cgroup/connect4'].fd, cg, 'cgroup/connect4');
      const [host] = probe([tcp(CLUSTER_IP, 80)], { cg });
      assert.equal(backendOf(host), BACKENDS[0], JSON.stringify(host));
      const [pod] = probe([tcp(CLUSTER_IP, 80)], { cg, ns: NS2 });
      assert.equal(pod.error, 'ENETUNREACH');
    } finally {
      detachCgroup(own.sock!['cgroup/connect4'].fd, cg, 'cgroup/connect4');
      await removeCgroup(cg);
      own.close();
    }
  });
});

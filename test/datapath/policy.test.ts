/**
 * Service policies that decide a new flow before Maglev does, under
 * BPF_PROG_TEST_RUN on xlb_xdp_ingress: loadBalancerSourceRanges (new flows
 * to a LoadBalancer frontend only from the service's CIDRs; NodePorts not
 * restricted) and sessionAffinity ClientIP (a client's new flows keep one
 * backend until the timeout, a change or a drain). Maps are written through
 * BpfLBMaps, as the agent writes them.
 *
 * Run as root: node --import tsx --test test/datapath/policy.test.ts
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Datapath, XDP, BE_LOCAL, buildObjects, dropsDelta } from './harness.js';
import { predictBackend } from '../../src/maglev/flowhash.js';
import { enums, encode, decode } from '../../src/datapath/codec.js';
import { tcpPacket, parsePacket, PROTO, TCP_FLAG } from '../helpers/packet.js';

const F = enums.xlb_service_flags;
const BE_DRAINING = enums.xlb_backend_flags.XLB_BE_F_DRAINING;
const NODE = '198.18.0.11';
const VIP = '203.0.113.10';
const NODEPORT = 30080;

/** Service 1: VIP:80 with source ranges, and a NodePort; one backend. */
const RANGED = { id: 1, port: 80, backend: { id: 1, addr: '198.19.1.1', port: 8080 } };
/** Service 2: VIP:81 with ClientIP affinity over backends 11..15. */
const STICKY = { id: 2, port: 81, timeout: 600 };
const STICKY_BACKENDS = [11, 12, 13, 14, 15].map((id) => ({ id, addr: `198.19.2.${id}`, port: 9000 }));
const STICKY_TABLE = [11, 12, 13, 14, 15, 11, 12, 13, 14, 15, 11, 12, 13];

let dp: Datapath;
let nextPort = 30000;

function syn(src: string, dst: string, dport: number, sport = nextPort++): Buffer {
  return tcpPacket({ ip: { src, dst }, tcp: { sport, dport, flags: TCP_FLAG.SYN } });
}

/** Run one packet; returns the verdict and the destination it was DNATed to. */
function run(pkt: Buffer): { verdict: number; dst: string } {
  const r = dp.ingress.testRun(pkt);
  const p = parsePacket(r.dataOut);
  return { verdict: r.retval, dst: `${p.ip!.dst}:${p.l4!.dport}` };
}

before(() => {
  buildObjects();
  dp = Datapath.load({ nodeAddr: NODE });
  dp.setBackend(RANGED.backend.id, { addr: RANGED.backend.addr, port: RANGED.backend.port, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.lbmaps.putFrontends([
    { key: { addr: VIP, port: RANGED.port, proto: PROTO.TCP }, service: { id: RANGED.id, flags: F.XLB_SVC_F_EXTERNAL | F.XLB_SVC_F_SOURCE_RANGES } },
    { key: { addr: NODE, port: NODEPORT, proto: PROTO.TCP }, service: { id: RANGED.id, flags: F.XLB_SVC_F_NODEPORT } },
  ]);
  dp.setTable(RANGED.id, [RANGED.backend.id, RANGED.backend.id, RANGED.backend.id]);
  dp.lbmaps.putSourceRanges(RANGED.id, ['192.0.2.0/25', '198.18.1.7/32']);

  for (const b of STICKY_BACKENDS) dp.setBackend(b.id, { addr: b.addr, port: b.port, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.lbmaps.putFrontends([
    { key: { addr: VIP, port: STICKY.port, proto: PROTO.TCP }, service: { id: STICKY.id, flags: F.XLB_SVC_F_EXTERNAL | F.XLB_SVC_F_AFFINITY, affinity_timeout: STICKY.timeout } },
  ]);
  dp.setTable(STICKY.id, STICKY_TABLE);
});

after(() => dp?.close());

describe('loadBalancerSourceRanges', () => {
  const backend = `${RANGED.backend.addr}:${RANGED.backend.port}`;

  test('a SYN from inside a range is DNATed; from outside it is dropped and counted as source_range', () => {
    assert.deepEqual(run(syn('192.0.2.7', VIP, RANGED.port)), { verdict: XDP.PASS, dst: backend });
    assert.deepEqual(run(syn('198.18.1.7', VIP, RANGED.port)), { verdict: XDP.PASS, dst: backend }, 'a /32 range');
    const before = dp.drops();
    for (const src of ['192.0.2.200', '198.18.1.8', '203.0.113.1']) {
      const pkt = syn(src, VIP, RANGED.port);
      const r = dp.ingress.testRun(pkt);
      assert.equal(r.retval, XDP.DROP, `${src} is outside the ranges`);
    }
    assert.deepEqual(dropsDelta(before, dp.drops()), { XLB_DROP_SOURCE_RANGE: 3 });
  });

  test('the NodePort of the same service is not restricted (as in kube-proxy)', () => {
    assert.deepEqual(run(syn('192.0.2.200', NODE, NODEPORT)), { verdict: XDP.PASS, dst: backend });
  });

  test('changing the ranges applies to new flows; an established flow keeps going', () => {
    const sport = nextPort++;
    assert.equal(run(syn('192.0.2.7', VIP, RANGED.port, sport)).verdict, XDP.PASS);
    dp.lbmaps.putSourceRanges(RANGED.id, ['192.0.2.128/25']);
    try {
      const ack = tcpPacket({ ip: { src: '192.0.2.7', dst: VIP }, tcp: { sport, dport: RANGED.port, flags: TCP_FLAG.ACK } });
      assert.deepEqual(run(ack), { verdict: XDP.PASS, dst: backend }, 'established flow of a now-excluded client');
      assert.equal(run(syn('192.0.2.7', VIP, RANGED.port)).verdict, XDP.DROP, 'its new flows are not');
      assert.equal(run(syn('192.0.2.200', VIP, RANGED.port)).verdict, XDP.PASS, 'the new range is open');
    } finally {
      dp.lbmaps.putSourceRanges(RANGED.id, ['192.0.2.0/25', '198.18.1.7/32']);
    }
  });
});

describe('sessionAffinity: ClientIP', () => {
  const addrOf = (id: number) => STICKY_BACKENDS.find((b) => b.id === id)!;
  const affinityKey = (client: string) => encode('xlb_affinity_key', { client_addr: client, service_id: STICKY.id });

  test('every new flow of a client goes to the backend of its first, although Maglev would spread them', () => {
    const client = '192.0.2.21';
    const ports = Array.from({ length: 20 }, () => nextPort++);
    const maglev = new Set(ports.map((sport) => predictBackend(Uint32Array.from(STICKY_TABLE), { saddr: client, daddr: VIP, sport, dport: STICKY.port, proto: PROTO.TCP })));
    assert.ok(maglev.size >= 3, 'without affinity these flows would reach several backends');
    const first = predictBackend(Uint32Array.from(STICKY_TABLE), { saddr: client, daddr: VIP, sport: ports[0], dport: STICKY.port, proto: PROTO.TCP });
    const want = `${addrOf(first).addr}:${addrOf(first).port}`;
    for (const sport of ports) assert.deepEqual(run(syn(client, VIP, STICKY.port, sport)), { verdict: XDP.PASS, dst: want });
    const entry = decode('xlb_affinity_entry', dp.map('xlb_affinity').lookup(affinityKey(client))!);
    assert.equal(entry.backend_id, first);
  });

  test('clients are independent: another client gets its own Maglev pick', () => {
    for (const client of ['192.0.2.31', '192.0.2.32', '192.0.2.33']) {
      const sport = nextPort++;
      const pick = predictBackend(Uint32Array.from(STICKY_TABLE), { saddr: client, daddr: VIP, sport, dport: STICKY.port, proto: PROTO.TCP });
      assert.deepEqual(run(syn(client, VIP, STICKY.port, sport)), { verdict: XDP.PASS, dst: `${addrOf(pick).addr}:9000` });
    }
  });

  test('after the timeout the next flow is placed by Maglev again and remembered anew', () => {
    const client = '192.0.2.41';
    run(syn(client, VIP, STICKY.port));
    const key = affinityKey(client);
    const old = decode('xlb_affinity_entry', dp.map('xlb_affinity').lookup(key)!);
    // Last chosen one second longer ago than the timeout, counted back from
    // the time the datapath itself just wrote (CLOCK_MONOTONIC, which starts
    // at boot). Modulo 2^64, as the datapath subtracts: on a machine up for
    // less than the timeout this lies "before boot", and must still read as
    // expired (a fixed small value such as 1 would be recent then).
    const stale = BigInt.asUintN(64, old.last_ns - BigInt(STICKY.timeout + 1) * 1_000_000_000n);
    dp.map('xlb_affinity').update(key, encode('xlb_affinity_entry', { ...old, last_ns: stale }));
    // A flow whose Maglev pick differs from the remembered backend shows the re-pick.
    let sport = nextPort++;
    let pick = 0;
    for (; ; sport = nextPort++) {
      pick = predictBackend(Uint32Array.from(STICKY_TABLE), { saddr: client, daddr: VIP, sport, dport: STICKY.port, proto: PROTO.TCP });
      if (pick !== old.backend_id) break;
    }
    assert.deepEqual(run(syn(client, VIP, STICKY.port, sport)), { verdict: XDP.PASS, dst: `${addrOf(pick).addr}:9000` });
    const now = decode('xlb_affinity_entry', dp.map('xlb_affinity').lookup(key)!);
    assert.equal(now.backend_id, pick);
    assert.ok(now.last_ns !== stale && now.last_ns >= old.last_ns, 'the entry was written anew');
  });

  test('an entry stamped a little after the packet read the clock (by another CPU) is fresh, not expired', () => {
    const client = '192.0.2.42';
    run(syn(client, VIP, STICKY.port));
    const key = affinityKey(client);
    const old = decode('xlb_affinity_entry', dp.map('xlb_affinity').lookup(key)!);
    // Five seconds ahead of any clock reading this test can make: unsigned,
    // now - last_ns would wrap to ~584 years and re-pick by Maglev.
    dp.map('xlb_affinity').update(key, encode('xlb_affinity_entry', { ...old, last_ns: old.last_ns + 5_000_000_000n }));
    let sport = nextPort++;
    for (; ; sport = nextPort++) {
      if (predictBackend(Uint32Array.from(STICKY_TABLE), { saddr: client, daddr: VIP, sport, dport: STICKY.port, proto: PROTO.TCP }) !== old.backend_id) break;
    }
    const b = addrOf(old.backend_id);
    assert.deepEqual(run(syn(client, VIP, STICKY.port, sport)), { verdict: XDP.PASS, dst: `${b.addr}:${b.port}` });
  });

  test('a draining or removed backend gets no new flows through affinity', () => {
    const client = '192.0.2.51';
    run(syn(client, VIP, STICKY.port));
    const id = decode('xlb_affinity_entry', dp.map('xlb_affinity').lookup(affinityKey(client))!).backend_id;
    const b = addrOf(id);
    const others = STICKY_TABLE.filter((x) => x !== id);
    dp.setBackend(id, { addr: b.addr, port: b.port, proto: PROTO.TCP, flags: BE_LOCAL | BE_DRAINING });
    dp.setTable(STICKY.id, others);
    try {
      const r = run(syn(client, VIP, STICKY.port));
      assert.equal(r.verdict, XDP.PASS);
      assert.notEqual(r.dst, `${b.addr}:${b.port}`, 'not to the draining backend');
      dp.lbmaps.deleteBackends([id]);
      const r2 = run(syn(client, VIP, STICKY.port));
      assert.notEqual(r2.dst, `${b.addr}:${b.port}`, 'not to the removed backend');
    } finally {
      dp.setBackend(id, { addr: b.addr, port: b.port, proto: PROTO.TCP, flags: BE_LOCAL });
      dp.setTable(STICKY.id, STICKY_TABLE);
    }
  });
});

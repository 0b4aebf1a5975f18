/**
 * xlb_xdp_ingress on malformed input: every truncation of a SYN to a VIP,
 * and seeded random frames (raw bytes, IPv4-shaped bytes aimed at
 * frontends, mutated valid packets). The datapath may pass a frame untouched,
 * drop it (counted under the right reason) or pass a rewritten one only when
 * the rewrite is a well-formed DNAT; never anything else.
 *
 * Seed: XLB_FUZZ_SEED (printed on every run so that a failure can be replayed).
 * Run as root: node --import tsx --test test/datapath/robustness.test.ts
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Datapath, XDP, BE_LOCAL, buildObjects, dropsDelta, type DropReason } from './harness.js';
import { BpfError } from '../../src/datapath/bpf.js';
import { internetChecksum, tcpPacket, udpPacket, parsePacket, verifyChecksums, truncate, PROTO, ETH_P, type ChecksumVerdict } from '../helpers/packet.js';
import { prng } from '../helpers/prng.js';

const CLIENT = '192.0.2.7';
const VIP = '203.0.113.10';
const VIP_BYTES = [203, 0, 113, 10];
const WEB = { id: 1, port: 80 };
const DNS = { id: 2, port: 53 };
const EMPTY = { id: 3, port: 81 };
/** TCP options of a typical SYN: MSS, SACK permitted, timestamps, NOP, window scale (20 bytes). */
const SYN_OPTIONS = Buffer.from('020405b40402080a0000000100000000' + '01030307', 'hex');

let dp: Datapath;

before(() => {
  buildObjects();
  dp = Datapath.load({ nodeAddr: '198.18.0.11', withTc: false });
  dp.setBackend(1, { addr: '198.19.1.1', port: 8080, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.setBackend(2, { addr: '198.19.1.2', port: 8080, proto: PROTO.TCP, flags: BE_LOCAL });
  dp.setBackend(3, { addr: '198.19.1.3', port: 5353, proto: PROTO.UDP, flags: BE_LOCAL });
  dp.addFrontend(VIP, WEB.port, PROTO.TCP, WEB.id);
  dp.setTable(WEB.id, [1, 2, 1, 2, 1, 2, 1]);
  dp.addFrontend(VIP, DNS.port, PROTO.UDP, DNS.id);
  dp.setTable(DNS.id, [3, 3, 3]);
  dp.addFrontend(VIP, EMPTY.port, PROTO.TCP, EMPTY.id);
});

after(() => dp?.close());

const checksumsOf = (frame: Buffer): ChecksumVerdict | undefined => {
  try {
    return verifyChecksums(frame);
  } catch {
    return undefined;
  }
};

/**
 * The rule every output obeys. A rewritten frame must be an IPv4 TCP/UDP
 * frame of the same length whose only changed bytes are the destination
 * address and port and the two checksums, with checksums exactly as valid as
 * the input's (an incremental update neither repairs nor breaks them).
 */
function assertSafeOutcome(input: Buffer, retval: number, out: Buffer, what: string): void {
  assert.ok(retval === XDP.PASS || retval === XDP.DROP, `${what}: verdict ${retval}`);
  if (retval === XDP.DROP || out.equals(input)) return;
  assert.equal(out.length, input.length, `${what}: length`);
  const p = parsePacket(out);
  assert.ok(p.ip && p.l4, `${what}: a rewritten frame is IPv4 TCP/UDP with whole headers`);
  const l3 = p.l3Offset;
  const l4 = l3 + p.ip.ihl * 4;
  const checkAt = l4 + (p.ip.protocol === PROTO.TCP ? 16 : 6);
  const allowed = new Set([l3 + 10, l3 + 11, l3 + 16, l3 + 17, l3 + 18, l3 + 19, l4 + 2, l4 + 3, checkAt, checkAt + 1]);
  for (let i = 0; i < out.length; i++) if (out[i] !== input[i]) assert.ok(allowed.has(i), `${what}: byte ${i} changed`);
  assert.ok(l3 + p.ip.totalLength <= out.length, `${what}: whole IPv4 payload present`);
  assert.deepEqual(checksumsOf(out), checksumsOf(input), `${what}: checksum validity preserved`);
}

describe('truncated frames', () => {
  const cases: Array<{ name: string; frame: Buffer; headersEnd: number }> = [
    {
      name: 'a SYN with TCP options',
      frame: tcpPacket({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 50001, dport: WEB.port, options: SYN_OPTIONS } }),
      headersEnd: 14 + 20 + 4,
    },
    {
      name: 'a SYN behind a VLAN tag with IPv4 options',
      frame: tcpPacket({ eth: { vlan: { id: 9 } }, ip: { src: CLIENT, dst: VIP, options: Buffer.alloc(8, 1) }, tcp: { sport: 50002, dport: WEB.port } }),
      headersEnd: 18 + 28 + 4,
    },
    {
      name: 'a UDP datagram',
      frame: udpPacket({ ip: { src: CLIENT, dst: VIP }, udp: { sport: 50003, dport: DNS.port, payload: Buffer.from('query') } }),
      headersEnd: 14 + 20 + 4,
    },
  ];
  for (const c of cases) {
    test(`${c.name} cut at every length: untouched pass before the ports, truncated drop after, DNAT only when whole`, () => {
      const full = c.frame.length;
      const before = dp.drops();
      let drops = 0;
      for (let len = 0; len <= full; len++) {
        const input = truncate(c.frame, len);
        if (len < 14) {
          // BPF_PROG_TEST_RUN itself refuses XDP input shorter than an Ethernet header
          assert.throws(() => dp.ingress.testRun(input), (e: unknown) => e instanceof BpfError && e.errno === 22, `length ${len}`);
          continue;
        }
        const r = dp.ingress.testRun(input);
        assertSafeOutcome(input, r.retval, r.dataOut, `length ${len}`);
        if (len < c.headersEnd) {
          assert.equal(r.retval, XDP.PASS, `length ${len}: too short to know the frontend`);
          assert.deepEqual(r.dataOut, input, `length ${len}: untouched`);
        } else if (len < full) {
          assert.equal(r.retval, XDP.DROP, `length ${len}: frontend known, L4 header or payload cut`);
          drops++;
        } else {
          assert.equal(r.retval, XDP.PASS);
          assert.notDeepEqual(r.dataOut, input, 'the whole frame is DNATed');
          assert.equal(verifyChecksums(r.dataOut).ip, true);
        }
      }
      assert.deepEqual(dropsDelta(before, dp.drops()), drops ? { XLB_DROP_TRUNCATED: drops } : {});
    });
  }

  test('a frame longer than its IPv4 total length (Ethernet padding) is served', () => {
    const frame = Buffer.concat([tcpPacket({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 50004, dport: WEB.port } }), Buffer.alloc(6)]);
    const r = dp.ingress.testRun(frame);
    assert.equal(r.retval, XDP.PASS);
    assert.equal(parsePacket(r.dataOut).l4!.dport, 8080);
    assert.deepEqual(r.dataOut.subarray(-6), Buffer.alloc(6), 'padding untouched');
  });

  test('an IPv4 total length too small for the TCP header drops as truncated', () => {
    const frame = tcpPacket({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 50005, dport: WEB.port } });
    frame.writeUInt16BE(30, 16);
    const before = dp.drops();
    assert.equal(dp.ingress.testRun(frame).retval, XDP.DROP);
    assert.deepEqual(dropsDelta(before, dp.drops()), { XLB_DROP_TRUNCATED: 1 });
  });
});

describe('random frames', () => {
  const seed = Number(process.env.XLB_FUZZ_SEED ?? Date.now() % 2 ** 31);
  console.log(`robustness: XLB_FUZZ_SEED=${seed}`);
  const rand = prng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

  /** Run `count` frames from `gen` and check every outcome and the drop counters. */
  function fuzz(count: number, gen: () => Buffer): { passedRewritten: number; dropped: number } {
    const before = dp.drops();
    let dropped = 0;
    let passedRewritten = 0;
    for (let i = 0; i < count; i++) {
      const input = gen();
      const r = dp.ingress.testRun(input);
      assertSafeOutcome(input, r.retval, r.dataOut, `seed ${seed} frame ${i} ${input.toString('hex')}`);
      if (r.retval === XDP.DROP) dropped++;
      else if (!r.dataOut.equals(input)) passedRewritten++;
    }
    const delta = dropsDelta(before, dp.drops());
    const counted = Object.values(delta).reduce((s, n) => s + (n ?? 0), 0);
    assert.equal(counted, dropped, 'every drop is counted once');
    for (const reason of Object.keys(delta) as DropReason[])
      assert.ok(['XLB_DROP_TRUNCATED', 'XLB_DROP_NO_BACKEND', 'XLB_DROP_BAD_CHECKSUM'].includes(reason), `unexpected drop reason ${reason}`);
    return { passedRewritten, dropped };
  }

  test('random bytes only ever pass or drop', () => {
    fuzz(3000, () => bytes(14 + int(120)));
  });

  test('IPv4-shaped random bytes aimed at the frontends pass, drop or are rewritten well-formed', () => {
    const res = fuzz(5000, () => {
      const f = bytes(34 + int(60));
      f.writeUInt16BE(ETH_P.IPV4, 12);
      f[14] = 0x40 | (5 + (int(4) === 0 ? int(11) : 0)); // mostly IHL 5, sometimes options
      f[20] = int(8) === 0 ? f[20] : 0; // mostly not a fragment
      f[21] = int(8) === 0 ? f[21] : 0;
      f[23] = [PROTO.TCP, PROTO.UDP][int(2)];
      Buffer.from(VIP_BYTES).copy(f, 30);
      const l4 = 14 + (f[14] & 0x0f) * 4;
      if (l4 + 4 <= f.length) f.writeUInt16BE([WEB.port, DNS.port, EMPTY.port][int(3)], l4 + 2);
      if (int(2)) f.writeUInt16BE(f.length - 14, 16); // a consistent total length half the time
      // a valid header checksum three times in four (a wrong one drops before any state)
      if (int(4) && l4 <= f.length) {
        f.writeUInt16BE(0, 24);
        f.writeUInt16BE(internetChecksum(f.subarray(14, l4)), 24);
      }
      return f;
    });
    assert.ok(res.passedRewritten > 0 && res.dropped > 0, `the generator reaches DNAT (${res.passedRewritten}) and drops (${res.dropped})`);
  });

  test('valid packets with random bytes corrupted pass, drop or are rewritten well-formed', () => {
    const res = fuzz(5000, () => {
      const f =
        int(2) === 0
          ? tcpPacket({ ip: { src: CLIENT, dst: VIP, options: int(3) === 0 ? Buffer.alloc(4 * (1 + int(10)), 1) : undefined }, tcp: { sport: 1024 + int(60000), dport: [WEB.port, EMPTY.port][int(2)], options: int(2) ? SYN_OPTIONS : undefined } })
          : udpPacket({ ip: { src: CLIENT, dst: VIP }, udp: { sport: 1024 + int(60000), dport: DNS.port, noChecksum: int(2) === 0, payload: bytes(int(40)) } });
      for (let k = int(4); k > 0; k--) f[int(f.length)] = int(256);
      return int(4) === 0 ? truncate(f, 14 + int(f.length - 13)) : f;
    });
    assert.ok(res.passedRewritten > 0, 'the generator reaches DNAT');
  });
});

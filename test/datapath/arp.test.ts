/**
 * The ARP responder of xlb_xdp_ingress (xdp/include/xlb_arp.h) under
 * BPF_PROG_TEST_RUN: an ARP request for a VIP in xlb_arp_vips under
 * (VIP, ingress ifindex, VLAN) becomes an RFC 826 reply sent back out
 * (XDP_TX); every other ARP frame passes with its bytes unchanged.
 *
 * The entries are written through BpfL2Maps (the code the agent runs). Runs
 * in a private network namespace with a veth pair, because test runs with an
 * ingress ifindex need that interface to exist.
 *
 * Run as root: node --import tsx --test test/datapath/arp.test.ts
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Datapath, XDP, buildObjects, xdpCtx } from './harness.js';
import { ifIndex } from '../../src/datapath/bpf.js';
import { BpfL2Maps, ARP_VIPS_MAP } from '../../src/datapath/l2maps.js';
import { enterNetns } from '../../src/util/netns.js';
import { ipToU32 } from '../../src/util/ip.js';
import { ETH_P, MAC, arpPacket, macBytes, tcpPacket, parsePacket, type ArpSpec } from '../helpers/packet.js';
import { leaveAndRemoveNetns } from '../helpers/system.js';

const NS = `xlb-arp-${randomBytes(3).toString('hex')}`;
const VIP = '192.0.2.10';
const VIP_VLAN = '192.0.2.11';
const OTHER_IP = '192.0.2.99';
const CLIENT_IP = '198.18.0.1';
const CLIENT_MAC = MAC.client;
const NODE_MAC = '02:00:00:00:00:0a';
const NODE_MAC_VLAN = '02:00:00:00:00:1a';
const OTHER_HOST_MAC = '02:00:00:00:00:77';
const BROADCAST = 'ff:ff:ff:ff:ff:ff';
const VLAN = 100;

let dp: Datapath;
let l2: BpfL2Maps;
let leave: (() => void) | undefined;
/** The "announcing" interface and another one of the node. */
let ifOwned = 0;
let ifOther = 0;

/** A request from the client for `tpa`. */
const request = (tpa: string, over: Partial<ArpSpec> = {}): Buffer => arpPacket({ spa: CLIENT_IP, tpa, ...over });

function ingress(frame: Buffer, ifindex = ifOwned) {
  return dp.ingress.testRun(frame, { ctxIn: xdpCtx(frame.length, ifindex) });
}

before(() => {
  buildObjects();
  execFileSync('ip', ['netns', 'add', NS]);
  try {
    execFileSync('ip', ['-n', NS, 'link', 'add', 'xlbA', 'type', 'veth', 'peer', 'name', 'xlbB']);
    for (const dev of ['lo', 'xlbA', 'xlbB']) execFileSync('ip', ['-n', NS, 'link', 'set', dev, 'up']);
    leave = enterNetns(NS);
    ifOwned = ifIndex('xlbA');
    ifOther = ifIndex('xlbB');
    dp = Datapath.load({ withTc: false });
    l2 = new BpfL2Maps(dp.map(ARP_VIPS_MAP));
    l2.put([
      { vip: VIP, ifindex: ifOwned, vlan: 0, mac: NODE_MAC },
      { vip: VIP_VLAN, ifindex: ifOwned, vlan: VLAN, mac: NODE_MAC_VLAN },
    ]);
  } catch (e) {
    leaveAndRemoveNetns(NS, leave);
    throw e;
  }
});

after(() => leaveAndRemoveNetns(NS, leave, () => dp?.close()));

describe('ARP requests for an owned VIP are answered', () => {
  test('a broadcast request gets a well-formed RFC 826 reply from the entry MAC, sent back out (XDP_TX)', () => {
    const r = ingress(request(VIP));
    assert.equal(r.retval, XDP.TX);
    // The whole reply, byte for byte.
    const expected = arpPacket({ op: 2, dst: CLIENT_MAC, sha: NODE_MAC, spa: VIP, tha: CLIENT_MAC, tpa: CLIENT_IP });
    macBytes(NODE_MAC).copy(expected, 6); // Ethernet source: the node, not the requester
    assert.deepEqual(r.dataOut, expected);
    // And the fields that matter, spelled out.
    const o = r.dataOut;
    assert.equal(o.length, 42);
    assert.deepEqual(o.subarray(0, 6), macBytes(CLIENT_MAC), 'Ethernet destination: the requester');
    assert.deepEqual(o.subarray(6, 12), macBytes(NODE_MAC), 'Ethernet source: the entry MAC');
    assert.equal(o.readUInt16BE(12), ETH_P.ARP);
    assert.equal(o.readUInt16BE(14), 1, 'htype Ethernet');
    assert.equal(o.readUInt16BE(16), ETH_P.IPV4, 'ptype IPv4');
    assert.equal(o[18], 6, 'hlen');
    assert.equal(o[19], 4, 'plen');
    assert.equal(o.readUInt16BE(20), 2, 'op reply');
    assert.deepEqual(o.subarray(22, 28), macBytes(NODE_MAC), 'sender MAC');
    assert.equal(o.readUInt32BE(28), ipToU32(VIP), 'sender IP: the VIP');
    assert.deepEqual(o.subarray(32, 38), macBytes(CLIENT_MAC), 'target MAC: the requester');
    assert.equal(o.readUInt32BE(38), ipToU32(CLIENT_IP), 'target IP: the requester');
  });

  test('a padded minimum-size frame is answered in place: same length, padding kept', () => {
    const padding = Buffer.alloc(18, 0);
    const r = ingress(request(VIP, { padding }));
    assert.equal(r.retval, XDP.TX);
    assert.equal(r.dataOut.length, 60);
    assert.deepEqual(r.dataOut.subarray(42), padding);
    assert.equal(r.dataOut.readUInt16BE(20), 2);
  });

  test('a request sent unicast to the entry MAC (a cache refresh) is answered', () => {
    const r = ingress(request(VIP, { dst: NODE_MAC, tha: NODE_MAC }));
    assert.equal(r.retval, XDP.TX);
    assert.deepEqual(r.dataOut.subarray(0, 6), macBytes(CLIENT_MAC));
    assert.deepEqual(r.dataOut.subarray(32, 38), macBytes(CLIENT_MAC), 'target MAC: the requester, not the old target field');
  });

  test('an ARP probe (sender IP 0.0.0.0, RFC 5227) is answered to the prober with target IP 0.0.0.0', () => {
    const r = ingress(request(VIP, { spa: '0.0.0.0' }));
    assert.equal(r.retval, XDP.TX);
    assert.deepEqual(r.dataOut.subarray(0, 6), macBytes(CLIENT_MAC));
    assert.equal(r.dataOut.readUInt32BE(28), ipToU32(VIP));
    assert.equal(r.dataOut.readUInt32BE(38), 0);
  });

  test('an 802.1Q-tagged request on the entry VLAN gets a reply with the same tag (PCP kept)', () => {
    const r = ingress(request(VIP_VLAN, { vlan: { id: VLAN, pcp: 5 } }));
    assert.equal(r.retval, XDP.TX);
    const expected = arpPacket({ op: 2, dst: CLIENT_MAC, sha: NODE_MAC_VLAN, spa: VIP_VLAN, tha: CLIENT_MAC, tpa: CLIENT_IP, vlan: { id: VLAN, pcp: 5 } });
    macBytes(NODE_MAC_VLAN).copy(expected, 6);
    assert.deepEqual(r.dataOut, expected);
    const p = parsePacket(r.dataOut);
    assert.deepEqual(p.eth.vlan, { tpid: ETH_P.VLAN, id: VLAN });
    assert.equal(p.eth.etherType, ETH_P.ARP);
  });

  test('an 802.1ad-tagged request on the entry VLAN gets a reply with the same 802.1ad tag', () => {
    const r = ingress(request(VIP_VLAN, { vlan: { id: VLAN, tpid: ETH_P.QINQ } }));
    assert.equal(r.retval, XDP.TX);
    assert.equal(r.dataOut.readUInt16BE(12), ETH_P.QINQ);
    assert.equal(r.dataOut.readUInt16BE(14), VLAN);
    assert.equal(r.dataOut.readUInt32BE(18 + 14), ipToU32(VIP_VLAN));
  });
});

/** Frames that must pass with their bytes unchanged. */
const untouched: Array<{ description: string; frame: () => Buffer; ifindex?: () => number }> = [
  { description: 'a request for an address that is no owned VIP', frame: () => request(OTHER_IP) },
  { description: 'a request for the VIP arriving on another interface', frame: () => request(VIP), ifindex: () => ifOther },
  { description: 'an ARP reply about the VIP', frame: () => arpPacket({ op: 2, dst: NODE_MAC, spa: CLIENT_IP, tpa: VIP, tha: NODE_MAC }) },
  { description: 'a gratuitous ARP request (sender IP = target IP = the VIP)', frame: () => arpPacket({ spa: VIP, tpa: VIP, sha: OTHER_HOST_MAC }) },
  { description: 'a gratuitous ARP reply for the VIP', frame: () => arpPacket({ op: 2, spa: VIP, tpa: VIP, sha: OTHER_HOST_MAC, tha: BROADCAST }) },
  { description: 'a request cut inside its ARP payload (41 of 42 bytes)', frame: () => request(VIP).subarray(0, 41) },
  { description: 'a request cut right after the Ethernet header', frame: () => request(VIP).subarray(0, 14) },
  { description: 'a tagged request cut inside its VLAN tag', frame: () => request(VIP_VLAN, { vlan: { id: VLAN } }).subarray(0, 16) },
  { description: 'a request sent unicast to another host\'s MAC', frame: () => request(VIP, { dst: OTHER_HOST_MAC }) },
  { description: 'a request whose sender MAC is a group address', frame: () => request(VIP, { sha: '03:00:00:00:00:01' }) },
  { description: 'a request with a hardware type other than Ethernet', frame: () => request(VIP, { htype: 6 }) },
  { description: 'a request with a protocol type other than IPv4', frame: () => request(VIP, { ptype: 0x86dd }) },
  { description: 'a request with a hardware address length other than 6', frame: () => request(VIP, { hlen: 8 }) },
  { description: 'a request with a protocol address length other than 4', frame: () => request(VIP, { plen: 16 }) },
  { description: 'an untagged request for a VIP owned only on a VLAN', frame: () => request(VIP_VLAN) },
  { description: 'a tagged request for a VIP owned only untagged', frame: () => request(VIP, { vlan: { id: VLAN } }) },
  { description: 'a request tagged with another VLAN', frame: () => request(VIP_VLAN, { vlan: { id: VLAN + 1 } }) },
  { description: 'an IPv4 TCP frame to the VIP (no frontend)', frame: () => tcpPacket({ ip: { src: CLIENT_IP, dst: VIP }, tcp: { sport: 40000, dport: 80 } }) },
];

describe('every other frame passes unchanged', () => {
  for (const u of untouched) {
    test(`${u.description}: XDP_PASS, bytes unchanged`, () => {
      const frame = u.frame();
      const copy = Buffer.from(frame);
      const r = ingress(frame, u.ifindex?.() ?? ifOwned);
      assert.equal(r.retval, XDP.PASS, `verdict (XDP_PASS=2, XDP_TX=3), got ${r.retval}`);
      assert.deepEqual(r.dataOut, copy);
    });
  }
});

describe('BpfL2Maps over xlb_arp_vips', () => {
  test('list() reads back what put() wrote, MACs included', () => {
    assert.deepEqual(l2.list(), [
      { vip: VIP, ifindex: ifOwned, vlan: 0, mac: NODE_MAC },
      { vip: VIP_VLAN, ifindex: ifOwned, vlan: VLAN, mac: NODE_MAC_VLAN },
    ]);
  });

  test('after delete() the VIP is no longer answered; put() again answers with the new MAC', () => {
    l2.delete([{ vip: VIP, ifindex: ifOwned, vlan: 0 }]);
    try {
      assert.equal(ingress(request(VIP)).retval, XDP.PASS);
      l2.delete([{ vip: VIP, ifindex: ifOwned, vlan: 0 }]); // absent: no error
    } finally {
      l2.put([{ vip: VIP, ifindex: ifOwned, vlan: 0, mac: '02:00:00:00:00:0b' }]);
    }
    const r = ingress(request(VIP));
    assert.equal(r.retval, XDP.TX);
    assert.deepEqual(r.dataOut.subarray(22, 28), macBytes('02:00:00:00:00:0b'));
    l2.put([{ vip: VIP, ifindex: ifOwned, vlan: 0, mac: NODE_MAC }]);
  });

  test('malformed entries are refused naming the field, before anything is written', () => {
    const before = l2.list();
    assert.throws(() => l2.put([{ vip: '192.0.2.20', ifindex: ifOwned, vlan: 0, mac: NODE_MAC }, { vip: '192.0.2.300', ifindex: ifOwned, vlan: 0, mac: NODE_MAC }]), /vip "192\.0\.2\.300"/);
    assert.throws(() => l2.put([{ vip: VIP, ifindex: ifOwned, vlan: 4095, mac: NODE_MAC }]), /vlan 4095/);
    assert.throws(() => l2.put([{ vip: VIP, ifindex: 0, vlan: 0, mac: NODE_MAC }]), /ifindex 0/);
    assert.throws(() => l2.put([{ vip: VIP, ifindex: ifOwned, vlan: 0, mac: '02:00:00:00:00' }]), /mac "02:00:00:00:00"/);
    assert.deepEqual(l2.list(), before);
  });
});

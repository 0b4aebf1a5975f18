/**
 * The `l2:` config section (src/l2/config.ts) and interface resolution
 * (src/l2/interfaces.ts): defaults, errors that name the key, VLAN
 * sub-interfaces, link health.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { failoverBudgetMs, parseL2Config } from '../../src/l2/config.js';
import { linkHealth, parseIpLinkJson, resolveInterfaces, type LinkInfo } from '../../src/l2/interfaces.js';
import { throwsMessage } from '../helpers/assert.js';

describe('l2 config section', () => {
  it('applies defaults: port 7947, 200 ms heartbeats, dead after 5 missed, a restart held 30 s, 3 gratuitous ARP rounds 200 ms apart, ownership by source, leases 5/3/1 s, policies from custom resources', () => {
    const c = parseL2Config({});
    assert.equal(c.interfaces, undefined, 'left out: the agent\'s interfaces');
    assert.deepEqual(c, {
      peers: [],
      port: 7947,
      heartbeat: { intervalMs: 200, deadAfterMissed: 5, restartHoldMs: 30000 },
      gratuitousArp: { count: 3, intervalMs: 200, setNonlocalBind: true },
      ownership: 'auto',
      lease: { namespace: 'xlb-system', leaseDurationSeconds: 5, renewDeadlineSeconds: 3, retryPeriodSeconds: 1 },
      customResources: true,
    });
  });

  it('lease times are checked as client-go checks them, naming the key', () => {
    assert.throws(() => parseL2Config({ lease: { leaseDurationSeconds: 3, renewDeadlineSeconds: 3 } }), /l2\.lease\.renewDeadlineSeconds: 3 must be below leaseDurationSeconds 3$/m);
    assert.throws(() => parseL2Config({ ownership: 'raft' }), /l2\.ownership: must be one of auto, peers, lease$/m);
  });

  it('the default failover budget is under the 3 s target (1.05 s)', () => {
    assert.equal(failoverBudgetMs(parseL2Config({})), 1050);
  });

  it('accepts a full section', () => {
    const c = parseL2Config({
      interfaces: ['eth0', 'eth0.100'],
      peers: [
        { name: 'node-a', address: '198.18.0.11' },
        { name: 'node-b', address: '198.18.0.12', port: 7948 },
      ],
      port: 7000,
      bindAddress: '198.18.0.11',
      heartbeat: { intervalMs: 100, deadAfterMissed: 3 },
      gratuitousArp: { count: 0, intervalMs: 50, setNonlocalBind: false },
    });
    assert.equal(c.peers[1].port, 7948);
    assert.equal(failoverBudgetMs(c), 325);
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['a port out of range', { port: 70000 }, /^l2\.port: must be an integer 1\.\.65535/],
    ['a peer address that is not IPv4', { peers: [{ name: 'node-a', address: '198.18.0' }] }, /^l2\.peers\[0\]\.address: must be an IPv4 address/],
    ['a peer name that is no node name', { peers: [{ name: 'Node_A', address: '198.18.0.1' }] }, /^l2\.peers\[0\]\.name: must be a node name/],
    ['a peer without name', { peers: [{ address: '198.18.0.1' }] }, /^l2\.peers\[0\]\.name:/],
    ['an unknown key in a peer', { peers: [{ name: 'a', address: '198.18.0.1', asn: 1 }] }, /^l2\.peers\[0\]: Unrecognized key: "asn"/],
    ['two peers with one name', { peers: [{ name: 'a', address: '198.18.0.1' }, { name: 'a', address: '198.18.0.2' }] }, /^l2\.peers\[1\]\.name: duplicate peer name a \(also l2\.peers\[0\]\.name\)/],
    ['two peers on one endpoint', { peers: [{ name: 'a', address: '198.18.0.1' }, { name: 'b', address: '198.18.0.1', port: 7947 }] }, /^l2\.peers\[1\]\.address: duplicate peer endpoint 198\.18\.0\.1:7947/],
    ['an empty interface list', { interfaces: [] }, /^l2\.interfaces: must list at least one interface/],
    ['an interface name with a slash', { interfaces: ['eth/0'] }, /^l2\.interfaces\[0\]: not an interface name/],
    ['a duplicate interface', { interfaces: ['eth0', 'eth1', 'eth0'] }, /^l2\.interfaces\[2\]: duplicate interface \(also l2\.interfaces\[0\]\)/],
    ['a heartbeat interval below 20 ms', { heartbeat: { intervalMs: 10 } }, /^l2\.heartbeat\.intervalMs:/],
    ['deadAfterMissed of 1 (one lost datagram would fail over)', { heartbeat: { deadAfterMissed: 1 } }, /^l2\.heartbeat\.deadAfterMissed:/],
    ['a restart hold under 1 s', { heartbeat: { restartHoldMs: 500 } }, /^l2\.heartbeat\.restartHoldMs:/],
    ['a restart hold over 10 minutes', { heartbeat: { restartHoldMs: 600_001 } }, /^l2\.heartbeat\.restartHoldMs:/],
    ['a negative gratuitous ARP count', { gratuitousArp: { count: -1 } }, /^l2\.gratuitousArp\.count:/],
    ['a non-boolean setNonlocalBind', { gratuitousArp: { setNonlocalBind: 'yes' } }, /^l2\.gratuitousArp\.setNonlocalBind:/],
    ['a misspelt key', { peer: [] }, /^l2: Unrecognized key: "peer"/],
    ['a bind address that is not IPv4', { bindAddress: 'localhost' }, /^l2\.bindAddress: must be an IPv4 address/],
  ];
  for (const [what, input, re] of bad) it(`refuses ${what}, naming the key`, () => throwsMessage(() => parseL2Config(input), re));

  it('lists every problem, one per line', () => {
    throwsMessage(() => parseL2Config({ port: 0, heartbeat: { intervalMs: 1 } }), /^l2\.port: .*\nl2\.heartbeat\.intervalMs: /);
  });
});

/** Links as `ip -j -d link show` gives them (trimmed). */
const LINKS_JSON = JSON.stringify([
  { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP', 'LOWER_UP'], address: '00:00:00:00:00:00', linkinfo: undefined },
  { ifindex: 2, link: 'eth0-peer', ifname: 'eth0', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], operstate: 'UP', address: '02:00:00:00:00:0A', linkinfo: { info_kind: 'veth' } },
  { ifindex: 3, ifname: 'eth1', flags: ['NO-CARRIER', 'BROADCAST', 'MULTICAST', 'UP'], operstate: 'DOWN', address: '02:00:00:00:00:0b' },
  { ifindex: 4, link: 'eth0', ifname: 'eth0.100', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], address: '02:00:00:00:00:0a', linkinfo: { info_kind: 'vlan', info_data: { protocol: '802.1Q', id: 100, flags: ['REORDER_HDR'] } } },
  { ifindex: 5, link: 'eth2', ifname: 'eth2.7', flags: ['UP', 'LOWER_UP'], address: '02:00:00:00:00:0c', linkinfo: { info_kind: 'vlan', info_data: { protocol: '802.1Q', id: 7 } } },
  { ifindex: 6, ifname: 'eth2', flags: ['UP', 'LOWER_UP'], address: '02:00:00:00:00:0c' },
  { ifindex: 7, link: 'eth0.100', ifname: 'eth0.100.5', flags: ['UP', 'LOWER_UP'], address: '02:00:00:00:00:0a', linkinfo: { info_kind: 'vlan', info_data: { protocol: '802.1Q', id: 5 } } },
  { ifindex: 8, ifname: 'tun0', flags: ['POINTOPOINT', 'UP', 'LOWER_UP'], linkinfo: { info_kind: 'tun' } },
]);
const links: LinkInfo[] = parseIpLinkJson(LINKS_JSON);
const XDP_IFACES = ['eth0', 'eth1', 'tun0'];

describe('interface resolution', () => {
  it('an XDP interface answers on its own ifindex, untagged, with its MAC (lower case)', () => {
    assert.deepEqual(resolveInterfaces(['eth0', 'eth1'], links, XDP_IFACES), [
      { name: 'eth0', ifindex: 2, xdpInterface: 'eth0', xdpIfindex: 2, vlan: 0, mac: '02:00:00:00:00:0a', up: true },
      { name: 'eth1', ifindex: 3, xdpInterface: 'eth1', xdpIfindex: 3, vlan: 0, mac: '02:00:00:00:00:0b', up: false },
    ]);
  });

  it('a VLAN sub-interface answers on its parent\'s ifindex with its VLAN ID (the tag XDP sees)', () => {
    assert.deepEqual(resolveInterfaces(['eth0.100'], links, XDP_IFACES), [
      { name: 'eth0.100', ifindex: 4, xdpInterface: 'eth0', xdpIfindex: 2, vlan: 100, mac: '02:00:00:00:00:0a', up: true },
    ]);
  });

  const bad: Array<[string, string[], RegExp]> = [
    ['a missing interface', ['eth0', 'eth9'], /^l2\.interfaces\[1\]: interface eth9 not found/],
    ['an interface without the XDP program', ['eth2'], /^l2\.interfaces\[0\]: eth2 does not carry xlb's XDP program \(interfaces: eth0, eth1, tun0\)/],
    ['a VLAN whose parent has no XDP program', ['eth2.7'], /^l2\.interfaces\[0\]: eth2\.7 is a VLAN sub-interface of eth2, which does not carry xlb's XDP program/],
    ['a VLAN on a VLAN', ['eth0.100.5'], /^l2\.interfaces\[0\]: eth0\.100\.5 is a VLAN on VLAN eth0\.100: stacked VLANs are not supported/],
    ['an interface without an Ethernet MAC', ['tun0'], /^l2\.interfaces\[0\]: interface tun0 has no Ethernet MAC/],
  ];
  for (const [what, names, re] of bad) it(`refuses ${what}, naming the list entry`, () => throwsMessage(() => resolveInterfaces(names, links, XDP_IFACES), re));

  it('link health: up when all have carrier, degraded when some do, down when none does', () => {
    const r = resolveInterfaces(['eth0', 'eth1'], links, XDP_IFACES);
    assert.equal(linkHealth(r), 'degraded');
    assert.equal(linkHealth(r.slice(0, 1)), 'up');
    assert.equal(linkHealth(r.slice(1)), 'down');
  });

  it('parses iproute2 JSON and refuses output that is not a list of links', () => {
    assert.deepEqual(links[3].linkinfo, { info_kind: 'vlan', info_data: { protocol: '802.1Q', id: 100 } });
    throwsMessage(() => parseIpLinkJson('{}'), /not a JSON list/);
    throwsMessage(() => parseIpLinkJson('[{"ifname":"x"}]'), /without ifindex/);
  });
});

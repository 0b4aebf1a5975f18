/**
 * The `bgp:` config section (src/bgp/config.ts) and community parsing
 * (src/bgp/communities.ts), table-driven.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseBgpConfig } from '../../src/bgp/config.js';
import { formatCommunity, formatLargeCommunity, parseCommunity, parseLargeCommunity } from '../../src/bgp/communities.js';
import { throwsMessage } from '../helpers/assert.js';

const base = { asn: 64513, neighbors: [{ address: '198.18.200.1', asn: 64512 }] };
const withNeighbor = (n: Record<string, unknown>) => ({ ...base, neighbors: [{ address: '198.18.200.1', asn: 64512, ...n }] });

describe('bgp config section', () => {
  it('applies defaults: no listening, no communities, gobgpd API on 127.0.0.1:50051', () => {
    const c = parseBgpConfig(base);
    assert.equal(c.listenPort, -1);
    assert.deepEqual(c.communities, []);
    assert.deepEqual(c.largeCommunities, []);
    assert.deepEqual(c.gobgpd, { apiPort: 50051, logLevel: 'info' });
  });

  const valid: Array<[string, unknown]> = [
    ['the largest 4-octet ASN', { ...base, asn: 4294967295 }],
    ['listening on 179', { ...base, listenPort: 179 }],
    ['hold time 0 (no keepalives)', withNeighbor({ holdTime: 0 })],
    ['hold 9 s with keepalive 3 s', withNeighbor({ holdTime: 9, keepaliveTime: 3 })],
    ['every neighbor option', withNeighbor({ port: 1179, password: 'secret', multihop: 2, gracefulRestart: true, communities: ['no-export'], largeCommunities: ['1:2:3'] })],
    ['communities and well-known names', { ...base, communities: ['65000:100', '0:0', '65535:65535', 'NO-ADVERTISE', 'blackhole'], largeCommunities: ['4294967295:0:1'] }],
    ['an external gobgpd over TCP', { ...base, gobgpd: { external: 'gobgp.example:50051' } }],
    ['no neighbors (BGPPeer resources may give them; the agent schema checks the source)', { ...base, neighbors: [] }],
    ['an external gobgpd over a unix socket', { ...base, gobgpd: { external: 'unix:///run/gobgpd.sock' } }],
    ['a pid file for the gobgpd kept across agent restarts', { ...base, gobgpd: { apiPort: 50052, pidFile: '/var/run/xlb/g.pid' } }],
    ['a supervised gobgpd on a unix socket', { ...base, gobgpd: { apiSocket: '/run/xlb/gobgpd.sock', binary: '/usr/sbin/gobgpd', logLevel: 'debug' } }],
    ['two neighbors', { ...base, neighbors: [{ address: '198.18.200.1', asn: 64512 }, { address: '198.18.200.5', asn: 64512 }] }],
  ];
  for (const [name, input] of valid) {
    it(`accepts ${name}`, () => {
      assert.doesNotThrow(() => parseBgpConfig(input));
    });
  }

  const invalid: Array<[string, unknown, RegExp]> = [
    ['an unknown top-level key', { ...base, holdtime: 9 }, /^bgp: Unrecognized key: "holdtime"/m],
    ['an unknown neighbor key', withNeighbor({ pasword: 'x' }), /^bgp\.neighbors\[0\]: Unrecognized key: "pasword"/m],
    ['an unknown gobgpd key', { ...base, gobgpd: { port: 1 } }, /^bgp\.gobgpd: Unrecognized key: "port"/m],
    ['ASN 0 (reserved)', { ...base, asn: 0 }, /^bgp\.asn: /m],
    ['ASN 2^32', { ...base, asn: 4294967296 }, /^bgp\.asn: /m],
    ['a fractional ASN', { ...base, asn: 645.5 }, /^bgp\.asn: /m],
    ['a neighbor ASN of 0', withNeighbor({ asn: 0 }), /^bgp\.neighbors\[0\]\.asn: /m],
    ['a neighbor address that is not IPv4', withNeighbor({ address: '198.18.0.256' }), /^bgp\.neighbors\[0\]\.address: must be an IPv4 address/m],
    ['an IPv6 neighbor', withNeighbor({ address: '2001:db8::1' }), /^bgp\.neighbors\[0\]\.address: /m],
    ['a router ID that is not IPv4', { ...base, routerId: 'node-1' }, /^bgp\.routerId: /m],
    ['a node address that is not IPv4', { ...base, nodeAddress: '10.0.0' }, /^bgp\.nodeAddress: /m],
    [
      'duplicate neighbor addresses',
      { ...base, neighbors: [{ address: '198.18.200.1', asn: 64512 }, { address: '198.18.200.5', asn: 64512 }, { address: '198.18.200.1', asn: 64520 }] },
      /^bgp\.neighbors\[2\]\.address: duplicate neighbor 198\.18\.200\.1 \(also bgp\.neighbors\[0\]\.address\)$/m,
    ],
    ['a missing ASN', { neighbors: base.neighbors }, /^bgp\.asn: /m],
    ['listenPort 0 (gobgp would listen on 179)', { ...base, listenPort: 0 }, /^bgp\.listenPort: listenPort 0 is ambiguous/m],
    ['listenPort -2', { ...base, listenPort: -2 }, /^bgp\.listenPort: /m],
    ['hold time 2 s', withNeighbor({ holdTime: 2 }), /^bgp\.neighbors\[0\]\.holdTime: hold time must be 0 or at least 3/m],
    ['keepalive not below hold time', withNeighbor({ holdTime: 9, keepaliveTime: 9 }), /^bgp\.neighbors\[0\]\.keepaliveTime: 9 s must be below holdTime 9 s/m],
    ['multihop TTL 256', withNeighbor({ multihop: 256 }), /^bgp\.neighbors\[0\]\.multihop: /m],
    ['a TCP MD5 key over 80 bytes', withNeighbor({ password: 'x'.repeat(81) }), /^bgp\.neighbors\[0\]\.password: /m],
    ['a community half over 65535', { ...base, communities: ['65000:100', '65536:1'] }, /^bgp\.communities\[1\]: "65536:1" is not a BGP community/m],
    ['a neighbor community without a colon', withNeighbor({ communities: ['65000'] }), /^bgp\.neighbors\[0\]\.communities\[0\]: /m],
    ['a large community with two parts', { ...base, largeCommunities: ['1:2'] }, /^bgp\.largeCommunities\[0\]: "1:2" is not a BGP large community/m],
    ['an external gobgpd with a binary', { ...base, gobgpd: { external: 'h:50051', binary: 'gobgpd' } }, /^bgp\.gobgpd\.external: an external gobgpd excludes/m],
    ['an external gobgpd with a pid file (nothing is spawned to record)', { ...base, gobgpd: { external: 'h:50051', pidFile: '/run/g.pid' } }, /^bgp\.gobgpd\.external: an external gobgpd excludes binary, apiSocket and pidFile/m],
    ['a relative pid file', { ...base, gobgpd: { pidFile: 'g.pid' } }, /^bgp\.gobgpd\.pidFile: /m],
    ['an external address without a port', { ...base, gobgpd: { external: 'gobgp.example' } }, /^bgp\.gobgpd\.external: external must be HOST:PORT/m],
    ['a relative API socket path', { ...base, gobgpd: { apiSocket: 'gobgpd.sock' } }, /^bgp\.gobgpd\.apiSocket: /m],
    ['an unknown log level', { ...base, gobgpd: { logLevel: 'trace' } }, /^bgp\.gobgpd\.logLevel: /m],
  ];
  for (const [name, input, error] of invalid) {
    it(`rejects ${name}`, () => {
      throwsMessage(() => parseBgpConfig(input), error);
    });
  }
});

describe('BGP communities', () => {
  const standard: Array<[string, number]> = [
    ['65000:100', 0xfde80064],
    ['0:0', 0],
    ['65535:65535', 0xffffffff],
    ['64512:1', 0xfc000001],
    ['no-export', 0xffffff01],
    ['No-Advertise', 0xffffff02],
    ['no-export-subconfed', 0xffffff03],
    ['blackhole', 0xffff029a],
  ];
  for (const [s, v] of standard) {
    it(`parses ${s} as ${v >>> 0} and formats it back as high:low`, () => {
      assert.equal(parseCommunity(s), v);
      assert.equal(formatCommunity(v), `${v >>> 16}:${v & 0xffff}`);
    });
  }

  for (const bad of ['65536:0', '0:65536', '1:2:3', '65000', '', ':', '01:2', '-1:2', ' 1:2', '1:2 ', '1.5:2', 'no-exports']) {
    it(`rejects the community ${JSON.stringify(bad)} and names the field`, () => {
      throwsMessage(() => parseCommunity(bad, 'vips[3].communities[0]'), /^vips\[3\]\.communities\[0\]: .* is not a BGP community/);
    });
  }

  it('parses large communities as three u32s and formats them back', () => {
    assert.deepEqual(parseLargeCommunity('64513:1:2'), { globalAdmin: 64513, localData1: 1, localData2: 2 });
    const max = parseLargeCommunity('4294967295:4294967295:0');
    assert.deepEqual(max, { globalAdmin: 4294967295, localData1: 4294967295, localData2: 0 });
    assert.equal(formatLargeCommunity(max), '4294967295:4294967295:0');
  });

  for (const bad of ['1:2', '1:2:3:4', '4294967296:0:0', '1::3', 'a:b:c', '01:2:3']) {
    it(`rejects the large community ${JSON.stringify(bad)} and names the field`, () => {
      throwsMessage(() => parseLargeCommunity(bad, 'bgp.largeCommunities[2]'), /^bgp\.largeCommunities\[2\]: .* is not a BGP large community/);
    });
  }
});

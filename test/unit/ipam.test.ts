/**
 * LB IPAM's pure parts: the `ipam:` config section, address pools, and the
 * allocation rules (src/ipam/config.ts, pool.ts, allocator.ts), table-driven.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpamConfig, poolsFromConfig } from '../../src/ipam/config.js';
import { parseAddressEntry, Pool } from '../../src/ipam/pool.js';
import { Allocator, LB_IPS_ANNOTATION, POOL_ANNOTATION, XLB_LB_CLASS, lbServiceFromRaw, type LbService } from '../../src/ipam/allocator.js';
import { u32ToIp } from '../../src/util/ip.js';
import { throwsMessage } from '../helpers/assert.js';

const addrs = (p: Pool) => {
  const out: string[] = [];
  for (const r of p.ranges) for (let n = r.first; n <= r.last; n++) out.push(u32ToIp(n));
  return out;
};

describe('ipam config section', () => {
  it('applies defaults: network and broadcast avoided, auto-assign, the xlb-ipam lease', () => {
    const c = parseIpamConfig({ pools: [{ name: 'public', addresses: ['192.0.2.0/28'] }] });
    assert.equal(c.pools[0].avoidNetworkAndBroadcast, true);
    assert.equal(c.pools[0].autoAssign, true);
    assert.equal(c.leaderElection.leaseName, 'xlb-ipam');
    assert.equal(c.leaderElection.leaseDurationSeconds, 15);
  });

  const invalid: Array<[string, unknown, RegExp]> = [
    ['no pools without custom resources', { pools: [], customResources: false }, /^ipam\.pools: must list at least one pool when customResources is false/m],
    ['an unknown key', { pools: [{ name: 'a', addresses: ['192.0.2.1'], autoassign: false }] }, /^ipam\.pools\[0\]: Unrecognized key: "autoassign"/m],
    ['a CIDR with host bits', { pools: [{ name: 'a', addresses: ['192.0.2.5/24'] }] }, /^ipam\.pools\[0\]\.addresses\[0\]: "192\.0\.2\.5\/24" has host bits set \(did you mean 192\.0\.2\.0\/24\?\)/m],
    ['an IPv6 pool', { pools: [{ name: 'a', addresses: ['2001:db8::/64'] }] }, /^ipam\.pools\[0\]\.addresses\[0\]: .*IPv6 pools are not served yet/m],
    ['a reversed range', { pools: [{ name: 'a', addresses: ['203.0.113.20-203.0.113.10'] }] }, /first address is above the last/],
    ['garbage', { pools: [{ name: 'a', addresses: ['banana'] }] }, /"banana" is not an IPv4 address, CIDR or range/],
    ['overlapping pools', { pools: [{ name: 'a', addresses: ['192.0.2.0/28'] }, { name: 'b', addresses: ['192.0.2.10-192.0.2.20'] }] }, /^ipam\.pools\[1\]\.addresses: overlaps pool a \(at 192\.0\.2\.10\)/m],
    ['overlap within a pool', { pools: [{ name: 'a', addresses: ['192.0.2.0/28', '192.0.2.3'] }] }, /^ipam\.pools\[0\]\.addresses\[1\]: overlaps an earlier entry/m],
    ['duplicate names', { pools: [{ name: 'a', addresses: ['192.0.2.1'] }, { name: 'a', addresses: ['192.0.2.2'] }] }, /^ipam\.pools\[1\]\.name: duplicate pool name a/m],
    ['a pool name that is not a label', { pools: [{ name: 'Public_1', addresses: ['192.0.2.1'] }] }, /^ipam\.pools\[0\]\.name: must be a pool name/m],
  ];
  for (const [name, input, re] of invalid) {
    it(`rejects ${name}`, () => throwsMessage(() => parseIpamConfig(input), re));
  }
});

describe('address pools', () => {
  const cases: Array<[string, boolean, string, string, number]> = [
    ['192.0.2.0/28', true, '192.0.2.1', '192.0.2.14', 14],
    ['192.0.2.0/28', false, '192.0.2.0', '192.0.2.15', 16],
    ['192.0.2.0/30', true, '192.0.2.1', '192.0.2.2', 2],
    ['192.0.2.0/31', true, '192.0.2.0', '192.0.2.1', 2],
    ['192.0.2.7/32', true, '192.0.2.7', '192.0.2.7', 1],
    ['192.0.2.7', true, '192.0.2.7', '192.0.2.7', 1],
    ['203.0.113.0-203.0.113.255', true, '203.0.113.0', '203.0.113.255', 256],
  ];
  for (const [entry, avoid, first, last, size] of cases) {
    it(`${entry}${avoid ? '' : ' (every address)'} holds ${first}..${last}, ${size} addresses`, () => {
      const r = parseAddressEntry(entry, avoid);
      assert.equal(u32ToIp(r.first), first);
      assert.equal(u32ToIp(r.last), last);
      assert.equal(r.last - r.first + 1, size);
    });
  }

  it('hands out each free address once, across ranges, and finds released ones again', () => {
    const p = new Pool('p', [parseAddressEntry('192.0.2.1-192.0.2.2'), parseAddressEntry('203.0.113.9')], { autoAssign: true });
    assert.deepEqual(addrs(p), ['192.0.2.1', '192.0.2.2', '203.0.113.9']);
    const taken = new Set<string>();
    const next = () => {
      const ip = p.firstFree((a) => taken.has(a));
      if (ip) taken.add(ip);
      return ip;
    };
    assert.deepEqual([next(), next(), next(), next()], ['192.0.2.1', '192.0.2.2', '203.0.113.9', undefined]);
    taken.delete('192.0.2.2');
    assert.equal(next(), '192.0.2.2');
  });

  it('scopes by namespace and labels', () => {
    const p = new Pool('p', [parseAddressEntry('192.0.2.1')], { autoAssign: true, namespaces: ['prod'], matchLabels: { exposure: 'public' } });
    assert.ok(p.admits('prod', { exposure: 'public', x: 'y' }));
    assert.ok(!p.admits('dev', { exposure: 'public' }));
    assert.ok(!p.admits('prod', {}));
  });
});

describe('allocation rules', () => {
  const pools = () =>
    poolsFromConfig(
      parseIpamConfig({
        pools: [
          { name: 'small', addresses: ['192.0.2.0/30'] }, // 192.0.2.1, .2
          { name: 'manual', addresses: ['203.0.113.0/24'], autoAssign: false },
          { name: 'prod', addresses: ['192.0.2.64/30'], namespaces: ['prod'] }, // .65, .66
        ],
      }),
    );
  let seq = 0;
  const svc = (name: string, o: Partial<LbService> & { ns?: string } = {}): LbService => ({
    key: `${o.ns ?? 'default'}/${name}`,
    namespace: o.ns ?? 'default',
    name,
    type: 'LoadBalancer',
    labels: {},
    annotations: {},
    ingressIPs: [],
    creationTimestamp: `2024-01-01T00:00:${String(seq++ % 60).padStart(2, '0')}Z`,
    ...o,
  });

  it('assigns the first free address of the first open pool, and keeps it', () => {
    const a = new Allocator(pools());
    assert.deepEqual(a.ensure(svc('a')), { kind: 'assigned', ip: '192.0.2.1', pool: 'small', changed: true });
    assert.deepEqual(a.ensure(svc('b')), { kind: 'assigned', ip: '192.0.2.2', pool: 'small', changed: true });
    assert.deepEqual(a.ensure(svc('a')), { kind: 'assigned', ip: '192.0.2.1', pool: 'small', changed: false });
  });

  it('reports exhaustion naming the pools, and assigns again after a release', () => {
    const a = new Allocator(pools());
    a.ensure(svc('a'));
    a.ensure(svc('b'));
    const d = a.ensure(svc('c'));
    assert.equal(d.kind, 'failed');
    assert.equal(d.kind === 'failed' && d.reason, 'PoolExhausted');
    assert.match(d.kind === 'failed' ? d.message : '', /no free address in pool small \(2 addresses\)/);
    assert.equal(a.release('default/a'), '192.0.2.1');
    assert.deepEqual(a.ensure(svc('c')), { kind: 'assigned', ip: '192.0.2.1', pool: 'small', changed: true });
  });

  it('namespaced pools serve their namespaces first in order, then others', () => {
    const a = new Allocator(pools());
    a.ensure(svc('a'));
    a.ensure(svc('b'));
    assert.deepEqual(a.ensure(svc('p', { ns: 'prod' })), { kind: 'assigned', ip: '192.0.2.65', pool: 'prod', changed: true });
  });

  const requests: Array<[string, Partial<LbService>, string | RegExp]> = [
    ['the annotation, from a pool without auto-assign', { annotations: { [LB_IPS_ANNOTATION]: '203.0.113.7' } }, '203.0.113.7'],
    ['spec.loadBalancerIP', { loadBalancerIP: '203.0.113.8' }, '203.0.113.8'],
    ['the annotation over spec.loadBalancerIP', { annotations: { [LB_IPS_ANNOTATION]: '203.0.113.9' }, loadBalancerIP: '203.0.113.8' }, '203.0.113.9'],
    ['an address outside every pool', { loadBalancerIP: '198.51.100.1' }, /AddressOutsidePools: requested address 198\.51\.100\.1 is outside every pool open to this service \(small, manual\)/],
    ['two addresses', { annotations: { [LB_IPS_ANNOTATION]: '203.0.113.1, 203.0.113.2' } }, /InvalidRequest: .*one IPv4 address per service/],
    ['an IPv6 address', { annotations: { [LB_IPS_ANNOTATION]: '2001:db8::1' } }, /InvalidRequest: .*IPv6 2001:db8::1 cannot be assigned yet/],
    ['something that is not an address', { annotations: { [LB_IPS_ANNOTATION]: 'ten' } }, /InvalidRequest: .*"ten" is not an IP address/],
    ['a pool by annotation (its /24 starts at .1: .0 is the network address)', { annotations: { [POOL_ANNOTATION]: 'manual' } }, '203.0.113.1'],
    ['a pool that does not exist', { annotations: { [POOL_ANNOTATION]: 'nope' } }, /NoPool: .*no pool named "nope"/],
    ['a namespaced pool from another namespace', { annotations: { [POOL_ANNOTATION]: 'prod' } }, /NoPool: pool prod does not admit this service/],
  ];
  for (const [name, o, want] of requests) {
    it(`a request: ${name}`, () => {
      const d = new Allocator(pools()).ensure(svc('r', o));
      if (typeof want === 'string') assert.deepEqual(d.kind === 'assigned' && d.ip, want);
      else {
        assert.equal(d.kind, 'failed');
        assert.match(d.kind === 'failed' ? `${d.reason}: ${d.message}` : '', want);
      }
    });
  }

  it('a requested address held by another service is a conflict; the failure releases the requester\'s own address', () => {
    const a = new Allocator(pools());
    a.ensure(svc('holder', { annotations: { [LB_IPS_ANNOTATION]: '203.0.113.5' } }));
    assert.equal(a.ensure(svc('other')).kind, 'assigned');
    const d = a.ensure(svc('other', { annotations: { [LB_IPS_ANNOTATION]: '203.0.113.5' } }));
    assert.deepEqual(d, { kind: 'failed', reason: 'AddressConflict', message: 'requested address 203.0.113.5 is already assigned to Service default/holder' });
    assert.equal(a.assignedTo('default/other'), undefined);
    assert.equal(a.ownerOf('192.0.2.1'), undefined);
  });

  it('only LoadBalancer services without a class or with xlb\'s class are managed', () => {
    const a = new Allocator(pools());
    assert.equal(a.ensure(svc('np', { type: 'NodePort' })).kind, 'unmanaged');
    assert.equal(a.ensure(svc('other', { loadBalancerClass: 'example.com/lb' })).kind, 'unmanaged');
    assert.equal(a.ensure(svc('ours', { loadBalancerClass: XLB_LB_CLASS })).kind, 'assigned');
    // A service that stops being a LoadBalancer gives its address back.
    assert.equal(a.ensure(svc('ours', { type: 'ClusterIP' })).kind, 'unmanaged');
    assert.equal(a.assignments().size, 0);
  });

  it('a new leader takes over the addresses in statuses; the oldest service keeps a contested one', () => {
    const a = new Allocator(pools());
    const young = svc('young', { ingressIPs: ['192.0.2.2'], creationTimestamp: '2024-02-01T00:00:00Z' });
    const old = svc('old', { ingressIPs: ['192.0.2.2'], creationTimestamp: '2024-01-01T00:00:00Z' });
    const keeper = svc('keeper', { ingressIPs: ['192.0.2.1'] });
    const outside = svc('outside', { ingressIPs: ['198.51.100.9'] });
    a.restore([young, old, keeper, outside]);
    assert.deepEqual(Object.fromEntries(a.assignments()), { 'default/old': '192.0.2.2', 'default/keeper': '192.0.2.1' });
    // The young one and the one outside every pool get new addresses, from what is left.
    assert.equal(a.ensure(young).kind, 'failed', 'small is full');
    assert.deepEqual(a.ensure(svc('p', { ns: 'prod', ingressIPs: ['198.51.100.9'] })), { kind: 'assigned', ip: '192.0.2.65', pool: 'prod', changed: true });
  });

  it('reads what it needs from a raw Service and tolerates junk', () => {
    const s = lbServiceFromRaw({
      metadata: { name: 'w', namespace: 'n', annotations: { [LB_IPS_ANNOTATION]: '192.0.2.1', bad: 5 } },
      spec: { type: 'LoadBalancer', loadBalancerIP: '' },
      status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }, { hostname: 'lb.example' }, 'junk'] } },
    });
    assert.equal(s.key, 'n/w');
    assert.deepEqual(s.ingressIPs, ['192.0.2.1']);
    assert.deepEqual(s.annotations, { [LB_IPS_ANNOTATION]: '192.0.2.1' });
    assert.equal(s.loadBalancerIP, undefined);
    assert.equal(lbServiceFromRaw(null).key, 'default/');
  });
});

/**
 * The pure parts of live pools (src/ipam/custom-pools.ts, annotations.ts,
 * src/sources/kubernetes/selector.ts, Allocator.setPools): reading a
 * LoadBalancerIPPool, merging resources with the configured pools (order,
 * overlap, name clash), label selectors, the MetalLB and Cilium annotations,
 * and what an allocator does with its pools replaced.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mergePools, parsePoolResource } from '../../src/ipam/custom-pools.js';
import { annotatedAddress, annotatedPool, annotationIssues } from '../../src/ipam/annotations.js';
import { Allocator, lbServiceFromRaw, type LbService } from '../../src/ipam/allocator.js';
import { Pool, parseAddressEntry } from '../../src/ipam/pool.js';
import { parseIpamConfig, poolsFromConfig } from '../../src/ipam/config.js';
import { formatLabelSelector, parseLabelSelector, selectorMatches } from '../../src/sources/kubernetes/selector.js';
import type { RawObject } from '../../src/sources/kubernetes/informer.js';

const res = (name: string, spec: unknown, created = '2025-01-01T00:00:00Z', generation = 1): RawObject =>
  ({ apiVersion: 'xlb.io/v1alpha1', kind: 'LoadBalancerIPPool', metadata: { name, creationTimestamp: created, generation, uid: `uid-${name}`, resourceVersion: '7' }, spec }) as RawObject;

const svc = (name: string, o: Partial<LbService> = {}): LbService => ({
  key: `${o.namespace ?? 'default'}/${name}`,
  namespace: 'default',
  name,
  type: 'LoadBalancer',
  labels: {},
  annotations: {},
  ingressIPs: [],
  ...o,
});

describe('reading a LoadBalancerIPPool', () => {
  it('reads every field, with the CRD defaults when absent', () => {
    const r = parsePoolResource(res('p', { addresses: ['192.0.2.0/30', '198.51.100.1-198.51.100.2'], namespaces: ['prod'], serviceSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['web'] }] } }));
    assert.ok(r.pool, 'a pool');
    assert.equal(r.pool.name, 'p');
    assert.equal(r.pool.size, 4, '2 of the /30 (network and broadcast avoided) + 2 of the range');
    assert.equal(r.pool.scope.autoAssign, true);
    assert.deepEqual(r.pool.scope.namespaces, ['prod']);
    assert.ok(r.pool.admits('prod', { tier: 'web' }), 'selector met');
    assert.ok(!r.pool.admits('prod', { tier: 'db' }), 'selector not met');
    assert.equal(parsePoolResource(res('q', { addresses: ['192.0.2.0/30'], avoidNetworkAndBroadcast: false })).pool?.size, 4);
  });

  const bad: Array<[string, unknown, string, string, string]> = [
    ['no spec', undefined, 'InvalidSpec', 'spec', 'is required'],
    ['no addresses', {}, 'InvalidSpec', 'spec.addresses', 'must list at least one CIDR, range or address'],
    ['host bits', { addresses: ['192.0.2.1', '192.0.2.5/24'] }, 'InvalidAddress', 'spec.addresses[1]', '"192.0.2.5/24" has host bits set (did you mean 192.0.2.0/24?)'],
    ['a reversed range', { addresses: ['203.0.113.20-203.0.113.10'] }, 'InvalidAddress', 'spec.addresses[0]', '"203.0.113.20-203.0.113.10": the first address is above the last'],
    ['IPv6', { addresses: ['2001:db8::/64'] }, 'InvalidAddress', 'spec.addresses[0]', '"2001:db8::/64": IPv6 pools are not served yet (the datapath is IPv4)'],
    ['entries that overlap', { addresses: ['192.0.2.0/28', '192.0.2.3'] }, 'InvalidAddress', 'spec.addresses[1]', '"192.0.2.3" overlaps an earlier entry of the same pool (at 192.0.2.3)'],
    ['In without values', { addresses: ['192.0.2.1'], serviceSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } }, 'InvalidSelector', 'spec.serviceSelector.matchExpressions[0].values', 'must be non-empty when operator is In'],
    ['a number as an address', { addresses: [7] }, 'InvalidAddress', 'spec.addresses[0]', 'must be a CIDR, a range FIRST-LAST or an address (got 7)'],
  ];
  for (const [name, spec, reason, field, message] of bad) {
    it(`refuses ${name}, naming the field`, () => assert.deepEqual(parsePoolResource(res('p', spec)).error, { reason, field, message }));
  }
});

describe('merging pool resources with the configured pools', () => {
  const config = poolsFromConfig(parseIpamConfig({ pools: [{ name: 'static', addresses: ['203.0.113.0/28'] }] }));

  it('configured pools first, then resources oldest first (then by name)', () => {
    const { pools, verdicts } = mergePools(config, [
      res('young', { addresses: ['192.0.2.30'] }, '2025-03-01T00:00:00Z'),
      res('b-old', { addresses: ['192.0.2.20'] }, '2025-01-01T00:00:00Z'),
      res('a-old', { addresses: ['192.0.2.10'] }, '2025-01-01T00:00:00Z'),
    ]);
    assert.deepEqual(pools.map((p) => p.name), ['static', 'a-old', 'b-old', 'young']);
    assert.deepEqual(verdicts.map((v) => [v.name, v.reason, v.generation, v.uid]), [
      ['a-old', 'Allocating', 1, 'uid-a-old'],
      ['b-old', 'Allocating', 1, 'uid-b-old'],
      ['young', 'Allocating', 1, 'uid-young'],
    ]);
  });

  it('the newer of two overlapping pools is refused, naming its entry and the older pool; a refused pool blocks nothing', () => {
    const { pools, verdicts } = mergePools(config, [
      res('old', { addresses: ['192.0.2.0/28'] }, '2025-01-01T00:00:00Z'),
      res('new', { addresses: ['198.51.100.0/30', '192.0.2.14-192.0.2.20'] }, '2025-02-01T00:00:00Z'),
      res('newest', { addresses: ['192.0.2.16/30'] }, '2025-03-01T00:00:00Z'),
    ]);
    assert.deepEqual(pools.map((p) => p.name), ['static', 'old', 'newest'], 'newest overlaps only the refused pool');
    const v = verdicts.find((x) => x.name === 'new')!;
    assert.equal(v.pool, undefined);
    assert.equal(v.reason, 'Overlap');
    assert.equal(v.field, 'spec.addresses[1]');
    assert.equal(v.message, 'spec.addresses[1]: overlaps LoadBalancerIPPool old at 192.0.2.14; an address belongs to one pool, and the older pool keeps it');
  });

  it('a resource overlapping, or named like, a configured pool is refused', () => {
    const { pools, verdicts } = mergePools(config, [res('static', { addresses: ['192.0.2.1'] }), res('other', { addresses: ['203.0.113.8/29'] })]);
    assert.deepEqual(pools.map((p) => p.name), ['static']);
    assert.deepEqual(
      verdicts.map((v) => [v.name, v.reason, v.message]),
      [
        ['other', 'Overlap', 'spec.addresses[0]: overlaps pool static of the agent configuration (ipam.pools) at 203.0.113.9; an address belongs to one pool, and the older pool keeps it'],
        ['static', 'NameConflict', 'metadata.name: the agent configuration (ipam.pools) has a pool named static; that one is used'],
      ],
    );
  });
});

describe('label selectors', () => {
  const sel = (raw: unknown) => parseLabelSelector(raw, 'spec.serviceSelector').selector;
  const cases: Array<[string, unknown, Record<string, string>, boolean]> = [
    ['absent matches all', undefined, {}, true],
    ['empty matches all', {}, { a: 'b' }, true],
    ['matchLabels met', { matchLabels: { a: 'b' } }, { a: 'b', c: 'd' }, true],
    ['matchLabels not met', { matchLabels: { a: 'b' } }, { a: 'c' }, false],
    ['In met', { matchExpressions: [{ key: 'a', operator: 'In', values: ['x', 'y'] }] }, { a: 'y' }, true],
    ['In: the label missing', { matchExpressions: [{ key: 'a', operator: 'In', values: ['x'] }] }, {}, false],
    ['NotIn: the label missing is met', { matchExpressions: [{ key: 'a', operator: 'NotIn', values: ['x'] }] }, {}, true],
    ['NotIn not met', { matchExpressions: [{ key: 'a', operator: 'NotIn', values: ['x'] }] }, { a: 'x' }, false],
    ['Exists', { matchExpressions: [{ key: 'a', operator: 'Exists' }] }, { a: '' }, true],
    ['DoesNotExist', { matchExpressions: [{ key: 'a', operator: 'DoesNotExist' }] }, { a: '' }, false],
    ['both ANDed', { matchLabels: { a: 'b' }, matchExpressions: [{ key: 'c', operator: 'Exists' }] }, { a: 'b' }, false],
  ];
  for (const [name, raw, labels, want] of cases) it(name, () => assert.equal(selectorMatches(sel(raw), labels), want));

  it('refuses what apimachinery refuses, naming the field', () => {
    assert.deepEqual(parseLabelSelector({ matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }, 'spec.nodeSelector').error, {
      field: 'spec.nodeSelector.matchExpressions[0].values',
      message: 'must be empty when operator is Exists',
    });
    assert.deepEqual(parseLabelSelector({ matchLabels: { a: 1 } }, 's').error, { field: 's.matchLabels["a"]', message: 'must be a string (got 1)' });
    assert.deepEqual(parseLabelSelector('a=b', 's').error, { field: 's', message: 'must be a label selector (matchLabels, matchExpressions)' });
  });

  it("prints in kubectl's syntax", () => {
    assert.equal(formatLabelSelector(sel({ matchLabels: { a: 'b' }, matchExpressions: [{ key: 'c', operator: 'NotIn', values: ['d', 'e'] }, { key: 'f', operator: 'DoesNotExist' }] })), 'a=b,c notin (d,e),!f');
    assert.equal(formatLabelSelector(undefined), '<all>');
  });

  it("a pool's selector also sees the service's namespace and name (Cilium's pseudo-labels)", () => {
    const p = new Pool('p', [parseAddressEntry('192.0.2.1')], { autoAssign: true, matchLabels: { 'io.kubernetes.service.namespace': 'tenant-a' }, matchExpressions: [{ key: 'io.kubernetes.service.name', operator: 'NotIn', values: ['secret'] }] });
    assert.ok(p.admits('tenant-a', {}, 'web'));
    assert.ok(!p.admits('tenant-b', {}, 'web'));
    assert.ok(!p.admits('tenant-a', {}, 'secret'));
  });
});

describe('annotations from MetalLB and Cilium', () => {
  it('an address from any of the honoured annotations; agreeing ones are fine, disagreeing ones an error', () => {
    assert.deepEqual(annotatedAddress({ 'metallb.universe.tf/loadBalancerIPs': '192.0.2.7' }), { ip: '192.0.2.7', from: 'metallb.universe.tf/loadBalancerIPs' });
    assert.deepEqual(annotatedAddress({ 'metallb.io/loadBalancerIPs': '192.0.2.7' }), { ip: '192.0.2.7', from: 'metallb.io/loadBalancerIPs' });
    assert.deepEqual(annotatedAddress({ 'lbipam.cilium.io/ips': ' 192.0.2.8 ' }), { ip: '192.0.2.8', from: 'lbipam.cilium.io/ips' });
    assert.deepEqual(annotatedAddress({ 'io.cilium/lb-ipam-ips': '192.0.2.9' }), { ip: '192.0.2.9', from: 'io.cilium/lb-ipam-ips' });
    assert.deepEqual(annotatedAddress({ 'xlb.io/load-balancer-ips': '192.0.2.7', 'metallb.io/loadBalancerIPs': '192.0.2.7' }), { ip: '192.0.2.7', from: 'xlb.io/load-balancer-ips' });
    assert.deepEqual(annotatedAddress({ 'io.cilium/lb-ipam-ips': '192.0.2.9,2001:db8::1' }), { error: 'annotation io.cilium/lb-ipam-ips: IPv6 2001:db8::1 cannot be assigned yet (the datapath serves IPv4)' });
    assert.deepEqual(annotatedAddress({ 'metallb.io/loadBalancerIPs': '192.0.2.1,192.0.2.2' }), { error: 'annotation metallb.io/loadBalancerIPs: one IPv4 address per service (got 192.0.2.1, 192.0.2.2)' });
    assert.deepEqual(annotatedAddress({}), {});
  });

  it('a pool from xlb or MetalLB annotations; two different ones an error', () => {
    assert.deepEqual(annotatedPool({ 'metallb.universe.tf/address-pool': 'blue' }), { name: 'blue', from: 'metallb.universe.tf/address-pool' });
    assert.deepEqual(annotatedPool({ 'xlb.io/address-pool': 'blue', 'metallb.io/address-pool': 'red' }), { error: 'annotations xlb.io/address-pool (blue) and metallb.io/address-pool (red) name different pools' });
  });

  it('the ones without an equivalent, and unknown ones under the same prefixes, are reported; others are not', () => {
    const issues = annotationIssues('Service default/web', {
      'metallb.universe.tf/allow-shared-ip': 'k',
      'lbipam.cilium.io/sharing-key': 'k',
      'metallb.io/ip-allocated-from-pool': 'blue',
      'xlb.io/loadBalancerIPs': '192.0.2.1',
      'metallb.universe.tf/loadBalancerIPs': '192.0.2.1',
      'xlb.io/bgp-communities': '65000:1',
      'example.com/anything': 'x',
      'io.cilium/global-service': 'true',
    });
    assert.deepEqual(
      issues.map((i) => [i.field, i.message.split(':')[0]]),
      [
        ['metadata.annotations["lbipam.cilium.io/sharing-key"]', 'not supported'],
        ['metadata.annotations["metallb.io/ip-allocated-from-pool"]', 'not supported'],
        ['metadata.annotations["metallb.universe.tf/allow-shared-ip"]', 'not supported'],
        ['metadata.annotations["xlb.io/loadBalancerIPs"]', 'unknown annotation, ignored (honoured'],
      ],
    );
    assert.ok(issues.every((i) => i.object === 'Service default/web'), 'each names the service');
  });

  it('the allocator assigns what a MetalLB annotation asks, from the pool a MetalLB annotation names', () => {
    const a = new Allocator(poolsFromConfig(parseIpamConfig({ pools: [{ name: 'auto', addresses: ['192.0.2.0/28'] }, { name: 'manual', addresses: ['203.0.113.0/28'], autoAssign: false }] })));
    assert.deepEqual(a.ensure(svc('ip', { annotations: { 'metallb.universe.tf/loadBalancerIPs': '203.0.113.5' } })), { kind: 'assigned', ip: '203.0.113.5', pool: 'manual', changed: true });
    assert.deepEqual(a.ensure(svc('pool', { annotations: { 'metallb.io/address-pool': 'manual' } })), { kind: 'assigned', ip: '203.0.113.1', pool: 'manual', changed: true });
    const d = a.ensure(svc('missing', { annotations: { 'metallb.io/address-pool': 'gone' } }));
    assert.deepEqual(d, { kind: 'failed', reason: 'NoPool', message: 'annotation metallb.io/address-pool: no pool named "gone" (pools: auto, manual)' });
  });
});

describe('an allocator whose pools are replaced', () => {
  const pools = (spec: Array<{ name: string; addresses: string[] }>) => poolsFromConfig(parseIpamConfig({ pools: spec }));

  it('keeps assignments that stay in their pool, drops the others, and re-decides them', () => {
    const a = new Allocator(pools([{ name: 'a', addresses: ['192.0.2.1-192.0.2.2'] }, { name: 'b', addresses: ['198.51.100.1'] }]));
    const s1 = svc('s1');
    const s2 = svc('s2');
    const s3 = svc('s3');
    assert.equal(a.ensure(s1).kind, 'assigned');
    assert.equal(a.ensure(s2).kind, 'assigned');
    assert.equal(a.ensure(s3).kind, 'assigned');
    assert.deepEqual(Object.fromEntries(a.assignments()), { 'default/s1': '192.0.2.1', 'default/s2': '192.0.2.2', 'default/s3': '198.51.100.1' });
    // a shrinks to 192.0.2.1 and b is deleted; c is new.
    const dropped = a.setPools(pools([{ name: 'a', addresses: ['192.0.2.1'] }, { name: 'c', addresses: ['203.0.113.1-203.0.113.2'] }]));
    assert.deepEqual(dropped.sort(), ['default/s2', 'default/s3']);
    assert.deepEqual(Object.fromEntries(a.assignments()), { 'default/s1': '192.0.2.1' });
    // Re-decided: their statuses still show the old addresses, which are in no pool now.
    assert.deepEqual(a.ensure({ ...s2, ingressIPs: ['192.0.2.2'] }), { kind: 'assigned', ip: '203.0.113.1', pool: 'c', changed: true });
    assert.deepEqual(a.ensure({ ...s3, ingressIPs: ['198.51.100.1'] }), { kind: 'assigned', ip: '203.0.113.2', pool: 'c', changed: true });
    assert.deepEqual(a.usage(), [
      { pool: 'a', size: 1, used: 1 },
      { pool: 'c', size: 2, used: 2 },
    ]);
  });

  it('a pool recreated under another name with the same addresses keeps the service on its address', () => {
    const a = new Allocator(pools([{ name: 'old', addresses: ['192.0.2.1-192.0.2.4'] }]));
    const s = lbServiceFromRaw({ metadata: { name: 'web', namespace: 'default' }, spec: { type: 'LoadBalancer' } });
    assert.equal(a.ensure(s).kind, 'assigned');
    assert.deepEqual(a.setPools(pools([{ name: 'renamed', addresses: ['192.0.2.1-192.0.2.4'] }])), ['default/web']);
    const d = a.ensure({ ...s, ingressIPs: ['192.0.2.1'] });
    assert.ok(d.kind === 'assigned' && d.ip === '192.0.2.1' && d.pool === 'renamed', `adopts the address its status shows (got ${JSON.stringify(d)})`);
  });
});

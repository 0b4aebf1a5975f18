/**
 * xlb's CustomResourceDefinitions (deploy/helm/xlb/crds/): each one is a
 * valid apiextensions.k8s.io/v1 CustomResourceDefinition (kubernetes-models),
 * follows what the API server demands of a v1 CRD's schema (structural:
 * kubernetes docs "Specifying a structural schema"), and its schema
 * accepts the examples of the docs and refuses the bad input the API server
 * must refuse (checked with Ajv, as test/helpers/crd-schema.ts sets it up).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { loadCrds, crValidator, KUBERNETES_KEYWORDS, type Json } from '../helpers/crd-schema.js';
import { CUSTOM_RESOURCES, XLB_GROUP, XLB_VERSION } from '../../src/sources/kubernetes/custom.js';

const crds = loadCrds();

/**
 * The rules of a structural schema that a file can break (apiextensions
 * validation): every node has a type (but under x-kubernetes-int-or-string
 * or x-kubernetes-preserve-unknown-fields), properties and
 * additionalProperties are not both set, no $ref, no uniqueItems: true,
 * metadata at the root says nothing but type object, and every required
 * property exists.
 * @returns problems as `path: message`
 */
function structuralProblems(schema: Json, at = '', root = true): string[] {
  const out: string[] = [];
  const here = at || '(root)';
  if (!schema.type && !schema['x-kubernetes-int-or-string'] && !schema['x-kubernetes-preserve-unknown-fields']) out.push(`${here}: no type`);
  if (schema.properties && schema.additionalProperties !== undefined) out.push(`${here}: properties and additionalProperties together`);
  if (schema.$ref) out.push(`${here}: $ref is not allowed`);
  if (schema.uniqueItems === true) out.push(`${here}: uniqueItems: true is not allowed (use x-kubernetes-list-type: set)`);
  for (const k of Object.keys(schema)) if (k.startsWith('x-kubernetes-') && !(KUBERNETES_KEYWORDS as readonly string[]).includes(k)) out.push(`${here}: unknown extension ${k}`);
  if (schema['x-kubernetes-list-type'] === 'map' && !schema['x-kubernetes-list-map-keys']?.length) out.push(`${here}: list-type map needs list-map-keys`);
  for (const r of schema.required ?? []) if (!schema.properties?.[r]) out.push(`${here}: required ${r} is not a property`);
  if (root && schema.properties?.metadata && Object.keys(schema.properties.metadata).some((k) => k !== 'type')) out.push('metadata: only type: object is allowed at the root');
  for (const [k, v] of Object.entries((schema.properties ?? {}) as Record<string, Json>)) out.push(...structuralProblems(v, at ? `${at}.${k}` : k, false));
  if (schema.items) out.push(...structuralProblems(schema.items, `${at}[]`, false));
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') out.push(...structuralProblems(schema.additionalProperties, `${at}{}`, false));
  return out;
}

describe('CustomResourceDefinitions', () => {
  it('one file per kind xlb reads, named <group>_<plural>.yaml as the chart expects', () => {
    const kinds = Object.values(CUSTOM_RESOURCES).filter((k) => crds.some((c) => c.crd.spec.names.plural === k.plural));
    assert.ok(kinds.length >= 1, 'at least the pool CRD');
    for (const { file, crd } of crds) {
      assert.equal(file, `${XLB_GROUP}_${crd.spec.names.plural}.yaml`, `${file}: file name`);
      assert.equal(crd.metadata.name, `${crd.spec.names.plural}.${XLB_GROUP}`, `${file}: metadata.name is <plural>.<group>`);
      const known = Object.values(CUSTOM_RESOURCES).find((k) => k.plural === crd.spec.names.plural);
      assert.ok(known, `${file}: a kind xlb knows`);
      assert.equal(crd.spec.names.kind, known.kind, `${file}: kind`);
    }
  });

  for (const { file, crd } of crds) {
    describe(file, () => {
      it('is a valid apiextensions.k8s.io/v1 CustomResourceDefinition', () => {
        assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
        assert.doesNotThrow(() => new CustomResourceDefinition(crd as never).validate(), `${file} against the Kubernetes API schema`);
        assert.equal(crd.spec.group, XLB_GROUP);
        assert.equal(crd.spec.scope, 'Cluster');
        const versions = crd.spec.versions as Json[];
        assert.deepEqual(versions.map((v) => v.name), [XLB_VERSION]);
        assert.equal(versions.filter((v) => v.storage).length, 1, 'one storage version');
        assert.deepEqual(versions[0].subresources, { status: {} }, 'a status subresource (xlb writes status through it)');
      });

      it('has a structural schema that requires spec', () => {
        const schema = crd.spec.versions[0].schema.openAPIV3Schema as Json;
        assert.deepEqual(structuralProblems(schema), []);
        assert.ok(schema.required?.includes('spec'), 'spec is required');
        assert.ok(schema.properties.status, 'status is described');
      });
    });
  }

  it('the structural check is real: a schema without types, or with uniqueItems, fails it', () => {
    assert.deepEqual(structuralProblems({ type: 'object', properties: { spec: { properties: { a: { type: 'array', uniqueItems: true, items: { type: 'string' } } } } } }), [
      'spec: no type',
      'spec.a: uniqueItems: true is not allowed (use x-kubernetes-list-type: set)',
    ]);
  });
});

/** An object of `kind` with this spec. */
const cr = (kind: string, name: string, spec: unknown, extra: Json = {}) => ({ apiVersion: `${XLB_GROUP}/${XLB_VERSION}`, kind, metadata: { name }, spec, ...extra });

describe('LoadBalancerIPPool schema', () => {
  const v = crValidator(CUSTOM_RESOURCES.pools.plural)!;
  const pool = (spec: unknown, extra?: Json) => cr('LoadBalancerIPPool', 'p', spec, extra);

  const good: Array<[string, unknown, Json?]> = [
    ['a CIDR', { addresses: ['192.0.2.0/24'] }],
    ['a range, with spaces, and an address', { addresses: ['203.0.113.10-203.0.113.20', '198.51.100.1 - 198.51.100.9', '198.51.100.77'] }],
    ['/0 and /32', { addresses: ['0.0.0.0/0', '192.0.2.1/32'] }],
    [
      'every field',
      {
        addresses: ['192.0.2.0/28'],
        avoidNetworkAndBroadcast: false,
        autoAssign: false,
        namespaces: ['prod', 'team-a'],
        serviceSelector: { matchLabels: { exposure: 'public' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['web'] }, { key: 'legacy', operator: 'DoesNotExist' }] },
      },
    ],
    [
      'a status as the leader writes it',
      { addresses: ['192.0.2.0/28'] },
      {
        status: {
          observedGeneration: 2,
          addresses: { total: 14, used: 3, available: 11 },
          conditions: [{ type: 'Ready', status: 'True', observedGeneration: 2, lastTransitionTime: '2025-01-02T03:04:05Z', reason: 'Allocating', message: 'serving 14 addresses' }],
        },
      },
    ],
  ];
  for (const [name, spec, extra] of good) it(`accepts ${name}`, () => assert.deepEqual(v.check(pool(spec, extra)), []));

  const bad: Array<[string, unknown, RegExp, Json?]> = [
    ['a prefix over /32', { addresses: ['192.0.2.0/33'] }, /^spec\.addresses\.0: must match pattern/],
    ['an octet over 255', { addresses: ['192.0.2.256'] }, /^spec\.addresses\.0: must match pattern/],
    ['an address with a leading zero', { addresses: ['192.0.2.01'] }, /^spec\.addresses\.0: must match pattern/],
    ['IPv6 (the datapath serves IPv4)', { addresses: ['2001:db8::/64'] }, /^spec\.addresses\.0: must match pattern/],
    ['a word', { addresses: ['banana'] }, /^spec\.addresses\.0: must match pattern/],
    ['no addresses field', {}, /^spec: must have required property 'addresses'/],
    ['an empty address list', { addresses: [] }, /^spec\.addresses: must NOT have fewer than 1 items/],
    ['no spec', undefined, /^\(root\): must have required property 'spec'/],
    ['autoAssign as a string', { addresses: ['192.0.2.1'], autoAssign: 'yes' }, /^spec\.autoAssign: must be boolean/],
    ['a namespace that is not a DNS label', { addresses: ['192.0.2.1'], namespaces: ['Prod_1'] }, /^spec\.namespaces\.0: must match pattern/],
    ['an unknown selector operator', { addresses: ['192.0.2.1'], serviceSelector: { matchExpressions: [{ key: 'a', operator: 'Like' }] } }, /operator: must be equal to one of the allowed values/],
    ['a selector requirement without key', { addresses: ['192.0.2.1'], serviceSelector: { matchExpressions: [{ operator: 'Exists' }] } }, /matchExpressions\.0: must have required property 'key'/],
    [
      'a condition with a bad status',
      { addresses: ['192.0.2.1'] },
      /^status\.conditions\.0\.status: must be equal to one of the allowed values/,
      { status: { conditions: [{ type: 'Ready', status: 'Yes', lastTransitionTime: '2025-01-02T03:04:05Z', reason: 'Allocating', message: '' }] } },
    ],
    [
      'a condition time that is not RFC 3339',
      { addresses: ['192.0.2.1'] },
      /^status\.conditions\.0\.lastTransitionTime: must match format "date-time"/,
      { status: { conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: 'yesterday', reason: 'Allocating', message: '' }] } },
    ],
  ];
  for (const [name, spec, re, extra] of bad) {
    it(`refuses ${name}`, () => {
      const errors = v.check(spec === undefined ? { apiVersion: 'xlb.io/v1alpha1', kind: 'LoadBalancerIPPool', metadata: { name: 'p' }, ...extra } : pool(spec, extra));
      assert.ok(errors.some((e) => re.test(e)), `expected ${re} among ${JSON.stringify(errors)}`);
    });
  }
});

describe('BGPPeer schema', () => {
  const v = crValidator(CUSTOM_RESOURCES.bgpPeers.plural)!;
  const peer = (spec: unknown, extra?: Json) => cr('BGPPeer', 'tor', spec, extra);

  const good: Array<[string, unknown, Json?]> = [
    ['the two required fields', { peerAddress: '198.18.0.1', peerASN: 64512 }],
    [
      'every field',
      {
        peerAddress: '198.18.0.1',
        peerASN: 4294967295,
        myASN: 64513,
        peerPort: 1179,
        holdTime: 0,
        keepaliveTime: 3,
        ebgpMultiHop: 2,
        gracefulRestart: true,
        nodeSelector: { matchLabels: { rack: 'r1' }, matchExpressions: [{ key: 'node-role.kubernetes.io/edge', operator: 'Exists' }] },
        bfdProfile: 'fast',
      },
    ],
    [
      'a status as the agents write it',
      { peerAddress: '198.18.0.1', peerASN: 64512 },
      {
        status: {
          observedGeneration: 1,
          nodes: { 'node-a': { state: 'established', since: '2025-01-02T03:04:05Z' }, 'node-b': { state: 'active', since: '2025-01-02T03:04:05Z', message: 'session down: hold timer expired' } },
          conditions: [{ type: 'Accepted', status: 'True', lastTransitionTime: '2025-01-02T03:04:05Z', reason: 'Accepted', message: '' }],
        },
      },
    ],
  ];
  for (const [name, spec, extra] of good) it(`accepts ${name}`, () => assert.deepEqual(v.check(peer(spec, extra)), []));

  const bad: Array<[string, unknown, RegExp]> = [
    ['an address that is not IPv4', { peerAddress: '2001:db8::1', peerASN: 1 }, /^spec\.peerAddress: must match pattern/],
    ['a hostname', { peerAddress: 'tor1.example', peerASN: 1 }, /^spec\.peerAddress: must match pattern/],
    ['AS 0', { peerAddress: '198.18.0.1', peerASN: 0 }, /^spec\.peerASN: must be >= 1/],
    ['an AS over 32 bits', { peerAddress: '198.18.0.1', peerASN: 4294967296 }, /^spec\.peerASN: must be <= 4294967295/],
    ['a hold time of 2 s', { peerAddress: '198.18.0.1', peerASN: 1, holdTime: 2 }, /^spec\.holdTime: must NOT be valid/],
    ['a TTL of 256', { peerAddress: '198.18.0.1', peerASN: 1, ebgpMultiHop: 256 }, /^spec\.ebgpMultiHop: must be <= 255/],
    ['no peerASN', { peerAddress: '198.18.0.1' }, /^spec: must have required property 'peerASN'/],
    ['a node entry without state', { peerAddress: '198.18.0.1', peerASN: 1 }, /^status\.nodes\.node-a: must have required property 'state'/],
  ];
  for (const [name, spec, re] of bad) {
    it(`refuses ${name}`, () => {
      const errors = v.check(peer(spec, name.startsWith('a node entry') ? { status: { nodes: { 'node-a': { since: '2025-01-02T03:04:05Z' } } } } : undefined));
      assert.ok(errors.some((e) => re.test(e)), `expected ${re} among ${JSON.stringify(errors)}`);
    });
  }
});

describe('L2AnnouncementPolicy schema', () => {
  const v = crValidator(CUSTOM_RESOURCES.l2Policies.plural)!;
  const policy = (spec: unknown) => cr('L2AnnouncementPolicy', 'lobby', spec);

  it('accepts an empty spec (every VIP, every node, every interface) and every field', () => {
    assert.deepEqual(v.check(policy({})), []);
    assert.deepEqual(
      v.check(policy({ serviceSelector: { matchLabels: { exposure: 'lobby' } }, nodeSelector: { matchExpressions: [{ key: 'node-role.kubernetes.io/edge', operator: 'Exists' }] }, interfaces: ['eth1', 'eth0.100'] })),
      [],
    );
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['an interface name with a slash', { interfaces: ['eth0/1'] }, /^spec\.interfaces\.0: must match pattern/],
    ['an interface name over 15 characters', { interfaces: ['a-very-long-ifname'] }, /^spec\.interfaces\.0: must NOT have more than 15 characters/],
    ['an empty interface list', { interfaces: [] }, /^spec\.interfaces: must NOT have fewer than 1 items/],
    ['an unknown operator', { nodeSelector: { matchExpressions: [{ key: 'a', operator: 'Near' }] } }, /operator: must be equal to one of the allowed values/],
  ];
  for (const [name, spec, re] of bad) {
    it(`refuses ${name}`, () => {
      const errors = v.check(policy(spec));
      assert.ok(errors.some((e) => re.test(e)), `expected ${re} among ${JSON.stringify(errors)}`);
    });
  }
});

describe('BGPAdvertisement schema', () => {
  const v = crValidator(CUSTOM_RESOURCES.bgpAdvertisements.plural)!;
  const adv = (spec: unknown) => cr('BGPAdvertisement', 'public', spec);

  it('accepts an empty spec (every VIP, every node, bgp.communities only) and every field', () => {
    assert.deepEqual(v.check(adv({})), []);
    assert.deepEqual(
      v.check(
        adv({
          serviceSelector: { matchLabels: { exposure: 'internet' } },
          nodeSelector: { matchExpressions: [{ key: 'node-role.kubernetes.io/edge', operator: 'Exists' }] },
          ipPools: ['public'],
          communities: ['65535:65535', '0:0', 'no-export'],
          largeCommunities: ['4294967295:0:1'],
          localPref: 4294967295,
          peers: ['tor-a'],
        }),
      ),
      [],
    );
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['a community half over 16 bits', { communities: ['65536:1'] }, /^spec\.communities\.0: must match pattern/],
    ['a community without a colon', { communities: ['65000'] }, /^spec\.communities\.0: must match pattern/],
    ['a large community of two parts', { largeCommunities: ['65000:1'] }, /^spec\.largeCommunities\.0: must match pattern/],
    ['a negative localPref', { localPref: -1 }, /^spec\.localPref: must be >= 0/],
    ['a localPref over 32 bits', { localPref: 4294967296 }, /^spec\.localPref: must be <= 4294967295/],
    ['an empty ipPools list', { ipPools: [] }, /^spec\.ipPools: must NOT have fewer than 1 items/],
    ['an unknown operator', { serviceSelector: { matchExpressions: [{ key: 'a', operator: 'Near' }] } }, /operator: must be equal to one of the allowed values/],
  ];
  for (const [name, spec, re] of bad) {
    it(`refuses ${name}`, () => {
      const errors = v.check(adv(spec));
      assert.ok(errors.some((e) => re.test(e)), `expected ${re} among ${JSON.stringify(errors)}`);
    });
  }
});

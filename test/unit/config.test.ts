/**
 * src/config: the agent's configuration file: defaults, relative paths, and
 * errors naming every bad key path with its value.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

const MINIMAL = { node: { name: 'node1' }, interfaces: ['eth0'], source: { file: { path: '/etc/xlb/manifests.yaml' } } };

/** `base` with `patch` merged in deeply; a value of undefined deletes the key. */
function merge(base: unknown, patch: unknown): unknown {
  if (!patch || typeof patch !== 'object' || Array.isArray(patch) || !base || typeof base !== 'object' || Array.isArray(base)) return patch;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete out[k];
    else out[k] = merge(out[k], v);
  }
  return out;
}

function problems(raw: unknown): string[] {
  try {
    parseConfig(raw, '/etc/xlb', 'xlb.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${e}`);
    return e.problems;
  }
  assert.fail('the configuration was accepted');
}

describe('config: good configurations', () => {
  it('a minimal configuration gets every default', () => {
    const c = parseConfig(MINIMAL, '/etc/xlb');
    const want: Config = {
      node: { name: 'node1' },
      interfaces: ['eth0'],
      source: { file: { path: '/etc/xlb/manifests.yaml', maxBytes: 4194304, settleMs: 50 } },
      datapath: {
        instance: 'xlb',
        objectDir: null,
        xdpMode: 'auto',
        maglev: { minTableSize: 251, maxTableSize: 131071, backendMultiplier: 100 },
        snatPorts: { min: 61000, max: 65535 },
        conntrackSize: 131072,
        synFloodGuard: { newFlowsPerSecond: 10000 },
        conntrackLifetimes: { tcp: 21600, tcpSyn: 60, tcpFin: 10, any: 60 },
        hairpinAddress: '169.254.42.1',
      },
      socketLB: { enabled: true, cgroupRoot: null, hostNamespaceOnly: false },
      podInterfaces: [],
      announce: { externalIPs: false },
      api: { listen: '127.0.0.1:9876' },
      hubble: {},
      metrics: { listen: null },
      flows: { eventsPerSecond: 1000, buffer: 4096 },
      log: { level: 'info' },
    };
    assert.deepEqual(c, want);
  });

  const good: Array<[string, unknown, (c: Config) => void]> = [
    ['relative paths resolve against the config file\'s directory', { source: { file: { path: 'm.yaml' } }, datapath: { objectDir: '../build' }, api: { listen: 'unix:run/xlb.sock' } }, (c) => {
      assert.equal(c.source.file!.path, '/etc/xlb/m.yaml');
      assert.equal(c.datapath.objectDir, '/etc/build');
      assert.equal(c.api.listen, 'unix:/etc/xlb/run/xlb.sock');
    }],
    ['every key given', {
      node: { addresses: ['198.18.0.11', '198.18.0.12'] },
      interfaces: ['eth0', 'eth1'],
      datapath: { instance: 'lab-1', objectDir: '/opt/xlb', xdpMode: 'native', maglev: { minTableSize: 509, maxTableSize: 65521, backendMultiplier: 50 }, snatPorts: { min: 40000, max: 40999 }, conntrackSize: 1024 },
      api: { listen: '[::1]:9000' },
      log: { level: 'debug' },
    }, (c) => {
      assert.deepEqual(c.node.addresses, ['198.18.0.11', '198.18.0.12']);
      assert.deepEqual(c.datapath.maglev, { minTableSize: 509, maxTableSize: 65521, backendMultiplier: 50 });
      assert.deepEqual(c.datapath.snatPorts, { min: 40000, max: 40999 });
      assert.equal(c.datapath.xdpMode, 'native');
      assert.equal(c.api.listen, '[::1]:9000');
    }],
    ['a partly given section keeps the defaults of the other keys', { datapath: { maglev: { maxTableSize: 1021 } } }, (c) => {
      assert.deepEqual(c.datapath.maglev, { minTableSize: 251, maxTableSize: 1021, backendMultiplier: 100 });
      assert.equal(c.datapath.instance, 'xlb');
    }],
    ['a kubernetes source with no kubeconfig', { source: { file: undefined, kubernetes: {} } }, (c) => {
      assert.deepEqual(c.source, { kubernetes: { maxObjects: 100_000 } });
    }],
    ['a host name as listen host, port 0', { api: { listen: 'localhost:0' } }, (c) => assert.equal(c.api.listen, 'localhost:0')],
    ['a metrics listener on every address, beside the API on loopback', { metrics: { listen: '0.0.0.0:9877' } }, (c) => assert.equal(c.metrics.listen, '0.0.0.0:9877')],
    ['a metrics listener on the API\'s port of another address', { api: { listen: '127.0.0.1:9876' }, metrics: { listen: '198.18.0.11:9876' } }, (c) => assert.equal(c.metrics.listen, '198.18.0.11:9876')],
  ];
  for (const [what, patch, check] of good) it(what, () => check(parseConfig(merge(MINIMAL, patch), '/etc/xlb')));
});

describe('config: bad configurations name the key path and the value', () => {
  const bad: Array<[string, unknown, string[]]> = [
    ['unknown top-level key', { nodes: {} }, ['nodes: unknown key (got {})']],
    ['unknown nested key', { datapath: { maglev: { minTablesize: 251 } } }, ['datapath.maglev.minTablesize: unknown key (got 251)']],
    ['missing node.name', { node: { name: undefined } }, ['node.name: required']],
    ['missing node', { node: undefined }, ['node: required']],
    ['bad node name', { node: { name: 'Node_1' } }, ['node.name: must be a node name (DNS-1123 subdomain: lower-case letters, digits, "-", ".") (got "Node_1")']],
    ['bad node address', { node: { addresses: ['198.18.0.1', '198.18.0.256'] } }, ['node.addresses[1]: not an IPv4 address (got "198.18.0.256")']],
    ['empty node addresses', { node: { addresses: [] } }, ['node.addresses: must list at least one address, or be left out to use the interfaces\' addresses (got [])']],
    ['no interfaces', { interfaces: [] }, ['interfaces: must list at least one interface (got [])']],
    ['interfaces not a list', { interfaces: 'eth0' }, ['interfaces: must be a list (got "eth0")']],
    ['interface name too long', { interfaces: ['a-very-long-interface-name'] }, ['interfaces[0]: not an interface name (1..15 characters, no "/", ":" or spaces) (got "a-very-long-interface-name")']],
    ['duplicate interface', { interfaces: ['eth0', 'eth0'] }, ['interfaces[1]: duplicate interface (also interfaces[0]) (got "eth0")']],
    ['no source', { source: { file: undefined } }, ['source: exactly one of file, kubernetes is required (got {})']],
    ['two sources', { source: { kubernetes: {} } }, ['source: exactly one of file, kubernetes; both are given (got {"file":{"path":"/etc/xlb/manifests.yaml","maxBytes":4194304,"settleMs":50},"...)']],
    ['empty file path', { source: { file: { path: '' } } }, ['source.file.path: must be a non-empty string (got "")']],
    ['bad instance', { datapath: { instance: 'XLB_1' } }, ['datapath.instance: must match [a-z0-9-]{1,48} (got "XLB_1")']],
    ['bad xdpMode', { datapath: { xdpMode: 'offload' } }, ['datapath.xdpMode: must be one of native, generic, auto (got "offload")']],
    ['table size not in the prime list', { datapath: { maglev: { minTableSize: 250 } } }, [`datapath.maglev.minTableSize: must be one of the Maglev table sizes 251, 383, 509, 761, 1021, 1531, 2039, 3067, 4093, 6143, 8191, 12281, 16381, 24571, 32749, 49139, 65521, 98299, 131071 (got 250)`]],
    ['min table size above max', { datapath: { maglev: { minTableSize: 1021, maxTableSize: 509 } } }, ['datapath.maglev.minTableSize: must be <= maxTableSize 509 (got 1021)']],
    ['backend multiplier 0', { datapath: { maglev: { backendMultiplier: 0 } } }, ['datapath.maglev.backendMultiplier: must be a number > 0 (got 0)']],
    ['SNAT port out of range', { datapath: { snatPorts: { max: 65536 } } }, ['datapath.snatPorts.max: must be an integer 1..65535 (got 65536)']],
    ['SNAT min above max', { datapath: { snatPorts: { min: 62000, max: 61000 } } }, ['datapath.snatPorts.min: must be <= max 61000 (got 62000)']],
    ['conntrack too small', { datapath: { conntrackSize: 100 } }, ['datapath.conntrackSize: must be an integer 1024..16777216 (got 100)']],
    ['conntrack as a string', { datapath: { conntrackSize: '131072' } }, ['datapath.conntrackSize: must be an integer 1024..16777216 (got "131072")']],
    ['conntrack lifetime of 0', { datapath: { conntrackLifetimes: { tcpFin: 0 } } }, ['datapath.conntrackLifetimes.tcpFin: must be a whole number of seconds 1..31536000 (got 0)']],
    ['listen without port', { api: { listen: '127.0.0.1' } }, ['api.listen: must be HOST:PORT, [IPv6]:PORT or unix:PATH (got "127.0.0.1")']],
    ['listen port too large', { api: { listen: '127.0.0.1:70000' } }, ['api.listen: must be HOST:PORT, [IPv6]:PORT or unix:PATH (got "127.0.0.1:70000")']],
    ['metrics on a unix socket', { metrics: { listen: 'unix:/run/xlb-metrics.sock' } }, ['metrics.listen: must be HOST:PORT or [IPv6]:PORT (Prometheus scrapes over TCP), or null for none (got "unix:/run/xlb-metrics.sock")']],
    ['metrics listen without port', { metrics: { listen: '0.0.0.0' } }, ['metrics.listen: must be HOST:PORT or [IPv6]:PORT (Prometheus scrapes over TCP), or null for none (got "0.0.0.0")']],
    ['metrics on the API\'s address', { metrics: { listen: '127.0.0.1:9876' } }, ['metrics.listen: must not take api.listen\'s port (127.0.0.1:9876); the API serves /metrics itself (got "127.0.0.1:9876")']],
    ['metrics on every address at the API\'s port', { metrics: { listen: '0.0.0.0:9876' } }, ['metrics.listen: must not take api.listen\'s port (127.0.0.1:9876); the API serves /metrics itself (got "0.0.0.0:9876")']],
    ['bad log level', { log: { level: 'verbose' } }, ['log.level: must be one of fatal, error, warn, info, debug, trace, silent (got "verbose")']],
    ['a section that is not a map', { datapath: 5 }, ['datapath: must be a map (got 5)']],
    ['BGP: bad ASN', { bgp: { asn: 0, neighbors: [{ address: '198.18.0.1', asn: 64512 }] } }, ['bgp.asn: must be an AS number 1..4294967295 (RFC 6793; 0 is reserved, RFC 7607) (got 0)']],
    ['BGP: bad neighbor address', { bgp: { asn: 64513, neighbors: [{ address: '198.18.0.300', asn: 64512 }] } }, ['bgp.neighbors[0].address: must be an IPv4 address (got "198.18.0.300")']],
    [
      'BGP: duplicate neighbor',
      { bgp: { asn: 64513, neighbors: [{ address: '198.18.0.1', asn: 64512 }, { address: '198.18.0.1', asn: 64512 }] } },
      ['bgp.neighbors[1].address: duplicate neighbor 198.18.0.1 (also bgp.neighbors[0].address) (got "198.18.0.1")'],
    ],
    ['BGP: no neighbor', { bgp: { asn: 64513, neighbors: [] } }, ['bgp.neighbors: must list at least one neighbor (a router to announce VIPs to), unless BGPPeer resources give them (source.kubernetes with bgp.customResources) (got [])']],
    ['BGP: misspelt key', { bgp: { asn: 64513, neighbors: [{ address: '198.18.0.1', asn: 64512 }], routerid: '198.18.0.11' } }, ['bgp.routerid: unknown key (got "198.18.0.11")']],
    ['L2: bad peer address', { l2: { peers: [{ name: 'node2', address: '198.18.0.300' }] } }, ['l2.peers[0].address: must be an IPv4 address (got "198.18.0.300")']],
    ['announce.externalIPs not a boolean', { announce: { externalIPs: 'yes' } }, ['announce.externalIPs: must be true or false (got "yes")']],
  ];
  for (const [what, patch, want] of bad) it(what, () => assert.deepEqual(problems(merge(MINIMAL, patch)), want));

  it('every problem is listed at once', () => {
    const p = problems({ node: { name: 'n', extra: 1 }, interfaces: [], source: { file: { path: 'x' } }, log: { level: 'loud' } });
    assert.deepEqual(p, [
      'node.extra: unknown key (got 1)',
      'interfaces: must list at least one interface (got [])',
      'log.level: must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
    ]);
  });

  it('an empty document is reported as such', () => {
    assert.deepEqual(problems(null), ['(top level): must be a map (got null)']);
  });
});

describe('loadConfig: files', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-config-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads YAML and resolves the manifests path against the file\'s directory', () => {
    const file = path.join(dir, 'good.yaml');
    fs.writeFileSync(file, 'node:\n  name: node1\ninterfaces: [eth0]\nsource:\n  file: { path: manifests.yaml }\n');
    const c = loadConfig(file);
    assert.equal(c.source.file!.path, path.join(dir, 'manifests.yaml'));
    assert.equal(c.log.level, 'info');
  });

  it('the error message names the file and lists problems as key.path: message (got VALUE)', () => {
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'node: { name: node1 }\ninterfaces: [eth0]\nsource: { file: { path: m.yaml } }\ndatapath: { xdpMode: fast }\n');
    assert.throws(() => loadConfig(file), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.message, `invalid configuration ${file}:\n  datapath.xdpMode: must be one of native, generic, auto (got "fast")`);
      return true;
    });
  });

  it('a YAML syntax error names the line and column', () => {
    const file = path.join(dir, 'syntax.yaml');
    fs.writeFileSync(file, 'node:\n  name: node1\ninterfaces: [eth0\nsource: {}\n');
    assert.throws(() => loadConfig(file), (e: unknown) => e instanceof ConfigError && new RegExp(`${file}:\\d+:\\d+: `).test(e.problems[0]));
  });

  it('a duplicate key is an error', () => {
    const file = path.join(dir, 'dup.yaml');
    fs.writeFileSync(file, 'node: { name: a }\nnode: { name: b }\n');
    assert.throws(() => loadConfig(file), (e: unknown) => e instanceof ConfigError && /:2:1: Map keys must be unique/.test(e.problems[0]));
  });

  it('a missing file is an error naming it', () => {
    const file = path.join(dir, 'missing.yaml');
    assert.throws(() => loadConfig(file), (e: unknown) => e instanceof ConfigError && e.message === `invalid configuration ${file}:\n  cannot read: ENOENT`);
  });

  it('command-line overrides: --node-name sets node.name, --kubeconfig replaces the file\'s source, --interfaces sets interfaces', () => {
    const file = path.join(dir, 'deploy.yaml');
    // deploy/20-configmap.yaml's shape: no node name in the file.
    fs.writeFileSync(file, 'interfaces: [eth0]\nsource:\n  file: { path: m.yaml }\n');
    const c = loadConfig(file, { nodeName: 'worker-3', kubeconfig: 'kube/config', interfaces: ['eth1', 'eth2'] });
    assert.equal(c.node.name, 'worker-3');
    assert.deepEqual(c.source, { kubernetes: { kubeconfig: path.resolve('kube/config'), maxObjects: 100_000 } });
    assert.deepEqual(c.interfaces, ['eth1', 'eth2']);
  });

  it('without a file, the overrides and the defaults make the configuration; what is missing is named', () => {
    const c = loadConfig(undefined, { nodeName: 'n1', kubeconfig: '/k', interfaces: ['eth0'] });
    assert.equal(c.node.name, 'n1');
    assert.equal(c.api.listen, '127.0.0.1:9876');
    assert.throws(
      () => loadConfig(undefined, { kubeconfig: '/k' }),
      (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.startsWith('node: ')) && e.problems.some((p) => p.startsWith('interfaces: ')),
    );
  });
});

describe('config: ipam', () => {
  const K8S = { ...MINIMAL, source: { kubernetes: {} } };
  it('pools with the Kubernetes source are accepted, with leader election defaults', () => {
    const c = parseConfig({ ...K8S, ipam: { pools: [{ name: 'default', addresses: ['203.0.113.0/28'] }] } }, '/etc/xlb');
    assert.equal(c.ipam!.pools[0].name, 'default');
    assert.equal(c.ipam!.leaderElection.leaseName, 'xlb-ipam');
    assert.equal(c.ipam!.leaderElection.namespace, 'xlb-system');
  });
  it('ipam with the file source is refused: it writes status through the API server', () => {
    assert.deepEqual(problems({ ...MINIMAL, ipam: { pools: [{ name: 'default', addresses: ['203.0.113.0/28'] }] } }), [
      'ipam: needs source.kubernetes: IPAM writes Service status through the API server',
    ]);
  });
  it('a bad pool entry names its key path', () => {
    const p = problems({ ...K8S, ipam: { pools: [{ name: 'default', addresses: ['203.0.113.0/33'] }] } });
    assert.equal(p.length, 1);
    assert.match(p[0], /^ipam\.pools\[0\]\.addresses\[0\]: /);
  });

  it('l2 lease ownership needs the Kubernetes source, and peers ownership needs peers', () => {
    assert.deepEqual(problems({ ...MINIMAL, l2: { ownership: 'lease', peers: [{ name: 'node1', address: '198.18.0.11' }] } }), [
      'l2.ownership: lease needs source.kubernetes (the Leases live in the API server); use peers with the file source',
    ]);
    assert.deepEqual(problems({ ...MINIMAL, l2: {} }), ['l2.peers: must list the nodes of the layer 2 group (peers ownership, the file source\'s)']);
    assert.equal(parseConfig({ ...K8S, l2: {} }, '/etc/xlb').l2!.ownership, 'auto');
  });
});

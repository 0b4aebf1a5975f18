/**
 * What `xlb agent` takes from the machine when the configuration leaves it
 * out (src/config/discover.ts): the node's name from the host name, the
 * interfaces from the IPv4 default routes; XLB_NODE_NAME, XLB_INTERFACES and
 * XLB_CONFIG set them from the environment. docker-compose.yml's
 * configuration (examples/compose-agent.yaml) relies on it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, type Discovered } from '../../src/config/load.js';
import { defaultRouteInterfaces, type ConfigDiscovery } from '../../src/config/discover.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A discovery that answers `name` and `ifs` (or throws `ifs` when it is an Error). */
function fake(name: string, ifs: string[] | Error): ConfigDiscovery {
  return {
    nodeName: () => name,
    interfaces: () => {
      if (ifs instanceof Error) throw ifs;
      return ifs;
    },
  };
}

/** /proc/net/route's text: the header, then Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT. */
const ROUTE_HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\t\t';
const route = (iface: string, dest: string, flags: string, metric: number, mask: string) => `${iface}\t${dest}\t0100A8C0\t${flags}\t0\t0\t${metric}\t${mask}\t0\t0\t0`;

describe('defaultRouteInterfaces: /proc/net/route', () => {
  it('takes the interfaces of the up default routes, lowest metric first, each once', () => {
    const text = [
      ROUTE_HEADER,
      route('wlan0', '00000000', '0003', 600, '00000000'),
      route('eth0', '0000A8C0', '0001', 0, '00FFFFFF'), // 192.168.0.0/24: not a default route
      route('eth0', '00000000', '0003', 100, '00000000'),
      route('eth1', '00000000', '0002', 50, '00000000'), // not up
      route('wlan0', '00000000', '0003', 700, '00000000'),
      '',
    ].join('\n');
    assert.deepEqual(defaultRouteInterfaces(text), ['eth0', 'wlan0']);
  });

  it('no default route: none', () => {
    assert.deepEqual(defaultRouteInterfaces(`${ROUTE_HEADER}\n${route('eth0', '0000A8C0', '0001', 0, '00FFFFFF')}\n`), []);
    assert.deepEqual(defaultRouteInterfaces(''), []);
  });
});

describe('loadConfig with a discovery', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-discover-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return f;
  };

  it('fills node.name and interfaces the file leaves out, and says what it filled', () => {
    const file = write('bare.yaml', 'source: { file: { path: s.yaml } }\n');
    const discovered: Discovered = {};
    const c = loadConfig(file, {}, { discovery: fake('host-1', ['eth0', 'eth1']), discovered });
    assert.equal(c.node.name, 'host-1');
    assert.deepEqual(c.interfaces, ['eth0', 'eth1']);
    assert.equal(c.node.addresses, undefined, 'addresses stay left out: the agent takes those of the interfaces');
    assert.deepEqual(discovered, { nodeName: 'host-1', interfaces: ['eth0', 'eth1'] });
  });

  it('the file and the command line win over the discovery, which is then not asked', () => {
    const file = write('named.yaml', 'node: { name: from-file, addresses: [198.18.0.5] }\ninterfaces: [eth9]\nsource: { file: { path: s.yaml } }\n');
    const discovered: Discovered = {};
    const asked: string[] = [];
    const d: ConfigDiscovery = {
      nodeName: () => (asked.push('name'), 'host-1'),
      interfaces: () => (asked.push('interfaces'), ['eth0']),
    };
    const c = loadConfig(file, {}, { discovery: d, discovered });
    assert.equal(c.node.name, 'from-file');
    assert.deepEqual(c.node.addresses, ['198.18.0.5']);
    assert.deepEqual(c.interfaces, ['eth9']);
    const o = loadConfig(write('bare2.yaml', 'source: { file: { path: s.yaml } }\n'), { nodeName: 'from-cli', interfaces: ['eth3'] }, { discovery: d, discovered });
    assert.equal(o.node.name, 'from-cli');
    assert.deepEqual(o.interfaces, ['eth3']);
    assert.deepEqual(asked, [], 'nothing was discovered');
    assert.deepEqual(discovered, {});
  });

  it('no default route: an error naming interfaces and how to set them', () => {
    const file = write('noroute.yaml', 'node: { name: n1 }\nsource: { file: { path: s.yaml } }\n');
    assert.throws(
      () => loadConfig(file, {}, { discovery: fake('n1', []) }),
      (e: unknown) => e instanceof ConfigError && e.problems.length === 1 && /^interfaces: left out, and this network namespace has no IPv4 default route .*XLB_INTERFACES/.test(e.problems[0]),
    );
    assert.throws(
      () => loadConfig(file, {}, { discovery: fake('n1', new Error('EACCES')) }),
      (e: unknown) => e instanceof ConfigError && /^interfaces: left out, and the default routes could not be read \(EACCES\)/.test(e.problems[0]),
    );
  });

  it('a host name that is no node name: an error naming node.name, the host name and how to set it', () => {
    const file = write('badhost.yaml', 'interfaces: [eth0]\nsource: { file: { path: s.yaml } }\n');
    assert.throws(
      () => loadConfig(file, {}, { discovery: fake('my_host', ['eth0']) }),
      (e: unknown) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0].startsWith('node.name: left out, and the host name "my_host" is not a node name') && e.problems[0].includes('XLB_NODE_NAME'),
    );
  });

  it('without a discovery, leaving them out is the schema\'s error, as before', () => {
    const file = write('plain.yaml', 'source: { file: { path: s.yaml } }\n');
    assert.throws(
      () => loadConfig(file),
      (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.startsWith('node')) && e.problems.some((p) => p.startsWith('interfaces')),
    );
  });

  it("docker-compose.yml's configuration names nothing of the machine: all of it comes from the discovery", () => {
    const text = fs.readFileSync(path.join(repo, 'examples/compose-agent.yaml'), 'utf8');
    assert.doesNotMatch(text, /^\s*(name|interfaces|addresses):/m, 'no node name, interfaces or addresses in the file');
    const discovered: Discovered = {};
    const c = loadConfig(path.join(repo, 'examples/compose-agent.yaml'), {}, { discovery: fake('debian', ['enp1s0']), discovered });
    assert.deepEqual(discovered, { nodeName: 'debian', interfaces: ['enp1s0'] });
    assert.equal(c.source.file?.path, '/etc/xlb/services.yaml');
    assert.equal(c.socketLB.cgroupRoot, '/run/xlb/cgroupv2');
    assert.equal(c.api.listen, '127.0.0.1:9876', 'where `xlb status` (the healthcheck) asks by default');
  });
});

describe('xlb agent: the environment', () => {
  /** `xlb agent` from this checkout with `env` added; it must fail before starting anything. */
  function agent(env: Record<string, string>, args: string[]) {
    return spawnSync(process.execPath, [path.join(repo, 'bin/xlb.js'), 'agent', ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30000 });
  }

  it('XLB_NODE_NAME and XLB_INTERFACES set what they name; a bad value is an error naming the key and the variable', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-env-'));
    try {
      const file = path.join(dir, 'agent.yaml');
      fs.writeFileSync(file, 'source: { file: { path: s.yaml } }\n');
      const r = agent({ XLB_NODE_NAME: 'Bad_Name', XLB_INTERFACES: 'eth0' }, ['--config', file]);
      assert.equal(r.status, 2, `exit 2: ${r.stderr}`);
      assert.match(r.stderr, /node\.name: must be a node name .*\(got "Bad_Name"\)/);
      assert.match(r.stderr, /from the environment: XLB_NODE_NAME="Bad_Name", XLB_INTERFACES="eth0"/);
      const bad = agent({ XLB_CONFIG: file, XLB_NODE_NAME: 'n1', XLB_INTERFACES: 'eth0/1' }, []);
      assert.equal(bad.status, 2, `exit 2: ${bad.stderr}`);
      assert.match(bad.stderr, /interfaces\[0\]: not an interface name/);
      assert.match(bad.stderr, /XLB_CONFIG=.*XLB_INTERFACES="eth0\/1"/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without XLB_CONFIG and --config (or --kubeconfig) it says what to give', () => {
    const r = agent({ XLB_CONFIG: '' }, []);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /give --config FILE \(or XLB_CONFIG\), or --kubeconfig FILE/);
  });
});

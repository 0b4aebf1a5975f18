/**
 * The image without a Docker engine: scripts/build-image-tree.sh builds the
 * runtime tree into a temporary directory, as the Dockerfile's build stage
 * does for /opt/xlb, and the lab's agents run from it: the tree's own
 * Node.js on its compiled JavaScript, with a PATH of only the tree's bin/,
 * the Debian packages the runtime stage installs
 * (scripts/image-runtime-packages.txt) and those of the base image
 * (Priority: required), and no other environment (`env -i`), as in the
 * container.
 *
 * One lab (BGP) for the file, the modes in sequence: the file source with
 * BGP, the socket LB, the API's page and Hubble on both nodes; then node2
 * restarted in layer 2 mode; then node1 restarted with the Kubernetes
 * source (the in-test API server), its interfaces found from its default
 * route. The Debian libraries (libbpf.so.1) come from the machine: only
 * commands are held to the image's packages.
 *
 * Run as root: node --import tsx --test --test-concurrency=1 test/e2e/image.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { labDown, labExec, labPodExec, labRoutes, labStartAgent, labStopAgent, labUp, type LabNode, type LabStatus } from '../../src/lab/index.js';
import { apiGet } from '../../src/cli/client.js';
import { sh } from '../../src/lab/sh.js';
import { waitFor } from '../../src/util/wait.js';
import type { L2Status } from '../../src/l2/announcer.js';
import type { KubernetesStatus } from '../../src/agent/agent.js';
import { stopKeptGobgpd } from '../../src/bgp/gobgpd.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { hubbleClient } from '../helpers/hubble.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const suffix = randomBytes(3).toString('hex');
const stateDir = `/run/xlb-test-image-${suffix}`;
const relaySocket = `${stateDir}-api.sock`;
const WEB_VIP = '192.0.2.10';
const WEB_CLUSTER_IP = '198.18.128.10';

let work = '';
let tree = '';
let lab: LabStatus | undefined;
let api: FakeApiServer | undefined;
const relays: ChildProcess[] = [];

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The Debian packages of scripts/image-runtime-packages.txt. */
function runtimePackages(): string[] {
  return fs
    .readFileSync(path.join(repo, 'scripts/image-runtime-packages.txt'), 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
}

/**
 * A directory of links to every command (in /bin, /sbin, /usr/bin,
 * /usr/sbin) of the Debian packages `pkgs`: the PATH a container of those
 * packages has.
 */
function commandsOf(pkgs: string[], dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const files = execFileSync('dpkg-query', ['-L', ...pkgs], { encoding: 'utf8' }).split('\n');
  for (const f of files) {
    if (!/^(\/usr)?\/s?bin\/[^/]+$/.test(f)) continue;
    const link = path.join(dir, path.basename(f));
    try {
      const st = fs.statSync(f);
      if (!st.isFile() || !(st.mode & 0o111) || fs.existsSync(link)) continue;
    } catch {
      continue; // listed but not there (a diversion, a dangling alternative)
    }
    fs.symlinkSync(f, link);
  }
}

/** Installed packages of Priority required: what debian:12-slim holds. */
function basePackages(): string[] {
  return execFileSync('dpkg-query', ['-W', '-f', '${Package} ${Priority} ${db:Status-Status}\n'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' '))
    .filter(([, prio, status]) => prio === 'required' && status === 'installed')
    .map(([p]) => p);
}

/** Every file below `dir` (not following links), relative to it. */
function walk(dir: string, rel = ''): string[] {
  return fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const r = path.join(rel, e.name);
    return e.isDirectory() ? walk(dir, r) : [r];
  });
}

/** HTTP GET over a node agent's API socket: [status, body]. */
async function apiRaw(n: LabNode, urlPath: string): Promise<[number, string]> {
  const out = await sh('curl', ['-sS', '-m', '5', '--unix-socket', n.api.slice('unix:'.length), '-w', '\n%{http_code}', `http://xlb${urlPath}`]);
  const i = out.lastIndexOf('\n');
  return [Number(out.slice(i + 1)), out.slice(0, i)];
}

/** The pod that answers HTTP on `vip` from the client, or '' when none does within 2 s. */
async function curlPod(vip: string): Promise<string> {
  const out = await labExec(lab!.client, ['curl', '-sS', '-m', '2', `http://${vip}/`]).catch(() => '');
  return /^n\dp\d /.test(out) ? out.split(' ')[0] : '';
}

const node = (name: string) => lab!.nodes.find((n) => n.name === name)!;

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-image-'));
  tree = path.join(work, 'opt-xlb');
  execFileSync('bash', [path.join(repo, 'scripts/build-image-tree.sh'), tree], { stdio: ['ignore', 'ignore', 'inherit'] });
  const pkgs = runtimePackages();
  const missing = pkgs.filter((p) => spawnStatus('dpkg-query', ['-W', '-f', '${db:Status-Status}', p]) !== 'installed');
  assert.deepEqual(missing, [], `the runtime stage's packages are installed here (scripts/setup.sh installs them): missing ${missing.join(' ')}`);
  const bin = path.join(work, 'path');
  commandsOf([...pkgs, ...basePackages()], bin);
  lab = await labUp({
    nodes: 2,
    podsPerNode: 2,
    stateDir,
    announce: 'bgp',
    // As the container runs it: its PATH, no other environment.
    agentCommand: ['env', '-i', `PATH=${path.join(tree, 'bin')}:${bin}`, 'HOME=/root', path.join(tree, 'bin/xlb')],
  });
});

after(async () => {
  for (const p of relays) p.kill('SIGKILL');
  await labDown(stateDir).catch((e: Error) => console.error(`lab down: ${e.message}`));
  await api?.close();
  fs.rmSync(relaySocket, { force: true });
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** `cmd args`' stdout, or '' when it fails. */
function spawnStatus(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

describe('the image tree', () => {
  test('holds Node.js >= 20, the compiled control plane, runtime dependencies only, and nothing of the toolchain', () => {
    const version = execFileSync(path.join(tree, 'bin/node'), ['--version'], { encoding: 'utf8' }).trim();
    assert.ok(Number(version.slice(1).split('.')[0]) >= 20, `the tree's Node.js is 20 or later: ${version}`);
    const files = walk(tree);
    assert.ok(files.includes('dist/src/cli/main.js'), 'the compiled entry is there');
    assert.deepEqual(files.filter((f) => f.startsWith('dist/') && !f.endsWith('.js')), [], 'dist holds JavaScript only');
    for (const f of ['xdp/build/xlb_xdp.bpf.o', 'xdp/build/xlb_tc.bpf.o', 'xdp/build/xlb_sock.bpf.o', 'api/hubble/observer/observer.proto', 'api/gobgp/gobgp.proto', 'src/ui/index.html', 'package.json']) {
      assert.ok(files.includes(f), `${f} is in the tree`);
    }
    const toolchain = files.filter((f) => /^(clang|llc|llvm-.*|gcc|cc|make|npm|npx|tsc|tsserver|tsx|esbuild)$/.test(path.basename(f)));
    assert.deepEqual(toolchain, [], 'no compiler, make, npm or TypeScript tool in the tree');
    const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    for (const d of Object.keys(pkg.dependencies)) assert.ok(fs.existsSync(path.join(tree, 'node_modules', d, 'package.json')), `runtime dependency ${d} is installed`);
    for (const d of ['typescript', 'tsx', 'esbuild', 'vega', 'vega-lite', 'kubernetes-models', 'playwright-core']) {
      assert.ok(!fs.existsSync(path.join(tree, 'node_modules', d)), `${d} (development only) is not in the tree`);
    }
    // Every package the lock file marks as development-only is left out.
    const lock = JSON.parse(fs.readFileSync(path.join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([k, v]) => k && v.dev && fs.existsSync(path.join(tree, k)));
    assert.deepEqual(devOnly.map(([k]) => k), [], 'no development-only package of the lock file');
    const toolPkgs = runtimePackages().filter((p) => /^(clang|llvm|gcc|make|npm|nodejs|libbpf-dev|linux-libc-dev|golang)/.test(p));
    assert.deepEqual(toolPkgs, [], 'the runtime stage installs no toolchain package');
  });

  test("the file source's parse worker runs from the compiled tree (a .js worker, no TypeScript loader)", () => {
    const big = `# ${'x'.repeat(70 * 1024)}\n${fs.readFileSync(path.join(repo, 'examples/lab-services.yaml'), 'utf8')}`;
    const script = `
      const { ParseWorker } = await import(${JSON.stringify(path.join(tree, 'dist/src/sources/file/worker.js'))});
      const w = new ParseWorker();
      const v = await w.parse(process.env.TEXT, 'services.yaml');
      console.log(JSON.stringify(v ? [...v.state.services.keys()].sort() : null));
      await w.stop();`;
    const out = execFileSync(path.join(tree, 'bin/node'), ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', TEXT: big } });
    const keys = JSON.parse(out) as string[] | null;
    assert.ok(keys, 'the worker ran (parse() returns undefined when it cannot)');
    assert.ok(keys.includes('default/web'), `the worker parsed the services: ${keys.join(', ')}`);
  });
});

describe('agents from the image tree in the lab', () => {
  test('run the tree\'s Node.js on its compiled entry', () => {
    for (const n of lab!.nodes) {
      assert.equal(fs.readlinkSync(`/proc/${n.agentPid}/exe`), path.join(tree, 'bin/node'), `${n.name}'s agent runs the tree's node`);
      const argv = fs.readFileSync(`/proc/${n.agentPid}/cmdline`, 'utf8').split('\0');
      assert.ok(argv.includes(path.join(tree, 'dist/src/cli/main.js')), `${n.name}'s agent runs the compiled entry: ${argv.join(' ')}`);
    }
  });

  test('file source and BGP: the router learns the VIP from both gobgpds, and HTTP to it reaches the pods', async () => {
    const web = (await labRoutes(lab!)).find((r) => r.vip === WEB_VIP);
    assert.deepEqual(web?.from, ['node1', 'node2'], `the router has ${WEB_VIP} from both nodes: ${JSON.stringify(web)}`);
    const pods = new Set<string>();
    await waitFor(
      async () => {
        pods.add(await curlPod(WEB_VIP));
        pods.delete('');
        return pods.size >= 2;
      },
      15000,
      `HTTP to ${WEB_VIP} to reach two pods (so far ${[...pods].join(' ')})`,
    );
  });

  test('socket LB: a pod reaches the ClusterIP through the cgroup hooks', async () => {
    for (const n of lab!.nodes) {
      const dp = (await apiGet(n.api, '/v1/datapath')) as { attachments: Array<{ interface: string; hook: string }> };
      const hooks = dp.attachments.filter((a) => a.interface === n.cgroup).map((a) => a.hook);
      assert.ok(hooks.length > 0, `${n.name} has socket hooks on its cgroup: ${JSON.stringify(dp.attachments)}`);
    }
    const out = await labPodExec(stateDir, 'n1p1', ['curl', '-sS', '-m', '3', `http://${WEB_CLUSTER_IP}/`]);
    assert.match(out, /^n\dp\d /, 'a pod answered the ClusterIP');
  });

  test('the service map page, cytoscape and the Hubble API are served', async () => {
    for (const n of lab!.nodes) {
      const [status, page] = await apiRaw(n, '/ui/');
      assert.equal(status, 200, `${n.name} GET /ui/`);
      assert.match(page, /<html/i, 'the page is HTML');
      const [cyStatus] = await apiRaw(n, '/ui/cytoscape.min.js');
      assert.equal(cyStatus, 200, `${n.name} GET /ui/cytoscape.min.js (from the runtime dependencies)`);
      const hubble = hubbleClient(n.hubble);
      try {
        const s = await hubble.serverStatus();
        assert.ok(typeof s.max_flows === 'number', `${n.name}'s Hubble ServerStatus answers: ${JSON.stringify(s)}`);
      } finally {
        hubble.close();
      }
    }
  });

  test('layer 2: node2 restarted with l2 answers ARP for the VIPs and sent gratuitous ARP through arping', async () => {
    const n2 = node('node2');
    await labStopAgent(stateDir, 'node2');
    // Leaving BGP: the gobgpd an agent restart keeps is stopped, as `xlb uninstall` does, so the router drops node2's routes.
    const stopped = await stopKeptGobgpd({ gobgpd: { apiSocket: path.join(stateDir, 'node2-gobgpd.sock') } });
    assert.ok(stopped, "node2's agent had left its gobgpd running");
    await labStartAgent(stateDir, 'node2', (cfg) => {
      const { bgp: _bgp, ...rest } = cfg;
      return { ...rest, l2: { peers: [{ name: 'node2', address: n2.ip }], heartbeat: { intervalMs: 200, deadAfterMissed: 5 } } };
    });
    let l2: L2Status | undefined;
    await waitFor(
      async () => {
        l2 = (await apiGet(n2.api, '/v1/l2')) as L2Status;
        return l2.vips.some((v) => v.vip === WEB_VIP && v.local) && l2.counters.garpSent > 0;
      },
      15000,
      `node2 to own ${WEB_VIP} and send gratuitous ARP (${JSON.stringify(l2?.counters)}, ${JSON.stringify(l2?.lastError)})`,
    );
    assert.equal(l2!.counters.garpFailed, 0, `no arping failed: ${JSON.stringify(l2!.lastError)}`);
    // The router is on the nodes' segment: it asks for the VIP itself.
    const out = await labExec(lab!.router, ['arping', '-c', '2', '-w', '4', '-I', 'eth0', WEB_VIP]).catch((e: Error) => e.message);
    const macs = new Set([...out.matchAll(/reply from \S+ \[([0-9A-F:]+)\]/gi)].map((m) => m[1].toLowerCase()));
    assert.deepEqual([...macs], [n2.mac.toLowerCase()], `node2 answers ARP for ${WEB_VIP}: ${out}`);
  });

  test('Kubernetes source: node1 restarted with --kubeconfig finds its interface from the default route, announces the VIP and serves it', async () => {
    api = await FakeApiServer.start({ bookmarkIntervalMs: 1000 });
    const docs = parseAllDocuments(fs.readFileSync(lab!.manifests, 'utf8')).map((d) => d.toJS() as Obj);
    for (const o of docs.flatMap((d) => (d?.kind === 'List' ? d.items : [d])).filter(Boolean)) {
      if (o.kind === 'Service') api.upsert('services', o);
      else if (o.kind === 'EndpointSlice') api.upsert('endpointslices', o);
    }
    const n1 = node('node1');
    api.upsert('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node1' }, status: { addresses: [{ type: 'InternalIP', address: n1.ip }] } });
    // The API server on the test's loopback, reached from node1's loopback through a unix socket.
    const port = new URL(api.url).port;
    relays.push(spawn('socat', [`UNIX-LISTEN:${relaySocket},fork,unlink-early`, `TCP:127.0.0.1:${port}`], { stdio: 'ignore' }));
    await waitFor(() => fs.existsSync(relaySocket), 5000, 'the unix relay socket');
    relays.push(spawn('ip', ['netns', 'exec', n1.netns, 'socat', `TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr`, `UNIX-CONNECT:${relaySocket}`], { stdio: 'ignore' }));
    await labStopAgent(stateDir, 'node1');
    // No node, no interfaces in the file: the name from the command line, eth0 from the default route.
    await labStartAgent(
      stateDir,
      'node1',
      (cfg) => {
        const { node: _node, interfaces: _ifs, ...rest } = cfg;
        return rest;
      },
      { args: ['--kubeconfig', api.kubeconfigPath, '--node-name', 'node1'] },
    );
    const k = (await apiGet(n1.api, '/v1/kubernetes')) as KubernetesStatus;
    assert.equal(k.synced, true, 'the informers synced');
    const dp = (await apiGet(n1.api, '/v1/datapath')) as { attachments: Array<{ interface: string; hook: string }> };
    assert.ok(dp.attachments.some((a) => a.interface === 'eth0' && a.hook === 'xdp'), `XDP on eth0, found from the default route: ${JSON.stringify(dp.attachments)}`);
    // node2 announces nothing now (layer 2): the router's route for the VIP is node1's alone.
    await waitFor(
      async () => {
        const r = (await labRoutes(lab!)).find((x) => x.vip === WEB_VIP);
        return JSON.stringify(r?.from) === '["node1"]' && r!.kernelNextHops.length === 1;
      },
      20000,
      `the router to route ${WEB_VIP} to node1 alone`,
    );
    const pods = new Set<string>();
    await waitFor(
      async () => {
        pods.add(await curlPod(WEB_VIP));
        pods.delete('');
        return pods.size >= 2;
      },
      15000,
      `HTTP to ${WEB_VIP} through node1 to reach two pods (so far ${[...pods].join(' ')})`,
    );
  });
});

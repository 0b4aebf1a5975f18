/**
 * src/sources/file: a manifests file on disk, edited the ways people and
 * tools edit it, reaches the consumer as whole snapshots within 100 ms; a
 * broken file keeps the last good state and is reported with its line.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { FileSource, ManifestError, parseManifests } from '../../src/sources/file/index.js';
import type { Snapshot } from '../../src/sources/source.js';
import { translateState } from '../../src/services/rules.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/manifests');
/** The bound the task sets for a change to reach the consumer. */
const CHANGE_DEADLINE_MS = 100;

/** A Service named `name` with cluster IP 198.19.0.N, as YAML. */
function serviceYaml(name: string, n: number): string {
  return `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\nspec:\n  clusterIP: 198.19.0.${n}\n  ports:\n  - port: 80\n`;
}

/** A logger that records messages by level and calls `onLine` after each. */
function recordingLogger(onLine: () => void) {
  const lines: Array<{ level: string; msg: string }> = [];
  const at = (level: string) => (a: unknown, b?: unknown) => {
    lines.push({ level, msg: String(typeof a === 'string' ? a : b) });
    onLine();
  };
  const log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger;
  return { log, lines };
}

/** Collects snapshots and errors; `next*` wait for the next one with a deadline. */
class Recorder {
  snapshots: Snapshot[] = [];
  errors: ManifestError[] = [];
  private waiters: Array<() => void> = [];
  onSnapshot = (s: Snapshot) => {
    this.snapshots.push(s);
    this.wake();
  };
  onError = (e: ManifestError) => {
    this.errors.push(e);
    this.wake();
  };
  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  /** Resolves with the elapsed ms once `cond` holds; rejects after `deadlineMs`. */
  until(cond: () => boolean, deadlineMs: number, what: string): Promise<number> {
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${deadlineMs} ms`)), deadlineMs);
      const check = () => {
        if (cond()) {
          clearTimeout(timer);
          resolve(performance.now() - t0);
        } else this.waiters.push(check);
      };
      check();
    });
  }
  last(): Snapshot {
    return this.snapshots[this.snapshots.length - 1];
  }
}

const serviceNames = (s: Snapshot) => [...s.state.services.keys()];

describe('FileSource', () => {
  let dir: string;
  let file: string;
  let source: FileSource | undefined;
  let rec: Recorder;
  let logged: ReturnType<typeof recordingLogger>;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-file-source-'));
    file = path.join(dir, 'manifests.yaml');
    rec = new Recorder();
    logged = recordingLogger(() => rec.wake());
  });
  afterEach(async () => {
    await source?.stop();
    source = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const start = async () => {
    source = new FileSource(file, logged.log, { onError: rec.onError });
    await source.start(rec.onSnapshot);
  };

  it('start delivers the first snapshot before it resolves', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    await start();
    assert.equal(rec.snapshots.length, 1);
    assert.deepEqual(serviceNames(rec.snapshots[0]), ['default/a']);
  });

  it('an edit in place reaches onSnapshot within 100 ms', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    await start();
    for (let i = 2; i <= 4; i++) {
      fs.writeFileSync(file, `${serviceYaml('a', 1)}---\n${serviceYaml(`b${i}`, i)}`);
      const ms = await rec.until(() => rec.snapshots.length === i, CHANGE_DEADLINE_MS, `snapshot ${i}`);
      assert.deepEqual(serviceNames(rec.last()), ['default/a', `default/b${i}`], `after ${ms.toFixed(1)} ms`);
    }
  });

  it('an object the edit did not touch is handed on as the same object (the controller compares by identity)', async () => {
    fs.writeFileSync(file, `${serviceYaml('a', 1)}---\n${serviceYaml('b', 2)}`);
    await start();
    const first = rec.last();
    fs.writeFileSync(file, `${serviceYaml('a', 1)}---\n${serviceYaml('b', 3)}`);
    await rec.until(() => rec.snapshots.length === 2, CHANGE_DEADLINE_MS, 'the edit');
    const second = rec.last();
    assert.equal(second.state.services.get('default/a'), first.state.services.get('default/a'), 'a: unchanged, same object');
    assert.notEqual(second.state.services.get('default/b'), first.state.services.get('default/b'), 'b: changed, a new object');
    assert.deepEqual(second.state.services.get('default/b')!.clusterIPs, ['198.19.0.3']);
  });

  it('of two Services without creation times claiming one frontend, the one the file had keeps it; the newcomer is reported', async () => {
    fs.writeFileSync(file, serviceYaml('web', 1));
    await start();
    // "aaa" sorts first, and claims web's cluster IP and port.
    fs.writeFileSync(file, `${serviceYaml('web', 1)}---\n${serviceYaml('aaa', 1)}`);
    await rec.until(() => rec.snapshots.length === 2, 2000, 'the newcomer');
    const node = { name: 'n1', addresses: ['198.18.0.1'] };
    const { services, issues } = translateState(rec.last().state, node);
    assert.deepEqual(services.filter((p) => p.frontends.some((f) => f.addr === '198.19.0.1')).map((p) => `${p.namespace}/${p.name}`), ['default/web'], 'web keeps it');
    assert.ok(issues.some((i) => i.object === 'Service default/aaa' && /198\.19\.0\.1/.test(i.message)), `aaa is reported: ${JSON.stringify(issues)}`);
    // Its date stays while it stays in the file: an edit of web changes nothing.
    fs.writeFileSync(file, `${serviceYaml('web', 1).replace('port: 80', 'port: 80\n    name: http')}---\n${serviceYaml('aaa', 1)}`);
    await rec.until(() => rec.snapshots.length === 3, 2000, 'the edit');
    assert.deepEqual(translateState(rec.last().state, node).services.filter((p) => p.frontends.some((f) => f.addr === '198.19.0.1')).map((p) => `${p.namespace}/${p.name}`), ['default/web']);
    // Read at once (a new agent), the first by name keeps it: both are dated alike.
    await source!.stop();
    rec = new Recorder();
    await start();
    assert.deepEqual(translateState(rec.last().state, node).services.filter((p) => p.frontends.some((f) => f.addr === '198.19.0.1')).map((p) => `${p.namespace}/${p.name}`), ['default/aaa']);
  });

  it('a rename over the file (editors, mv into place) reaches onSnapshot within 100 ms', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    await start();
    const tmp = path.join(dir, '.manifests.yaml.swp');
    fs.writeFileSync(tmp, serviceYaml('renamed', 2));
    fs.renameSync(tmp, file);
    await rec.until(() => rec.snapshots.length === 2, CHANGE_DEADLINE_MS, 'snapshot after rename');
    assert.deepEqual(serviceNames(rec.last()), ['default/renamed']);
    // A second replacement: the watch must survive the inode change.
    fs.writeFileSync(tmp, serviceYaml('again', 3));
    fs.renameSync(tmp, file);
    await rec.until(() => rec.snapshots.length === 3, CHANGE_DEADLINE_MS, 'snapshot after second rename');
    assert.deepEqual(serviceNames(rec.last()), ['default/again']);
  });

  it('broken YAML keeps the last state, reports file and line, and a fix applies', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    await start();
    fs.writeFileSync(file, `${serviceYaml('a', 1)}---\nkind: Service\nmetadata:\n  name: b\n   oops: [\n`);
    await rec.until(() => rec.errors.length === 1, CHANGE_DEADLINE_MS, 'parse error report');
    assert.equal(rec.snapshots.length, 1, 'nothing emitted for a broken file');
    const err = rec.errors[0];
    assert.equal(err.file, file);
    // yaml detects the mistake at `name: b` (line 12), whose value the
    // over-indented line below turns into a nested mapping.
    assert.equal(err.line, 12);
    assert.match(err.message, new RegExp(`^${file.replace(/[.]/g, '\\.')}:12:\\d+: YAML syntax error: `));
    assert.ok(logged.lines.some((l) => l.level === 'error' && l.msg.includes(':12:') && l.msg.includes('keeping the last good state')));

    fs.writeFileSync(file, serviceYaml('fixed', 2));
    await rec.until(() => rec.snapshots.length === 2, CHANGE_DEADLINE_MS, 'snapshot after the fix');
    assert.deepEqual(serviceNames(rec.last()), ['default/fixed']);
  });

  it('an empty-looking file keeps the last state and says how to remove every service; an empty List removes them', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    let recovered = 0;
    source = new FileSource(file, logged.log, { onError: rec.onError, onRecovered: () => (recovered++, rec.wake()) });
    await source.start(rec.onSnapshot);
    const empties = ['', '  \n', '---\n', 'null\n', '# only a comment\n', 'just some words\n'];
    for (const [i, text] of empties.entries()) {
      fs.writeFileSync(file, text);
      await rec.until(() => rec.errors.length === i + 1, 1000, `report of ${JSON.stringify(text)}`);
      assert.match(rec.errors[i].message, /(no manifests in the file|not a manifests file).*write an empty List/, JSON.stringify(text));
      fs.writeFileSync(file, serviceYaml('a', 1));
      await rec.until(() => recovered === i + 1, 1000, 'back to the version in force');
    }
    assert.equal(rec.snapshots.length, 1, 'nothing emitted: the last good state stays');
    fs.writeFileSync(file, '{"apiVersion": "v1", "kind": "List", "items": []}\n');
    await rec.until(() => rec.snapshots.length === 2, 1000, 'the empty List');
    assert.equal(rec.last().state.services.size, 0);
  });

  it('a file over maxBytes, or not UTF-8, is refused naming its size or the line', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    source = new FileSource(file, logged.log, { onError: rec.onError, maxBytes: 4096 });
    await source.start(rec.onSnapshot);
    fs.writeFileSync(file, serviceYaml('a', 1).repeat(50));
    await rec.until(() => rec.errors.length === 1, 1000, 'size report');
    assert.match(rec.errors[0].message, /MiB, more than source\.file\.maxBytes/);
    const bad = Buffer.from(`${serviceYaml('a', 1)}---\n${serviceYaml('b', 2)}`);
    bad[bad.indexOf('name: b') + 6] = 0xff;
    fs.writeFileSync(file, bad);
    await rec.until(() => rec.errors.length === 2, 1000, 'UTF-8 report');
    assert.match(rec.errors[1].message, /:13: not UTF-8/);
    assert.equal(rec.snapshots.length, 1);
  });

  it('a write cut in two is read once, whole, even when its first half is a valid file', async () => {
    const whole = `${serviceYaml('a', 1)}---\n${serviceYaml('b', 2)}`;
    fs.writeFileSync(file, whole);
    await start();
    const edited = whole.replace('198.19.0.2', '198.19.0.3');
    fs.writeFileSync(file, edited.slice(0, edited.indexOf('---')));
    await new Promise((r) => setTimeout(r, 60));
    fs.writeFileSync(file, edited);
    await rec.until(() => rec.snapshots.length === 2, 1000, 'the whole edit');
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(rec.snapshots.length, 2, 'the first half (a valid file with one Service) was never delivered');
    assert.deepEqual(serviceNames(rec.last()), ['default/a', 'default/b']);
  });

  it('labels are validated as Kubernetes validates them, and a slice whose Service is not in the file is reported', async () => {
    const slice = (service: string) =>
      `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: a-1\n  labels:\n    kubernetes.io/service-name: ${service}\naddressType: IPv4\nports:\n- port: 80\nendpoints:\n- addresses: [198.19.1.1]\n`;
    fs.writeFileSync(file, `${serviceYaml('a', 1)}---\n${slice('a')}`);
    await start();
    assert.deepEqual(rec.last().issues, []);
    fs.writeFileSync(file, `${serviceYaml('a', 1).replace('metadata:\n', 'metadata:\n  labels:\n    app: -web\n')}---\n${slice('aa')}`);
    await rec.until(() => rec.snapshots.length === 2, 1000, 'the edit');
    const issues = rec.last().issues.map((i) => `${i.object} ${i.field}: ${i.message}`);
    assert.ok(issues.some((i) => /^Service default\/a metadata\.labels\.app: not a label value.*this label is ignored$/.test(i)), issues.join('\n'));
    assert.ok(issues.some((i) => /^EndpointSlice default\/a-1 metadata\.labels\["kubernetes\.io\/service-name"\]: no Service default\/aa in the file/.test(i)), issues.join('\n'));
  });

  it('a large file is parsed on a worker thread, and its errors still name the line', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    await start();
    const many = Array.from({ length: 2000 }, (_, i) => serviceYaml(`s${i}`, 1 + (i % 250))).join('---\n');
    assert.ok(many.length >= 64 * 1024);
    fs.writeFileSync(file, many);
    await rec.until(() => rec.snapshots.length === 2, 10_000, 'the large file');
    assert.equal(rec.last().state.services.size, 2000);
    assert.equal(source!.offThreadParses, 1);
    fs.writeFileSync(file, `${many}---\nkind: Service\nmetadata:\n  name: b\n   oops: [\n`);
    await rec.until(() => rec.errors.length === 1, 10_000, 'the broken large file');
    assert.match(rec.errors[0].message, /:\d+:\d+: YAML syntax error/);
    assert.ok(rec.errors[0].line! > 16000, `line ${rec.errors[0].line}`);
  });

  it('unchanged content emits nothing', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    await start();
    const seen = () => logged.lines.filter((l) => l.msg.startsWith('manifests unchanged')).length;
    fs.writeFileSync(file, serviceYaml('a', 1));
    await rec.until(() => seen() >= 1, CHANGE_DEADLINE_MS, 'the re-read of the unchanged file');
    assert.equal(rec.snapshots.length, 1);
  });

  it('a deleted file is reported once and the last state kept; recreating it applies', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    await start();
    fs.unlinkSync(file);
    await rec.until(() => rec.errors.length === 1, CHANGE_DEADLINE_MS, 'missing-file report');
    assert.match(rec.errors[0].message, /cannot read: ENOENT/);
    fs.writeFileSync(file, serviceYaml('back', 2));
    await rec.until(() => rec.snapshots.length === 2, CHANGE_DEADLINE_MS, 'snapshot after recreation');
    assert.deepEqual(serviceNames(rec.last()), ['default/back']);
    assert.equal(rec.errors.length, 1);
  });

  it('invalid parts arrive as issues in the snapshot while the rest applies', async () => {
    fs.copyFileSync(path.join(FIXTURES, 'invalid.yaml'), file);
    await start();
    // badport keeps its valid port; typo and badip have no usable port left.
    assert.deepEqual(serviceNames(rec.last()), ['default/badport', 'default/good']);
    assert.deepEqual(rec.last().state.services.get('default/badport')!.ports.map((p) => p.name), ['a']);
    assert.deepEqual([...rec.last().state.endpointSlices.keys()], ['default/good-1']);
    assert.ok(rec.last().issues.some((i) => i.object === 'Service default/typo' && i.field === 'spec.potrs'));
    assert.ok(rec.last().issues.some((i) => i.object === 'Service default/badport' && i.field === 'spec.ports[1].port'));
  });

  it('a JSON List is read', async () => {
    file = path.join(dir, 'manifests.json');
    const list = { apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'j' }, spec: { clusterIP: '198.19.0.5', ports: [{ port: 443 }] } }] };
    fs.writeFileSync(file, JSON.stringify(list, null, '\t'));
    await start();
    assert.deepEqual(serviceNames(rec.last()), ['default/j']);
  });

  it('JSON is parsed as JSON (a top-level array gives item positions); broken JSON is reported with its line and column', () => {
    const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' }, spec: { ports: [{ port: 80 }] } };
    const r = parseManifests(JSON.stringify([svc, svc]), 'm.json');
    assert.deepEqual(r.objects, [svc, svc]);
    assert.deepEqual(r.positions, ['m.json: item 0', 'm.json: item 1']);
    assert.throws(() => parseManifests('{\n  "kind": "Service",\n  "metadata": {"name": "a"\n}\n', 'm.json'), (e: unknown) => e instanceof ManifestError && /^m\.json:\d+:\d+: /.test(e.message));
  });

  it('start fails with file and line for a broken file, and for a missing one', async () => {
    fs.writeFileSync(file, 'kind: Service\nmetadata: {name: a\n');
    await assert.rejects(start(), (e: unknown) => e instanceof ManifestError && e.line !== undefined && e.message.startsWith(`${file}:`));
    await assert.rejects(
      new FileSource(path.join(dir, 'nope.yaml'), logged.log).start(() => undefined),
      (e: unknown) => e instanceof ManifestError && /nope\.yaml: cannot read: ENOENT/.test(e.message),
    );
  });

  it('after stop, changes reach a running source but not the stopped one', async () => {
    fs.writeFileSync(file, serviceYaml('a', 1));
    await start();
    await source!.stop();
    const other = new Recorder();
    const second = new FileSource(file, logged.log);
    await second.start(other.onSnapshot);
    try {
      fs.writeFileSync(file, serviceYaml('b', 2));
      await other.until(() => other.snapshots.length === 2, CHANGE_DEADLINE_MS, 'snapshot at the running source');
      assert.equal(rec.snapshots.length, 1);
    } finally {
      await second.stop();
    }
  });
});

describe('parseManifests', () => {
  it('gives each top-level object the line it starts on', () => {
    const text = `# comment\n${serviceYaml('a', 1)}---\n${serviceYaml('b', 2)}`;
    const p = parseManifests(text, 'm.yaml');
    assert.deepEqual(p.positions, ['m.yaml:2', 'm.yaml:11']);
  });

  it('rejects duplicate keys with their line', () => {
    assert.throws(() => parseManifests('kind: Service\nkind: Pod\n', 'm.yaml'), (e: unknown) => e instanceof ManifestError && e.line === 2);
  });

  it('reads a sequence of objects as objects', () => {
    const p = parseManifests('- {kind: Service}\n- {kind: Pod}\n', 'm.yaml');
    assert.deepEqual(p.objects, [{ kind: 'Service' }, { kind: 'Pod' }]);
    assert.deepEqual(p.positions, ['m.yaml:1', 'm.yaml:2']);
  });
});

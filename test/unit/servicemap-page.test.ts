/**
 * The service map page in a real browser: Debian's headless Chromium
 * (test/helpers/browser.ts) opens /ui/ from an API listening on 127.0.0.1
 * (port 0) in front of an agent on in-memory maps serving the lab's
 * services, whose flows come from a FlowBuffer the tests fill. Skipped
 * where chromium is not installed (scripts/setup.sh installs it).
 *
 * Run: node --import tsx --test test/unit/servicemap-page.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Agent } from '../../src/agent/agent.js';
import { buildApi } from '../../src/api/server.js';
import { FlowBuffer, type Flow, type FlowQuery } from '../../src/flows/flows.js';
import { hasChromium, launchChromium, type TestBrowser } from '../helpers/browser.js';
import { skipUnless } from '../helpers/system.js';
import { startExampleAgent } from '../helpers/agent.js';

const skip = skipUnless([hasChromium, "needs Debian's chromium at /usr/bin/chromium (scripts/setup.sh installs it)"]);

/** What the page's cytoscape holds: its nodes' data (page.evaluate reads it). */
type GraphNode = { id: string; kind: string; label: string; namespace: string; pod?: string };
type GraphEdge = { id: string; source: string; target: string; flows: number; drops: number; label: string };

describe('the service map page in Chromium', { skip }, () => {
  let dir: string;
  let agent: Agent;
  let withFlows: FastifyInstance;
  let withoutFlows: FastifyInstance;
  let browser: TestBrowser | undefined;
  const buffer = new FlowBuffer(256);
  let url = '';

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-servicemap-page-'));
    agent = await startExampleAgent(dir);
    // The agent on in-memory maps records no flows: the tests' buffer stands in for its datapath's.
    withFlows = buildApi(Object.assign(Object.create(agent) as Agent, { flowsView: (q: FlowQuery) => ({ flows: buffer.query(q), suppressed: '0', capacity: buffer.capacity }) }));
    withoutFlows = buildApi(agent);
    await withFlows.listen({ host: '127.0.0.1', port: 0 });
    await withoutFlows.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(withFlows.server.address() as { port: number }).port}/ui`;
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await withFlows?.close();
    await withoutFlows?.close();
    await agent?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const page = () => browser!.page;
  const nodes = () => page().evaluate(() => (window as unknown as { xlbServiceMap: { cy: { nodes(): { map<T>(f: (n: { data(): unknown }) => T): T[] } } } }).xlbServiceMap.cy.nodes().map((n) => n.data())) as Promise<GraphNode[]>;
  const edges = () => page().evaluate(() => (window as unknown as { xlbServiceMap: { cy: { edges(): { map<T>(f: (n: { data(): unknown }) => T): T[] } } } }).xlbServiceMap.cy.edges().map((e) => e.data())) as Promise<GraphEdge[]>;
  /** The page has drawn at least `n` maps since it loaded. */
  const drawn = (n: number, timeout = 10_000) => page().waitForFunction((k) => ((window as unknown as { xlbServiceMap?: { updates: number } }).xlbServiceMap?.updates ?? 0) >= k, n, { timeout });
  const noErrors = () => assert.deepEqual(browser!.errors, [], 'no console error or uncaught exception in the page');

  function addFlow(o: { sport: number; dst: string; service: string; backend?: string; dropReason?: string; protocol?: 'TCP' | 'UDP' }): void {
    const [ip, port] = o.dst.split(':');
    const now = Date.now();
    const f: Flow = {
      time: new Date(now).toISOString(),
      timeMs: now,
      node: 'node1',
      verdict: o.dropReason ? 'DROPPED' : 'FORWARDED',
      protocol: o.protocol ?? 'TCP',
      source: { ip: '198.18.1.2', port: o.sport },
      destination: { ip, port: Number(port), service: o.service },
      tcpFlags: o.protocol === 'UDP' ? [] : ['SYN'],
      point: 'xdp',
    };
    if (o.dropReason) f.dropReason = o.dropReason;
    if (o.backend) {
      const [bip, bport] = o.backend.split(':');
      f.backend = { ip: bip, port: Number(bport), pod: agent.podOf(bip)?.pod };
    }
    buffer.add(f);
  }

  test('loads with no console error and shows every service, its frontends and its backends named by pod', async () => {
    await page().goto(url);
    assert.match(page().url(), /\/ui\/$/, 'redirected to /ui/');
    await drawn(1);
    const shown = await nodes();
    const ids = new Set(shown.map((n) => n.id));
    for (const s of agent.services()) {
      assert.ok(ids.has(`service:${s.namespace}/${s.name}`), `service ${s.namespace}/${s.name} shown`);
      for (const f of s.frontends) assert.ok(ids.has(`frontend:${s.key}@${f.addr}:${f.port}/${s.protocol}`), `frontend ${f.addr}:${f.port}/${s.protocol} of ${s.key} shown`);
      for (const b of s.backends) assert.ok(ids.has(`backend:${b.addr}:${b.port}/${s.protocol}`), `backend ${b.addr}:${b.port}/${s.protocol} of ${s.key} shown`);
    }
    const n1p1 = shown.find((n) => n.id === 'backend:198.19.1.11:8080/TCP');
    assert.equal(n1p1?.label, 'n1p1\n198.19.1.11:8080/TCP', 'the backend is labelled with its pod');
    assert.equal(await page().locator('#flows-off').isVisible(), false, 'flows are on: no notice');
    assert.match((await page().locator('#node').textContent()) ?? '', /node1/, 'the page names the agent’s node');
    noErrors();
  });

  test('a new flow appears in the table within 2 s, and the edges it took count it', async () => {
    await drawn(1);
    addFlow({ sport: 40001, dst: '192.0.2.10:80', service: 'default/web:http', backend: '198.19.2.11:8080' });
    const row = page().locator('#flows tbody tr[data-source="198.18.1.2:40001"]');
    await row.waitFor({ timeout: 2000 });
    const cells = await row.locator('td').allTextContents();
    assert.deepEqual(cells.slice(1), ['node1', '198.18.1.2:40001', '192.0.2.10:80/TCP', 'default/web:http', '198.19.2.11:8080 (default/n2p1)', 'FORWARDED', '']);
    await page().waitForFunction(
      () => {
        const cy = (window as unknown as { xlbServiceMap: { cy: { getElementById(id: string): { data(k: string): unknown } } } }).xlbServiceMap.cy;
        return cy.getElementById('service:default/web->backend:198.19.2.11:8080/TCP').data('flows') === 1;
      },
      undefined,
      { timeout: 2000 },
    );
    const e = await edges();
    const vip = e.find((x) => x.id === 'frontend:default/web:http@192.0.2.10:80/TCP->service:default/web');
    assert.deepEqual([vip?.flows, vip?.label], [1, '0.1 flows/s'], 'one flow in the 10 s window on the VIP’s edge');
    assert.equal(e.find((x) => x.id === 'service:default/web->backend:198.19.1.11:8080/TCP')?.flows, 0, 'the other backends took none');

    addFlow({ sport: 40002, dst: '192.0.2.11:53', service: 'default/dns-echo:dns', dropReason: 'no_backend', protocol: 'UDP' });
    const dropped = page().locator('#flows tbody tr.DROPPED[data-source="198.18.1.2:40002"]');
    await dropped.waitFor({ timeout: 2000 });
    assert.deepEqual((await dropped.locator('td').allTextContents()).slice(5), ['', 'DROPPED', 'no_backend']);
    await page().waitForFunction(
      () => {
        const cy = (window as unknown as { xlbServiceMap: { cy: { getElementById(id: string): { data(k: string): unknown } } } }).xlbServiceMap.cy;
        return cy.getElementById('frontend:default/dns-echo:dns@192.0.2.11:53/UDP->service:default/dns-echo').data('label') === '1 dropped';
      },
      undefined,
      { timeout: 2000 },
    );
    const first = await page().locator('#flows tbody tr').first().getAttribute('data-source');
    assert.equal(first, '198.18.1.2:40002', 'newest first');
    noErrors();
  });

  test('the namespace filter shows one namespace’s services and flows, and is kept in the address', async () => {
    addFlow({ sport: 40003, dst: '198.18.128.53:53', service: 'kube-system/kube-dns:dns', backend: '198.19.1.2:53', protocol: 'UDP' });
    await page().locator('#flows tbody tr[data-source="198.18.1.2:40003"]').waitFor({ timeout: 5000 });
    await page().selectOption('#namespace', 'kube-system');
    await page().waitForFunction(
      () => {
        const cy = (window as unknown as { xlbServiceMap: { cy: { nodes(sel: string): { length: number } } } }).xlbServiceMap.cy;
        return cy.nodes('[kind = "service"]').length === 1 && cy.nodes('[namespace != "kube-system"]').length === 0;
      },
      undefined,
      { timeout: 5000 },
    );
    assert.deepEqual((await nodes()).filter((n) => n.kind === 'service').map((n) => n.id), ['service:kube-system/kube-dns']);
    await page().waitForFunction(() => [...document.querySelectorAll('#flows tbody tr')].every((tr) => tr.children[4].textContent!.startsWith('kube-system/')), undefined, { timeout: 5000 });
    assert.deepEqual(await page().locator('#flows tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.source)), ['198.18.1.2:40003'], 'only the kube-dns flow');
    assert.match(page().url(), /\/ui\/\?namespace=kube-system$/);

    // The address brings the filter back.
    await page().goto(`${url}/?namespace=default`);
    await drawn(1);
    assert.equal(await page().locator('#namespace').inputValue(), 'default');
    const services = (await nodes()).filter((n) => n.kind === 'service');
    assert.ok(services.length === 4 && services.every((n) => n.namespace === 'default'), `default's four services: ${services.map((n) => n.id).join(' ')}`);

    await page().selectOption('#namespace', '');
    await page().waitForFunction(() => (window as unknown as { xlbServiceMap: { cy: { nodes(sel: string): { length: number } } } }).xlbServiceMap.cy.nodes('[kind = "service"]').length === 5, undefined, { timeout: 5000 });
    assert.match(page().url(), /\/ui\/$/, 'no filter in the address');
    noErrors();
  });

  test('with flow events off the page still draws the services and says flows are off', async () => {
    await page().goto(`http://127.0.0.1:${(withoutFlows.server.address() as { port: number }).port}/ui/`);
    await drawn(1);
    assert.equal(await page().locator('#flows-off').isVisible(), true, 'the flows-off notice shows');
    assert.match((await page().locator('#status').textContent()) ?? '', /flow events off/);
    const shown = await nodes();
    assert.equal(shown.filter((n) => n.kind === 'service').length, 5, 'all five services drawn');
    assert.ok(shown.some((n) => n.id === 'backend:198.19.1.11:8080/TCP'), 'backends drawn');
    assert.equal(await page().locator('#flows tbody tr').count(), 0, 'no flow rows');
    await drawn(2);
    noErrors();
  });
});

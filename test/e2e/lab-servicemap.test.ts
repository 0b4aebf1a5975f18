/**
 * The service map page end to end: a lab (real namespaces, agents with XDP,
 * flow events on), node1's API reached by headless Chromium through a small
 * loopback TCP → unix socket forwarder (the lab's agents listen on unix
 * sockets), and a connection from the lab's client to the web VIP that the
 * page must show within 2 s. Lab, forwarder, browser and its profile are
 * removed in `after`, also when a test failed.
 *
 * Run as root: node --import tsx --test --test-concurrency=1 test/e2e/lab-servicemap.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { labDown, labExec, labUp, type LabStatus } from '../../src/lab/index.js';
import { apiGet } from '../../src/cli/client.js';
import { waitFor } from '../../src/util/wait.js';
import { hasChromium, launchChromium, type TestBrowser } from '../helpers/browser.js';
import { hasTools, isRoot, skipUnless } from '../helpers/system.js';

const skip = skipUnless(
  [isRoot, 'needs root (network namespaces, XDP)'],
  [hasChromium, "needs Debian's chromium at /usr/bin/chromium (scripts/setup.sh installs it)"],
  [() => hasTools('curl', 'nsenter'), 'needs curl and nsenter'],
);

/**
 * An HTTP server on 127.0.0.1 (a free port) passing each request on to the
 * HTTP server on unix socket `socketPath`, for a browser, which speaks TCP only.
 */
async function forwarder(socketPath: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const upstream = http.request({ socketPath, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    upstream.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'bad_gateway', message: `agent API ${socketPath}: ${e.message}` }));
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type GraphNode = { id: string; kind: string; label: string; pod?: string };

describe('the service map page in a lab', { skip }, () => {
  const stateDir = `/run/xlb-test-${randomBytes(3).toString('hex')}`;
  let lab: LabStatus | undefined;
  let proxy: { url: string; close(): Promise<void> } | undefined;
  let browser: TestBrowser | undefined;

  before(async () => {
    lab = await labUp({ nodes: 2, podsPerNode: 2, stateDir, announce: 'static' });
    proxy = await forwarder(lab.nodes[0].api.replace(/^unix:/, ''));
    browser = await launchChromium();
  });

  after(async () => {
    // Each step runs whatever the one before did.
    try {
      await browser?.close();
    } finally {
      try {
        await proxy?.close();
      } finally {
        await labDown(stateDir);
      }
    }
  });

  const page = () => browser!.page;
  const nodes = () => page().evaluate(() => (window as unknown as { xlbServiceMap: { cy: { nodes(): { map<T>(f: (n: { data(): unknown }) => T): T[] } } } }).xlbServiceMap.cy.nodes().map((n) => n.data())) as Promise<GraphNode[]>;

  test("the page shows the lab's services, their VIPs and their backends named by pod, with no console error", async () => {
    await page().goto(`${proxy!.url}/ui/`);
    await page().waitForFunction(() => ((window as unknown as { xlbServiceMap?: { updates: number } }).xlbServiceMap?.updates ?? 0) >= 1, undefined, { timeout: 10_000 });
    const shown = await nodes();
    const ids = new Set(shown.map((n) => n.id));
    for (const s of lab!.services) {
      assert.ok(ids.has(`service:${s.namespace}/${s.name}`), `service ${s.namespace}/${s.name} shown`);
      assert.ok(shown.some((n) => n.kind === 'frontend' && n.id.endsWith(`@${s.vip}:${s.port}/${s.protocol}`)), `frontend ${s.vip}:${s.port}/${s.protocol} of ${s.name} shown`);
      for (const b of s.backends) {
        const node = shown.find((n) => n.id === `backend:${b}/${s.protocol}`);
        assert.ok(node, `backend ${b}/${s.protocol} of ${s.name} shown`);
        const pod = [...lab!.pods, ...lab!.clusterDns.pods].find((p) => p.ip === b.split(':')[0]);
        assert.ok(pod, `backend ${b} is a lab pod`);
        assert.equal(node.pod, `${pod.namespace ?? 'default'}/${pod.name}`, `backend ${b} named by its pod`);
      }
    }
    assert.ok(ids.has('service:default/web'), 'default/web shown');
    assert.equal(await page().locator('#flows-off').isVisible(), false, 'flow events are on in the lab');
    assert.match((await page().locator('#node').textContent()) ?? '', /node1/);
    assert.deepEqual(browser!.errors, [], 'no console error or uncaught exception in the page');
  });

  test('a new connection from the client to the web VIP appears in the page within 2 s', async () => {
    const web = lab!.services.find((s) => s.name === 'web' && s.protocol === 'TCP')!;
    const watched = lab!.nodes[0];
    // The router spreads flows over the nodes by their 4-tuple (ECMP) and
    // the page shows the flows of node1 only: connect from one source port
    // after another until node1 places one. Ports below the ephemeral range
    // (none of them in TIME_WAIT from another connection).
    for (let sport = 23000; sport < 23032; sport++) {
      await labExec(lab!.client, ['curl', '-s', '-m', '3', '--local-port', String(sport), `http://${web.vip}/`]);
      // The new flow's row (its close, once curl ends, is a row of its own).
      const row = page().locator(`#flows tbody tr[data-source="${lab!.clientIp}:${sport}"][data-event="new"]`);
      // Started now: the 2 s count from the connection's end.
      const shown = row.waitFor({ timeout: 2000 }).then(
        () => true,
        (e: Error) => e,
      );
      let owner: string | undefined;
      await waitFor(
        async () => {
          for (const n of lab!.nodes) {
            const r = (await apiGet(n.api, `/v1/flows?from-ip=${lab!.clientIp}&port=${sport}`)) as { flows: unknown[] };
            if (r.flows.length) owner = n.name;
          }
          return owner !== undefined;
        },
        5000,
        `a node to record the flow from port ${sport}`,
      );
      if (owner !== watched.name) {
        await shown;
        continue;
      }
      const result = await shown;
      assert.equal(result, true, `the flow from ${lab!.clientIp}:${sport} (placed by ${owner}) shows in the page within 2 s: ${result instanceof Error ? result.message : ''}`);
      const cells = await row.locator('td').allTextContents();
      assert.equal(cells[1], watched.name, 'node');
      assert.equal(cells[3], `${web.vip}:${web.port}/TCP`, 'destination');
      assert.match(cells[4], /^default\/web:/, 'service');
      assert.match(cells[5], /^198\.19\.\d\.\d+:8080 \(default\/n\dp\d\)$/, 'backend and its pod');
      assert.equal(cells[6], 'FORWARDED', 'verdict');
      const backend = cells[5].split(' ')[0];
      await page().waitForFunction(
        (id) => {
          const cy = (window as unknown as { xlbServiceMap: { cy: { getElementById(id: string): { data(k: string): unknown } } } }).xlbServiceMap.cy;
          return Number(cy.getElementById(id).data('flows')) >= 1;
        },
        `service:default/web->backend:${backend}/TCP`,
        { timeout: 2000 },
      );
      assert.deepEqual(browser!.errors, [], 'no console error or uncaught exception in the page');
      return;
    }
    assert.fail(`none of 32 connections went through ${watched.name}`);
  });
});

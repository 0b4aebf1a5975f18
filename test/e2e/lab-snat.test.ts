/**
 * SNAT ports are reused end to end: a lab whose nodes have 16 SNAT ports
 * and a 1-second FIN lifetime serves, at a steady pace, several times more
 * connections to backends on the other node than it has ports, without a
 * SYN dropped for want of a port. (Before conntrack lifetimes, a port was
 * held until the reverse NAT map evicted it: the 17th connection from one
 * node to one remote backend was dropped.)
 *
 * Run as root: node --import tsx --test test/e2e/lab-snat.test.ts
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { labDown, labUp, type LabStatus } from '../../src/lab/index.js';
import { clientTraffic } from '../../src/demo/demo.js';
import { apiGet } from '../../src/cli/client.js';

const stateDir = `/run/xlb-test-${randomBytes(3).toString('hex')}`;
const PORTS = 16;
let lab: LabStatus;

before(async () => {
  lab = await labUp({
    nodes: 2,
    podsPerNode: 2,
    stateDir,
    announce: 'static',
    agentConfig: { datapath: { snatPorts: { min: 61000, max: 61000 + PORTS - 1 }, conntrackLifetimes: { tcpFin: 1 } } },
  });
});

after(async () => {
  await labDown(stateDir);
});

async function drops(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const n of lab.nodes) {
    const d = (await apiGet(n.api, '/v1/datapath')) as { drops: Record<string, string> };
    out[n.name] = Number(d.drops.snat_exhausted);
  }
  return out;
}

test(`${PORTS} SNAT ports per backend carry many times as many connections, one after another`, async () => {
  const web = lab.services.find((s) => s.name === 'web')!;
  const before = await drops();
  // 20 connections a second for 15 s: about half reach a backend on the
  // other node, ~2.5 a second per (node, remote backend), ~37 each in all.
  const [r] = await clientTraffic(lab, ['http', '--url', `http://${web.vip}/`, '--count', '300', '--rate', '20', '--concurrency', '4']);
  const after = await drops();
  assert.equal(r.errors, 0, 'every request answered');
  assert.deepEqual(after, before, 'no SYN dropped as snat_exhausted');
  assert.equal(r.slow, 0, 'no request waited for a SYN retransmission');
  const remote = Object.values(r.byBackend as Record<string, number>).reduce((a, b) => a + b, 0) / 2;
  assert.ok(remote > 2 * 2 * PORTS * 2, `~${remote} remote connections over ${2 * 2 * PORTS} (node, backend) ports: each port reused`);
});

/**
 * Hitless restarts in the lab (BGP, two nodes): node1's agent is restarted
 * while 20 keep-alive HTTP connections are held open through the web VIP
 * and a new connection starts every 20 ms (src/lab/restart.ts). Each
 * restart must keep every held connection (local and SNAT alike: one more
 * request on each is answered by the same pod on the same connection) and
 * fail no new connection. The gap (time during which new connections took
 * longer than 100 ms or failed) is printed, not asserted.
 *
 * The first test restarts nothing: it holds the harness to the same
 * standard, so that a failure of the others is the restart's.
 *
 * Run as root: node --import tsx --test test/e2e/lab-restart.test.ts
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { labDown, labUp, type LabStatus } from '../../src/lab/index.js';
import { buildUpgradeProbe, formatRestart, gapOf, runRestart, type RestartAction, type RestartResult } from '../../src/lab/restart.js';

const stateDir = `/run/xlb-test-restart-${randomBytes(3).toString('hex')}`;
const K = 20;
let lab: LabStatus;

before(async () => {
  buildUpgradeProbe();
  lab = await labUp({ nodes: 2, podsPerNode: 2, stateDir, announce: 'bgp' });
});

after(async () => {
  await labDown(stateDir);
});

/** Print the run, then hold it to the target. */
function assertHitless(r: RestartResult): void {
  console.log(`# ${formatRestart(r)}`);
  const held = r.connections.map((c) => `${c.localPort} ${c.pod} ${c.path} via ${c.entryNode}`);
  assert.ok(r.connections.some((c) => c.path === 'local') && r.connections.some((c) => c.path === 'snat'), `both local and SNAT connections held: ${held.join('; ')}`);
  assert.deepEqual(
    r.broken.map((c) => `${c.localPort} ${c.pod} ${c.path} via ${c.entryNode}: ${c.code}`),
    [],
    'every held connection answered by the same pod on the same connection',
  );
  assert.equal(r.kept, K);
  assert.equal(r.newFailed, 0, `new connections failed: ${JSON.stringify(r.newFailedByCode)}`);
  assert.ok(r.newTotal > 0, 'new connections were opened throughout');
}

describe('restarting node1’s agent under traffic keeps every established connection', () => {
  test('the gap counts runs of slow or failed new connections from their start', () => {
    // Starts every 20 ms: two slow ones in a row, then good; one failure at the end.
    const conns = [
      { start: 0, ms: 5, code: '' },
      { start: 20, ms: 400, code: '' },
      { start: 40, ms: 380, code: '' },
      { start: 60, ms: 5, code: '' },
      { start: 80, ms: 1000, code: 'timeout' },
    ];
    assert.equal(gapOf(conns, 100), 40 + 1000);
    assert.equal(gapOf(conns.slice(0, 1), 100), 0);
  });

  test(`control: no restart, ${K} of ${K} held connections kept and no new connection fails`, async () => {
    const r = await runRestart(lab, 'none', { connections: K });
    assertHitless(r);
    assert.ok(r.connections.some((c) => c.entryNode === 'node1') && r.connections.some((c) => c.entryNode === 'node2'), 'connections enter through both nodes');
  });

  const cases: Array<[RestartAction, string]> = [
    ['sigterm', 'SIGTERM and the same command started again'],
    ['sigkill', 'kill -9 and the same command started again'],
    ['upgrade', 'SIGTERM and a start on a build with a changed program'],
  ];
  for (const [action, what] of cases) {
    test(`${what}: ${K} of ${K} kept, no new connection fails`, async () => {
      const r = await runRestart(lab, action, { connections: K });
      if (action === 'upgrade') {
        assert.ok(r.xdp.before && r.xdp.after, 'an XDP program before and after');
        assert.notEqual(r.xdp.after!.tag, r.xdp.before!.tag, 'the agent runs a program with other instructions after the upgrade');
      }
      assertHitless(r);
    });
  }
});

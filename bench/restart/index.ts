/**
 * bench/restart: what restarting a node's agent does to traffic, in the lab
 * (BGP, two nodes, two pods each), measured by src/lab/restart.ts: 20
 * keep-alive HTTP connections held through the web VIP (each asking every
 * 100 ms) and a new connection every 20 ms while node1's agent is restarted:
 *
 *   - sigterm: SIGTERM, then the same command again;
 *   - sigkill: kill -9, then the same command again;
 *   - upgrade: SIGTERM, then a start on a build whose XDP program has other
 *     instructions (xdp/build/upgrade-probe, `make -C xdp upgrade-probe`;
 *     the next upgrade goes back to the default build);
 *   - none: no restart (the control: what the harness itself measures).
 *
 * Per action, one run each round (3 rounds, quick 1), the actions in an
 * order that rotates from round to round: held connections kept and broken,
 * new connections failed, the gap (time during which new connections took
 * longer than 100 ms or failed, from their start), the longest new
 * connection, the slowest answer on a kept connection, and the times to the
 * agent's readiness and to the router's routes. Targets (the issue's): every restart keeps 20 of 20 held
 * connections (local and SNAT) and fails no new connection; the gap is
 * printed.
 *
 *   npm run bench -- --only restart [--quick]     (root)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { labDown, labUp, type LabStatus } from '../../src/lab/index.js';
import { buildUpgradeProbe, formatRestart, runRestart, type RestartAction, type RestartResult } from '../../src/lab/restart.js';
import { BenchResult } from '../lib/results.js';
import { groupedBars } from '../lib/chart.js';
import { printTable, sig } from '../lib/table.js';
import { requireRoot, requireTool } from '../lib/tools.js';

/** Held connections, the issue's 20. */
const K = 20;
const ACTIONS: readonly RestartAction[] = ['none', 'sigterm', 'sigkill', 'upgrade'];
const ACTION_TEXT: Record<RestartAction, string> = {
  none: 'no restart (control)',
  sigterm: 'SIGTERM and start',
  sigkill: 'kill -9 and start',
  upgrade: 'upgrade (changed program)',
};
/** The chart's x labels (the panels are narrow). */
const ACTION_SHORT: Record<RestartAction, string> = { none: 'none (control)', sigterm: 'SIGTERM', sigkill: 'kill -9', upgrade: 'upgrade' };
const ISSUE = 'issue (hitless restarts): 20 of 20 established connections kept, 0 new connections failed';

/** Run the restart benchmark and write bench/results/restart.{json,svg}. */
export async function run(opts: { quick: boolean }): Promise<BenchResult> {
  requireRoot('bench/restart');
  for (const [t, pkg] of [
    ['bird', 'bird2'],
    ['gobgpd', 'gobgpd'],
    ['bpftool', 'bpftool'],
    ['make', 'make'],
    ['clang', 'clang'],
    ['ethtool', 'ethtool'],
    ['nsenter', 'util-linux'],
  ])
    requireTool('bench/restart', t, pkg);
  const rounds = opts.quick ? 1 : 3;
  const res = new BenchResult('restart', 'Agent restarts under traffic: established connections kept, new connections failed, the gap', opts.quick);
  res.method.push(
    `Lab: client, router running BIRD (ECMP over BGP routes from the agents), 2 nodes × 2 pods (Node HTTP servers), the web VIP 192.0.2.10:80 over the 4 pods (src/lab/restart.ts).`,
    `Each run: ${K} keep-alive HTTP connections from the client (raw sockets, requests written by hand, so nothing reconnects), each asking every 100 ms throughout, a new connection (one request, Connection: close) started every 20 ms open loop; after 50 new connections node1's agent is restarted; once it is ready and the router holds every VIP from both nodes again, 150 more new connections; then one more request on each held connection. A held connection is kept when every answer on it came from the same pod, which saw the same client address; its first error, or no answer within 5 s, breaks it.`,
    `Actions: sigterm (SIGTERM, the same command again), sigkill (kill -9, the same command again), upgrade (SIGTERM, then datapath.objectDir moved to the other build: xdp/build/upgrade-probe, built with -DXLB_UPGRADE_PROBE, whose XDP program has other instructions, or back to the default build), none (control).`,
    `${rounds} round(s), each running every action once in an order that rotates by round; every run opens its own connections.`,
    'Gap: new connections by start; each run of consecutive ones that failed or took longer than 100 ms counts from its first start to the start of the next good one (to the end of its last when none follows). Longest: the longest new connection, connect() to the answer or to the failure (timeout 5 s).',
  );
  res.note('The held connections carry requests through the restart, as a client\'s do: idle ones survive today\'s restarts (a flow placed afresh afterwards gets the same Maglev pick and the same first SNAT port), so only packets during the restart show the break. Which node a connection enters through is the router\'s ECMP hash; the pod\'s view of the client address tells local (the client\'s own) from SNAT (the entry node\'s).');
  if (opts.quick) res.note('Quick mode: one run per action.');

  const byAction = new Map<RestartAction, RestartResult[]>(ACTIONS.map((a) => [a, []]));
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-bench-restart-'));
  let lab: LabStatus | undefined;
  try {
    buildUpgradeProbe();
    lab = await labUp({ nodes: 2, podsPerNode: 2, stateDir: path.join(stateDir, 'lab'), announce: 'bgp' });
    for (let round = 0; round < rounds; round++) {
      const order = ACTIONS.map((_, i) => ACTIONS[(i + round) % ACTIONS.length]);
      for (const action of order) {
        const r = await runRestart(lab, action, { connections: K });
        byAction.get(action)!.push(r);
        const line = formatRestart(r);
        console.log(`restart: round ${round + 1}: ${line}`);
        res.note(`round ${round + 1}: ${line}`);
      }
    }
  } finally {
    if (lab) await labDown(lab.stateDir);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }

  for (const action of ACTIONS) {
    const rs = byAction.get(action)!;
    const restart = action !== 'none';
    const what = ACTION_TEXT[action];
    const params = (metric: string, headline = false) => ({ action, metric, connections: K, headline });
    res.add({
      id: `${action}.kept`,
      label: `${what}: established connections kept, of ${K}`,
      unit: 'connections',
      runs: rs.map((r) => r.kept),
      params: params('kept', restart),
      ...(restart ? { target: { min: K, source: ISSUE } } : {}),
    });
    res.add({
      id: `${action}.broken`,
      label: `${what}: established connections broken (most in any run)`,
      unit: 'connections',
      runs: rs.map((r) => r.total - r.kept),
      params: params('broken'),
      ...(restart ? { target: { stat: 'p99' as const, max: 0, source: ISSUE } } : {}),
    });
    res.add({
      id: `${action}.new-failed`,
      label: `${what}: new connections failed (most in any run)`,
      unit: 'connections',
      runs: rs.map((r) => r.newFailed),
      params: params('new-failed', restart),
      ...(restart ? { target: { stat: 'p99' as const, max: 0, source: ISSUE } } : {}),
    });
    res.add({ id: `${action}.new-total`, label: `${what}: new connections opened`, unit: 'connections', runs: rs.map((r) => r.newTotal), params: params('new-total') });
    res.add({ id: `${action}.gap`, label: `${what}: gap, new connections slower than 100 ms or failed`, unit: 'ms', runs: rs.map((r) => r.gapMs), params: params('gap', restart) });
    res.add({ id: `${action}.longest-new`, label: `${what}: longest new connection`, unit: 'ms', runs: rs.map((r) => r.longestNewMs), params: params('longest-new') });
    res.add({ id: `${action}.kept-slowest`, label: `${what}: slowest answer on a kept connection (a stall, not a break)`, unit: 'ms', runs: rs.map((r) => r.keptSlowestMs), params: params('kept-slowest') });
    if (restart) {
      res.add({ id: `${action}.ready`, label: `${what}: from the stop to the new agent ready`, unit: 'ms', runs: rs.map((r) => r.timeline.readyMs ?? NaN), params: params('ready') });
      res.add({ id: `${action}.routes`, label: `${what}: from the stop to every VIP back in the router from both nodes`, unit: 'ms', runs: rs.map((r) => r.timeline.routesMs ?? NaN), params: params('routes') });
    }
  }

  const rows = ACTIONS.map((action) => {
    const rs = byAction.get(action)!;
    const g = (m: string) => res.get(`${action}.${m}`);
    const codes = new Map<string, number>();
    for (const r of rs) for (const [c, k] of Object.entries(r.brokenByCode)) codes.set(c, (codes.get(c) ?? 0) + k);
    const local = rs.reduce((s, r) => s + r.broken.filter((c) => c.path === 'local').length, 0);
    const snat = rs.reduce((s, r) => s + r.broken.filter((c) => c.path === 'snat').length, 0);
    return [
      ACTION_TEXT[action],
      rs.map((r) => r.kept).join(' / '),
      codes.size ? `${[...codes].map(([c, k]) => `${c} ${k}`).join(', ')} (${local} local, ${snat} SNAT)` : '-',
      rs.map((r) => r.newFailed).join(' / '),
      rs.map((r) => Math.round(r.gapMs)).join(' / '),
      sig(g('longest-new').median),
      sig(g('kept-slowest').median),
      action === 'none' ? '-' : `${sig(g('ready').median)} / ${sig(g('routes').median)}`,
    ];
  });
  printTable(
    `Restarts of node1's agent under traffic (each run; target: ${K} kept, 0 new failed)`,
    ['action', `kept of ${K}`, 'broken, all runs', 'new failed', 'gap ms', 'longest new ms (median)', 'slowest kept answer ms (median)', 'ready / routes ms (median)'],
    rows,
  );

  const bars: Array<{ panel: string; x: string; series: string; value: number }> = [];
  for (const action of ACTIONS) {
    byAction.get(action)!.forEach((r, i) => {
      const series = `run ${i + 1}`;
      bars.push({ panel: `established connections kept (of ${K})`, x: ACTION_SHORT[action], series, value: r.kept });
      bars.push({ panel: 'new connections failed', x: ACTION_SHORT[action], series, value: r.newFailed });
      bars.push({ panel: 'gap (ms): new connections > 100 ms or failed', x: ACTION_SHORT[action], series, value: Math.round(r.gapMs) });
    });
  }
  res.write(
    await groupedBars(bars, {
      title: `Restarting node1's agent under traffic: ${K} keep-alive connections, a new connection every 20 ms`,
      yTitle: '',
      rules: [
        { value: K, label: `target ${K}`, panel: `established connections kept (of ${K})` },
        { value: 0, label: 'target 0', panel: 'new connections failed' },
      ],
    }),
  );
  return res;
}

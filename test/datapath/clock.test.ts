/**
 * The lifetime clock against the kernel (xdp/xlb_clock.bpf.o under
 * BPF_PROG_TEST_RUN): HZ measured from jiffies agrees with the kernel's
 * configuration, and the probe's ticks are the ones the datapath stamps.
 *
 * Run as root: node --import tsx --test test/datapath/clock.test.ts
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hzFromConfigFiles, measureHz, kernelHz } from '../../src/datapath/clock.js';
import { Datapath, OBJ, XDP, buildObjects, type FlowKey } from './harness.js';
import { tcpPacket, PROTO } from '../helpers/packet.js';

let dp: Datapath;
before(() => {
  buildObjects();
  dp = Datapath.load({ nodeAddr: '198.18.0.11' });
});
after(() => dp?.close());

test('HZ measured from jiffies over 200 ms is the configured CONFIG_HZ', (t) => {
  const configured = hzFromConfigFiles();
  if (!configured) return t.skip('no /boot/config-<release> or /proc/config.gz to compare with');
  assert.equal(measureHz(OBJ.clock, 200), configured);
  assert.equal(kernelHz(OBJ.clock), configured);
});

test("a new flow's conntrack entry is stamped with the probe's now, in ticks of about a second", () => {
  dp.setBackend(1, { addr: '198.19.1.1', port: 8080, proto: PROTO.TCP, flags: 1 });
  dp.addFrontend('203.0.113.10', 80, PROTO.TCP, 1);
  dp.setTable(1, [1, 1, 1]);
  const flow: FlowKey = { saddr: '192.0.2.7', daddr: '203.0.113.10', sport: 41000, dport: 80, proto: PROTO.TCP };
  const before = dp.nowTicks();
  assert.equal(dp.ingress.testRun(tcpPacket({ ip: { src: flow.saddr, dst: flow.daddr }, tcp: { sport: flow.sport, dport: flow.dport } })).retval, XDP.PASS);
  const seen = dp.conntrack(flow)!.seen;
  const after = dp.nowTicks();
  assert.ok(seen >= before && seen <= after, `seen ${seen} within [${before}, ${after}]`);
});

test('a tick lasts about a second: 1.5 s of wall time are one or two ticks', async () => {
  const t0 = dp.nowTicks();
  await new Promise((r) => setTimeout(r, 1500));
  const elapsed = dp.nowTicks() - t0;
  assert.ok(elapsed >= 1 && elapsed <= 2, `${elapsed} ticks in 1.5 s`);
});

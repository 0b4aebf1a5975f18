/**
 * The lifetime clock's arithmetic (src/datapath/clock.ts): HZ from a kernel
 * configuration, the tick shift, seconds to ticks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hzFromKconfig, nearestHz, tickShift, secondsToTicks, clockRodata, DEFAULT_CONNTRACK_LIFETIMES } from '../../src/datapath/clock.js';

test('CONFIG_HZ is read from a kernel configuration, not CONFIG_HZ_250 or a comment', () => {
  assert.equal(hzFromKconfig('# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\nCONFIG_SCHED_HRTICK=y\n'), 250);
  assert.equal(hzFromKconfig('CONFIG_HZ_1000=y\nCONFIG_HZ=1000'), 1000);
  assert.equal(hzFromKconfig('CONFIG_HZ_PERIODIC=y\n'), undefined);
});

test('a measured rate goes to the nearest HZ Linux can be built with', () => {
  assert.equal(nearestHz(97), 100);
  assert.equal(nearestHz(262), 250);
  assert.equal(nearestHz(288), 300);
  assert.equal(nearestHz(1043), 1000);
});

test('a tick is about one second at every HZ', () => {
  for (const hz of [100, 250, 300, 1000]) {
    const seconds = 2 ** tickShift(hz) / hz;
    assert.ok(seconds > 0.7 && seconds < 1.5, `HZ ${hz}: a tick is ${seconds} s`);
  }
  assert.equal(tickShift(250), 8);
  assert.equal(tickShift(1000), 10);
});

test('lifetimes become ticks, rounded up so that no flow is cut short', () => {
  assert.equal(secondsToTicks(10, 250), 10); // 10 s = 2500 jiffies = 9.77 ticks of 256
  assert.equal(secondsToTicks(10, 1000), 10); // 10000 / 1024 = 9.77
  assert.equal(secondsToTicks(21600, 250), 21094);
  assert.equal(secondsToTicks(1, 100), 1); // 100 / 128
  const r = clockRodata(250, { ...DEFAULT_CONNTRACK_LIFETIMES, tcpFin: 30 });
  assert.deepEqual(r, { xlb_tick_shift: 8, xlb_ct_timeout_tcp: 21094, xlb_ct_timeout_tcp_syn: 59, xlb_ct_timeout_tcp_fin: 30, xlb_ct_timeout_any: 59, xlb_snat_closed_reuse: 2 });
  assert.deepEqual(clockRodata(1000), { xlb_tick_shift: 10 });
});

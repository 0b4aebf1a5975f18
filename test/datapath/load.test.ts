/**
 * Loading under signals: the verifier gives up with EAGAIN when a signal is
 * pending for the loading thread, so a sampling profiler (SIGPROF every
 * 100 µs here, through node:inspector, as `node --cpu-prof` does at 1 ms)
 * made every load of xlb_xdp fail. BpfObject.load blocks signals meanwhile.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Session } from 'node:inspector/promises';
import { BpfObject, ensureBpffs, PIN_BASE, removePins } from '../../src/datapath/bpf.js';
import { OBJ, buildObjects } from './harness.js';

describe('loading', () => {
  it('xlb_xdp loads while a sampling profiler interrupts the thread every 100 µs, and the profiler still gets its samples', async () => {
    buildObjects();
    ensureBpffs();
    const pinRoot = path.join(PIN_BASE, `load-${randomBytes(4).toString('hex')}`);
    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
    await session.post('Profiler.start');
    const obj = BpfObject.open(OBJ.xdp, { pinRoot });
    try {
      const t0 = performance.now();
      obj.load();
      const ms = performance.now() - t0;
      assert.ok(obj.program('xlb_xdp_ingress'));
      // Samples after the load: the profiler was running and is not broken by the mask.
      const until = performance.now() + 50;
      while (performance.now() < until);
      const { profile } = await session.post('Profiler.stop');
      assert.ok(profile.samples && profile.samples.length > 100, `${profile.samples?.length} samples over a ${Math.round(ms)} ms load and 50 ms of work`);
    } finally {
      obj.close();
      removePins(pinRoot);
      session.disconnect();
    }
  });
});

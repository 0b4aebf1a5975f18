/**
 * The Kubernetes source's Coalescer (src/sources/kubernetes/coalesce.ts):
 * bursts of events make one call, after a quiet time or, with a quiet time
 * of 0, right after the turn of the event loop that brought them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Coalescer } from '../../src/sources/kubernetes/coalesce.js';
import { waitFor } from '../../src/util/wait.js';

const turn = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('Coalescer', () => {
  it('with quiet time 0, makes one call for the events of one turn, before any timer', async () => {
    const order: string[] = [];
    const c = new Coalescer(() => order.push('fire'), 0, 50);
    setTimeout(() => order.push('timer'), 0);
    for (let i = 0; i < 1000; i++) c.poke();
    assert.ok(c.pending());
    await waitFor(() => order.length === 2, 1000, 'the call and the timer', 1);
    assert.deepEqual(order, ['fire', 'timer']);
    assert.ok(!c.pending());
  });

  it('with quiet time 0, makes one call per turn that had events', async () => {
    let fired = 0;
    const c = new Coalescer(() => fired++, 0, 50);
    c.poke();
    c.poke();
    await turn();
    await turn();
    assert.equal(fired, 1);
    c.poke();
    await waitFor(() => fired === 2, 1000, 'the second call', 1);
    await sleep(5);
    assert.equal(fired, 2);
  });

  it('with a quiet time, waits for it after the last event, and never longer than the bound after the first', async () => {
    const calls: number[] = [];
    const start = performance.now();
    const c = new Coalescer(() => calls.push(performance.now() - start), 20, 60);
    // A steady stream, an event every 5 ms for 150 ms: the quiet time never
    // comes, the bound makes a call at least every 60 ms or so.
    const stream = setInterval(() => c.poke(), 5);
    await sleep(150);
    clearInterval(stream);
    await waitFor(() => !c.pending(), 1000, 'the last call', 1);
    assert.ok(calls.length >= 2, `calls at ${calls.map((t) => t.toFixed(0)).join(', ')} ms`);
    // After the stream stops, the last call comes once it has been quiet.
    const last = calls.length;
    c.poke();
    await sleep(5);
    assert.equal(calls.length, last, 'called before the quiet time had passed');
    await waitFor(() => calls.length === last + 1, 1000, 'the call after the quiet time', 1);
  });

  it('cancel drops a pending call; stop refuses further events', async () => {
    let fired = 0;
    for (const quiet of [0, 5]) {
      const c = new Coalescer(() => fired++, quiet, 50);
      c.poke();
      c.cancel();
      assert.ok(!c.pending());
      c.poke();
      c.stop();
      c.poke();
      assert.ok(!c.pending());
    }
    await sleep(20);
    assert.equal(fired, 0);
  });

  it('rejects a quiet time above the bound or below 0', () => {
    assert.throws(() => new Coalescer(() => {}, 10, 5), /quietMs/);
    assert.throws(() => new Coalescer(() => {}, -1, 5), /quietMs/);
  });
});

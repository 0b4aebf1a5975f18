/**
 * The agent's metrics (src/metrics/metrics.ts) as Prometheus reads them:
 * the exposition passes `promtool check metrics`, and the process metrics
 * carry the names Prometheus users know.
 *
 * Run: node --import tsx --test test/unit/metrics.test.ts (needs promtool:
 * Debian's prometheus package, installed by scripts/setup.sh)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics } from '../../src/metrics/metrics.js';
import { checkMetrics } from '../helpers/promtool.js';

test('a bare registry passes promtool check metrics; process metrics have their standard names', async () => {
  const text = await createMetrics({ services: () => [], maps: () => undefined, issueCount: () => 0 }).registry.metrics();
  const r = checkMetrics(text);
  assert.equal(r.status, 0, `promtool check metrics:\n${r.output}`);
  assert.match(text, /^process_cpu_seconds_total /m, 'process_ names as every client library has them');
  assert.match(text, /^process_resident_memory_bytes /m, 'process_resident_memory_bytes');
  assert.match(text, /^# TYPE nodejs_eventloop_lag_seconds gauge$/m, 'nodejs_ names as prom-client has them');
  assert.doesNotMatch(text, /xlb_process_/, 'no prefixed (and doubled) process_ names');
  assert.doesNotMatch(text, /^# TYPE \S+_total gauge$/m, 'no gauge named _total');
});

/**
 * The agent's metrics (src/metrics/metrics.ts) as Prometheus reads them:
 * the exposition passes `promtool check metrics` with every optional part
 * present (datapath, conntrack, BGP, layer 2, Kubernetes informers, LB
 * IPAM), the process metrics carry the names Prometheus users know, and
 * each new metric says what its source says: flows and drops per service
 * from flow events (a removed service's series go, an event without a
 * service is left to xlb_drops_total), BGP session states,
 * L2 ownership per VIP, IPAM pool usage from the leader only, informer
 * relists, conntrack and SNAT counts shared between scrapes, build info.
 *
 * Run: node --import tsx --test test/unit/metrics.test.ts (needs promtool:
 * Debian's prometheus package, installed by scripts/setup.sh)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createMetrics, buildInfo, CONNTRACK_COUNT_MAX_AGE_MS } from '../../src/metrics/metrics.js';
import { checkMetrics } from '../helpers/promtool.js';
import { fakeMetricsSource, informer } from '../helpers/metrics-source.js';

/** The value of the sample `series` (name and labels exactly as printed), or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const flow = (service: string | undefined, verdict: 'FORWARDED' | 'DROPPED', dropReason?: string) => ({
  verdict,
  dropReason,
  destination: { ip: '192.0.2.10', port: 80, ...(service ? { service } : {}) },
});

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

test('with every optional part present and flows counted, promtool check metrics passes', async () => {
  const { source } = fakeMetricsSource();
  const m = createMetrics(source);
  m.observeSync(0.002, true);
  m.observeFlow(flow('default/web:http', 'FORWARDED'));
  m.observeFlow(flow('default/dns:', 'DROPPED', 'no_backend'));
  m.observeFlow(flow(undefined, 'DROPPED', 'truncated'));
  const text = await m.registry.metrics();
  const r = checkMetrics(text);
  assert.equal(r.status, 0, `promtool check metrics:\n${r.output}`);
  for (const name of ['xlb_build_info', 'xlb_agent_ready', 'xlb_flows_total', 'xlb_flow_drops_total', 'xlb_conntrack_entries', 'xlb_snat_ports_in_use', 'xlb_bgp_session_state', 'xlb_l2_vip_owned', 'xlb_kubernetes_informer_relists_total', 'xlb_ipam_pool_addresses']) {
    assert.match(text, new RegExp(`^${name}(\\{| )`, 'm'), `${name} has a sample`);
  }
});

test('flows and drops are counted per service port from flow events; a service no longer programmed loses its series', async () => {
  const { source, figures } = fakeMetricsSource();
  const m = createMetrics(source);
  for (let i = 0; i < 3; i++) m.observeFlow(flow('default/web:http', 'FORWARDED'));
  m.observeFlow({ ...flow('default/web:http', 'FORWARDED'), closed: true }); // a close: not a new flow
  m.observeFlow(flow('default/web:http', 'DROPPED', 'snat_exhausted'));
  m.observeFlow(flow('default/dns:', 'DROPPED', 'no_backend'));
  m.observeFlow(flow('default/dns:', 'DROPPED', 'no_backend'));
  m.observeFlow(flow(undefined, 'DROPPED', 'bad_checksum'));
  let text = await m.registry.metrics();
  assert.equal(sample(text, 'xlb_flows_total{namespace="default",name="web",port="http",verdict="FORWARDED"}'), 3);
  assert.equal(sample(text, 'xlb_flows_total{namespace="default",name="web",port="http",verdict="DROPPED"}'), 1);
  assert.equal(sample(text, 'xlb_flow_drops_total{namespace="default",name="web",port="http",reason="snat_exhausted"}'), 1);
  // An unnamed port is labelled with its number, as xlb_service_packets_total labels it.
  assert.equal(sample(text, 'xlb_flow_drops_total{namespace="default",name="dns",port="53",reason="no_backend"}'), 2);
  assert.equal(sample(text, 'xlb_service_packets_total{namespace="default",name="dns",port="53"}'), 20, 'the same labels as the packet counter');
  assert.doesNotMatch(text, /name=""/, 'a drop before any service was known is not counted per service (xlb_drops_total has it)');

  figures.services = figures.services.filter((s) => s.name !== 'dns');
  text = await m.registry.metrics();
  assert.doesNotMatch(text, /name="dns"/, 'the removed service\'s series are gone');
  assert.equal(sample(text, 'xlb_flows_total{namespace="default",name="web",port="http",verdict="FORWARDED"}'), 3, 'the others keep counting');
  m.observeFlow(flow('default/web:http', 'FORWARDED'));
  assert.equal(sample(await m.registry.metrics(), 'xlb_flows_total{namespace="default",name="web",port="http",verdict="FORWARDED"}'), 4);
});

test('BGP: one session state of seven is 1 for each peer; peer_up agrees', async () => {
  const { source, figures } = fakeMetricsSource();
  const m = createMetrics(source);
  let text = await m.registry.metrics();
  const states = (peer: string) => text.split('\n').filter((l) => l.startsWith(`xlb_bgp_session_state{peer="${peer}"`));
  assert.equal(states('198.18.0.2').length, 7, 'every state listed');
  assert.deepEqual(states('198.18.0.2').filter((l) => l.endsWith(' 1')), ['xlb_bgp_session_state{peer="198.18.0.2",state="active"} 1']);
  assert.equal(sample(text, 'xlb_bgp_peer_up{peer="198.18.0.2"}'), 0);
  figures.bgpPeers[1].state = 'established';
  text = await m.registry.metrics();
  assert.equal(sample(text, 'xlb_bgp_session_state{peer="198.18.0.2",state="established"}'), 1);
  assert.equal(sample(text, 'xlb_bgp_session_state{peer="198.18.0.2",state="active"}'), 0);
  assert.equal(sample(text, 'xlb_bgp_peer_up{peer="198.18.0.2"}'), 1);
});

test('L2: each VIP this node would announce is 1 where this node owns it, 0 where it does not', async () => {
  const { source, figures } = fakeMetricsSource();
  const m = createMetrics(source);
  let text = await m.registry.metrics();
  assert.equal(sample(text, 'xlb_l2_vip_owned{vip="192.0.2.10",service="default/web"}'), 1);
  assert.equal(sample(text, 'xlb_l2_vip_owned{vip="192.0.2.11",service="default/dns"}'), 0);
  figures.l2Vips = [{ vip: '192.0.2.11', service: 'default/dns', local: true }];
  text = await m.registry.metrics();
  assert.equal(sample(text, 'xlb_l2_vip_owned{vip="192.0.2.10",service="default/web"}'), undefined, 'a VIP no longer wanted has no series');
  assert.equal(sample(text, 'xlb_l2_vip_owned{vip="192.0.2.11",service="default/dns"}'), 1);
  assert.equal(sample(text, 'xlb_l2_owned_vips'), 1);
});

test('IPAM: pool usage and unassigned services come from the leader only', async () => {
  const { source, figures } = fakeMetricsSource();
  const m = createMetrics(source);
  let text = await m.registry.metrics();
  assert.equal(sample(text, 'xlb_ipam_leader'), 1);
  assert.equal(sample(text, 'xlb_ipam_pool_addresses{pool="default"}'), 254);
  assert.equal(sample(text, 'xlb_ipam_pool_addresses_allocated{pool="default"}'), 12);
  assert.equal(sample(text, 'xlb_ipam_services_unassigned'), 1);
  figures.ipamLeader = false;
  text = await m.registry.metrics();
  assert.equal(sample(text, 'xlb_ipam_leader'), 0);
  assert.equal(sample(text, 'xlb_ipam_pool_addresses{pool="default"}'), undefined, 'a follower\'s allocator is stale: no series');
  assert.equal(sample(text, 'xlb_ipam_services_unassigned'), 0, '0 on a follower, so a sum over agents is the leader\'s figure');
});

test('informers: relists are the lists after the first, per resource', async () => {
  const { source, figures } = fakeMetricsSource();
  const m = createMetrics(source);
  let text = await m.registry.metrics();
  assert.equal(sample(text, 'xlb_kubernetes_informer_relists_total{resource="Service"}'), 0, 'the first list is no relist');
  assert.equal(sample(text, 'xlb_kubernetes_informer_relists_total{resource="EndpointSlice"}'), 2);
  assert.equal(sample(text, 'xlb_kubernetes_informer_restarts_total{resource="EndpointSlice"}'), 2);
  figures.informers = [informer('Service', 0), informer('EndpointSlice', 4), informer('Node', 1)];
  text = await m.registry.metrics();
  assert.equal(sample(text, 'xlb_kubernetes_informer_synced{resource="Service"}'), 0);
  assert.equal(sample(text, 'xlb_kubernetes_informer_relists_total{resource="Service"}'), 0, 'never negative before the first list');
  assert.equal(sample(text, 'xlb_kubernetes_informer_relists_total{resource="EndpointSlice"}'), 3);
});

test('conntrack and SNAT: one count serves the gauges of a scrape and scrapes within the max age', async () => {
  const { source, figures } = fakeMetricsSource();
  const m = createMetrics(source);
  let text = await m.registry.metrics();
  assert.equal(figures.conntrackCounts, 1, 'three gauges, one walk of the table');
  assert.equal(sample(text, 'xlb_conntrack_entries'), 1200);
  assert.equal(sample(text, 'xlb_conntrack_max_entries'), 131072);
  assert.equal(sample(text, 'xlb_snat_ports_in_use'), 300);
  assert.equal(sample(text, 'xlb_snat_ports_in_use_busiest_backend'), 150);
  assert.equal(sample(text, 'xlb_snat_ports_per_backend'), 4536);
  figures.conntrack.entries = 1300;
  text = await m.registry.metrics();
  assert.equal(figures.conntrackCounts, 1, `a scrape within ${CONNTRACK_COUNT_MAX_AGE_MS} ms reuses the count`);
  assert.equal(sample(text, 'xlb_conntrack_entries'), 1200);
});

test('a conntrack count that fails leaves the last figures and is tried again at the next scrape', async (t) => {
  const { source } = fakeMetricsSource();
  let fail = false;
  let calls = 0;
  const counts = source.conntrack!;
  source.conntrack = async () => {
    calls++;
    if (fail) throw new Error('bpf_map_lookup_batch xlb_conntrack: EPERM');
    return counts();
  };
  // The count's clock, moved past the max age instead of waiting it out.
  const realNow = performance.now.bind(performance);
  let offset = 0;
  t.mock.method(performance, 'now', () => realNow() + offset);
  const m = createMetrics(source);
  assert.equal(sample(await m.registry.metrics(), 'xlb_conntrack_entries'), 1200);
  fail = true;
  offset += CONNTRACK_COUNT_MAX_AGE_MS + 1;
  const text = await m.registry.metrics();
  assert.equal(calls, 2, 'counted again once the count was older than the max age');
  assert.equal(sample(text, 'xlb_conntrack_entries'), 1200, 'the last good figure stays');
  fail = false;
  await m.registry.metrics();
  assert.equal(calls, 3, 'a failed count is not kept: the next scrape counts again');
});

test('build info names the package version and the Node.js version; the revision comes from the image build', async () => {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const text = await createMetrics(fakeMetricsSource().source).registry.metrics();
  assert.equal(sample(text, `xlb_build_info{version="${pkg.version}",revision="unknown",nodejs_version="${process.versions.node}"}`), 1);
  assert.equal(buildInfo({ XLB_REVISION: '0123abc' }).revision, '0123abc');
});

test('readiness is a gauge that follows the agent', async () => {
  const { source, figures } = fakeMetricsSource();
  const m = createMetrics(source);
  assert.equal(sample(await m.registry.metrics(), 'xlb_agent_ready'), 1);
  figures.ready = false;
  assert.equal(sample(await m.registry.metrics(), 'xlb_agent_ready'), 0);
});

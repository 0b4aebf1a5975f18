/**
 * deploy/monitoring/: the Service and ServiceMonitor reach the agents'
 * metrics listeners as the DaemonSet and ConfigMap set them up; the
 * PrometheusRule passes `promtool check rules`, and its alerts fire on the
 * series that should raise them and not on others (`promtool test rules`,
 * test/fixtures/monitoring/alerts.promtool.yaml); every PromQL expression of
 * the rules and of the Grafana dashboard names only metrics xlb exports,
 * and only labels they carry (checked with the Prometheus project's PromQL
 * grammar against a registry with every optional part present).
 *
 * Run: node --import tsx --test test/unit/deploy-monitoring.test.ts (needs
 * promtool: Debian's prometheus package, installed by scripts/setup.sh)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse, stringify } from 'yaml';
import { Service } from 'kubernetes-models/v1/Service';
import { createMetrics } from '../../src/metrics/metrics.js';
import { exportedLabels, fakeMetricsSource } from '../helpers/metrics-source.js';
import { checkPromql, metricNames } from '../helpers/promql.js';
import { checkRules, promtool } from '../helpers/promtool.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const monitoringDir = path.join(root, 'deploy/monitoring');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

function yamlObjects(dir: string): Obj[] {
  const out: Obj[] = [];
  for (const f of fs.readdirSync(dir).filter((x) => /\.ya?ml$/.test(x)).sort()) {
    for (const doc of parseAllDocuments(fs.readFileSync(path.join(dir, f), 'utf8'))) {
      assert.equal(doc.errors.length, 0, `${f}: ${doc.errors[0]?.message}`);
      const obj = doc.toJS() as Obj | null;
      if (obj) out.push(obj);
    }
  }
  return out;
}
const monitoring = yamlObjects(monitoringDir);
const base = yamlObjects(path.join(root, 'deploy'));
const one = (objs: Obj[], kind: string) => {
  const all = objs.filter((o) => o.kind === kind);
  assert.equal(all.length, 1, `exactly one ${kind}`);
  return all[0];
};
const dashboard = JSON.parse(fs.readFileSync(path.join(monitoringDir, 'dashboards/xlb.json'), 'utf8')) as Obj;
const rule = one(monitoring, 'PrometheusRule');
const alerts = (rule.spec.groups as Obj[]).flatMap((g) => g.rules as Obj[]);

/** What every series of an agent's target carries besides its own labels: Prometheus' job and instance, the ServiceMonitor's node and (honorLabels) namespace, pod, service, endpoint, container. */
const TARGET_LABELS = new Set(['job', 'instance', 'node', 'namespace', 'pod', 'service', 'endpoint', 'container']);
/** Series Prometheus makes for each target. */
const PROMETHEUS_SERIES = new Map([['up', new Set<string>()]]);

/** Label names by sample name, of a registry with BGP, L2, informers, IPAM, conntrack and flows. */
function xlbLabels(): Map<string, Set<string>> {
  return exportedLabels(createMetrics(fakeMetricsSource().source).registry);
}

/** Every PromQL expression of the dashboard: panel targets, and the selectors of label_values() variables. */
function dashboardExprs(): Array<{ where: string; expr: string; legend?: string }> {
  const out: Array<{ where: string; expr: string; legend?: string }> = [];
  const walk = (panels: Obj[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr, legend: t.legendFormat });
      walk(p.panels ?? []);
    }
  };
  walk(dashboard.panels);
  for (const v of dashboard.templating.list as Obj[]) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : v.query.query;
    const m = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q);
    assert.ok(m, `variable ${v.name}: a label_values(selector, label) query (got ${q})`);
    // label_values(sel, l) asks for label l of the series of sel: check it as `sum by (l) (sel)`.
    out.push({ where: `variable ${v.name}`, expr: `sum by (${m[2]}) (${m[1]})` });
  }
  return out;
}

describe('deploy/monitoring: scraping the agents', () => {
  it('the Service selects the DaemonSet\'s pods on the port the ConfigMap\'s metrics.listen opens', () => {
    const svc = one(monitoring, 'Service');
    assert.doesNotThrow(() => new Service(svc as never).validate(), 'valid against the Kubernetes API schema');
    const ds = one(base, 'DaemonSet');
    assert.equal(svc.metadata.namespace, ds.metadata.namespace);
    for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(ds.spec.template.metadata.labels[k], v, `selector ${k}=${v} matches the agents' pods`);
    assert.equal(svc.spec.clusterIP, 'None', 'headless: scraping does not depend on xlb serving a ClusterIP');
    const cfg = parse(one(base, 'ConfigMap').data['config.yaml']) as Obj;
    const listenPort = Number(String(cfg.metrics.listen).split(':').pop());
    const containerPort = (ds.spec.template.spec.containers[0].ports as Obj[]).find((p) => p.name === svc.spec.ports[0].targetPort);
    assert.ok(containerPort, `the DaemonSet names a port ${svc.spec.ports[0].targetPort}`);
    assert.equal(containerPort.containerPort, listenPort, 'the container port is metrics.listen\'s');
    assert.equal(svc.spec.ports[0].port, listenPort);
    assert.notEqual(cfg.metrics.listen, cfg.api.listen, 'the API stays on its own listener');
  });

  it('the ServiceMonitor scrapes that Service\'s port, keeps xlb\'s own namespace label, and names job and node as the rules expect', () => {
    const sm = one(monitoring, 'ServiceMonitor');
    const svc = one(monitoring, 'Service');
    assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) assert.equal(svc.metadata.labels[k], v, `selector ${k}=${v} matches the Service`);
    assert.deepEqual(sm.spec.namespaceSelector.matchNames, [svc.metadata.namespace]);
    assert.equal(sm.spec.endpoints.length, 1);
    const ep = sm.spec.endpoints[0];
    assert.equal(ep.port, svc.spec.ports[0].name);
    assert.equal(ep.path, '/metrics');
    assert.equal(ep.honorLabels, true, 'the per-service namespace label is kept, not renamed exported_namespace');
    assert.equal(svc.metadata.labels[sm.spec.jobLabel], 'xlb', 'job="xlb", as the rules and the dashboard select');
    assert.ok(
      (ep.relabelings as Obj[]).some((r) => r.targetLabel === 'node' && r.sourceLabels.includes('__meta_kubernetes_pod_node_name')),
      'node is the pod\'s node name',
    );
  });
});

describe('deploy/monitoring: alert rules', () => {
  it('the PrometheusRule\'s groups pass promtool check rules', () => {
    assert.equal(rule.apiVersion, 'monitoring.coreos.com/v1');
    const r = checkRules(stringify({ groups: rule.spec.groups }));
    assert.equal(r.status, 0, `promtool check rules:\n${r.output}`);
  });

  it('the alerts the issue asks for are there, each with a severity, a summary and a description', () => {
    const names = alerts.map((a) => a.alert);
    for (const want of ['XlbAgentNotReady', 'XlbDropsRising', 'XlbSnatExhausted', 'XlbSnatPortsNearlyExhausted', 'XlbBgpSessionDown', 'XlbL2VipWithoutOwner']) {
      assert.ok(names.includes(want), `alert ${want} (have ${names.join(', ')})`);
    }
    for (const a of alerts) {
      assert.ok(['critical', 'warning', 'info'].includes(a.labels?.severity), `${a.alert}: severity critical, warning or info (got ${a.labels?.severity})`);
      assert.ok(a.annotations?.summary && a.annotations?.description, `${a.alert}: summary and description`);
    }
  });

  it('each alert fires on the series that should raise it and not on others (promtool test rules)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-alerts-'));
    try {
      // Annotations are compared whole by promtool: left out here, their templates are checked by check rules above.
      const groups = (structuredClone(rule.spec.groups) as Obj[]).map((g) => ({ ...g, rules: (g.rules as Obj[]).map(({ annotations: _a, ...r }) => r) }));
      fs.writeFileSync(path.join(dir, 'rules.yaml'), stringify({ groups }));
      const cases = path.join(dir, 'alerts.promtool.yaml');
      fs.copyFileSync(path.join(root, 'test/fixtures/monitoring/alerts.promtool.yaml'), cases);
      const tested = new Set(
        ((parse(fs.readFileSync(cases, 'utf8')) as Obj).tests as Obj[]).flatMap((t) => (t.alert_rule_test as Obj[]).map((a) => a.alertname as string)),
      );
      for (const a of alerts) assert.ok(tested.has(a.alert), `${a.alert} has a promtool test case`);
      const r = promtool(['test', 'rules', cases]);
      assert.equal(r.status, 0, `promtool test rules:\n${r.output}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('deploy/monitoring: every query names what xlb exports', () => {
  const labels = xlbLabels();

  it('the checker is real: a misspelt metric, a label a metric lacks, a wrong by label and bad syntax are caught', () => {
    const check = (e: string) => checkPromql(e, labels, TARGET_LABELS, PROMETHEUS_SERIES).map((p) => p.message);
    assert.deepEqual(check('rate(xlb_drop_total[5m])'), ['xlb_drop_total is not a metric xlb exports']);
    assert.deepEqual(check('xlb_bgp_peer_up{vip="192.0.2.10"}'), ['xlb_bgp_peer_up has no label vip']);
    assert.deepEqual(check('sum by (peer) (xlb_l2_vip_owned)'), ['no metric under "sum by (peer) (xlb_l2_vip_owned)" has label peer']);
    assert.ok(check('sum(rate(xlb_drops_total[5m])').length > 0, 'an unclosed parenthesis is a syntax error');
    assert.deepEqual(check('histogram_quantile(0.99, sum by (le) (rate(xlb_sync_duration_seconds_bucket[$__rate_interval])))'), [], 'histogram buckets and Grafana\'s interval');
    assert.deepEqual(check('up{job="xlb"} == 0'), [], 'up is Prometheus\'');
  });

  it('the alert rules', () => {
    const problems = alerts.flatMap((a) => checkPromql(String(a.expr), labels, TARGET_LABELS, PROMETHEUS_SERIES).map((p) => `${a.alert}: ${p.message}`));
    assert.deepEqual(problems, []);
  });

  it('the Grafana dashboard: every panel query and variable', () => {
    const exprs = dashboardExprs();
    assert.ok(exprs.length >= 30, `the dashboard's queries (${exprs.length})`);
    const problems = exprs.flatMap((e) => checkPromql(e.expr, labels, TARGET_LABELS, PROMETHEUS_SERIES).map((p) => `${e.where}: ${p.message}`));
    assert.deepEqual(problems, []);
    // A legend's {{label}} must be a label its query's series can have.
    for (const e of exprs) {
      const have = new Set(TARGET_LABELS);
      for (const m of metricNames(e.expr)) for (const l of labels.get(m) ?? []) have.add(l);
      for (const [, l] of (e.legend ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)) assert.ok(have.has(l), `${e.where}: legend label ${l}`);
    }
  });

  it('the dashboard covers the metrics the issue asks for, uses its data source variable, and has unique panel ids', () => {
    const exprs = dashboardExprs().map((e) => e.expr);
    const used = new Set(exprs.flatMap((e) => metricNames(e)));
    for (const m of ['xlb_flows_total', 'xlb_flow_drops_total', 'xlb_drops_total', 'xlb_conntrack_entries', 'xlb_snat_ports_in_use', 'xlb_ipam_pool_addresses_allocated', 'xlb_kubernetes_informer_relists_total', 'xlb_bgp_session_state', 'xlb_l2_vip_owned', 'xlb_build_info', 'xlb_agent_ready']) {
      assert.ok(used.has(m), `a panel shows ${m}`);
    }
    const panels = (dashboard.panels as Obj[]).filter((p) => p.type !== 'row');
    for (const p of panels) assert.equal(p.datasource?.uid, '${datasource}', `panel "${p.title}" uses the data source variable`);
    const ids = (dashboard.panels as Obj[]).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    assert.ok(dashboard.templating.list.some((v: Obj) => v.name === 'datasource' && v.type === 'datasource' && v.query === 'prometheus'), 'a Prometheus data source variable');
  });
});

/**
 * The Helm chart deploy/helm/xlb, rendered as Helm renders it
 * (scripts/render-chart.ts: Go's text/template with sprig, values checked
 * against values.schema.json) with its defaults and with other values:
 * every object validates against the Kubernetes schemas (and the Prometheus
 * Operator's for ServiceMonitor and PrometheusRule), the ConfigMap holds a
 * configuration the agent accepts, with every setting at the agent's default
 * unless the chart says why not, the alert rules pass promtool, bad values
 * are refused naming the value, and deploy/ is what the chart gives.
 *
 * Run: node --import tsx --test test/unit/helm-chart.test.ts (needs Go and
 * Debian's sprig, sigs.k8s.io/yaml and gojsonschema packages, and promtool:
 * scripts/setup.sh installs them; the first run builds scripts/helm-render)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { ChartRenderError, XLB_CHART, renderChart, type RenderOptions } from '../../scripts/render-chart.js';
import { checkDeploy } from '../../scripts/gen-deploy.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { validateObject } from '../helpers/k8s-models.js';
import { checkRules } from '../helpers/promtool.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/** The chart rendered with `opts`, as objects. */
function render(opts: RenderOptions = {}) {
  const r = renderChart(opts);
  const objects = r.documents.map((d) => d.object as Obj);
  const all = (kind: string) => objects.filter((o) => o.kind === kind);
  const one = (kind: string, name?: string) => {
    const found = all(kind).filter((o) => !name || o.metadata.name === name);
    assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''} (got ${found.length})`);
    return found[0];
  };
  return { ...r, objects, all, one, config: () => agentConfig(objects) };
}

/** The agent's ConfigMap among several ConfigMaps. */
const agentConfig = (objects: Obj[]) => {
  const cms = objects.filter((o) => o.kind === 'ConfigMap' && o.data?.['config.yaml'] !== undefined);
  assert.equal(cms.length, 1, 'one ConfigMap with config.yaml');
  return parse(cms[0].data['config.yaml']) as Obj;
};

/** The agent's schema on a rendered configuration, with the node name each pod passes on its command line. */
function agentAccepts(cfg: Obj) {
  const r = ConfigSchema.safeParse({ ...cfg, node: { name: 'node-a' } });
  assert.ok(r.success, r.success ? '' : `the agent refuses the configuration: ${JSON.stringify(r.error.issues)}`);
  return r.data;
}

/** Every leaf of a plain value as [dotted path, value]; arrays are leaves. */
function leaves(v: unknown, prefix = ''): Array<[string, unknown]> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return [[prefix, v]];
  return Object.entries(v).flatMap(([k, x]) => leaves(x, prefix ? `${prefix}.${k}` : k));
}

/** The error of rendering with `values`, which must fail. */
function refused(values: object, set: string[] = []): string {
  try {
    renderChart({ values: [values], set });
  } catch (e) {
    assert.ok(e instanceof ChartRenderError, `a ChartRenderError (got ${e})`);
    return e.message;
  }
  assert.fail(`values ${JSON.stringify(values)} ${set.join(' ')} were accepted`);
}

const MONITORING_ON = { monitoring: { serviceMonitor: { enabled: true }, prometheusRule: { enabled: true }, dashboards: { enabled: true } } };

describe('the Helm chart', () => {
  it('Chart.yaml: apiVersion v2, version and appVersion are package.json\'s', () => {
    const chart = parse(fs.readFileSync(path.join(XLB_CHART, 'Chart.yaml'), 'utf8')) as Obj;
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as Obj;
    assert.equal(chart.apiVersion, 'v2');
    assert.equal(chart.name, 'xlb');
    assert.equal(chart.version, pkg.version);
    assert.equal(chart.appVersion, pkg.version);
  });

  it('with its defaults: the agent\'s objects, each valid against the Kubernetes API schema; no namespace, no monitoring objects', () => {
    const r = render();
    for (const o of r.objects) assert.doesNotThrow(() => validateObject(o), `${o.kind} ${o.metadata?.name}`);
    assert.deepEqual(
      r.objects.map((o) => `${o.kind}/${o.metadata.name}`),
      [
        'ServiceAccount/xlb',
        'ConfigMap/xlb-config',
        'ClusterRole/xlb',
        'ClusterRoleBinding/xlb',
        'Role/xlb-leader-election',
        'RoleBinding/xlb-leader-election',
        'Service/xlb-metrics',
        'DaemonSet/xlb',
      ],
      'in Helm\'s install order',
    );
    for (const o of r.objects.filter((x) => x.kind !== 'ClusterRole' && x.kind !== 'ClusterRoleBinding')) assert.equal(o.metadata.namespace, 'xlb-system', `${o.kind} in the release's namespace`);
    const ds = r.one('DaemonSet');
    assert.equal(ds.spec.template.spec.containers[0].image, 'xlb/agent:0.1.0', 'the image tag is the chart\'s appVersion');
    assert.match(r.notes, /kubernetesServiceHost is not set/, 'NOTES.txt says the API server address is missing');
    assert.match(r.notes, /203\.0\.113\.0\/24, the chart's example/, 'NOTES.txt says the pool is the example');
  });

  it('the ConfigMap holds a configuration the agent accepts, every setting at the agent\'s default except where values.yaml says why not', () => {
    const cfg = render().config();
    const parsed = agentAccepts(cfg);
    const defaults = ConfigSchema.parse({ node: { name: 'node-a' }, interfaces: ['eth0'], source: { kubernetes: {} } }) as Obj;
    /** Where the chart's default is not the agent's, each explained in values.yaml. */
    const chosen: Record<string, unknown> = {
      'metrics.listen': '0.0.0.0:9877',
      'socketLB.cgroupRoot': '/run/xlb/cgroupv2',
      podInterfaces: ['veth*', 'lxc*', 'cali*'],
      'datapath.objectDir': undefined, // left out: the agent's default, the image's xdp/build
    };
    const rendered = new Map(leaves(cfg));
    for (const [p, v] of leaves(defaults)) {
      if (p.startsWith('node.')) continue;
      if (p in chosen) assert.deepEqual(rendered.get(p), chosen[p], `${p}: the chart's choice`);
      else assert.deepEqual(rendered.get(p), v, `${p}: the agent's default ${JSON.stringify(v)}`);
    }
    // LB IPAM is on, with its defaults written out, its Lease in the release's namespace.
    assert.equal(cfg.ipam.leaderElection.namespace, 'xlb-system');
    assert.deepEqual(cfg.ipam, parsed.ipam, 'ipam: every key written, at its default');
    assert.equal(cfg.bgp, undefined, 'no BGP by default');
    assert.equal(cfg.l2, undefined, 'no layer 2 by default');
  });

  it('BGP with every key set: the section reaches the agent as given, and the agent accepts it', () => {
    const bgp = {
      asn: 64513,
      routerId: '198.18.200.2',
      nodeAddress: '198.18.200.2',
      listenPort: 179,
      communities: ['65000:100', 'no-export'],
      largeCommunities: ['64513:1:2'],
      neighbors: [
        { address: '198.18.200.1', asn: 64512, port: 179, password: 'secret', holdTime: 9, keepaliveTime: 3, multihop: 2, gracefulRestart: true, communities: ['65000:200'], largeCommunities: ['64513:3:4'] },
        { address: '198.18.200.3', asn: 64512 },
      ],
      gobgpd: { binary: '/usr/sbin/gobgpd', apiPort: 50052, apiSocket: '/run/xlb/gobgpd.sock', logLevel: 'debug', pidFile: '/run/xlb/gobgpd.pid' },
    };
    const r = render({ values: [{ bgp }] });
    const cfg = agentConfig(r.objects);
    assert.deepEqual(cfg.bgp, bgp);
    agentAccepts(cfg);
  });

  it('layer 2: with every key set, and with lease ownership, whose Leases live in the release\'s namespace where the Role allows them', () => {
    const l2 = {
      interfaces: ['eth0', 'eth0.100'],
      ownership: 'peers',
      peers: [
        { name: 'node-a', address: '198.18.0.11' },
        { name: 'node-b', address: '198.18.0.12', port: 7948 },
      ],
      port: 7947,
      bindAddress: '198.18.0.11',
      heartbeat: { intervalMs: 100, deadAfterMissed: 4, restartHoldMs: 20000 },
      gratuitousArp: { count: 2, intervalMs: 100, setNonlocalBind: false },
      lease: { leaseDurationSeconds: 6, renewDeadlineSeconds: 4, retryPeriodSeconds: 1 },
    };
    const cfg = agentConfig(render({ values: [{ l2 }] }).objects);
    assert.deepEqual(cfg.l2, { ...l2, lease: { ...l2.lease, namespace: 'xlb-system' } });
    agentAccepts(cfg);

    const r = render({ values: [{ l2: { ownership: 'lease' } }], namespace: 'lb', releaseName: 'edge' });
    const leased = agentConfig(r.objects);
    assert.deepEqual(leased.l2, { ownership: 'lease', lease: { namespace: 'lb' } });
    assert.equal(agentAccepts(leased).l2?.lease.namespace, 'lb');
    assert.equal(r.one('Role').metadata.namespace, 'lb', 'the Role that allows Leases is there too');
  });

  it('the release\'s name and namespace name every object, and the references between them follow', () => {
    const r = render({ releaseName: 'edge', namespace: 'lb' });
    const ds = r.one('DaemonSet');
    assert.equal(ds.metadata.name, 'edge-xlb');
    const pod = ds.spec.template.spec;
    assert.equal(pod.serviceAccountName, r.one('ServiceAccount').metadata.name);
    assert.equal(pod.volumes.find((v: Obj) => v.configMap).configMap.name, r.one('ConfigMap').metadata.name);
    for (const e of pod.containers[0].env.filter((x: Obj) => x.valueFrom.configMapKeyRef)) assert.equal(e.valueFrom.configMapKeyRef.name, 'edge-xlb-config', e.name);
    assert.deepEqual(r.one('ClusterRoleBinding').subjects, [{ kind: 'ServiceAccount', name: 'edge-xlb', namespace: 'lb' }]);
    assert.deepEqual(r.one('RoleBinding').subjects, [{ kind: 'ServiceAccount', name: 'edge-xlb', namespace: 'lb' }]);
    assert.equal(r.one('RoleBinding').roleRef.name, r.one('Role').metadata.name);
    assert.equal(agentConfig(r.objects).ipam.leaderElection.namespace, 'lb', 'the IPAM Lease in the release\'s namespace');
    assert.equal(render({ releaseName: 'xlb-prod' }).one('DaemonSet').metadata.name, 'xlb-prod', 'a release name holding "xlb" is used as it is');
  });

  it('monitoring on: the ServiceMonitor and the PrometheusRule are valid for the Prometheus Operator, the rules pass promtool, the dashboards are a ConfigMap for Grafana\'s sidecar', () => {
    const r = render({
      values: [
        MONITORING_ON,
        { monitoring: { serviceMonitor: { labels: { release: 'kps' } }, prometheusRule: { labels: { release: 'kps' } }, dashboards: { namespace: 'monitoring' } } },
      ],
    });
    for (const o of r.objects) assert.doesNotThrow(() => validateObject(o), `${o.kind} ${o.metadata?.name}`);
    const sm = r.one('ServiceMonitor');
    const svc = r.one('Service');
    assert.equal(sm.metadata.labels.release, 'kps', 'the label the user\'s Prometheus selects by');
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) assert.equal(svc.metadata.labels[k], v, `the ServiceMonitor selects the metrics Service by ${k}`);
    assert.equal(sm.spec.endpoints[0].port, svc.spec.ports[0].name);
    assert.equal(svc.metadata.labels[sm.spec.jobLabel], 'xlb', 'job="xlb", as the rules and the dashboard select');

    const rule = r.one('PrometheusRule');
    assert.equal(rule.metadata.labels.release, 'kps');
    const check = checkRules(stringify({ groups: rule.spec.groups }));
    assert.equal(check.status, 0, `promtool check rules:\n${check.output}`);
    assert.deepEqual(rule.spec, parse(fs.readFileSync(path.join(XLB_CHART, 'files/xlb.rules.yaml'), 'utf8')), 'the rules file, as it is (its {{ $labels }} untouched)');

    const dash = r.one('ConfigMap', 'xlb-dashboards');
    assert.equal(dash.metadata.namespace, 'monitoring');
    assert.equal(dash.metadata.labels.grafana_dashboard, '1');
    const files = fs.readdirSync(path.join(XLB_CHART, 'files/dashboards'));
    assert.deepEqual(Object.keys(dash.data).sort(), files.sort());
    for (const f of files) assert.deepEqual(JSON.parse(dash.data[f]), JSON.parse(fs.readFileSync(path.join(XLB_CHART, 'files/dashboards', f), 'utf8')), `${f} whole`);
  });

  it('metrics.listen off (null): no metrics Service, no metrics port, the agent\'s default; a ServiceMonitor then cannot be had', () => {
    const r = render({ set: ['metrics.listen=null'] });
    assert.equal(r.all('Service').length, 0, 'no metrics Service');
    const c = r.one('DaemonSet').spec.template.spec.containers[0];
    assert.deepEqual(c.ports.map((p: Obj) => p.name), ['api']);
    const cfg = agentConfig(r.objects);
    assert.equal(cfg.metrics, undefined, 'metrics left to the agent\'s default');
    assert.equal(agentAccepts(cfg).metrics.listen, null);
    assert.match(refused({ metrics: { listen: null }, monitoring: { serviceMonitor: { enabled: true } } }), /monitoring\.serviceMonitor\.enabled: needs metrics\.listen/);
  });

  it('the pods roll when the configuration changes, and only then (checksum annotation)', () => {
    const sum = (opts: RenderOptions) => render(opts).one('DaemonSet').spec.template.metadata.annotations['checksum/config'];
    const base = sum({});
    assert.match(base, /^[0-9a-f]{64}$/);
    assert.notEqual(sum({ set: ['log.level=debug'] }), base, 'a configuration change');
    assert.notEqual(sum({ set: ['kubernetesServiceHost=192.0.2.10,kubernetesServicePort=6443'] }), base, 'the API server address');
    assert.equal(sum({ set: ['resources.limits.memory=2Gi'] }), base, 'not the pod\'s resources');
  });

  it('--set as Helm takes it: typed values, lists, list indices, null removes a default', () => {
    const r = render({
      set: ['kubernetesServiceHost=192.0.2.10,kubernetesServicePort=6443', 'interfaces={eth1,eth2}', 'bgp.asn=64513', 'bgp.neighbors[0].address=198.18.200.1', 'bgp.neighbors[0].asn=64512', 'ipam=null'],
    });
    const cm = r.one('ConfigMap');
    assert.equal(cm.data.KUBERNETES_SERVICE_HOST, '192.0.2.10');
    assert.equal(cm.data.KUBERNETES_SERVICE_PORT, '6443', 'a string, as ConfigMap data must be');
    const cfg = agentConfig(r.objects);
    assert.deepEqual(cfg.interfaces, ['eth1', 'eth2']);
    assert.deepEqual(cfg.bgp, { asn: 64513, neighbors: [{ address: '198.18.200.1', asn: 64512 }] });
    assert.equal(cfg.ipam, undefined, 'ipam=null turns LB IPAM off');
    agentAccepts(cfg);
    assert.doesNotThrow(() => validateObject(cm), 'the ConfigMap stays valid');
  });

  it('bad values are refused before rendering, each named by its path', () => {
    const cases: Array<[object, RegExp]> = [
      [{ interfaces: 'eth0' }, /- interfaces: Invalid type\. Expected: array, given: string/],
      [{ interfaces: [] }, /- interfaces: Array must have at least 1 items/],
      [{ datapth: { conntrackSize: 1 << 20 } }, /- \(root\): Additional property datapth is not allowed/],
      [{ datapath: { conntrackSize: 10 } }, /- datapath\.conntrackSize: Must be greater than or equal to 1024/],
      [{ datapath: { maglev: { minTableSize: 250 } } }, /- datapath\.maglev\.minTableSize: /],
      [{ log: { level: 'verbose' } }, /- log\.level: /],
      [{ api: { listen: 'unix:/run/xlb/api.sock' } }, /- api\.listen: Does not match pattern/],
      [{ bgp: { neighbors: [{ address: '198.18.200.1', asn: 64512 }] } }, /- bgp: asn is required/],
      [{ bgp: { asn: 64513, customResources: 'yes' } }, /- bgp\.customResources: Invalid type/],
      [{ bgp: { asn: 64513, neighbors: [{ address: '198.18.200.300', asn: 64512 }] } }, /- bgp\.neighbors\.0\.address: Does not match format 'ipv4'/],
      [{ bgp: { asn: 64513, neighbors: [{ address: '198.18.200.1', asn: 64512, holdtime: 9 }] } }, /- bgp\.neighbors\.0: Additional property holdtime is not allowed/],
      [{ l2: { ownership: 'arp' } }, /- l2\.ownership: /],
      [{ ipam: { pools: [{ name: 'Public', addresses: ['203.0.113.0/24'] }] } }, /- ipam\.pools\.0\.name: Does not match pattern/],
      [{ monitoring: { serviceMonitor: { enabled: 'yes' } } }, /- monitoring\.serviceMonitor\.enabled: Invalid type\. Expected: boolean, given: string/],
      [{ image: { tag: 1 } }, /- image\.tag: Invalid type\. Expected: string, given: integer/],
    ];
    for (const [values, want] of cases) assert.match(refused(values), want, JSON.stringify(values));
    // Checks the schema cannot make, made by the templates, named the same way.
    assert.match(refused({ ipam: { leaderElection: { namespace: 'kube-system' } } }), /ipam\.leaderElection\.namespace: kube-system is not the release's namespace xlb-system/);
    assert.match(refused({ kubernetesServiceHost: '192.0.2.10' }), /kubernetesServiceHost, kubernetesServicePort: set both or neither/);
  });

  it('the chart\'s CRDs (crds/, plain YAML) come first with includeCrds, each a valid CustomResourceDefinition', () => {
    const crdFiles = fs.readdirSync(path.join(XLB_CHART, 'crds')).filter((f) => /\.ya?ml$/.test(f));
    const r = render({ includeCrds: true });
    const crds = r.documents.filter((d) => d.source.startsWith('xlb/crds/'));
    assert.deepEqual([...new Set(crds.map((d) => d.source))].sort(), crdFiles.map((f) => `xlb/crds/${f}`).sort(), 'every file of crds/');
    assert.deepEqual(r.documents.slice(0, crds.length), crds, 'before the templates\' objects');
    for (const d of crds) {
      assert.equal(d.object.kind, 'CustomResourceDefinition', d.source);
      assert.doesNotThrow(() => validateObject(d.object), d.source);
    }
    assert.equal(render().documents.filter((d) => d.source.startsWith('xlb/crds/')).length, 0, 'not without includeCrds, as helm template');
  });

  it('a CRD dropped into crds/ is picked up as it is (a copy of the chart with an example CRD)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-chart-'));
    try {
      fs.cpSync(XLB_CHART, dir, { recursive: true });
      const crd = {
        apiVersion: 'apiextensions.k8s.io/v1',
        kind: 'CustomResourceDefinition',
        metadata: { name: 'widgets.example.com' },
        spec: {
          group: 'example.com',
          names: { kind: 'Widget', plural: 'widgets', singular: 'widget', listKind: 'WidgetList' },
          scope: 'Namespaced',
          versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } } } } }],
        },
      };
      // {{ }} in a CRD is not a template: crds/ is never rendered.
      fs.writeFileSync(path.join(dir, 'crds/widgets.yaml'), `# {{ .Values.notThere.atAll }}\n${stringify(crd)}`);
      const { documents } = renderChart({ includeCrds: true }, dir);
      assert.equal(documents[0].source, 'xlb/crds/widgets.yaml');
      assert.deepEqual(documents[0].object, crd);
      assert.doesNotThrow(() => validateObject(documents[0].object), 'a valid CustomResourceDefinition');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('deploy/ is what the chart gives (npm run gen:deploy -- --check)', () => {
    assert.deepEqual(checkDeploy(), [], 'run npm run gen:deploy');
  });
});

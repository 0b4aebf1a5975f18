/**
 * scripts/helm-render (through scripts/render-chart.ts) renders a chart as
 * `helm template` does, shown on small charts written here: Helm's
 * functions (include, tpl, toYaml, fromYaml, toJson, required, fail, lookup,
 * .Files), its built-in objects, its values (values.yaml under -f files
 * under --set, null removing a default, numbers read as floats), the schema
 * check, the install order of kinds, and its errors.
 *
 * Run: node --import tsx --test test/unit/helm-render.test.ts (needs Go and
 * Debian's Go libraries: scripts/setup.sh installs them)
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChartRenderError, helmRenderBinary, renderChart, type RenderOptions } from '../../scripts/render-chart.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-helm-render-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let charts = 0;
/** A chart directory holding `files` (path → content) besides a Chart.yaml for chart `demo` 1.2.3, appVersion 4.5. */
function makeChart(files: Record<string, string>): string {
  const dir = path.join(tmp, `chart-${++charts}`);
  const all = { 'Chart.yaml': 'apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: "4.5"\n', ...files };
  for (const [f, text] of Object.entries(all)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

/** The error of rendering `dir`, which must fail. */
function failure(dir: string, opts: RenderOptions = {}): string {
  try {
    renderChart(opts, dir);
  } catch (e) {
    assert.ok(e instanceof ChartRenderError, `a ChartRenderError (got ${e})`);
    return e.message;
  }
  assert.fail('the chart rendered');
}

const demo = makeChart({
  'values.yaml': ['name: web', 'replicas: 2', 'nested: {a: 1, b: {c: two}}', 'list: [x, w]', 'removable: here', 'big: 1000000', 'strict: false', ''].join('\n'),
  'values.schema.json': JSON.stringify({ type: 'object', properties: { replicas: { type: 'integer', minimum: 1 }, name: { type: 'string' } } }),
  'files/hello.txt': 'hello from a file',
  'files/other.txt': 'another',
  'templates/_helpers.tpl': '{{- define "demo.greeting" -}}\nhello {{ .Values.name }}\n{{- end }}\n',
  // Named so that the file order (a- before z-) is not the install order (ConfigMap before Service).
  'templates/a-service.yaml': [
    'apiVersion: v1',
    'kind: Service',
    'metadata:',
    '  name: {{ .Release.Name }}',
    'spec:',
    '  ports: [{ port: 80 }]',
    '---',
    '# only a comment: left out',
    '',
  ].join('\n'),
  'templates/z-config.yaml': [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    '  name: {{ include "demo.greeting" . | replace " " "-" }}',
    '  namespace: {{ .Release.Namespace }}',
    '  labels:',
    '    chart: {{ .Chart.Name }}-{{ .Chart.Version }}',
    '    app-version: {{ .Chart.AppVersion | quote }}',
    'data:',
    '  yaml: |',
    '    {{- toYaml .Values.nested | nindent 4 }}',
    '  json: {{ toJson .Values.list | quote }}',
    '  tpl: {{ tpl "{{ .Values.name | upper }}" . | quote }}',
    '  missing: "{{ .Values.notThere }}"',
    '  removable: {{ .Values.removable | default "gone" | quote }}',
    '  replicas: {{ .Values.replicas | quote }}',
    '  big: {{ .Values.big | quote }}',
    '  file: {{ .Files.Get "files/hello.txt" | quote }}',
    '  glob: "{{ range $path, $_ := .Files.Glob "files/*.txt" }}{{ $path }};{{ end }}"',
    '  template: {{ .Template.Name | quote }}',
    '  kube: {{ .Capabilities.KubeVersion.Version | quote }}',
    '  apps: {{ .Capabilities.APIVersions.Has "apps/v1" | quote }}',
    '  fromYaml: {{ (fromYaml "a: {b: 3}").a.b | quote }}',
    '  lookup: {{ lookup "v1" "Secret" "default" "x" | len | quote }}',
    '',
  ].join('\n'),
  'templates/required.yaml': '{{- if .Values.strict }}\ntoken: {{ required "strict needs a token" .Values.token }}\n{{- end }}\n',
  'templates/NOTES.txt': 'release {{ .Release.Name }} of {{ .Chart.Name }}\n',
});

describe('helm-render renders as helm template does', () => {
  it('Helm\'s functions and objects, partials not rendered, comment-only documents left out, kinds in install order', () => {
    const r = renderChart({ releaseName: 'rel', namespace: 'ns' }, demo);
    assert.deepEqual(
      r.documents.map((d) => `${d.source} ${d.object.kind}`),
      ['demo/templates/z-config.yaml ConfigMap', 'demo/templates/a-service.yaml Service'],
      'ConfigMap before Service whatever the files\' names; no output for _helpers.tpl, required.yaml (empty) or the comment',
    );
    const cm = r.documents[0].object as Obj;
    assert.equal(cm.metadata.name, 'hello-web', 'include of a partial, piped');
    assert.equal(cm.metadata.namespace, 'ns');
    assert.deepEqual(cm.metadata.labels, { chart: 'demo-1.2.3', 'app-version': '4.5' });
    assert.deepEqual(cm.data, {
      yaml: 'a: 1\nb:\n  c: two\n',
      json: '["x","w"]',
      tpl: 'WEB',
      missing: '',
      removable: 'here',
      replicas: '2',
      big: '1e+06', // values are read through JSON: 1000000 is a float64, printed as Go prints one
      file: 'hello from a file',
      glob: 'files/hello.txt;files/other.txt;',
      template: 'demo/templates/z-config.yaml',
      kube: 'v1.30.0',
      apps: 'true',
      fromYaml: '3',
      lookup: '0',
    });
    assert.equal(r.notes, 'release rel of demo\n', 'NOTES.txt apart from the manifests');
  });

  it('values: -f files in order over values.yaml, maps merged key by key, then --set with Helm\'s types; null removes a default', () => {
    const r = renderChart({ values: [{ nested: { b: { d: 4 } } }, { nested: { a: 5 }, name: 'api' }], set: ['removable=null', 'replicas=3,list={p,q\\,r}'] }, demo);
    const data = (r.documents.find((d) => d.object.kind === 'ConfigMap')!.object as Obj).data;
    assert.equal(data.yaml, 'a: 5\nb:\n  c: two\n  d: 4\n');
    assert.equal(data.removable, 'gone', 'null removed the default: `default` applies');
    assert.equal(data.replicas, '3');
    assert.equal(data.json, '["p","q,r"]', 'a list, with an escaped comma');
    assert.equal(data.tpl, 'API');
  });

  it('the values are checked against values.schema.json after merging, each failure named by its path', () => {
    assert.match(failure(demo, { set: ['replicas=0'] }), /values don't meet the specifications of values\.schema\.json:\n- replicas: Must be greater than or equal to 1/);
    assert.match(failure(demo, { set: ['replicas=many', 'name=7'] }), /- name: Invalid type\. Expected: string, given: integer\n- replicas: Invalid type\. Expected: integer, given: string/);
  });

  it('required and fail stop the rendering with Helm\'s "execution error at (template:line:col)"', () => {
    assert.equal(failure(demo, { set: ['strict=true'] }), 'execution error at (demo/templates/required.yaml:2:10): strict needs a token');
    const dir = makeChart({ 'templates/x.yaml': '{{ fail "no way" }}\n' });
    assert.equal(failure(dir), 'execution error at (demo/templates/x.yaml:1:3): no way');
  });

  it('env and expandenv are not there (a chart does not read the renderer\'s environment), as in Helm', () => {
    assert.match(failure(makeChart({ 'templates/x.yaml': 'home: {{ env "HOME" }}\n' })), /function "env" not defined/);
    assert.match(failure(makeChart({ 'templates/x.yaml': 'home: {{ expandenv "$HOME" }}\n' })), /function "expandenv" not defined/);
  });

  it('a template that renders what is not YAML is an error naming it', () => {
    assert.match(failure(makeChart({ 'templates/bad.yaml': 'a: [1, 2\n' })), /^YAML parse error on demo\/templates\/bad\.yaml: /);
  });

  it('--output yaml prints "---" and "# Source:" before each document, as helm template', () => {
    const r = spawnSync(helmRenderBinary(), ['--name', 'rel', demo], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^---\n# Source: demo\/templates\/z-config\.yaml\napiVersion: v1\nkind: ConfigMap\n/);
    assert.match(r.stdout, /\n---\n# Source: demo\/templates\/a-service\.yaml\napiVersion: v1\nkind: Service\n/);
  });
});

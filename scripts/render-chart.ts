/**
 * Renders a Helm chart here, without helm: builds scripts/helm-render (Go's
 * text/template with sprig and Helm's own functions, values checked against
 * the chart's values.schema.json; see its main.go) and runs it.
 *
 * The program is built with Debian's Go and Go libraries (golang-go,
 * golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev,
 * golang-github-xeipuuv-gojsonschema-dev; scripts/setup.sh installs them),
 * in GOPATH mode with GOPATH=/usr/share/gocode, so no module is fetched. The
 * binary is kept under node_modules/.cache/helm-render/, named by the hash of
 * its source, and rebuilt only when the source changes.
 *
 * Usage: `tsx scripts/render-chart.ts [helm-render flags] CHART_DIR` prints
 * what `helm template` prints (e.g. `--name xlb --namespace xlb-system
 * --set bgp.asn=64513 deploy/helm/xlb`).
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sourceDir = path.join(root, 'scripts/helm-render');
const cacheDir = path.join(root, 'node_modules/.cache/helm-render');
/** Where Debian installs the Go libraries the program imports. */
const GOPATH = '/usr/share/gocode';

/** The chart of this repository. */
export const XLB_CHART = path.join(root, 'deploy/helm/xlb');

/** One rendered YAML document. */
export interface RenderedDocument {
  /** The template (or CRD file) it came from, as Helm names it: `xlb/templates/daemonset.yaml`, `xlb/crds/x.yaml`. */
  source: string;
  /** The document's text as rendered, comments included. */
  text: string;
  /** The document parsed (a Kubernetes object). */
  object: Record<string, unknown>;
}

/** What {@link renderChart} returns. */
export interface RenderedChart {
  /** Every document: the CRDs first (with `includeCrds`), then the templates' in Helm's install order of kinds. */
  documents: RenderedDocument[];
  /** templates/NOTES.txt rendered ("" without one). */
  notes: string;
}

/** How to render: what `helm template` takes as flags. */
export interface RenderOptions {
  /** The release's name (`.Release.Name`); default `xlb`. */
  releaseName?: string;
  /** The release's namespace (`.Release.Namespace`); default `xlb-system`. */
  namespace?: string;
  /** Values laid over the chart's values.yaml in order, as `-f` files (objects, written out as JSON). */
  values?: object[];
  /** `--set` arguments, applied after `values`. */
  set?: string[];
  /** Include the chart's crds/ (as `helm template --include-crds`). */
  includeCrds?: boolean;
}

/** The chart could not be rendered: bad values (each named by its path), a template that failed, or output that is not YAML. */
export class ChartRenderError extends Error {
  constructor(
    /** What helm-render printed on stderr, `Error: ` removed. */
    readonly output: string,
  ) {
    super(output);
    this.name = 'ChartRenderError';
  }
}

/**
 * Build scripts/helm-render if its binary for the current source is not
 * cached, and return the binary's path.
 * @throws Error when Go is missing (scripts/setup.sh installs it) or the build fails
 */
export function helmRenderBinary(): string {
  const hash = crypto.createHash('sha256');
  for (const f of fs.readdirSync(sourceDir).filter((x) => x.endsWith('.go')).sort()) {
    hash.update(f).update(fs.readFileSync(path.join(sourceDir, f)));
  }
  const bin = path.join(cacheDir, `helm-render-${hash.digest('hex').slice(0, 16)}`);
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(cacheDir, { recursive: true });
  // Built under a temporary name and renamed: test processes building at the same time each get a whole binary.
  const tmp = `${bin}.${process.pid}.tmp`;
  const r = spawnSync('go', ['build', '-o', tmp, '.'], {
    cwd: sourceDir,
    encoding: 'utf8',
    env: {
      ...process.env,
      GO111MODULE: 'off',
      GOPATH,
      GOFLAGS: '',
      CGO_ENABLED: '0',
      GOCACHE: path.join(root, 'node_modules/.cache/go-build'),
    },
  });
  if (r.error) throw new Error(`building scripts/helm-render: ${r.error.message} (scripts/setup.sh installs golang-go and the Go libraries it needs)`);
  if (r.status !== 0) throw new Error(`building scripts/helm-render failed:\n${r.stderr}`);
  fs.renameSync(tmp, bin);
  return bin;
}

/**
 * Render a chart as `helm template` would.
 * @param chartDir the chart's directory (default: this repository's deploy/helm/xlb)
 * @throws ChartRenderError when the values fail values.schema.json (the
 *   message lists each failing value as `path.to.value: problem`), a template
 *   fails (`fail`, `required`, an error of a function) or renders what is not YAML
 */
export function renderChart(opts: RenderOptions = {}, chartDir = XLB_CHART): RenderedChart {
  const bin = helmRenderBinary();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-chart-values-'));
  try {
    const args = ['--output', 'json', '--name', opts.releaseName ?? 'xlb', '--namespace', opts.namespace ?? 'xlb-system'];
    (opts.values ?? []).forEach((v, i) => {
      const f = path.join(tmp, `values-${i}.json`);
      fs.writeFileSync(f, JSON.stringify(v));
      args.push('-f', f);
    });
    for (const s of opts.set ?? []) args.push('--set', s);
    if (opts.includeCrds) args.push('--include-crds');
    const r = spawnSync(bin, [...args, chartDir], { encoding: 'utf8' });
    if (r.status !== 0) throw new ChartRenderError((r.stderr || `helm-render exited with ${r.status}`).replace(/^Error: /, '').trim());
    const out = JSON.parse(r.stdout) as { manifests: Array<{ source: string; content: string }> | null; notes: string };
    return {
      documents: (out.manifests ?? []).map((m) => ({ source: m.source, text: m.content, object: parse(m.content) as Record<string, unknown> })),
      notes: out.notes,
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = spawnSync(helmRenderBinary(), process.argv.slice(2), { stdio: 'inherit' }).status ?? 1;
}

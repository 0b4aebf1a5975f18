/**
 * Writes the plain manifests in deploy/ from the Helm chart in
 * deploy/helm/xlb, so that `kubectl apply -f deploy/` and `helm install`
 * never deploy different things: the chart rendered (scripts/render-chart.ts)
 * with its default values plus {@link PLAIN_VALUES}, release `xlb` in
 * namespace `xlb-system`, each template's documents into its file of
 * {@link FILES}, the chart's CRDs into deploy/05-crds.yaml (when crds/ has
 * any) and its dashboards copied to deploy/monitoring/dashboards/. It also
 * sets the chart's version and appVersion to package.json's version.
 *
 * Usage: `npm run gen:deploy` (write) or `npm run gen:deploy -- --check`
 * (exit 1 naming each file that differs from what the chart gives).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XLB_CHART, renderChart } from './render-chart.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const deployDir = path.join(root, 'deploy');

/** The values the plain manifests take besides the chart's defaults: they make the namespace, and carry the monitoring objects in deploy/monitoring/. */
export const PLAIN_VALUES = {
  namespace: { create: true },
  monitoring: { serviceMonitor: { enabled: true }, prometheusRule: { enabled: true }, dashboards: { enabled: true } },
};

/** The file under deploy/ that each template's documents go to. */
export const FILES: Record<string, string> = {
  'xlb/templates/namespace.yaml': '00-namespace.yaml',
  'xlb/templates/rbac.yaml': '10-rbac.yaml',
  'xlb/templates/configmap.yaml': '20-configmap.yaml',
  'xlb/templates/daemonset.yaml': '30-daemonset.yaml',
  'xlb/templates/metrics-service.yaml': 'monitoring/10-service.yaml',
  'xlb/templates/servicemonitor.yaml': 'monitoring/20-servicemonitor.yaml',
  'xlb/templates/prometheusrule.yaml': 'monitoring/30-prometheusrule.yaml',
  'xlb/templates/dashboards.yaml': 'monitoring/40-dashboards.yaml',
};
/** Where the chart's CRDs go. */
export const CRDS_FILE = '05-crds.yaml';

/** The first lines of every generated YAML file. */
export const HEADER = [
  '# Generated from deploy/helm/xlb by `npm run gen:deploy`: change the chart,',
  '# not this file. To deploy other settings, install the chart with your',
  '# values (deploy/README.md), or edit a copy of these files.',
  '',
  '',
].join('\n');

/** Chart.yaml with version and appVersion set to `version`. */
function chartYaml(version: string): string {
  const text = fs.readFileSync(path.join(XLB_CHART, 'Chart.yaml'), 'utf8');
  return text.replace(/^version: .*$/m, `version: ${version}`).replace(/^appVersion: .*$/m, `appVersion: "${version}"`);
}

/**
 * Every generated file's content, by path relative to deploy/.
 * @throws Error when the chart renders a template that {@link FILES} does not place, or fails to render
 */
export function generateDeploy(): Map<string, string> {
  const { documents } = renderChart({ values: [PLAIN_VALUES], includeCrds: true, releaseName: 'xlb', namespace: 'xlb-system' });
  const byFile = new Map<string, string[]>();
  for (const d of documents) {
    const file = d.source.startsWith('xlb/crds/') ? CRDS_FILE : FILES[d.source];
    if (!file) throw new Error(`${d.source}: no file of deploy/ for it; add it to FILES in scripts/gen-deploy.ts`);
    byFile.set(file, [...(byFile.get(file) ?? []), d.text]);
  }
  const out = new Map<string, string>();
  for (const [file, docs] of byFile) out.set(file, `${HEADER}${docs.join('\n---\n')}\n`);
  const dashboards = path.join(XLB_CHART, 'files/dashboards');
  for (const f of fs.readdirSync(dashboards).filter((x) => x.endsWith('.json'))) {
    out.set(`monitoring/dashboards/${f}`, fs.readFileSync(path.join(dashboards, f), 'utf8'));
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  out.set('helm/xlb/Chart.yaml', chartYaml(pkg.version));
  return out;
}

/** The files on disk that generateDeploy writes: deploy/*.yaml, deploy/monitoring/*.yaml and deploy/monitoring/dashboards/*.json. */
function generatedOnDisk(): string[] {
  const list = (dir: string, re: RegExp) =>
    fs.existsSync(path.join(deployDir, dir)) ? fs.readdirSync(path.join(deployDir, dir)).filter((f) => re.test(f)).map((f) => path.posix.join(dir, f)) : [];
  return [...list('.', /\.ya?ml$/), ...list('monitoring', /\.ya?ml$/), ...list('monitoring/dashboards', /\.json$/)];
}

/**
 * Compare deploy/ with what the chart gives.
 * @returns one line per file that differs, is missing, or should no longer be there; empty when deploy/ is up to date
 */
export function checkDeploy(files = generateDeploy()): string[] {
  const problems: string[] = [];
  for (const [rel, text] of files) {
    const p = path.join(deployDir, rel);
    if (!fs.existsSync(p)) problems.push(`deploy/${rel}: missing`);
    else if (fs.readFileSync(p, 'utf8') !== text) problems.push(`deploy/${rel}: differs from what the chart gives`);
  }
  for (const rel of generatedOnDisk()) if (!files.has(rel)) problems.push(`deploy/${rel}: not generated from the chart (remove it, or add its template)`);
  return problems;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = generateDeploy();
  if (process.argv.includes('--check')) {
    const problems = checkDeploy(files);
    if (problems.length) {
      console.error(`${problems.join('\n')}\ndeploy/ is stale: run npm run gen:deploy`);
      process.exit(1);
    }
  } else {
    for (const rel of generatedOnDisk()) if (!files.has(rel)) fs.rmSync(path.join(deployDir, rel));
    for (const [rel, text] of files) {
      fs.mkdirSync(path.dirname(path.join(deployDir, rel)), { recursive: true });
      fs.writeFileSync(path.join(deployDir, rel), text);
    }
  }
}

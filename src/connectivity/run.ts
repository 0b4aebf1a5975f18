/**
 * Running `xlb connectivity test`: deploy the test services, wait until
 * every agent has programmed them and the outside can reach their VIPs, run
 * the chosen checks one after another (each within its deadline), remove
 * the services again whatever happened, and report: one line a check and a
 * summary, as text or JSON.
 */
import type { ConnectivityEnv, DeployedService } from './env.js';
import { CHECKS, type Check, type CheckStatus } from './checks.js';
import { testServiceSpecs } from './services.js';
import { waitFor } from '../util/wait.js';

/** One check's outcome in the report. */
export interface CheckReport {
  name: string;
  description: string;
  status: CheckStatus;
  /** What it saw; on a failure, what went wrong and where. */
  detail: string;
  durationMs: number;
}

/** The whole run (`-o json` prints it). */
export interface ConnectivityReport {
  /** The environment: `lab /run/xlb-lab (2 nodes)`. */
  environment: string;
  /** How the outside reaches VIPs: bgp, l2 or static. */
  announce: string;
  /** No check failed, the setup worked and the test services were removed. */
  ok: boolean;
  passed: number;
  failed: number;
  skipped: number;
  /** Why no check ran: the services could not be deployed or were not programmed in time. */
  setupError?: string;
  /** Why the test services could not be removed afterwards. */
  cleanupError?: string;
  checks: CheckReport[];
}

/** Options of {@link runConnectivityTest}. */
export interface RunOptions {
  /** Only the checks whose name matches. */
  filter?: RegExp;
  /** Called as each check ends (to print as it goes). */
  onCheck?: (r: CheckReport) => void;
  /** Called with a line on what the run is doing (deploying, waiting). */
  onProgress?: (line: string) => void;
  /** How long the agents may take to program the test services, and the outside to reach them; ms (default 30000 each). */
  setupTimeoutMs?: number;
  /** The checks to choose from (default {@link CHECKS}). */
  checks?: readonly Check[];
}

/**
 * The checks `filter` selects.
 * @throws Error when it selects none (listing the names)
 */
export function selectChecks(filter: RegExp | undefined, checks: readonly Check[] = CHECKS): Check[] {
  const chosen = checks.filter((c) => !filter || filter.test(c.name));
  if (!chosen.length) throw new Error(`no check matches ${filter}: the checks are ${checks.map((c) => c.name).join(', ')}`);
  return chosen;
}

interface ServiceSummary {
  namespace: string;
  name: string;
  port: string;
  frontends: Array<{ addr: string; port: number; served: boolean }>;
  readyBackends: number;
}

/**
 * Wait until every node's agent programs every port of the test services:
 * the port listed in GET /v1/services with its ClusterIP frontend served and
 * all its backends ready.
 * @throws Error naming a node and what it lacks, after `timeoutMs`
 */
export async function waitProgrammed(env: ConnectivityEnv, services: DeployedService[], timeoutMs: number): Promise<void> {
  let missing = '';
  try {
    await waitFor(
      async () => {
        for (const n of env.nodes) {
          const have = ((await env.agent(n, '/v1/services')) as { services: ServiceSummary[] }).services;
          for (const s of services) {
            for (const p of s.spec.ports) {
              const got = have.find((h) => h.namespace === s.namespace && h.name === s.spec.name && h.port === p.name);
              const what = `${s.namespace}/${s.spec.name}:${p.name}`;
              if (!got) return !(missing = `${n.name} has not programmed ${what}`);
              if (!got.frontends.some((f) => f.addr === s.clusterIP && f.port === p.port && f.served)) return !(missing = `${n.name} does not serve ${what} on ${s.clusterIP}:${p.port}`);
              if (got.readyBackends !== s.spec.backends.length) return !(missing = `${n.name} has ${got.readyBackends} of ${s.spec.backends.length} backends of ${what} ready`);
            }
          }
        }
        return true;
      },
      timeoutMs,
      'every agent to program the test services',
      200,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}${missing ? `: ${missing}` : ''}`);
  }
}

/** `p` or, past `ms`, a rejection saying the deadline passed. */
function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Run the connectivity test in `env`. Never throws for a failing path (it
 * is a failed check) nor for an environment that cannot be set up (that is
 * `setupError`); throws only for a filter that selects no check.
 */
export async function runConnectivityTest(env: ConnectivityEnv, opts: RunOptions = {}): Promise<ConnectivityReport> {
  const chosen = selectChecks(opts.filter, opts.checks);
  const setupMs = opts.setupTimeoutMs ?? 30_000;
  const report: ConnectivityReport = { environment: env.description, announce: env.announce, ok: false, passed: 0, failed: 0, skipped: 0, checks: [] };
  try {
    let services: DeployedService[];
    try {
      const specs = testServiceSpecs(env);
      opts.onProgress?.(`deploying ${specs.length} test services (${specs.map((s) => s.name).join(', ')})`);
      services = await env.deploy(specs);
      await waitProgrammed(env, services, setupMs);
      await env.settle(setupMs);
      opts.onProgress?.(`programmed on ${env.nodes.map((n) => n.name).join(', ')}`);
    } catch (e) {
      report.setupError = (e as Error).message;
      return report;
    }
    for (const c of chosen) {
      const t0 = performance.now();
      let expired = false;
      let status: CheckStatus;
      let detail: string;
      try {
        ({ status, detail } = await withDeadline(c.run({ env, services, expired: () => expired }), c.timeoutMs));
      } catch (e) {
        status = 'fail';
        detail = (e as Error).message;
      }
      expired = true;
      const r: CheckReport = { name: c.name, description: c.description, status, detail, durationMs: Math.round(performance.now() - t0) };
      report.checks.push(r);
      opts.onCheck?.(r);
    }
  } finally {
    try {
      await env.cleanup();
    } catch (e) {
      report.cleanupError = (e as Error).message;
    }
    report.passed = report.checks.filter((c) => c.status === 'pass').length;
    report.failed = report.checks.filter((c) => c.status === 'fail').length;
    report.skipped = report.checks.filter((c) => c.status === 'skip').length;
    report.ok = !report.setupError && !report.cleanupError && report.failed === 0;
  }
  return report;
}

/** One check as a line of text: `✓ name  detail`, `✗ name  detail`, `- name  skipped: detail`. */
export function formatCheck(r: CheckReport, width = 28): string {
  const mark = r.status === 'pass' ? '✓' : r.status === 'fail' ? '✗' : '-';
  return `${mark} ${r.name.padEnd(width)} ${r.status === 'skip' ? `skipped: ${r.detail}` : r.detail}`;
}

/** The report's closing lines: setup or cleanup problems, and `N passed, M failed` (`, K skipped`). */
export function formatSummary(r: ConnectivityReport): string[] {
  const out: string[] = [];
  if (r.setupError) out.push(`✗ setup: ${r.setupError}`);
  if (r.cleanupError) out.push(`✗ cleanup: ${r.cleanupError}`);
  out.push(`${r.passed} passed, ${r.failed} failed${r.skipped ? `, ${r.skipped} skipped` : ''}`);
  return out;
}

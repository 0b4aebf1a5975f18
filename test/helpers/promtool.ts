/**
 * promtool (Debian's `prometheus` package, installed by scripts/setup.sh)
 * for tests: lint an exposition text (`promtool check metrics`) and check
 * rule files (`promtool check rules`).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** What promtool printed and how it exited. */
export interface PromtoolResult {
  /** Exit status: 0 when the check passed. */
  status: number | null;
  /** stdout and stderr together (promtool prints its findings on either). */
  output: string;
}

/**
 * Run promtool with `args`, `input` on its standard input.
 * @throws Error saying how to install promtool when it is not on PATH
 */
export function promtool(args: string[], input?: string): PromtoolResult {
  const r = spawnSync('promtool', args, { input, encoding: 'utf8', timeout: 60_000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? 'promtool not found: install Debian\'s prometheus package (scripts/setup.sh does)' : `promtool: ${r.error.message}`);
  }
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** `promtool check metrics` on an exposition text (the text format, version 0.0.4). */
export function checkMetrics(text: string): PromtoolResult {
  return promtool(['check', 'metrics'], text);
}

/**
 * `promtool check rules` on a rule file holding `groups` (written to a
 * temporary file, removed afterwards), e.g. a PrometheusRule's `spec`.
 * @param yamlText the rule file's YAML
 */
export function checkRules(yamlText: string): PromtoolResult {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlb-rules-'));
  try {
    const file = path.join(dir, 'rules.yaml');
    fs.writeFileSync(file, yamlText);
    return promtool(['check', 'rules', file]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

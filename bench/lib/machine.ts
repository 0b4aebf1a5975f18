/**
 * What a result was measured on: CPU, memory, kernel, Node, the repository's
 * commit and the date. Written into every result file, so that figures from
 * different machines or commits are never compared by mistake.
 */
import os from 'node:os';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { repoRoot } from './paths.js';

/** The `machine` block of a result file. */
export interface MachineInfo {
  /** `model name` of /proc/cpuinfo (or os.cpus()). */
  cpuModel: string;
  /** Logical CPUs online. */
  cores: number;
  /** Physical memory, bytes. */
  memoryBytes: number;
  /** uname -r. */
  kernel: string;
  /** process.version. */
  node: string;
  /** HEAD of the repository, 40 hex digits, or "unknown" outside a git checkout. */
  commit: string;
  /** True when the work tree had uncommitted changes (the figures then include them). */
  dirty: boolean;
  /** Load averages (1, 5, 15 min) when the run started: a busy machine is a noisy one. */
  loadAverage: number[];
}

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** Describe this machine and checkout. */
export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1].trim();
  } catch {
    /* os.cpus() already gave a model */
  }
  return {
    cpuModel,
    cores: os.cpus().length,
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    node: process.version,
    commit: git(['rev-parse', 'HEAD']) ?? 'unknown',
    dirty: (git(['status', '--porcelain', '--untracked-files=no']) ?? '') !== '',
    loadAverage: os.loadavg().map((l) => +l.toFixed(2)),
  };
}

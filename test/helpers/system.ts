/**
 * What the root-only tests (test/datapath, test/e2e) ask of the machine:
 * whether they may run here (root, tools on PATH), synchronous commands, and
 * removing the network namespaces they made.
 *
 * A test that cannot run skips with the reason ({@link skipUnless}); one
 * that made a namespace deletes it in `after`, also when a test failed
 * ({@link leaveAndRemoveNetns}).
 */
import { execFileSync } from 'node:child_process';

/** Whether the process runs as root (uid 0). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Whether every one of `cmds` is on PATH (`command -v`), checked in order, stopping at the first missing. */
export function hasTools(...cmds: string[]): boolean {
  return cmds.every((cmd) => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * node:test's `skip` option for a test that needs all of `checks`: the
 * reason of the first check that fails, or false when all pass. Checks run
 * in order and stop at the first failure, so a tool is looked for only as
 * root.
 *
 * ```ts
 * const skip = skipUnless([isRoot, 'needs root'], [() => hasTools('arping'), 'needs iputils-arping']);
 * ```
 */
export function skipUnless(...checks: Array<[check: () => boolean, reason: string]>): string | false {
  for (const [check, reason] of checks) if (!check()) return reason;
  return false;
}

/**
 * Run `cmd args`, wait for it, and return its stdout (UTF-8). Its stderr is
 * kept for the error, not printed.
 * @throws Error from execFileSync (status, stderr) when it exits non-zero
 */
export function shSync(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Run `ip -n <ns> args…` (ip(8) inside network namespace `ns`). Its output
 * is dropped; its stderr is kept for the error.
 * @throws Error from execFileSync (status, stderr) when ip exits non-zero
 */
export function ipIn(ns: string, ...args: string[]): void {
  execFileSync('ip', ['-n', ns, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Delete network namespace `name` (`ip netns del`).
 * @throws Error from execFileSync when it cannot (no such namespace, say)
 */
export function removeNetns(name: string): void {
  execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
}

/** Delete network namespaces `names`; one that is not there (never made, already gone) is passed over. */
export function removeNetnsQuietly(...names: string[]): void {
  for (const name of names) {
    try {
      removeNetns(name);
    } catch {
      /* not made, or already gone */
    }
  }
}

/**
 * The `after` of a test file whose main thread entered namespace `name`
 * (enterNetns): `close` what was opened inside it (datapaths), move the
 * thread back (`leave`, undefined when it never entered), delete the
 * namespace. Each step runs even when the one before threw; the error of the
 * last step that threw is the one thrown.
 */
export function leaveAndRemoveNetns(name: string, leave: (() => void) | undefined, close?: () => void): void {
  try {
    close?.();
  } finally {
    try {
      leave?.();
    } finally {
      removeNetns(name);
    }
  }
}

/** Running commands for the lab: errors carry the command line and its stderr. */
import { execFile } from 'node:child_process';

/**
 * Run `cmd args` and return stdout.
 * @throws Error `cmd args: stderr` when it exits non-zero
 */
export function sh(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 30000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** `ip -n NS args...` */
export function ipn(ns: string, ...args: string[]): Promise<string> {
  return sh('ip', ['-n', ns, ...args]);
}

/** Run argv inside network namespace `ns`. */
export function nsExec(ns: string, argv: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return sh('ip', ['netns', 'exec', ns, ...argv], opts);
}

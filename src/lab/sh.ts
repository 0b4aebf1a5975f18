/** Running commands for the lab: errors carry the command line and its stderr. */
import { execFile } from 'node:child_process';

/**
 * A command that exited non-zero, was killed, or could not run. Its stdout
 * is kept: some tools print what was asked and still fail (arping with `-w`
 * exits 1 when fewer than `-c` replies came, after printing those that did).
 */
export class CommandError extends Error {
  constructor(
    message: string,
    /** What the command printed on stdout before it failed ('' when it never ran). */
    readonly stdout: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

/**
 * Run `cmd args` and return stdout.
 * @throws CommandError `cmd args: stderr`, with the command's stdout, when it exits non-zero
 */
export function sh(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 30000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new CommandError(`${cmd} ${args.join(' ')}: ${(stderr || err.message).trim()}`, String(stdout ?? '')));
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

/**
 * Tools a benchmark needs from the system. A benchmark that cannot run here
 * must fail loudly, never print nothing: {@link requireTool} throws an error
 * naming the tool and the Debian package that provides it.
 */
import { execFileSync } from 'node:child_process';

/** Whether `cmd` is on PATH. */
export function hasTool(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * @throws Error `<bench>: <cmd> is not installed (apt-get install -y <pkg>)`
 *   when `cmd` is missing
 */
export function requireTool(bench: string, cmd: string, pkg: string): void {
  if (!hasTool(cmd)) throw new Error(`${bench}: ${cmd} is not installed (apt-get install -y ${pkg}; scripts/setup.sh installs it)`);
}

/** @throws Error naming the benchmark when not running as root. */
export function requireRoot(bench: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${bench}: needs root (BPF programs, network namespaces)`);
}

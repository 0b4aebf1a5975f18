/**
 * Private network namespaces for benchmarks: `xlb-bench-<what>-<random>`,
 * always deleted afterwards, also when the benchmark throws. Firewall
 * baselines (iptables, nft) run only inside such a namespace, so the
 * machine's own rules are never touched.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** A namespace made by {@link withNetns}. */
export interface BenchNetns {
  name: string;
  /** Run argv inside the namespace (nsenter --net), stdin from `input`; returns stdout. @throws Error with stderr */
  run(argv: string[], input?: string | Buffer): string;
  /** Like run, and also the wall time of the process in ms (spawn to exit). */
  timed(argv: string[], input?: string | Buffer): { ms: number; stdout: string };
}

/**
 * Create a namespace, run `fn` with it, delete it (in finally).
 * `what` goes into the name (letters, digits, dashes).
 */
export async function withNetns<T>(what: string, fn: (ns: BenchNetns) => Promise<T> | T): Promise<T> {
  const name = `xlb-bench-${what}-${randomBytes(3).toString('hex')}`.slice(0, 40);
  execFileSync('ip', ['netns', 'add', name]);
  try {
    execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    const timed = (argv: string[], input?: string | Buffer) => {
      const t0 = performance.now();
      // nsenter, not `ip netns exec`: no mount namespace to set up, so the
      // time measured is the tool's (plus one setns and exec).
      const r = spawnSync('nsenter', [`--net=/run/netns/${name}`, '--', ...argv], { input, maxBuffer: 512 << 20 });
      const ms = performance.now() - t0;
      if (r.error) throw new Error(`${argv.join(' ')} in ${name}: ${r.error.message}`);
      if (r.status !== 0) throw new Error(`${argv.join(' ')} in ${name}: exit ${r.status}: ${String(r.stderr).trim().slice(0, 2000)}`);
      return { ms, stdout: String(r.stdout) };
    };
    return await fn({ name, timed, run: (argv, input) => timed(argv, input).stdout });
  } finally {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  }
}

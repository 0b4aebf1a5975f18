/**
 * The probes the checks are made of, each one command run as a client
 * through the environment: an HTTP request on a new connection (curl), a
 * UDP datagram on a connected socket (socat), a DNS lookup (dig). A probe
 * never throws for a path that does not work: it says what the client got.
 */
import type { Actor, ConnectivityEnv } from './env.js';

/** What a server said: its pod's name and the client address it saw. */
export interface Echo {
  pod: string;
  /** The peer IP the server saw (its connection's remote address). */
  peer: string;
}

/** A probe's outcome: the answer, or why there was none (curl's, socat's or dig's own words). */
export type ProbeResult<T> = { ok: true; value: T } | { ok: false; error: string };

/** How a report names an actor: `pod n1p3 (node1)`, `node node1`, `outside 198.18.1.2`. */
export function actorName(env: Pick<ConnectivityEnv, 'outside'>, a: Actor): string {
  if (a.kind === 'pod') return `pod ${a.pod.name} (${a.pod.node})`;
  if (a.kind === 'node') return `node ${a.node.name}`;
  return `outside ${env.outside.ip}`;
}

/** The last non-empty line of a command's stderr, or its exit status. */
function why(r: { status: number | null; stderr: string }, tool: string): string {
  const line = r.stderr.trim().split('\n').filter(Boolean).pop();
  if (line) return line;
  return r.status === null ? `${tool} was killed by its timeout` : `${tool} exited ${r.status}`;
}

/**
 * One HTTP GET to `http://host:port/` on a new connection, as `actor`:
 * connection within 2 s, answer within 3 s.
 * @param opts.localPort the client's source port (default: the kernel's pick)
 * @returns the server's echo, or curl's error (`curl: (28) Connection timed out after 2001 milliseconds`)
 */
export async function httpProbe(env: ConnectivityEnv, actor: Actor, host: string, port: number, opts: { localPort?: number } = {}): Promise<ProbeResult<Echo>> {
  const local = opts.localPort ? ['--local-port', String(opts.localPort)] : [];
  const r = await env.exec(actor, ['curl', '-sS', '--connect-timeout', '2', '-m', '3', ...local, `http://${host}:${port}/`], { timeoutMs: 5000 });
  if (r.status !== 0) return { ok: false, error: why(r, 'curl') };
  const m = /^(\S+) (\d+\.\d+\.\d+\.\d+):\d+\s*$/.exec(r.stdout);
  if (!m) return { ok: false, error: `unexpected answer ${JSON.stringify(r.stdout.slice(0, 80))}` };
  return { ok: true, value: { pod: m[1], peer: m[2] } };
}

/**
 * One datagram to `host:port` from a connected UDP socket, as `actor`
 * (socat, which waits 2 s for the answer).
 * @returns the name of the pod that answered, or why none did
 */
export async function udpProbe(env: ConnectivityEnv, actor: Actor, host: string, port: number): Promise<ProbeResult<string>> {
  const r = await env.exec(actor, ['socat', '-T', '2', '-', `UDP:${host}:${port}`], { timeoutMs: 5000, input: 'xlb connectivity test\n' });
  if (r.status !== 0) return { ok: false, error: why(r, 'socat') };
  const pod = r.stdout.trim().split('\n')[0];
  if (!pod) return { ok: false, error: 'no answer within 2 s' };
  return { ok: true, value: pod };
}

/**
 * The A records of `name` through the actor's resolver configuration (a
 * pod's: the cluster DNS), UDP, 2 s a try, 2 tries.
 * @returns the addresses (possibly none: NXDOMAIN), or dig's error
 */
export async function dnsProbe(env: ConnectivityEnv, actor: Actor, name: string): Promise<ProbeResult<string[]>> {
  const r = await env.exec(actor, ['dig', '+short', '+time=2', '+tries=2', 'A', name], { timeoutMs: 8000 });
  if (r.status !== 0) return { ok: false, error: why(r, 'dig') || r.stdout.trim() };
  const lines = r.stdout.trim().split('\n').filter(Boolean);
  // dig prints ";; ..." lines (timeouts) on stdout and still exits 0 with +short on some versions.
  const bad = lines.find((l) => l.startsWith(';;'));
  if (bad) return { ok: false, error: bad.replace(/^;;\s*/, '') };
  return { ok: true, value: lines };
}

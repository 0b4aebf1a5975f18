/**
 * Supervision of one gobgpd per node. xlb starts gobgpd with no config file
 * (everything is configured over gRPC by the announcer), restarts it with a
 * capped, jittered exponential backoff when it exits, and stops it with
 * SIGTERM, then SIGKILL after a deadline.
 *
 * gobgpd runs in the caller's network namespace unless `commandPrefix` says
 * otherwise (tests use `ip netns exec NS`, which execs gobgpd in place, so the
 * pid and signals are gobgpd's own).
 *
 * gobgpd's JSON log lines (stdout) are parsed and re-emitted as `log` events:
 * the gRPC API does not expose why a session failed, the log does ("sent
 * notification" with the error, "Peer Down" with the reason).
 *
 * With `external`, nothing is spawned: the announcer talks to a gobgpd that
 * someone else runs, and this class only reports its address.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { Logger } from 'pino';

/**
 * The path of an executable: `name` itself when it contains a slash, else the
 * first match in PATH.
 * @param field names the setting in the error
 * @throws Error `<field>: ...` when there is none
 */
export function findExecutable(name: string, field = 'bgp.gobgpd.binary'): string {
  const candidates = name.includes('/') ? [name] : (process.env.PATH ?? '').split(':').filter(Boolean).map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      if (fs.statSync(c).isFile()) return c;
    } catch {
      // not this one
    }
  }
  throw new Error(`${field}: ${name} is not an executable file${name.includes('/') ? '' : ' in PATH'}`);
}

/** Options of {@link GobgpdSupervisor}. */
export interface GobgpdOptions {
  /** The gobgpd executable; default `gobgpd` (looked up in PATH). */
  binary?: string;
  /** API on `127.0.0.1:<apiPort>` (gobgpd's `--api-hosts`); default 50051. */
  apiPort?: number;
  /**
   * API on this unix socket instead of TCP (`--api-hosts unix://PATH`). A
   * filesystem socket is reachable from every network namespace, which is how
   * a process outside gobgpd's namespace talks to it.
   */
  apiSocket?: string;
  /** `HOST:PORT` of a gobgpd run by someone else: spawn nothing. */
  external?: string;
  /** Argv put before the binary, e.g. `['ip', 'netns', 'exec', 'ns1']`. */
  commandPrefix?: string[];
  /**
   * Start gobgpd through `setpriv --pdeathsig TERM` (util-linux) so that it
   * dies with the agent even when the agent is SIGKILLed; an orphaned gobgpd
   * would hold the API address and make every new one exit. Default true.
   */
  dieWithParent?: boolean;
  /** gobgpd's `--log-level`; it knows `debug` and `info`. Default info. */
  logLevel?: 'debug' | 'info';
  /** First restart delay, ms; default 200. Doubles per quick exit. */
  restartInitialMs?: number;
  /** Restart delay cap, ms; default 10000. */
  restartMaxMs?: number;
  /** ± fraction of random jitter on each delay; default 0.2. */
  restartJitter?: number;
  /** A run at least this long resets the backoff, ms; default 10000. */
  stableAfterMs?: number;
  /** Wait after SIGTERM before SIGKILL, ms; default 5000. */
  stopTimeoutMs?: number;
  log?: Logger;
}

/** One parsed gobgpd log line (logrus JSON: `level`, `msg`, `time`, and fields such as `Topic`, `Key`). */
export interface GobgpdLogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

/** Events of {@link GobgpdSupervisor}. */
export interface GobgpdEvents {
  /** A gobgpd process was started; `restarts` counts the starts after the first. */
  spawn: [{ pid: number; restarts: number }];
  /** gobgpd exited; `restartInMs` is undefined when it will not be restarted (stopping). */
  exit: [{ pid: number; code: number | null; signal: NodeJS.Signals | null; restartInMs?: number }];
  log: [GobgpdLogLine];
}

/**
 * Runs gobgpd and keeps it running. Start with {@link GobgpdSupervisor.start},
 * stop with {@link GobgpdSupervisor.stop}; listen to `spawn` to reconfigure the
 * fresh process, which knows nothing of the previous one's state.
 */
export class GobgpdSupervisor extends EventEmitter<GobgpdEvents> {
  /** The grpc-js target of gobgpd's API (`127.0.0.1:PORT`, `unix:///path`, or the external address). */
  readonly target: string;
  /** Starts after the first (crash restarts). */
  restarts = 0;
  /** gobgpd's last error or fatal log line (why it exited, e.g. the API address is in use). */
  lastError?: string;
  private child?: ChildProcess;
  private stopping = false;
  private quickExits = 0;
  private restartTimer?: NodeJS.Timeout;
  private readonly o: Required<Omit<GobgpdOptions, 'external' | 'apiSocket' | 'log' | 'commandPrefix'>> & GobgpdOptions;

  /** @throws Error naming `bgp.gobgpd.<field>` when options contradict each other */
  constructor(opts: GobgpdOptions = {}) {
    super();
    if (opts.external && (opts.apiSocket || opts.binary || opts.commandPrefix)) {
      throw new Error('bgp.gobgpd.external: an external gobgpd excludes binary, apiSocket and commandPrefix (nothing is spawned)');
    }
    this.o = {
      binary: 'gobgpd',
      apiPort: 50051,
      logLevel: 'info',
      dieWithParent: true,
      restartInitialMs: 200,
      restartMaxMs: 10_000,
      restartJitter: 0.2,
      stableAfterMs: 10_000,
      stopTimeoutMs: 5000,
      // An option given as undefined means "default", not "unset".
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    };
    this.target = opts.external ?? (opts.apiSocket ? `unix://${opts.apiSocket}` : `127.0.0.1:${this.o.apiPort}`);
  }

  /** True when this supervisor runs no process (external gobgpd). */
  get external(): boolean {
    return Boolean(this.o.external);
  }

  /** Pid of the running gobgpd, if one runs. */
  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  /**
   * Spawn gobgpd (no-op when external). Resolves once the process exists; the
   * API comes up shortly after, so callers retry their first call.
   * @throws Error naming the binary when it cannot be executed
   */
  async start(): Promise<void> {
    if (this.external) return;
    // Through setpriv or `ip netns exec`, a missing gobgpd shows only as exit
    // code 127 and a restart loop: check up front to fail with a clear error.
    findExecutable(this.o.binary);
    if (this.o.dieWithParent) findExecutable('setpriv', 'bgp.gobgpd (setpriv from util-linux, to stop gobgpd with the agent)');
    this.stopping = false;
    await this.spawnOnce();
  }

  /** The delay before the next restart: initial·2^n, capped, ± jitter. */
  private nextDelayMs(): number {
    const base = Math.min(this.o.restartMaxMs, this.o.restartInitialMs * 2 ** Math.max(0, this.quickExits - 1));
    const jitter = 1 + this.o.restartJitter * (Math.random() * 2 - 1);
    return Math.round(Math.min(this.o.restartMaxMs, base * jitter));
  }

  private args(): string[] {
    const apiHosts = this.o.apiSocket ? `unix://${this.o.apiSocket}` : `127.0.0.1:${this.o.apiPort}`;
    // --pprof-disable: gobgpd otherwise binds localhost:6060, which a second
    // instance (or anything else on the node) would collide with.
    const deathSig = this.o.dieWithParent ? ['setpriv', '--pdeathsig', 'TERM'] : [];
    return [...(this.o.commandPrefix ?? []), ...deathSig, this.o.binary, '--api-hosts', apiHosts, '--log-level', this.o.logLevel, '--pprof-disable'];
  }

  private spawnOnce(): Promise<void> {
    // gobgpd exits fatally when its API socket path exists (a previous
    // instance was SIGKILLed and left it): remove the stale socket first.
    if (this.o.apiSocket) fs.rmSync(this.o.apiSocket, { force: true });
    const [cmd, ...args] = this.args();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const startedAt = Date.now();
    return new Promise((resolve, reject) => {
      child.once('error', (err) => {
        // spawn failure (ENOENT, EACCES): no 'exit' follows, and retrying will not help.
        if (this.child === child) this.child = undefined;
        reject(new Error(`bgp.gobgpd.binary: cannot run ${[cmd, ...args].join(' ')}: ${err.message}`));
      });
      child.once('spawn', () => {
        this.child = child;
        this.o.log?.info({ pid: child.pid, restarts: this.restarts, cmd: [cmd, ...args].join(' ') }, 'gobgpd started');
        this.emit('spawn', { pid: child.pid!, restarts: this.restarts });
        resolve();
      });
      readline.createInterface({ input: child.stdout! }).on('line', (line) => this.onLogLine(line));
      readline.createInterface({ input: child.stderr! }).on('line', (line) => this.onLogLine(line));
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = undefined;
        if (this.stopping) {
          this.emit('exit', { pid: child.pid!, code, signal });
          return;
        }
        this.quickExits = Date.now() - startedAt >= this.o.stableAfterMs ? 1 : this.quickExits + 1;
        const restartInMs = this.scheduleRestart();
        this.o.log?.warn({ pid: child.pid, code, signal, restartInMs }, 'gobgpd exited; restarting');
        this.emit('exit', { pid: child.pid!, code, signal, restartInMs });
      });
    });
  }

  /** Arm the restart timer; a restart that fails to spawn counts as a quick exit and is retried. @returns the delay, ms */
  private scheduleRestart(): number {
    const delay = this.nextDelayMs();
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping) return;
      this.restarts++;
      this.spawnOnce().catch((err) => {
        this.quickExits++;
        const again = this.scheduleRestart();
        this.o.log?.error({ err, restartInMs: again }, 'gobgpd restart failed');
      });
    }, delay);
    return delay;
  }

  private onLogLine(line: string): void {
    let parsed: GobgpdLogLine;
    try {
      const v = JSON.parse(line);
      parsed = typeof v === 'object' && v !== null && typeof v.msg === 'string' ? v : { level: 'info', msg: line };
    } catch {
      // Not JSON: Go runtime panics and `ip netns exec` errors go to stderr as text.
      parsed = { level: 'error', msg: line };
    }
    if (parsed.level === 'error' || parsed.level === 'fatal' || parsed.level === 'panic') {
      const detail = parsed.Err ?? parsed.Error;
      this.lastError = `${parsed.msg}${detail ? `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}` : ''}`;
    }
    if (this.o.log) {
      const { level, msg, time: _time, ...fields } = parsed;
      const lvl = level === 'warning' ? 'warn' : level === 'fatal' || level === 'panic' ? 'error' : level === 'debug' ? 'debug' : level === 'error' ? 'error' : 'info';
      // gobgpd's info lines (every peer added, every policy set) are noise at the agent's info level.
      this.o.log[lvl === 'info' ? 'debug' : lvl]({ gobgpd: fields }, `gobgpd: ${msg}`);
    }
    this.emit('log', parsed);
  }

  /**
   * Stop supervising: SIGTERM gobgpd (it closes sessions with a Cease
   * NOTIFICATION), SIGKILL after `stopTimeoutMs`, and resolve when it exited.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      this.o.log?.warn({ pid: child.pid, afterMs: this.o.stopTimeoutMs }, 'gobgpd ignored SIGTERM; sending SIGKILL');
      child.kill('SIGKILL');
    }, this.o.stopTimeoutMs);
    await exited;
    clearTimeout(timer);
    if (this.o.apiSocket) fs.rmSync(this.o.apiSocket, { force: true });
  }
}

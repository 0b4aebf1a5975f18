/**
 * Supervision of one gobgpd per node. xlb starts gobgpd with no config file
 * (everything is configured over gRPC by the announcer), restarts it with a
 * capped, jittered exponential backoff when it exits, and stops it with
 * SIGTERM, then SIGKILL after a deadline.
 *
 * gobgpd outlives the agent, so that an agent restart (SIGTERM, kill -9, an
 * upgrade) does not drop the BGP sessions and the routes with them:
 *
 * - it runs in its own session (setsid), so signals for the agent's process
 *   group do not reach it, and nothing ties its life to the agent's;
 * - its output goes to a log file next to its API socket, not to pipes that
 *   would break when the agent exits; the supervisor follows that file;
 * - its pid is recorded next to the API socket. The next supervisor with the
 *   same API address finds it there and adopts it (pid alive, the process is
 *   gobgpd serving that very address, its API answers) instead of spawning
 *   one; an adopted gobgpd is supervised like a spawned one (polled, since
 *   it is not this process's child).
 *
 * {@link GobgpdSupervisor.detach} leaves gobgpd running (an agent restart);
 * {@link GobgpdSupervisor.stop} stops it and removes the socket and the pid
 * file (an uninstall, a node leaving); {@link stopKeptGobgpd} does the latter
 * with no agent running (`xlb uninstall`).
 *
 * Files, for an API socket `/run/xlb/gobgpd.sock` (`.sock` dropped):
 * `/run/xlb/gobgpd.pid`, `/run/xlb/gobgpd.log` (the previous process's log
 * moved to `gobgpd.log.old` at each spawn). With a TCP API port and no
 * socket: `/run/xlb/gobgpd-<port>.pid` and `.log`, unless `pidFile` says
 * otherwise.
 *
 * gobgpd runs in the caller's network namespace unless `commandPrefix` says
 * otherwise (tests use `ip netns exec NS`, which execs gobgpd in place, so the
 * pid and signals are gobgpd's own).
 *
 * gobgpd's JSON log lines are parsed and re-emitted as `log` events: the gRPC
 * API does not expose why a session failed, the log does ("sent
 * notification" with the error, "Peer Down" with the reason).
 *
 * With `external`, nothing is spawned: the announcer talks to a gobgpd that
 * someone else runs, and this class only reports its address.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
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

/** Where the pid and log files go when the API is a TCP port (no socket to put them next to). */
export const DEFAULT_RUN_DIR = '/run/xlb';

/** The log file is truncated when it grows past this (gobgpd appends, O_APPEND, so it goes on at 0). */
const LOG_MAX_BYTES = 16 * 1024 * 1024;

/** How often the log file is read for new lines, ms. */
const LOG_POLL_MS = 200;

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
   * Where the running gobgpd's pid is recorded (for the next agent to adopt
   * it); its output goes to the same path with `.log`. Default: next to the
   * API socket (`gobgpd.sock` → `gobgpd.pid`), or
   * `/run/xlb/gobgpd-<apiPort>.pid` with a TCP API.
   */
  pidFile?: string;
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
  /** How often an adopted gobgpd (not this process's child) is checked for life, ms; default 250. */
  adoptedPollMs?: number;
  /** How long a gobgpd found running may take to answer its API before it is killed and replaced, ms; default 3000. */
  adoptTimeoutMs?: number;
  /**
   * Asks the API of a gobgpd found running; resolves when it answers, rejects
   * otherwise. Default: a connection to the API address is accepted. The
   * announcer passes a gRPC call (GetBgp).
   */
  probe?: () => Promise<void>;
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
  /** A gobgpd left running by an earlier supervisor (a previous agent) was taken over; it keeps its state. */
  adopt: [{ pid: number }];
  /**
   * gobgpd exited; `restartInMs` is undefined when it will not be restarted
   * (stopping). code and signal are null for an adopted gobgpd (not this
   * process's child: its exit status is its reaper's).
   */
  exit: [{ pid: number; code: number | null; signal: NodeJS.Signals | null; restartInMs?: number }];
  log: [GobgpdLogLine];
}

/** How {@link GobgpdSupervisor.start} got its gobgpd. */
export type GobgpdStart = 'spawned' | 'adopted' | 'external';

/** The pid and log files of a supervised gobgpd (see the module comment). */
export function gobgpdFiles(o: Pick<GobgpdOptions, 'apiSocket' | 'apiPort' | 'pidFile'>): { pidFile: string; logFile: string } {
  const pidFile = o.pidFile ?? (o.apiSocket ? `${o.apiSocket.replace(/\.sock$/, '')}.pid` : path.join(DEFAULT_RUN_DIR, `gobgpd-${o.apiPort ?? 50051}.pid`));
  return { pidFile, logFile: `${pidFile.replace(/\.pid$/, '')}.log` };
}

/** The state letter of /proc/PID/stat (R, S, D, Z, ...), or undefined when there is no such process. */
function procState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "PID (comm) S ...": comm may hold spaces and parentheses; the state follows the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) || undefined;
  } catch {
    return undefined;
  }
}

/** True while `pid` runs (a zombie, exited but not yet reaped, does not count). */
export function processRunning(pid: number): boolean {
  const s = procState(pid);
  return s !== undefined && s !== 'Z' && s !== 'X' && s !== 'x';
}

/** argv of a process (/proc/PID/cmdline), or undefined when it is gone. */
function procArgv(pid: number): string[] | undefined {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
  } catch {
    return undefined;
  }
}

/**
 * Follows gobgpd's log file: every {@link LOG_POLL_MS} the new bytes are read
 * and split into lines. A file that shrank was truncated (by this class, past
 * {@link LOG_MAX_BYTES}): reading starts over at 0.
 */
class LogTail {
  private fd?: number;
  private offset = 0;
  private partial = '';
  private readonly timer: NodeJS.Timeout;

  /** @param fromEnd skip what the file holds now (an adopted gobgpd's old lines) */
  constructor(
    private readonly file: string,
    fromEnd: boolean,
    private readonly onLine: (line: string) => void,
  ) {
    try {
      this.fd = fs.openSync(file, 'r');
      if (fromEnd) this.offset = fs.fstatSync(this.fd).size;
    } catch {
      // Not there (yet): poll() opens it.
    }
    this.timer = setInterval(() => this.poll(), LOG_POLL_MS);
    this.timer.unref();
  }

  /** Read what was appended since the last call. Never throws. */
  poll(): void {
    try {
      this.fd ??= fs.openSync(this.file, 'r');
      const size = fs.fstatSync(this.fd).size;
      if (size < this.offset) {
        this.offset = 0;
        this.partial = '';
      }
      const buf = Buffer.alloc(64 * 1024);
      while (this.offset < size) {
        const n = fs.readSync(this.fd, buf, 0, buf.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        const lines = (this.partial + buf.subarray(0, n).toString('utf8')).split('\n');
        this.partial = lines.pop() ?? '';
        for (const l of lines) if (l.trim()) this.onLine(l);
      }
      if (this.offset > LOG_MAX_BYTES) {
        fs.truncateSync(this.file, 0);
        this.offset = 0;
        this.partial = '';
      }
    } catch {
      // The file went away (removed with the state directory): nothing to read.
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.poll();
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * Runs gobgpd and keeps it running. Start with {@link GobgpdSupervisor.start}
 * (which adopts a gobgpd an earlier supervisor left running), stop with
 * {@link GobgpdSupervisor.stop} or leave it running with
 * {@link GobgpdSupervisor.detach}; listen to `spawn` to reconfigure a fresh
 * process, which knows nothing of the previous one's state.
 */
export class GobgpdSupervisor extends EventEmitter<GobgpdEvents> {
  /** The grpc-js target of gobgpd's API (`127.0.0.1:PORT`, `unix:///path`, or the external address). */
  readonly target: string;
  /** Where the pid of the running gobgpd is recorded (undefined when external). */
  readonly pidFile?: string;
  /** Where gobgpd's output goes (undefined when external). */
  readonly logFile?: string;
  /** Starts after the first (crash restarts). An adoption is not a start. */
  restarts = 0;
  /** gobgpd's last error or fatal log line (why it exited, e.g. the API address is in use). */
  lastError?: string;
  private child?: ChildProcess;
  /** The pid of an adopted gobgpd (not this process's child). */
  private adoptedPid?: number;
  private pollTimer?: NodeJS.Timeout;
  private tail?: LogTail;
  private stopping = false;
  private quickExits = 0;
  private restartTimer?: NodeJS.Timeout;
  private readonly o: Required<Omit<GobgpdOptions, 'external' | 'apiSocket' | 'log' | 'commandPrefix' | 'pidFile' | 'probe'>> & GobgpdOptions;

  /** @throws Error naming `bgp.gobgpd.<field>` when options contradict each other */
  constructor(opts: GobgpdOptions = {}) {
    super();
    if (opts.external && (opts.apiSocket || opts.binary || opts.commandPrefix || opts.pidFile)) {
      throw new Error('bgp.gobgpd.external: an external gobgpd excludes binary, apiSocket, pidFile and commandPrefix (nothing is spawned)');
    }
    this.o = {
      binary: 'gobgpd',
      apiPort: 50051,
      logLevel: 'info',
      restartInitialMs: 200,
      restartMaxMs: 10_000,
      restartJitter: 0.2,
      stableAfterMs: 10_000,
      stopTimeoutMs: 5000,
      adoptedPollMs: 250,
      adoptTimeoutMs: 3000,
      // An option given as undefined means "default", not "unset".
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    };
    this.target = opts.external ?? (opts.apiSocket ? `unix://${opts.apiSocket}` : `127.0.0.1:${this.o.apiPort}`);
    if (!opts.external) Object.assign(this, gobgpdFiles(this.o));
  }

  /** True when this supervisor runs no process (external gobgpd). */
  get external(): boolean {
    return Boolean(this.o.external);
  }

  /** Pid of the running gobgpd (spawned or adopted), if one runs. */
  get pid(): number | undefined {
    if (this.adoptedPid !== undefined) return this.adoptedPid;
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  /** True when the running gobgpd was adopted from an earlier supervisor rather than spawned. */
  get adopted(): boolean {
    return this.adoptedPid !== undefined;
  }

  private get apiHosts(): string {
    return this.o.apiSocket ? `unix://${this.o.apiSocket}` : `127.0.0.1:${this.o.apiPort}`;
  }

  /**
   * Adopt the gobgpd an earlier supervisor left running, or spawn one (no-op
   * when external). After a spawn the API comes up shortly after, so callers
   * retry their first call; an adopted gobgpd has answered already.
   * @throws Error naming the binary when it cannot be executed
   */
  async start(): Promise<GobgpdStart> {
    if (this.external) return 'external';
    // Through `ip netns exec`, a missing gobgpd shows only as exit code 127
    // and a restart loop: check up front to fail with a clear error.
    findExecutable(this.o.binary);
    this.stopping = false;
    const kept = await this.findKept();
    if (kept !== undefined) {
      this.adopt(kept);
      return 'adopted';
    }
    await this.spawnOnce();
    return 'spawned';
  }

  /** The recorded pid when it is a running gobgpd serving this API address, else undefined. */
  recordedPid(): number | undefined {
    if (!this.pidFile) return undefined;
    let pid: number;
    try {
      pid = Number(fs.readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
    if (!Number.isSafeInteger(pid) || pid <= 1 || !processRunning(pid)) return undefined;
    // The pid may have been reused by something else since: check it is gobgpd on our API address.
    const argv = procArgv(pid) ?? [];
    const bin = path.basename(this.o.binary);
    const hosts = argv.indexOf('--api-hosts');
    if (!argv.some((a) => path.basename(a) === bin) || hosts < 0 || argv[hosts + 1] !== this.apiHosts) return undefined;
    return pid;
  }

  /** A connection to the API address is accepted (the default probe). */
  private connectProbe(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = this.o.apiSocket ? net.connect(this.o.apiSocket) : net.connect(this.o.apiPort, '127.0.0.1');
      s.setTimeout(1000, () => s.destroy(new Error('no answer within 1000 ms')));
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
  }

  /**
   * The gobgpd an earlier supervisor left running, when it is alive, is
   * gobgpd on this API address and answers; one that does not answer within
   * `adoptTimeoutMs` is killed (it would hold the API address and the BGP
   * port) and undefined returned.
   */
  private async findKept(): Promise<number | undefined> {
    const pid = this.recordedPid();
    if (pid === undefined) return undefined;
    const probe = this.o.probe ?? (() => this.connectProbe());
    const deadline = Date.now() + this.o.adoptTimeoutMs;
    let last: Error | undefined;
    while (processRunning(pid)) {
      try {
        await probe();
        return pid;
      } catch (e) {
        last = e as Error;
      }
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (processRunning(pid)) {
      this.o.log?.warn({ pid, err: last?.message, afterMs: this.o.adoptTimeoutMs }, 'gobgpd left by the previous agent does not answer its API; killing it and starting a new one');
      await this.terminate(pid, 'SIGKILL');
    }
    return undefined;
  }

  private adopt(pid: number): void {
    this.adoptedPid = pid;
    this.tail?.close();
    this.tail = new LogTail(this.logFile!, true, (l) => this.onLogLine(l));
    this.pollTimer = setInterval(() => {
      if (this.adoptedPid !== pid || processRunning(pid)) return;
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
      this.adoptedPid = undefined;
      this.onExit(pid, null, null, undefined);
    }, this.o.adoptedPollMs);
    this.pollTimer.unref();
    this.o.log?.info({ pid, pidFile: this.pidFile, logFile: this.logFile }, 'gobgpd left running by the previous agent adopted: sessions and routes kept');
    this.emit('adopt', { pid });
  }

  /** The delay before the next restart: initial·2^n, capped, ± jitter. */
  private nextDelayMs(): number {
    const base = Math.min(this.o.restartMaxMs, this.o.restartInitialMs * 2 ** Math.max(0, this.quickExits - 1));
    const jitter = 1 + this.o.restartJitter * (Math.random() * 2 - 1);
    return Math.round(Math.min(this.o.restartMaxMs, base * jitter));
  }

  private args(): string[] {
    // --pprof-disable: gobgpd otherwise binds localhost:6060, which a second
    // instance (or anything else on the node) would collide with.
    return [...(this.o.commandPrefix ?? []), this.o.binary, '--api-hosts', this.apiHosts, '--log-level', this.o.logLevel, '--pprof-disable'];
  }

  /** Write the pid file atomically (a reader never sees half of it). */
  private recordPid(pid: number): void {
    const tmp = `${this.pidFile}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${pid}\n`);
    fs.renameSync(tmp, this.pidFile!);
  }

  private spawnOnce(): Promise<void> {
    // gobgpd exits fatally when its API socket path exists (a previous
    // instance was SIGKILLed and left it): remove the stale socket first.
    if (this.o.apiSocket) fs.rmSync(this.o.apiSocket, { force: true });
    fs.mkdirSync(path.dirname(this.pidFile!), { recursive: true });
    this.tail?.close();
    this.tail = undefined;
    // One earlier log is kept: why the previous gobgpd died is often in its last lines.
    if (fs.existsSync(this.logFile!)) fs.renameSync(this.logFile!, `${this.logFile}.old`);
    const out = fs.openSync(this.logFile!, 'a');
    const [cmd, ...args] = this.args();
    let child: ChildProcess;
    try {
      // detached: its own session, so that it outlives the agent and no
      // signal meant for the agent's process group reaches it.
      child = spawn(cmd, args, { stdio: ['ignore', out, out], detached: true });
    } finally {
      // The child has its own copy of the descriptor once spawn() returns.
      fs.closeSync(out);
    }
    const startedAt = Date.now();
    return new Promise((resolve, reject) => {
      child.once('error', (err) => {
        // spawn failure (ENOENT, EACCES): no 'exit' follows, and retrying will not help.
        if (this.child === child) this.child = undefined;
        reject(new Error(`bgp.gobgpd.binary: cannot run ${[cmd, ...args].join(' ')}: ${err.message}`));
      });
      child.once('spawn', () => {
        this.child = child;
        this.adoptedPid = undefined;
        try {
          this.recordPid(child.pid!);
        } catch (e) {
          this.o.log?.warn({ pidFile: this.pidFile, err: (e as Error).message }, 'gobgpd pid not recorded: the next agent cannot adopt it');
        }
        this.tail = new LogTail(this.logFile!, false, (l) => this.onLogLine(l));
        this.o.log?.info({ pid: child.pid, restarts: this.restarts, cmd: [cmd, ...args].join(' '), logFile: this.logFile }, 'gobgpd started');
        this.emit('spawn', { pid: child.pid!, restarts: this.restarts });
        resolve();
      });
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = undefined;
        this.onExit(child.pid!, code, signal, startedAt);
      });
    });
  }

  /** A gobgpd (spawned or adopted) exited: restart it unless stopping. */
  private onExit(pid: number, code: number | null, signal: NodeJS.Signals | null, startedAt: number | undefined): void {
    // Its last lines say why (e.g. the API address is in use).
    this.tail?.poll();
    if (this.stopping) {
      this.emit('exit', { pid, code, signal });
      return;
    }
    this.quickExits = startedAt === undefined || Date.now() - startedAt >= this.o.stableAfterMs ? 1 : this.quickExits + 1;
    const restartInMs = this.scheduleRestart();
    this.o.log?.warn({ pid, code, signal, restartInMs }, 'gobgpd exited; restarting');
    this.emit('exit', { pid, code, signal, restartInMs });
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
      // Not JSON: Go runtime panics and `ip netns exec` errors are text.
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

  /** Stop timers and the log tail; no restart after this. */
  private quiesce(): void {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  /**
   * Stop supervising and leave gobgpd running with its sessions and paths,
   * its pid recorded, for the next supervisor to adopt (an agent restart).
   * Idempotent.
   */
  detach(): void {
    this.quiesce();
    const pid = this.pid;
    this.tail?.close();
    this.tail = undefined;
    if (this.child) {
      this.child.removeAllListeners('exit');
      this.child.unref();
      this.child = undefined;
    }
    this.adoptedPid = undefined;
    if (pid !== undefined) this.o.log?.info({ pid, pidFile: this.pidFile }, 'gobgpd left running for the next agent');
  }

  /**
   * SIGTERM `pid` (it closes sessions with a Cease NOTIFICATION), SIGKILL
   * after `stopTimeoutMs`, and resolve once it no longer runs.
   */
  private async terminate(pid: number, first: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child?.pid === pid ? this.child : undefined;
    const gone = () => (child ? child.exitCode !== null || child.signalCode !== null : !processRunning(pid));
    const send = (sig: NodeJS.Signals) => {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    };
    send(first);
    const killAt = Date.now() + this.o.stopTimeoutMs;
    let killed = first === 'SIGKILL';
    while (!gone()) {
      if (!killed && Date.now() > killAt) {
        this.o.log?.warn({ pid, afterMs: this.o.stopTimeoutMs }, 'gobgpd ignored SIGTERM; sending SIGKILL');
        send('SIGKILL');
        killed = true;
      }
      if (killed && Date.now() > killAt + 5000) throw new Error(`gobgpd pid ${pid} still runs 5 s after SIGKILL`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Stop supervising and stop gobgpd (spawned or adopted): SIGTERM, SIGKILL
   * after `stopTimeoutMs`; then remove the API socket and the pid file (an
   * uninstall, or a node leaving). Resolves when it exited.
   */
  async stop(): Promise<void> {
    this.quiesce();
    const pid = this.pid;
    if (pid !== undefined) await this.terminate(pid);
    this.child = undefined;
    this.adoptedPid = undefined;
    this.tail?.close();
    this.tail = undefined;
    if (this.external) return;
    if (this.o.apiSocket) fs.rmSync(this.o.apiSocket, { force: true });
    fs.rmSync(this.pidFile!, { force: true });
  }

  /**
   * Stop the gobgpd recorded in the pid file, with no supervisor running it
   * (`xlb uninstall`): SIGTERM, SIGKILL after `stopTimeoutMs`; remove the
   * socket and pid file.
   * @returns the pid stopped, or undefined when none ran
   */
  async stopRecorded(): Promise<number | undefined> {
    if (this.external) return undefined;
    this.quiesce();
    const pid = this.recordedPid();
    if (pid !== undefined) await this.terminate(pid);
    // A pid file that names no running gobgpd is stale either way.
    fs.rmSync(this.pidFile!, { force: true });
    if (pid !== undefined && this.o.apiSocket) fs.rmSync(this.o.apiSocket, { force: true });
    return pid;
  }
}

/**
 * Stop the gobgpd that an agent with this `bgp:` section left running (an
 * agent restart keeps it; `xlb uninstall` and a lab's teardown end it): the
 * pid file names it, it is checked to be gobgpd on that API address,
 * SIGTERMed (its sessions close with a Cease NOTIFICATION, so routers drop
 * the routes at once), SIGKILLed after 5 s; the socket and pid file are
 * removed. Nothing happens with `gobgpd.external`.
 * @param bgp the parsed `bgp:` section (only `gobgpd` is read)
 * @returns what was removed, for the caller to print (`gobgpd pid N (...)`), or undefined
 */
export async function stopKeptGobgpd(bgp: { gobgpd: Pick<GobgpdOptions, 'binary' | 'apiPort' | 'apiSocket' | 'external' | 'pidFile'> }, opts: { log?: Logger } = {}): Promise<string | undefined> {
  const g = bgp.gobgpd;
  if (g.external) return undefined;
  const s = new GobgpdSupervisor({ binary: g.binary, apiPort: g.apiPort, apiSocket: g.apiSocket, pidFile: g.pidFile, log: opts.log });
  const pid = await s.stopRecorded();
  return pid === undefined ? undefined : `gobgpd pid ${pid} (${s.target}, ${s.pidFile})`;
}

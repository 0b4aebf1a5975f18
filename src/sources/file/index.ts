/**
 * The manifests-file source: reads Services and EndpointSlices from a YAML or
 * JSON file (see parse.ts) and emits a new snapshot whenever its content
 * changes.
 *
 * The directory is watched, not the file: editors that write a new file and
 * rename it over the old one, `mv` into place, and Kubernetes ConfigMap
 * volumes (which swap a `..data` symlink) replace the inode, and a watch on
 * the old inode would go quiet. Any event in the directory schedules a read;
 * a read whose content equals the last one emits nothing.
 *
 * A change is a transaction: it is applied only as a whole file, once the
 * writes have settled. Events are debounced (10 ms of quiet, at most 20 ms
 * after the first event); then the file is read only when it has not been
 * modified for `settleMs` (50 ms, so that a change still reaches the
 * datapath within 100 ms; four times that when a YAML file does not end
 * with a line break, as a file cut short mid-line does not), and read again
 * when it changed while being read; a version that is a prefix of the last,
 * has fewer objects, or has objects broken that the last had whole, waits
 * four times `settleMs` from its modification (a prefix of a file is often
 * a valid file). A
 * file written in place in two steps is so read once, whole. Writing a new file and renaming it over the
 * old one (README, "Updating the manifests file") needs none of this.
 *
 * A file that cannot be read or parsed, is larger than `maxBytes` (4 MiB),
 * is not UTF-8, or holds no Kubernetes object (empty, blank, a comment,
 * `null`, a scalar) is reported (logger and `onError`) and the last good
 * snapshot stays in force; removing every service is said with an empty
 * `List`. At start, it is an error instead. The issues of one version are
 * capped at {@link MAX_ISSUES}, with a count of the rest.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Source, Snapshot } from '../source.js';
import { normalizeObjects, SERVICE_NAME_LABEL, type NormalizeOptions } from '../normalize.js';
import type { EndpointSliceModel, ServiceModel } from '../../model/types.js';
import { checkHasManifests, decodeManifests, ManifestError, parseManifests } from './parse.js';
import { serviceKeysIn } from './keys.js';
import { ParseWorker, type ParsedVersion } from './worker.js';

export { ManifestError, parseManifests, type ParsedManifests } from './parse.js';

/** Quiet period after the last directory event before the file is read, ms. */
export const DEFAULT_DEBOUNCE_MS = 10;
/** Longest wait after the first event of a burst before the file is read, ms. */
export const DEFAULT_MAX_DELAY_MS = 20;
/** How long the file must have been left alone before it is read, ms. */
export const DEFAULT_SETTLE_MS = 50;
/** Largest manifests file read, bytes (4 MiB: about 2,000 Services with their EndpointSlices in YAML). */
export const DEFAULT_MAX_BYTES = 4 << 20;
/** Versions at least this long (bytes) are parsed on a worker thread, so the agent keeps answering. */
export const OFF_THREAD_BYTES = 64 * 1024;
/** Issues kept of one version of the file; the rest are counted in one more. */
export const MAX_ISSUES = 100;

/** Options of {@link FileSource}. */
export interface FileSourceOptions {
  /** Quiet period, ms (default {@link DEFAULT_DEBOUNCE_MS}). */
  debounceMs?: number;
  /** Upper bound of the debounce, ms (default {@link DEFAULT_MAX_DELAY_MS}). */
  maxDelayMs?: number;
  /** Quiet time after the file's last modification before it is read, ms (default {@link DEFAULT_SETTLE_MS}). */
  settleMs?: number;
  /** Largest file read, bytes (default {@link DEFAULT_MAX_BYTES}). */
  maxBytes?: number;
  /** Called for every read or parse failure after start (also logged). */
  onError?: (err: ManifestError) => void;
  /** Called when, after a failure, the file is back to the version in force (no snapshot is delivered then). */
  onRecovered?: () => void;
  /** Passed to the normalizer (unknown fields are rejected by default). */
  normalize?: NormalizeOptions;
}

type Log = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/** Reads a manifests file and follows its changes. See the module comment. */
export class FileSource implements Source {
  readonly file: string;
  private readonly dir: string;
  private watcher?: fs.FSWatcher;
  private timer?: NodeJS.Timeout;
  private burstStart = 0;
  private onSnapshot?: (s: Snapshot) => void;
  /** Text of the last read (good or bad), null after a failed read: only a change is processed. */
  private lastText: string | null = null;
  /** The message of the last problem reported, null after a good version: each is reported once. */
  private lastProblem: string | null = null;
  /** Text of the last version delivered. */
  private lastGoodText: string | null = null;
  /** Issues and objects (Services and EndpointSlices) of the last snapshot delivered. */
  private lastIssues = 0;
  private lastObjects = 0;
  /** The last snapshot's objects with their JSON, to hand unchanged ones on (see keepUnchanged). */
  private readonly previous = {
    services: new Map<string, { json: string; value: ServiceModel }>(),
    endpointSlices: new Map<string, { json: string; value: EndpointSliceModel }>(),
  };
  /**
   * When this agent first read each Service that has no
   * `metadata.creationTimestamp` (RFC 3339), by `namespace/name`: its
   * creation time as far as conflicts go (see {@link dateUndated}).
   */
  private firstSeen = new Map<string, string>();
  /** {@link firstSeen} as the version parsed last would leave it; taken when that version is delivered. */
  private pendingFirstSeen = new Map<string, string>();
  private stopped = false;
  private reloading = false;
  private reloadAgain = false;
  private readonly worker = new ParseWorker();
  /** Versions parsed on the worker thread so far. */
  offThreadParses = 0;

  /**
   * @param file the manifests file; a relative path resolves against the
   *   working directory (the config loader has already resolved it against
   *   the config file's directory)
   */
  constructor(
    file: string,
    private readonly log: Log,
    private readonly opts: FileSourceOptions = {},
  ) {
    this.file = path.resolve(file);
    this.dir = path.dirname(this.file);
  }

  /**
   * Read the file, deliver the first snapshot, then watch.
   * @throws ManifestError when the file cannot be read or parsed, or its
   *   directory cannot be watched
   */
  async start(onSnapshot: (s: Snapshot) => void): Promise<void> {
    if (this.onSnapshot) throw new Error(`file source ${this.file}: already started`);
    this.onSnapshot = onSnapshot;
    // Watch first, so that a change between the first read and the watch is not missed.
    try {
      this.watcher = fs.watch(this.dir, () => this.schedule());
    } catch (e) {
      throw new ManifestError(`${this.file}: cannot watch directory ${this.dir}: ${(e as Error).message}`, this.file);
    }
    this.watcher.on('error', (e) => this.report(new ManifestError(`${this.file}: watching ${this.dir} failed: ${e.message}`, this.file)));
    let text: string;
    try {
      text = this.read();
      this.lastText = text;
      const first = await this.parse(text);
      this.lastGoodText = text;
      this.lastIssues = first.issues.length;
      this.lastObjects = first.state.services.size + first.state.endpointSlices.size;
      this.emit(first);
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** Stop watching. No snapshot is delivered after this resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.worker.stop();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
  }

  private schedule(): void {
    if (this.stopped) return;
    const now = Date.now();
    const debounce = this.opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    const maxDelay = this.opts.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    if (this.timer) clearTimeout(this.timer);
    else this.burstStart = now;
    const delay = Math.max(0, Math.min(debounce, this.burstStart + maxDelay - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.reload();
    }, delay);
  }

  private async reload(): Promise<void> {
    if (this.stopped) return;
    // One version at a time: a change while one is parsed is read after it.
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = true;
    try {
      await this.reloadOnce();
    } finally {
      this.reloading = false;
      if (this.reloadAgain && !this.stopped) {
        this.reloadAgain = false;
        this.retryIn(0);
      }
    }
  }

  private async reloadOnce(): Promise<void> {
    const settle = this.opts.settleMs ?? DEFAULT_SETTLE_MS;
    let text: string;
    let before: fs.Stats;
    try {
      // Read only a file left alone for the settle time.
      before = fs.statSync(this.file);
      const age = Date.now() - before.mtimeMs;
      if (age < settle) return this.retryIn(settle - age);
      text = this.read();
      const after = fs.statSync(this.file);
      if (after.mtimeMs !== before.mtimeMs || after.size !== before.size || after.ino !== before.ino) return this.retryIn(settle);
      // A YAML file cut short mid-line lacks its final line break: give its writer longer.
      const unterminated = text.length > 0 && !text.endsWith('\n') && !/^\s*[[{]/.test(text);
      if (unterminated && age < 4 * settle) return this.retryIn(4 * settle - age);
    } catch (e) {
      const err = e instanceof ManifestError ? e : new ManifestError(`${this.file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, this.file);
      // Report each problem once, not on every event while it lasts.
      if (err.message !== this.lastProblem) this.report(err);
      this.lastProblem = err.message;
      this.lastText = null;
      return;
    }
    if (text === this.lastText || text === this.lastGoodText) {
      // Back to the version in force after a bad one: nothing to deliver.
      if (text !== this.lastText) {
        this.log.info({ file: this.file }, 'manifests back to the version in force');
        this.opts.onRecovered?.();
      } else this.log.debug({ file: this.file }, 'manifests unchanged; no snapshot');
      this.lastText = text;
      this.lastProblem = null;
      return;
    }
    let snap: Snapshot;
    try {
      snap = await this.parse(text);
      if (this.stopped) return;
    } catch (e) {
      this.lastText = text;
      this.lastProblem = (e as Error).message;
      this.report(e as ManifestError);
      return;
    }
    // Fewer objects than the last version, or objects it had whole broken,
    // in a file modified a moment ago: as likely a write cut short (a prefix
    // of a file is often a valid file) as an edit. Give its writer longer
    // before taking it as it is.
    const age = Date.now() - before.mtimeMs;
    const objects = snap.state.services.size + snap.state.endpointSlices.size;
    const prefix = this.lastGoodText !== null && text.length < this.lastGoodText.length && this.lastGoodText.startsWith(text);
    if ((prefix || snap.issues.length > this.lastIssues || objects < this.lastObjects) && age < 4 * settle) return this.retryIn(4 * settle - age);
    // A prefix of the version in force that stops mid-line is a write cut
    // short (its writer died, the disk filled): an edit that removes the
    // file's last objects still ends its last line. Such a prefix may well
    // parse, its last value cut (`port: 8` of `port: 80`): refused.
    if (prefix && !text.endsWith('\n')) {
      const err = new ManifestError(
        `${this.file}: looks cut short: it is the first ${text.length} of the ${this.lastGoodText!.length} bytes of the version in force and stops mid-line (write the whole file, then rename it over this one)`,
        this.file,
        text.split('\n').length,
      );
      this.lastText = text;
      if (err.message !== this.lastProblem) this.report(err);
      this.lastProblem = err.message;
      return;
    }
    this.lastGoodText = text;
    this.lastText = text;
    this.lastProblem = null;
    this.lastIssues = snap.issues.length;
    this.lastObjects = objects;
    this.emit(snap);
  }

  /** Read again in `ms` (the file is being written, or was written too recently). */
  private retryIn(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.reload();
    }, Math.ceil(ms) + 1);
  }

  private read(): string {
    const max = this.opts.maxBytes ?? DEFAULT_MAX_BYTES;
    let bytes: Buffer;
    try {
      const size = fs.statSync(this.file).size;
      if (size > max) {
        throw new ManifestError(`${this.file}: the file is ${(size / 2 ** 20).toFixed(1)} MiB, more than source.file.maxBytes (${(max / 2 ** 20).toFixed(1)} MiB); the last good state stays programmed`, this.file);
      }
      bytes = fs.readFileSync(this.file);
    } catch (e) {
      if (e instanceof ManifestError) throw e;
      const err = e as NodeJS.ErrnoException;
      throw new ManifestError(`${this.file}: cannot read: ${err.code ?? err.message}`, this.file);
    }
    if (bytes.length > max) throw new ManifestError(`${this.file}: the file grew over source.file.maxBytes while being read`, this.file);
    return decodeManifests(bytes, this.file);
  }

  /** Parse and normalize one version: a large one on the worker thread (the API keeps answering), a small one in place. */
  private async parse(text: string): Promise<Snapshot> {
    let v: ParsedVersion | undefined;
    if (text.length >= OFF_THREAD_BYTES) {
      try {
        v = await this.worker.parse(text, this.file, this.opts.normalize);
        if (v) this.offThreadParses++;
      } catch (e) {
        if (e instanceof ManifestError) throw e;
        this.log.warn({ file: this.file, err: (e as Error).message }, 'manifests worker failed; parsing on the main thread');
      }
    }
    if (!v) {
      const parsed = parseManifests(text, this.file);
      checkHasManifests(parsed, this.file);
      const n = normalizeObjects(parsed.objects, this.opts.normalize, (i) => parsed.positions[i]);
      v = { state: n.state, issues: n.issues, ignored: n.ignored, serviceKeys: serviceKeysIn(parsed.objects) };
    }
    const r = v;
    for (const what of r.ignored) this.log.debug({ file: this.file, object: what }, 'ignored: xlb reads Services, and EndpointSlices that kube-proxy reads');
    // A slice whose Service is not in the file: in a file, a typo in the
    // service-name label (in a cluster, slices of a Service being deleted).
    for (const [key, slice] of r.state.endpointSlices) {
      if (r.serviceKeys.has(`${slice.namespace}/${slice.serviceName}`)) continue;
      r.issues.push({
        object: `EndpointSlice ${key}`,
        field: `metadata.labels["${SERVICE_NAME_LABEL}"]`,
        message: `no Service ${slice.namespace}/${slice.serviceName} in the file: its endpoints serve nothing (a typo in the label?)`,
      });
    }
    if (r.issues.length > MAX_ISSUES) {
      const rest = r.issues.length - MAX_ISSUES;
      r.issues = [...r.issues.slice(0, MAX_ISSUES), { object: `file ${this.file}`, field: '(file)', message: `${rest} more issues in this version of the file, not listed` }];
    }
    this.dateUndated(r.state.services);
    this.keepUnchanged(r.state.services, this.previous.services);
    this.keepUnchanged(r.state.endpointSlices, this.previous.endpointSlices);
    return { state: r.state, issues: r.issues };
  }

  /**
   * Give each Service without `metadata.creationTimestamp` the time this
   * agent first read it (kept while it stays in the file), so that of two
   * Services claiming one frontend, the one the file already had keeps it
   * and the newcomer is reported, as in a cluster, where the API server
   * dates every object (src/services/rules.ts, byCreation). Services read
   * in the same version (every one, at start) are then ordered by name.
   * Only versions that are applied count: a refused one dates nothing.
   */
  private dateUndated(services: Map<string, ServiceModel>): void {
    const now = new Date().toISOString();
    const next = new Map<string, string>();
    for (const [key, svc] of services) {
      if (svc.createdAt !== undefined) continue;
      const at = this.firstSeen.get(key) ?? now;
      next.set(key, at);
      services.set(key, { ...svc, createdAt: at });
    }
    this.pendingFirstSeen = next;
  }

  /**
   * Hand on the previous snapshot's object for every object that did not
   * change, so that the service controller (which compares by identity)
   * redoes only what an edit touched.
   */
  private keepUnchanged<T>(now: Map<string, T>, before: Map<string, { json: string; value: T }>): void {
    const seen = new Map<string, { json: string; value: T }>();
    for (const [key, value] of now) {
      const json = JSON.stringify(value);
      const prev = before.get(key);
      if (prev && prev.json === json) {
        now.set(key, prev.value);
        seen.set(key, prev);
      } else seen.set(key, { json, value });
    }
    before.clear();
    for (const [k, v] of seen) before.set(k, v);
  }

  private emit(snap: Snapshot): void {
    if (this.stopped || !this.onSnapshot) return;
    this.firstSeen = this.pendingFirstSeen;
    this.log.info(
      { file: this.file, services: snap.state.services.size, endpointSlices: snap.state.endpointSlices.size, issues: snap.issues.length },
      'manifests read',
    );
    try {
      this.onSnapshot(snap);
    } catch (e) {
      this.log.error({ file: this.file, err: (e as Error).message }, 'snapshot consumer failed');
    }
  }

  private report(err: ManifestError): void {
    this.log.error({ file: this.file, line: err.line, column: err.column }, `${err.message}; keeping the last good state`);
    this.opts.onError?.(err);
  }
}

/**
 * The manifests-file source: reads Services and EndpointSlices from a YAML or
 * JSON file (see parse.ts) and emits a new snapshot whenever its content
 * changes.
 *
 * The directory is watched, not the file: editors that write a new file and
 * rename it over the old one, `mv` into place, and Kubernetes ConfigMap
 * volumes (which swap a `..data` symlink) replace the inode, and a watch on
 * the old inode would go quiet. Any event in the directory schedules a read;
 * a read whose content equals the last one emits nothing. Events are
 * debounced (10 ms of quiet, at most 20 ms after the first event) so that an
 * in-place write (truncate, then write) is read once, whole.
 *
 * A file that cannot be read or parsed is reported (logger and `onError`) and
 * the last good snapshot stays in force. At start, it is an error instead.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Source, Snapshot } from '../source.js';
import { normalizeObjects, type NormalizeOptions } from '../normalize.js';
import type { EndpointSliceModel, ServiceModel } from '../../model/types.js';
import { ManifestError, parseManifests } from './parse.js';

export { ManifestError, parseManifests, type ParsedManifests } from './parse.js';

/** Quiet period after the last directory event before the file is read, ms. */
export const DEFAULT_DEBOUNCE_MS = 10;
/** Longest wait after the first event of a burst before the file is read, ms. */
export const DEFAULT_MAX_DELAY_MS = 20;

/** Options of {@link FileSource}. */
export interface FileSourceOptions {
  /** Quiet period, ms (default {@link DEFAULT_DEBOUNCE_MS}). */
  debounceMs?: number;
  /** Upper bound of the debounce, ms (default {@link DEFAULT_MAX_DELAY_MS}). */
  maxDelayMs?: number;
  /** Called for every read or parse failure after start (also logged). */
  onError?: (err: ManifestError) => void;
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
  /** The last snapshot's objects with their JSON, to hand unchanged ones on (see keepUnchanged). */
  private readonly previous = {
    services: new Map<string, { json: string; value: ServiceModel }>(),
    endpointSlices: new Map<string, { json: string; value: EndpointSliceModel }>(),
  };
  private stopped = false;

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
      this.emit(this.parse(text));
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** Stop watching. No snapshot is delivered after this resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
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
      this.reload();
    }, delay);
  }

  private reload(): void {
    if (this.stopped) return;
    let text: string;
    try {
      text = this.read();
    } catch (e) {
      // Report a missing or unreadable file once, not on every event.
      if (this.lastText !== null) this.report(e as ManifestError);
      this.lastText = null;
      return;
    }
    if (text === this.lastText) {
      this.log.debug({ file: this.file }, 'manifests unchanged; no snapshot');
      return;
    }
    this.lastText = text;
    let snap: Snapshot;
    try {
      snap = this.parse(text);
    } catch (e) {
      this.report(e as ManifestError);
      return;
    }
    this.emit(snap);
  }

  private read(): string {
    try {
      return fs.readFileSync(this.file, 'utf8');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new ManifestError(`${this.file}: cannot read: ${err.code ?? err.message}`, this.file);
    }
  }

  private parse(text: string): Snapshot {
    const { objects, positions } = parseManifests(text, this.file);
    const r = normalizeObjects(objects, this.opts.normalize, (i) => positions[i]);
    for (const what of r.ignored) this.log.debug({ file: this.file, object: what }, 'ignored: xlb reads Services, and EndpointSlices that kube-proxy reads');
    this.keepUnchanged(r.state.services, this.previous.services);
    this.keepUnchanged(r.state.endpointSlices, this.previous.endpointSlices);
    return { state: r.state, issues: r.issues };
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

/**
 * Parsing and normalizing a manifests file on a worker thread
 * (parse-worker.ts). The agent's thread answers the API while a large file
 * is parsed; a small one is parsed in place (a worker's round trip is not
 * worth it). When the worker cannot run, the caller parses in place.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { NormalizeOptions } from '../normalize.js';
import type { ClusterState, InputIssue } from '../../model/types.js';
import { ManifestError } from './parse.js';

/** What one version of the file parses to. */
export interface ParsedVersion {
  state: ClusterState;
  issues: InputIssue[];
  ignored: string[];
  /** `namespace/name` of every Service object in the file, valid or not. */
  serviceKeys: Set<string>;
}

/** The code the worker runs: the TypeScript loader first when xlb runs from its sources. */
function workerCode(): string {
  const here = import.meta.url;
  const ts = here.endsWith('.ts');
  const target = new URL(`./parse-worker.${ts ? 'ts' : 'js'}`, here).href;
  if (!ts) return `import(${JSON.stringify(target)});`;
  // The ES module entry (import.meta.resolve follows the "import" condition; require.resolve would give the CommonJS one).
  const tsx = typeof import.meta.resolve === 'function' ? import.meta.resolve('tsx/esm/api') : pathToFileURL(createRequire(here).resolve('tsx/esm/api')).href;
  return `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`;
}

/** One worker, started on first use, parsing one version at a time. */
export class ParseWorker {
  private worker?: Worker;
  private failed = false;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: ParsedVersion) => void; reject: (e: Error) => void }>();

  /**
   * Parse and normalize `text` on the worker.
   * @returns undefined when the worker cannot run (parse in place then)
   * @throws ManifestError as parseManifests / checkHasManifests would
   */
  parse(text: string, file: string, normalize?: NormalizeOptions): Promise<ParsedVersion> | undefined {
    const w = this.ensure();
    if (!w) return undefined;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      w.postMessage({ id, text, file, normalize });
    });
  }

  private ensure(): Worker | undefined {
    if (this.failed) return undefined;
    if (this.worker) return this.worker;
    try {
      const w = new Worker(workerCode(), { eval: true, execArgv: [], name: 'xlb-manifests' });
      w.unref();
      w.on('message', (m: { id?: number; ok?: boolean; state?: ClusterState; issues?: InputIssue[]; ignored?: string[]; serviceKeys?: string[]; error?: { message: string; file: string; line?: number; column?: number } }) => {
        if (m.id === undefined) return;
        const p = this.waiting.get(m.id);
        if (!p) return;
        this.waiting.delete(m.id);
        if (m.ok) p.resolve({ state: m.state!, issues: m.issues!, ignored: m.ignored!, serviceKeys: new Set(m.serviceKeys) });
        else p.reject(new ManifestError(m.error!.message, m.error!.file, m.error!.line, m.error!.column));
      });
      const fail = (e: Error) => {
        this.failed = true;
        this.worker = undefined;
        for (const [, p] of this.waiting) p.reject(new Error(`manifests worker: ${e.message}`));
        this.waiting.clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => {
        if (this.worker === w) fail(new Error(`exited (${code})`));
      });
      this.worker = w;
      return w;
    } catch {
      this.failed = true;
      return undefined;
    }
  }

  /** Stop the worker. */
  async stop(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.failed = true;
    if (w) await w.terminate();
  }
}

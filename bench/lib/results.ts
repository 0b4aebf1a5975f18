/**
 * Result files: every benchmark run writes `bench/results/<name>.json` with
 * the machine, the commit, the date and each figure with all its runs, and
 * (when it has a chart) `bench/results/<name>.svg`. Nothing in a result file
 * is typed in: every number is computed from runs made in the same process.
 *
 * A figure may name a baseline figure of the same file (the floor, the
 * iptables layout, one service instead of 100,000); its ratio is then
 * median / baseline median, so a ratio above 1 means "slower or larger
 * than the baseline" for times and sizes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { machineInfo, type MachineInfo } from './machine.js';
import { summarize, type Summary } from './stats.js';
import { resultsDir } from './paths.js';

/** A target a figure is held to (from the issue or a reference design). */
export interface Target {
  /** Which statistic is compared: the median (default) or the p99. */
  stat?: 'median' | 'p99';
  /** The statistic must be at most this (same unit as the figure). */
  max?: number;
  /** The statistic must be at least this. */
  min?: number;
  /** Where the target comes from, e.g. "issue 6". */
  source: string;
}

/** What a benchmark hands to {@link BenchResult.add}. */
export interface FigureInput {
  /** Stable key within the file, e.g. `established.services-100000`. */
  id: string;
  /** Human-readable description, e.g. `established flow, 100,000 services`. */
  label: string;
  /** Unit of every run, e.g. `ns`, `ms`, `MB`, `ratio`, `requests/s`. */
  unit: string;
  runs: number[];
  /** Parameters that place the figure in a table or chart (case, services, M, N...). */
  params?: Record<string, string | number | boolean>;
  /** id of the figure this one is compared with (its ratio is median / baseline median). */
  baseline?: string;
  target?: Target;
}

/** A figure as written to the result file. */
export interface Figure extends Omit<FigureInput, 'runs' | 'baseline'>, Summary {
  baseline?: { id: string; label: string; median: number };
  /** median / baseline median. */
  ratio?: number;
  /** Whether the target is met, when there is one. */
  met?: boolean;
}

/** The whole result file. */
export interface ResultFile {
  name: string;
  title: string;
  quick: boolean;
  /** ISO 8601, when the benchmark started. */
  date: string;
  durationSeconds: number;
  machine: MachineInfo;
  /** How the figures were measured, in a few sentences. */
  method: string[];
  figures: Figure[];
  /** Anything a reader must know to read the figures (skips, noise, deviations). */
  notes: string[];
  /** Path of the chart, relative to the repository, when one was written. */
  chart?: string;
}

/** Collects the figures of one benchmark and writes its result file. */
export class BenchResult {
  private readonly started = Date.now();
  private readonly machine = machineInfo();
  private readonly inputs: FigureInput[] = [];
  readonly notes: string[] = [];
  readonly method: string[] = [];

  constructor(
    readonly name: string,
    readonly title: string,
    readonly quick: boolean,
  ) {}

  /**
   * Record a figure. @throws Error naming the id when it is repeated or its
   * runs are empty or not finite
   */
  add(f: FigureInput): void {
    if (this.inputs.some((x) => x.id === f.id)) throw new Error(`${this.name}: figure ${f.id} added twice`);
    summarize(f.runs, `${this.name}: figure ${f.id}`);
    this.inputs.push({ ...f, runs: [...f.runs] });
  }

  /** Add a note that goes into the result file and is printed. */
  note(text: string): void {
    this.notes.push(text);
  }

  /** The figures with their statistics, baselines, ratios and targets resolved. */
  figures(): Figure[] {
    const byId = new Map(this.inputs.map((f) => [f.id, f]));
    return this.inputs.map((f) => {
      const { runs, baseline, ...rest } = f;
      const s = summarize(runs, `${this.name}: figure ${f.id}`);
      const out: Figure = { ...rest, ...s };
      if (baseline) {
        const b = byId.get(baseline);
        if (!b) throw new Error(`${this.name}: figure ${f.id} names baseline ${baseline}, which was not measured`);
        const bm = summarize(b.runs).median;
        out.baseline = { id: b.id, label: b.label, median: bm };
        out.ratio = bm ? s.median / bm : undefined;
      }
      if (f.target) {
        const v = f.target.stat === 'p99' ? s.p99 : s.median;
        out.met = (f.target.max === undefined || v <= f.target.max) && (f.target.min === undefined || v >= f.target.min);
      }
      return out;
    });
  }

  /** One figure's statistics by id. @throws Error naming the id when absent */
  get(id: string): Figure {
    const f = this.figures().find((x) => x.id === id);
    if (!f) throw new Error(`${this.name}: no figure ${id}`);
    return f;
  }

  /**
   * Write `<name>.json` (and `<name>.svg` when `svg` is given) under
   * bench/results. @returns the JSON file's path
   */
  write(svg?: string): string {
    fs.mkdirSync(resultsDir, { recursive: true });
    const file: ResultFile = {
      name: this.name,
      title: this.title,
      quick: this.quick,
      date: new Date(this.started).toISOString(),
      durationSeconds: +((Date.now() - this.started) / 1000).toFixed(1),
      machine: this.machine,
      method: this.method,
      figures: this.figures(),
      notes: this.notes,
    };
    if (svg !== undefined) {
      const svgPath = path.join(resultsDir, `${this.name}.svg`);
      fs.writeFileSync(svgPath, svg);
      file.chart = `bench/results/${this.name}.svg`;
    }
    const jsonPath = path.join(resultsDir, `${this.name}.json`);
    fs.writeFileSync(jsonPath, `${JSON.stringify(file, null, 2)}\n`);
    return jsonPath;
  }
}

/** Read a result file written by {@link BenchResult.write}; undefined when absent. */
export function readResult(name: string): ResultFile | undefined {
  const p = path.join(resultsDir, `${name}.json`);
  return fs.existsSync(p) ? (JSON.parse(fs.readFileSync(p, 'utf8')) as ResultFile) : undefined;
}

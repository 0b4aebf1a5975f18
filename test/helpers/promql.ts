/**
 * What a PromQL expression asks for, read with the Prometheus project's own
 * grammar (@prometheus-io/lezer-promql, the one its web UI uses): the
 * metric names it selects and the label names it matches, groups or
 * aggregates by, so that tests can hold dashboards and alert rules to the
 * metrics xlb exports.
 */
import { parser } from '@prometheus-io/lezer-promql';
import type { SyntaxNode } from '@lezer/common';

/** A problem found in an expression, in words a test failure can show. */
export interface PromqlProblem {
  expr: string;
  message: string;
}

/**
 * Grafana's interval variables, replaced by a duration before parsing
 * (`$__rate_interval` inside a range selector is not PromQL). Other
 * variables (`$job`, `$node`) stand inside label matcher strings.
 */
export function grafanaToPromql(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m');
}

/**
 * The problems of `expr` against the exported metrics:
 * - a syntax error (the parser's error nodes);
 * - a selector without a metric name;
 * - a metric not in `labelsOf` (nor in `alsoAllowed`);
 * - a label matched in a selector that its metric does not carry;
 * - a label of `by`/`without`/`on`/`ignoring` that none of the metrics
 *   under the aggregation or operation carries.
 * Labels in `targetLabels` (what Prometheus adds to every series of a
 * target: job, instance, and relabelled ones) are allowed everywhere.
 * @param labelsOf label names by exported sample name (test/helpers/metrics-source.ts's exportedLabels)
 * @param alsoAllowed series Prometheus makes itself (`up`), with their labels
 */
export function checkPromql(
  expr: string,
  labelsOf: ReadonlyMap<string, ReadonlySet<string>>,
  targetLabels: ReadonlySet<string>,
  alsoAllowed: ReadonlyMap<string, ReadonlySet<string>> = new Map(),
): PromqlProblem[] {
  const problems: PromqlProblem[] = [];
  const text = grafanaToPromql(expr);
  const tree = parser.parse(text);
  const src = (n: SyntaxNode) => text.slice(n.from, n.to);
  const known = (name: string) => labelsOf.get(name) ?? alsoAllowed.get(name);
  const problem = (message: string) => problems.push({ expr, message });

  /** The metric names selected anywhere under `node`. */
  const metricsUnder = (node: SyntaxNode): string[] => {
    const out: string[] = [];
    const c = node.cursor();
    const end = node.to;
    do {
      if (c.from >= end) break;
      if (c.name === 'VectorSelector') {
        const id = c.node.getChild('Identifier');
        if (id) out.push(src(id));
      }
    } while (c.next());
    return out;
  };
  const labelsUnder = (node: SyntaxNode): Set<string> => {
    const out = new Set<string>(targetLabels);
    for (const m of metricsUnder(node)) for (const l of known(m) ?? []) out.add(l);
    return out;
  };

  const c = tree.cursor();
  do {
    if (c.type.isError) problem(`syntax error at ${c.from}: ${JSON.stringify(text.slice(Math.max(0, c.from - 20), c.to + 20))}`);
    if (c.name === 'VectorSelector') {
      const id = c.node.getChild('Identifier');
      if (!id) {
        problem(`a selector without a metric name: ${src(c.node)}`);
        continue;
      }
      const name = src(id);
      const labels = known(name);
      if (!labels) {
        problem(`${name} is not a metric xlb exports`);
        continue;
      }
      const matchers = c.node.getChild('LabelMatchers');
      if (matchers) {
        const inner = matchers.cursor();
        do {
          if (inner.from >= matchers.to) break;
          if (inner.name === 'LabelName') {
            const l = src(inner.node);
            if (!labels.has(l) && !targetLabels.has(l)) problem(`${name} has no label ${l}`);
          }
        } while (inner.next());
      }
    }
    if (c.name === 'GroupingLabels') {
      // by/without of an aggregation, or on/ignoring of a binary operation: its labels must exist under it.
      const owner = c.node.parent?.parent;
      if (!owner) continue;
      const have = labelsUnder(owner);
      for (const l of c.node.getChildren('LabelName')) if (!have.has(src(l))) problem(`no metric under ${JSON.stringify(src(owner).slice(0, 80))} has label ${src(l)}`);
    }
  } while (c.next());
  return problems;
}

/** The metric names `expr` selects. */
export function metricNames(expr: string): string[] {
  const text = grafanaToPromql(expr);
  const out: string[] = [];
  const c = parser.parse(text).cursor();
  do {
    if (c.name === 'VectorSelector') {
      const id = c.node.getChild('Identifier');
      if (id) out.push(text.slice(id.from, id.to));
    }
  } while (c.next());
  return out;
}

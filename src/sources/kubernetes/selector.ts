/**
 * meta/v1 LabelSelector, as custom resources carry them (`serviceSelector`,
 * `nodeSelector`): `matchLabels` and `matchExpressions`, ANDed (Kubernetes
 * docs, "Labels and Selectors", "Resources that support set-based
 * requirements"). An empty selector matches everything; so does an absent
 * one where xlb's resources say so.
 *
 * Checked as the API server checks a LabelSelector
 * (apimachinery ValidateLabelSelector): operators In and NotIn need at least
 * one value, Exists and DoesNotExist take none. The CRD schemas cannot say
 * that, so a resource that breaks it passes the API server and is reported
 * by xlb instead.
 */

/** One `matchExpressions` entry. */
export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  /** For In and NotIn: at least one. */
  values?: string[];
}

/** A parsed label selector. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

const OPERATORS = new Set(['In', 'NotIn', 'Exists', 'DoesNotExist']);

/**
 * Read a selector from a resource.
 * @param raw the field's value (undefined or null: absent)
 * @param field its path, for messages (`spec.serviceSelector`)
 * @returns the selector (undefined when absent), or an error naming the field that is wrong
 */
export function parseLabelSelector(raw: unknown, field: string): { selector?: LabelSelector; error?: { field: string; message: string } } {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) return { error: { field, message: 'must be a label selector (matchLabels, matchExpressions)' } };
  const o = raw as { matchLabels?: unknown; matchExpressions?: unknown };
  const out: LabelSelector = {};
  if (o.matchLabels !== undefined && o.matchLabels !== null) {
    if (typeof o.matchLabels !== 'object' || Array.isArray(o.matchLabels)) return { error: { field: `${field}.matchLabels`, message: 'must be a map of label names to values' } };
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.matchLabels)) {
      if (typeof v !== 'string') return { error: { field: `${field}.matchLabels[${JSON.stringify(k)}]`, message: `must be a string (got ${JSON.stringify(v)})` } };
      labels[k] = v;
    }
    out.matchLabels = labels;
  }
  if (o.matchExpressions !== undefined && o.matchExpressions !== null) {
    if (!Array.isArray(o.matchExpressions)) return { error: { field: `${field}.matchExpressions`, message: 'must be a list of requirements' } };
    const reqs: LabelSelectorRequirement[] = [];
    for (const [i, r] of (o.matchExpressions as unknown[]).entries()) {
      const at = `${field}.matchExpressions[${i}]`;
      const e = (r ?? {}) as { key?: unknown; operator?: unknown; values?: unknown };
      if (typeof e.key !== 'string' || !e.key) return { error: { field: `${at}.key`, message: 'must be a label name' } };
      if (typeof e.operator !== 'string' || !OPERATORS.has(e.operator)) return { error: { field: `${at}.operator`, message: `must be In, NotIn, Exists or DoesNotExist (got ${JSON.stringify(e.operator)})` } };
      const values = e.values === undefined || e.values === null ? [] : e.values;
      if (!Array.isArray(values) || values.some((v) => typeof v !== 'string')) return { error: { field: `${at}.values`, message: 'must be a list of strings' } };
      const op = e.operator as LabelSelectorRequirement['operator'];
      if ((op === 'In' || op === 'NotIn') && values.length === 0) return { error: { field: `${at}.values`, message: `must be non-empty when operator is ${op}` } };
      if ((op === 'Exists' || op === 'DoesNotExist') && values.length > 0) return { error: { field: `${at}.values`, message: `must be empty when operator is ${op}` } };
      reqs.push({ key: e.key, operator: op, ...(values.length ? { values: values as string[] } : {}) });
    }
    out.matchExpressions = reqs;
  }
  return { selector: out };
}

/** Whether `labels` satisfy `selector` (absent: matches everything). */
export function selectorMatches(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const r of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, r.key);
    switch (r.operator) {
      case 'In':
        if (!has || !r.values!.includes(labels[r.key])) return false;
        break;
      case 'NotIn':
        if (has && r.values!.includes(labels[r.key])) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** The selector in kubectl's `-l` syntax (`a=b,c in (d,e),!f`); `<all>` when it selects everything. */
export function formatLabelSelector(selector: LabelSelector | undefined): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(selector?.matchLabels ?? {})) parts.push(`${k}=${v}`);
  for (const r of selector?.matchExpressions ?? []) {
    if (r.operator === 'In') parts.push(`${r.key} in (${r.values!.join(',')})`);
    else if (r.operator === 'NotIn') parts.push(`${r.key} notin (${r.values!.join(',')})`);
    else if (r.operator === 'Exists') parts.push(r.key);
    else parts.push(`!${r.key}`);
  }
  return parts.length ? parts.join(',') : '<all>';
}

/**
 * How zod's issues are worded for the configuration: the whole file
 * (load.ts) and the sections parsed on their own (`bgp:`, `l2:`, `ipam:`)
 * name the key the same way, `datapath.maglev.minTableSize`,
 * `bgp.neighbors[1].address`.
 *
 * Only types come from zod here, so the section modules can use it without
 * importing the agent's schema.
 */
import type { z } from 'zod';

/**
 * A zod issue path as a key path: names joined by `.`, indexes as `[i]`
 * (`['datapath', 'maglev', 'minTableSize']` → `datapath.maglev.minTableSize`,
 * `['interfaces', 1]` → `interfaces[1]`).
 * @returns `(top level)` for the empty path
 */
export function formatKeyPath(p: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of p) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${String(seg)}` : String(seg);
  return out || '(top level)';
}

/** A value as JSON, cut to 80 characters (`undefined` and functions as String). */
function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * zod issues as `key.path: message (got VALUE)` lines: one per issue, and
 * one per key of an `unrecognized_keys` issue (`key.path: unknown key (got
 * VALUE)`). `(got …)` needs the issue's input (parse with `reportInput:
 * true`) and is left out for a missing key (message `required`).
 */
export function formatConfigIssues(issues: z.core.$ZodIssue[]): string[] {
  const out: string[] = [];
  for (const iss of issues) {
    const input = (iss as { input?: unknown }).input;
    if (iss.code === 'unrecognized_keys') {
      for (const k of iss.keys) {
        const value = input && typeof input === 'object' ? (input as Record<string, unknown>)[k] : undefined;
        out.push(`${formatKeyPath([...iss.path, k])}: unknown key (got ${show(value)})`);
      }
    } else {
      const got = input === undefined || iss.message === 'required' ? '' : ` (got ${show(input)})`;
      out.push(`${formatKeyPath(iss.path)}: ${iss.message}${got}`);
    }
  }
  return out;
}

/**
 * Parse one section of the configuration on its own (tests and tools; the
 * agent parses it within its whole schema).
 * @param section the section's key, prefixed to every path (`bgp`)
 * @returns the parsed section, defaults applied
 * @throws Error whose message lists every problem, one a line, as
 *   `<section>.<path>: <message>` (`bgp.neighbors[0].asn: must be …`)
 */
export function parseConfigSection<S extends z.ZodType>(schema: S, section: string, input: unknown): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  throw new Error(r.error.issues.map((iss) => `${formatKeyPath([section, ...iss.path])}: ${iss.message}`).join('\n'));
}

/** Plain-text tables for the CLI. */

/** Print `rows` as aligned columns `cols` (missing values print as `-`). */
export function printTable(rows: Array<Record<string, unknown>>, cols: string[]): void {
  const cell = (v: unknown): string => (v === undefined || v === null || v === '' ? '-' : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  console.log(line(cols.map((c) => c.toUpperCase())));
  for (const r of rows) console.log(line(cols.map((c) => cell(r[c]))));
}

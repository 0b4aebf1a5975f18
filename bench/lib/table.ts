/** Plain-text tables for the benchmarks' console output. */

/**
 * Format `rows` under `header` as aligned columns: the first column left
 * aligned, the others right aligned (numbers). Returns the text, no
 * trailing newline.
 */
export function formatTable(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? (c ?? '').padEnd(widths[i]) : (c ?? '').padStart(widths[i]))).join('  ');
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** Print a titled table to stdout. */
export function printTable(title: string, header: string[], rows: Array<Array<string | number>>): void {
  console.log(`\n${title}\n${formatTable(header, rows)}`);
}

/** `x` with `digits` significant digits, without exponent notation for everyday magnitudes. */
export function sig(x: number | undefined, digits = 3): string {
  if (x === undefined || !Number.isFinite(x)) return '-';
  if (x === 0) return '0';
  const mag = Math.floor(Math.log10(Math.abs(x)));
  const decimals = Math.max(0, digits - 1 - mag);
  return x.toFixed(Math.min(decimals, 6));
}

/** A spread (fraction, see Summary.spread) as `±x%` of the median (half the band). */
export function pct(spread: number): string {
  return `±${((spread / 2) * 100).toFixed(1)}%`;
}

/** A ratio as `1.23x`. */
export function times(r: number | undefined): string {
  return r === undefined || !Number.isFinite(r) ? '-' : `${r.toFixed(r < 10 ? 2 : 1)}x`;
}

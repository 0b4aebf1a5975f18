/**
 * Charts of benchmark results as SVG, rendered headless with Vega-Lite
 * (compile to Vega, then a View with renderer 'none' and toSVG()).
 */
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

/** One bar: a category on the x axis, a series (colour) within it, a value. */
export interface Bar {
  /** Panel the bar belongs to (one chart per panel, side by side); '' for one panel. */
  panel?: string;
  x: string;
  series: string;
  value: number;
  /** Shown in the tooltip / label. */
  label?: string;
}

/** Options of {@link groupedBars}. */
export interface BarChartOptions {
  title: string;
  yTitle: string;
  xTitle?: string;
  seriesTitle?: string;
  /** Logarithmic-like y axis (symlog: bars need a zero, which a log scale lacks) for values spanning decades. */
  logY?: boolean;
  /** Order of the x categories (default: first appearance). */
  xOrder?: string[];
  /** Order of the series (default: first appearance). */
  seriesOrder?: string[];
  /** Width of one panel, px. */
  width?: number;
  /** Horizontal rules (targets), in y units. */
  rules?: Array<{ value: number; label: string; panel?: string }>;
}

/** Render a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: vegaLite.TopLevelSpec): Promise<string> {
  const compiled = vegaLite.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

const uniq = (xs: string[]) => [...new Set(xs)];

/** Grouped bar chart, optionally in panels, as SVG. */
export async function groupedBars(bars: Bar[], o: BarChartOptions): Promise<string> {
  const xOrder = o.xOrder ?? uniq(bars.map((b) => b.x));
  const seriesOrder = o.seriesOrder ?? uniq(bars.map((b) => b.series));
  const panels = uniq(bars.map((b) => b.panel ?? ''));
  const layerFor = (panel: string): vegaLite.TopLevelSpec | Record<string, unknown> => {
    const data = bars.filter((b) => (b.panel ?? '') === panel).map((b) => ({ ...b, label: b.label ?? String(+b.value.toPrecision(3)) }));
    const rules = (o.rules ?? []).filter((r) => (r.panel ?? '') === panel || r.panel === undefined);
    const layers: Record<string, unknown>[] = [
      {
        data: { values: data },
        mark: { type: 'bar' },
        encoding: {
          x: { field: 'x', type: 'nominal', sort: xOrder, title: o.xTitle ?? null, axis: { labelAngle: xOrder.length > 4 ? -25 : 0, labelLimit: 160 } },
          xOffset: { field: 'series', type: 'nominal', sort: seriesOrder },
          y: { field: 'value', type: 'quantitative', title: o.yTitle, scale: o.logY ? { type: 'symlog' } : {} },
          color: { field: 'series', type: 'nominal', sort: seriesOrder, title: o.seriesTitle ?? null },
        },
      },
      {
        data: { values: data },
        mark: { type: 'text', dy: -6, fontSize: 8 },
        encoding: {
          x: { field: 'x', type: 'nominal', sort: xOrder },
          xOffset: { field: 'series', type: 'nominal', sort: seriesOrder },
          y: { field: 'value', type: 'quantitative', scale: o.logY ? { type: 'symlog' } : {} },
          text: { field: 'label' },
        },
      },
    ];
    if (rules.length) {
      layers.push({
        data: { values: rules },
        mark: { type: 'rule', strokeDash: [4, 3], color: '#b22' },
        encoding: { y: { field: 'value', type: 'quantitative' } },
      });
      layers.push({
        data: { values: rules },
        mark: { type: 'text', align: 'left', dx: 2, dy: -4, color: '#b22', fontSize: 9 },
        encoding: { y: { field: 'value', type: 'quantitative' }, x: { value: 0 }, text: { field: 'label' } },
      });
    }
    const spec: Record<string, unknown> = { width: o.width ?? Math.max(240, 70 * xOrder.length * Math.max(1, seriesOrder.length / 2)), height: 240, layer: layers };
    if (panel) spec.title = panel;
    return spec;
  };
  const spec = (
    panels.length === 1
      ? { $schema: 'https://vega.github.io/schema/vega-lite/v5.json', title: o.title, ...layerFor(panels[0]) }
      : { $schema: 'https://vega.github.io/schema/vega-lite/v5.json', title: o.title, hconcat: panels.map(layerFor), resolve: { scale: { y: 'independent' } } }
  ) as vegaLite.TopLevelSpec;
  return renderSvg(spec);
}

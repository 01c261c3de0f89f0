/**
 * Small hand-written SVG line charts (training curves, experiment figures). Standalone SVG 1.1 that
 * any browser or image viewer opens; no fonts or scripts are referenced.
 */

export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  /** Draw a marker on every point (for short series such as per-epoch scores). */
  markers?: boolean;
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  /** Fixed y range; computed from the data when absent. */
  yMin?: number;
  yMax?: number;
  logY?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** "Nice" tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
  return Number(v.toPrecision(4)).toString();
}

/** One chart as SVG elements inside a box of `width` x `height` at (x, y). */
function chartBody(chart: Chart, x: number, y: number, width: number, height: number): string {
  const left = x + 62;
  const right = x + width - 12;
  const top = y + 28;
  const bottom = y + height - 58;
  const pts = chart.series.flatMap((s) => s.points).filter(([px, py]) => Number.isFinite(px) && Number.isFinite(py) && (!chart.logY || py > 0));
  const out: string[] = [];
  out.push(`<text x="${x + width / 2}" y="${y + 16}" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(chart.title)}</text>`);
  out.push(`<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#444"/>`);
  if (pts.length === 0) {
    out.push(`<text x="${(left + right) / 2}" y="${(top + bottom) / 2}" text-anchor="middle" font-size="12" fill="#888">no data</text>`);
    return out.join('\n');
  }
  let x0 = Math.min(...pts.map((p) => p[0]));
  let x1 = Math.max(...pts.map((p) => p[0]));
  const ty = (v: number) => (chart.logY ? Math.log10(v) : v);
  let y0 = chart.yMin ?? Math.min(...pts.map((p) => ty(p[1])));
  let y1 = chart.yMax ?? Math.max(...pts.map((p) => ty(p[1])));
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.05, y1 + Math.abs(y1 || 1) * 0.05];
  const sx = (v: number) => left + ((v - x0) / (x1 - x0)) * (right - left);
  const sy = (v: number) => bottom - ((ty(v) - y0) / (y1 - y0)) * (bottom - top);
  for (const t of niceTicks(x0, x1, 6)) {
    const px = sx(t).toFixed(1);
    out.push(`<line x1="${px}" y1="${bottom}" x2="${px}" y2="${bottom + 4}" stroke="#444"/>`);
    out.push(`<text x="${px}" y="${bottom + 16}" text-anchor="middle" font-size="10">${formatTick(t)}</text>`);
  }
  for (const t of niceTicks(y0, y1, 5)) {
    const py = (bottom - ((t - y0) / (y1 - y0)) * (bottom - top)).toFixed(1);
    out.push(`<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 5}" y="${py}" text-anchor="end" dominant-baseline="middle" font-size="10">${formatTick(chart.logY ? 10 ** t : t)}</text>`);
  }
  out.push(`<text x="${(left + right) / 2}" y="${bottom + 32}" text-anchor="middle" font-size="11">${escapeXml(chart.xLabel)}</text>`);
  out.push(
    `<text x="${x + 14}" y="${(top + bottom) / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 ${x + 14} ${(top + bottom) / 2})">${escapeXml(chart.yLabel)}</text>`,
  );
  chart.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const valid = s.points.filter(([px, py]) => Number.isFinite(px) && Number.isFinite(py) && (!chart.logY || py > 0));
    if (valid.length > 0) {
      const d = valid.map(([px, py], k) => `${k === 0 ? 'M' : 'L'}${sx(px).toFixed(1)},${sy(py).toFixed(1)}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"/>`);
      if (s.markers || valid.length === 1) {
        for (const [px, py] of valid) out.push(`<circle cx="${sx(px).toFixed(1)}" cy="${sy(py).toFixed(1)}" r="2.8" fill="${color}"/>`);
      }
    }
    const lx = left + 6 + (i % 3) * ((right - left) / 3);
    const ly = bottom + 46 + Math.floor(i / 3) * 12;
    out.push(`<rect x="${lx}" y="${ly - 7}" width="10" height="3" fill="${color}"/>`);
    out.push(`<text x="${lx + 14}" y="${ly - 2}" font-size="10">${escapeXml(s.name)}</text>`);
  });
  return out.join('\n');
}

/** Charts side by side (wrapping after `columns`), as one standalone SVG document. */
export function renderCharts(charts: readonly Chart[], options: { columns?: number; width?: number; height?: number; caption?: string } = {}): string {
  const columns = Math.max(1, Math.min(options.columns ?? 3, charts.length || 1));
  const w = options.width ?? 420;
  const h = options.height ?? 300;
  const captionHeight = options.caption ? 22 : 0;
  const rows = Math.max(1, Math.ceil(charts.length / columns));
  const totalW = columns * w;
  const totalH = rows * h + captionHeight;
  const parts = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${totalW}" height="${totalH}" viewBox="0 0 ${totalW} ${totalH}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  if (options.caption) parts.push(`<text x="8" y="15" font-size="11" fill="#333">${escapeXml(options.caption)}</text>`);
  charts.forEach((c, i) => parts.push(chartBody(c, (i % columns) * w, captionHeight + Math.floor(i / columns) * h, w, h)));
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

export interface BarChart {
  title: string;
  yLabel: string;
  /** Group labels along the x axis. */
  groups: readonly string[];
  /** One bar per series in every group; NaN draws no bar. */
  series: ReadonlyArray<{ name: string; values: readonly number[] }>;
  yMin?: number;
  yMax?: number;
}

/** A grouped bar chart as one standalone SVG document, with the value printed over each bar. */
export function renderBarChart(chart: BarChart, options: { width?: number; height?: number; caption?: string } = {}): string {
  const width = options.width ?? Math.max(420, 120 + chart.groups.length * (40 + chart.series.length * 34));
  const height = options.height ?? 320;
  const captionHeight = options.caption ? 22 : 0;
  const left = 62;
  const right = width - 12;
  const top = captionHeight + 30;
  const bottom = height + captionHeight - 62;
  const values = chart.series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  let y0 = chart.yMin ?? (values.length ? Math.min(...values) : 0);
  let y1 = chart.yMax ?? (values.length ? Math.max(...values) : 1);
  if (chart.yMin === undefined && values.length) y0 = Math.max(0, y0 - (y1 - y0 || 1) * 0.5);
  if (chart.yMax === undefined && values.length) y1 = y1 + (y1 - y0 || 1) * 0.1;
  if (y1 === y0) y1 = y0 + 1;
  const sy = (v: number) => bottom - ((v - y0) / (y1 - y0)) * (bottom - top);
  const out = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + captionHeight}" viewBox="0 0 ${width} ${height + captionHeight}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  if (options.caption) out.push(`<text x="8" y="15" font-size="11" fill="#333">${escapeXml(options.caption)}</text>`);
  out.push(`<text x="${width / 2}" y="${captionHeight + 16}" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(chart.title)}</text>`);
  for (const t of niceTicks(y0, y1, 5)) {
    const py = sy(t).toFixed(1);
    out.push(`<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 5}" y="${py}" text-anchor="end" dominant-baseline="middle" font-size="10">${formatTick(t)}</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#444"/>`);
  out.push(
    `<text x="14" y="${(top + bottom) / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 14 ${(top + bottom) / 2})">${escapeXml(chart.yLabel)}</text>`,
  );
  const groupWidth = (right - left) / Math.max(1, chart.groups.length);
  const barWidth = Math.min(34, (groupWidth - 16) / Math.max(1, chart.series.length));
  chart.groups.forEach((g, gi) => {
    const gx = left + gi * groupWidth + (groupWidth - barWidth * chart.series.length) / 2;
    chart.series.forEach((s, si) => {
      const v = s.values[gi];
      if (!Number.isFinite(v)) return;
      const x = gx + si * barWidth;
      const yTop = sy(Math.max(y0, Math.min(y1, v)));
      out.push(`<rect x="${x.toFixed(1)}" y="${yTop.toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(bottom - yTop).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"/>`);
      out.push(`<text x="${(x + barWidth / 2 - 1).toFixed(1)}" y="${(yTop - 3).toFixed(1)}" text-anchor="middle" font-size="9">${formatTick(Number(v.toFixed(2)))}</text>`);
    });
    out.push(`<text x="${(left + gi * groupWidth + groupWidth / 2).toFixed(1)}" y="${bottom + 15}" text-anchor="middle" font-size="11">${escapeXml(g)}</text>`);
  });
  chart.series.forEach((s, si) => {
    const lx = left + 6 + (si % 4) * ((right - left) / 4);
    const ly = bottom + 38 + Math.floor(si / 4) * 12;
    out.push(`<rect x="${lx}" y="${ly - 8}" width="10" height="8" fill="${COLORS[si % COLORS.length]}"/>`);
    out.push(`<text x="${lx + 14}" y="${ly - 1}" font-size="10">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// Small self-contained SVG charts (bar chart of per-layer scores, line chart of curves, scatter with a marked
// front) for study reports. Written by hand: a plotting library would pull a DOM or hundreds of kilobytes into a
// package whose charts are a few rectangles and polylines. Portable: returns a string.

const W = 720;
const H = 400;
const M = { left: 64, right: 170, top: 40, bottom: 64 };
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) max = min + 1;
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  return Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

interface Frame {
  x: (v: number) => number;
  y: (v: number) => number;
  parts: string[];
}

function frame(title: string, xLabel: string, yLabel: string, xr: [number, number], yr: [number, number], opts: { logY?: boolean; xTicks?: number[] } = {}): Frame {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const ty = (v: number) => (opts.logY ? Math.log10(v) : v);
  const [y0, y1] = [ty(yr[0]), ty(yr[1])];
  const x = (v: number) => M.left + ((v - xr[0]) / (xr[1] - xr[0] || 1)) * pw;
  const y = (v: number) => M.top + ph - ((ty(v) - y0) / (y1 - y0 || 1)) * ph;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - M.right / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
    `<line x1="${M.left}" y1="${M.top + ph}" x2="${M.left + pw}" y2="${M.top + ph}" stroke="black"/>`,
    `<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + ph}" stroke="black"/>`,
    `<text x="${M.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
  ];
  // log axes: decades when the range spans two or more, else plain values (a 10–16 range has no inner decade)
  const yTicks = opts.logY && y1 - y0 >= 2
    ? niceTicks(Math.floor(y0), Math.ceil(y1), Math.max(2, Math.ceil(y1) - Math.floor(y0))).map((v) => 10 ** v)
    : niceTicks(yr[0], yr[1]);
  for (const v of yTicks) {
    if (ty(v) < y0 - 1e-9 || ty(v) > y1 + 1e-9) continue;
    parts.push(`<line x1="${M.left}" y1="${y(v)}" x2="${M.left + pw}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${M.left - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  for (const v of opts.xTicks ?? niceTicks(xr[0], xr[1], 8)) {
    parts.push(`<line x1="${x(v)}" y1="${M.top + ph}" x2="${x(v)}" y2="${M.top + ph + 4}" stroke="black"/>`);
    parts.push(`<text x="${x(v)}" y="${M.top + ph + 18}" text-anchor="middle">${fmt(v)}</text>`);
  }
  return { x, y, parts };
}

function legend(parts: string[], names: string[], dashed: boolean[] = [], colors: string[] = []): void {
  names.forEach((n, i) => {
    const yy = M.top + 10 + i * 18;
    const xx = W - M.right + 14;
    parts.push(`<line x1="${xx}" y1="${yy}" x2="${xx + 22}" y2="${yy}" stroke="${colors[i] ?? COLORS[i % COLORS.length]}" stroke-width="2.5"${dashed[i] ? ' stroke-dasharray="5 3"' : ""}/>`);
    parts.push(`<text x="${xx + 28}" y="${yy + 4}">${esc(n)}</text>`);
  });
}

/** Bars, one per label (e.g. a score per layer); `groups` colours bars and adds a legend (e.g. attention vs FFN). */
export function barChart(title: string, labels: string[], values: number[], xLabel: string, yLabel: string, groups?: string[]): string {
  const max = Math.max(...values.map((v) => (Number.isFinite(v) ? v : 0)), 1e-12);
  const f = frame(title, xLabel, yLabel, [-0.5, labels.length - 0.5], [0, max * 1.05], { xTicks: [] });
  const bw = ((W - M.left - M.right) / labels.length) * 0.7;
  const names = groups ? [...new Set(groups)] : [];
  // many bars: rotate the labels so they do not run into each other
  const rotate = labels.length > 16;
  labels.forEach((lab, i) => {
    const v = Number.isFinite(values[i]) ? Math.max(0, values[i]) : 0;
    const top = f.y(v);
    const color = COLORS[groups ? names.indexOf(groups[i]) % COLORS.length : 0];
    f.parts.push(`<rect x="${f.x(i) - bw / 2}" y="${top}" width="${bw}" height="${f.y(0) - top}" fill="${color}"><title>${esc(lab)}: ${values[i]}</title></rect>`);
    const ly = H - M.bottom + 16;
    f.parts.push(rotate
      ? `<text transform="translate(${f.x(i) + 3} ${ly - 6}) rotate(-60)" text-anchor="end" font-size="10">${esc(lab)}</text>`
      : `<text x="${f.x(i)}" y="${ly}" text-anchor="middle">${esc(lab)}</text>`);
  });
  if (groups) legend(f.parts, names);
  f.parts.push("</svg>");
  return f.parts.join("\n");
}

export interface Series {
  name: string;
  points: [number, number][];
  /** optional shaded band [low, high] per point (e.g. min and max over random trials) */
  band?: [number, number][];
  dashed?: boolean;
  /** palette index (default: the series' position), so related series can share a colour */
  color?: number;
}

/** Lines through (x, y) points, one per series, with an optional band. */
export function lineChart(title: string, series: Series[], xLabel: string, yLabel: string, opts: { logY?: boolean } = {}): string {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => [...s.points.map((p) => p[1]), ...(s.band ?? []).flat()]).filter((v) => Number.isFinite(v) && (!opts.logY || v > 0));
  const yMin = opts.logY ? Math.min(...ys) / 1.1 : Math.min(0, Math.min(...ys));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  // integer x (layers removed): a tick per integer, not 0.25 steps
  const xTicks = xs.every(Number.isInteger) && x1 - x0 <= 20 ? Array.from({ length: x1 - x0 + 1 }, (_, i) => x0 + i) : undefined;
  const f = frame(title, xLabel, yLabel, [x0, x1], [yMin, Math.max(...ys) * 1.05], { ...opts, xTicks });
  const colorOf = (s: Series, si: number) => COLORS[(s.color ?? si) % COLORS.length];
  series.forEach((s, si) => {
    const color = colorOf(s, si);
    if (s.band) {
      const upper = s.points.map((p, i) => `${f.x(p[0])},${f.y(s.band![i][1])}`);
      const lower = s.points.map((p, i) => `${f.x(p[0])},${f.y(s.band![i][0])}`).reverse();
      f.parts.push(`<polygon points="${[...upper, ...lower].join(" ")}" fill="${color}" fill-opacity="0.15" stroke="none"/>`);
    }
    const pts = s.points.filter((p) => Number.isFinite(p[1])).map((p) => `${f.x(p[0])},${f.y(p[1])}`).join(" ");
    f.parts.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ""}/>`);
    for (const p of s.points) if (Number.isFinite(p[1])) f.parts.push(`<circle cx="${f.x(p[0])}" cy="${f.y(p[1])}" r="2.5" fill="${color}"><title>${esc(s.name)} (${p[0]}, ${fmt(p[1])})</title></circle>`);
  });
  legend(f.parts, series.map((s) => s.name), series.map((s) => Boolean(s.dashed)), series.map(colorOf));
  f.parts.push("</svg>");
  return f.parts.join("\n");
}

export interface ScatterPoint {
  x: number;
  y: number;
  label: string;
  group: string;
  /** drawn larger and outlined (e.g. on the Pareto front) */
  marked?: boolean;
}

/** Points coloured by group, marked ones outlined, and the marked ones joined in x order (a Pareto front). */
export function scatterChart(title: string, points: ScatterPoint[], xLabel: string, yLabel: string, opts: { logY?: boolean } = {}): string {
  const groups = [...new Set(points.map((p) => p.group))];
  const ys = points.map((p) => p.y).filter((v) => Number.isFinite(v));
  const xs = points.map((p) => p.x);
  const xPad = (Math.max(...xs) - Math.min(...xs)) * 0.05 || 1;
  const f = frame(title, xLabel, yLabel, [Math.min(...xs) - xPad, Math.max(...xs) + xPad], [opts.logY ? Math.min(...ys) / 1.1 : Math.min(...ys) * 0.95, Math.max(...ys) * 1.05], opts);
  const front = points.filter((p) => p.marked).sort((a, b) => a.x - b.x);
  if (front.length > 1) f.parts.push(`<polyline points="${front.map((p) => `${f.x(p.x)},${f.y(p.y)}`).join(" ")}" fill="none" stroke="black" stroke-dasharray="4 3"/>`);
  for (const p of points) {
    const color = COLORS[groups.indexOf(p.group) % COLORS.length];
    f.parts.push(`<circle cx="${f.x(p.x)}" cy="${f.y(p.y)}" r="${p.marked ? 6 : 4}" fill="${color}"${p.marked ? ' stroke="black" stroke-width="1.5"' : ""}><title>${esc(p.label)}: ${fmt(p.x)}, ${fmt(p.y)}</title></circle>`);
  }
  legend(f.parts, groups);
  f.parts.push("</svg>");
  return f.parts.join("\n");
}

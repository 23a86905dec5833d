// uPlot helpers: chart data from the query API's points, min/avg/max bands, drag to
// zoom, live samples appended to the charts on screen, light and dark colours from CSS.
//
// A query point is [ts ms, min, avg, max, count]. A chart line draws the avg; the first line of a
// chart (or any line with `band`) also gets its min and max as a shaded band. A gap longer than
// 2.5 points (or push intervals) is a break in the line, not a straight bridge.

import uPlot from "./vendor/uPlot.esm.js";
import { axis, byUnit } from "./format.js";

const HEIGHT = 180;
const GAP_FACTOR = 2.5;
const PALETTE_SIZE = 8;

// --- colours ------------------------------------------------------------------------------------

let theme = null;
const themed = new Set(); // charts to rebuild when the colour scheme changes

function readTheme() {
  const css = getComputedStyle(document.documentElement);
  const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const palette = [];
  for (let i = 1; i <= PALETTE_SIZE; i++) palette.push(v(`--c${i}`, "#3b82f6"));
  return {
    axis: v("--chart-axis", "#667"),
    grid: v("--chart-grid", "rgba(128,128,128,.18)"),
    band: v("--chart-band-alpha", "0.18"),
    font: `12px ${v("--font", "system-ui, sans-serif")}`,
    palette,
  };
}

function colours() {
  if (!theme) theme = readTheme();
  return theme;
}

function alpha(colour, a) {
  // "#rrggbb" -> rgba(); other notations are used as they are (bands then need a translucent colour)
  const m = /^#([0-9a-f]{6})$/i.exec(colour);
  if (!m) return colour;
  const n = parseInt(m[1], 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
}

const scheme = window.matchMedia("(prefers-color-scheme: dark)");
scheme.addEventListener("change", () => {
  theme = null;
  for (const chart of themed) chart.rebuild();
});

// --- sizes ----------------------------------------------------------------------------------------

const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = entry.target.chart;
    if (chart) chart.resize();
  }
});

// --- data ---------------------------------------------------------------------------------------

// Axis steps for bytes: powers of two of each binary unit, so ticks read 256MiB, 512MiB, 1GiB.
const BYTE_INCRS = [];
for (let k = 0; k <= 5; k++) for (let m = 1; m < 1024; m *= 2) BYTE_INCRS.push(m * 1024 ** k);

/** The last index where any line has a value, or null. */
function lastIndex(data) {
  const xs = data[0] || [];
  for (let i = xs.length - 1; i >= 0; i--) {
    for (let s = 1; s < data.length; s++) if (data[s][i] !== null && data[s][i] !== undefined) return i;
  }
  return null;
}

/** Columns of one series' points: ts, min, avg, max, with a null wherever the data has a gap. */
function columns(points, gapMs) {
  const xs = [];
  const lo = [];
  const mid = [];
  const hi = [];
  let prev = null;
  for (const p of points) {
    const ts = p[0];
    if (prev !== null && gapMs > 0 && ts - prev > gapMs) {
      xs.push(prev + 1);
      lo.push(null);
      mid.push(null);
      hi.push(null);
    }
    xs.push(ts);
    lo.push(p[1]);
    mid.push(p[2]);
    hi.push(p[3]);
    prev = ts;
  }
  return { xs, lo, mid, hi };
}

/** Merge one sample into the last point when it falls into the same bucket, else append it. */
function addSample(points, ts, value, stepMs, bucketed) {
  const last = points[points.length - 1];
  if (last && ts <= last[0] && !bucketed) return;
  const start = bucketed ? ts - (ts % stepMs) : ts;
  if (last && start === last[0]) {
    const n = last[4] || 1;
    last[1] = last[1] === null ? value : Math.min(last[1], value);
    last[3] = last[3] === null ? value : Math.max(last[3], value);
    last[2] = last[2] === null ? value : (last[2] * n + value) / (n + 1);
    last[4] = n + 1;
  } else if (!last || start > last[0]) {
    points.push([start, value, value, value, 1]);
  }
}

// --- the chart ----------------------------------------------------------------------------------

/**
 * One chart in `el`. spec: {title, unit, lines: [{id, label, band?, dash?}], min?, max?}.
 * hooks: {zoom(start, end), reset()}: a drag asks the page to zoom every chart; a double click
 * asks it to go back.
 */
export class Chart {
  constructor(el, spec, hooks = {}) {
    this.el = el;
    this.spec = spec;
    this.hooks = hooks;
    this.points = new Map(); // series id -> points
    this.view = null;
    this.stepMs = 0;
    this.gapMs = 0;
    this.bucketed = false;
    this.plot = null;
    el.chart = this;
  }

  /** Series ids this chart draws. */
  ids() {
    return this.spec.lines.map((l) => l.id);
  }

  /** Points per series id from a query answer; step and tier from the same answer. */
  setData(byId, { view, stepMs, intervalMs, bucketed }) {
    this.view = view;
    this.stepMs = stepMs;
    this.bucketed = bucketed;
    this.gapMs = GAP_FACTOR * Math.max(stepMs || 0, intervalMs || 0);
    this.points = new Map();
    for (const line of this.spec.lines) this.points.set(line.id, (byId.get(line.id) || []).map((p) => p.slice()));
    this.draw(true);
  }

  /** True when any line has a value. */
  hasData() {
    for (const pts of this.points.values()) if (pts.some((p) => p[2] !== null)) return true;
    return false;
  }

  /** New samples [[ts, value], ...] of one series (live); slides the view when it is live. */
  addSamples(id, samples) {
    const pts = this.points.get(id);
    if (!pts || !this.view || !this.view.live) return false;
    for (const [ts, value] of samples) {
      if (typeof value === "number" && Number.isFinite(value)) addSample(pts, ts, value, this.stepMs, this.bucketed);
    }
    return true;
  }

  /** After addSamples: move the window to now, drop what fell out, redraw. */
  slide(now = Date.now()) {
    if (!this.view || !this.view.live) return;
    const span = this.view.end - this.view.start;
    this.view = { ...this.view, start: now - span, end: now };
    for (const pts of this.points.values()) {
      let cut = 0;
      while (cut < pts.length && pts[cut][0] < this.view.start - this.stepMs) cut++;
      if (cut) pts.splice(0, cut);
    }
    this.draw(false);
  }

  table() {
    const tables = [];
    for (const line of this.spec.lines) {
      const c = columns(this.points.get(line.id) || [], this.gapMs);
      tables.push(this.banded(line) ? [c.xs, c.mid, c.lo, c.hi] : [c.xs, c.mid]);
    }
    if (!tables.length) return [[]];
    return tables.length === 1 ? tables[0] : uPlot.join(tables);
  }

  banded(line) {
    return line.band === undefined ? line === this.spec.lines[0] : Boolean(line.band);
  }

  options() {
    const t = colours();
    const unit = this.spec.unit;
    const fmt = (u, v) => (v === null || v === undefined ? "–" : byUnit(unit, v));
    // The legend shows the avg, and for a banded line its min–max at the same point.
    const fmtBand = (u, v, sidx, idx) => {
      if (v === null || v === undefined || idx === null || idx === undefined) return "–";
      const lo = u.data[sidx + 1][idx];
      const hi = u.data[sidx + 2][idx];
      const text = byUnit(unit, v);
      if (typeof lo !== "number" || typeof hi !== "number") return text;
      const low = byUnit(unit, lo);
      const high = byUnit(unit, hi);
      return low === high ? text : `${text} (${low}–${high})`;
    };
    const series = [{ value: (u, ts) => (ts === null ? "–" : new Date(ts).toLocaleString()) }];
    const bands = [];
    this.edges = new Set(); // series indexes of band edges (left out of the legend)
    this.spec.lines.forEach((line, i) => {
      const colour = t.palette[i % t.palette.length];
      const avgIdx = series.length;
      series.push({
        label: line.label,
        stroke: colour,
        width: 1.5,
        dash: line.dash ? [4, 4] : undefined,
        value: this.banded(line) ? fmtBand : fmt,
        points: { show: false },
      });
      if (this.banded(line)) {
        this.edges.add(avgIdx + 1).add(avgIdx + 2);
        const soft = alpha(colour, t.band);
        series.push({ label: `${line.label} min`, stroke: soft, width: 0, value: fmt, points: { show: false } });
        series.push({ label: `${line.label} max`, stroke: soft, width: 0, value: fmt, points: { show: false } });
        bands.push({ series: [avgIdx + 2, avgIdx + 1], fill: soft });
      }
    });
    const fixedMin = this.spec.min;
    const fixedMax = this.spec.max;
    const axisStyle = { stroke: t.axis, font: t.font, grid: { stroke: t.grid, width: 1 }, ticks: { stroke: t.grid, width: 1 } };
    return {
      width: Math.max(200, this.el.clientWidth || 300),
      height: HEIGHT,
      ms: 1,
      series,
      bands,
      legend: { live: true },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { size: 6 } },
      scales: {
        x: { time: true, range: (u, lo, hi) => (this.view ? [this.view.start, this.view.end] : [lo, hi]) },
        y: {
          range: (u, lo, hi) => {
            let min = fixedMin ?? Math.min(0, lo ?? 0);
            let max = hi ?? 1;
            if (fixedMax !== undefined) max = Math.max(fixedMax, max ?? 0);
            if (!(max > min)) max = min + 1;
            return [min, max + (fixedMax !== undefined ? 0 : (max - min) * 0.05)];
          },
        },
      },
      axes: [
        { ...axisStyle },
        {
          ...axisStyle,
          values: (u, vals) => vals.map((v) => axis(unit, v)),
          size: (u, values) => (values ? Math.max(40, 24 + 7.5 * Math.max(0, ...values.map((v) => String(v).length))) : 50),
          incrs: unit === "bytes" || unit === "bytes/s" ? BYTE_INCRS : undefined,
        },
      ],
      hooks: {
        setSelect: [
          (u) => {
            const sel = u.select;
            if (sel.width < 5) return;
            const start = u.posToVal(sel.left, "x");
            const end = u.posToVal(sel.left + sel.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            if (this.hooks.zoom) this.hooks.zoom(start, end);
          },
        ],
        // Away from the cursor the legend shows the newest values instead of dashes.
        setLegend: [
          (u) => {
            if (u.legend.idx === null || u.legend.idx === undefined) {
              const last = lastIndex(u.data);
              if (last !== null) u.setLegend({ idx: last }, false);
            }
          },
        ],
      },
    };
  }

  draw(reset) {
    const data = this.table();
    if (!this.plot) {
      this.plot = new uPlot(this.options(), data, this.el);
      this.plot.over.addEventListener("dblclick", () => this.hooks.reset && this.hooks.reset());
      this.plot.root.querySelectorAll(".u-legend tr.u-series").forEach((row, i) => {
        if (this.edges.has(i)) row.classList.add("u-band-edge");
      });
      resizer.observe(this.el);
      themed.add(this);
    } else {
      this.plot.setData(data, true);
    }
    if (!reset && this.view) this.plot.setScale("x", { min: this.view.start, max: this.view.end });
    const last = lastIndex(data);
    if (last !== null && (this.plot.legend.idx === null || this.plot.legend.idx === undefined || !this.plot.cursor.left || this.plot.cursor.left < 0)) {
      this.plot.setLegend({ idx: last }, false);
    }
    const ready = this.hasData();
    if (ready) this.el.dataset.chartReady = "1";
    else delete this.el.dataset.chartReady;
  }

  /** Show a sub-range at once (the page loads finer points for it next). */
  zoomTo(start, end) {
    this.view = { ...this.view, start, end, live: false };
    if (this.plot) this.plot.setScale("x", { min: start, max: end });
  }

  resize() {
    if (!this.plot) return;
    const width = Math.max(200, this.el.clientWidth);
    if (Math.abs(width - this.plot.width) > 1) this.plot.setSize({ width, height: HEIGHT });
  }

  rebuild() {
    if (!this.plot) return;
    this.plot.destroy();
    this.plot = null;
    this.draw(true);
  }

  destroy() {
    resizer.unobserve(this.el);
    themed.delete(this);
    if (this.plot) this.plot.destroy();
    this.plot = null;
    delete this.el.chart;
  }
}

// What a host page's charts ask the server for: the range shown, the step and the query calls.
// The host page and early.js share it (early.js imports it while the other modules still load, and
// asks for the charts' data as soon as it has the host's series): both build the same URLs, so the
// page takes early.js's answers. No imports, so that early import costs one small file.

export const RANGES = [
  { key: "1h", label: "1 h", ms: 3_600_000 },
  { key: "6h", label: "6 h", ms: 6 * 3_600_000 },
  { key: "24h", label: "24 h", ms: 24 * 3_600_000 },
  { key: "7d", label: "7 d", ms: 7 * 86_400_000 },
  { key: "30d", label: "30 d", ms: 30 * 86_400_000 },
  { key: "1y", label: "1 y", ms: 365 * 86_400_000 },
];
export const DEFAULT_RANGE = "1h";

// steps a chart asks for (seconds): whole buckets of the raw, 1 m, 5 m and 1 h tiers
const STEPS = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const MAX_PER_REQUEST = 60; // series ids in one query call
const MAX_REQUESTS = 4;
// the chart grid of style.css: pages up to 1500 px wide less about 64 px of padding, columns of at
// least 440 px 12 px apart, one column at phone width
const PAGE_MAX_PX = 1500;
const PADDING_PX = 64;
const COLUMN_MIN_PX = 440;
const GAP_PX = 12;
const ONE_COLUMN_PX = 760;

/** The view of a range key at `now`: {start, end, key, live}. */
export function presetView(key, now = Date.now()) {
  const r = RANGES.find((x) => x.key === key) || RANGES.find((x) => x.key === DEFAULT_RANGE);
  return { key: r.key, start: now - r.ms, end: now, live: true };
}

/** A fixed view (a custom range or a zoom): no sliding, no live samples. */
export function fixedView(start, end) {
  return { key: "custom", start: Math.min(start, end), end: Math.max(start, end), live: false };
}

/** The view a route's query asks for ({from, to} or {range}), at `now`. */
export function viewFromQuery(q, now = Date.now()) {
  const from = Number(q.from);
  const to = Number(q.to);
  if (from > 0 && to > from) return fixedView(from, to);
  return presetView(RANGES.some((r) => r.key === q.range) ? q.range : DEFAULT_RANGE, now);
}

/** `/api/v1/query` + {host: "a", series: [1, 2]} -> "/api/v1/query?host=a&series=1&series=2". */
export function url(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** Seconds per point for a span on a page `pageWidth` px wide: about one point per two pixels of
 * a chart (the chart's width from the grid's rules, so it is known before the page is drawn), on
 * a step a rollup tier has. 24 h on a desktop's 600 px chart: 5 min, the 5 m tier. */
export function chartStep(spanMs, pageWidth) {
  const content = Math.min(pageWidth, PAGE_MAX_PX) - PADDING_PX;
  const fit = Math.floor((content + GAP_PX) / (COLUMN_MIN_PX + GAP_PX));
  const columns = pageWidth <= ONE_COLUMN_PX ? 1 : Math.max(1, fit);
  const points = Math.min(400, Math.max(150, Math.round(content / columns / 2)));
  const wanted = spanMs / 1000 / points;
  return STEPS.find((s) => s >= wanted) || Math.ceil(wanted / 86400) * 86400;
}

/** Split chart specs into at most MAX_REQUESTS groups of whole charts, in page order. */
export function chunks(specs) {
  const total = specs.reduce((n, s) => n + s.lines.length, 0);
  const size = Math.max(Math.ceil(total / MAX_REQUESTS), Math.min(MAX_PER_REQUEST, total));
  const out = [];
  let cur = [];
  let n = 0;
  for (const s of specs) {
    if (n && n + s.lines.length > size && out.length < MAX_REQUESTS - 1) {
      out.push(cur);
      cur = [];
      n = 0;
    }
    cur.push(s);
    n += s.lines.length;
  }
  if (cur.length) out.push(cur);
  return out;
}

/** The query calls of the charts `specs` of host `name` over `view`: [{specs, query}], where
 * `query` is what `/api/v1/query` is asked with (`url("/api/v1/query", query)`). */
export function chartQueries(name, specs, view, pageWidth) {
  const step = `${chartStep(view.end - view.start, pageWidth)}s`;
  const out = [];
  for (const group of chunks(specs)) {
    const ids = group.flatMap((s) => s.lines.map((l) => l.id));
    if (!ids.length) continue;
    out.push({
      specs: group,
      query: { host: name, series: ids, start: Math.round(view.start), end: Math.round(view.end), step },
    });
  }
  return out;
}

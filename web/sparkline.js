// Tiny inline SVG sparklines: one polyline per run of values (a null is a gap). Cheap enough for
// thousands on one page: markup only, no canvas, no library. Colours come from CSS.

import { raw } from "./dom.js";

// x is the index of a value (one unit each), y is 0..100 from the top: integers keep the markup
// short (a thousand rows hold four thousand of these).
const H = 100;

/**
 * Markup of a sparkline of `values` (oldest first). `max` fixes the top of the scale (100 for
 * percentages); without it the largest value is the top. Returns "" when there is nothing to draw.
 */
export function sparkline(values, max) {
  if (!Array.isArray(values) || values.length < 2) return raw("");
  let top = max;
  if (!(top > 0)) {
    top = 0;
    for (const v of values) if (typeof v === "number" && v > top) top = v;
    if (!(top > 0)) top = 1;
  }
  const runs = [];
  let run = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== "number" || !Number.isFinite(v)) {
      if (run.length) runs.push(run);
      run = [];
      continue;
    }
    run.push([i, Math.round(H - (Math.min(Math.max(v, 0), top) / top) * (H - 4) - 2)]);
  }
  if (run.length) runs.push(run);
  if (!runs.length) return raw("");
  let out = `<svg class="spark" viewBox="0 0 ${values.length - 1} ${H}" preserveAspectRatio="none" aria-hidden="true" focusable="false">`;
  for (const r of runs) {
    if (r.length === 1) r.unshift([r[0][0] - 0.5, r[0][1]]); // a lone point: a dot (round caps)
    const pts = r.map((p) => `${p[0]},${p[1]}`).join(" ");
    out += `<polyline points="${pts}"/>`;
  }
  return raw(out + "</svg>");
}

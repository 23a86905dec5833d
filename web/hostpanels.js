// The host page's tables: services and checks, top processes, facts, events, trends and usage
// patterns. Each takes data from the API and returns markup made with `html` (escaped).

import { html, link, raw } from "./dom.js";
import { ago, byUnit, bytes, duration, isNum, number, when, whenShort } from "./format.js";
import { levelBadge } from "./status.js";

/** Series ids whose current values the services, checks and processes tables need. */
export const STATUS_NAMES = [
  "node_systemd_unit_state",
  "edgewatch_systemd_unit_active",
  "edgewatch_check_up",
  "edgewatch_check_duration_seconds",
  "edgewatch_check_http_status",
  "edgewatch_check_certificate_expiry_days",
  "edgewatch_process_watch_running",
  "edgewatch_scrape_up",
  "edgewatch_process_cpu_percent",
  "edgewatch_process_resident_bytes",
];

/** {name -> [{labels, current, last_ts}]} from a /api/v1/summary answer. */
export function currentByName(summaryAnswer) {
  const out = new Map();
  for (const s of (summaryAnswer && summaryAnswer.series) || []) {
    const sum = s.summary || {};
    if (!out.has(s.name)) out.set(s.name, []);
    out.get(s.name).push({ id: s.id, labels: s.labels || {}, current: sum.current, last: sum.last_ts });
  }
  return out;
}

function find(list, labels) {
  return (list || []).find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v));
}

function stateCell(ok, text) {
  const cls = ok === null ? "muted" : ok ? "ok-text" : "bad-text";
  return html`<span class="${cls}">${text}</span>`;
}

/** Services (systemd units), checks, watched processes and scrapes with their current state. */
export function servicesTable(cur) {
  const rows = [];
  const units = new Map();
  for (const x of cur.get("node_systemd_unit_state") || []) {
    if (!units.has(x.labels.unit)) units.set(x.labels.unit, null);
    if (isNum(x.current) && x.current >= 0.5) units.set(x.labels.unit, x.labels.state);
  }
  for (const [unit, st] of [...units].sort()) {
    const active = find(cur.get("edgewatch_systemd_unit_active"), { unit });
    const ok = st === null ? null : st === "active";
    const detail = active && isNum(active.current) ? (active.current >= 0.5 ? "active" : "not active") : "";
    rows.push(html`<tr><td>service</td><th scope="row">${unit}</th><td>${stateCell(ok, st || "unknown")}</td><td>${detail}</td></tr>`);
  }
  for (const x of (cur.get("edgewatch_check_up") || []).slice().sort((a, b) => String(a.labels.check).localeCompare(b.labels.check))) {
    const check = x.labels.check;
    const ok = isNum(x.current) ? x.current >= 0.5 : null;
    const parts = [];
    const dur = find(cur.get("edgewatch_check_duration_seconds"), { check });
    if (dur && isNum(dur.current)) parts.push(byUnit("seconds", dur.current));
    const status = find(cur.get("edgewatch_check_http_status"), { check });
    if (status && isNum(status.current) && status.current > 0) parts.push(`HTTP ${status.current}`);
    const cert = find(cur.get("edgewatch_check_certificate_expiry_days"), { check });
    if (cert && isNum(cert.current)) parts.push(`certificate expires in ${number(cert.current, 0)} days`);
    rows.push(html`<tr><td>check${x.labels.kind ? ` (${x.labels.kind})` : ""}</td><th scope="row">${check}</th><td>${stateCell(ok, ok === null ? "unknown" : ok ? "up" : "failing")}</td><td>${parts.join(" · ")}</td></tr>`);
  }
  for (const x of cur.get("edgewatch_process_watch_running") || []) {
    const ok = isNum(x.current) ? x.current > 0 : null;
    const text = ok === null ? "unknown" : ok ? `running (${number(x.current, 0)})` : "not running";
    rows.push(html`<tr><td>process</td><th scope="row">${x.labels.watch}</th><td>${stateCell(ok, text)}</td><td></td></tr>`);
  }
  for (const x of cur.get("edgewatch_scrape_up") || []) {
    const ok = isNum(x.current) ? x.current >= 0.5 : null;
    rows.push(html`<tr><td>scrape</td><th scope="row">${x.labels.job}</th><td>${stateCell(ok, ok === null ? "unknown" : ok ? "up" : "down")}</td><td></td></tr>`);
  }
  if (!rows.length) {
    return html`<p class="muted">No services or checks are watched on this host (agent settings <code>systemd.units</code>, <code>[[check]]</code>, <code>[[watch]]</code>).</p>`;
  }
  return html`<div class="table-wrap"><table class="list"><thead><tr><th scope="col">Kind</th><th scope="col">Name</th><th scope="col">State</th><th scope="col">Detail</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

/** The processes of the newest scan (their series have the newest last sample), by rank. */
function newest(list) {
  const live = (list || []).filter((x) => isNum(x.current) && isNum(x.last));
  const top = Math.max(0, ...live.map((x) => x.last));
  return live
    .filter((x) => x.last >= top - 1000)
    .sort((a, b) => Number(a.labels.rank || 0) - Number(b.labels.rank || 0));
}

function processList(title, list, unit) {
  if (!list.length) return html``;
  return html`<div class="proc"><h3>${title}</h3><table class="list compact"><thead><tr><th scope="col">#</th><th scope="col">Process</th><th scope="col">PID</th><th scope="col">User</th><th scope="col" class="num">${unit === "percent" ? "CPU" : "Memory"}</th></tr></thead><tbody>${list.map(
    (x) => html`<tr><td>${x.labels.rank}</td><th scope="row">${x.labels.name}</th><td>${x.labels.pid}</td><td>${x.labels.user}</td><td class="num">${byUnit(unit, x.current)}</td></tr>`,
  )}</tbody></table></div>`;
}

export function processesTable(cur) {
  const cpu = newest(cur.get("edgewatch_process_cpu_percent"));
  const mem = newest(cur.get("edgewatch_process_resident_bytes"));
  if (!cpu.length && !mem.length) return html`<p class="muted">No process data from this host in the last minutes.</p>`;
  return html`<div class="proc-grid">${processList("Top by CPU", cpu, "percent")}${processList("Top by memory", mem, "bytes")}</div>`;
}

const FACT_LABELS = {
  hostname: "Host name",
  os: "Operating system",
  kernel: "Kernel",
  arch: "Architecture",
  cpu_model: "CPU",
  cpu_count: "CPU cores",
  memory_bytes: "Memory",
  boot_time: "Booted",
  agent_version: "Agent version",
};

export function factsList(host) {
  const facts = host.facts || {};
  const items = [];
  for (const [key, value] of Object.entries(facts)) {
    if (key === "actions") continue; // the Actions section shows them
    let text = value;
    if (key === "memory_bytes" && isNum(Number(value))) text = bytes(Number(value));
    if (key === "boot_time" && isNum(Number(value))) {
      const ms = Number(value) * 1000;
      text = `${when(ms)} (up ${duration(Date.now() - ms)})`;
    }
    items.push(html`<dt>${FACT_LABELS[key] || key}</dt><dd>${text}</dd>`);
  }
  items.push(html`<dt>Last seen</dt><dd>${when(host.last_seen)} (${ago(host.last_seen)})</dd>`);
  if (isNum(host.interval_ms)) items.push(html`<dt>Push interval</dt><dd>${duration(host.interval_ms)}</dd>`);
  return html`<dl class="facts">${items}</dl>`;
}

export function eventsList(events) {
  const list = (events || []).slice(-30).reverse();
  if (!list.length) return html`<p class="muted">No events in the last 24 hours.</p>`;
  return html`<ul class="events">${list.map((e) => {
    const a = e.attrs || {};
    const text =
      e.type === "service" && a.unit
        ? `${a.unit}: ${a.from || "?"} → ${a.to || "?"}${a.sub ? ` (${a.sub})` : ""}`
        : Object.entries(a).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    return html`<li><time datetime="${new Date(e.ts).toISOString()}">${whenShort(e.ts)}</time> <span class="badge">${e.type}</span> ${text}</li>`;
  })}</ul>`;
}

export function hostAlerts(alerts) {
  if (!alerts.length) return html`<p class="muted">No active alerts.</p>`;
  return html`<ul class="alert-mini">${alerts.map(
    (a) => html`<li>${levelBadge(a.severity)} <a href="${link("alerts", a.fingerprint)}">${a.rule}</a> <span class="muted">${a.state}${a.acked_by ? ", acknowledged" : ""} · since ${ago(a.active_since)}</span></li>`,
  )}</ul>`;
}

const ARROWS = { up: "↗", down: "↘", stable: "→", unknown: "?" };

/** Trend table rows from a /api/v1/summary answer; `titleOf(series)` names each row. */
export function trendsTable(answer, titleOf, unitOfSeries) {
  const rows = ((answer && answer.series) || []).map((s) => {
    const sum = s.summary || {};
    const t = s.trend || {};
    const unit = unitOfSeries(s);
    const change = isNum(t.change_pct) ? ` ${t.change_pct > 0 ? "+" : ""}${number(t.change_pct, 1)} %` : "";
    const trendText = t.direction && t.direction !== "unknown" ? `${ARROWS[t.direction] || ""} ${t.direction}${t.strength && t.direction !== "stable" ? ` (${t.strength})` : ""}${change}` : "not enough data";
    return html`<tr><th scope="row">${titleOf(s)}</th><td class="num">${byUnit(unit, sum.current)}</td><td class="num">${byUnit(unit, sum.avg)}</td><td class="num">${byUnit(unit, sum.min)}</td><td class="num">${byUnit(unit, sum.max)}</td><td class="trend-${t.direction || "unknown"}">${trendText}</td></tr>`;
  });
  if (!rows.length) return html`<p class="muted">No data for a summary in this range.</p>`;
  return html`<div class="table-wrap"><table class="list"><thead><tr><th scope="col">Metric</th><th scope="col" class="num">Current</th><th scope="col" class="num">Average</th><th scope="col" class="num">Min</th><th scope="col" class="num">Max</th><th scope="col">Trend</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

/** Bars of avg per slot (hours of day or days of week) as an SVG, with text labels. */
function bars(slots, labelOf, unit) {
  const values = slots.map((s) => s.avg);
  const max = Math.max(1e-9, ...values.filter(isNum));
  const w = 100 / slots.length;
  let out = `<svg class="bars" viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true" focusable="false">`;
  slots.forEach((s, i) => {
    if (!isNum(s.avg)) return;
    const h = Math.max(0.5, (s.avg / max) * 28);
    out += `<rect x="${(i * w + w * 0.1).toFixed(2)}" y="${(30 - h).toFixed(2)}" width="${(w * 0.8).toFixed(2)}" height="${h.toFixed(2)}"/>`;
  });
  out += "</svg>";
  const described = slots
    .filter((s) => isNum(s.avg))
    .map((s) => `${labelOf(s)}: ${byUnit(unit, s.avg)}`)
    .join(", ");
  return html`<figure class="pattern">${raw(out)}<figcaption class="visually-hidden">${described}</figcaption></figure>`;
}

export function patternsBlock(answer, titleOf, unitOfSeries) {
  const blocks = ((answer && answer.series) || []).map((s) => {
    const p = s.patterns || {};
    const unit = unitOfSeries(s);
    const hours = p.hours || [];
    const days = p.days || [];
    if (!hours.some((h) => isNum(h.avg))) return html``;
    const hourText = (h) => `${String(h).padStart(2, "0")}:00`;
    const summary = [
      isNum(p.peak_hour) ? `busiest hour ${hourText(p.peak_hour)}` : "",
      isNum(p.quiet_hour) ? `quietest ${hourText(p.quiet_hour)}` : "",
      isNum(p.busiest_day) && days[p.busiest_day] ? `busiest day ${days[p.busiest_day].name}` : "",
    ].filter(Boolean);
    return html`<div class="pattern-block"><h3>${titleOf(s)}</h3>
<p class="muted">${summary.join(", ")}${summary.length ? ` (${p.timezone || answer.tz})` : ""}</p>
<div class="pattern-row"><span>Hour of day</span>${bars(hours, (h) => hourText(h.hour), unit)}</div>
<div class="pattern-row"><span>Day of week</span>${bars(days, (d) => d.name || d.day, unit)}</div></div>`;
  });
  return html`${blocks}`;
}

// Host status and alert levels: their order and how they are labelled. Shared by the pages.

import { html } from "./dom.js";

/** Worst first when sorted by rank, descending. */
export const STATUS_RANK = { down: 4, critical: 3, warning: 2, up: 1 };
export const STATUSES = ["up", "warning", "critical", "down"];

export const LEVEL_RANK = { info: 0, warning: 1, error: 2, critical: 3 };
export const LEVELS = ["info", "warning", "error", "critical"];

/** The default thresholds the server uses for the headline values (warning, critical). */
export const THRESHOLDS = { cpu: [80, 95], memory: [85, 95], disk: [80, 90] };

export function statusOf(host) {
  return STATUS_RANK[host.status] ? host.status : "down";
}

/** "warn" or "crit" for a headline value past its threshold, else "". */
export function valueClass(key, v) {
  const t = THRESHOLDS[key];
  if (!t || typeof v !== "number") return "";
  return v >= t[1] ? "crit" : v >= t[0] ? "warn" : "";
}

/** A status with its colour dot and its word (colour is never the only sign). */
export function statusBadge(status) {
  return html`<span class="status st-${status}"><span class="dot" aria-hidden="true"></span>${status}</span>`;
}

/** An alert's severity as a badge. */
export function levelBadge(level) {
  const l = LEVEL_RANK[level] === undefined ? "info" : level;
  return html`<span class="badge lv-${l}">${level || "–"}</span>`;
}

/** The worst severity of a list of alerts, or "". */
export function worstLevel(alerts) {
  let worst = "";
  for (const a of alerts) {
    const l = a.severity || a.level;
    if (worst === "" || (LEVEL_RANK[l] ?? -1) > (LEVEL_RANK[worst] ?? -1)) worst = l;
  }
  return worst;
}

/** One line that says what an alert is about: "disk_high on web-1 (mountpoint=/)". */
export function alertTitle(alert) {
  const extra = Object.entries(alert.labels || {})
    .filter(([k]) => k !== "host")
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
  const where = alert.host ? ` on ${alert.host}` : "";
  return `${alert.rule}${where}${extra ? ` (${extra})` : ""}`;
}

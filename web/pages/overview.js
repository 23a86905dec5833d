// Overview of all hosts: status, CPU / memory / disk / network with sparklines, last seen and
// active alerts; sort, filter and search; live status from the WebSocket.
//
// Built for a thousand hosts: the rows are one HTML string (no per-row nodes built by hand, no
// chart library), sparklines are tiny SVG polylines, rows off screen skip layout (style.css), and
// live updates replace only the rows that changed.

import { get } from "../api.js";
import { $, fromHtml, html, link, on, raw, setHtml } from "../dom.js";
import { ago, isNum, percent, rate } from "../format.js";
import { live } from "../live.js";
import { sparkline } from "../sparkline.js";
import { LEVEL_RANK, STATUSES, STATUS_RANK, statusBadge, statusOf, valueClass, worstLevel } from "../status.js";

const COLUMNS = [
  { key: "status", label: "Status" },
  { key: "host", label: "Host" },
  { key: "cpu", label: "CPU" },
  { key: "memory", label: "Memory" },
  { key: "disk", label: "Disk" },
  { key: "net", label: "Network" },
  { key: "seen", label: "Last seen" },
  { key: "alerts", label: "Alerts" },
];
const FILTERS = [{ key: "", label: "All" }, ...STATUSES.map((s) => ({ key: s, label: s })), { key: "alerts", label: "With alerts" }];
const SEEN_REFRESH_MS = 10000;
const POLL_MS = 30000; // without the live socket, the list is fetched again this often

function netOf(h) {
  const v = h.values || {};
  return isNum(v.net_rx) || isNum(v.net_tx) ? (v.net_rx || 0) + (v.net_tx || 0) : null;
}

function sortValue(key, h, alertsOf) {
  const v = h.values || {};
  switch (key) {
    case "status":
      return STATUS_RANK[statusOf(h)] || 0;
    case "host":
      return h.host;
    case "net":
      return netOf(h);
    case "seen":
      return h.last_seen;
    case "alerts": {
      const list = alertsOf(h.host);
      return list.length ? list.length + 10 * (LEVEL_RANK[worstLevel(list)] ?? 0) : 0;
    }
    default:
      return v[key];
  }
}

function compareBy(key, dir, alertsOf) {
  const sign = dir === "asc" ? 1 : -1;
  return (a, b) => {
    const x = sortValue(key, a, alertsOf);
    const y = sortValue(key, b, alertsOf);
    const xn = x === null || x === undefined;
    const yn = y === null || y === undefined;
    if (xn !== yn) return xn ? 1 : -1; // hosts without the value go last either way
    if (!xn && x !== y) {
      if (typeof x === "string") return sign * x.localeCompare(y);
      return sign * (x - y);
    }
    return a.host.localeCompare(b.host);
  };
}

// Sparklines are drawn into their slots when a row comes near the screen (see `sparks` below):
// parsing four thousand SVGs up front would cost more than the rest of the page.
function slot(h, key) {
  return h.spark && Array.isArray(h.spark[key]) ? raw(`<span class="spark-slot" data-spark="${key}"></span>`) : raw("");
}

function metricCell(key, label, h) {
  const v = (h.values || {})[key];
  const spark = slot(h, key);
  return html`<div role="cell" class="c-metric ${valueClass(key, v)}" data-label="${label}"><span class="val">${percent(v)}</span>${spark}</div>`;
}

function alertsCell(h, list) {
  if (!list.length) return html`<div role="cell" class="c-alerts" data-label="Alerts"><span class="muted">–</span></div>`;
  const worst = worstLevel(list);
  const label = `${list.length} active alert${list.length === 1 ? "" : "s"}, worst ${worst}`;
  return html`<div role="cell" class="c-alerts" data-label="Alerts"><a class="badge lv-${worst}" href="#/alerts?host=${encodeURIComponent(h.host)}" aria-label="${label}">${list.length}</a></div>`;
}

function rowHtml(h, list, now) {
  const st = statusOf(h);
  const v = h.values || {};
  const facts = h.facts || {};
  const net = slot(h, "net");
  return html`<div role="row" class="hrow st-row-${st}" data-host="${h.host}">
<div role="cell" class="c-status">${statusBadge(st)}</div>
<div role="rowheader" class="c-host"><a href="${link("hosts", h.host)}">${h.host}</a>${facts.os ? html`<small>${facts.os}</small>` : ""}${h.revoked ? html`<small class="warn-text">revoked</small>` : ""}</div>
${metricCell("cpu", "CPU", h)}${metricCell("memory", "Memory", h)}${metricCell("disk", "Disk", h)}
<div role="cell" class="c-metric c-net" data-label="Network"><span class="val" title="receive / transmit">↓${rate(v.net_rx)} ↑${rate(v.net_tx)}</span>${net}</div>
<div role="cell" class="c-seen" data-label="Last seen">${ago(h.last_seen, now)}</div>
${alertsCell(h, list)}</div>`;
}

export async function mount(root, ctx) {
  document.title = "Hosts · edgewatch";
  let hosts = []; // as from /api/v1/hosts
  const byName = new Map();
  const alertsByFp = new Map(); // active alerts
  let alertsByHost = new Map();
  let rows = new Map(); // host -> row element currently shown
  const state = {
    q: ctx.query.q || "",
    status: ctx.query.status || "",
    sort: COLUMNS.some((c) => c.key === ctx.query.sort) ? ctx.query.sort : "status",
    dir: ctx.query.dir === "asc" || ctx.query.dir === "desc" ? ctx.query.dir : "",
  };
  const dirOf = (key) => state.dir || (key === "host" ? "asc" : "desc");
  const alertsOf = (name) => alertsByHost.get(name) || [];

  setHtml(
    root,
    html`<section class="overview">
  <div class="page-head">
    <h1>Hosts <span class="count" id="ov-count"></span></h1>
    <div class="toolbar">
      <label class="search"><span class="visually-hidden">Search hosts</span>
        <input type="search" id="ov-search" placeholder="Search hosts, OS, kernel" value="${state.q}" autocomplete="off"></label>
      <label class="sort-select"><span>Sort</span>
        <select id="ov-sort">${COLUMNS.map((c) => html`<option value="${c.key}">${c.label}</option>`)}</select></label>
    </div>
  </div>
  <div class="chips" role="group" aria-label="Filter by status" id="ov-filters">
    ${FILTERS.map((f) => html`<button type="button" class="chip" data-filter="${f.key}" aria-pressed="false">${f.label} <span class="n"></span></button>`)}
  </div>
  <div class="hosts" id="ov-table" role="table" aria-label="Hosts with their status and headline values">
    <div role="rowgroup" class="hosts-head"><div role="row" class="hrow">${COLUMNS.map((c) => html`<div role="columnheader" class="h-${c.key}"><button type="button" class="sort" data-sort="${c.key}">${c.label}</button></div>`)}</div></div>
    <div role="rowgroup" id="ov-body"></div>
  </div>
  <p class="empty" id="ov-empty" hidden></p>
</section>`,
  );
  const body = $("#ov-body", root);
  const empty = $("#ov-empty", root);
  const search = $("#ov-search", root);
  const sortSelect = $("#ov-sort", root);

  const sparks = new IntersectionObserver(
    (entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        const row = e.target;
        sparks.unobserve(row);
        const h = byName.get(row.dataset.host);
        if (!h || !h.spark) continue;
        for (const el of row.querySelectorAll(".spark-slot")) {
          const key = el.dataset.spark;
          setHtml(el, sparkline(h.spark[key], key === "net" ? undefined : 100));
        }
      }
    },
    { rootMargin: "400px 0px" },
  );

  function rebuildAlertIndex() {
    alertsByHost = new Map();
    for (const a of alertsByFp.values()) {
      if (!alertsByHost.has(a.host)) alertsByHost.set(a.host, []);
      alertsByHost.get(a.host).push(a);
    }
  }

  function matches(h) {
    if (state.status === "alerts") {
      if (!alertsOf(h.host).length) return false;
    } else if (state.status && statusOf(h) !== state.status) return false;
    if (!state.q) return true;
    const q = state.q.toLowerCase();
    if (h.host.toLowerCase().includes(q)) return true;
    const f = h.facts || {};
    return [f.os, f.kernel, f.cpu_model, f.arch].some((x) => typeof x === "string" && x.toLowerCase().includes(q));
  }

  function showCounts() {
    const counts = { "": hosts.length, alerts: 0 };
    for (const s of STATUSES) counts[s] = 0;
    for (const h of hosts) {
      counts[statusOf(h)]++;
      if (alertsOf(h.host).length) counts.alerts++;
    }
    for (const b of root.querySelectorAll("[data-filter]")) {
      b.querySelector(".n").textContent = counts[b.dataset.filter] ?? 0;
      b.setAttribute("aria-pressed", String(b.dataset.filter === state.status));
    }
  }

  function showSort() {
    for (const b of root.querySelectorAll("button[data-sort]")) {
      const th = b.parentElement;
      if (b.dataset.sort === state.sort) th.setAttribute("aria-sort", dirOf(state.sort) === "asc" ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    sortSelect.value = state.sort;
  }

  function render() {
    const now = Date.now();
    const shown = hosts.filter(matches).sort(compareBy(state.sort, dirOf(state.sort), alertsOf));
    const parts = new Array(shown.length);
    for (let i = 0; i < shown.length; i++) parts[i] = rowHtml(shown[i], alertsOf(shown[i].host), now);
    setHtml(body, html`${parts}`);
    rows = new Map();
    sparks.disconnect();
    for (const row of body.children) {
      rows.set(row.dataset.host, row);
      sparks.observe(row);
    }
    $("#ov-count", root).textContent = shown.length === hosts.length ? `${hosts.length}` : `${shown.length} of ${hosts.length}`;
    empty.hidden = shown.length > 0;
    empty.textContent = hosts.length
      ? "No host matches the filter."
      : "No host has reported yet. Enroll one under Settings → Agents.";
    showCounts();
    showSort();
  }

  function saveQuery() {
    ctx.setQuery({ q: state.q, status: state.status, sort: state.sort === "status" ? "" : state.sort, dir: state.dir });
  }

  function replaceRow(name) {
    const tr = rows.get(name);
    const h = byName.get(name);
    if (!tr || !h) return;
    const next = fromHtml(rowHtml(h, alertsOf(name), Date.now()));
    sparks.unobserve(tr);
    tr.replaceWith(next);
    rows.set(name, next);
    sparks.observe(next);
  }

  async function load() {
    const [hostAnswer, alertAnswer] = await Promise.all([
      get("/api/v1/hosts", { spark: 1 }, { signal: ctx.signal }),
      get("/api/v1/alerts", null, { signal: ctx.signal }),
    ]);
    hosts = hostAnswer.hosts || [];
    byName.clear();
    for (const h of hosts) byName.set(h.host, h);
    alertsByFp.clear();
    for (const a of alertAnswer.alerts || []) alertsByFp.set(a.fingerprint, a);
    rebuildAlertIndex();
    render();
  }

  // --- interaction --------------------------------------------------------------------------
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.q = search.value.trim();
      saveQuery();
      render();
    }, 120);
  });
  on(root, "click", "button[data-filter]", (ev, b) => {
    state.status = state.status === b.dataset.filter ? "" : b.dataset.filter;
    saveQuery();
    render();
  });
  on(root, "click", "button[data-sort]", (ev, b) => {
    const key = b.dataset.sort;
    if (state.sort === key) state.dir = dirOf(key) === "asc" ? "desc" : "asc";
    else {
      state.sort = key;
      state.dir = "";
    }
    saveQuery();
    render();
  });
  sortSelect.addEventListener("change", () => {
    state.sort = sortSelect.value;
    state.dir = "";
    saveQuery();
    render();
  });

  // --- live ---------------------------------------------------------------------------------
  let pendingNew = false;
  const offHosts = live.on("hosts", (msg) => {
    for (const h of msg.hosts || []) {
      if (!h || typeof h.host !== "string") continue;
      const old = byName.get(h.host);
      if (!old) {
        byName.set(h.host, h);
        hosts.push(h);
        pendingNew = true;
        continue;
      }
      const keepSpark = old.spark;
      Object.assign(old, h);
      if (!h.spark && keepSpark) old.spark = keepSpark;
      replaceRow(h.host);
    }
    if (pendingNew) {
      pendingNew = false;
      render();
    } else showCounts();
  });
  const offAlert = live.on("alert", (msg) => {
    const a = msg.alert;
    if (!a || !a.fingerprint) return;
    if (a.state === "pending" || a.state === "firing") alertsByFp.set(a.fingerprint, a);
    else alertsByFp.delete(a.fingerprint);
    rebuildAlertIndex();
    replaceRow(a.host);
    showCounts();
  });
  const offCatchUp = live.onCatchUp(() => load().catch(() => {}));
  live.subscribe({ hosts: ["*"] });

  const pollTimer = setInterval(() => {
    if (!live.isOpen() && document.visibilityState === "visible") load().catch(() => {});
  }, POLL_MS);
  const seenTimer = setInterval(() => {
    const now = Date.now();
    for (const [name, tr] of rows) {
      const cell = tr.querySelector(".c-seen");
      const h = byName.get(name);
      if (cell && h) cell.textContent = ago(h.last_seen, now);
    }
  }, SEEN_REFRESH_MS);

  try {
    await load();
  } catch (exc) {
    if (exc.name === "AbortError" || exc.status === 401) return cleanup;
    empty.hidden = false;
    empty.textContent = `The hosts could not be loaded: ${exc.message}`;
  }
  performance.mark("overview-drawn");
  ctx.ready();
  return cleanup;

  function cleanup() {
    sparks.disconnect();
    clearInterval(pollTimer);
    clearInterval(seenTimer);
    clearTimeout(searchTimer);
    offHosts();
    offAlert();
    offCatchUp();
    live.subscribe({});
  }
}

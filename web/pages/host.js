// One host: charts over 1 h … 1 y or a custom range (drag to zoom), services and checks, top
// processes, events, trends and usage patterns, facts, active alerts; live samples for the charts
// on screen.
//
// Requests: the host, its series, its alerts and events in parallel; then the chart points in a
// few requests by series id (every chart's series in at most four calls), and one summary call for
// the tables' current values.

import { EARLY_MS, get, path, url } from "../api.js";
import { DEFAULT_RANGE, RANGES, chartQueries, fixedView, presetView, viewFromQuery } from "../chartplan.js";
import { Chart } from "../charts.js";
import { $, html, on, setHtml } from "../dom.js";
import { ago, duration } from "../format.js";
import { chartSections, seriesNamed, unitOf } from "../hostcharts.js";
import {
  STATUS_NAMES,
  currentByName,
  eventsList,
  factsList,
  hostAlerts,
  patternsBlock,
  processesTable,
  servicesTable,
  trendsTable,
} from "../hostpanels.js";
import { mountActions } from "../hostactions.js";
import { live } from "../live.js";
import { statusBadge, statusOf } from "../status.js";

const STATUS_WINDOW_MS = 180_000; // the tables show the newest values within this of last seen
const TREND_NAMES = [
  ["edgewatch_cpu_usage_percent", { cpu: "all" }, "CPU"],
  ["edgewatch_memory_used_percent", {}, "Memory"],
  ["node_load1", {}, "Load (1 min)"],
  ["edgewatch_swap_used_bytes", {}, "Swap used"],
  ["edgewatch_filesystem_used_percent", null, "Filesystem"],
];

function toLocalInput(ms) {
  const d = new Date(ms);
  return new Date(ms - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

/** The view early.js asked host `name`'s charts for (index.html's first page), when it is the
 * view the route asks for and recent: the page then asks with the same URLs and takes its answers.
 * Taken once; else null. */
async function earlyView(name, wanted) {
  const started = window.edgewatchEarlyCharts;
  window.edgewatchEarlyCharts = null;
  const early = started ? await started.catch(() => null) : null;
  if (!early || early.host !== name || early.view.key !== wanted.key) return null;
  const v = early.view;
  if (v.key === "custom") return v.start === wanted.start && v.end === wanted.end ? v : null;
  return Date.now() - v.end < EARLY_MS ? v : null;
}

function trendSeries(series) {
  const out = [];
  for (const [name, labels, title] of TREND_NAMES) {
    for (const s of series) {
      if (s.name !== name) continue;
      if (labels && !Object.entries(labels).every(([k, v]) => s.labels[k] === v)) continue;
      out.push({ id: s.id, title: s.labels.mountpoint ? `${title} ${s.labels.mountpoint}` : title });
    }
  }
  return out;
}

export async function mount(root, ctx) {
  const name = ctx.params.host;
  document.title = `${name} · edgewatch`;
  let view = viewFromQuery(ctx.query);
  let presetKey = view.key === "custom" ? DEFAULT_RANGE : view.key;
  let hostInfo = null;
  let series = [];
  let sections = [];
  let charts = []; // Chart
  const chartsById = new Map(); // series id -> [Chart]
  const visible = new Set(); // Chart on screen
  let loadController = null;
  const titles = new Map(); // series id -> title (trends)

  setHtml(
    root,
    html`<article class="host-page">
  <div class="page-head">
    <h1 id="h-name">${name}</h1>
    <p class="host-meta" id="h-meta"></p>
  </div>
  <nav class="jump" aria-label="Sections of this page">
    <a href="#h-charts-title" data-jump>Charts</a><a href="#h-services-title" data-jump>Services</a><a href="#h-processes-title" data-jump>Processes</a><a href="#h-trends-title" data-jump>Trends</a><a href="#h-facts-title" data-jump>Facts</a><a href="#h-actions-title" data-jump class="jump-actions" hidden>Actions</a>
  </nav>
  <section class="card" aria-labelledby="h-alerts-title"><h2 id="h-alerts-title">Active alerts</h2><div id="h-alerts"><p class="muted">Loading…</p></div></section>
  <section aria-labelledby="h-charts-title">
    <h2 id="h-charts-title">Charts</h2>
    <div class="range-bar">
      <div class="seg" role="group" aria-label="Time range">
        ${RANGES.map((r) => html`<button type="button" data-range="${r.key}" aria-pressed="false">${r.label}</button>`)}
        <button type="button" id="h-custom-toggle" aria-expanded="false" aria-controls="h-custom">Custom</button>
      </div>
      <button type="button" id="h-reset" class="secondary" hidden>Reset zoom</button>
      <span class="muted small" id="h-tier" aria-live="polite"></span>
      <span class="export"><a id="h-csv" download>CSV</a> · <a id="h-json" download>JSON</a></span>
    </div>
    <form id="h-custom" class="custom-range" hidden>
      <label>From <input type="datetime-local" name="from" required></label>
      <label>To <input type="datetime-local" name="to" required></label>
      <button type="submit" class="primary">Show</button>
    </form>
    <p class="muted small hint">Drag across a chart to zoom in; double-click to go back.</p>
    <div id="h-charts"><p class="muted">Loading charts…</p></div>
  </section>
  <section class="card" aria-labelledby="h-services-title"><h2 id="h-services-title">Services and checks</h2><div id="h-services"><p class="muted">Loading…</p></div>
    <h3>Events (24 h)</h3><div id="h-events"><p class="muted">Loading…</p></div></section>
  <section class="card" aria-labelledby="h-processes-title"><h2 id="h-processes-title">Top processes</h2><div id="h-processes"><p class="muted">Loading…</p></div></section>
  <section class="card" aria-labelledby="h-trends-title"><h2 id="h-trends-title">Trends over the range</h2><div id="h-trends"><p class="muted">Loading…</p></div>
    <h3>Usage patterns (28 days)</h3><div id="h-patterns"><p class="muted">Loading…</p></div></section>
  <section class="card" aria-labelledby="h-facts-title"><h2 id="h-facts-title">Facts</h2><div id="h-facts"><p class="muted">Loading…</p></div></section>
  <section class="card" id="h-actions" aria-labelledby="h-actions-title" hidden><h2 id="h-actions-title">Actions</h2><div id="h-actions-body"></div></section>
</article>`,
  );
  const el = (id) => $(`#${id}`, root);
  const signal = ctx.signal;

  // --- head, facts, alerts ------------------------------------------------------------------
  function showHead() {
    if (!hostInfo) return;
    const st = statusOf(hostInfo);
    const f = hostInfo.facts || {};
    const bits = [f.os, f.kernel, f.cpu_count ? `${f.cpu_count} cores` : "", f.arch].filter(Boolean).join(" · ");
    setHtml(el("h-meta"), html`${statusBadge(st)} <span>last seen <span id="h-seen">${ago(hostInfo.last_seen)}</span></span>${bits ? html` <span class="muted">${bits}</span>` : ""}`);
    setHtml(el("h-facts"), factsList(hostInfo));
    const advertised = JSON.stringify(f.actions ?? null);
    if (advertised !== actionsShown) {
      actionsShown = advertised;
      stopActions();
      stopActions = mountActions(el("h-actions"), el("h-actions-body"), name, f, signal);
    }
  }
  let actionsShown = "";
  let stopActions = () => {};

  let hostAlertList = [];
  function showAlerts() {
    setHtml(el("h-alerts"), hostAlerts(hostAlertList));
  }

  // --- charts -------------------------------------------------------------------------------
  function showRangeBar() {
    for (const b of root.querySelectorAll("button[data-range]")) {
      b.setAttribute("aria-pressed", String(view.key === b.dataset.range));
    }
    const custom = view.key === "custom";
    el("h-custom-toggle").classList.toggle("active", custom);
    el("h-reset").hidden = !custom;
    const form = el("h-custom");
    form.from.value = toLocalInput(view.start);
    form.to.value = toLocalInput(view.end);
    const q = { host: name, start: Math.round(view.start), end: Math.round(view.end) };
    el("h-csv").href = url("/api/v1/export", { ...q, format: "csv" });
    el("h-json").href = url("/api/v1/export", { ...q, format: "json" });
  }

  function chartCard(spec, i) {
    const more = spec.hidden ? html`<small class="muted"> (+${spec.hidden} more not shown)</small>` : "";
    return html`<figure class="chart-card" data-chart-key="${spec.key}" data-i="${i}">
<figcaption><span class="chart-title">${spec.title}</span>${spec.note ? html` <small class="muted">${spec.note}</small>` : ""}${more}</figcaption>
<div class="chart"></div></figure>`;
  }

  const observer = new IntersectionObserver(
    (entries) => {
      for (const e of entries) {
        const chart = e.target.querySelector(".chart")?.chart;
        if (!chart) continue;
        if (e.isIntersecting) visible.add(chart);
        else visible.delete(chart);
      }
      subscribeLive();
    },
    { rootMargin: "200px" },
  );

  function destroyCharts() {
    observer.disconnect();
    for (const c of charts) c.destroy();
    charts = [];
    chartsById.clear();
    visible.clear();
  }

  function buildCharts() {
    destroyCharts();
    const box = el("h-charts");
    if (!sections.length) {
      setHtml(box, html`<p class="muted">This host has sent no series yet.</p>`);
      return;
    }
    let i = 0;
    const specs = [];
    setHtml(
      box,
      html`${sections.map(
        (sec) => html`<section class="chart-section" aria-label="${sec.title}"><h3>${sec.title}${sec.hidden ? html` <small class="muted">(${sec.hidden} more metrics not shown)</small>` : ""}</h3>
<div class="chart-grid">${sec.charts.map((spec) => {
          specs.push(spec);
          return chartCard(spec, i++);
        })}</div><p class="muted small no-data" hidden></p></section>`,
      )}`,
    );
    const hooks = { zoom: zoomTo, reset: resetZoom };
    for (const card of box.querySelectorAll(".chart-card")) {
      const spec = specs[Number(card.dataset.i)];
      const chart = new Chart(card.querySelector(".chart"), spec, hooks);
      chart.card = card;
      charts.push(chart);
      for (const id of chart.ids()) {
        if (!chartsById.has(id)) chartsById.set(id, []);
        chartsById.get(id).push(chart);
      }
      observer.observe(card);
    }
  }

  /** Hide the cards of charts without data (after a fresh build) and say which they are. */
  function noteEmpty() {
    for (const sec of el("h-charts").querySelectorAll(".chart-section")) {
      const empty = [];
      let shown = 0;
      for (const card of sec.querySelectorAll(".chart-card")) {
        const chart = card.querySelector(".chart").chart;
        const has = chart && chart.hasData();
        card.hidden = !has;
        if (has) shown++;
        else empty.push(card.querySelector(".chart-title").textContent);
      }
      const note = sec.querySelector(".no-data");
      note.hidden = empty.length === 0;
      note.textContent = empty.length ? `No data in this range: ${empty.join(", ")}.` : "";
      sec.classList.toggle("all-empty", shown === 0);
    }
  }

  async function loadCharts(rebuild) {
    if (loadController) loadController.abort();
    const controller = new AbortController();
    loadController = controller;
    const abort = () => controller.abort();
    signal.addEventListener("abort", abort, { once: true });
    if (rebuild) buildCharts();
    showRangeBar();
    const target = view;
    // the server reads and sends about as many points as a chart shows
    const calls = chartQueries(name, charts.map((c) => c.spec), target, document.documentElement.clientWidth);
    let tierText = "";
    try {
      await Promise.all(
        calls.map(async ({ specs, query }) => {
          const answer = await get("/api/v1/query", query, { signal: controller.signal });
          const byId = new Map((answer.series || []).map((s) => [s.id, s.points || []]));
          const intervalMs = (hostInfo && hostInfo.interval_ms) || 10_000;
          const opts = { view: target, stepMs: answer.step_ms, intervalMs, bucketed: answer.step_ms > intervalMs };
          const wanted = new Set(specs);
          for (const c of charts) if (wanted.has(c.spec)) c.setData(byId, opts);
          tierText = `${answer.tier} tier, ${duration(answer.step_ms)} per point`;
        }),
      );
    } finally {
      signal.removeEventListener("abort", abort);
    }
    if (controller.signal.aborted) return;
    if (rebuild) noteEmpty();
    el("h-tier").textContent = tierText;
    subscribeLive();
  }

  function setView(next, { rebuild = false, save = true } = {}) {
    view = next;
    if (view.key !== "custom") presetKey = view.key;
    if (save) {
      ctx.setQuery(view.key === "custom" ? { from: Math.round(view.start), to: Math.round(view.end) } : { range: view.key === DEFAULT_RANGE ? "" : view.key });
    }
    loadCharts(rebuild).catch(() => {});
    loadTrends().catch(() => {});
  }

  function zoomTo(start, end) {
    if (end - start < 60_000) return;
    for (const c of charts) c.zoomTo(start, end);
    setView(fixedView(start, end));
  }

  function resetZoom() {
    setView(presetView(presetKey), { rebuild: true });
  }

  // --- live ---------------------------------------------------------------------------------
  function subscribeLive() {
    const ids = new Set();
    if (view.live) for (const c of visible) for (const id of c.ids()) ids.add(id);
    live.subscribe({ hosts: [name], series: [...ids] });
  }

  const offSamples = live.on("samples", (msg) => {
    if (msg.host !== name || !msg.series) return;
    const touched = new Set();
    for (const [id, samples] of Object.entries(msg.series)) {
      for (const c of chartsById.get(Number(id)) || []) if (c.addSamples(Number(id), samples)) touched.add(c);
    }
    const now = Date.now();
    for (const c of touched) c.slide(now);
    if (touched.size && view.live) view = { ...view, start: now - (view.end - view.start), end: now };
  });
  const offHosts = live.on("hosts", (msg) => {
    const h = (msg.hosts || []).find((x) => x && x.host === name);
    if (h && hostInfo) {
      Object.assign(hostInfo, h);
      showHead();
    }
  });
  const offAlert = live.on("alert", (msg) => {
    const a = msg.alert;
    if (!a || a.host !== name) return;
    hostAlertList = hostAlertList.filter((x) => x.fingerprint !== a.fingerprint);
    if (a.state === "pending" || a.state === "firing") hostAlertList.unshift(a);
    showAlerts();
  });
  const offCatchUp = live.onCatchUp(() => {
    loadBasics().catch(() => {});
    if (view.live) view = presetView(view.key);
    loadCharts(false).catch(() => {});
  });
  const seenTimer = setInterval(() => {
    const seen = root.querySelector("#h-seen");
    if (seen && hostInfo) seen.textContent = ago(hostInfo.last_seen);
  }, 10_000);
  // Without the live socket the page refreshes itself now and then (a live range only).
  const pollTimer = setInterval(() => {
    if (live.isOpen() || !view.live || document.visibilityState !== "visible") return;
    view = presetView(view.key);
    loadBasics().catch(() => {});
    loadCharts(false).catch(() => {});
  }, 60_000);

  // --- tables -------------------------------------------------------------------------------
  async function loadStatusTables() {
    const ids = seriesNamed(series, STATUS_NAMES).map((s) => s.id);
    if (!ids.length || !hostInfo || !hostInfo.last_seen) {
      setHtml(el("h-services"), servicesTable(new Map()));
      setHtml(el("h-processes"), processesTable(new Map()));
      return;
    }
    const end = hostInfo.last_seen + 1000;
    const answer = await get("/api/v1/summary", { host: name, series: ids, start: end - STATUS_WINDOW_MS, end }, { signal });
    const cur = currentByName(answer);
    setHtml(el("h-services"), servicesTable(cur));
    setHtml(el("h-processes"), processesTable(cur));
  }

  const titleOf = (s) => titles.get(s.id) || s.name;
  const unitOfSeries = (s) => unitOf(s.name, s.kind);

  async function loadTrends() {
    const list = trendSeries(series);
    for (const t of list) titles.set(t.id, t.title);
    if (!list.length) {
      setHtml(el("h-trends"), html`<p class="muted">No headline series to summarise.</p>`);
      return;
    }
    const answer = await get(
      "/api/v1/summary",
      { host: name, series: list.map((t) => t.id), start: Math.round(view.start), end: Math.round(view.end) },
      { signal, quiet: true },
    );
    setHtml(el("h-trends"), trendsTable(answer, titleOf, unitOfSeries));
  }

  async function loadPatterns() {
    const ids = trendSeries(series).filter((t) => t.title === "CPU" || t.title === "Memory").map((t) => t.id);
    if (!ids.length) {
      setHtml(el("h-patterns"), html`<p class="muted">No CPU or memory series.</p>`);
      return;
    }
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    let answer;
    try {
      answer = await get("/api/v1/patterns", { host: name, series: ids, tz }, { signal, quiet: true });
    } catch (exc) {
      if (exc.status !== 400) throw exc;
      answer = await get("/api/v1/patterns", { host: name, series: ids }, { signal, quiet: true });
    }
    setHtml(el("h-patterns"), patternsBlock(answer, titleOf, unitOfSeries));
  }

  async function loadBasics() {
    const [h, a, ev] = await Promise.all([
      get(path("hosts", name), null, { signal, quiet: true }),
      get("/api/v1/alerts", { host: name }, { signal, quiet: true }).catch(() => ({ alerts: [] })),
      get(path("hosts", name, "events"), { start: "-24h" }, { signal, quiet: true }).catch(() => ({ events: [] })),
    ]);
    hostInfo = h;
    hostAlertList = a.alerts || [];
    showHead();
    showAlerts();
    setHtml(el("h-events"), eventsList(ev.events));
  }

  // --- interaction --------------------------------------------------------------------------
  on(root, "click", "button[data-range]", (ev, b) => setView(presetView(b.dataset.range), { rebuild: true }));
  el("h-custom-toggle").addEventListener("click", () => {
    const form = el("h-custom");
    form.hidden = !form.hidden;
    el("h-custom-toggle").setAttribute("aria-expanded", String(!form.hidden));
    if (!form.hidden) form.from.focus();
  });
  el("h-custom").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const start = new Date(form.from.value).getTime();
    const end = new Date(form.to.value).getTime();
    if (!(end > start)) {
      form.to.setCustomValidity("The end must be after the start.");
      form.to.reportValidity();
      return;
    }
    form.to.setCustomValidity("");
    setView(fixedView(start, end), { rebuild: true });
  });
  el("h-reset").addEventListener("click", resetZoom);
  on(root, "click", "a[data-jump]", (ev, a) => {
    ev.preventDefault(); // keep the hash route; scroll instead
    const target = root.querySelector(a.getAttribute("href"));
    if (target) {
      target.scrollIntoView({ behavior: "smooth", block: "start" });
      target.setAttribute("tabindex", "-1");
      target.focus({ preventScroll: true });
    }
  });

  function cleanup() {
    if (loadController) loadController.abort();
    destroyCharts();
    clearInterval(seenTimer);
    clearInterval(pollTimer);
    stopActions();
    offSamples();
    offHosts();
    offAlert();
    offCatchUp();
    live.subscribe({});
  }

  // --- first load ---------------------------------------------------------------------------
  showRangeBar();
  subscribeLive();
  try {
    const basics = loadBasics();
    basics.catch(() => {}); // handled below; a failure here must not go unhandled meanwhile
    const seriesAnswer = await get(path("hosts", name, "series"), null, { signal, quiet: true });
    series = seriesAnswer.series || [];
    sections = chartSections(series);
    view = (await earlyView(name, view)) || view;
    await basics.catch(() => {}); // the interval (for gaps) comes with the host
    const drawn = loadCharts(true).then(() => performance.mark("charts-drawn"));
    // The tables below the charts ask once the charts are in: on a busy server their queries
    // would otherwise take the readers the charts' queries wait for.
    const below = drawn.catch(() => {}).then(() => Promise.allSettled([loadStatusTables(), loadTrends(), loadPatterns()]));
    await Promise.allSettled([drawn, below, basics]);
    await basics; // a missing host is the page's error
  } catch (exc) {
    if (exc.name === "AbortError" || exc.status === 401) return cleanup;
    setHtml(root, html`<section class="card"><h1>${name}</h1><p class="error-box">${exc.message}</p><p><a href="#/">Back to all hosts</a></p></section>`);
  }
  ctx.ready();
  return cleanup;
}


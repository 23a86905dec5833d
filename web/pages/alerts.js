// Alerts: active ones (new ones appear live), silences, and the history; filters by level, host and
// rule; ack and silence for operators. "#/alerts/{fingerprint}" shows one alert and its history
// (the link a push notification opens).

import { ackDialog, silenceDialog } from "../alertforms.js";
import { del, get, path } from "../api.js";
import { $, html, link, on, setHtml } from "../dom.js";
import { ago, byUnit, duration, number, when, whenShort } from "../format.js";
import { unitOf } from "../hostcharts.js";
import { live } from "../live.js";
import { can, session } from "../session.js";
import { LEVELS, LEVEL_RANK, alertTitle, levelBadge } from "../status.js";

const HISTORY_PAGE = 50;

function detailText(entry) {
  const d = entry.detail || {};
  switch (entry.kind) {
    case "transition":
      return `${d.from} → ${d.to}${d.value !== null && d.value !== undefined ? ` at ${number(d.value)}` : ""}`;
    case "ack":
      return `by ${d.by || "?"}${d.comment ? `: “${d.comment}”` : ""}`;
    default:
      return Object.entries(d)
        .filter(([k, v]) => k !== "at" && v !== null && v !== "" && !(Array.isArray(v) && !v.length))
        .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : typeof v === "object" ? JSON.stringify(v) : v}`)
        .join(" · ");
  }
}

export async function mount(root, ctx) {
  const single = ctx.params.fingerprint || "";
  document.title = `${single ? "Alert" : "Alerts"} · edgewatch`;
  const filters = { level: ctx.query.level || "", host: ctx.query.host || "", rule: ctx.query.rule || "" };
  let rules = new Map(); // name -> rule (for units)
  let active = []; // alerts shown
  let history = [];
  let historyLimit = HISTORY_PAGE;
  let showEnded = false;
  let rulesReady = Promise.resolve();
  const fresh = new Set(); // fingerprints that arrived live (highlighted)
  const signal = ctx.signal;
  await session.ready; // the role decides which buttons show
  const operator = can("operator");

  setHtml(
    root,
    html`<section class="alerts-page">
  <div class="page-head"><h1>${single ? "Alert" : "Alerts"}</h1>
    ${single ? html`<p><a href="#/alerts">All alerts</a></p>` : ""}
    ${operator && !single ? html`<button type="button" class="secondary" id="al-new-silence">New silence</button>` : ""}</div>
  ${single ? html`<section class="card" id="al-one" aria-label="The alert"><p class="muted">Loading…</p></section>` : html`
  <form class="filters card" id="al-filters" aria-label="Filter alerts">
    <label>Level at least <select name="level"><option value="">any</option>${LEVELS.map((l) => html`<option value="${l}">${l}</option>`)}</select></label>
    <label>Host <input name="host" list="al-hosts" autocomplete="off" spellcheck="false"></label>
    <datalist id="al-hosts"></datalist>
    <label>Rule <select name="rule"><option value="">any</option></select></label>
    <button type="reset" class="secondary">Clear</button>
  </form>`}
  ${single ? "" : html`<section aria-labelledby="al-active-title"><h2 id="al-active-title">Active <span class="count" id="al-count"></span></h2>
    <ul class="alert-list" id="al-active" aria-live="polite"></ul></section>
  <section class="card" aria-labelledby="al-silences-title"><h2 id="al-silences-title">Silences</h2>
    <label class="inline"><input type="checkbox" id="al-ended"> Show those ended in the last 7 days</label>
    <div id="al-silences"><p class="muted">Loading…</p></div></section>`}
  <section class="card" aria-labelledby="al-history-title"><h2 id="al-history-title">History</h2>
    <div id="al-history"><p class="muted">Loading…</p></div>
    <button type="button" class="secondary" id="al-more" hidden>Show more</button></section>
</section>`,
  );
  const el = (id) => $(`#${id}`, root);
  const form = el("al-filters");
  if (form) {
    form.level.value = filters.level;
    form.host.value = filters.host;
  }

  const unitOfAlert = (a) => {
    const r = rules.get(a.rule);
    return r && r.metric ? unitOf(r.metric) : "";
  };

  function passes(a) {
    if (filters.level && (LEVEL_RANK[a.severity] ?? -1) < LEVEL_RANK[filters.level]) return false;
    if (filters.host && a.host !== filters.host) return false;
    return !filters.rule || a.rule === filters.rule;
  }

  function alertItem(a) {
    const labels = Object.entries(a.labels || {}).filter(([k]) => k !== "host");
    const since = a.state === "firing" ? a.fired_at || a.active_since : a.active_since;
    const canAck = operator && a.state === "firing" && !a.acked_by;
    const ended = a.state === "resolved" || a.state === "inactive";
    return html`<li class="alert-item lv-${a.severity} st-${a.state}${fresh.has(a.fingerprint) ? " fresh" : ""}" data-fp="${a.fingerprint}">
<div class="alert-main">
  <div class="alert-head">${levelBadge(a.severity)} <span class="state">${a.state}</span>
    <a class="alert-rule" href="${link("alerts", a.fingerprint)}">${a.rule}</a>${a.host ? html` on <a href="${link("hosts", a.host)}">${a.host}</a>` : ""}</div>
  ${labels.length ? html`<div class="labels">${labels.map(([k, v]) => html`<code>${k}=${v}</code> `)}</div>` : ""}
  <div class="muted small">value ${byUnit(unitOfAlert(a), a.value)}${since ? ` · since ${whenShort(since)} (${ago(since)})` : ""}${ended && a.resolved_at ? ` · resolved ${ago(a.resolved_at)}` : ""}</div>
  ${a.acked_by ? html`<div class="ack small">Acknowledged by ${a.acked_by} ${ago(a.acked_at)}${a.ack_comment ? html`: “${a.ack_comment}”` : ""}</div>` : ""}
</div>
${operator ? html`<div class="alert-actions">${canAck ? html`<button type="button" data-ack="${a.fingerprint}">Acknowledge</button>` : ""}${ended ? "" : html`<button type="button" class="secondary" data-silence="${a.fingerprint}">Silence</button>`}</div>` : ""}
</li>`;
  }

  function showActive() {
    const box = el("al-active");
    if (!box) return;
    const list = active.filter(passes);
    el("al-count").textContent = `(${list.length})`;
    setHtml(box, list.length ? html`${list.map(alertItem)}` : html`<li class="empty-item muted">No active alerts${filters.level || filters.host || filters.rule ? " match the filter" : ""}.</li>`);
  }

  function showOne(a) {
    const box = el("al-one");
    if (!a) {
      setHtml(box, html`<p>No alert has the fingerprint <code>${single}</code>; it may have been resolved and cleaned up.</p>`);
      return;
    }
    document.title = `${alertTitle(a)} · edgewatch`;
    const rows = [
      ["State", a.state],
      ["Severity", a.severity],
      ["Level", a.level],
      ["Value", byUnit(unitOfAlert(a), a.value)],
      ["Active since", when(a.active_since)],
      ["Fired", when(a.fired_at)],
      ["Resolved", when(a.resolved_at)],
      ["Last evaluated", when(a.evaluated_at)],
      ["Fingerprint", a.fingerprint],
    ];
    setHtml(
      box,
      html`<ul class="alert-list">${alertItem(a)}</ul>
<dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v ?? "–"}</dd>`)}
<dt>Labels</dt><dd>${Object.entries(a.labels || {}).map(([k, v]) => html`<code>${k}=${v}</code> `)}</dd></dl>`,
    );
  }

  function historyRow(h) {
    return html`<tr class="${fresh.has(`${h.fingerprint}@${h.at}`) ? "fresh" : ""}"><td><time datetime="${new Date(h.at).toISOString()}">${whenShort(h.at)}</time></td>
<td data-label="What">${h.kind} ${h.level ? levelBadge(h.level) : ""}</td>
<td data-label="Rule"><a href="${link("alerts", h.fingerprint)}">${h.rule}</a></td><td data-label="Host">${h.host ? html`<a href="${link("hosts", h.host)}">${h.host}</a>` : ""}</td>
<td class="detail">${detailText(h)}</td></tr>`;
  }

  function showHistory() {
    const rows = history.filter((h) => !filters.level || !h.level || (LEVEL_RANK[h.level] ?? -1) >= LEVEL_RANK[filters.level]);
    setHtml(
      el("al-history"),
      rows.length
        ? html`<div class="table-wrap"><table class="list history cards-sm"><thead><tr><th scope="col">Time</th><th scope="col">What</th><th scope="col">Rule</th><th scope="col">Host</th><th scope="col">Detail</th></tr></thead><tbody>${rows.map(historyRow)}</tbody></table></div>`
        : html`<p class="muted">Nothing recorded${filters.host || filters.rule ? " for this filter" : ""}.</p>`,
    );
    el("al-more").hidden = history.length < historyLimit;
  }

  function silenceItem(s) {
    const canEnd = operator && s.state !== "expired";
    const timeText =
      s.state === "pending" ? `starts ${whenShort(s.starts_at)}` : s.state === "active" ? `ends ${whenShort(s.ends_at)} (in ${duration(s.ends_at - Date.now())})` : `ended ${whenShort(s.ends_at)}`;
    return html`<li class="silence st-${s.state}"><div><span class="badge">${s.state}</span> ${s.matchers.map((m) => html`<code>${m}</code> `)}
<div class="muted small">${timeText}${s.created_by ? ` · by ${s.created_by}` : ""}${s.comment ? html` · “${s.comment}”` : ""}</div></div>
${canEnd ? html`<button type="button" class="secondary" data-end-silence="${s.id}">End now</button>` : ""}</li>`;
  }

  async function loadSilences() {
    const box = el("al-silences");
    if (!box) return;
    const answer = await get("/api/v1/silences", showEnded ? { state: "all" } : null, { signal, quiet: true });
    const list = answer.silences || [];
    setHtml(box, list.length ? html`<ul class="silences">${list.map(silenceItem)}</ul>` : html`<p class="muted">No silences${showEnded ? "" : " active or pending"}.</p>`);
  }

  async function loadActive() {
    if (single) {
      const [a] = await Promise.all([currentSingle(), rulesReady]);
      showOne(a);
      return;
    }
    const answer = await get("/api/v1/alerts", { level: filters.level, host: filters.host, rule: filters.rule }, { signal });
    active = answer.alerts || [];
    showActive();
  }

  async function loadHistory() {
    const q = single ? { fingerprint: single, limit: historyLimit } : { host: filters.host, rule: filters.rule, limit: historyLimit };
    const answer = await get("/api/v1/alerts/history", q, { signal });
    history = answer.history || [];
    showHistory();
  }

  async function loadRules() {
    const answer = await get("/api/v1/rules", null, { signal, quiet: true });
    rules = new Map((answer.rules || []).map((r) => [r.name, r]));
    if (form) {
      setHtml(form.rule, html`<option value="">any</option>${[...rules.keys()].sort().map((n) => html`<option value="${n}">${n}</option>`)}`);
      if (filters.rule && !rules.has(filters.rule)) form.rule.append(new Option(filters.rule, filters.rule));
      form.rule.value = filters.rule;
    }
  }

  async function loadHostNames() {
    const list = el("al-hosts");
    if (!list) return;
    const answer = await get("/api/v1/hosts", null, { signal, quiet: true });
    setHtml(list, html`${(answer.hosts || []).map((h) => html`<option value="${h.host}"></option>`)}`);
  }

  function loadAll() {
    rulesReady = loadRules().catch(() => {});
    const activeDone = loadActive();
    const redraw = Promise.all([rulesReady, activeDone]).then(() => (single ? null : showActive()));
    return Promise.allSettled([redraw, activeDone, loadHistory(), loadSilences()]);
  }

  // --- interaction --------------------------------------------------------------------------
  if (form) {
    let timer = null;
    const apply = () => {
      filters.level = form.level.value;
      filters.host = form.host.value.trim();
      filters.rule = form.rule.value;
      ctx.setQuery(filters);
      historyLimit = HISTORY_PAGE;
      loadActive().catch(() => {});
      loadHistory().catch(() => {});
    };
    form.addEventListener("change", apply);
    form.host.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(apply, 400);
    });
    form.addEventListener("reset", () => setTimeout(apply, 0));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      apply();
    });
  }
  const findAlert = (fp) => active.find((a) => a.fingerprint === fp) || null;

  on(root, "click", "button[data-ack]", async (ev, b) => {
    const a = findAlert(b.dataset.ack) || (single ? await currentSingle() : null);
    if (!a) return;
    const updated = await ackDialog(a);
    if (!updated) return;
    upsert(updated);
    if (single) showOne(updated);
    loadHistory().catch(() => {});
  });
  on(root, "click", "button[data-silence]", async (ev, b) => {
    const a = findAlert(b.dataset.silence) || (single ? await currentSingle() : null);
    if (a && (await silenceDialog(a))) loadSilences().catch(() => {});
  });
  on(root, "click", "button[data-end-silence]", async (ev, b) => {
    b.disabled = true;
    try {
      await del(path("silences", b.dataset.endSilence));
      await loadSilences();
    } catch {
      b.disabled = false;
    }
  });
  const newSilence = el("al-new-silence");
  if (newSilence) {
    newSilence.addEventListener("click", async () => {
      if (await silenceDialog(null)) loadSilences().catch(() => {});
    });
  }
  const ended = el("al-ended");
  if (ended) {
    ended.addEventListener("change", () => {
      showEnded = ended.checked;
      loadSilences().catch(() => {});
    });
  }
  el("al-more").addEventListener("click", () => {
    historyLimit += HISTORY_PAGE;
    loadHistory().catch(() => {});
  });

  async function currentSingle() {
    const answer = await get("/api/v1/alerts", { state: "all" }, { signal });
    return (answer.alerts || []).find((a) => a.fingerprint === single) || null;
  }

  // --- live ---------------------------------------------------------------------------------
  function upsert(a) {
    active = active.filter((x) => x.fingerprint !== a.fingerprint);
    if (a.state === "pending" || a.state === "firing") {
      active.unshift(a);
      active.sort((x, y) => (LEVEL_RANK[y.severity] ?? 0) - (LEVEL_RANK[x.severity] ?? 0));
    }
    showActive();
  }

  const offAlert = live.on("alert", (msg) => {
    const a = msg.alert;
    if (!a || !a.fingerprint) return;
    if (single && a.fingerprint !== single) return;
    fresh.add(a.fingerprint);
    if (single) showOne(a);
    else upsert(a);
    const t = msg.transition;
    if (t && (!filters.host || a.host === filters.host) && (!filters.rule || a.rule === filters.rule)) {
      const entry = { fingerprint: a.fingerprint, rule: a.rule, host: a.host, at: t.at, kind: "transition", level: t.level, detail: t };
      fresh.add(`${entry.fingerprint}@${entry.at}`);
      history.unshift(entry);
      showHistory();
    }
  });
  const offCatchUp = live.onCatchUp(() => loadAll());
  const pollTimer = setInterval(() => {
    if (!live.isOpen() && document.visibilityState === "visible") loadAll();
  }, 30000);
  live.subscribe({ hosts: [] });

  if (form) loadHostNames().catch(() => {});
  await loadAll();
  ctx.ready();

  return () => {
    clearInterval(pollTimer);
    offAlert();
    offCatchUp();
  };
}

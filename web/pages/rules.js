// Rules in force with their state (pending and firing alerts); admins switch them on and off and
// reload the rules file.

import { get, path, post } from "../api.js";
import { $, busy, html, on, setHtml } from "../dom.js";
import { duration, number } from "../format.js";
import { live } from "../live.js";
import { can, session } from "../session.js";
import { toastOk } from "../toast.js";

const OPS = { ">": ">", ">=": "≥", "<": "<", "<=": "≤" };

function condition(r) {
  if (r.kind === "absence") return `no push for ${r.critical ?? r.warning ?? "?"} intervals`;
  const op = OPS[r.op] || r.op;
  const parts = [];
  if (r.warning !== null && r.warning !== undefined) parts.push(`warning ${op} ${number(r.warning)}`);
  if (r.critical !== null && r.critical !== undefined) parts.push(`critical ${op} ${number(r.critical)}`);
  return parts.join(", ");
}

function rowOf(r, admin) {
  const counts = r.alerts || { pending: 0, firing: 0 };
  const severity = Object.entries(r.severity || {}).map(([level, sev]) => (level === sev ? level : `${level}→${sev}`)).join(", ");
  const how = r.kind === "absence" ? "absence" : `${r.reducer} over ${duration((r.window_s || 0) * 1000)}`;
  return html`<tr class="${r.enabled ? "" : "disabled"}" data-rule="${r.name}">
<th scope="row"><a href="#/alerts?rule=${encodeURIComponent(r.name)}">${r.name}</a></th>
<td data-label="Selects"><code>${r.metric || "–"}</code><div class="muted small">${how}</div></td>
<td data-label="Condition">${condition(r)}${r.for_s ? html`<div class="muted small">for ${duration(r.for_s * 1000)}</div>` : ""}</td>
<td data-label="Severity">${severity || "–"}</td>
<td class="num" data-label="State">${counts.firing ? html`<span class="badge lv-critical">${counts.firing} firing</span>` : ""} ${counts.pending ? html`<span class="badge lv-warning">${counts.pending} pending</span>` : ""}${!counts.firing && !counts.pending ? html`<span class="muted">ok</span>` : ""}</td>
<td data-label="Enabled">${r.enabled ? "on" : html`<span class="muted">off</span>`}${admin ? html` <button type="button" class="secondary small" data-toggle="${r.name}" data-enabled="${r.enabled ? "1" : ""}" aria-label="${r.enabled ? "Disable" : "Enable"} rule ${r.name}">${r.enabled ? "Disable" : "Enable"}</button>` : ""}</td>
</tr>`;
}

export async function mount(root, ctx) {
  document.title = "Rules · edgewatch";
  await session.ready; // the role decides which buttons show
  const admin = can("admin");
  setHtml(
    root,
    html`<section class="rules-page">
  <div class="page-head"><h1>Rules <span class="count" id="ru-count"></span></h1>
    ${admin ? html`<form id="ru-reload"><button type="submit" class="secondary">Reload rules file</button></form>` : ""}</div>
  <p class="error-box" id="ru-error" hidden></p>
  <p class="muted small" id="ru-file"></p>
  <label class="search"><span class="visually-hidden">Search rules</span><input type="search" id="ru-search" placeholder="Search rules" autocomplete="off"></label>
  <div class="table-wrap"><table class="list rules cards-sm"><thead><tr><th scope="col">Rule</th><th scope="col">Selects</th><th scope="col">Condition</th><th scope="col">Severity</th><th scope="col" class="num">State</th><th scope="col">Enabled</th></tr></thead>
  <tbody id="ru-body"><tr><td colspan="6" class="muted">Loading…</td></tr></tbody></table></div>
</section>`,
  );
  const el = (id) => $(`#${id}`, root);
  let rules = [];

  function show() {
    const q = el("ru-search").value.trim().toLowerCase();
    const list = rules.filter((r) => !q || r.name.toLowerCase().includes(q) || (r.metric || "").toLowerCase().includes(q));
    setHtml(el("ru-body"), list.length ? html`${list.map((r) => rowOf(r, admin))}` : html`<tr><td colspan="6" class="muted">No rule matches.</td></tr>`);
    el("ru-count").textContent = `(${rules.length})`;
  }

  async function load() {
    const answer = await get("/api/v1/rules", null, { signal: ctx.signal });
    rules = answer.rules || [];
    const error = el("ru-error");
    error.hidden = !answer.last_error;
    error.textContent = answer.last_error ? `The last reload was refused: ${answer.last_error}` : "";
    el("ru-file").textContent = answer.file ? `From ${answer.file} and the built-in defaults.` : "";
    show();
  }

  el("ru-search").addEventListener("input", show);
  on(root, "click", "button[data-toggle]", async (ev, b) => {
    const name = b.dataset.toggle;
    const action = b.dataset.enabled ? "disable" : "enable";
    b.disabled = true;
    try {
      await post(path("rules", name, action), {});
      toastOk(`Rule ${name} is ${action}d.`);
      await load();
    } catch {
      b.disabled = false;
    }
  });
  const reload = el("ru-reload");
  if (reload) {
    reload.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const answer = await busy(reload, () => post("/api/v1/rules/reload", {}));
        toastOk(`Rules reloaded: ${answer.rules} in force.`);
      } catch {
        /* the toast shows the server's reason */
      }
      await load().catch(() => {});
    });
  }
  let refresh = null;
  const offAlert = live.on("alert", () => {
    clearTimeout(refresh);
    refresh = setTimeout(() => load().catch(() => {}), 1000);
  });
  const offCatchUp = live.onCatchUp(() => load().catch(() => {}));
  live.subscribe({});

  await load();
  ctx.ready();
  return () => {
    clearTimeout(refresh);
    offAlert();
    offCatchUp();
  };
}

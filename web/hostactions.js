// The host page's Actions: the remote commands the host's agent allows (its facts.actions, see
// docs/commands.md), a form to run one (operators and admins), and the host's recent commands,
// kept current by the live "command" messages. Hidden when the host accepts no commands.

import { get, post } from "./api.js";
import { busy, html, on, setHtml } from "./dom.js";
import { duration, whenShort } from "./format.js";
import { live } from "./live.js";
import { can } from "./session.js";
import { toastOk } from "./toast.js";

const RECENT = 10;
const FINAL = new Set(["succeeded", "failed", "rejected", "expired"]);

/** The actions a host advertises: [{name, params: {p: [values] | "re:..."}}]. */
export function actionsOf(facts) {
  let list = facts && facts.actions;
  if (typeof list === "string") {
    try {
      list = JSON.parse(list); // host facts are strings on the wire
    } catch {
      return [];
    }
  }
  return Array.isArray(list) ? list.filter((a) => a && typeof a.name === "string") : [];
}

function paramField(action, name, allowed) {
  const id = `act-${action}-${name}`;
  if (Array.isArray(allowed)) {
    return html`<label for="${id}">${name}</label><select id="${id}" name="${name}">${allowed.map((v) => html`<option>${v}</option>`)}</select>`;
  }
  const pattern = String(allowed).startsWith("re:") ? String(allowed).slice(3) : "";
  return html`<label for="${id}">${name}</label><input id="${id}" name="${name}" required spellcheck="false" autocomplete="off" title="${pattern ? `must match ${pattern}` : ""}">`;
}

function actionForm(a, operator) {
  const params = Object.entries(a.params || {});
  return html`<form class="action inline-form" data-action="${a.name}">
<strong class="action-name">${a.name}</strong>${params.map(([n, allowed]) => html`<span class="field">${paramField(a.name, n, allowed)}</span>`)}
${operator ? html`<button type="submit" class="secondary">Run</button>` : ""}</form>`;
}

function resultText(c) {
  const r = c.result || {};
  const parts = [];
  if (typeof r.exit_code === "number") parts.push(`exit ${r.exit_code}`);
  if (typeof r.duration_ms === "number") parts.push(duration(r.duration_ms));
  if (r.reason) parts.push(r.reason);
  return parts.join(" · ");
}

function commandRow(c) {
  const r = c.result || {};
  const args = Object.entries(c.args || {}).map(([k, v]) => `${k}=${v}`).join(" ");
  const output = [r.stdout, r.stderr].filter(Boolean).join("\n");
  const cls = c.state === "succeeded" ? "ok-text" : FINAL.has(c.state) ? "bad-text" : "muted";
  return html`<tr data-command="${c.id}"><td>${whenShort(c.issued)}</td><td><code>${c.action}${args ? ` ${args}` : ""}</code></td>
<td><span class="${cls}">${c.state}</span> <span class="muted small">${resultText(c)}</span>
${output ? html`<details><summary>output${r.truncated ? " (cut)" : ""}</summary><pre class="output">${output}</pre></details>` : ""}</td>
<td class="muted small">${c.issued_by}</td></tr>`;
}

/** Fill `box` (the Actions section's body) for host `name`; returns a cleanup function. */
export function mountActions(section, box, name, facts, signal) {
  const actions = actionsOf(facts);
  section.hidden = actions.length === 0;
  const jump = document.querySelector(".jump-actions");
  if (jump) jump.hidden = section.hidden;
  if (!actions.length) return () => {};
  const operator = can("operator");
  let recent = [];
  setHtml(
    box,
    html`<p class="muted small">Actions this host's agent allows; each runs once, signed by the aggregator.</p>
<div class="actions">${actions.map((a) => actionForm(a, operator))}</div>
<h3>Recent commands</h3><div class="cmd-list"><p class="muted">Loading…</p></div>`,
  );
  const list = box.querySelector(".cmd-list");
  const show = () =>
    setHtml(
      list,
      recent.length
        ? html`<div class="table-wrap"><table class="list compact"><thead><tr><th scope="col">Issued</th><th scope="col">Action</th><th scope="col">State</th><th scope="col">By</th></tr></thead><tbody>${recent.map(commandRow)}</tbody></table></div>`
        : html`<p class="muted">No commands yet.</p>`,
    );
  const load = async () => {
    const answer = await get("/api/v1/commands", { host: name, limit: RECENT }, { signal, quiet: true });
    recent = answer.commands || [];
    show();
  };
  load().catch((exc) => {
    if (exc.name !== "AbortError") setHtml(list, html`<p class="error-box">${exc.message}</p>`);
  });

  const offSubmit = on(box, "submit", "form[data-action]", async (ev, form) => {
    ev.preventDefault();
    const args = {};
    for (const el of form.elements) if (el.name) args[el.name] = el.value;
    try {
      const answer = await busy(form, () => post("/api/v1/commands", { hosts: [name], action: form.dataset.action, args }));
      toastOk(`${form.dataset.action} sent to ${name}.`);
      for (const c of answer.commands || []) upsert(c);
    } catch {
      /* the toast says why */
    }
  });
  function upsert(c) {
    recent = [c, ...recent.filter((x) => x.id !== c.id)].sort((a, b) => b.issued - a.issued).slice(0, RECENT);
    show();
  }
  const offLive = live.on("command", (msg) => {
    if (msg.command && msg.command.host === name) upsert(msg.command);
  });
  const offCatchUp = live.onCatchUp(() => load().catch(() => {}));
  return () => {
    offSubmit();
    offLive();
    offCatchUp();
  };
}

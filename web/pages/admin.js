// The admin part of Settings: notification channels (with a test), users and roles, API tokens,
// agents and enrollment with a ready-to-paste install line. Only mounted for admins; the server
// refuses these calls to anyone else anyway.

import { del, get, path, post } from "../api.js";
import { $, busy, copyText, html, on, setHtml } from "../dom.js";
import { ago, when } from "../format.js";
import { session } from "../session.js";
import { toastOk } from "../toast.js";

const ROLES = ["viewer", "operator", "admin"];
const TTLS = [
  [3600, "1 hour"],
  [86400, "1 day"],
  [7 * 86400, "7 days"],
];

const listOf = (answer, key) => (Array.isArray(answer) ? answer : (answer && answer[key]) || []);
const timeOf = (x, ...keys) => keys.map((k) => x[k]).find((v) => typeof v === "number") ?? null;

function roleOptions(selected) {
  return ROLES.map((r) => html`<option value="${r}"${r === selected ? html` selected` : ""}>${r}</option>`);
}

/** A secret shown once, with a copy button. */
function secretBox(label, value, note) {
  return html`<div class="secret" role="status"><p><strong>${label}</strong> ${note}</p>
<div class="copy-row"><pre><code>${value}</code></pre><button type="button" class="secondary" data-copy>Copy</button></div></div>`;
}

function channelConfig(c) {
  return Object.entries(c)
    .filter(([k]) => !["name", "kind", "application_server_key"].includes(k))
    .map(([k, v]) => html`<span class="kv"><span class="muted">${k}</span> ${Array.isArray(v) ? v.join(", ") : typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}</span> `);
}

export async function mountAdmin(box, signal) {
  setHtml(
    box,
    html`<section class="card" id="ad-channels" aria-labelledby="ad-channels-title">
  <h2 id="ad-channels-title">Notification channels</h2><div id="ad-channel-list"><p class="muted">Loading…</p></div>
  <h3>Routes</h3><div id="ad-routes"></div>
</section>
<section class="card" id="ad-users" aria-labelledby="ad-users-title">
  <h2 id="ad-users-title">Users and roles</h2><div id="ad-user-list"><p class="muted">Loading…</p></div>
  <form id="ad-user-form" class="inline-form" aria-label="Add a user">
    <label>Name <input name="name" required autocomplete="off" autocapitalize="none" spellcheck="false"></label>
    <label>Role <select name="role">${roleOptions("viewer")}</select></label>
    <label>Password <input name="password" type="password" autocomplete="new-password" minlength="12" placeholder="empty: make one up"></label>
    <button type="submit" class="primary">Add user</button>
  </form><div id="ad-user-secret"></div>
</section>
<section class="card" id="ad-tokens" aria-labelledby="ad-tokens-title">
  <h2 id="ad-tokens-title">API tokens</h2>
  <p class="muted small">For scripts: <code>Authorization: Bearer ewt_…</code>. A token is shown once, when it is made.</p>
  <div id="ad-token-list"><p class="muted">Loading…</p></div>
  <form id="ad-token-form" class="inline-form" aria-label="Make an API token">
    <label>Name <input name="name" required autocomplete="off" placeholder="grafana"></label>
    <label>Role <select name="role">${roleOptions("viewer")}</select></label>
    <button type="submit" class="primary">Make token</button>
  </form><div id="ad-token-secret"></div>
</section>
<section class="card" id="ad-agents" aria-labelledby="ad-agents-title">
  <h2 id="ad-agents-title">Agents and enrollment</h2>
  <div id="ad-agent-list"><p class="muted">Loading…</p></div>
  <h3>Add hosts</h3>
  <form id="ad-enroll-form" class="inline-form" aria-label="Make an enrollment token">
    <label>Hosts it may enroll <input name="uses" type="number" min="1" max="10000" value="1" required></label>
    <label>Valid for <select name="ttl">${TTLS.map(([s, t]) => html`<option value="${s}"${s === 86400 ? html` selected` : ""}>${t}</option>`)}</select></label>
    <button type="submit" class="primary">Make install line</button>
  </form><div id="ad-enroll-out"></div>
</section>`,
  );
  const el = (id) => $(`#${id}`, box);

  // --- channels -----------------------------------------------------------------------------
  async function loadChannels() {
    const answer = await get("/api/v1/channels", null, { signal, quiet: true });
    const channels = listOf(answer, "channels");
    setHtml(
      el("ad-channel-list"),
      channels.length
        ? html`<ul class="rows">${channels.map(
            (c) => html`<li><div><strong>${c.name}</strong> <span class="badge">${c.kind}</span><div class="small">${channelConfig(c)}</div>
<div class="test-result small" data-result="${c.name}" aria-live="polite"></div></div>
<button type="button" class="secondary" data-test="${c.name}">Send test</button></li>`,
          )}</ul>`
        : html`<p class="muted">No channels are configured (see [[channel]] in the aggregator's configuration).</p>`,
    );
    const routes = listOf(answer, "routes");
    setHtml(
      el("ad-routes"),
      routes.length
        ? html`<ul class="rows">${routes.map(
            (r) => html`<li><div>${r.severities && r.severities.length ? r.severities.join(", ") : "every severity"}${r.labels && r.labels.length ? html` · ${r.labels.join(", ")}` : ""} → <strong>${(r.channels || []).join(", ")}</strong>${r.digest ? " (digest)" : ""}${r.escalate_to && r.escalate_to.length ? ` · escalates to ${r.escalate_to.join(", ")}` : ""}</div></li>`,
          )}</ul>`
        : html`<p class="muted small">No routes: every alert goes to every channel.</p>`,
    );
  }
  on(box, "click", "button[data-test]", async (ev, b) => {
    const name = b.dataset.test;
    const out = box.querySelector(`[data-result="${CSS.escape(name)}"]`);
    b.disabled = true;
    out.textContent = "Sending…";
    try {
      const r = await post(path("channels", name, "test"), {}, { quiet: true });
      const parts = (r.parts || []).map((p) => `${p.target || "target"}: ${p.ok ? "ok" : "failed"}${p.detail ? ` (${p.detail})` : ""}`);
      out.textContent = `${r.ok ? "Delivered" : "Failed"}${r.detail ? `: ${r.detail}` : ""}${parts.length ? ` — ${parts.join("; ")}` : ""}${typeof r.seconds === "number" ? ` in ${r.seconds} s` : ""}.`;
      out.className = `test-result small ${r.ok ? "ok-text" : "bad-text"}`;
    } catch (exc) {
      out.textContent = exc.message;
      out.className = "test-result small bad-text";
    } finally {
      b.disabled = false;
    }
  });

  // --- users --------------------------------------------------------------------------------
  async function loadUsers() {
    const users = listOf(await get("/api/v1/users", null, { signal, quiet: true }), "users");
    setHtml(
      el("ad-user-list"),
      html`<div class="table-wrap"><table class="list"><thead><tr><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Created</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody>${users.map(
        (u) => html`<tr><th scope="row">${u.name}${u.disabled ? html` <span class="muted">(disabled)</span>` : ""}</th><td>${u.role}</td><td>${when(timeOf(u, "created", "created_ms"))}</td>
<td>${u.name === session.user ? html`<span class="muted small">you</span>` : html`<button type="button" class="danger small" data-delete-user="${u.name}">Delete</button>`}</td></tr>`,
      )}</tbody></table></div>`,
    );
  }
  el("ad-user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const body = { name: form.name.value.trim(), role: form.role.value };
    if (form.password.value) body.password = form.password.value;
    try {
      const answer = await busy(form, () => post("/api/v1/users", body));
      form.reset();
      const made = answer && (answer.password || (answer.user && answer.user.password));
      setHtml(el("ad-user-secret"), made ? secretBox(`Password of ${body.name}:`, made, "Pass it on now; it is not shown again.") : html``);
      toastOk(`User ${body.name} added.`);
      await loadUsers();
    } catch {
      /* the toast says why */
    }
  });
  on(box, "click", "button[data-delete-user]", async (ev, b) => {
    const name = b.dataset.deleteUser;
    if (!window.confirm(`Delete the user ${name}? Their sessions end at once.`)) return;
    b.disabled = true;
    try {
      await del(path("users", name));
      toastOk(`User ${name} deleted.`);
      await loadUsers();
    } catch {
      b.disabled = false;
    }
  });

  // --- tokens -------------------------------------------------------------------------------
  async function loadTokens() {
    const tokens = listOf(await get("/api/v1/tokens", null, { signal, quiet: true }), "tokens");
    setHtml(
      el("ad-token-list"),
      tokens.length
        ? html`<div class="table-wrap"><table class="list"><thead><tr><th scope="col">Name</th><th scope="col">Id</th><th scope="col">Role</th><th scope="col">Created</th><th scope="col">State</th></tr></thead><tbody>${tokens.map((t) => {
            const revoked = t.revoked === true || typeof t.revoked_ms === "number" || typeof t.revoked === "number";
            return html`<tr class="${revoked ? "disabled" : ""}"><th scope="row">${t.name || "–"}</th><td><code>${t.id}</code></td><td>${t.role}</td><td>${when(timeOf(t, "created", "created_ms"))}</td>
<td>${revoked ? html`<span class="muted">revoked</span>` : html`<button type="button" class="danger small" data-revoke-token="${t.id}">Revoke</button>`}</td></tr>`;
          })}</tbody></table></div>`
        : html`<p class="muted">No API tokens yet.</p>`,
    );
  }
  el("ad-token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const body = { name: form.name.value.trim(), role: form.role.value };
    try {
      const answer = await busy(form, () => post("/api/v1/tokens", body));
      form.reset();
      setHtml(el("ad-token-secret"), secretBox(`Token ${body.name} (${body.role}):`, answer.token, "Copy it now; it is not shown again."));
      await loadTokens();
    } catch {
      /* the toast says why */
    }
  });
  on(box, "click", "button[data-revoke-token]", async (ev, b) => {
    const id = b.dataset.revokeToken;
    if (!window.confirm(`Revoke the API token ${id}? Scripts using it stop working.`)) return;
    b.disabled = true;
    try {
      await del(path("tokens", id));
      toastOk("Token revoked.");
      await loadTokens();
    } catch {
      b.disabled = false;
    }
  });

  // --- agents and enrollment ------------------------------------------------------------------
  async function loadAgents() {
    const agents = listOf(await get("/api/v1/agents", null, { signal, quiet: true }), "agents");
    setHtml(
      el("ad-agent-list"),
      agents.length
        ? html`<div class="table-wrap"><table class="list"><thead><tr><th scope="col">Agent</th><th scope="col">Last seen</th><th scope="col">State</th></tr></thead><tbody>${agents.map((a) => {
            const revoked = a.revoked === true || typeof a.revoked_ms === "number" || typeof a.revoked === "number";
            const seen = timeOf(a, "last_seen", "last_seen_ms");
            return html`<tr class="${revoked ? "disabled" : ""}"><th scope="row">${a.name}</th><td title="${when(seen)}">${ago(seen)}</td>
<td>${revoked ? html`<span class="muted">revoked</span>` : html`<button type="button" class="danger small" data-revoke-agent="${a.name}">Revoke</button>`}</td></tr>`;
          })}</tbody></table></div>`
        : html`<p class="muted">No agents yet: make an install line below and run it on a host.</p>`,
    );
  }
  on(box, "click", "button[data-revoke-agent]", async (ev, b) => {
    const name = b.dataset.revokeAgent;
    if (!window.confirm(`Revoke the agent ${name}? It can no longer push; its data stays.`)) return;
    b.disabled = true;
    try {
      await del(path("agents", name));
      toastOk(`Agent ${name} revoked.`);
      await loadAgents();
    } catch {
      b.disabled = false;
    }
  });
  el("ad-enroll-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const body = { uses: Number(form.uses.value), ttl: Number(form.ttl.value) };
    try {
      const answer = await busy(form, () => post("/api/v1/enrollments", body));
      const note = `Paste it on ${answer.uses > 1 ? `up to ${answer.uses} hosts` : "the host"}: it installs, enrolls and starts the agent (with sudo); valid until ${when(answer.expires)}.`;
      setHtml(el("ad-enroll-out"), secretBox("Install line:", answer.command || answer.token, note));
    } catch {
      /* the toast says why */
    }
  });

  on(box, "click", "button[data-copy]", async (ev, b) => {
    const code = b.parentElement.querySelector("code");
    if (await copyText(code.textContent, code)) toastOk("Copied.");
  });

  /** Run a loader; when it fails, its list says why instead of "Loading…". */
  const guard = (id, load) =>
    load().catch((exc) => {
      if (exc.name !== "AbortError") setHtml(el(id), html`<p class="error-box">${exc.message}</p>`);
    });
  await Promise.all([
    guard("ad-channel-list", loadChannels),
    guard("ad-user-list", loadUsers),
    guard("ad-token-list", loadTokens),
    guard("ad-agent-list", loadAgents),
  ]);
}

// Settings: this device's push notifications, your account (password), and for admins
// the channels, users, API tokens, agents and enrollment (pages/admin.js).

import { api } from "../api.js";
import { $, busy, html, setHtml } from "../dom.js";
import { currentSubscription, disablePush, enablePush, pushSupport } from "../push.js";
import { can, session, setSession } from "../session.js";
import { toastOk } from "../toast.js";
import { mountAdmin } from "./admin.js";

const MIN_PASSWORD = 12;

export async function mount(root, ctx) {
  document.title = "Settings · edgewatch";
  await session.ready;
  const admin = can("admin");
  setHtml(
    root,
    html`<section class="settings-page">
  <div class="page-head"><h1>Settings</h1></div>
  <nav class="jump" aria-label="Sections of this page">
    <a href="#st-push" data-jump>Notifications</a><a href="#st-account" data-jump>Account</a>${admin ? html`<a href="#ad-channels" data-jump>Channels</a><a href="#ad-users" data-jump>Users</a><a href="#ad-tokens" data-jump>API tokens</a><a href="#ad-agents" data-jump>Agents</a>` : ""}
  </nav>
  <section class="card" id="st-push" aria-labelledby="st-push-title">
    <h2 id="st-push-title">Notifications on this device</h2>
    <p id="st-push-state" class="muted">Checking…</p>
    <div class="buttons">
      <button type="button" class="primary" id="st-push-on" hidden>Enable notifications</button>
      <button type="button" class="secondary" id="st-push-off" hidden>Turn off on this device</button>
    </div>
  </section>
  <section class="card" id="st-account" aria-labelledby="st-account-title">
    <h2 id="st-account-title">Your account</h2>
    <p>Signed in as <strong>${session.user}</strong> with the role <strong>${session.role}</strong>.</p>
    <form id="st-password" class="stack narrow" novalidate>
      <h3>Change password</h3>
      <input type="text" name="username" autocomplete="username" value="${session.user}" hidden>
      <label for="st-old">Current password</label>
      <input id="st-old" name="old" type="password" autocomplete="current-password" required>
      <label for="st-new">New password (at least ${MIN_PASSWORD} characters)</label>
      <input id="st-new" name="new" type="password" autocomplete="new-password" minlength="${MIN_PASSWORD}" required>
      <label for="st-new2">New password again</label>
      <input id="st-new2" name="again" type="password" autocomplete="new-password" required>
      <p class="form-error" role="alert" hidden></p>
      <button type="submit" class="primary">Change password</button>
    </form>
  </section>
  <div id="st-admin"></div>
</section>`,
  );
  const el = (id) => $(`#${id}`, root);

  // --- password -----------------------------------------------------------------------------
  const pw = el("st-password");
  pw.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const error = pw.querySelector(".form-error");
    error.hidden = true;
    const fail = (text) => {
      error.textContent = text;
      error.hidden = false;
    };
    if (pw.new.value.length < MIN_PASSWORD) return fail(`The new password needs at least ${MIN_PASSWORD} characters.`);
    if (pw.new.value !== pw.again.value) return fail("The two new passwords differ; type them again.");
    try {
      const answer = await busy(pw, () =>
        api("/api/v1/me/password", { method: "POST", body: { old: pw.old.value, new: pw.new.value }, quiet: true }),
      );
      // The server ends the user's other sessions and answers a new one (a new CSRF token).
      if (answer && answer.csrf) setSession({ user: answer.user || session.user, role: answer.role || session.role, csrf: answer.csrf });
      pw.reset();
      toastOk("Password changed.");
    } catch (exc) {
      if (exc.status !== 401) fail(exc.message);
    }
  });

  // --- push ---------------------------------------------------------------------------------
  const stateText = el("st-push-state");
  const onButton = el("st-push-on");
  const offButton = el("st-push-off");
  async function showPush() {
    const support = pushSupport();
    if (!support.ok) {
      stateText.textContent = support.why;
      onButton.hidden = offButton.hidden = true;
      return;
    }
    const sub = await currentSubscription().catch(() => null);
    stateText.textContent = sub
      ? "This device gets alert notifications."
      : "This device gets no notifications. Enable them to be told about alerts even when edgewatch is closed.";
    onButton.hidden = Boolean(sub);
    offButton.hidden = !sub;
  }
  onButton.addEventListener("click", async () => {
    onButton.disabled = true;
    try {
      await enablePush();
      toastOk("Notifications are on for this device.");
    } catch (exc) {
      stateText.textContent = exc.message;
    } finally {
      onButton.disabled = false;
    }
    await showPush();
  });
  offButton.addEventListener("click", async () => {
    offButton.disabled = true;
    try {
      await disablePush();
      toastOk("Notifications are off for this device.");
    } catch (exc) {
      stateText.textContent = exc.message;
    } finally {
      offButton.disabled = false;
    }
    await showPush();
  });

  root.addEventListener("click", (ev) => {
    const a = ev.target instanceof Element ? ev.target.closest("a[data-jump]") : null;
    if (!a) return;
    ev.preventDefault();
    const target = root.querySelector(a.getAttribute("href"));
    if (target) target.scrollIntoView({ behavior: "smooth", block: "start" });
  });

  const waits = [showPush()];
  if (admin) waits.push(mountAdmin(el("st-admin"), ctx.signal));
  await Promise.allSettled(waits);
  ctx.ready();
}

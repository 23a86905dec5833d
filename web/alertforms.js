// The ack and silence dialogs (operator and admin). Both are native <dialog>s: focus moves into
// them, Escape closes them, and the page behind is inert while they are open.

import { path, post } from "./api.js";
import { busy, fromHtml, html } from "./dom.js";
import { alertTitle } from "./status.js";
import { toastOk } from "./toast.js";

const DURATIONS = [
  ["30m", "30 minutes"],
  ["1h", "1 hour"],
  ["2h", "2 hours"],
  ["4h", "4 hours"],
  ["8h", "8 hours"],
  ["1d", "1 day"],
  ["3d", "3 days"],
  ["7d", "7 days"],
];

/** A matcher for a label value: quoted when spaces at the ends or quotes would be lost. */
export function matcher(name, value) {
  const v = String(value);
  const needsQuotes = v !== v.trim() || (v.length >= 2 && v[0] === v[v.length - 1] && `"'`.includes(v[0]));
  return needsQuotes ? `${name}="${v}"` : `${name}=${v}`;
}

/** Matchers that select exactly this alert: its rule and every label. */
export function matchersOf(alert) {
  const out = [matcher("rule", alert.rule)];
  for (const [k, v] of Object.entries(alert.labels || {})) if (k !== "rule") out.push(matcher(k, v));
  return out;
}

function openDialog(markup, onSubmit) {
  const dialog = fromHtml(markup);
  document.body.append(dialog);
  const form = dialog.querySelector("form");
  const error = dialog.querySelector(".form-error");
  return new Promise((resolve) => {
    let result = null;
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    dialog.querySelector("[data-cancel]").addEventListener("click", () => dialog.close());
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      try {
        result = await busy(form, () => onSubmit(form));
        dialog.close();
      } catch (exc) {
        error.textContent = exc.message;
        error.hidden = false;
      }
    });
    dialog.showModal();
  });
}

/** Ask for a comment and acknowledge the alert; resolves to the updated alert, or null. */
export function ackDialog(alert) {
  return openDialog(
    html`<dialog class="dialog" aria-labelledby="ack-title">
<form class="stack" method="dialog">
  <h2 id="ack-title">Acknowledge alert</h2>
  <p>${alertTitle(alert)}</p>
  <p class="muted small">No more repeats or escalation for this firing; its resolution is still sent.</p>
  <label for="ack-comment">Comment</label>
  <textarea id="ack-comment" name="comment" rows="3" maxlength="1000" placeholder="Looking into it"></textarea>
  <p class="form-error" role="alert" hidden></p>
  <div class="buttons"><button type="button" data-cancel class="secondary">Cancel</button><button type="submit" class="primary">Acknowledge</button></div>
</form></dialog>`,
    async (form) => {
      const answer = await post(path("alerts", alert.fingerprint, "ack"), { comment: form.comment.value.trim() }, { quiet: true });
      toastOk("Alert acknowledged.");
      return answer.alert || { ...alert, acked_by: "you" };
    },
  );
}

/** Make a silence with matchers prefilled from `alert` (or empty); resolves to it, or null. */
export function silenceDialog(alert) {
  const prefill = alert ? matchersOf(alert).join("\n") : "";
  return openDialog(
    html`<dialog class="dialog" aria-labelledby="silence-title">
<form class="stack" method="dialog">
  <h2 id="silence-title">Silence alerts</h2>
  ${alert ? html`<p>${alertTitle(alert)}</p>` : ""}
  <label for="silence-matchers">Matchers, one per line</label>
  <textarea id="silence-matchers" name="matchers" rows="4" required spellcheck="false" aria-describedby="silence-help">${prefill}</textarea>
  <p id="silence-help" class="muted small">Each is <code>name=value</code>, <code>name!=value</code>, <code>name=~regex</code> or <code>name!~regex</code> over the alert's labels, <code>rule</code> and <code>severity</code>. Remove lines to silence more alerts.</p>
  <label for="silence-duration">For</label>
  <select id="silence-duration" name="duration">${DURATIONS.map(([v, t]) => html`<option value="${v}"${v === "2h" ? html` selected` : ""}>${t}</option>`)}<option value="custom">Other…</option></select>
  <label for="silence-custom" class="custom-duration" hidden>Duration (e.g. 90m, 12h, 2d)</label>
  <input id="silence-custom" name="custom" class="custom-duration" hidden pattern="\\s*\\d+(\\.\\d+)?\\s*[smhd]\\s*">
  <label for="silence-comment">Comment</label>
  <input id="silence-comment" name="comment" maxlength="1000" placeholder="Maintenance window" required>
  <p class="form-error" role="alert" hidden></p>
  <div class="buttons"><button type="button" data-cancel class="secondary">Cancel</button><button type="submit" class="primary">Silence</button></div>
</form></dialog>`,
    async (form) => {
      const matchers = form.matchers.value.split("\n").map((l) => l.trim()).filter(Boolean);
      if (!matchers.length) throw new Error("Give at least one matcher, like host=web-1.");
      const duration = form.duration.value === "custom" ? form.custom.value.trim() : form.duration.value;
      if (!duration) throw new Error("Give a duration, like 2h.");
      const answer = await post("/api/v1/silences", { matchers, duration, comment: form.comment.value.trim() }, { quiet: true });
      toastOk("Silence created.");
      return answer.silence;
    },
  );
}

// The duration select shows a text field for "Other…" (one listener for every silence dialog).
document.addEventListener("change", (ev) => {
  const select = ev.target;
  if (!(select instanceof HTMLSelectElement) || select.name !== "duration" || !select.form) return;
  const custom = select.value === "custom";
  for (const el of select.form.querySelectorAll(".custom-duration")) el.hidden = !custom;
  select.form.custom.required = custom;
});

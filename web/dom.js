// HTML building that escapes by default.
//
// Every string that reaches innerHTML is built with `html` (a tagged template): each interpolated
// value is escaped with `esc()` unless it is itself the result of `html` (or `raw`, for markup this
// code made, never for server data). Arrays are joined. Nodes built with textContent need neither.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

/** Text made safe for HTML content and quoted attribute values. */
export function esc(value) {
  if (value === null || value === undefined) return "";
  return String(value).replace(/[&<>"'`]/g, (c) => ESCAPES[c]);
}

/** Markup that is already safe: made by `html`, or by this code from constants and numbers. */
export class Safe {
  constructor(text) {
    this.text = text;
  }
  toString() {
    return this.text;
  }
}

/** Mark markup as safe. Only for strings this code built from escaped parts. */
export function raw(text) {
  return new Safe(String(text));
}

function part(value) {
  if (value instanceof Safe) return value.text;
  if (Array.isArray(value)) return value.map(part).join("");
  if (value === false || value === null || value === undefined) return "";
  return esc(value);
}

/** Tagged template: html`<td>${name}</td>` escapes `name`; nested html`` and arrays pass through. */
export function html(strings, ...values) {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += part(values[i]) + strings[i + 1];
  return new Safe(out);
}

/** Replace the children of `el` with markup made by `html`. */
export function setHtml(el, safe) {
  if (!(safe instanceof Safe)) throw new TypeError("setHtml takes markup made by html``");
  el.innerHTML = safe.text;
}

/** One element from markup made by `html` (the first element of it). */
export function fromHtml(safe) {
  const t = document.createElement("template");
  setHtml(t, safe);
  return t.content.firstElementChild;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return Array.from(root.querySelectorAll(selector));
}

/** Delegated event: `on(root, "click", "button[data-ack]", (ev, button) => ...)`. */
export function on(root, type, selector, handler) {
  const listener = (ev) => {
    const target = ev.target instanceof Element ? ev.target.closest(selector) : null;
    if (target && root.contains(target)) handler(ev, target);
  };
  root.addEventListener(type, listener);
  return () => root.removeEventListener(type, listener);
}

/** The hash link of a route, each path part encoded: link("hosts", name) -> "#/hosts/web%201". */
export function link(...parts) {
  return "#/" + parts.map((p) => encodeURIComponent(p)).join("/");
}

/** Form fields as an object of strings (checkboxes as booleans). */
export function formData(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    out[el.name] = el.type === "checkbox" ? el.checked : el.value;
  }
  return out;
}

/** Disable a form's controls while `work` runs; always enable them again. */
export async function busy(form, work) {
  const controls = Array.from(form.querySelectorAll("button, input, select, textarea")).filter(
    (el) => !el.disabled,
  );
  controls.forEach((el) => (el.disabled = true));
  form.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    controls.forEach((el) => (el.disabled = false));
    form.removeAttribute("aria-busy");
  }
}

/** Copy text to the clipboard; falls back to selecting the text of `el`. */
export async function copyText(text, el) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (el) {
      const range = document.createRange();
      range.selectNodeContents(el);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
    return false;
  }
}

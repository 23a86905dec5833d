// Short messages for the user: errors from the server, confirmations. One live region, read out
// by screen readers; errors stay until dismissed, confirmations go by themselves.

const MAX_SHOWN = 4;

function region() {
  let el = document.getElementById("toasts");
  if (!el) {
    el = document.createElement("div");
    el.id = "toasts";
    el.className = "toasts";
    document.body.append(el);
  }
  return el;
}

/** Show `text`; kind is "error", "ok" or "info". Returns a function that removes it. */
export function toast(text, kind = "info") {
  const box = region();
  const item = document.createElement("div");
  item.className = `toast toast-${kind}`;
  item.setAttribute("role", kind === "error" ? "alert" : "status");
  const msg = document.createElement("span");
  msg.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  const remove = () => item.remove();
  close.addEventListener("click", remove);
  item.append(msg, close);
  box.append(item);
  while (box.children.length > MAX_SHOWN) box.firstElementChild.remove();
  if (kind !== "error") setTimeout(remove, 5000);
  return remove;
}

export function toastError(text) {
  return toast(text, "error");
}

export function toastOk(text) {
  return toast(text, "ok");
}

// Hash routes: "#/hosts/web-1?range=6h" -> the host page with params {host: "web-1"} and query
// {range: "6h"}. One page is mounted at a time; leaving it aborts its requests and runs its cleanup.
//
// A page module exports `mount(root, ctx)` and may return a cleanup function; a route may instead
// name a loader (`() => import("./pages/x.js")`) so a page nobody opened costs no download. ctx
// holds `params`, `query`, `signal` (aborted on leave), `setQuery(obj)` (updates the URL without
// remounting) and `ready()` (the page has rendered: sets body[data-page-ready] for tests and benchmarks).

const routes = [];
let current = null; // {cleanup, controller}
let root = null;
let onRoute = () => {};

/** Add a route: pattern like "hosts/:host"; name is what the nav highlights; page is a module or a
 * function that imports it. */
export function route(pattern, name, page) {
  const parts = pattern.split("/").filter(Boolean);
  routes.push({ parts, name, page });
}

export function parseHash(hash = location.hash) {
  const text = hash.replace(/^#\/?/, "");
  const q = text.indexOf("?");
  const pathText = q < 0 ? text : text.slice(0, q);
  const query = Object.fromEntries(new URLSearchParams(q < 0 ? "" : text.slice(q + 1)));
  let segments;
  try {
    segments = pathText.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    segments = [];
  }
  return { segments, query };
}

function match(segments) {
  for (const r of routes) {
    if (r.parts.length !== segments.length) continue;
    const params = {};
    let ok = true;
    r.parts.forEach((p, i) => {
      if (p.startsWith(":")) params[p.slice(1)] = segments[i];
      else if (p !== segments[i]) ok = false;
    });
    if (ok) return { ...r, params };
  }
  return null;
}

/** The hash of the current path with a new query (empty values dropped). */
export function withQuery(query) {
  const base = location.hash.split("?")[0] || "#/";
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
  const text = params.toString();
  return text ? `${base}?${text}` : base;
}

function unmount() {
  if (!current) return;
  current.controller.abort();
  try {
    if (typeof current.cleanup === "function") current.cleanup();
  } catch (exc) {
    console.error("page cleanup failed", exc);
  }
  current = null;
}

async function show() {
  // Focus follows a click on a link (not the first load): start reading at the new page.
  const active = document.activeElement;
  const fromNav = Boolean(root.firstChild && active && active.closest && active.closest("a, button"));
  const { segments, query } = parseHash();
  const found = match(segments) || match(["not-found"]);
  unmount();
  delete document.body.dataset.pageReady;
  root.replaceChildren();
  root.setAttribute("aria-busy", "true");
  const controller = new AbortController();
  const mine = { cleanup: null, controller };
  current = mine;
  onRoute(found.name, found.params);
  const ctx = {
    params: found.params,
    query,
    signal: controller.signal,
    setQuery(next) {
      ctx.query = Object.fromEntries(Object.entries(next).filter(([, v]) => v !== undefined && v !== ""));
      history.replaceState(history.state, "", withQuery(ctx.query));
    },
    ready() {
      if (controller.signal.aborted) return;
      root.removeAttribute("aria-busy");
      document.body.dataset.pageReady = "1";
    },
  };
  window.scrollTo(0, 0);
  try {
    const page = typeof found.page === "function" ? await found.page() : found.page;
    if (controller.signal.aborted) return;
    const cleanup = await page.mount(root, ctx);
    if (fromNav && current === mine && !root.contains(document.activeElement)) root.focus({ preventScroll: true });
    if (current === mine) mine.cleanup = cleanup;
    else if (typeof cleanup === "function") cleanup();
  } catch (exc) {
    if (exc.name === "AbortError" || controller.signal.aborted) return;
    if (exc.status === 401) return; // on its way to the sign-in page
    console.error("page failed", exc);
    const p = document.createElement("p");
    p.className = "error-box";
    p.textContent = exc.message || "This page failed to load; reload to try again.";
    root.replaceChildren(p);
    ctx.ready();
  }
}

/** Start routing into `el`; `changed(name, params)` runs on every navigation (nav highlight). */
export function start(el, changed) {
  root = el;
  onRoute = changed || onRoute;
  window.addEventListener("hashchange", show);
  if (!location.hash) history.replaceState(null, "", "#/");
  show();
}

/** Mount the current route again (after sign-in, or a change of role). */
export function reload() {
  show();
}

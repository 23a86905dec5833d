// The one way this UI talks to the aggregator: JSON over fetch with the session cookie.
//
// - Every state-changing request (POST, PUT, PATCH, DELETE) carries the session's CSRF token in
//   X-CSRF-Token; a 403 after the token changed (a sign-in in another tab) is retried once.
// - 401 means the session is gone: the page goes to #/login and comes back after sign-in.
// - Errors are the server's own sentence ({"error": "..."}), shown to the user unless `quiet`.

import { url } from "./chartplan.js";
import { session, setSession } from "./session.js";
import { toastError } from "./toast.js";

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const RETURN_KEY = "edgewatch.return";
export const EARLY_MS = 10_000; // how long an answer early.js asked for may stand in for a new request

export { url }; // the pages build URLs with api.js

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

async function errorOf(response) {
  let message = "";
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") message = body.error;
  } catch {
    /* not JSON: a proxy or the server's plain error page */
  }
  if (!message) {
    message =
      response.status >= 500
        ? `The aggregator failed (HTTP ${response.status}); try again, and check its log if it persists.`
        : `The request was refused (HTTP ${response.status}).`;
  }
  const after = response.headers.get("Retry-After");
  if (response.status === 429 && after && !/retry|again/i.test(message)) {
    message += ` Try again in ${after} s.`;
  }
  return new ApiError(response.status, message);
}

/** Remember where the user was, and go to the sign-in page. */
export function toLogin() {
  setSession(null);
  const here = location.hash;
  if (!here.startsWith("#/login")) {
    sessionStorage.setItem(RETURN_KEY, here || "#/");
    location.hash = "#/login";
  }
}

/** The route to go back to after signing in (and forget it). */
export function returnRoute() {
  const route = sessionStorage.getItem(RETURN_KEY) || "#/";
  sessionStorage.removeItem(RETURN_KEY);
  return route.startsWith("#/login") ? "#/" : route;
}

/** The answer early.js started for this GET, once, while fresh and when it succeeded; else null. */
async function early(target) {
  const started = window.edgewatchEarly;
  const hit = started && started.get(target);
  if (!hit) return null;
  started.delete(target);
  if (Date.now() - hit.at > EARLY_MS) return null;
  const response = await hit.response;
  return response && response.ok ? response : null;
}

async function send(method, path, opts) {
  if (method === "GET" && opts.body === undefined) {
    const answer = await early(url(path, opts.query));
    if (answer) return answer;
  }
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", signal: opts.signal, cache: "no-store" };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  if (UNSAFE.has(method) && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  return fetch(url(path, opts.query), init);
}

/**
 * Call the API. opts: query (object), body (JSON), signal, quiet (no toast), noLogin (a 401 is
 * only thrown: for the sign-in form and /me). Resolves to the parsed JSON (null for no body).
 */
export async function api(path, opts = {}) {
  const method = (opts.method || "GET").toUpperCase();
  let response;
  try {
    response = await send(method, path, opts);
    if (response.status === 403 && UNSAFE.has(method) && !opts.retried) {
      const before = session.csrf;
      const me = await fetch("/api/v1/me", { credentials: "same-origin", cache: "no-store" });
      if (me.ok) {
        const body = await me.json();
        setSession(body);
        if (body.csrf && body.csrf !== before) return api(path, { ...opts, retried: true });
      }
    }
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    const err = new ApiError(0, "The aggregator cannot be reached; check the network and try again.");
    if (!opts.quiet) toastError(err.message);
    throw err;
  }
  if (response.status === 401 && !opts.noLogin) {
    toLogin();
    throw new ApiError(401, "Please sign in.");
  }
  if (!response.ok) {
    const err = await errorOf(response);
    if (!opts.quiet) toastError(err.message);
    throw err;
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const get = (path, query, opts = {}) => api(path, { ...opts, query });
export const post = (path, body, opts = {}) => api(path, { ...opts, method: "POST", body });
export const del = (path, body, opts = {}) => api(path, { ...opts, method: "DELETE", body });

/** Path of an API resource with encoded parts: path("hosts", name, "series"). */
export function path(...parts) {
  return "/api/v1/" + parts.map((p) => encodeURIComponent(p)).join("/");
}

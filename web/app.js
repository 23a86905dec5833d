// The app shell: who is signed in, the routes, the nav, the live connection, the service worker.

import { api, toLogin } from "./api.js";
import { live } from "./live.js";
import { route, start } from "./router.js";
import { can, onSession, session, setSession, signedIn } from "./session.js";
import * as host from "./pages/host.js";
import * as login from "./pages/login.js";
import * as overview from "./pages/overview.js";

// The overview, a host and the sign-in page come with the app; the others load when first opened.
const alerts = () => import("./pages/alerts.js");
const rules = () => import("./pages/rules.js");
const settings = () => import("./pages/settings.js");
const notFound = () => import("./pages/notfound.js");

route("", "overview", overview);
route("login", "login", login);
route("hosts/:host", "host", host);
route("alerts", "alerts", alerts);
route("alerts/:fingerprint", "alerts", alerts);
route("rules", "rules", rules);
route("settings", "settings", settings);
route("not-found", "not-found", notFound);

const NAV_OF = { overview: "overview", host: "overview", alerts: "alerts", rules: "rules", settings: "settings" };
const LIVE_TEXT = {
  open: "Live updates: connected",
  connecting: "Live updates: connecting",
  reconnecting: "Live updates: reconnecting",
  closed: "Live updates: off",
};

function showSession() {
  const body = document.body;
  body.classList.toggle("signed-in", signedIn());
  body.classList.toggle("can-operator", can("operator"));
  body.classList.toggle("can-admin", can("admin"));
  const user = document.getElementById("user");
  user.textContent = signedIn() ? `${session.user} · ${session.role}` : "";
}

function highlight(name) {
  document.body.dataset.route = name;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === NAV_OF[name]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

/** True when the session is gone (and the page is on its way to #/login). */
async function sessionGone() {
  try {
    await api("/api/v1/me", { quiet: true, noLogin: true });
    return false;
  } catch (exc) {
    if (exc.status === 401) {
      toLogin();
      return true;
    }
    return false;
  }
}

async function signOut() {
  try {
    await api("/api/v1/logout", { method: "POST", quiet: true, noLogin: true });
  } catch {
    /* the session may be gone already; signing out locally is what matters */
  }
  live.stop();
  setSession(null);
  location.hash = "#/login";
}

function watchLive() {
  // The server says who we are on every connect: a role changed by an admin shows at once.
  live.on("hello", (m) => {
    if (session.user && m.role && m.role !== session.role) setSession({ user: session.user, role: m.role, csrf: session.csrf });
  });
  const dot = document.getElementById("live-dot");
  live.onState((state) => {
    dot.dataset.state = state;
    dot.title = LIVE_TEXT[state] || state;
    dot.setAttribute("aria-label", dot.title);
  });
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  const register = () =>
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((exc) => {
      console.warn("service worker not registered", exc);
    });
  // A tapped notification asks an open window to show the alert (sw.js).
  navigator.serviceWorker.addEventListener("message", (ev) => {
    const data = ev.data || {};
    if (data.type !== "open" || typeof data.url !== "string") return;
    const target = new URL(data.url, location.origin);
    if (target.origin === location.origin) location.hash = target.hash || "#/alerts";
  });
  if (document.readyState === "complete") register();
  else window.addEventListener("load", register, { once: true });
}

/** Sticky parts of pages sit below the sticky header: tell CSS how tall it is. */
function trackHeader() {
  const header = document.getElementById("top");
  const set = () => document.documentElement.style.setProperty("--header-h", `${header.offsetHeight}px`);
  new ResizeObserver(set).observe(header);
  set();
}

function boot() {
  onSession((s) => {
    showSession();
    if (s.user) live.connect(sessionGone);
    else live.stop();
  });
  session.ready = api("/api/v1/me", { quiet: true, noLogin: true }).then(
    (me) => setSession(me),
    (exc) => {
      setSession(null);
      if (exc.status === 401) toLogin();
    },
  );
  showSession();
  watchLive();
  trackHeader();
  document.getElementById("signout").addEventListener("click", signOut);
  start(document.getElementById("app"), highlight);
  registerServiceWorker();
}

boot();

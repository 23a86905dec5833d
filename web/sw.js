// The service worker (scope /): shows the aggregator's push notifications and opens the alert on a
// tap; keeps the app shell so the installed app opens without a network (the data needs one).
//
// The push payload is JSON (aggregator/notify/webpush.py `payload()`):
//   {"v": 1, "title": "CRITICAL web-1: CPU at 97 %", "body": "…", "url": "https://…/#/alerts/…",
//    "tag": "<alert or group key>", "level": "critical", "state": "firing", "count": 1, "at": ms}

const SHELL_CACHE = "edgewatch-shell-v1";
const SHELL = ["/", "/index.html", "/style.css", "/icons/icon.svg", "/icons/icon-192.png"];
const LEVELS = ["info", "warning", "error", "critical"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      .then((cache) => cache.addAll(SHELL))
      .catch(() => {}) // the shell is a convenience; installing must not fail over it
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("edgewatch-") && k !== SHELL_CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// Page loads go to the network first (always the newest UI); the cached shell answers only when
// the network does not. API calls, the WebSocket and other files are not touched.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.mode !== "navigate" || request.method !== "GET") return;
  const path = new URL(request.url).pathname;
  if (path !== "/" && path !== "/index.html") return; // downloads, /metrics and the rest go straight through
  event.respondWith(
    fetch(request).catch(async () => {
      const cached = await caches.match("/index.html", { cacheName: SHELL_CACHE });
      return cached || new Response("edgewatch is offline; reconnect and reload.", { status: 503, headers: { "Content-Type": "text/plain; charset=utf-8" } });
    }),
  );
});

function parse(data) {
  if (!data) return {};
  try {
    const body = data.json();
    return body && typeof body === "object" ? body : {};
  } catch {
    return { body: data.text() };
  }
}

/** The title with level and host: the server's own ("CRITICAL web-1: …"), or one made here. */
function titleOf(msg) {
  if (typeof msg.title === "string" && msg.title) return msg.title;
  const level = msg.state === "resolved" ? "RESOLVED" : String(msg.level || "alert").toUpperCase();
  return msg.host ? `${level} ${msg.host}` : `${level}: edgewatch`;
}

/** The alert's page on this origin (the aggregator's public_url may name another host or be empty). */
function targetOf(msg) {
  const fallback = new URL("/#/alerts", self.location.origin);
  if (typeof msg.url !== "string" || !msg.url) return fallback.href;
  try {
    const u = new URL(msg.url, self.location.origin);
    if (u.protocol !== "https:" && u.protocol !== "http:") return fallback.href;
    // one leading slash: "//evil.example/x" would otherwise be a protocol-relative URL to another host
    const path = u.pathname.replace(/^\/+/, "/");
    return new URL(path + u.search + u.hash, self.location.origin).href;
  } catch {
    return fallback.href;
  }
}

self.addEventListener("push", (event) => {
  const msg = parse(event.data);
  const level = LEVELS.includes(msg.level) ? msg.level : "info";
  const firing = msg.state !== "resolved";
  const options = {
    body: typeof msg.body === "string" ? msg.body : "",
    tag: typeof msg.tag === "string" && msg.tag ? msg.tag : undefined,
    renotify: Boolean(msg.tag),
    icon: "/icons/icon-192.png",
    badge: "/icons/badge-96.png",
    timestamp: typeof msg.at === "number" ? msg.at : Date.now(),
    requireInteraction: firing && level === "critical",
    silent: !firing || level === "info",
    data: { url: targetOf(msg), level, state: msg.state || "" },
  };
  if (!options.tag) delete options.renotify;
  event.waitUntil(self.registration.showNotification(titleOf(msg), options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = (event.notification.data && event.notification.data.url) || new URL("/#/alerts", self.location.origin).href;
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = windows.find((c) => new URL(c.url).origin === self.location.origin);
      if (open) {
        // An open app changes its hash route itself (app.js listens); that works whether or not
        // this worker controls the window, which client.navigate() needs.
        await open.focus();
        open.postMessage({ type: "open", url: target });
        return;
      }
      await self.clients.openWindow(target);
    })(),
  );
});

// The browser replaced the subscription (keys rotated): register the new one with the aggregator.
self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(
    (async () => {
      const old = event.oldSubscription;
      const sub =
        event.newSubscription ||
        (old && old.options ? await self.registration.pushManager.subscribe(old.options) : null);
      if (!sub) return;
      const me = await fetch("/api/v1/me", { credentials: "same-origin" });
      if (!me.ok) return; // signed out: the user subscribes again after signing in
      const { csrf } = await me.json();
      const headers = { "Content-Type": "application/json", "X-CSRF-Token": csrf };
      await fetch("/api/v1/push/subscriptions", { method: "POST", credentials: "same-origin", headers, body: JSON.stringify(sub.toJSON()) });
      if (old && old.endpoint !== sub.endpoint) {
        await fetch("/api/v1/push/subscriptions", { method: "DELETE", credentials: "same-origin", headers, body: JSON.stringify({ endpoint: old.endpoint }) });
      }
    })().catch(() => {}),
  );
});

// Starts the API requests of the first page while the modules load: a cold load spends half a
// second fetching and compiling them, and the page's data need not wait for that. The overview
// asks for the hosts and alerts, a host page for its host, series, alerts and events (the same
// URLs the pages build). api.js takes each answer once, within EARLY_MS of the start, and asks
// again the normal way when an early request failed or was refused. A classic script without
// imports, first in index.html's head, so it runs before any module does.
(() => {
  const early = new Map();
  const text = location.hash.replace(/^#\/?/, "");
  const parts = text.split("?")[0].split("/").filter(Boolean);
  const urls = [];
  try {
    if (parts.length === 0) {
      urls.push(`/api/v1/hosts?${new URLSearchParams({ spark: "1" })}`, "/api/v1/alerts");
    } else if (parts.length === 2 && parts[0] === "hosts") {
      const name = decodeURIComponent(parts[1]);
      const host = `/api/v1/hosts/${encodeURIComponent(name)}`;
      urls.push(host, `${host}/series`, `/api/v1/alerts?${new URLSearchParams({ host: name })}`);
      urls.push(`${host}/events?${new URLSearchParams({ start: "-24h" })}`);
    }
  } catch {
    return; // a malformed route: the page reports it
  }
  const init = { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
  for (const url of urls) early.set(url, { at: Date.now(), response: fetch(url, init).catch(() => null) });
  window.edgewatchEarly = early;
})();

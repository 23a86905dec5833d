// Starts the API requests of the first page while the modules load: a cold load spends half a
// second fetching and compiling them, and the page's data need not wait for that. The overview
// asks for the hosts and alerts, a host page for its host, series, alerts and events (the same
// URLs the pages build), and once the series are in, for its charts' data. api.js takes each
// answer once, within EARLY_MS of the start, and asks again the normal way when an early request
// failed or was refused. A classic script (it imports modules only dynamically), first in
// index.html's head, so it runs before any module does; the aggregator inlines it in the page
// (aggregator/static.py), so its requests go out before the stylesheets' and modules'.
(() => {
  const early = new Map();
  const text = location.hash.replace(/^#\/?/, "");
  const parts = text.split("?")[0].split("/").filter(Boolean);
  const urls = [];
  let charts = null; // a host page: its name, its series' URL and the route's query
  try {
    if (parts.length === 0) {
      urls.push(`/api/v1/hosts?${new URLSearchParams({ spark: "1" })}`, "/api/v1/alerts");
    } else if (parts.length === 2 && parts[0] === "hosts") {
      const name = decodeURIComponent(parts[1]);
      const host = `/api/v1/hosts/${encodeURIComponent(name)}`;
      urls.push(host, `${host}/series`, `/api/v1/alerts?${new URLSearchParams({ host: name })}`);
      urls.push(`${host}/events?${new URLSearchParams({ start: "-24h" })}`);
      const query = Object.fromEntries(new URLSearchParams(text.includes("?") ? text.slice(text.indexOf("?") + 1) : ""));
      charts = { name, series: `${host}/series`, query };
    }
  } catch {
    return; // a malformed route: the page reports it
  }
  const init = { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
  const asked = (window.edgewatchEarlyAsked = []); // every URL asked here, for the tests
  const ask = (url) => {
    asked.push(url);
    early.set(url, { at: Date.now(), response: fetch(url, init).catch(() => null) });
  };
  urls.forEach(ask);
  window.edgewatchEarly = early;
  if (!charts) return;
  // A host page's charts: their queries once the series are in, planned as the page plans them
  // (chartplan.js, hostcharts.js: small modules without imports). The page waits for this, takes
  // the view, and asks with the same URLs.
  const listed = early.get(charts.series).response.then((r) => (r && r.ok ? r.clone().json() : null));
  window.edgewatchEarlyCharts = Promise.all([listed, import("/chartplan.js"), import("/hostcharts.js")])
    .then(([answer, plan, hostcharts]) => {
      if (!answer) return null;
      const view = plan.viewFromQuery(charts.query);
      const specs = hostcharts.chartSections(answer.series || []).flatMap((section) => section.charts);
      for (const { query } of plan.chartQueries(charts.name, specs, view, document.documentElement.clientWidth)) {
        ask(plan.url("/api/v1/query", query));
      }
      return { host: charts.name, view };
    })
    .catch(() => null);
})();

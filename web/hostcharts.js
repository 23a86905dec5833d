// Which charts a host gets: its series (from /api/v1/hosts/NAME/series) grouped by metric name
// (names from docs/agent.md) into sections of chart specs {key, title, note, unit, lines, min, max}.
// Series the agent sends that no chart here knows are "custom metrics": one chart per name.

const AGENT_NAMES = `node_cpu_seconds_total node_context_switches_total node_intr_total node_forks_total
node_procs_running node_procs_blocked node_cpu_count edgewatch_cpu_usage_percent edgewatch_cpu_iowait_percent
edgewatch_cpu_steal_percent node_load1 node_load5 node_load15 node_memory_MemTotal_bytes node_memory_MemFree_bytes
node_memory_MemAvailable_bytes node_memory_Buffers_bytes node_memory_Cached_bytes node_memory_SwapCached_bytes
node_memory_Active_bytes node_memory_Inactive_bytes node_memory_SwapTotal_bytes node_memory_SwapFree_bytes
node_memory_Dirty_bytes node_memory_Shmem_bytes node_memory_Slab_bytes node_memory_SReclaimable_bytes
edgewatch_memory_used_bytes edgewatch_memory_used_percent edgewatch_swap_used_bytes node_vmstat_pswpin
node_vmstat_pswpout node_vmstat_pgmajfault node_filesystem_device_error node_filesystem_size_bytes
node_filesystem_free_bytes node_filesystem_avail_bytes node_filesystem_files node_filesystem_files_free
node_filesystem_readonly edgewatch_filesystem_used_percent node_disk_reads_completed_total
node_disk_writes_completed_total node_disk_read_bytes_total node_disk_written_bytes_total
node_disk_read_time_seconds_total node_disk_write_time_seconds_total node_disk_io_time_seconds_total node_disk_io_now
edgewatch_disk_utilisation_percent node_network_receive_bytes_total node_network_receive_packets_total
node_network_receive_errs_total node_network_receive_drop_total node_network_transmit_bytes_total
node_network_transmit_packets_total node_network_transmit_errs_total node_network_transmit_drop_total
node_tcp_connection_states edgewatch_tcp_table_truncated node_processes_state node_processes_threads
node_processes_pids edgewatch_process_cpu_percent edgewatch_process_resident_bytes node_hwmon_temp_celsius
node_thermal_zone_temp node_hwmon_fan_rpm node_boot_time_seconds edgewatch_uptime_seconds
edgewatch_systemd_unit_active node_systemd_unit_state edgewatch_systemd_unit_restarts_total
edgewatch_process_watch_running edgewatch_process_watch_cpu_percent edgewatch_process_watch_resident_bytes
edgewatch_check_up edgewatch_check_duration_seconds edgewatch_check_http_status
edgewatch_check_certificate_expiry_days edgewatch_textfile_mtime_seconds edgewatch_textfile_scrape_error
edgewatch_scrape_up edgewatch_scrape_duration_seconds edgewatch_scrape_truncated`;
const KNOWN = new Set(AGENT_NAMES.split(/\s+/));
const MAX_LINES = 12; // lines per chart of one metric with many label sets
const MAX_CUSTOM = 40; // custom metric charts

/** The unit of a metric by its name, Prometheus style. Counters arrive as per-second rates. */
export function unitOf(name, kind) {
  if (/_percent$/.test(name)) return "percent";
  if (/_celsius$|_temp$/.test(name)) return "celsius";
  if (/_bytes_total$/.test(name)) return "bytes/s";
  if (/_bytes$/.test(name)) return "bytes";
  if (/_seconds_total$/.test(name)) return ""; // seconds per second
  if (/_seconds$/.test(name)) return "seconds";
  if (/_days$/.test(name)) return "days";
  if (/_rpm$/.test(name)) return "rpm";
  if (kind === "counter" || /_total$/.test(name)) return "/s";
  return "";
}

function labelText(labels, skip = []) {
  const parts = Object.entries(labels || {})
    .filter(([k]) => !skip.includes(k))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`);
  return parts.join(", ");
}

class Index {
  constructor(series) {
    this.byName = new Map();
    for (const s of series) {
      if (!this.byName.has(s.name)) this.byName.set(s.name, []);
      this.byName.get(s.name).push(s);
    }
  }
  all(name) {
    return this.byName.get(name) || [];
  }
  one(name, labels = {}) {
    return this.all(name).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }
  /** Distinct values of a label over some metrics, sorted. */
  values(label, names) {
    const set = new Set();
    for (const n of names) for (const s of this.all(n)) if (s.labels[label] !== undefined) set.add(s.labels[label]);
    return [...set].sort((a, b) => (a === "/" ? -1 : b === "/" ? 1 : a.localeCompare(b, undefined, { numeric: true })));
  }
}

/** Lines of the named metrics that exist: [[name, label, opts], ...]. */
function lines(ix, wanted) {
  const out = [];
  for (const [name, label, opts = {}] of wanted) {
    const s = ix.one(name, opts.labels || {});
    if (s) out.push({ id: s.id, label, band: opts.band, dash: opts.dash });
  }
  return out;
}

/** One line per series of a metric (label sets as line names), at most MAX_LINES. */
function perSeries(ix, name, labelKeys, skip = []) {
  const all = ix.all(name).slice().sort((a, b) => labelText(a.labels).localeCompare(labelText(b.labels), undefined, { numeric: true }));
  const shown = all.slice(0, MAX_LINES);
  return {
    lines: shown.map((s, i) => ({
      id: s.id,
      label: (labelKeys ? labelKeys.map((k) => s.labels[k]).filter(Boolean).join(" ") : labelText(s.labels, skip)) || name,
      band: i === 0 && shown.length === 1,
    })),
    hidden: all.length - shown.length,
  };
}

function chart(key, title, unit, lineList, extra = {}) {
  return lineList.length ? [{ key, title, unit, lines: lineList, ...extra }] : [];
}

function system(ix) {
  return [
    ...chart("cpu", "CPU", "percent", lines(ix, [
      ["edgewatch_cpu_usage_percent", "used", { labels: { cpu: "all" } }],
      ["edgewatch_cpu_iowait_percent", "iowait"],
      ["edgewatch_cpu_steal_percent", "steal"],
    ]), { min: 0, max: 100 }),
    ...chart("load", "Load", "", lines(ix, [
      ["node_load1", "1 min"],
      ["node_load5", "5 min"],
      ["node_load15", "15 min"],
      ["node_cpu_count", "cores", { dash: true }],
    ]), { min: 0 }),
    ...chart("memory", "Memory", "bytes", lines(ix, [
      ["edgewatch_memory_used_bytes", "used"],
      ["node_memory_Cached_bytes", "cached"],
      ["node_memory_Buffers_bytes", "buffers"],
      ["node_memory_MemTotal_bytes", "total", { dash: true }],
    ]), { min: 0 }),
    ...chart("swap", "Swap", "bytes", lines(ix, [
      ["edgewatch_swap_used_bytes", "used"],
      ["node_memory_SwapTotal_bytes", "total", { dash: true }],
    ]), { min: 0 }),
    ...chart("runqueue", "Processes running and blocked", "", lines(ix, [
      ["node_procs_running", "running"],
      ["node_procs_blocked", "blocked"],
    ]), { min: 0 }),
    ...chart("tasks", "Processes and threads", "", lines(ix, [
      ["node_processes_pids", "processes"],
      ["node_processes_threads", "threads"],
    ]), { min: 0 }),
  ];
}

function filesystems(ix) {
  const out = [];
  for (const mount of ix.values("mountpoint", ["edgewatch_filesystem_used_percent"])) {
    const used = ix.one("edgewatch_filesystem_used_percent", { mountpoint: mount });
    const note = [used.labels.device, used.labels.fstype].filter(Boolean).join(" · ");
    out.push({ key: `fs:${mount}`, title: `Filesystem ${mount}`, note, unit: "percent", min: 0, max: 100, lines: [{ id: used.id, label: "used" }] });
  }
  return out;
}

function disks(ix) {
  const out = [];
  for (const dev of ix.values("device", ["node_disk_read_bytes_total", "node_disk_written_bytes_total"])) {
    out.push(...chart(`disk:${dev}`, `Disk I/O ${dev}`, "bytes/s", lines(ix, [
      ["node_disk_read_bytes_total", "read", { labels: { device: dev } }],
      ["node_disk_written_bytes_total", "written", { labels: { device: dev }, band: true }],
    ]), { min: 0 }));
  }
  const util = perSeries(ix, "edgewatch_disk_utilisation_percent", ["device"]);
  out.push(...chart("disk-util", "Disk utilisation", "percent", util.lines, { min: 0, max: 100, hidden: util.hidden }));
  return out;
}

function network(ix) {
  const out = [];
  for (const dev of ix.values("device", ["node_network_receive_bytes_total", "node_network_transmit_bytes_total"])) {
    out.push(...chart(`net:${dev}`, `Network ${dev}`, "bytes/s", lines(ix, [
      ["node_network_receive_bytes_total", "receive", { labels: { device: dev } }],
      ["node_network_transmit_bytes_total", "transmit", { labels: { device: dev }, band: true }],
    ]), { min: 0 }));
    out.push(...chart(`neterr:${dev}`, `Network errors and drops ${dev}`, "/s", lines(ix, [
      ["node_network_receive_errs_total", "receive errors", { labels: { device: dev }, band: false }],
      ["node_network_transmit_errs_total", "transmit errors", { labels: { device: dev } }],
      ["node_network_receive_drop_total", "receive drops", { labels: { device: dev } }],
      ["node_network_transmit_drop_total", "transmit drops", { labels: { device: dev } }],
    ]), { min: 0 }));
  }
  const tcp = perSeries(ix, "node_tcp_connection_states", ["state"]);
  out.push(...chart("tcp", "TCP connections", "", tcp.lines, { min: 0, hidden: tcp.hidden }));
  return out;
}

function sensors(ix) {
  const temps = [...ix.all("node_hwmon_temp_celsius"), ...ix.all("node_thermal_zone_temp")].slice(0, MAX_LINES);
  const tempLines = temps.map((s) => ({
    id: s.id,
    label: [s.labels.chip, s.labels.sensor, s.labels.type, s.labels.zone].filter(Boolean).join(" ") || s.name,
    band: temps.length === 1,
  }));
  const fans = perSeries(ix, "node_hwmon_fan_rpm", ["chip", "sensor"]);
  return [
    ...chart("temp", "Temperatures", "celsius", tempLines),
    ...chart("fans", "Fans", "rpm", fans.lines, { min: 0, hidden: fans.hidden }),
  ];
}

function services(ix) {
  const checks = perSeries(ix, "edgewatch_check_duration_seconds", ["check"]);
  const wcpu = perSeries(ix, "edgewatch_process_watch_cpu_percent", ["watch"]);
  const wmem = perSeries(ix, "edgewatch_process_watch_resident_bytes", ["watch"]);
  return [
    ...chart("checks", "Check response time", "seconds", checks.lines, { min: 0, hidden: checks.hidden }),
    ...chart("watch-cpu", "Watched processes: CPU", "percent", wcpu.lines, { min: 0, hidden: wcpu.hidden }),
    ...chart("watch-mem", "Watched processes: memory", "bytes", wmem.lines, { min: 0, hidden: wmem.hidden }),
  ];
}

function custom(ix) {
  const names = [...ix.byName.keys()].filter((n) => !KNOWN.has(n) && !n.startsWith("edgewatch_agent_")).sort();
  const out = [];
  for (const name of names.slice(0, MAX_CUSTOM)) {
    const kind = ix.all(name)[0].kind;
    const { lines: l, hidden } = perSeries(ix, name, null, []);
    out.push({ key: `custom:${name}`, title: name, unit: unitOf(name, kind), lines: l, hidden });
  }
  return { charts: out, hidden: Math.max(0, names.length - MAX_CUSTOM) };
}

function agent(ix) {
  return [
    ...chart("agent-mem", "Agent memory", "bytes", lines(ix, [["edgewatch_agent_resident_bytes", "resident"]]), { min: 0 }),
    ...chart("agent-spool", "Agent spool", "bytes", lines(ix, [["edgewatch_agent_spool_bytes", "spooled"]]), { min: 0 }),
  ];
}

/** Sections of chart specs for a host's series: [{key, title, charts, hidden?}]. */
export function chartSections(series) {
  const ix = new Index(series);
  const c = custom(ix);
  return [
    { key: "system", title: "System", charts: system(ix) },
    { key: "filesystems", title: "Filesystems", charts: filesystems(ix) },
    { key: "disks", title: "Disks", charts: disks(ix) },
    { key: "network", title: "Network", charts: network(ix) },
    { key: "sensors", title: "Temperatures and fans", charts: sensors(ix) },
    { key: "services", title: "Checks and watched processes", charts: services(ix) },
    { key: "custom", title: "Custom metrics", charts: c.charts, hidden: c.hidden },
    { key: "agent", title: "Agent", charts: agent(ix) },
  ].filter((s) => s.charts.length);
}

/** The series a section of tables needs (services, checks, processes), by metric name. */
export function seriesNamed(series, names) {
  const want = new Set(names);
  return series.filter((s) => want.has(s.name));
}

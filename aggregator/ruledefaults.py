"""The built-in alert rules, as the TOML a user would write; ``[defaults]`` switches and tunes them.

Metric names and labels are the agent's (docs/agent.md). The plugin rules read metrics a plugin posts
under an agreed name: ``consecutive_errors`` (a gauge), ``errors_total`` and ``requests_total``
(counters), which the agent sends as ``edgewatch_plugin_<name>{plugin=...}``.
"""

from __future__ import annotations

import tomllib
from typing import Any

BUILTIN_TOML = """
[[rule]]
name = "cpu_high"
metric = "edgewatch_cpu_usage_percent"
labels = { cpu = "all" }
reducer = "avg"
window = "5m"
warning = 80
critical = 95
summary = "CPU on {host} at {value:.0f} % (avg 5 min)"

[[rule]]
name = "memory_high"
metric = "edgewatch_memory_used_percent"
reducer = "avg"
window = "5m"
warning = 85
critical = 95
summary = "Memory on {host} at {value:.0f} %"

[[rule]]
name = "disk_high"
metric = "edgewatch_filesystem_used_percent"
warning = 80
critical = 90
summary = "Disk {labels.mountpoint} on {host} at {value:.0f} %"

[[rule]]
name = "disk_full_soon"
metric = "node_filesystem_avail_bytes"
reducer = "predict"
window = "6h"
predict_in = "24h"
op = "<="
warning = 0
for = "30m"
summary = "Disk {labels.mountpoint} on {host} will be full within 24 h"

[[rule]]
name = "swap_used"
metric = "edgewatch_swap_used_bytes"
warning = 0
severity = "info"
summary = "{host} uses {value:.0f} bytes of swap"

[[rule]]
name = "load_per_core"
metric = "node_load5"
divide_by = "node_cpu_count"
warning = 2
for = "10m"
summary = "Load on {host} at {value:.1f} per core (5 min)"

[[rule]]
name = "host_down"
kind = "absence"
critical = 3
summary = "{host} has not pushed for {value:.0f} intervals"

[[rule]]
name = "unit_failed"
metric = "node_systemd_unit_state"
labels = { state = "failed" }
op = ">="
critical = 1
severity = "error"
summary = "Unit {labels.unit} on {host} failed"

[[rule]]
name = "check_failing"
metric = "edgewatch_check_up"
op = "<"
critical = 1
for = "1m"
summary = "{labels.kind} check {labels.check} on {host} is failing"

[[rule]]
name = "certificate_expiry"
metric = "edgewatch_check_certificate_expiry_days"
op = "<"
warning = 14
critical = 3
summary = "Certificate of check {labels.check} on {host} expires in {value:.0f} days"

[[rule]]
name = "spool_dropping"
metric = "edgewatch_agent_spool_dropped_samples_total"
reducer = "rate"
window = "15m"
warning = 0
summary = "The agent on {host} drops samples ({value:.2g}/s): its spool is full"

[[rule]]
name = "plugin_errors_in_row"
metric = "edgewatch_plugin_consecutive_errors"
op = ">="
warning = 5
summary = "Plugin {labels.plugin} on {host}: {value:.0f} errors in a row"

[[rule]]
name = "plugin_error_rate"
metric = "edgewatch_plugin_errors_total"
divide_by = "edgewatch_plugin_requests_total"
reducer = "rate"
window = "5m"
warning = 0.10
summary = "Plugin {labels.plugin} on {host}: {value:.1%} of requests fail"

[[rule]]
name = "response_time"
metric = "edgewatch_check_duration_seconds"
warning = 5
summary = "Check {labels.check} on {host} answers in {value:.1f} s"
"""
BUILTIN_RULES: dict[str, dict[str, Any]] = {r["name"]: r for r in tomllib.loads(BUILTIN_TOML)["rule"]}

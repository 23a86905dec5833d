"""edgewatch aggregator: ingest, storage, alerting, API and web UI."""

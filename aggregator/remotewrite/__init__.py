"""Forwarding every ingested sample to Prometheus remote-write endpoints (``[[remote_write]]``).

`settings` reads the config tables, `wire` encodes the protocol (protobuf + snappy), `segments` is
the bounded on-disk queue of one endpoint, `sender` sends one queue with retries, and `forwarder`
ties them to the ingest path. Import `forwarder` where it is used: it pulls in aiohttp and cramjam.
"""

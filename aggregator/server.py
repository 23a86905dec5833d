"""``edgewatch aggregator``: the app factory, its resources, and the process around it.

``make_app(config)`` builds the aiohttp application; each resource (the store, the maintenance
task) is one cleanup context, torn down in reverse order, so a shutdown stops taking requests,
lets in-flight pushes finish, commits what the writer holds, and closes the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from edgewatch.protocol.sdnotify import Notifier as SdNotifier
from edgewatch.protocol.settings import ConfigError

from . import alertapi, api, commandapi, federate, ingest, keys, live, notifyapi, static, webapi
from .alerting import alerting_context
from .config import DEFAULT_PATH, AggregatorConfig, load
from .datadir import DataDirBusy
from .downloads import DOWNLOADS, Downloads, dist_wheel, install_script, share_dir
from .jsonout import json_response
from .memory import limit_malloc_arenas, trim_malloc
from .metrics import Registry
from .remotewrite.forwarder import remote_write_context
from .rules import RuleError
from .sessions import SESSIONS, Sessions, ensure_admin
from .store import Store

log = logging.getLogger("edgewatch.aggregator")
STORE = web.AppKey("store", Store)


async def _maintenance(app: web.Application, config: AggregatorConfig, wall: Callable[[], float]) -> None:
    interval = float(config["storage.compact_interval"])
    retention_every = float(config["storage.retention_interval"])
    last_retention = 0.0
    store = app[STORE]
    while True:
        await asyncio.sleep(interval)
        now = wall()
        due = now - last_retention >= retention_every
        try:
            report = await store.maintain(int(now * 1000), config.retention if due else None)
        except Exception:
            log.exception("maintenance failed; retrying at the next interval")
            continue
        if due:
            last_retention = now
        if report.compacted_windows or report.deleted:
            trim_malloc()  # the pass allocated and freed a lot at once: give the pages back
            log.info(
                "maintenance windows=%d settling=%d rows=%d merged=%d deleted=%d vacuumed=%d",
                report.compacted_windows,
                report.settling_windows,
                report.compacted_rows,
                report.merged_rows,
                report.deleted,
                report.vacuumed_pages,
            )


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Errors as a JSON body, also for aiohttp's own 404 / 405 / 413 and for bugs (500)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: "there is no such endpoint; see docs/api.md",
            405: f"{request.method} is not allowed here; see docs/api.md",
            413: "the request body is too large",
        }.get(exc.status, exc.reason)
        return json_response({"error": message}, status=exc.status)
    except (RequestPayloadError, HttpProcessingError):  # aiohttp could not read the body (bad chunks)
        message = "the request body cannot be read (broken chunks or Content-Encoding); send it again"
        response = json_response({"error": message}, status=400)
        response.force_close()  # the rest of the body cannot be read either: no keep-alive
        return response
    except ConnectionResetError:  # the client went away mid-request: nobody is left to answer
        log.info("client closed the connection mid-request path=%s peer=%s", request.path, request.remote)
        response = json_response({"error": "the connection was lost before the request arrived"}, status=400)
        response.force_close()
        return response
    except Exception:
        log.exception("handler failed path=%s", request.path)
        return json_response({"error": "the aggregator hit an internal error; see its log"}, status=500)


def make_app(
    config: AggregatorConfig, *, wall: Callable[[], float] = time.time, maintenance: bool = True
) -> web.Application:
    app = web.Application(
        client_max_size=int(config["ingest.max_frame_bytes"]) + 1024,
        middlewares=[static.security_headers, json_errors],
    )
    registry = Registry()

    async def storage(app: web.Application) -> AsyncIterator[None]:
        data_dir = config.data_dir
        store = Store(
            data_dir,
            synchronous=config["storage.synchronous"],
            commit_delay=float(config["storage.commit_delay"]),
            max_queue=int(config["storage.queue_frames"]),
        )
        key = keys.load_or_create(data_dir)
        app[STORE] = store
        app[ingest.INGEST] = ingest.Ingest(
            store=store,
            registry=registry,
            max_frame_bytes=int(config["ingest.max_frame_bytes"]),
            max_inflight=int(config["ingest.max_inflight"]),
            max_future_ms=int(config["ingest.max_future"] * 1000),
            retention_raw_ms=int(config.retention["raw"] * 1000),
            public_key=keys.public_b64(key),
            wall=wall,
        )
        app[SESSIONS] = Sessions(
            store.write,
            store.readers.run,
            float(config["ui.session_idle"]),
            float(config["ui.session_max"]),
            wall,
        )
        given = os.environ.get("EDGEWATCH_ADMIN_PASSWORD") or None
        now = int(wall() * 1000)
        if (made := await store.write(lambda conn: ensure_admin(conn, given, now))) is not None:
            shown = "from EDGEWATCH_ADMIN_PASSWORD" if given else made
            log.warning("first start: created the user admin, password %s (shown once)", shown)
        live.start_hub(app, registry)
        registry.gauge(
            "edgewatch_storage_bytes",
            "Bytes of the database file and its write-ahead log.",
            lambda: {(("file", k),): float(v) for k, v in store.storage_bytes().items()},
        )
        registry.gauge(
            "edgewatch_storage_queue_frames",
            "Writes waiting for the writer.",
            lambda: {(): store.writer.backlog},
        )
        registry.gauge(
            "edgewatch_storage_commits_total",
            "Transactions committed.",
            lambda: {(): float(store.writer.commits)},
        )
        registry.gauge(
            "edgewatch_storage_commit_seconds_total",
            "Time spent writing and committing.",
            lambda: {(): store.writer.commit_seconds},
        )
        log.info("storage open path=%s", store.path)
        yield
        app[ingest.INGEST].decoder.shutdown(wait=True)
        store.close()
        log.info("storage closed")

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(live.status_loop(app))]
        if maintenance:
            tasks.append(asyncio.create_task(_maintenance(app, config, wall)))
        yield
        for hub_client in list(app[live.HUB].clients):
            await hub_client.ws.close(code=1001, message=b"the aggregator stops")
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(storage)
    app.cleanup_ctx.append(remote_write_context(config.remote_write, config.data_dir, registry, wall))
    app.cleanup_ctx.append(federate.federation_context(float(config["federate.max_age"]), registry, wall))
    app.cleanup_ctx.append(alerting_context(config, registry, wall))
    app.cleanup_ctx.append(commandapi.commands_context(config.data_dir, wall))
    app.on_shutdown.append(commandapi.on_shutdown)
    app.cleanup_ctx.append(background)
    app[api.API] = api.Api(
        retention_s=config.retention,
        down_after=int(config["hosts.down_after"]),
        metrics_public=bool(config["metrics.public"]),
        wall=wall,
        origin=config.public_url,
    )
    app[DOWNLOADS] = Downloads(config.dist_dir, share_dir())
    add_routes(app)
    return app


ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/api/v1/push", ingest.push),
    ("POST", "/api/v1/enroll", ingest.enroll),
    ("GET", "/api/v1/hosts", api.hosts),
    ("GET", "/api/v1/hosts/{host}", api.host),
    ("GET", "/api/v1/hosts/{host}/series", api.host_series),
    ("GET", "/api/v1/hosts/{host}/events", api.events),
    ("GET", "/api/v1/query", api.range_),
    ("GET", "/api/v1/summary", api.summary_),
    ("GET", "/api/v1/patterns", api.patterns_),
    ("GET", "/api/v1/export", api.export),
    ("GET", "/api/v1/alerts", alertapi.alerts),
    ("GET", "/api/v1/alerts/history", alertapi.history),
    ("GET", "/api/v1/alerts/{fingerprint}", alertapi.alert),
    ("POST", "/api/v1/alerts/{fingerprint}/ack", alertapi.ack),
    ("GET", "/api/v1/rules", alertapi.rules),
    ("POST", "/api/v1/rules/reload", alertapi.reload),
    ("GET", "/api/v1/silences", notifyapi.silences),
    ("POST", "/api/v1/silences", notifyapi.add_silence),
    ("DELETE", "/api/v1/silences/{silence}", notifyapi.expire_silence),
    ("GET", "/api/v1/push/key", notifyapi.push_key),
    ("POST", "/api/v1/push/subscriptions", notifyapi.subscribe),
    ("DELETE", "/api/v1/push/subscriptions", notifyapi.unsubscribe),
    ("GET", "/api/v1/channels", notifyapi.channels),
    ("POST", "/api/v1/channels/{channel}/test", notifyapi.test_channel),
    ("POST", "/api/v1/login", webapi.login),
    ("POST", "/api/v1/logout", webapi.logout),
    ("GET", "/api/v1/me", webapi.me),
    ("POST", "/api/v1/me/password", webapi.change_password),
    ("GET", "/api/v1/users", webapi.users),
    ("POST", "/api/v1/users", webapi.add_user),
    ("DELETE", "/api/v1/users/{name}", webapi.delete_user),
    ("GET", "/api/v1/tokens", webapi.tokens),
    ("POST", "/api/v1/tokens", webapi.add_token),
    ("DELETE", "/api/v1/tokens/{id}", webapi.revoke_token),
    ("GET", "/api/v1/agents", webapi.agents),
    ("DELETE", "/api/v1/agents/{name}", webapi.revoke_agent),
    ("POST", "/api/v1/enrollments", webapi.add_enrollment),
    ("POST", "/api/v1/rules/{name}/enable", webapi.switch_rule),
    ("POST", "/api/v1/rules/{name}/disable", webapi.switch_rule),
    ("GET", "/api/v1/live", live.live),
    ("POST", "/api/v1/commands", commandapi.issue),
    ("GET", "/api/v1/commands", commandapi.commands),
    ("GET", "/api/v1/commands/{id}", commandapi.command),
    ("GET", "/api/v1/agent/commands", commandapi.agent_commands),
    ("POST", "/api/v1/agent/commands/{id}/result", commandapi.agent_result),
    ("GET", "/metrics", api.metrics),
    ("GET", "/federate", federate.federate),
    ("GET", "/healthz", api.healthz),
    ("GET", "/install.sh", install_script),
    ("GET", "/dist/{file}", dist_wheel),
    ("GET", "/", static.index),
    ("GET", "/{path:(?!api/).+}", static.files),
)


def add_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += " " + self.formatException(record.exc_info).replace("\n", " | ")
        if self.as_json:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            return json.dumps(
                {
                    "ts": f"{stamp}.{int(record.created % 1 * 1000):03d}Z",
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "msg": message,
                }
            )
        return f"level={record.levelname.lower()} logger={record.name} {message}"


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def serve(config: AggregatorConfig, *, ready: Callable[[str], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM; then finish in-flight requests and commits."""
    app = make_app(config)
    # Request bodies are read as sent: no client compresses them, and aiohttp would inflate a gzip
    # bomb on the event loop (1 MB stalls every request for seconds), even after a 401 or 413.
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=30, auto_decompress=False
    )
    await runner.setup()
    host, port = config.listen()
    context = None
    if config["tls_cert"]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config["tls_cert"], config["tls_key"])
    site = web.TCPSite(runner, host, port, ssl_context=context, backlog=1024)
    await site.start()
    # The catalogs loaded at start are long-lived: keep the collector from walking them again and
    # again (each full pass over a large fleet's series cost ~80 ms of every query it interrupted).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    url = f"{'https' if context else 'http'}://{host}:{port}"
    log.info("serving url=%s", url)
    if ready is not None:
        ready(url)
    systemd = SdNotifier()
    systemd.ready(f"serving {url}")
    watchdog = asyncio.create_task(_watchdog(app, systemd)) if systemd.watchdog_interval else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def reload_rules() -> None:
        try:
            count, retired = app[alertapi.ALERTING].reload(int(time.time() * 1000))
        except RuleError as exc:
            log.error("rules not reloaded: %s; the running rules stay in force", exc)
        else:
            log.info("rules reloaded rules=%d retired=%d", count, retired)

    loop.add_signal_handler(signal.SIGHUP, reload_rules)
    await stop.wait()
    log.info("stopping")
    systemd.stopping()
    if watchdog is not None:
        watchdog.cancel()
    await runner.cleanup()


async def _watchdog(app: web.Application, systemd: SdNotifier) -> None:
    """Tell systemd we are alive (``WatchdogSec=``) while the event loop runs and the writer works."""
    every = (systemd.watchdog_interval or 30.0) / 3
    while True:
        await asyncio.sleep(every)
        if app[ingest.INGEST].store.writer.failed is None:
            systemd.watchdog()
        else:
            log.error("the writer failed: no watchdog ping, so systemd restarts the aggregator")


def run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio works too
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="edgewatch aggregator",
        description="Run the aggregator: ingest, storage, query API (settings: docs/aggregator.md).",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help=f"TOML config file (default {DEFAULT_PATH} if present)"
    )
    parser.add_argument("--data-dir", help="where the database and keys live (data_dir)")
    parser.add_argument("--listen", help="HOST:PORT to serve on (listen)")
    parser.add_argument("--tls-cert", help="PEM certificate for HTTPS (tls_cert)")
    parser.add_argument("--tls-key", help="PEM key for HTTPS (tls_key)")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration, print it and exit"
    )
    args = parser.parse_args(argv)
    try:
        config = load(
            args.config if args.config is not None else DEFAULT_PATH,
            overrides={
                "data_dir": args.data_dir,
                "listen": args.listen,
                "tls_cert": args.tls_cert,
                "tls_key": args.tls_key,
            },
        )
    except ConfigError as exc:
        print(f"edgewatch aggregator: {exc}", file=sys.stderr)
        return 2
    try:
        rules = alertapi.Alerting.load_rules_file(Path(config["alerts.rules_file"]))
    except RuleError as exc:
        print(f"edgewatch aggregator: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(json.dumps({**config.values, "rules": len(rules)}, indent=2, sort_keys=True))
        return 0
    setup_logging(config["log_level"], config["log_format"])
    limit_malloc_arenas()
    try:
        run(serve(config))
    except ConfigError as exc:  # a [[channel]] or [[route]] table, found when the notifier starts
        print(f"edgewatch aggregator: {exc}", file=sys.stderr)
        return 2
    except DataDirBusy as exc:
        print(
            f"edgewatch aggregator: {exc.data_dir} is in use by {exc.holder}; stop it, or give this "
            "aggregator another --data-dir",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(
            f"edgewatch aggregator: cannot serve on {config['listen']}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0

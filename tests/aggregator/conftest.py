"""Helpers for the aggregator's tests: an app on aiohttp's test server, frames, tokens."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from edgewatch.aggregator import accounts
from edgewatch.aggregator.api import API
from edgewatch.aggregator.config import load
from edgewatch.aggregator.ingest import INGEST, Ingest
from edgewatch.aggregator.server import make_app
from edgewatch.aggregator.store import Store
from edgewatch.protocol import Batch, Kind, Series, encode

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z, a window boundary
SERIES = (
    Series("node_load1", precision=2),
    Series("edgewatch_cpu_usage_percent", {"cpu": "all"}, precision=1),
    Series("node_network_receive_bytes_total", {"device": "eth0"}, Kind.COUNTER),
)


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def batch(
    agent: str,
    seq: int,
    timestamps: Sequence[int],
    *,
    boot: int = 1,
    series: Sequence[Series] = SERIES,
    value: Callable[[int, int], float | int | None] | None = None,
) -> Batch:
    """A batch whose value of series ``k`` at ``ts`` is ``value(k, ts)`` (default: a simple function)."""

    def default(k: int, ts: int) -> float | int | None:
        step = (ts - T0) // 10_000
        return [round(0.5 + (step % 7) / 10, 2), round(20 + step % 50, 1), 1000 * step][k % 3]

    f = value or default
    columns = [[f(k, ts) for ts in timestamps] for k in range(len(series))]
    return Batch(
        agent, boot, seq, list(timestamps), list(series), columns, {"hostname": agent, "os": "Linux"}
    )


@dataclass
class Harness:
    client: TestClient[Any, Any]
    clock: Clock
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def ingest(self) -> Ingest:
        return self.client.app[INGEST]  # type: ignore[index]

    @property
    def store(self) -> Store:
        return self.ingest.store

    @property
    def retention(self) -> dict[str, float]:
        return self.client.app[API].retention_s  # type: ignore[index]

    async def add_agent(self, name: str) -> str:
        now = self.clock.ms
        token = await self.store.write(lambda conn: accounts.add_host(conn, name, now))
        self.tokens[name] = token
        return token

    async def api_token(self, role: str = "viewer") -> str:
        now = self.clock.ms
        return await self.store.write(lambda conn: accounts.add_api_token(conn, role, "test", now))

    async def push(
        self, b: Batch, *, ref: Batch | None = None, token: str | None = None, body: bytes | None = None
    ) -> tuple[int, Any]:
        data = encode(b, ref) if body is None else body
        headers = {"Authorization": f"Bearer {token or self.tokens[b.agent_id]}"}
        async with self.client.post("/api/v1/push", data=data, headers=headers) as r:
            return r.status, await r.json()

    async def get(self, path: str, token: str, **params: Any) -> tuple[int, Any]:
        async with self.client.get(path, params=params, headers={"Authorization": f"Bearer {token}"}) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.text()

    def sql(self, statement: str, *args: Any) -> list[Any]:
        conn = sqlite3.connect(self.data_dir / "edgewatch.db")
        try:
            return conn.execute(statement, args).fetchall()
        finally:
            conn.close()


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Path, now_ms: int = T0 + 3_600_000, toml: str = "", **settings: Any
) -> AsyncIterator[Harness]:
    """The app on a test server; ``toml``: a config file's text (for its tables), ``settings``: keys
    with ``__`` for dots."""
    clock = Clock(now_ms)
    overrides = {"data_dir": str(tmp_path / "data"), **{k.replace("__", "."): v for k, v in settings.items()}}
    path = None
    if toml:
        path = tmp_path / "aggregator.toml"
        path.write_text(toml)
    config = load(path, overrides=overrides, environ={})
    app = make_app(config, wall=clock, maintenance=False)
    async with TestClient(TestServer(app)) as client:
        yield Harness(client, clock, tmp_path / "data")

"""A small aggregator stand-in for the agent's tests: it speaks DESIGN.md's push contract for real.

It decodes every frame with ``edgewatch.protocol``, keeps the reference of each agent and boot (the
newest acknowledged frame, through ``next_reference``), answers ``409`` when a delta's reference is
missing, stores each ``(agent, boot, seq)`` once (a repeat answers 200 and stores nothing), and
writes what it stored as JSON lines. Faults are switched on through ``POST /control``:
``{"status": 500, "retry_after": 2}``, ``{"garbage": true}``, ``{"delay": 5}``, ``{"forget": true}``
(drop all references), or ``{}`` for normal service. ``POST /api/v1/enroll`` hands out an identity
for the configured enrollment token.

Run: ``python tests/receiver.py --port P --token T --log FILE [--enroll-token E]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from edgewatch.protocol import Batch, ProtocolError, decode, next_reference, reference_of

STATE = web.AppKey("state", "Receiver")


class Receiver:
    def __init__(self, token: str, log: Path | None, enroll_token: str = "") -> None:
        self.token = token
        self.enroll_token = enroll_token
        self.log = log
        self.refs: dict[tuple[str, int], Batch] = {}  # (agent, boot) -> newest acknowledged
        self.seen: set[tuple[str, int, int]] = set()
        self.stored: list[dict[str, Any]] = []
        self.fault: dict[str, Any] = {}
        self.public_key = base64.b64encode(os.urandom(32)).decode()

    def record(self, batch: Batch, kind: str, size: int) -> None:
        entry = {
            "agent": batch.agent_id,
            "boot": batch.boot_id,
            "seq": batch.seq,
            "kind": kind,
            "bytes": size,
            "timestamps": list(batch.timestamps),
            "samples": batch.sample_count,
            "series": len(batch.series),
            "values": {
                s.name + json.dumps(dict(s.labels), sort_keys=True): [
                    v if not isinstance(v, float) or not math.isnan(v) else "NaN" for v in col
                ]
                for s, col in zip(batch.series, batch.values)
                if s.name.startswith("edgewatch_agent_") or s.name == "node_load1"
            },
            "events": [
                {"ts": e.ts, "type": e.type, **{k: str(v) for k, v in e.attrs.items()}} for e in batch.events
            ],
            "host": dict(batch.host),
        }
        self.stored.append(entry)
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(json.dumps(entry) + "\n")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def push(request: web.Request) -> web.StreamResponse:
    r = request.app[STATE]
    fault = r.fault
    if fault.get("delay"):
        await asyncio.sleep(float(fault["delay"]))
    if fault.get("garbage"):
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        await response.write(b"\x00\xff not json, not a frame \x00")
        return response
    if fault.get("status"):
        headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
        if "location" in fault:
            headers["Location"] = str(fault["location"])
        return web.json_response({"error": "injected fault"}, status=int(fault["status"]), headers=headers)
    if request.headers.get("Authorization") != f"Bearer {r.token}":
        return _error(401, "the agent token is missing or wrong; enroll the agent again")
    data = await request.read()
    try:
        named = reference_of(data)
        ref = None
        if named is not None:
            # the delta names its reference; look it up among this boot's references
            for (_, boot), candidate in r.refs.items():
                if boot == named.boot_id and candidate.seq == named.seq:
                    ref = candidate
                    break
        batch = decode(data, ref)
    except ProtocolError as exc:
        if exc.needs_reference:
            return _error(409, str(exc))
        return _error(400, str(exc))
    key = (batch.agent_id, batch.boot_id, batch.seq)
    if key not in r.seen:
        r.seen.add(key)
        r.record(batch, "delta" if named is not None else "key", len(data))
    elif r.log is not None:  # stored once; the repeat is only noted, for the tests to count
        with r.log.open("a") as f:
            f.write(json.dumps({"duplicate": True, "agent": key[0], "boot": key[1], "seq": key[2]}) + "\n")
    current = r.refs.get(key[:2])
    if current is None or current.seq < batch.seq:
        r.refs[key[:2]] = next_reference(ref, batch)
    return web.json_response({"ack": batch.seq, "commands": []})


async def enroll(request: web.Request) -> web.Response:
    r = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body is not JSON")
    if not r.enroll_token or body.get("token") != r.enroll_token:
        return _error(403, "the enrollment token is unknown or used; ask an admin for a new one")
    r.enroll_token = ""  # one-time
    name = body.get("name") or body.get("hostname") or "agent"
    return web.json_response({"agent_id": name, "token": r.token, "public_key": r.public_key})


async def control(request: web.Request) -> web.Response:
    r = request.app[STATE]
    body = await request.json()
    if body.get("forget"):
        r.refs.clear()
        body = {}
    r.fault = body
    return web.json_response({"fault": r.fault})


async def received(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stored)


def make_app(receiver: Receiver) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[STATE] = receiver
    app.router.add_post("/api/v1/push", push)
    app.router.add_post("/api/v1/enroll", enroll)
    app.router.add_post("/control", control)
    app.router.add_get("/received", received)
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--log", type=Path)
    p.add_argument("--enroll-token", default="")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve https with this certificate")
    args = p.parse_args()
    context = None
    if args.tls:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)
    web.run_app(
        make_app(Receiver(args.token, args.log, args.enroll_token)),
        host="127.0.0.1",
        port=args.port,
        ssl_context=context,
        print=lambda *_: print("ready", flush=True),
    )


if __name__ == "__main__":
    main()

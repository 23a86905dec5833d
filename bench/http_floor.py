"""The HTTP floor of the ingest benchmark: an aiohttp server on uvloop that answers every push at once.

``http_floor.py PORT`` serves ``POST /api/v1/push`` on 127.0.0.1: it reads the body and answers
``{"ack": null, "commands": []}`` as JSON, with no token check, no decoding and no storage, on the
same stack the aggregator runs on (aiohttp, uvloop, orjson). ``GET /healthz`` answers ``ok``. The
ingest benchmark pushes the same frames to it with the same load process, so its CPU per push is
what the HTTP stack alone costs: the part of the aggregator's CPU that no change to edgewatch's own
code can take away.
"""

from __future__ import annotations

import sys

import orjson
import uvloop
from aiohttp import web

ANSWER = orjson.dumps({"ack": None, "commands": []})


async def push(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main(port: int) -> None:
    app = web.Application()
    app.router.add_post("/api/v1/push", push)
    app.router.add_get("/healthz", healthz)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))

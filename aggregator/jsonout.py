"""JSON answers of the API, encoded with orjson.

The largest answers (``/api/v1/query``, ``/api/v1/hosts``) run to megabytes of floats; the
standard library's encoder spent about three quarters of the CPU of such a request, and held the
event loop meanwhile. orjson writes the same JSON an order of magnitude faster. Differences that matter: a
NaN or an infinity becomes ``null`` (the standard encoder wrote ``NaN``, which no browser parses),
and non-string dict keys are written as strings, as the standard encoder does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(data: Any) -> bytes:
    """``data`` as compact UTF-8 JSON."""
    return orjson.dumps(data, option=OPTIONS)


def json_response(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A ``application/json`` answer of ``data`` (what ``web.json_response`` makes, faster)."""
    return web.Response(body=dumps(data), status=status, headers=headers, content_type="application/json")

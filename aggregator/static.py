"""The web UI's files (``web/``, served at ``/``) and the security headers of every answer.

Only the UI's own kinds of file are served (HTML, JavaScript, CSS, the manifest, images), never the
npm or Python files next to them, and never anything outside ``web/``. Every answer carries a strict
Content-Security-Policy (scripts, styles, images and connections from this origin only, no framing),
``nosniff`` and a same-origin referrer policy; files are revalidated on each load (ETag and
Last-Modified, answered 304 when unchanged). Files are kept in memory (re-read when their size or
modification time changes): a cold page load asks for some twenty of them at once, and answering
each from a file in the thread pool queued them behind the ingest's work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from aiohttp import web

import edgewatch.web

from .ingest import error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WEB_DIR = Path(edgewatch.web.__file__).resolve().parent
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".webmanifest": "application/manifest+json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
HIDDEN = ("node_modules", "package.json", "package-lock.json")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    for key, value in HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def _file(path: str, root: Path = WEB_DIR) -> Path | None:
    """The file of ``path`` under ``root`` when it is one the UI serves, else None."""
    parts = [p for p in path.split("/") if p]
    if not parts or any(p.startswith(".") or p in HIDDEN for p in parts):
        return None
    target = (root / Path(*parts)).resolve()
    if root not in target.parents or target.suffix not in TYPES or not target.is_file():
        return None
    return target


async def index(request: web.Request) -> web.StreamResponse:
    return _serve(request, WEB_DIR / "index.html")


async def files(request: web.Request) -> web.StreamResponse:
    """A file of the UI (``/app.js``, ``/vendor/uPlot.esm.js``, ``/sw.js`` ...)."""
    target = _file(request.match_info["path"])
    if target is None:
        return error(404, "there is no such page or file; see docs/api.md for the API")
    return _serve(request, target)


@dataclass(frozen=True)
class _Cached:
    mtime_ns: int
    size: int
    body: bytes
    etag: str
    last_modified: str


_CACHE: dict[Path, _Cached] = {}


def _load(target: Path) -> _Cached | None:
    """The file's bytes and validators, from memory while its size and modification time hold."""
    try:
        st = target.stat()
        cached = _CACHE.get(target)
        if cached is None or (cached.mtime_ns, cached.size) != (st.st_mtime_ns, st.st_size):
            body = target.read_bytes()
            etag = f'"{st.st_mtime_ns:x}-{len(body):x}"'
            cached = _Cached(st.st_mtime_ns, st.st_size, body, etag, formatdate(st.st_mtime, usegmt=True))
            _CACHE[target] = cached
    except OSError:
        _CACHE.pop(target, None)
        return None
    return cached


def _fresh(request: web.Request, cached: _Cached) -> bool:
    """True when the browser's copy is this one (If-None-Match, else If-Modified-Since)."""
    tags = request.headers.get("If-None-Match")
    if tags is not None:
        return cached.etag in (t.strip().removeprefix("W/") for t in tags.split(","))
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        return parsedate_to_datetime(since) >= parsedate_to_datetime(cached.last_modified)
    except (TypeError, ValueError):
        return False


def _serve(request: web.Request, target: Path) -> web.StreamResponse:
    cached = _load(target)
    if cached is None:
        return error(404, "the web UI is not installed here (web/ has no index.html); run make setup")
    headers = {"Cache-Control": "no-cache", "ETag": cached.etag, "Last-Modified": cached.last_modified}
    if target.name == "sw.js":
        headers["Service-Worker-Allowed"] = "/"
    if _fresh(request, cached):
        return web.Response(status=304, headers=headers)
    kind = TYPES[target.suffix]
    charset = None if kind.startswith("image/") else "utf-8"
    return web.Response(body=cached.body, headers=headers, content_type=kind, charset=charset)

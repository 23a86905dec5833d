"""The web UI's files (``web/``, served at ``/``) and the security headers of every answer.

Only the UI's own kinds of file are served (HTML, JavaScript, CSS, the manifest, images), never the
npm or Python files next to them, and never anything outside ``web/``. Every answer carries a strict
Content-Security-Policy (scripts, styles, images and connections from this origin only, no framing),
``nosniff`` and a same-origin referrer policy; files are revalidated on each load (Last-Modified).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
    return _serve(WEB_DIR / "index.html")


async def files(request: web.Request) -> web.StreamResponse:
    """A file of the UI (``/app.js``, ``/vendor/uPlot.esm.js``, ``/sw.js`` ...)."""
    target = _file(request.match_info["path"])
    if target is None:
        return error(404, "there is no such page or file; see docs/api.md for the API")
    return _serve(target)


def _serve(target: Path) -> web.StreamResponse:
    if not target.is_file():
        return error(404, "the web UI is not installed here (web/ has no index.html); run make setup")
    response = web.FileResponse(target, headers={"Cache-Control": "no-cache"})
    response.content_type = TYPES[target.suffix]
    if target.name == "sw.js":
        response.headers["Service-Worker-Allowed"] = "/"
    return response

"""The web UI's files (``web/``, served at ``/``) and the security headers of every answer.

Only the UI's own kinds of file are served (HTML, JavaScript, CSS, the manifest, images), never the
npm or Python files next to them, and never anything outside ``web/``. Every answer carries a strict
Content-Security-Policy (scripts, styles, images and connections from this origin only, no framing),
``nosniff`` and a same-origin referrer policy; files are revalidated on each load (ETag and
Last-Modified, answered 304 when unchanged). Files are kept in memory (re-read when their size or
modification time changes): a cold page load asks for some twenty of them at once, and answering
each from a file in the thread pool queued them behind the ingest's work.

The page itself (``/`` and ``/index.html``) comes with ``early.js`` inlined, allowed by its hash in
the page's policy: the script starts the first page's API requests, and inline it runs as soon as
the browser reads it, not after a round trip of its own while the stylesheets and modules take the
browser's six connections.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
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
    return _serve_cached(request, _index_page(WEB_DIR), ".html", "index.html")


async def files(request: web.Request) -> web.StreamResponse:
    """A file of the UI (``/app.js``, ``/vendor/uPlot.esm.js``, ``/sw.js`` ...)."""
    target = _file(request.match_info["path"])
    if target is None:
        return error(404, "there is no such page or file; see docs/api.md for the API")
    if target == WEB_DIR / "index.html":  # the page as ``/`` serves it
        return await index(request)
    return _serve(request, target)


@dataclass(frozen=True)
class _Cached:
    mtime_ns: int
    size: int
    body: bytes
    etag: str
    last_modified: str
    csp: str = CSP


_CACHE: dict[Path, _Cached] = {}
EARLY_TAG = b'<script src="/early.js"></script>'
_PAGES: dict[tuple[str, str], _Cached] = {}  # (index.html's ETag, early.js's) -> the page served


def inline_script(page: bytes, tag: bytes, script: bytes) -> tuple[bytes, str] | None:
    """``page`` with ``tag`` replaced by ``script`` inline, and the CSP source that allows it
    (``'sha256-...'``); None when the page has no such tag or the script cannot be inlined."""
    if tag not in page or b"</script" in script.lower():
        return None
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    return page.replace(tag, b"<script>" + script + b"</script>", 1), f"'sha256-{digest}'"


def _index_page(root: Path) -> _Cached | None:
    """``index.html`` as served: with ``early.js`` inlined and allowed by its hash, when both are
    there; the plain file otherwise."""
    page, early = _load(root / "index.html"), _load(root / "early.js")
    if page is None or early is None:
        return page
    key = (page.etag, early.etag)
    if (built := _PAGES.get(key)) is None:
        inlined = inline_script(page.body, EARLY_TAG, early.body)
        if inlined is None:
            return page
        body, source = inlined
        etag = '"' + page.etag.strip('"') + "." + early.etag.strip('"') + '"'
        _PAGES.clear()  # one page at a time: an edited file replaces the old one
        built = _PAGES[key] = replace(
            page,
            body=body,
            etag=etag,
            last_modified=max(page, early, key=lambda c: c.mtime_ns).last_modified,
            csp=CSP.replace("script-src 'self'", f"script-src 'self' {source}"),
        )
    return built


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
    return _serve_cached(request, _load(target), target.suffix, target.name)


def _serve_cached(request: web.Request, cached: _Cached | None, suffix: str, name: str) -> web.StreamResponse:
    if cached is None:
        return error(404, "the web UI is not installed here (web/ has no index.html); run make setup")
    headers = {
        "Cache-Control": "no-cache",
        "ETag": cached.etag,
        "Last-Modified": cached.last_modified,
        "Content-Security-Policy": cached.csp,
    }
    if name == "sw.js":
        headers["Service-Worker-Allowed"] = "/"
    if _fresh(request, cached):
        return web.Response(status=304, headers=headers)
    kind = TYPES[suffix]
    charset = None if kind.startswith("image/") else "utf-8"
    return web.Response(body=cached.body, headers=headers, content_type=kind, charset=charset)

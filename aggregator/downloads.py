"""What the aggregator serves to install agents: ``GET /install.sh`` and ``GET /dist/FILE.whl``.

The script is ``packaging/install-agent.sh`` (from a source checkout, else from the installed
package's ``share/edgewatch``). Served, its two ``SERVED_*`` lines name this aggregator's version and
the wheel of that version in ``dist_dir`` (put there from ``make dist``), so the script installs the
same release as the aggregator: from this aggregator when it has the wheel, else from the package
index. Both are public: the secret is the enrollment token on the install line.
"""

from __future__ import annotations

import asyncio
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from edgewatch.protocol.version import __version__

from .ingest import error

SCRIPT = "install-agent.sh"
WHEEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\.whl")


def share_dir() -> Path | None:
    """``packaging/`` of a source checkout, else ``share/edgewatch`` of the installed package."""
    checkout = Path(__file__).resolve().parents[1] / "packaging"
    installed = Path(sysconfig.get_path("data")) / "share" / "edgewatch"
    for where in (checkout, installed):
        if (where / SCRIPT).is_file():
            return where
    return None


@dataclass(frozen=True)
class Downloads:
    dist_dir: Path
    share: Path | None
    version: str = __version__

    def wheel(self) -> str:
        """The newest wheel of this version in ``dist_dir``, or ``""``."""
        try:
            found = [p for p in self.dist_dir.glob(f"edgewatch-{self.version}-*.whl") if p.is_file()]
        except OSError:
            return ""
        found.sort(key=lambda p: p.stat().st_mtime)
        return found[-1].name if found and WHEEL_NAME.fullmatch(found[-1].name) else ""

    def script(self) -> str | None:
        """The install script with its ``SERVED_*`` lines filled in; None when it is not installed."""
        if self.share is None:
            return None
        text = (self.share / SCRIPT).read_text()
        text = re.sub(r"^SERVED_VERSION=''$", f"SERVED_VERSION='{self.version}'", text, count=1, flags=re.M)
        return re.sub(r"^SERVED_WHEEL=''$", f"SERVED_WHEEL='{self.wheel()}'", text, count=1, flags=re.M)


DOWNLOADS = web.AppKey("downloads", Downloads)


async def install_script(request: web.Request) -> web.StreamResponse:
    """The agent install script (POSIX sh) for ``curl -fsSL URL/install.sh | sudo sh -s -- ...``."""
    text = await asyncio.to_thread(request.app[DOWNLOADS].script)
    if text is None:
        return error(
            404, "the agent install script is not installed with this aggregator; reinstall edgewatch"
        )
    return web.Response(text=text, content_type="text/plain", headers={"Cache-Control": "no-cache"})


async def dist_wheel(request: web.Request) -> web.StreamResponse:
    """A wheel from ``dist_dir``, for the install script's ``pip install``."""
    name = request.match_info["file"]
    path = request.app[DOWNLOADS].dist_dir / name
    if not WHEEL_NAME.fullmatch(name) or not await asyncio.to_thread(path.is_file):
        return error(404, f"there is no wheel {name!r} here; put one from `make dist` into dist_dir")
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

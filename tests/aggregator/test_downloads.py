"""``GET /install.sh`` and ``GET /dist/FILE.whl``: the agent install script with this aggregator's
release filled in, and the wheels of ``dist_dir``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from edgewatch.protocol.version import __version__

from .conftest import harness

SCRIPT = Path(__file__).resolve().parents[2] / "packaging" / "install-agent.sh"


def test_the_install_script_names_this_release_and_its_newest_wheel(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    old = dist / f"edgewatch-{__version__}-py3-none-any.whl"
    old.write_bytes(b"PK old")
    os.utime(old, (1_700_000_000, 1_700_000_000))
    new = dist / f"edgewatch-{__version__}.post1-py3-none-any.whl"  # another release: never served
    new.write_bytes(b"PK other")
    build = dist / f"edgewatch-{__version__}-1-py3-none-any.whl"  # a rebuild of this release: newest
    build.write_bytes(b"PK newest")

    async def scenario() -> None:
        async with harness(tmp_path, dist_dir=str(dist)) as h:
            async with h.client.get("/install.sh") as r:
                assert r.status == 200
                assert r.content_type == "text/plain"
                text = await r.text()
            assert f"\nSERVED_VERSION='{__version__}'\n" in text
            assert f"\nSERVED_WHEEL='{build.name}'\n" in text
            source = SCRIPT.read_text()
            assert text.replace(f"'{__version__}'", "''").replace(f"'{build.name}'", "''") == source
            async with h.client.get(f"/dist/{build.name}") as r:
                assert (r.status, await r.read()) == (200, b"PK newest")
            for path in ("/dist/nope.whl", "/dist/..%2Faggregator.toml", "/dist/.hidden.whl", "/dist/x.txt"):
                async with h.client.get(path) as r:
                    assert r.status == 404, path
                    assert "put one from `make dist` into dist_dir" in (await r.json())["error"]

    asyncio.run(scenario())


def test_without_a_wheel_the_script_installs_this_release_from_the_index(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:  # dist_dir defaults to DATA_DIR/dist, which is empty
            async with h.client.get("/install.sh") as r:
                text = await r.text()
            assert f"\nSERVED_VERSION='{__version__}'\nSERVED_WHEEL=''\n" in text

    asyncio.run(scenario())

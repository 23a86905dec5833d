"""The malloc arena cap the aggregator sets at start (aggregator/memory.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from edgewatch.aggregator import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_arena_cap_is_accepted_by_glibc() -> None:
    # in a child process, so the test run's own allocator is left as it was
    code = (
        "from edgewatch.aggregator.memory import limit_malloc_arenas\n"
        "import sys\n"
        "sys.exit(0 if limit_malloc_arenas(2) else 3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


def test_without_a_c_library_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    assert memory.limit_malloc_arenas(2) is False
    assert memory.trim_malloc() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_pages_are_given_back() -> None:
    code = (
        "from edgewatch.aggregator.memory import trim_malloc\n"
        "import sys\n"
        "blocks = [bytearray(100_000) for _ in range(2000)]  # 200 MB from malloc, then freed\n"
        "del blocks\n"
        "sys.exit(0 if trim_malloc() else 3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0

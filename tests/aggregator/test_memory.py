"""The allocator settings the aggregator uses (aggregator/memory.py): the arena cap and malloc_trim."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from edgewatch.aggregator import memory

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="mallopt and malloc_trim are glibc's"
)


def _child_says_true(statements: str, call: str) -> bool:
    """Whether ``call`` (a function of aggregator/memory.py) returns true after ``statements``, in a
    child process, so the test run's own allocator is left as it was."""
    code = f"from edgewatch.aggregator import memory\n{statements}\nraise SystemExit(0 if {call} else 3)\n"
    return subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


@glibc_only
def test_arena_cap_is_accepted_by_glibc() -> None:
    assert _child_says_true("", "memory.limit_malloc_arenas(2)")


@glibc_only
def test_freed_heap_pages_are_given_back() -> None:
    allocate = "blocks = [bytearray(100_000) for _ in range(2000)]  # 200 MB from malloc\ndel blocks"
    assert _child_says_true(allocate, "memory.trim_malloc()")


def test_without_a_c_library_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    assert memory.limit_malloc_arenas(2) is False
    assert memory.trim_malloc() is False

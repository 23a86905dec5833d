"""Helpers for the system collector tests: golden snapshot folders and readings keyed by series."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from edgewatch.agent.collectors.base import Sample
from edgewatch.protocol import Kind

FIXTURES = Path(__file__).parent / "fixtures"
VM_T0, VM_T1 = FIXTURES / "vm_t0", FIXTURES / "vm_t1"  # this VM, recorded 5.16 s apart
PI = FIXTURES / "edge_pi"  # hand-made Raspberry Pi 4
# the recorded /proc/uptime of each VM snapshot: used as `now`, so rates use the real interval
VM_NOW0, VM_NOW1 = 2996.99, 3002.15


class Reading:
    """One ``collect()`` answer, looked up by name and labels; a series reported twice fails."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = list(samples)
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], int | float] = {}
        for s, v in self.samples:
            assert v is not None, f"{s} has no value"  # the system collectors leave out, never send gaps
            self.values[(s.name, s.labels)] = v
        assert len(self.values) == len(self.samples), "a series is reported twice"
        self.kinds = {s.name: s.kind for s, _ in self.samples}

    def __call__(self, name: str, **labels: str) -> int | float:
        return self.values[(name, tuple(sorted(labels.items())))]

    def has(self, name: str, **labels: str) -> bool:
        return (name, tuple(sorted(labels.items()))) in self.values

    def names(self) -> set[str]:
        return {name for name, _ in self.values}

    def label_values(self, name: str, label: str) -> list[str]:
        return [dict(labels)[label] for n, labels in self.values if n == name]

    def of(self, name: str) -> dict[tuple[tuple[str, str], ...], int | float]:
        return {labels: v for (n, labels), v in self.values.items() if n == name}

    def is_counter(self, name: str) -> bool:
        return self.kinds[name] == Kind.COUNTER


def snapshot_copy(source: Path, target: Path) -> Path:
    """A writable copy of a snapshot folder (symlinks kept) for tests that spoil or change files."""
    shutil.copytree(source, target, symlinks=True)
    return target


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def statvfs_of(
    table: dict[str, os.statvfs_result | OSError], calls: list[str] | None = None
) -> Callable[[str], os.statvfs_result]:
    """A fake ``os.statvfs`` answering from ``table`` (an ``OSError`` value is raised)."""

    def statvfs(path: str) -> os.statvfs_result:
        if calls is not None:
            calls.append(path)
        answer = table[path]
        if isinstance(answer, OSError):
            raise answer
        return answer

    return statvfs


def vfs(frsize: int, blocks: int, bfree: int, bavail: int, files: int, ffree: int) -> os.statvfs_result:
    return os.statvfs_result((4096, frsize, blocks, bfree, bavail, files, ffree, ffree, 0, 255))

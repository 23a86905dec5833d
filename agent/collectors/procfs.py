"""What the system collectors share: the error a malformed kernel file raises, ``/proc/meminfo``,
and the one place a counter's growth is computed (a counter that went backwards was reset).
"""

from __future__ import annotations

from pathlib import Path

from .base import read_text


class ProcFormatError(ValueError):
    """A kernel file is not in the shape the kernel writes: truncated, garbage or an unknown format."""

    def __init__(self, path: Path | str, detail: str) -> None:
        super().__init__(f"cannot parse {path}: {detail}")
        self.path = str(path)


def read_meminfo(path: Path) -> dict[str, int]:
    """``/proc/meminfo`` as ``{field: bytes}`` (``MemTotal:  24683656 kB`` is 24683656 × 1024).

    Fields without a unit (``HugePages_Total: 0``) are counts and are kept as they are.
    """
    out: dict[str, int] = {}
    for line in read_text(path).splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        try:
            if not sep or not 1 <= len(parts) <= 2 or (len(parts) == 2 and parts[1] != "kB"):
                raise ValueError
            value = int(parts[0])
        except ValueError:
            raise ProcFormatError(path, f"line {line!r} is not 'Field: number kB'") from None
        out[key] = value * 1024 if len(parts) == 2 else value
    return out


def counter_delta(previous: int, current: int) -> int | None:
    """How much a counter grew between two readings; ``None`` when it went backwards (a reset).

    A kernel counter goes backwards when the device or driver was re-created or a 32-bit counter
    wrapped; no rate can be computed across that, so the caller skips one reading.
    """
    return current - previous if current >= previous else None

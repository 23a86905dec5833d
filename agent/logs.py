"""Structured logs on stderr (journald keeps them): ``key=value`` text or JSON lines.

A few dozen lines instead of the standard ``logging`` package, which costs the agent about 1 MB of
its 18 MB budget. The API is the part of ``logging.Logger`` the agent uses: ``debug``, ``info``,
``warning``, ``error`` and ``exception``, with printf-style arguments.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class _Config:
    level = LEVELS["info"]
    json = False
    stream: TextIO | None = None  # None: sys.stderr at the time of writing (tests swap it)


def setup(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    _Config.level = LEVELS[level]
    _Config.json = fmt == "json"
    _Config.stream = stream


class Logger:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, level: str, msg: str, args: tuple[Any, ...], exc: str = "") -> None:
        if LEVELS[level] < _Config.level:
            return
        text = msg % args if args else msg
        if _Config.json:
            now = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
            out: dict[str, str] = {"ts": stamp, "level": level, "logger": self.name, "msg": text}
            if exc:
                out["exc"] = exc
            line = json.dumps(out)
        else:
            line = f"level={level} logger={self.name} msg={text}" + (f" exc={json.dumps(exc)}" if exc else "")
        stream = _Config.stream or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not take the agent down

    def debug(self, msg: str, *args: Any) -> None:
        self._emit("debug", msg, args)

    def info(self, msg: str, *args: Any) -> None:
        self._emit("info", msg, args)

    def warning(self, msg: str, *args: Any) -> None:
        self._emit("warning", msg, args)

    def error(self, msg: str, *args: Any) -> None:
        self._emit("error", msg, args)

    def exception(self, msg: str, *args: Any) -> None:
        import traceback

        self._emit("error", msg, args, traceback.format_exc())


def get(name: str) -> Logger:
    return Logger(name)

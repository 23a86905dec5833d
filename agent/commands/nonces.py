"""The nonces of commands this agent accepted, on disk, so that no command runs twice, restarts included.

``commands/nonces`` in the state directory is a small text file, rewritten atomically (write, fsync,
rename, fsync the directory) before ``add`` answers, so a nonce is durable before its command runs.
A nonce is kept until its command expired plus ``max_skew``: after that the clock check refuses a
replay anyway. Each nonce is stored base64url-encoded with its command's expiry, one per line between
a header and a CRC-32 of all that comes before it (a flipped bit in a stored nonce must not pass for
another nonce)::

    edgewatch-nonces 1
    fence 1764547320000
    1764547260000 azNKOS4uLg
    check 9a1e03c4

(No hashing: ``hashlib`` loads OpenSSL, about 4 MB of resident memory.)

A file that does not parse fails closed: it is kept aside as ``nonces.corrupt``, and every command is
refused (``nonce store unreadable``) until every command it could have held has expired, which the
``fence`` line records in the fresh file so that a restart does not shorten the wait.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from edgewatch.agent import logs
from edgewatch.agent.spool import write_atomically

log = logs.get("edgewatch.agent.commands")

FILE = "nonces"
HEADER = "edgewatch-nonces 1"
MAX_ENTRIES = 10_000
MAX_LIFETIME_MS = 60_000  # the longest a command may live (docs/commands.md)
_ENTRY = re.compile(r"(\d{1,15}) ([A-Za-z0-9_-]{1,1400})")  # a nonce is at most 256 characters
_FENCE = re.compile(r"fence (\d{1,15})")
_CHECK = re.compile(r"check ([0-9a-f]{8})")

UNREADABLE = "nonce store unreadable"
UNWRITABLE = "nonce store unwritable"
FULL = "nonce store full"
REPLAYED = "replayed"


class Corrupt(ValueError):
    pass


def encoded(nonce: str) -> str:
    return base64.urlsafe_b64encode(nonce.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def _checksum(body: str) -> str:
    return f"{binascii.crc32(body.encode()):08x}"


def parse(text: str) -> tuple[dict[str, int], int]:
    """The entries (encoded nonce -> expires, ms) and the fence (0: none) of a file's text, or ``Corrupt``."""
    body, _, last = text[:-1].rpartition("\n")
    check = _CHECK.fullmatch(last)
    if not text.endswith("\n") or check is None or check[1] != _checksum(body + "\n"):
        raise Corrupt("the checksum does not match")
    lines = body.split("\n")
    if lines[0] != HEADER:
        raise Corrupt("the header is damaged")
    entries: dict[str, int] = {}
    fence = 0
    for n, line in enumerate(lines[1:], start=2):
        if match := _ENTRY.fullmatch(line):
            entries[match[2]] = int(match[1])
        elif (match := _FENCE.fullmatch(line)) and n == 2:
            fence = int(match[1])
        else:
            raise Corrupt(f"line {n} is damaged")
    return entries, fence


def render(entries: dict[str, int], fence: int) -> bytes:
    lines = [HEADER, *([f"fence {fence}"] if fence else []), *(f"{e} {d}" for d, e in entries.items())]
    body = "\n".join(lines) + "\n"
    return (body + f"check {_checksum(body)}\n").encode()


class NonceStore:
    """Not thread-safe: the checker that owns it serialises calls."""

    def __init__(self, directory: Path, *, max_entries: int = MAX_ENTRIES) -> None:
        self.path = directory / FILE
        self.max_entries = max_entries
        self._entries: dict[str, int] | None = None  # None: not read yet (or the last read failed)
        self._fence = 0  # refuse everything while fence + skew is still ahead (a corrupt file was found)

    def __len__(self) -> int:
        return len(self._entries or {})

    def add(self, nonce: str, expires_ms: int, *, now_ms: int, skew_ms: int) -> str | None:
        """Record ``nonce`` durably if it was never seen: ``None``, or the reason to refuse its command."""
        try:
            entries = self._load(now_ms, skew_ms)
        except OSError as exc:
            log.error("nonce_store_unreadable path=%s error=%r; refusing commands", self.path, str(exc))
            return UNREADABLE
        horizon = now_ms - skew_ms  # a command that expired before this is refused by the clock check
        if self._fence >= horizon:
            return UNREADABLE
        key = encoded(nonce)
        if key in entries:
            return REPLAYED
        live = {d: e for d, e in entries.items() if e >= horizon}
        if len(live) >= self.max_entries:
            log.error("nonce_store_full entries=%d; refusing commands until some expire", len(live))
            return FULL
        live[key] = expires_ms
        try:
            self._write(live, 0)
        except OSError as exc:
            log.error("nonce_store_unwritable path=%s error=%r; refusing commands", self.path, str(exc))
            return UNWRITABLE
        self._entries, self._fence = live, 0
        return None

    def _load(self, now_ms: int, skew_ms: int) -> dict[str, int]:
        if self._entries is not None:
            return self._entries
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self._entries = {}
            return self._entries
        try:
            entries, fence = parse(data.decode("ascii"))
        except (UnicodeDecodeError, Corrupt) as exc:
            # Fail closed: whatever the file held expires at most a lifetime (plus the skew) from now.
            fence = now_ms + MAX_LIFETIME_MS + skew_ms
            log.error(
                "nonce_store_corrupt path=%s error=%r; kept as %s.corrupt, refusing commands for %d s",
                self.path,
                str(exc),
                FILE,
                (fence + skew_ms - now_ms) // 1000 + 1,
            )
            write_atomically(self.path.with_name(FILE + ".corrupt"), data)
            self._write({}, fence)  # until this is written, the corrupt file stays and is found again
            entries = {}
        self._entries, self._fence = entries, fence
        return entries

    def _write(self, entries: dict[str, int], fence: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self.path, render(entries, fence))

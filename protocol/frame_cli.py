"""``edgewatch frame``: print wire frames as JSON lines, for debugging spools and captures."""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ProtocolError
from .header import FLAG_DELTA, FLAG_ZSTD, reference_of
from .reader import decode
from .reference import next_reference
from .types import Batch, Scalar, Value


def _value(v: Value | Scalar) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN or infinity
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def batch_json(batch: Batch) -> dict[str, Any]:
    return {
        "agent_id": batch.agent_id,
        "boot_id": batch.boot_id,
        "seq": batch.seq,
        "host": dict(batch.host),
        "timestamps": list(batch.timestamps),
        "series": [
            {
                "name": s.name,
                "labels": dict(s.labels),
                "kind": s.kind.name.lower(),
                "precision": s.precision,
                "values": [_value(v) for v in column],
            }
            for s, column in zip(batch.series, batch.values)
        ],
        "events": [
            {"ts": e.ts, "type": e.type, "attrs": {k: _value(v) for k, v in e.attrs.items()}}
            for e in batch.events
        ],
    }


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="edgewatch frame",
        description="Decode edgewatch wire frames and print one JSON object per frame. Frames are "
        "decoded in the order given, each delta frame against the frame before it.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a file holding one frame ('-' for stdin)")
    parser.add_argument("--header", action="store_true", help="print only what the header says")
    args = parser.parse_args(argv)
    ref: Batch | None = None
    status = 0
    for path in args.files:
        try:
            data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            print(f"edgewatch frame: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 1
        out: dict[str, Any] = {"file": path, "bytes": len(data)}
        try:
            named = reference_of(data)
            out.update(
                version=f"{data[2]}.{data[3]}",
                delta=bool(data[4] & FLAG_DELTA),
                compressed=bool(data[4] & FLAG_ZSTD),
                reference=None if named is None else named._asdict(),
            )
            if not args.header:
                batch = decode(data, ref if named is not None else None)
                out["samples"] = batch.sample_count
                out["batch"] = batch_json(batch)
                ref = next_reference(ref if named is not None else None, batch)
        except ProtocolError as exc:
            out["error"] = str(exc)
            status = 1
        print(json.dumps(out))
    return status

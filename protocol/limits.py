"""Caps that bound what one frame may cost a reader, whatever its bytes say.

Every cap is checked before the memory it guards is allocated. The aggregator answers a frame that
breaks one with 413 (the size caps) or 400 (the rest).
"""

from __future__ import annotations

from typing import Final

MAX_FRAME_BYTES: Final = 8 * 1024 * 1024  # compressed frame, header included
MAX_PAYLOAD_BYTES: Final = 32 * 1024 * 1024  # decompressed payload (a zstd payload must declare its size)
MAX_SERIES: Final = 20_000  # series definitions in one batch
MAX_TIMESTAMPS: Final = 4_096  # samples per series in one batch
MAX_SAMPLES: Final = 2_000_000  # series x timestamps in one batch
MAX_EVENTS: Final = 10_000
MAX_LABELS: Final = 32  # labels per series
MAX_HOST_FIELDS: Final = 256
MAX_EVENT_ATTRS: Final = 64
MAX_NAME_LEN: Final = 256  # metric names, label names, host and event keys, agent ids
MAX_STRING_LEN: Final = 4_096  # label values, host values
MAX_EVENT_STRING_LEN: Final = 65_536  # event attribute values (command output)
MAX_DEPTH: Final = 6  # msgpack nesting depth
MAX_OBJECTS: Final = 2_000_000  # msgpack objects in the payload map (the values themselves are in the stream)
MAX_PRECISION: Final = 15  # decimal digits a series may declare

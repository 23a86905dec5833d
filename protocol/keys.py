"""Stable integer field keys of the wire format (docs/protocol.md, "Field keys").

A key, once published, keeps its meaning forever: a new field gets a new number, none is renumbered
or reused. Readers ignore keys they do not know, which is what lets an older reader read a newer
minor version.
"""

from __future__ import annotations

from typing import Final

# Frame payload (a msgpack map).
AGENT: Final = 1  # str; key frames only (a delta frame has its reference's agent id)
BOOT: Final = 2  # uint64; key frames only (a delta frame has its reference's boot id)
SEQ: Final = 3  # uint64 in a key frame; seq minus the reference's seq in a delta frame
HOST: Final = 4  # map str -> str; in a delta frame only when it differs from the reference's
SERIES: Final = 5  # key frame: [definition, ...]; delta frame: series map, only when it differs
SAMPLES: Final = 6  # uint, number of timestamps; omitted when 1
VALUES: Final = 7  # reserved, never written: the residual stream follows the map instead
FLOAT_COLUMNS: Final = 8  # [series index, ...] coded as IEEE-754 bits instead of integers
RAW_COLUMNS: Final = 9  # {series index: [value or nil, ...]} coded as plain msgpack values
GAPS: Final = 10  # {series index: bin bitmap, bit i set = sample i is a gap}
EVENTS: Final = 11  # [event, ...]

# Series definition (a msgpack map).
DEF_NAME: Final = 1  # str
DEF_LABELS: Final = 2  # map str -> str; omitted when empty
DEF_KIND: Final = 3  # 0 gauge, 1 counter; omitted for gauge
DEF_PRECISION: Final = 4  # int decimal digits; omitted when the series has none

# Event (a msgpack map).
EVENT_TS: Final = 1  # int, ms since the Unix epoch
EVENT_TYPE: Final = 2  # str
EVENT_ATTRS: Final = 3  # map str -> str | int | float | bool | nil | bin; omitted when empty

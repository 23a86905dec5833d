"""The edgewatch wire protocol, shared by agent and aggregator (see docs/protocol.md).

``encode(batch, ref=None) -> bytes`` and ``decode(data, ref=None) -> Batch`` turn batches into frames
and back; ``reference_of(data)`` says which earlier frame a delta frame is coded against;
``next_reference(ref, batch)`` is what both sides keep as the reference after an acknowledgement.
"""

from .errors import ProtocolError
from .header import MAJOR, MINOR, Reference, reference_of
from .reader import decode
from .reference import as_decoded, next_reference
from .types import Batch, Event, Kind, Series, Value
from .writer import encode

__all__ = [
    "MAJOR",
    "MINOR",
    "Batch",
    "Event",
    "Kind",
    "ProtocolError",
    "Reference",
    "Series",
    "Value",
    "as_decoded",
    "decode",
    "encode",
    "next_reference",
    "reference_of",
]

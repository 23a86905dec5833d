"""The one exception the protocol raises."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A frame cannot be decoded, or a batch cannot be encoded.

    ``decode`` raises this and nothing else, whatever bytes it is given. ``needs_reference`` is true
    when the frame is a delta frame whose reference is missing or is not the one the frame names: the
    aggregator answers that with 409 so the agent sends a key frame.
    """

    def __init__(self, message: str, *, needs_reference: bool = False) -> None:
        super().__init__(message)
        self.needs_reference = needs_reference

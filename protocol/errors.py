"""The one exception the protocol raises."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A frame cannot be decoded, or a batch cannot be encoded.

    ``decode`` raises this and nothing else, whatever bytes it is given. ``needs_reference`` is true
    when the frame is a delta frame whose reference is missing or is not the one the frame names: the
    aggregator answers that with 409 so the agent sends a key frame. ``too_large`` is true when the
    frame breaks a size cap (the frame or its payload): the aggregator answers 413, else 400.
    """

    def __init__(self, message: str, *, needs_reference: bool = False, too_large: bool = False) -> None:
        super().__init__(message)
        self.needs_reference = needs_reference
        self.too_large = too_large

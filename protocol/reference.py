"""What agent and aggregator keep as the reference for the next delta frame."""

from __future__ import annotations

from .columns import decoded_form
from .types import Batch


def next_reference(ref: Batch | None, batch: Batch) -> Batch:
    """The reference for the frame after ``batch``, once ``batch`` was acknowledged.

    It is ``batch`` as the receiver decoded it (floats of series with a precision rounded), with each
    column's sample before it carried over from ``ref`` when ``batch`` has only one: counters are then
    predicted from the rate of the last two samples even when every frame holds one. Agent and
    aggregator call this alike, so both hold the same reference.
    """
    values = [decoded_form(s, column)[1] for s, column in zip(batch.series, batch.values)]
    timestamps = batch.timestamps
    if ref is not None and len(timestamps) == 1 and ref.timestamps and ref.timestamps[-1] < timestamps[0]:
        ref_index = {s: i for i, s in enumerate(ref.series)}
        merged = []
        for s, column in zip(batch.series, values):
            r = ref_index.get(s)
            merged.append((ref.values[r][-1] if r is not None else None, *column))
        values = merged
        timestamps = (ref.timestamps[-1], *timestamps)
    return Batch(
        agent_id=batch.agent_id,
        boot_id=batch.boot_id,
        seq=batch.seq,
        timestamps=timestamps,
        series=batch.series,
        values=tuple(values),
        host=batch.host,
        events=(),
    )

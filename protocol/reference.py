"""What agent and aggregator keep as the reference for the next delta frame."""

from __future__ import annotations

from operator import itemgetter

from .columns import decoded_form
from .types import Batch, Value

_last = itemgetter(-1)


def as_decoded(batch: Batch) -> Batch:
    """``batch`` as ``decode`` returns it: floats of series with a precision rounded to it.

    ``decode(encode(b, ref), ref) == as_decoded(b)`` for every batch the encoder accepts.
    """
    values = [
        column if s.precision is None else decoded_form(s, column)[1]
        for s, column in zip(batch.series, batch.values)
    ]
    return Batch(
        batch.agent_id,
        batch.boot_id,
        batch.seq,
        batch.timestamps,
        batch.series,
        values,
        batch.host,
        batch.events,
    )


def next_reference(ref: Batch | None, batch: Batch, *, decoded: bool = False) -> Batch:
    """The reference for the frame after ``batch``, once ``batch`` was acknowledged.

    It is ``batch`` as the receiver decoded it (floats of series with a precision rounded), cut to its
    last two samples, which is all that prediction looks at. When ``batch`` has one sample, each
    column's sample before it is carried over from ``ref``, so counters are predicted from their last
    rate even when every frame holds one sample; a batch with no samples (events only) keeps the
    samples of ``ref``. Agent and aggregator call this alike, so both hold the same reference.
    ``decoded``: ``batch`` is as ``decode`` returned it, so its values are in decoded form already
    (the aggregator skips rounding them again: the same reference, for less work).
    """
    timestamps = batch.timestamps
    if not timestamps and ref is not None:
        return Batch(
            batch.agent_id, batch.boot_id, batch.seq, ref.timestamps, ref.series, ref.values, batch.host
        )
    carry = len(timestamps) == 1 and ref is not None and ref.timestamps and ref.timestamps[-1] < timestamps[0]
    values: list[tuple[Value, ...]]
    if carry and decoded:
        values = []  # made below from the one sample of each column, in C
    elif decoded:
        values = [tuple(column[-2:]) for column in batch.values]
    else:
        values = [
            tuple(column[-2:]) if s.precision is None else decoded_form(s, column)[1][-2:]
            for s, column in zip(batch.series, batch.values)
        ]
    if carry:
        assert ref is not None
        if tuple(batch.series) == tuple(ref.series):  # a list and a tuple of the same series alike
            before: list[Value] = list(map(_last, ref.values))
        else:
            ref_index = {s: i for i, s in enumerate(ref.series)}
            before = [None if (r := ref_index.get(s)) is None else ref.values[r][-1] for s in batch.series]
        if decoded:
            values = list(zip(before, map(_last, batch.values)))
        else:
            values = [(v, *column) for v, column in zip(before, values)]
        timestamps = (ref.timestamps[-1], *timestamps)
    return Batch(
        agent_id=batch.agent_id,
        boot_id=batch.boot_id,
        seq=batch.seq,
        timestamps=tuple(timestamps[-2:]),
        series=batch.series,
        values=tuple(values),
        host=batch.host,
    )

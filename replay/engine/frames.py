"""Batches of one append time: the unit the replay clock orders.

A log reader yields batches of whole frames in offset order; small row frames come together, one
batch for many commits (logstore's reader, docs/architecture.md "Frames"). The clock gives every
row of a commit its commit's append time, so the engine cuts such a batch into its runs of one
``_append_time`` (zero-copy slices) before ordering them: a model never sees, in one batch, rows
appended after that batch's clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa


def by_append_time(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, int, pa.RecordBatch]]:
    """(append time in us, first offset, rows) per run of one append time in `batches`, in order;
    empty batches skipped. Closing this closes `batches` (a reader's read-ahead thread)."""
    try:
        yield from _runs(batches)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _runs(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, int, pa.RecordBatch]]:
    for batch in batches:
        n = batch.num_rows
        if not n:
            continue
        times = batch.column(batch.schema.get_field_index("_append_time"))
        offsets = batch.column(batch.schema.get_field_index("_offset"))
        t = times.cast(pa.int64()).to_numpy()
        if t[0] == t[-1]:  # one commit (append times never decrease along a partition)
            yield int(t[0]), offsets[0].as_py(), batch
            continue
        cuts = np.flatnonzero(np.diff(t)) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), n]
        for s, e in zip(starts, ends):
            yield int(t[s]), offsets[s].as_py(), batch.slice(s, e - s)

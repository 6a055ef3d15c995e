"""A model's answer to ``predict``, checked and turned into the columns of its output rows.

What a model may answer is the protocol of `replay.models`: one float per row (array-like or a
`pyarrow.Array` without nulls), or a dict / RecordBatch with ``score`` and optionally ``scores``
(one list of floats per row) and ``label`` (one string per row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ModelError


def coerce(answer: Any, n: int, m: Any) -> tuple[np.ndarray, Any, Any]:
    """Model `m`'s answer to ``predict`` on `n` rows as (float64 scores, ``scores`` list column or
    None, ``label`` column or None); ModelError naming the model when it is not one of the shapes
    `replay.models` allows."""
    scores = label = None
    if isinstance(answer, (pa.RecordBatch, pa.Table)):
        names = answer.schema.names
        if "score" not in names:
            raise ModelError(f"model {m.name!r}: predict returned a table without a 'score' column ({names})")
        if "scores" in names:
            scores = answer.column("scores")
        if "label" in names:
            label = answer.column("label")
        answer = answer.column("score")
    elif isinstance(answer, dict):
        if "score" not in answer:
            raise ModelError(f"model {m.name!r}: predict returned a dict without 'score' ({sorted(answer)})")
        scores, label = answer.get("scores"), answer.get("label")
        answer = answer["score"]
    try:
        if isinstance(answer, (pa.Array, pa.ChunkedArray)):
            if answer.null_count:
                raise ModelError(
                    f"model {m.name!r}: predict returned {answer.null_count} null score(s) "
                    f"(first at row {answer.is_null().to_pylist().index(True)})"
                )
            arr = answer.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            arr = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError, pa.ArrowException) as e:
        raise ModelError(
            f"model {m.name!r}: predict must return one float per row, got {type(answer).__name__} ({e})"
        ) from None
    if arr.ndim != 1 or len(arr) != n:
        raise ModelError(
            f"model {m.name!r}: predict returned shape {arr.shape} for a batch of {n} rows; "
            f"it must return one score per row"
        )
    if scores is not None:
        scores = _list_col(scores, n, m)
    if label is not None:
        label = label if isinstance(label, (pa.Array, pa.ChunkedArray)) else pa.array(label, pa.string())
        if isinstance(label, pa.ChunkedArray):
            label = label.combine_chunks()
        label = label.cast(pa.string())
        if len(label) != n:
            raise ModelError(f"model {m.name!r}: {len(label)} labels for {n} rows")
    return arr, scores, label


def _list_col(scores: Any, n: int, m: Any) -> pa.Array:
    if isinstance(scores, np.ndarray) and scores.ndim == 2:
        flat = pa.array(scores.astype(np.float64).ravel())
        arr = pa.ListArray.from_arrays(pa.array(np.arange(0, scores.size + 1, scores.shape[1], dtype=np.int32)), flat)
    elif isinstance(scores, (pa.Array, pa.ChunkedArray)):
        arr = scores.combine_chunks() if isinstance(scores, pa.ChunkedArray) else scores
        arr = arr.cast(pa.list_(pa.float64()))
    else:
        arr = pa.array(scores, pa.list_(pa.float64()))
    if len(arr) != n:
        raise ModelError(f"model {m.name!r}: {len(arr)} score vectors for {n} rows")
    return arr

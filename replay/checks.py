"""`check_model`: does a model keep the protocol replay relies on? (as river's
``utils.estimator_checks.check_estimator``)."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from .engine.answers import coerce
from .engine.context import Context
from .errors import ModelError, ReplayTypeError, ReplayValueError
from .models import check, learns, load

SYSTEM = ("_partition", "_offset", "_append_time")
TIME_TYPE = pa.timestamp("us", tz="UTC")


def check_model(model: Any, sample: pa.Table | pa.RecordBatch, *, parallel: bool = True) -> None:
    """Check that `model` keeps the model protocol of `replay.models` on the input rows `sample`.

    Returns None when the model passes; raises `replay.ModelError` (`ModelNameError` for a name
    or version) naming the model and what failed, with what a model raised as its cause. In order:

    1. ``name`` and ``version`` are strings replay can record (`replay.names`), ``predict`` is
       callable, ``learn`` too if present, and ``lookups`` (optional) is a topic, a list of
       topics or a {topic: key field} mapping;
    2. ``predict(batch, ctx)`` answers one score per row in a shape replay accepts (floats; or a
       dict / RecordBatch with ``score``, optional ``scores`` and ``label``);
    3. it is deterministic: called again on the same rows with a fresh, equal ``ctx``, it gives
       the same answer;
    4. it does not change the batch it is given (replay gives the same batch to every model);
    5. a model that learns accepts ``learn(batch, ctx)`` on the sample with a ``label`` column
       (the sample's own, else 0/1 labels; ``ctx.label`` names it), leaves that batch unchanged,
       and still answers ``predict`` afterwards;
    6. a model that does not learn replays in worker processes with ``workers > 1``, pickled (or
       built again from its ``"module:factory"`` spec): the copy must answer as the original.
       ``parallel=False`` skips this, for a model replayed with ``workers=1`` only.

    `model` is a model object or a ``"package.module:factory"`` spec. `sample` is a
    `pyarrow.Table` or `RecordBatch` of a few input rows (e.g. ``log.read("inputs", end=20)``);
    system columns it lacks are added (partition 0, offsets 0, 1, ..., the append time its
    ``event_time`` or the epoch), and each row's clock is its ``_append_time``. The ``ctx`` of
    the check holds no lookup topics: a model that calls ``ctx.lookup``/``ctx.history`` fails
    with the `LookupTopicError` as the cause (check it by replaying a small log), and one that
    asks for data after a row's clock fails with the `TimeLeakError`.
    """
    spec = model if isinstance(model, str) else None
    model = load(spec) if spec is not None else model
    batch = _input_batch(sample)
    check(model, spec)
    name = model.name
    _check_lookups(model)
    before = _copy(batch)
    first = _predict(model, batch)
    _unchanged(name, "predict", batch, before)
    again = _predict(model, batch)
    _same(
        name,
        first,
        again,
        "predict is not deterministic: called twice on the same rows with an equal ctx, it answered differently",
    )
    if learns(model):
        lesson = _with_label(batch)
        lesson_before = _copy(lesson)
        _call(name, "learn", lambda: model.learn(lesson, _context(model, lesson, learning=True)))
        _unchanged(name, "learn", lesson, lesson_before)
        _predict(model, batch)
    elif parallel:
        copy = load(spec) if spec is not None else _pickled(model)
        how = "built again from its spec" if spec is not None else "unpickled"
        _same(
            name,
            first,
            _predict(copy, batch),
            f"the copy of it a worker process gets ({how}) answers differently from the original",
        )


def _input_batch(sample: Any) -> pa.RecordBatch:
    """`sample` as one RecordBatch with the system columns a replayed batch has."""
    if isinstance(sample, pa.Table):
        batches = sample.combine_chunks().to_batches()
        sample = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=sample.schema)
    if not isinstance(sample, pa.RecordBatch):
        raise ReplayTypeError(
            f"check_model needs a pyarrow Table or RecordBatch of input rows, found {type(sample).__name__}"
        )
    n = sample.num_rows
    if not n:
        raise ReplayValueError("check_model needs a sample of at least one input row, found none")
    names = sample.schema.names
    if "_append_time" in names and sample.column("_append_time").null_count:
        raise ReplayValueError("the sample's _append_time has nulls: each row's clock is its append time")
    added = {
        "_partition": lambda: pa.array(np.zeros(n, np.int32)),
        "_offset": lambda: pa.array(np.arange(n, dtype=np.int64)),
        "_append_time": lambda: _default_times(sample),
    }
    for col in SYSTEM:
        if col not in names:
            sample = sample.append_column(col, added[col]())
    return sample


def _default_times(sample: pa.RecordBatch) -> pa.Array:
    if "event_time" in sample.schema.names:
        et = sample.column("event_time")
        if pa.types.is_timestamp(et.type) and not et.null_count:
            return et.cast(TIME_TYPE)
    return pa.array(np.zeros(sample.num_rows, np.int64)).view(TIME_TYPE)


def _check_lookups(model: Any) -> None:
    decl = getattr(model, "lookups", None)
    if decl is None or isinstance(decl, str):
        return
    if isinstance(decl, Mapping):
        ok = all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in decl.items())
    else:
        ok = isinstance(decl, (list, tuple)) and all(isinstance(t, str) for t in decl)
    if not ok:
        raise ModelError(
            f"model {model.name!r}: `lookups` must be a topic, a list of topics or a "
            f"{{topic: key field}} mapping, found {decl!r}"
        )


def _context(model: Any, batch: pa.RecordBatch, learning: bool = False) -> Context:
    """A fresh ctx for `batch` (no lookup topics, seed 0), each row's clock its append time."""
    ctx = Context({}, seed=0)
    clocks = batch.column("_append_time").cast(TIME_TYPE).cast(pa.int64()).to_numpy()
    if learning:  # learn is called at the clock the outcomes became visible, for all its rows
        ctx._enter(model, batch, "check", -1, int(clocks.max()), None, None)
        ctx.label = "label"
    else:
        same = bool((clocks == clocks[0]).all())
        ctx._enter(model, batch, "check", 0, int(clocks[0]), None if same else clocks, None)
    return ctx


def _call(name: str, what: str, fn: Any) -> Any:
    try:
        return fn()
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - a check names what the model raised
        raise ModelError(f"model {name!r}: {what}(batch, ctx) raised {type(e).__name__}: {e}") from e


def _predict(model: Any, batch: pa.RecordBatch) -> tuple[np.ndarray, Any, Any]:
    answer = _call(model.name, "predict", lambda: model.predict(batch, _context(model, batch)))
    return coerce(answer, batch.num_rows, model)


def _same(name: str, a: tuple, b: tuple, what: str) -> None:
    """ModelError(`what`, and where) unless answers `a` and `b` (from `coerce`) are equal."""
    if not np.array_equal(a[0], b[0], equal_nan=True):
        row = int(np.flatnonzero(~((a[0] == b[0]) | (np.isnan(a[0]) & np.isnan(b[0]))))[0])
        raise ModelError(
            f"model {name!r}: {what}: score of row {row} was {float(a[0][row])!r}, then {float(b[0][row])!r}"
        )
    for i, col in ((1, "scores"), (2, "label")):
        if (a[i] is None) != (b[i] is None) or (a[i] is not None and not a[i].equals(b[i])):
            raise ModelError(f"model {name!r}: {what}: its {col!r} column differs")


def _copy(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A deep copy of `batch` (its own buffers), to tell whether a model wrote into the original."""
    out = pa.BufferOutputStream()
    with pa.ipc.new_stream(out, batch.schema) as w:
        w.write_batch(batch)
    return pa.ipc.open_stream(out.getvalue()).read_next_batch()


def _unchanged(name: str, what: str, batch: pa.RecordBatch, before: pa.RecordBatch) -> None:
    if batch.equals(before):
        return
    changed = [f.name for f in batch.schema if not batch.column(f.name).equals(before.column(f.name))]
    raise ModelError(
        f"model {name!r}: {what}(batch, ctx) changed its input batch (column(s) {changed}); a model "
        f"must not write into the rows it is given: replay gives the same batch to every model"
    )


def _with_label(batch: pa.RecordBatch) -> pa.RecordBatch:
    if "label" in batch.schema.names:
        return batch
    return batch.append_column("label", pa.array(np.arange(batch.num_rows) % 2, pa.float64()))


def _pickled(model: Any) -> Any:
    try:
        return pickle.loads(pickle.dumps(model))
    except Exception as e:  # noqa: BLE001 - any pickling failure is the finding
        raise ModelError(
            f"model {model.name!r} does not learn, so replay.run(..., workers=N) sends it to worker processes "
            f"pickled, and pickling it fails ({type(e).__name__}: {e}); define it and its functions at "
            f"module level, give it as a 'package.module:factory' spec, or replay it with workers=1 "
            f"(check_model(..., parallel=False))"
        ) from e

"""Quality of both sides' answers against the outcomes known by a cut-off, in the shipped SQL.

The outcome of a request is `replay/sql/outcomes.sql`'s: only outcomes the log appended by the
cut-off count (append time is the fence, as in `replay.evaluation`), the latest appended wins. The
metrics are `classification.sql` (AUC, log loss, Brier, accuracy at `threshold`) for 0/1 labels,
`regression.sql` (MAE, RMSE, bias) otherwise, over the requests both sides answered with a score
and whose outcome is known: the same requests on both sides, so the two are comparable.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import pyarrow as pa

from logstore.errors import EvaluationError

from ..evaluation.queries import run_sql

__all__ = ["SIDES", "known_labels", "quality"]

SIDES = ("served", "counterfactual")
_CLASSIFICATION = ("n_labeled", "n_positive", "base_rate", "auc", "log_loss", "brier", "accuracy")
_REGRESSION = ("n_labeled", "mae", "rmse", "bias")


def known_labels(log: Any, outcomes: str | None, cutoff: dt.datetime) -> dict[str, float]:
    """request id -> label, of the outcomes appended by `cutoff` (none without the topic)."""
    if outcomes is None or outcomes not in log.topics():
        return {}
    con = log.duckdb(topics=[outcomes])
    try:
        table = run_sql(con, "outcomes", {"cutoff": cutoff}, outcomes=outcomes)
    finally:
        con.close()
    out: dict[str, float] = {}
    for rid, label in zip(table.column("request_id").to_pylist(), table.column("label").to_pylist(), strict=True):
        if label is not None and not math.isnan(label):
            out[rid] = float(label)
    return out


def _task(labels: list[float], task: str) -> str:
    binary = all(v in (0.0, 1.0) for v in labels)
    if task == "classification" and not binary:
        raise EvaluationError("task='classification' needs 0/1 labels, found other label values; use task='regression'")
    if task not in ("auto", "classification", "regression"):
        raise EvaluationError(f"task must be 'auto', 'classification' or 'regression', not {task!r}")
    if task != "auto":
        return task
    return "classification" if binary else "regression"


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def quality(
    served: list[float | None],
    counterfactual: list[float | None],
    labels: list[float | None],
    *,
    task: str = "auto",
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Both sides' metrics on the requests with a score on both sides and a known label."""
    import duckdb

    rows = [
        (s, c, y)
        for s, c, y in zip(served, counterfactual, labels, strict=True)
        if s is not None and c is not None and y is not None and not (math.isnan(s) or math.isnan(c))
    ]
    kind = _task([y for _, _, y in rows], task)
    out: dict[str, Any] = {"task": kind, "n": len(rows), "threshold": threshold if kind == "classification" else None}
    names = _CLASSIFICATION if kind == "classification" else _REGRESSION
    if not rows:
        for side in SIDES:
            out[side] = {name: (0 if name == "n_labeled" else None) for name in names}
        return out
    scored = pa.table(
        {
            "model": pa.array([side for side in SIDES for _ in rows], pa.string()),
            "window_start": pa.nulls(2 * len(rows), pa.timestamp("us", tz="UTC")),
            "score": pa.array([r[0] for r in rows] + [r[1] for r in rows], pa.float64()),
            "label": pa.array([r[2] for r in rows] * 2, pa.float64()),
        }
    )
    con = duckdb.connect()
    try:
        name = f"__counterfactual_{uuid.uuid4().hex[:12]}"
        con.register(name, scored)
        params = {"threshold": float(threshold), "by_window": False}
        result = run_sql(con, kind, params, scored=name)
    finally:
        con.close()
    got = {r["model"]: r for r in result.to_pylist()}
    for side in SIDES:
        r = got.get(side, {})
        out[side] = {k: _clean(r.get(k)) for k in names}
    return out

"""ROC and precision-recall curves, thresholds and lift of probability scores (classification).

`score_curves` counts the labelled rows per (model, distinct score) in DuckDB
(`replay/sql/score_counts.sql`) and `from_counts` does the rest in numpy, so the tables are exact
at every distinct score however many rows the log holds:

    curves      points of the ROC and PR curves, per model (threshold, n_predicted, tp, fp,
                tpr, fpr, precision, recall): one per distinct score when a model has at most
                `CURVE_POINTS`, else `CURVE_POINTS` spread evenly over the rows, always keeping
                the max-F1 point and the last one (every row predicted positive)
    ranking     one row per model: n_labeled, n_positive, base_rate, auc (trapezoid over the exact
                ROC: equal to the Mann-Whitney AUC of classification.sql), average_precision,
                top_decile_rate and lift_top_decile
    thresholds  one row per (model, rule): the confusion counts (tp, fp, fn, tn), precision,
                recall, f1, accuracy and predicted_positive_rate at a threshold, where rule is
                `max_f1` (the distinct score maximising F1; ties go to the higher threshold) or
                `given` (the evaluation's threshold)

Invariants (docs/architecture.md: the evaluation counts what the log knew by the cut-off):

* A row predicts positive when `score >= threshold` (as classification.sql); tied scores move
  together, so a curve has one point per distinct score, never a split tie.
* average_precision is sum_k (R_k - R_{k-1}) P_k over the distinct scores, highest first
  (sklearn's `average_precision_score`); NULL without positives.
* The top decile is the 10% of labelled rows with the highest scores; rows tied at its edge count
  pro rata (the expectation over random tie-breaking). lift_top_decile = its positive rate /
  base_rate; NULL when there are no positives.
* The max-F1 threshold is chosen on the same outcomes it is scored on: its F1 is optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .queries import run_sql

__all__ = ["CURVE_POINTS", "TOP_FRACTION", "from_counts", "score_curves", "empty_tables"]

CURVE_POINTS = 200  # points kept per curve; the max-F1 point and the last one always are
TOP_FRACTION = 0.1  # the "top decile" of lift

_I, _F, _S = pa.int64(), pa.float64(), pa.string()
CURVES_SCHEMA = pa.schema(
    [("model", _S), ("threshold", _F), ("n_predicted", _I), ("tp", _I), ("fp", _I)]
    + [(c, _F) for c in ("tpr", "fpr", "precision", "recall")]
)
RANKING_SCHEMA = pa.schema(
    [("model", _S), ("n_labeled", _I), ("n_positive", _I)]
    + [(c, _F) for c in ("base_rate", "auc", "average_precision", "top_decile_rate", "lift_top_decile")]
)
THRESHOLDS_SCHEMA = pa.schema(
    [("model", _S), ("rule", _S), ("threshold", _F), ("tp", _I), ("fp", _I), ("fn", _I), ("tn", _I)]
    + [(c, _F) for c in ("precision", "recall", "f1", "accuracy", "predicted_positive_rate")]
)


def empty_tables() -> tuple[pa.Table, pa.Table, pa.Table]:
    """(curves, ranking, thresholds) with no rows: a regression evaluation's."""
    return CURVES_SCHEMA.empty_table(), RANKING_SCHEMA.empty_table(), THRESHOLDS_SCHEMA.empty_table()


def score_curves(con: Any, scored: str, models: Sequence[str], threshold: float) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(curves, ranking, thresholds) of the TEMP table `scored` (rows shaped like scored.sql)."""
    return from_counts(run_sql(con, "score_counts", {}, scored=scored), models, threshold)


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _confusion(model: str, rule: str, threshold: float, tp: int, fp: int, p: int, n: int) -> dict[str, Any]:
    fn, tn = p - tp, n - fp
    return {
        "model": model,
        "rule": rule,
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, p),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, p + n),
        "predicted_positive_rate": _ratio(tp + fp, p + n),
    }


def _kept(predicted: np.ndarray, best: int | None) -> np.ndarray:
    """Indices of the curve points kept: all of them up to `CURVE_POINTS`, else at most
    `CURVE_POINTS` spread evenly over the rows, with the max-F1 point `best` and the last one."""
    last = len(predicted) - 1
    if len(predicted) <= CURVE_POINTS:
        return np.arange(len(predicted))
    keep = {last} if best is None else {last, best}
    targets = np.linspace(0, predicted[-1], CURVE_POINTS)[1:-1]  # CURVE_POINTS - 2 interior targets
    keep.update(np.minimum(np.searchsorted(predicted, targets, side="left"), last).tolist())
    return np.array(sorted(keep))


def _one_model(model: str, score: np.ndarray, pos: np.ndarray, neg: np.ndarray, threshold: float):
    """Rows of the three tables for one model; `score` distinct and descending."""
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    p, n = int(tp[-1]), int(fp[-1])
    total = p + n
    predicted = tp + fp
    tp0, fp0 = np.concatenate([[0], tp[:-1]]), np.concatenate([[0], fp[:-1]])
    auc = float(np.sum((fp - fp0) * (tp + tp0)) / (2.0 * p * n)) if p and n else None
    precision = tp / predicted
    ap = float(np.sum((tp - tp0) * precision) / p) if p else None
    # top decile: rows tied at its edge count pro rata
    k = TOP_FRACTION * total
    i = min(int(np.searchsorted(predicted, k, side="left")), len(score) - 1)
    before_n, before_tp = (int(predicted[i - 1]), int(tp[i - 1])) if i else (0, 0)
    top_rate = (before_tp + (k - before_n) * float(pos[i]) / float(pos[i] + neg[i])) / k
    base_rate = p / total
    ranking = {
        "model": model,
        "n_labeled": total,
        "n_positive": p,
        "base_rate": base_rate,
        "auc": auc,
        "average_precision": ap,
        "top_decile_rate": top_rate,
        "lift_top_decile": top_rate / base_rate if p else None,
    }
    thresholds = []
    best = None
    if p:
        best = int(np.argmax(2 * tp / (predicted + p)))  # the first maximum: the highest threshold
        thresholds.append(_confusion(model, "max_f1", float(score[best]), int(tp[best]), int(fp[best]), p, n))
    j = int(np.searchsorted(-score, -threshold, side="right"))  # distinct scores >= threshold
    given_tp, given_fp = (int(tp[j - 1]), int(fp[j - 1])) if j else (0, 0)
    thresholds.append(_confusion(model, "given", threshold, given_tp, given_fp, p, n))
    idx = _kept(predicted, best)
    points = {
        "model": [model] * len(idx),
        "threshold": score[idx],
        "n_predicted": predicted[idx],
        "tp": tp[idx],
        "fp": fp[idx],
        "tpr": tp[idx] / p if p else [None] * len(idx),
        "fpr": fp[idx] / n if n else [None] * len(idx),
        "precision": precision[idx],
        "recall": tp[idx] / p if p else [None] * len(idx),
    }
    return pa.table(points, schema=CURVES_SCHEMA), ranking, thresholds


def from_counts(counts: pa.Table, models: Sequence[str], threshold: float) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(curves, ranking, thresholds) from rows shaped like score_counts.sql (model, score,
    n_positive, n_negative; any order). Every model in `models` has a ranking row (n_labeled 0
    and NULLs when none of its rows is labelled); `threshold` is the `given` rule's."""
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, not {threshold!r}")
    model_col = np.asarray(counts["model"].to_pylist(), dtype=object)
    score = counts["score"].to_numpy().astype(float)
    pos = counts["n_positive"].to_numpy().astype(np.int64)
    neg = counts["n_negative"].to_numpy().astype(np.int64)
    held = pos + neg > 0  # a (model, score) without labelled rows is no curve point
    model_col, score, pos, neg = model_col[held], score[held], pos[held], neg[held]
    curve_parts, ranking_rows, threshold_rows = [], [], []
    for model in sorted(set(models) | set(model_col.tolist())):
        sel = model_col == model
        if not sel.any():
            ranking_rows.append({"model": model, "n_labeled": 0, "n_positive": 0})
            continue
        order = np.argsort(-score[sel], kind="stable")
        points, ranking, thresholds = _one_model(model, score[sel][order], pos[sel][order], neg[sel][order], threshold)
        curve_parts.append(points)
        ranking_rows.append(ranking)
        threshold_rows += thresholds
    curves = pa.concat_tables(curve_parts) if curve_parts else CURVES_SCHEMA.empty_table()
    return (
        curves,
        pa.Table.from_pylist(ranking_rows, schema=RANKING_SCHEMA),
        pa.Table.from_pylist(threshold_rows, schema=THRESHOLDS_SCHEMA),
    )

"""`replay report --json`: the report's numbers as one JSON document.

    doc = document(ev)                    # a dict of plain JSON values
    print(dumps(ev, gate=results))        # what `replay report --json` prints

Keys: `task`, `models`, `champion`, `canary`, `params` (as evaluated; the cut-off as ISO time),
`confusion_at` ("max_f1" or "given": the rule of the confusion matrices), `overall` (one object
per model), `paired` (per model and reference, with `<metric>_low` / `<metric>_high` bounds),
`drift` (per model: the report's drift table) and `drift_flags` (every drift row flagged shift or
alert), `curves` (per model: n_labeled, n_positive, base_rate, auc, average_precision,
top_decile_rate, lift_top_decile, `thresholds` {max_f1, given} with the confusion counts, and
`confusion`: the one the report shows, by `confusion_at`), `calibration` (every score bin with its
row count and the Wilson 95% bounds of its label rate), `label_maturity` (per window: label
rate, label delay quantiles, `mature`, `reason`), `feature_drift` (per input feature and later
window: PSI against the first window, flag) with `feature_drift_summary` (per feature: the worst
and the last window), `provenance` (log path, cut-off, window, generation time, topics, per model
its versions and run ids, per run its manifest status, audit status and hashes, the logstore
version), `verdicts`, `warnings` (threshold metrics that say nothing) and, when given, `gate`
(one object per `--fail-on` rule: `rule`, `held`, `details`) with `failed` (whether any held).
Times are ISO strings; NaN and infinities are null, so any JSON parser reads it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

from . import report_curves as curves
from .evaluation.feature_drift import summary_rows
from .report import drift_rows
from .report_gate import GateResult

__all__ = ["document", "dumps"]


def _plain(value: Any) -> Any:
    """`value` as JSON values: datetimes as ISO strings, NaN/inf as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _confusion(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "model"}


def _curves(ev: Any, confusion_at: str) -> list[dict[str, Any]]:
    by_model: dict[str, dict[str, Any]] = {}
    for r in ev.thresholds.to_pylist():
        by_model.setdefault(r["model"], {})[r["rule"]] = _confusion(r)
    out = []
    for r in ev.ranking.to_pylist():
        thresholds = by_model.get(r["model"], {})
        out.append({**r, "thresholds": thresholds, "confusion": thresholds.get(confusion_at)})
    return out


def document(
    evaluation: Any, *, confusion_at: str = "max_f1", gate: Sequence[GateResult] | None = None
) -> dict[str, Any]:
    """The evaluation's report numbers as a dict of JSON values (keys in the module docstring)."""
    ev = evaluation
    curves.check_rule(confusion_at)
    doc: dict[str, Any] = {
        "task": ev.task,
        "models": list(ev.models),
        "champion": ev.champion,
        "canary": ev.canary,
        "params": dict(ev.params),
        "confusion_at": confusion_at,
        "overall": ev.overall.to_pylist(),
        "paired": ev.paired.to_pylist(),
        "drift": drift_rows(ev),
        "drift_flags": [r for r in ev.drift.to_pylist() if r["psi_flag"] in ("shift", "alert")],
        "curves": _curves(ev, confusion_at),
        "calibration": ev.calibration.to_pylist(),
        "label_maturity": ev.label_maturity.to_pylist(),
        "feature_drift": ev.feature_drift.to_pylist(),
        "feature_drift_summary": summary_rows(ev.feature_drift),
        "provenance": ev.provenance.to_dict(),
        "verdicts": list(ev.verdicts),
        "warnings": curves.threshold_warnings(ev),
    }
    if gate is not None:
        doc["gate"] = [{"rule": r.rule.text, "held": r.held, "details": list(r.details)} for r in gate]
        doc["failed"] = any(r.held for r in gate)
    return _plain(doc)


def dumps(evaluation: Any, *, confusion_at: str = "max_f1", gate: Sequence[GateResult] | None = None) -> str:
    """`document` as JSON text (strict: no NaN), indented for reading."""
    return json.dumps(document(evaluation, confusion_at=confusion_at, gate=gate), indent=2, allow_nan=False)

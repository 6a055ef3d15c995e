"""Label maturity: which windows' outcomes have not all arrived by the cut-off.

Labels arrive a while after the request they answer, so the last windows before the cut-off hold
only the early labels, and their quality numbers are provisional. `label_maturity` measures the
label delay from the data (outcome append time minus the request's earliest score event time,
over every request whose outcome is known by the cut-off: `replay/sql/label_maturity.sql`) and
flags a window immature when either holds:

* delay: its end plus the p90 label delay is after the cut-off (a tenth of its labels, or more,
  may still be on their way);
* rate: its label rate is below `RATE_FLOOR` (half) of the typical label rate (the median over the
  windows mature by the delay rule) and its end plus the largest label delay seen is after the
  cut-off (a label could still arrive for it; a low rate long before the cut-off is no delay).

Without an outcomes topic the table is empty; with no outcome known by the cut-off the delay is
unknown and `mature` is null. `rate_vs_typical` is the window's label rate over the typical one
(null when no window is mature by the delay rule).
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Any

import pyarrow as pa

from .queries import run_sql

__all__ = ["MATURITY_SCHEMA", "RATE_FLOOR", "label_maturity", "mark_windows"]

RATE_FLOOR = 0.5

MATURITY_SCHEMA = pa.schema(
    [
        pa.field("window_start", pa.timestamp("us", "UTC")),
        pa.field("window_end", pa.timestamp("us", "UTC")),
        pa.field("n_requests", pa.int64()),
        pa.field("n_labeled", pa.int64()),
        pa.field("label_rate", pa.float64()),
        pa.field("typical_rate", pa.float64()),
        pa.field("rate_vs_typical", pa.float64()),
        pa.field("delay_p50_s", pa.float64()),
        pa.field("delay_p90_s", pa.float64()),
        pa.field("delay_max_s", pa.float64()),
        pa.field("mature", pa.bool_()),
        pa.field("reason", pa.string()),  # "delay", "rate" or null
    ]
)


def _reason(row: dict[str, Any], cutoff: dt.datetime, typical: float | None) -> str | None:
    end = row["window_end"]
    if end + dt.timedelta(seconds=max(row["delay_p90_s"], 0.0)) > cutoff:
        return "delay"
    low = typical is not None and row["label_rate"] < RATE_FLOOR * typical
    if low and end + dt.timedelta(seconds=max(row["delay_max_s"], 0.0)) > cutoff:
        return "rate"
    return None


def label_maturity(con: Any, scored: str, window: str, cutoff: dt.datetime) -> pa.Table:
    """One row per window of `scored` (MATURITY_SCHEMA): label counts, the label delay quantiles
    and whether the window's labels are mature by `cutoff` (the rule in the module docstring)."""
    rows = run_sql(con, "label_maturity", {"window": window}, scored=scored).to_pylist()
    if not rows or rows[0]["delay_p90_s"] is None:  # no outcome known: the delay is unknown
        out = [{**r, "typical_rate": None, "rate_vs_typical": None, "mature": None, "reason": None} for r in rows]
        return pa.Table.from_pylist(out, schema=MATURITY_SCHEMA)
    by_delay = {r["window_start"]: _reason(r, cutoff, None) == "delay" for r in rows}
    settled = [r["label_rate"] for r in rows if not by_delay[r["window_start"]]]
    typical = statistics.median(settled) if settled else None
    out = []
    for r in rows:
        reason = _reason(r, cutoff, typical)
        ratio = None if not typical else r["label_rate"] / typical
        out.append({**r, "typical_rate": typical, "rate_vs_typical": ratio, "mature": reason is None, "reason": reason})
    return pa.Table.from_pylist(out, schema=MATURITY_SCHEMA)


def mark_windows(by_window: pa.Table, maturity: pa.Table) -> pa.Table:
    """`by_window` with a boolean `mature` column: its window's maturity (null when unknown)."""
    mature = dict(zip(maturity["window_start"].to_pylist(), maturity["mature"].to_pylist(), strict=True))
    column = pa.array([mature.get(w) for w in by_window["window_start"].to_pylist()], pa.bool_())
    if "mature" in by_window.column_names:
        by_window = by_window.drop_columns(["mature"])
    return by_window.append_column("mature", column)

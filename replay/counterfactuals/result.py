"""The result of a counterfactual: per request, served vs counterfactual; the summary; the text.

`Counterfactual.requests` (pyarrow) has one row per decided request: ``served_*`` and ``cf_*``
(``model``: "model_id:model_version" or "default"; ``reason``; ``ms``: the decision moment in ms
after the request arrived; ``score``), the counterfactual's ``cf_propensity``, ``cf_deadline_ms``,
``cf_candidates``, ``cf_draw`` (sampled: "recorded" or "prior" propensities), ``cf_reconstructed``
(the answer's arrival came from the log's clock, not the record), ``same_model``, ``same_answer``
(model, reason and score) and ``label`` (the outcome known by the cut-off, else null).

`summary` (also `to_dict()`, what ``--json`` prints): served-model shares and reasons on both
sides, the answer-time distribution (decision moments: p50, p90, p99, max, mean; linear
interpolation between order statistics), quality against the known outcomes (`quality.py`), the
agreement rate (same model) and the identical rate (same model, reason and score), and how the
arrivals were obtained (`arrivals.Reconstruction`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .quality import SIDES
from .scenario import Answer

__all__ = ["Counterfactual", "requests_table", "summarize"]

_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def requests_table(
    ids: Sequence[str],
    times: Sequence[Any],
    served: Sequence[Answer],
    cf: Sequence[Answer],
    labels: Sequence[float | None],
) -> pa.Table:
    """The per-request table (module docstring)."""

    def same(a: Answer, b: Answer) -> bool:
        return a.model == b.model and a.reason == b.reason and a.score == b.score

    return pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
            "served_model": pa.array([a.model for a in served], pa.string()),
            "served_reason": pa.array([a.reason for a in served], pa.string()),
            "served_ms": pa.array([a.ms for a in served], pa.float64()),
            "served_score": pa.array([a.score for a in served], pa.float64()),
            "cf_model": pa.array([a.model for a in cf], pa.string()),
            "cf_reason": pa.array([a.reason for a in cf], pa.string()),
            "cf_ms": pa.array([a.ms for a in cf], pa.float64()),
            "cf_score": pa.array([a.score for a in cf], pa.float64()),
            "cf_propensity": pa.array([a.propensity for a in cf], pa.float64()),
            "cf_deadline_ms": pa.array([a.deadline_ms for a in cf], pa.float64()),
            "cf_candidates": pa.array([list(a.candidates) for a in cf], pa.list_(pa.string())),
            "cf_draw": pa.array([a.draw for a in cf], pa.string()),
            "cf_reconstructed": pa.array([a.reconstructed for a in cf], pa.bool_()),
            "same_model": pa.array([a.model == b.model for a, b in zip(served, cf, strict=True)], pa.bool_()),
            "same_answer": pa.array([same(a, b) for a, b in zip(served, cf, strict=True)], pa.bool_()),
            "label": pa.array(labels, pa.float64()),
        }
    )


def _shares(values: list[str]) -> dict[str, dict[str, float]]:
    counts = Counter(values)
    n = len(values)
    return {k: {"count": c, "share": c / n} for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def _times(values: list[float]) -> dict[str, float | None]:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if x.size == 0:
        return {k: None for k in ("p50", "p90", "p99", "max", "mean")}
    out: dict[str, float | None] = {k: float(np.quantile(x, q)) for k, q in _QUANTILES}
    out["max"] = float(x.max())
    out["mean"] = float(x.mean())
    return out


def summarize(table: pa.Table, quality: dict[str, Any] | None, reconstruction: dict[str, Any]) -> dict[str, Any]:
    """The summary of a per-request table (module docstring)."""
    n = table.num_rows
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    same_model = sum(cols["same_model"])
    same_answer = sum(cols["same_answer"])
    sides = {"served": "served", "counterfactual": "cf"}
    return {
        "requests": n,
        "agreement": same_model / n if n else None,
        "identical": same_answer / n if n else None,
        "changed": n - same_model,
        "reconstructed_answers": sum(cols["cf_reconstructed"]),
        "shares": {side: _shares(cols[f"{p}_model"]) for side, p in sides.items()},
        "reasons": {side: _shares(cols[f"{p}_reason"]) for side, p in sides.items()},
        "answer_ms": {side: _times(cols[f"{p}_ms"]) for side, p in sides.items()},
        "quality": quality,
        "arrivals": reconstruction,
    }


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else "-"
    return str(v)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = (
        [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)] if rows else [len(h) for h in header]
    )
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return lines


@dataclass
class Counterfactual:
    """What each request would have been answered with under a scenario, beside what was served."""

    requests: pa.Table
    summary: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def agreement(self) -> float | None:
        """The share of requests answered by the same model on both sides."""
        value: float | None = self.summary["agreement"]
        return value

    def changes(self, limit: int | None = 10) -> list[dict[str, Any]]:
        """The first `limit` requests (all: None) whose answer changes, as dicts."""
        changed = self.requests.filter(pc.invert(self.requests.column("same_answer")))
        if limit is not None:
            changed = changed.slice(0, max(0, limit))
        rows: list[dict[str, Any]] = changed.to_pylist()
        for r in rows:
            r["event_time"] = None if r["event_time"] is None else r["event_time"].isoformat()
            for k, v in r.items():
                if isinstance(v, float) and not math.isfinite(v):
                    r[k] = None
        return rows

    def to_dict(self, changes: int | None = 10) -> dict[str, Any]:
        """The parameters, the summary and the first `changes` changed requests (JSON-ready)."""
        return {"params": self.params, "summary": self.summary, "changes": self.changes(changes)}

    def to_text(self, changes: int = 10) -> str:
        """The summary as a few aligned tables (what ``replay counterfactual`` prints)."""
        s, p = self.summary, self.params
        lines = [f"counterfactual of {s['requests']:,} decided requests: {p.get('scenario', '')}"]
        if not s["requests"]:
            return lines[0] + "\nno decisions in range"
        lines.append(
            f"agreement {_pct(s['agreement'])} (same model), identical {_pct(s['identical'])} "
            f"(model, reason, score); {s['changed']:,} answers change model"
        )
        lines.append("")
        shares = s["shares"]
        models = sorted(set(shares["served"]) | set(shares["counterfactual"]))
        rows = [[f"model {m}", *(_pct(shares[side].get(m, {}).get("share", 0.0)) for side in SIDES)] for m in models]
        reasons = s["reasons"]
        for r in sorted(set(reasons["served"]) | set(reasons["counterfactual"])):
            rows.append([f"reason {r}", *(_pct(reasons[side].get(r, {}).get("share", 0.0)) for side in SIDES)])
        times = s["answer_ms"]
        for k in ("p50", "p90", "p99", "max", "mean"):
            rows.append([f"answer {k} ms", *(_fmt(times[side][k]) for side in SIDES)])
        q = s["quality"]
        if q is not None and q["n"]:
            names = [k for k in q["served"] if k not in ("n_labeled",)]
            for k in names:
                rows.append([f"{k}", *(_fmt(q[side][k]) for side in SIDES)])
        lines += _table(["", *SIDES], rows)
        lines.append("")
        if q is not None:
            lines.append(
                f"quality: {q['task']} over {q['n']:,} requests with a score on both sides and an outcome "
                f"known by {p.get('cutoff')}"
            )
        else:
            lines.append("quality: no outcome topic")
        a = s["arrivals"]
        lines.append(
            f"arrivals: {a['recorded']:,} recorded, {a['reconstructed']:,} reconstructed from the {a['clock']} clock "
            f"(offset {_fmt(a['offset_ms'])} ms, spread p90 {_fmt(a['spread_ms'])} ms); "
            f"{s['reconstructed_answers']:,} counterfactual answers rest on a reconstructed arrival"
        )
        shown = self.changes(changes)
        if shown:
            lines += ["", f"first {len(shown)} changed answers:"]
            head = ["request", "served", "ms", "score", "counterfactual", "ms", "score"]
            body = [
                [
                    str(r["request_id"]),
                    f"{r['served_model']} ({r['served_reason']})",
                    _fmt(r["served_ms"]),
                    _fmt(r["served_score"]),
                    f"{r['cf_model']} ({r['cf_reason']})",
                    _fmt(r["cf_ms"]),
                    _fmt(r["cf_score"]),
                ]
                for r in shown
            ]
            lines += _table(head, body)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

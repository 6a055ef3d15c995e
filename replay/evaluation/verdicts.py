"""The verdicts of an evaluation: plain sentences for what its tables say (`verdicts`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from . import metrics
from .result import Evaluation

PSI_SHIFT = 0.1  # conventional PSI thresholds: "some shift" ...
PSI_ALERT = 0.25  # ... and "significant shift, investigate"


def format_window(ts: Any) -> str:
    """A window start in UTC: the date when it is midnight, else ISO minutes."""
    if ts is None:
        return "all"
    ts = ts.astimezone(dt.UTC) if ts.tzinfo else ts
    if (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%dT%H:%MZ")


# (column in `paired`, label in sentences, higher is better)
_PRIMARY = {
    "classification": [("auc_delta", "AUC", True), ("log_loss_delta", "log loss", False)],
    "regression": [("rmse_delta", "RMSE", False), ("mae_delta", "MAE", False)],
}


def _quality_verdict(row: dict[str, Any], task: str, n_boot: int) -> str | None:
    model, role = row["model"], row["reference_role"]
    for column, label, higher in _PRIMARY[task]:
        delta = row.get(column)
        if delta is None:
            continue
        sign = 1 if higher else -1  # report the improvement: positive = model is better
        gain = sign * delta
        low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
        if low is None or high is None:
            why = "bootstrap=0" if n_boot == 0 else f"{row['n_windows']} window(s), need {metrics.MIN_BLOCKS}"
            return f"{model} vs {role} on {label}: {gain:+.3f} (no interval: {why})"
        g_low, g_high = sorted((sign * low, sign * high))
        if g_low > 0:
            return f"{model} beats {role} on {label} by {gain:.3f} [{g_low:.3f}, {g_high:.3f}]"
        if g_high < 0:
            return f"{model} is worse than {role} on {label} by {-gain:.3f} [{-g_high:.3f}, {-g_low:.3f}]"
        return f"{model} vs {role} on {label}: {gain:+.3f} [{g_low:+.3f}, {g_high:+.3f}], no clear difference"
    if row["n_labeled"]:
        return None
    return f"{model} vs {role}: no outcomes known by the cut-off on their common requests"


def maturity_verdicts(ev: Evaluation) -> list[str]:
    """A sentence per window whose labels are immature (`replay.evaluation.maturity`)."""
    out = []
    for r in ev.label_maturity.to_pylist():
        if r["mature"] is not False:
            continue
        ratio = r["rate_vs_typical"]
        rate = (
            "no mature window to compare its label rate with"
            if ratio is None
            else f"{ratio:.0%} of the typical label rate"
        )
        when = format_window(r["window_start"])
        out.append(f"window {when} has immature labels ({rate}): its quality numbers are provisional")
    return out


def feature_verdicts(ev: Evaluation, most: int = 5) -> list[str]:
    """One sentence naming the input features whose PSI reached the shift level in a window
    (the `most` worst, worst first), or saying none did."""
    rows = ev.feature_drift.to_pylist()
    if not rows:
        return []
    worst: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["feature"] not in worst or r["psi"] > worst[r["feature"]]["psi"]:
            worst[r["feature"]] = r
    moved = sorted((r for r in worst.values() if r["psi"] >= PSI_SHIFT), key=lambda r: -r["psi"])
    if not moved:
        top = max(r["psi"] for r in worst.values())
        return [f"input features stable: {len(worst)} feature(s), max PSI {top:.2f} against the first window"]
    named = ", ".join(
        f"{r['feature']} (PSI {r['psi']:.2f} in window {format_window(r['window_start'])}, {r['psi_flag']})"
        for r in moved[:most]
    )
    more = f" and {len(moved) - most} more" if len(moved) > most else ""
    return [f"input features drifted against the first window: {named}{more}"]


def verdicts(ev: Evaluation) -> list[str]:
    """The verdict sentences for `ev`: quality against the champion, label maturity, coverage,
    distribution and drift (scores, then input features)."""
    out: list[str] = []
    n_boot = ev.params.get("bootstrap", 0)
    labelled = sum(ev.overall["n_labeled"].to_pylist()) if ev.overall.num_rows else 0
    if ev.params.get("outcomes") is not None and labelled == 0:
        cutoff = ev.params["cutoff"].strftime("%Y-%m-%d %H:%M:%S UTC")
        out.append(f"no outcomes known by the cut-off {cutoff}: quality not measured")
    out += maturity_verdicts(ev)
    for row in ev.paired.to_pylist():
        if row["reference_role"] == "champion":
            sentence = _quality_verdict(row, ev.task, n_boot)
            if sentence:
                out.append(sentence)
    if ev.params.get("inputs") is not None:
        for row in ev.overall.to_pylist():
            if row.get("coverage") is not None and row["coverage"] < 0.99:
                out.append(f"{row['model']} scored {row['coverage']:.1%} of input requests")
    drift = ev.drift.to_pylist()
    for row in drift:
        if row["kind"] == "vs_champion" and row["window_start"] is None and row["psi"] is not None:
            if row["psi"] >= PSI_SHIFT:
                out.append(
                    f"{row['model']} scores are distributed unlike the champion's "
                    f"(PSI {row['psi']:.2f}, {row['psi_flag']})"
                )
    if ev.canary is not None:
        canary = [
            r for r in drift if r["kind"] == "vs_first_window" and r["model"] == ev.canary and r["psi"] is not None
        ]
        later = sorted(canary, key=lambda r: r["window_start"])[1:]
        drifted: set[Any] = set()
        if not later:
            out.append("canary stability: one window only, nothing to compare")
        else:
            worst = max(r["psi"] for r in later)
            moved = [r for r in later if r["psi"] >= PSI_SHIFT]
            drifted.update(r["window_start"] for r in moved)
            if not moved:
                out.append(f"canary stable (max PSI {worst:.2f}): no input drift")
            for r in moved:
                what = "input drift" if r["psi"] >= PSI_ALERT else "input shift"
                when = format_window(r["window_start"])
                out.append(f"{what}: canary PSI {r['psi']:.2f} in window {when}")
        gaps: dict[str, list[dict[str, Any]]] = {}
        for r in drift:
            if r["kind"] == "gap_vs_first_window" and r["psi"] is not None:
                gaps.setdefault(r["model"], []).append(r)
        for model, rows in sorted(gaps.items()):
            rows = sorted(rows, key=lambda r: r["window_start"])[1:]
            if not rows:
                continue
            top = max(rows, key=lambda r: r["psi"])
            if top["psi"] >= PSI_SHIFT:
                sentence = (
                    f"model change: {model} moved against the canary in window "
                    f"{format_window(top['window_start'])} (PSI of its score gap {top['psi']:.2f})"
                )
                if top["window_start"] in drifted:
                    sentence += "; the inputs drifted then too, so part of it may be the model's "
                    sentence += "response to new inputs"
                out.append(sentence)
            else:
                out.append(f"{model} steady against the canary (max gap PSI {top['psi']:.2f})")
    out += feature_verdicts(ev)
    return out


# `replay.evaluate` is this function once replay/__init__.py re-exports it, which hides this

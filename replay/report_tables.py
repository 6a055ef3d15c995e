"""The report's tables: the columns shown and how a value is written, shared by the text summary
and the HTML page (`replay.report`), and the rows of its provenance, label maturity and input
feature drift blocks.

A column is `(header, function of the row -> text)`. `html_table` wraps every table in a
``<div class="scroll">`` (``overflow-x:auto``), so a wide table scrolls instead of widening the
page. `role_name` writes a model with its role without repeating a word ("champion", not
"champion champion"); `tex` escapes the ``$`` that would start mathtext in a matplotlib label.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable
from typing import Any

from . import report_curves as curves
from .evaluation import PSI_ALERT, PSI_SHIFT, Evaluation, format_window
from .evaluation.feature_drift import summary_rows as feature_summary_rows
from .evaluation.maturity import RATE_FLOOR

Column = tuple[str, Callable[[dict[str, Any]], str]]


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    if isinstance(value, dt.datetime):
        return format_window(value)
    return str(value)


def pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def utc(value: dt.datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.1f} h"


def with_ci(row: dict[str, Any], name: str) -> str:
    value, low, high = row.get(name), row.get(f"{name}_low"), row.get(f"{name}_high")
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value:+.3f}"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def col(header: str, key: str, fmt_: Callable[[Any], str] = fmt) -> Column:
    return header, lambda row: fmt_(row.get(key))


def spec(columns: curves.Spec) -> list[Column]:
    """`report_curves` columns, (header, key, "num" | "pct"), as table columns."""
    return [col(header, key, pct if kind == "pct" else fmt) for header, key, kind in columns]


def tex(name: Any) -> str:
    """`name` as matplotlib label text: a ``$`` is a dollar sign, never the start of mathtext."""
    return str(name).replace("$", r"\$")


def role_name(role: str, model: str | None) -> str:
    """A model with its role, without saying the role twice: "champion m1", but "champion" (or
    "champion@scores") for a model named after its role; "no champion" without one."""
    if model is None:
        return f"no {role}"
    if model.split("@", 1)[0] == role:
        return model
    return f"{role} {model}"


# ---- the evaluation's tables ---------------------------------------------------------------


def quality_columns(task: str) -> list[Column]:
    if task == "classification":
        return [
            col("labeled", "n_labeled"),
            col("AUC", "auc"),
            col("log loss", "log_loss"),
            col("Brier", "brier"),
            col("accuracy", "accuracy"),
            col("precision", "precision"),
            col("recall", "recall"),
        ]
    return [col("labeled", "n_labeled"), col("MAE", "mae"), col("RMSE", "rmse"), col("bias", "bias")]


def _labels(mature: Any) -> str:
    return "-" if mature is None else ("mature" if mature else "provisional")


def by_window_columns(task: str) -> list[Column]:
    """The per-window quality table; `labels` marks a window whose labels are immature."""
    return [
        col("model", "model"),
        col("window", "window_start"),
        col("labels", "mature", _labels),
        *quality_columns(task),
    ]


LATENCY = [
    col("latency n", "latency_n"),
    col("p50 ms", "latency_p50", lambda v: fmt(v, 1)),
    col("p95 ms", "latency_p95", lambda v: fmt(v, 1)),
    col("p99 ms", "latency_p99", lambda v: fmt(v, 1)),
]


def overview_columns(task: str) -> list[Column]:
    return [
        col("model", "model"),
        col("source", "sources"),
        col("n", "n"),
        col("coverage", "coverage", pct),
        *LATENCY[1:3],
        *[c for c in quality_columns(task) if c[0] in ("labeled", "AUC", "log loss", "RMSE")],
    ]


def paired_columns(task: str) -> list[Column]:
    quality = (
        [("AUC delta", "auc_delta"), ("log loss delta", "log_loss_delta"), ("Brier delta", "brier_delta")]
        if task == "classification"
        else [("MAE delta", "mae_delta"), ("RMSE delta", "rmse_delta")]
    )
    return [
        col("model", "model"),
        col("vs", "reference_role"),
        col("paired", "n_paired"),
        ("mean delta", lambda r: with_ci(r, "mean_delta")),
        ("disagreement", lambda r: with_ci(r, "disagreement")),
        ("Spearman", lambda r: with_ci(r, "spearman")),
        *[(header, lambda r, key=key: with_ci(r, key)) for header, key in quality],
    ]


def drift_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """One row per model: distribution vs champion, and the worst window vs its first window."""
    rows: dict[str, dict[str, Any]] = {m: {"model": m} for m in ev.models}
    for r in ev.drift.to_pylist():
        out = rows.setdefault(r["model"], {"model": r["model"]})
        if r["kind"] == "vs_champion" and r["window_start"] is None:
            out.update(psi_champion=r["psi"], flag_champion=r["psi_flag"], ks=r["ks"], wasserstein=r["wasserstein"])
        elif r["kind"] in ("vs_first_window", "gap_vs_first_window") and r["psi"] is not None:
            key = "time" if r["kind"] == "vs_first_window" else "gap"
            if r["psi"] > (out.get(f"psi_{key}") or -1.0):
                out[f"psi_{key}"] = r["psi"]
                out[f"window_{key}"] = r["window_start"]
    return [rows[m] for m in sorted(rows)]


DRIFT = [
    col("model", "model"),
    col("PSI vs champion", "psi_champion"),
    col("flag", "flag_champion"),
    col("KS", "ks"),
    col("Wasserstein", "wasserstein"),
    col("max PSI vs 1st window", "psi_time"),
    col("in window", "window_time"),
    col("max gap PSI vs canary", "psi_gap"),
    col("in window", "window_gap"),
]


def topic_words(scores: list[str], outcomes: str | None, inputs: str | None) -> str:
    """The topics read, each after its kind in the singular ("outcome topic outcomes", never
    "outcomes outcomes")."""
    return (
        f"score topic{'s' if len(scores) > 1 else ''} {', '.join(scores) or '-'}; "
        f"outcome topic {outcomes or '-'}; input topic {inputs or '-'}"
    )


def header_lines(ev: Evaluation) -> list[str]:
    p = ev.params
    cutoff = p.get("cutoff")
    return [
        f"task {ev.task}, {len(ev.models)} models; roles: {role_name('champion', ev.champion)}, "
        f"{role_name('canary', ev.canary)}",
        f"{topic_words(p.get('scores', []), p.get('outcomes'), p.get('inputs'))}; outcomes known by "
        f"{utc(cutoff) if cutoff else '-'}",
        f"window {p.get('window')}, threshold {p.get('threshold')}, "
        f"bootstrap {p.get('bootstrap')} (seed {p.get('seed')}), 95% intervals over windows",
    ]


# ---- label maturity ------------------------------------------------------------------------

MATURITY = [
    col("window", "window_start"),
    col("requests", "n_requests"),
    col("labeled", "n_labeled"),
    col("label rate", "label_rate", pct),
    col("vs typical", "rate_vs_typical", pct),
    col("labels", "mature", _labels),
    col("why", "reason"),
]


def maturity_note(ev: Evaluation) -> str:
    """The label delay measured and the rule that made windows provisional."""
    rows = ev.label_maturity.to_pylist()
    if ev.params.get("outcomes") is None:
        return "no outcomes topic: label maturity not measured"
    if not rows or rows[0]["delay_p90_s"] is None:
        return "no outcome known by the cut-off: the label delay is unknown"
    r = rows[0]
    return (
        f"label delay (outcome append time - request time): p50 {hours(r['delay_p50_s'])}, "
        f"p90 {hours(r['delay_p90_s'])}, max {hours(r['delay_max_s'])}. A window is provisional when its end "
        f"+ the p90 delay is after the cut-off (why: delay), or its label rate is under {RATE_FLOOR:.0%} of the "
        "typical rate (the median of the windows mature by delay) while a label could still arrive for it "
        "(why: rate)"
    )


# ---- input feature drift -------------------------------------------------------------------

FEATURES = [
    col("feature", "feature"),
    col("kind", "kind"),
    col("reference window", "reference_window"),
    col("windows", "windows"),
    col("max PSI", "psi_max"),
    col("in window", "window_max"),
    col("flag", "psi_flag"),
    col("last PSI", "psi_last"),
    col("missing (last)", "missing_last", pct),
]


def feature_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """One row per input feature, worst drift first (ties: by name)."""
    return sorted(feature_summary_rows(ev.feature_drift), key=lambda r: (-r["psi_max"], r["feature"]))


def feature_flags(ev: Evaluation, most: int = 50) -> list[str]:
    """A line per (feature, window) at or above the shift level, worst first (the `most` worst)."""
    rows = [r for r in ev.feature_drift.to_pylist() if r["psi_flag"] in ("shift", "alert")]
    rows.sort(key=lambda r: (-r["psi"], r["feature"], r["window_start"]))
    out = [
        f"{r['psi_flag']}: {r['feature']} PSI {r['psi']:.2f} in window {format_window(r['window_start'])} "
        f"vs {format_window(r['reference_window'])}"
        for r in rows[:most]
    ]
    if len(rows) > most:
        out.append(f"... and {len(rows) - most} more")
    return out


def feature_note(ev: Evaluation) -> str:
    if ev.params.get("inputs") is None:
        return "no inputs topic: input feature drift not measured (evaluate(inputs=...), --inputs)"
    return (
        f"PSI of each input feature, each window against the feature's first window; flags: shift at "
        f"{PSI_SHIFT}, alert at {PSI_ALERT}. Numeric features are binned by the first window's deciles "
        "(the rule of the score PSI), categorical ones by value; a missing value is a bin of its own"
    )


# ---- provenance ----------------------------------------------------------------------------

PROVENANCE_MODELS = [
    col("model", "model"),
    col("source", "sources"),
    col("versions", "versions"),
    col("runs", "run_ids"),
    col("code versions", "code_versions"),
]
PROVENANCE_RUNS = [
    col("run", "run_id"),
    col("status", "status"),
    col("audit", "audit"),
    col("content hash", "content_hash"),
    col("code version", "code_version"),
    col("model hashes", "model_hashes"),
]


def provenance_lines(ev: Evaluation) -> list[str]:
    """The provenance's scalar facts, one line each."""
    p = ev.provenance
    fmt_ = "-" if p.log_format is None else str(p.log_format)
    where = p.log_path or "- (a DuckDB connection)"
    return [
        f"log        {where} (logstore {p.logstore_version or '-'}, log format {fmt_})",
        f"cut-off    {utc(p.cutoff)}; window {p.window or '-'}",
        f"generated  {utc(p.generated)} by {p.generated_by or '-'}",
        f"topics     {topic_words(p.score_topics, p.outcomes, p.inputs)}",
    ]


def _joined(values: Any) -> str:
    if isinstance(values, dict):
        return ", ".join(f"{k} {v or '-'}" for k, v in values.items()) or "-"
    return ", ".join(values) or "-"


def provenance_model_rows(ev: Evaluation) -> list[dict[str, Any]]:
    return [
        {
            "model": m.model,
            "sources": _joined(m.sources),
            "versions": _joined(m.versions),
            "run_ids": _joined(m.run_ids),
            "code_versions": _joined(m.code_versions),
        }
        for m in ev.provenance.models
    ]


def provenance_run_rows(ev: Evaluation) -> list[dict[str, Any]]:
    rows = []
    for r in ev.provenance.runs:
        status = r.status + (f" ({r.error})" if r.error else "")
        rows.append({**r.__dict__, "status": status, "model_hashes": _joined(r.model_hashes)})
    return rows


# ---- rendering -----------------------------------------------------------------------------


def text_table(columns: list[Column], rows: list[dict[str, Any]]) -> str:
    headers = [h for h, _ in columns]
    cells = [[fn(r) for _, fn in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        out = []
        for i, v in enumerate(values):
            numeric = i > 0 and (v[:1].isdigit() or v[:1] in "+-")
            out.append(v.rjust(widths[i]) if numeric else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(c) for c in cells)]) if rows else "(none)"


def scroll(inner: str) -> str:
    """`inner` (tables) in a box that scrolls sideways when it is wider than the page."""
    return f"<div class='scroll'>{inner}</div>"


def html_table(columns: list[Column], rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class='meta'>(none)</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fn(r))}</td>" for _, fn in columns) + "</tr>" for r in rows)
    return scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def meta(text: str) -> str:
    return f"<p class='meta'>{html.escape(text)}</p>"


def items(lines: list[str], empty: str = "(none)") -> str:
    return (
        "<ul class='verdicts'>"
        + ("".join(f"<li>{html.escape(v)}</li>" for v in lines) or f"<li>{empty}</li>")
        + "</ul>"
    )

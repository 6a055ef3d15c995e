"""Reports of an `Evaluation`: a plain-text summary for the terminal and a self-contained HTML page.

    print(replay.report.summary(ev))
    replay.report.write_html(ev, "report.html")

The HTML page needs nothing but a browser: CSS is inline and the plots are PNGs embedded as
`data:` URIs, so it can be mailed, archived next to a run, or opened offline. Sections carry
stable ids (`overview`, `quality`, `paired`, `drift`, `latency`) and so do the plots
(`plot-scores`, `plot-calibration`, `plot-latency`, `plot-psi`). Plots are drawn with matplotlib's
object API on an Agg canvas, so writing a report never switches the backend of a notebook.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from logstore.errors import LogIOError

from . import report_sections as live
from .evaluation import PSI_ALERT, PSI_SHIFT, Evaluation, format_window

__all__ = ["summary", "write_html", "SECTIONS", "PLOTS"]

SECTIONS = ("overview", "quality", "paired", "drift", "latency")
PLOTS = ("plot-scores", "plot-calibration", "plot-latency", "plot-psi")
# present when given: the deployment timeline, the counterfactual, off-policy values
LIVE_SECTIONS = ("deployment", "counterfactual", "ope")
LIVE_PLOTS = ("plot-timeline",)


# ---- columns shown, shared by the text and HTML tables ---------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
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


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def _with_ci(row: dict[str, Any], name: str) -> str:
    value, low, high = row.get(name), row.get(f"{name}_low"), row.get(f"{name}_high")
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value:+.3f}"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


Column = tuple[str, Callable[[dict[str, Any]], str]]


def _col(header: str, key: str, fmt: Callable[[Any], str] = _fmt) -> Column:
    return header, lambda row: fmt(row.get(key))


def _quality_columns(task: str) -> list[Column]:
    if task == "classification":
        return [
            _col("labeled", "n_labeled"),
            _col("AUC", "auc"),
            _col("log loss", "log_loss"),
            _col("Brier", "brier"),
            _col("accuracy", "accuracy"),
            _col("precision", "precision"),
            _col("recall", "recall"),
        ]
    return [_col("labeled", "n_labeled"), _col("MAE", "mae"), _col("RMSE", "rmse"), _col("bias", "bias")]


_LATENCY = [
    _col("latency n", "latency_n"),
    _col("p50 ms", "latency_p50", lambda v: _fmt(v, 1)),
    _col("p95 ms", "latency_p95", lambda v: _fmt(v, 1)),
    _col("p99 ms", "latency_p99", lambda v: _fmt(v, 1)),
]


def _overview_columns(task: str) -> list[Column]:
    return [
        _col("model", "model"),
        _col("source", "sources"),
        _col("n", "n"),
        _col("coverage", "coverage", _pct),
        *_LATENCY[1:3],
        *[c for c in _quality_columns(task) if c[0] in ("labeled", "AUC", "log loss", "RMSE")],
    ]


def _paired_columns(task: str) -> list[Column]:
    quality = (
        [("AUC delta", "auc_delta"), ("log loss delta", "log_loss_delta"), ("Brier delta", "brier_delta")]
        if task == "classification"
        else [("MAE delta", "mae_delta"), ("RMSE delta", "rmse_delta")]
    )
    return [
        _col("model", "model"),
        _col("vs", "reference_role"),
        _col("paired", "n_paired"),
        ("mean delta", lambda r: _with_ci(r, "mean_delta")),
        ("disagreement", lambda r: _with_ci(r, "disagreement")),
        ("Spearman", lambda r: _with_ci(r, "spearman")),
        *[(header, lambda r, key=key: _with_ci(r, key)) for header, key in quality],
    ]


def _drift_rows(ev: Evaluation) -> list[dict[str, Any]]:
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


_DRIFT = [
    _col("model", "model"),
    _col("PSI vs champion", "psi_champion"),
    _col("flag", "flag_champion"),
    _col("KS", "ks"),
    _col("Wasserstein", "wasserstein"),
    _col("max PSI vs 1st window", "psi_time"),
    _col("in window", "window_time"),
    _col("max gap PSI vs canary", "psi_gap"),
    _col("in window", "window_gap"),
]


# ---- text ----------------------------------------------------------------------------------


def _text_table(columns: list[Column], rows: list[dict[str, Any]]) -> str:
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


def _header_lines(ev: Evaluation) -> list[str]:
    p = ev.params
    cutoff = p.get("cutoff")
    cutoff_s = cutoff.strftime("%Y-%m-%d %H:%M:%S UTC") if cutoff else "-"
    return [
        f"task {ev.task}, {len(ev.models)} models, champion {ev.champion or '-'}, canary {ev.canary or '-'}",
        f"scores {', '.join(p.get('scores', []))}; outcomes {p.get('outcomes') or '-'} "
        f"(known by {cutoff_s}); inputs {p.get('inputs') or '-'}",
        f"window {p.get('window')}, threshold {p.get('threshold')}, "
        f"bootstrap {p.get('bootstrap')} (seed {p.get('seed')}), 95% intervals over windows",
    ]


def summary(evaluation: Evaluation) -> str:
    """The evaluation as plain-text tables and verdict sentences, for a terminal."""
    ev = evaluation
    overall = ev.overall.to_pylist()
    parts = [
        "Evaluation",
        *_header_lines(ev),
        "",
        "Models",
        _text_table(_overview_columns(ev.task), overall),
        "",
        "Quality",
        _text_table([_col("model", "model"), *_quality_columns(ev.task)], overall),
        "",
        "Latency",
        _text_table([_col("model", "model"), *_LATENCY], overall),
        "",
        "Paired (model - reference, 95% block-bootstrap interval)",
        _text_table(_paired_columns(ev.task), ev.paired.to_pylist()),
        "",
        f"Drift (PSI: shift >= {PSI_SHIFT}, alert >= {PSI_ALERT})",
        _text_table(_DRIFT, _drift_rows(ev)),
        "",
        "Verdicts",
        *(f"- {v}" for v in ev.verdicts or ["(none)"]),
    ]
    return "\n".join(parts) + "\n"


# ---- plots ---------------------------------------------------------------------------------


def _figure():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the HTML report draws its plots with matplotlib: pip install 'logstore[report]'") from exc
    fig = Figure(figsize=(7.5, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _no_data(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def _histogram_plot(ev: Evaluation, column: str, xlabel: str, title: str) -> str:
    fig, ax = _figure()
    rows = [r for r in ev.histograms.to_pylist() if r["column"] == column]
    if not rows:
        _no_data(ax, f"no {xlabel} recorded")
    for model in sorted({r["model"] for r in rows}):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["bin"])
        total = sum(r["n"] for r in mine)
        # bins a model has no values in are absent from the table: rebuild the full grid
        width = (mine[0]["bin_hi"] - mine[0]["bin_lo"]) or 1.0
        lo = mine[0]["bin_lo"] - mine[0]["bin"] * width
        counts = {r["bin"]: r["n"] / total for r in mine}
        nbins = max(counts) + 1
        edges = [lo + i * width for i in range(nbins + 1)]
        ax.stairs([counts.get(i, 0.0) for i in range(nbins)], edges, label=model, linewidth=1.5)
    ax.set(title=title, xlabel=xlabel, ylabel="share of rows")
    if rows:
        ax.legend(fontsize="small")
    return _png(fig)


def _calibration_plot(ev: Evaluation) -> str:
    fig, ax = _figure()
    rows = ev.calibration.to_pylist()
    if not rows:
        _no_data(ax, "no outcomes known by the cut-off")
    else:
        lo = min(r["bin_lo"] for r in rows)
        hi = max(r["bin_hi"] for r in rows)
        ax.plot([lo, hi], [lo, hi], color="#999", linestyle="--", linewidth=1, label="ideal")
        for model in sorted({r["model"] for r in rows}):
            mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["bin"])
            ax.plot(
                [r["mean_score"] for r in mine], [r["mean_label"] for r in mine], marker="o", markersize=3, label=model
            )
        ax.legend(fontsize="small")
    what = "observed rate" if ev.task == "classification" else "mean label"
    ax.set(title="Calibration (reliability diagram)", xlabel="mean score in bin", ylabel=what)
    return _png(fig)


def _psi_plot(ev: Evaluation) -> str:
    fig, ax = _figure()
    rows = [r for r in ev.drift.to_pylist() if r["kind"] == "vs_first_window"]
    if len({r["window_start"] for r in rows}) < 2:
        _no_data(ax, "one window only: nothing to compare over time")
    else:
        for model in sorted({r["model"] for r in rows}):
            mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["window_start"])
            is_canary = model == ev.canary
            label = f"{model} (canary)" if is_canary and model != "canary" else model
            ax.plot(
                [r["window_start"] for r in mine],
                [r["psi"] for r in mine],
                marker="o",
                markersize=3,
                label=label,
                linewidth=2.5 if is_canary else 1.2,
            )
        ax.axhline(PSI_SHIFT, color="#d9a400", linestyle=":", linewidth=1, label="shift")
        ax.axhline(PSI_ALERT, color="#c0392b", linestyle=":", linewidth=1, label="alert")
        ax.legend(fontsize="small")
        fig.autofmt_xdate()
    ax.set(title="Score PSI against each model's first window", xlabel="window", ylabel="PSI")
    return _png(fig)


def _timeline_plot(ev: Evaluation, events: list[live.Event]) -> str:
    """Per-window quality and latency p99 of every model, the deployment events on the same axis."""
    import matplotlib.figure

    fig = matplotlib.figure.Figure(figsize=(9, 5.5), dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True)
    metric = "log_loss" if ev.task == "classification" else "mae"
    rows = ev.by_window.to_pylist()
    for model in sorted({r["model"] for r in rows}):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["window_start"])
        x = [r["window_start"] for r in mine]
        top.plot(x, [r.get(metric) for r in mine], marker="o", markersize=3, label=model)
        bottom.plot(x, [r.get("latency_p99") for r in mine], marker="o", markersize=3, label=model)
    for ax in (top, bottom):
        live.draw_events(ax, events)
    if rows:
        top.legend(fontsize="small")
    top.set(title="Quality and latency per window, with the deployment steps", ylabel=metric.replace("_", " "))
    bottom.set(xlabel="window", ylabel="latency p99 (ms)")
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)


# ---- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}table{border-collapse:collapse;margin:.6rem 0;font-size:13px}
th,td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}
.verdicts li{margin:.2rem 0}.meta{color:#555}img{max-width:100%;display:block;margin:.8rem 0}
nav a{margin-right:1rem}
"""


def _html_table(columns: list[Column], rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class='meta'>(none)</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fn(r))}</td>" for _, fn in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(plot_id: str, src: str, alt: str) -> str:
    return f'<img id="{plot_id}" alt="{html.escape(alt)}" src="{src}">'


def _section(sid: str, title: str, *body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{"".join(body)}</section>'


def render_html(
    evaluation: Evaluation,
    *,
    deployment: list[live.Event] | None = None,
    counterfactual: Any = None,
    ope: dict[str, Any] | None = None,
) -> str:
    """The report as one HTML string (what `write_html` writes). `deployment` (events of
    `report_sections.deployment_events`), `counterfactual` (a `replay.counterfactual` result) and
    `ope` (target policy name -> `replay.ope` result) add their sections when given."""
    ev = evaluation
    overall = ev.overall.to_pylist()
    quality_by_window = [_col("model", "model"), _col("window", "window_start"), *_quality_columns(ev.task)]
    verdicts = "".join(f"<li>{html.escape(v)}</li>" for v in ev.verdicts) or "<li>(none)</li>"
    extra = _live_sections(ev, deployment, counterfactual, ope)
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in (*SECTIONS, *(sid for sid, _ in extra)))
    sections = [
        _section(
            "overview",
            "Overview",
            "".join(f"<p class='meta'>{html.escape(line)}</p>" for line in _header_lines(ev)),
            f"<h3>Verdicts</h3><ul class='verdicts'>{verdicts}</ul>",
            _html_table(_overview_columns(ev.task), overall),
        ),
        _section(
            "quality",
            "Quality against outcomes",
            _html_table([_col("model", "model"), *_quality_columns(ev.task)], overall),
            _img("plot-calibration", _calibration_plot(ev), "calibration curve per model"),
            "<h3>Per window</h3>",
            _html_table(quality_by_window, ev.by_window.to_pylist()),
        ),
        _section(
            "paired",
            "Paired comparisons (model - reference, same requests)",
            "<p class='meta'>95% intervals from a block bootstrap that resamples whole windows.</p>",
            _html_table(_paired_columns(ev.task), ev.paired.to_pylist()),
        ),
        _section(
            "drift",
            "Score distributions and drift",
            f"<p class='meta'>PSI flags: shift at {PSI_SHIFT}, alert at {PSI_ALERT}. The canary is "
            "frozen, so its movement over time is input drift; a model's gap to the canary moving "
            "is a model change.</p>",
            _html_table(_DRIFT, _drift_rows(ev)),
            _img(
                "plot-scores", _histogram_plot(ev, "score", "score", "Score distribution"), "score histogram per model"
            ),
            _img("plot-psi", _psi_plot(ev), "PSI over time per model"),
        ),
        _section(
            "latency",
            "Latency",
            _html_table([_col("model", "model"), *_LATENCY], overall),
            _img(
                "plot-latency",
                _histogram_plot(ev, "latency_ms", "latency (ms)", "Latency distribution (top 1% in the last bin)"),
                "latency histogram per model",
            ),
        ),
        *(body for _, body in extra),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>logstore evaluation</title><style>{_CSS}</style></head><body>"
        f"<h1>Model evaluation</h1><nav>{nav}</nav>{''.join(sections)}</body></html>\n"
    )


def _live_sections(
    ev: Evaluation, deployment: list[live.Event] | None, counterfactual: Any, ope: dict[str, Any] | None
) -> list[tuple[str, str]]:
    out = []
    if deployment is not None:
        timeline = [_col("appended (UTC)", "time"), _col("step", "step"), _col("who", "who"), _col("why", "why")]
        out.append(
            (
                "deployment",
                _section(
                    "deployment",
                    "Deployment timeline",
                    "<p class='meta'>Every control record (deploy, ramp, promote, retire, swap, refusal) at its "
                    "append time, on the time axis of the per-window quality and latency.</p>",
                    _img("plot-timeline", _timeline_plot(ev, deployment), "quality and latency with deployment steps"),
                    _html_table(timeline, live.timeline_rows(deployment)),
                ),
            )
        )
    if counterfactual is not None:
        out.append(
            (
                "counterfactual",
                _section(
                    "counterfactual",
                    "Counterfactual rendezvous (recorded arrivals, another schedule or SLA)",
                    live.counterfactual_section(counterfactual),
                ),
            )
        )
    if ope is not None:
        out.append(
            (
                "ope",
                _section(
                    "ope",
                    "Off-policy evaluation (logged propensities, outcomes known by the cut-off)",
                    live.ope_section(ope),
                ),
            )
        )
    return out


def write_html(
    evaluation: Evaluation,
    path: str | Path,
    *,
    deployment: list[live.Event] | None = None,
    counterfactual: Any = None,
    ope: dict[str, Any] | None = None,
) -> Path:
    """Write the self-contained HTML report to `path` (parents created); returns the path.
    The keyword arguments add the live-side sections (`render_html`)."""
    path = Path(path)
    text = render_html(evaluation, deployment=deployment, counterfactual=counterfactual, ope=ope)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # readers never see half a report
    except OSError as exc:
        raise LogIOError(f"writing the HTML report to {path}: {exc}") from exc
    return path

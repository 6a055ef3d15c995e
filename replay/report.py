"""Reports of an `Evaluation`: a plain-text summary for the terminal and a self-contained HTML page.

    print(replay.report.summary(ev))
    replay.report.write_html(ev, "report.html")

The HTML page needs nothing but a browser: CSS is inline and the plots are PNGs embedded as
`data:` URIs, so it can be mailed, archived next to a run, or opened offline. Sections carry
stable ids (`SECTIONS`: overview, quality, paired, drift, feature-drift, latency, provenance) and
so do the plots (`PLOTS`). Plots are drawn with matplotlib's object API on an Agg canvas
(`report_plots`), so writing a report never switches the backend of a notebook; model names reach
matplotlib with ``$`` escaped (`report_tables.tex`). Every table sits in a box that scrolls
sideways (`report_tables.html_table`).

Classification reports add ROC and precision-recall curves, lift, a confusion matrix per model
and the calibration bins with their counts (`report_curves`); the calibration plot draws the
Wilson 95% interval of each bin's label rate. The matrices' threshold is chosen by
`confusion_at`: "max_f1" (default, the score maximising each model's F1) or "given" (the
evaluation's threshold); threshold metrics that mean nothing are flagged among the verdicts.
Windows whose labels have not all arrived are marked provisional (`Evaluation.label_maturity`).
Histograms use a log count axis where the tail matters (`log_y`): latency always, scores when a
model's skewness exceeds `SKEWED` in size; latency bins are log-spaced when max / p50 > 20.
`report_json` gives the same numbers as one JSON document, `report_gate` the `--fail-on` rules.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from logstore.errors import LogIOError

from . import report_curves as curves
from . import report_sections as live
from . import report_tables as t
from .evaluation import PSI_ALERT, PSI_SHIFT, Evaluation
from .report_plots import figure as _figure
from .report_plots import no_data as _no_data
from .report_plots import png as _png
from .report_tables import drift_rows

__all__ = ["summary", "write_html", "render_html", "drift_rows", "SECTIONS", "PLOTS"]

SECTIONS = ("overview", "quality", "paired", "drift", "feature-drift", "latency", "provenance")
PLOTS = ("plot-scores", "plot-calibration", "plot-roc", "plot-pr", "plot-latency", "plot-psi")
SKEWED = 2.0  # |sample skewness| of a model's scores above which the score histogram is log-scaled
# present when given: the deployment timeline, the counterfactual, off-policy values
LIVE_SECTIONS = ("deployment", "counterfactual", "ope")
LIVE_PLOTS = ("plot-timeline",)


def _notes(ev: Evaluation) -> list[str]:
    """The verdicts, then a warning per threshold metric that says nothing (`report_curves`)."""
    return [*ev.verdicts, *(f"warning: {w}" for w in curves.threshold_warnings(ev))]


# ---- text ----------------------------------------------------------------------------------


def _curve_text(ev: Evaluation, confusion_at: str) -> list[str]:
    calibration = ["", "Calibration (score bins with their row counts)"]
    calibration.append(t.text_table(t.spec(curves.CALIBRATION), curves.calibration_rows(ev)))
    if ev.task != "classification":
        return calibration
    return [
        "",
        "Ranking (ROC and precision-recall; lift of the top 10% of scores)",
        t.text_table(t.spec(curves.RANKING), curves.ranking_rows(ev)),
        "",
        "Confusion matrices",
        curves.rule_sentence(ev, confusion_at),
        t.text_table(t.spec(curves.CONFUSION), curves.confusion_rows(ev, confusion_at)),
        *calibration,
    ]


def _provenance_text(ev: Evaluation) -> list[str]:
    return [
        "",
        "Provenance",
        *t.provenance_lines(ev),
        t.text_table(t.PROVENANCE_MODELS, t.provenance_model_rows(ev)),
        "runs:",
        t.text_table(t.PROVENANCE_RUNS, t.provenance_run_rows(ev)),
    ]


def summary(evaluation: Evaluation, *, confusion_at: str = "max_f1") -> str:
    """The evaluation as plain-text tables and verdict sentences, for a terminal. The confusion
    matrices are at the threshold `confusion_at` picks ("max_f1" or "given", `report_curves`)."""
    ev = evaluation
    overall = ev.overall.to_pylist()
    parts = [
        "Evaluation",
        *t.header_lines(ev),
        "",
        "Models",
        t.text_table(t.overview_columns(ev.task), overall),
        "",
        "Quality",
        t.text_table([t.col("model", "model"), *t.quality_columns(ev.task)], overall),
        *_curve_text(ev, confusion_at),
        "",
        "Label maturity",
        t.maturity_note(ev),
        t.text_table(t.MATURITY, ev.label_maturity.to_pylist()),
        "",
        "Latency",
        t.text_table([t.col("model", "model"), *t.LATENCY], overall),
        "",
        "Paired (model - reference, 95% block-bootstrap interval)",
        t.text_table(t.paired_columns(ev.task), ev.paired.to_pylist()),
        "",
        f"Drift (PSI: shift >= {PSI_SHIFT}, alert >= {PSI_ALERT})",
        t.text_table(t.DRIFT, drift_rows(ev)),
        "",
        "Input feature drift",
        t.feature_note(ev),
        t.text_table(t.FEATURES, t.feature_rows(ev)),
        *_provenance_text(ev),
        "",
        "Verdicts",
        *(f"- {v}" for v in _notes(ev) or ["(none)"]),
    ]
    return "\n".join(parts) + "\n"


# ---- plots ---------------------------------------------------------------------------------


def _edges(rows: list[dict[str, Any]]) -> list[float]:
    """The bin edges of one column's histogram (every model's rows): bins no model has values in
    are absent from the table, so the grid is rebuilt, equal-width or geometric (`log_x`)."""
    first = min(rows, key=lambda r: r["bin"])
    nbins = max(r["bin"] for r in rows) + 1
    if first.get("log_x") and first["bin_lo"] > 0:
        ratio = first["bin_hi"] / first["bin_lo"]
        return [first["bin_lo"] * ratio ** (i - first["bin"]) for i in range(nbins + 1)]
    width = (first["bin_hi"] - first["bin_lo"]) or 1.0
    lo = first["bin_lo"] - first["bin"] * width
    return [lo + i * width for i in range(nbins + 1)]


def log_y(ev: Evaluation, column: str) -> bool:
    """Whether a histogram's count axis is logarithmic: always for latency (its tail is the point),
    for scores when any model's sample skewness exceeds `SKEWED` in size (a pile of scores near 0
    or 1 would flatten every other bin)."""
    if column == "latency_ms":
        return True
    skews = [r.get("skewness") for r in ev.histograms.to_pylist() if r["column"] == column]
    return any(s is not None and abs(s) > SKEWED for s in skews)


def _histogram_plot(ev: Evaluation, column: str, xlabel: str, title: str) -> str:
    fig, ax = _figure()
    rows = [r for r in ev.histograms.to_pylist() if r["column"] == column]
    if not rows:
        _no_data(ax, f"no {xlabel} recorded")
        ax.set(title=title, xlabel=xlabel, ylabel="share of rows")
        return _png(fig)
    edges = _edges(rows)
    logged = log_y(ev, column)
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        total = sum(r["n"] for r in mine)
        counts = {r["bin"]: r["n"] / total for r in mine}
        shares = [counts.get(i, 0.0) for i in range(len(edges) - 1)]
        ax.stairs(shares, edges, label=t.tex(model), linewidth=1.5, baseline=None if logged else 0)
    if rows[0].get("log_x"):
        ax.set_xscale("log")
        title += ", log-spaced bins"
    elif column == "latency_ms":
        title += " (top 1% in the last bin)"
    if logged:
        ax.set_yscale("log")
        title += ", log scale"
    ax.set(title=title, xlabel=xlabel, ylabel="share of rows")
    ax.legend(fontsize="small")
    return _png(fig)


def _calibration_plot(ev: Evaluation) -> str:
    """Mean label against mean score per bin; bars: the Wilson 95% interval of the label rate."""
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
            x, y = [r["mean_score"] for r in mine], [r["mean_label"] for r in mine]
            (line,) = ax.plot(x, y, marker="o", markersize=3, label=t.tex(model))
            bars = [r for r in mine if r.get("mean_label_low") is not None and r.get("mean_label_high") is not None]
            if bars:
                ax.errorbar(
                    [r["mean_score"] for r in bars],
                    [r["mean_label"] for r in bars],
                    yerr=[
                        [max(r["mean_label"] - r["mean_label_low"], 0.0) for r in bars],
                        [max(r["mean_label_high"] - r["mean_label"], 0.0) for r in bars],
                    ],
                    fmt="none",
                    ecolor=line.get_color(),
                    elinewidth=0.8,
                    capsize=2,
                    alpha=0.7,
                )
        ax.legend(fontsize="small")
    what = "observed rate (Wilson 95%)" if ev.task == "classification" else "mean label"
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
            label = t.role_name("canary", model) if is_canary else model
            ax.plot(
                [r["window_start"] for r in mine],
                [r["psi"] for r in mine],
                marker="o",
                markersize=3,
                label=t.tex(label),
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
        top.plot(x, [r.get(metric) for r in mine], marker="o", markersize=3, label=t.tex(model))
        bottom.plot(x, [r.get("latency_p99") for r in mine], marker="o", markersize=3, label=t.tex(model))
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
.scroll{overflow-x:auto;max-width:100%}pre{overflow-x:auto}
.verdicts li{margin:.2rem 0}.meta{color:#555}img{max-width:100%;display:block;margin:.8rem 0}
nav a{margin-right:1rem}
"""


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
    confusion_at: str = "max_f1",
) -> str:
    """The report as one HTML string (what `write_html` writes). `deployment` (events of
    `report_sections.deployment_events`), `counterfactual` (a `replay.counterfactual` result) and
    `ope` (target policy name -> `replay.ope` result) add their sections when given;
    `confusion_at` picks the confusion matrices' threshold (see `summary`)."""
    ev = evaluation
    overall = ev.overall.to_pylist()
    extra = _live_sections(ev, deployment, counterfactual, ope)
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in (*SECTIONS, *(sid for sid, _ in extra)))
    latency_title = "Latency distribution"
    sections = [
        _section(
            "overview",
            "Overview",
            "".join(t.meta(line) for line in t.header_lines(ev)),
            f"<h3>Verdicts</h3>{t.items(_notes(ev))}",
            t.html_table(t.overview_columns(ev.task), overall),
        ),
        _section(
            "quality",
            "Quality against outcomes",
            t.html_table([t.col("model", "model"), *t.quality_columns(ev.task)], overall),
            *_curve_html(ev, curves.check_rule(confusion_at)),
            "<h3>Label maturity</h3>",
            t.meta(t.maturity_note(ev)),
            t.html_table(t.MATURITY, ev.label_maturity.to_pylist()),
            "<h3>Per window</h3>",
            t.meta("labels: provisional where the window's labels have not all arrived by the cut-off."),
            t.html_table(t.by_window_columns(ev.task), ev.by_window.to_pylist()),
        ),
        _section(
            "paired",
            "Paired comparisons (model - reference, same requests)",
            t.meta("95% intervals from a block bootstrap that resamples whole windows."),
            t.html_table(t.paired_columns(ev.task), ev.paired.to_pylist()),
        ),
        _section(
            "drift",
            "Score distributions and drift",
            t.meta(
                f"PSI flags: shift at {PSI_SHIFT}, alert at {PSI_ALERT}. The canary is frozen, so its movement "
                "over time is input drift; a model's gap to the canary moving is a model change."
            ),
            t.html_table(t.DRIFT, drift_rows(ev)),
            _img(
                "plot-scores", _histogram_plot(ev, "score", "score", "Score distribution"), "score histogram per model"
            ),
            _img("plot-psi", _psi_plot(ev), "PSI over time per model"),
        ),
        _section(
            "feature-drift",
            "Input feature drift",
            t.meta(t.feature_note(ev)),
            t.items(t.feature_flags(ev), "(no feature at the shift level)") if ev.feature_drift.num_rows else "",
            t.html_table(t.FEATURES, t.feature_rows(ev)),
        ),
        _section(
            "latency",
            "Latency",
            t.html_table([t.col("model", "model"), *t.LATENCY], overall),
            _img(
                "plot-latency",
                _histogram_plot(ev, "latency_ms", "latency (ms)", latency_title),
                "latency histogram per model",
            ),
        ),
        _section(
            "provenance",
            "Provenance",
            "".join(t.meta(line) for line in t.provenance_lines(ev)),
            t.html_table(t.PROVENANCE_MODELS, t.provenance_model_rows(ev)),
            "<h3>Replay runs</h3>",
            t.meta("status as the run's manifest records it; audit: replay audit LOG RUN_ID certifies a run."),
            t.html_table(t.PROVENANCE_RUNS, t.provenance_run_rows(ev)),
        ),
        *(body for _, body in extra),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>logstore evaluation</title><style>{_CSS}</style></head><body>"
        f"<h1>Model evaluation</h1><nav>{nav}</nav>{''.join(sections)}</body></html>\n"
    )


def _curve_html(ev: Evaluation, confusion_at: str) -> list[str]:
    """The quality section's curves: ROC, PR, lift, confusion matrices, calibration with counts."""
    out = []
    if ev.task == "classification":
        out += [
            "<h3>Ranking: ROC, precision-recall, lift</h3>",
            t.html_table(t.spec(curves.RANKING), curves.ranking_rows(ev)),
        ]
    out += [
        _img("plot-roc", curves.roc_plot(ev, confusion_at), "ROC curve per model"),
        _img("plot-pr", curves.pr_plot(ev, confusion_at), "precision-recall curve per model"),
    ]
    if ev.task == "classification":
        rows = curves.confusion_rows(ev, confusion_at)
        out += [
            "<h3>Confusion matrices</h3>",
            t.meta(f"{curves.rule_sentence(ev, confusion_at)}."),
            t.scroll(curves.confusion_html(rows)),
            t.html_table(t.spec(curves.CONFUSION), rows),
        ]
    return [
        *out,
        "<h3>Calibration</h3>",
        _img("plot-calibration", _calibration_plot(ev), "calibration curve per model"),
        t.html_table(t.spec(curves.CALIBRATION), curves.calibration_rows(ev)),
    ]


def _live_sections(
    ev: Evaluation, deployment: list[live.Event] | None, counterfactual: Any, ope: dict[str, Any] | None
) -> list[tuple[str, str]]:
    out = []
    if deployment is not None:
        timeline = [t.col("appended (UTC)", "time"), t.col("step", "step"), t.col("who", "who"), t.col("why", "why")]
        out.append(
            (
                "deployment",
                _section(
                    "deployment",
                    "Deployment timeline",
                    "<p class='meta'>Every control record (deploy, ramp, promote, retire, swap, refusal) at its "
                    "append time, on the time axis of the per-window quality and latency.</p>",
                    _img("plot-timeline", _timeline_plot(ev, deployment), "quality and latency with deployment steps"),
                    t.html_table(timeline, live.timeline_rows(deployment)),
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
    confusion_at: str = "max_f1",
) -> Path:
    """Write the self-contained HTML report to `path` (parents created); returns the path.
    The keyword arguments add the live-side sections and pick the confusion threshold (`render_html`)."""
    path = Path(path)
    text = render_html(
        evaluation, deployment=deployment, counterfactual=counterfactual, ope=ope, confusion_at=confusion_at
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # readers never see half a report
    except OSError as exc:
        raise LogIOError(f"writing the HTML report to {path}: {exc}") from exc
    return path

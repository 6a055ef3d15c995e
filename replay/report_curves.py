"""The report's ranking and threshold views: ROC and PR plots, confusion matrices, lift, the
calibration table, and warnings for threshold metrics that mean nothing.

    rows = confusion_rows(ev, "max_f1")     # or "given": the evaluation's own threshold
    threshold_warnings(ev)                  # ["m: threshold 0.5 predicts no positives ...", ...]

The numbers come from `Evaluation.ranking`, `.thresholds`, `.curves` and `.calibration`
(`replay.evaluation.curves`); this module only picks and words them. Table columns are
`(header, key, kind)` with kind "num" or "pct", which `replay.report` renders as text or HTML.

A threshold metric (accuracy, precision, recall at the evaluation's threshold) is flagged when it
cannot tell a model from a constant: every known outcome is of one class, a threshold predicts no
row (or every row) positive, or the accuracy is no better than always answering the majority
class. Each model gets at most one warning, the first that applies, in that order.
"""

from __future__ import annotations

import html
from typing import Any

from .errors import ReplayValueError
from .report_plots import figure, no_data, png

__all__ = [
    "CALIBRATION",
    "CONFUSION",
    "CONFUSION_RULES",
    "RANKING",
    "calibration_rows",
    "check_rule",
    "confusion_html",
    "confusion_rows",
    "pr_plot",
    "ranking_rows",
    "roc_plot",
    "rule_sentence",
    "threshold_warnings",
]

CONFUSION_RULES = ("max_f1", "given")

Spec = list[tuple[str, str, str]]

RANKING: Spec = [
    ("model", "model", "num"),
    ("labeled", "n_labeled", "num"),
    ("base rate", "base_rate", "pct"),
    ("AUC", "auc", "num"),
    ("avg precision", "average_precision", "num"),
    ("top-decile rate", "top_decile_rate", "pct"),
    ("lift (top 10%)", "lift_top_decile", "num"),
]
CONFUSION: Spec = [
    ("model", "model", "num"),
    ("threshold", "threshold", "num"),
    ("TP", "tp", "num"),
    ("FP", "fp", "num"),
    ("FN", "fn", "num"),
    ("TN", "tn", "num"),
    ("precision", "precision", "num"),
    ("recall", "recall", "num"),
    ("F1", "f1", "num"),
    ("accuracy", "accuracy", "num"),
    ("predicted +", "predicted_positive_rate", "pct"),
]
CALIBRATION: Spec = [
    ("model", "model", "num"),
    ("score bin", "bin_range", "num"),
    ("n", "n", "num"),
    ("mean score", "mean_score", "num"),
    ("observed", "mean_label", "num"),
    ("95% low", "mean_label_low", "num"),
    ("95% high", "mean_label_high", "num"),
    ("observed - score", "gap", "num"),
]


def check_rule(confusion_at: str) -> str:
    """`confusion_at` if it names a rule of `CONFUSION_RULES`, else a ReplayValueError."""
    if confusion_at not in CONFUSION_RULES:
        raise ReplayValueError(f"confusion_at must be one of {list(CONFUSION_RULES)}, not {confusion_at!r}")
    return confusion_at


def rule_sentence(ev: Any, confusion_at: str) -> str:
    """Which rule chose the confusion matrices' threshold, and its value."""
    if check_rule(confusion_at) == "given":
        return f"threshold {ev.params.get('threshold')} as given (--threshold; evaluate(threshold=...))"
    values = ", ".join(f"{r['model']} {r['threshold']:.4g}" for r in confusion_rows(ev, "max_f1"))
    return (
        f"threshold per model chosen by the rule max-F1: the score with the highest F1 on these outcomes "
        f"({values or 'no positives: none chosen'}); chosen on the data it is scored on, so optimistic. "
        "--threshold overrides it"
    )


def ranking_rows(ev: Any) -> list[dict[str, Any]]:
    """The ranking rows of the models with labelled rows."""
    return [r for r in ev.ranking.to_pylist() if r["n_labeled"]]


def confusion_rows(ev: Any, confusion_at: str) -> list[dict[str, Any]]:
    """One row per model: the confusion counts and threshold metrics at the rule's threshold."""
    rule = check_rule(confusion_at)
    return [r for r in ev.thresholds.to_pylist() if r["rule"] == rule]


def calibration_rows(ev: Any) -> list[dict[str, Any]]:
    """The calibration bins that hold rows, with their count and observed - mean score."""
    out = []
    for r in ev.calibration.to_pylist():
        gap = None if r["mean_label"] is None or r["mean_score"] is None else r["mean_label"] - r["mean_score"]
        out.append({**r, "bin_range": f"[{r['bin_lo']:.2f}, {r['bin_hi']:.2f})", "gap": gap})
    return out


def threshold_warnings(ev: Any) -> list[str]:
    """Sentences for threshold metrics (at the evaluation's threshold) that say nothing."""
    ranking = {r["model"]: r for r in ev.ranking.to_pylist()}
    best = {r["model"]: r["threshold"] for r in confusion_rows(ev, "max_f1")}
    out = []
    for r in confusion_rows(ev, "given"):
        model, t, rank = r["model"], r["threshold"], ranking.get(r["model"], {})
        n, p = rank.get("n_labeled") or 0, rank.get("n_positive") or 0
        if not n:
            continue
        base = p / n
        hint = "read AUC and average precision" + (
            f", or the confusion matrix at the max-F1 threshold {best[model]:.4g}" if model in best else ""
        )
        predicted = r["tp"] + r["fp"]
        if p in (0, n):
            what = "positive" if p else "negative"
            out.append(
                f"{model}: every one of its {n:,} known outcomes is {what}: AUC, average precision, "
                "precision and recall are undefined or trivial"
            )
        elif predicted == 0:
            out.append(
                f"{model}: threshold {t:g} predicts no positives at a {base:.1%} base rate: recall 0, "
                f"precision undefined, and accuracy {r['accuracy']:.3f} is just the share of negatives; {hint}"
            )
        elif predicted == n:
            out.append(
                f"{model}: threshold {t:g} predicts every row positive: recall 1, and precision and "
                f"accuracy {r['accuracy']:.3f} are just the base rate {base:.1%}; {hint}"
            )
        elif r["tp"] + r["tn"] <= max(p, n - p):  # counts, not rates: exact at a tie
            out.append(
                f"{model}: accuracy {r['accuracy']:.3f} at threshold {t:g} is no better than always "
                f"predicting the majority class ({max(base, 1 - base):.3f}, base rate {base:.1%}); {hint}"
            )
    return out


def confusion_html(rows: list[dict[str, Any]]) -> str:
    """A 2x2 confusion matrix per model (actual rows, predicted columns), side by side."""
    cells = []
    for r in rows:
        head = f"{html.escape(r['model'])} at {r['threshold']:.4g}"
        grid = (
            "<tr><th></th><th>predicted +</th><th>predicted -</th></tr>"
            f"<tr><th>actual +</th><td>{r['tp']:,}</td><td>{r['fn']:,}</td></tr>"
            f"<tr><th>actual -</th><td>{r['fp']:,}</td><td>{r['tn']:,}</td></tr>"
        )
        cells.append(f"<table style='display:inline-table;margin-right:1.5rem'><caption>{head}</caption>{grid}</table>")
    return "".join(cells) or "<p class='meta'>(none)</p>"


def _curve_plot(ev: Any, confusion_at: str, roc: bool) -> str:
    fig, ax = figure((5.2, 4.2))
    points = ev.curves.to_pylist()
    ranking = {r["model"]: r for r in ev.ranking.to_pylist()}
    chosen = {r["model"]: r for r in confusion_rows(ev, confusion_at)}
    if not points:
        no_data(ax, "needs 0/1 outcomes known by the cut-off" if ev.task == "classification" else "regression task")
    drawn = 0
    for model in sorted({p["model"] for p in points}):
        mine = [p for p in points if p["model"] == model]
        rank, c = ranking[model], chosen.get(model)
        name = model.replace("$", r"\$")  # a model name is text, never mathtext
        if roc:
            if rank["auc"] is None:
                continue
            label = f"{name} (AUC {rank['auc']:.3f})"
            drawn += 1
            (line,) = ax.plot([0.0] + [p["fpr"] for p in mine], [0.0] + [p["tpr"] for p in mine], label=label)
            if c is not None:
                ax.plot(c["fp"] / (c["fp"] + c["tn"]), c["recall"], "o", color=line.get_color(), markersize=5)
        else:
            if rank["average_precision"] is None:
                continue
            label = f"{name} (AP {rank['average_precision']:.3f})"
            drawn += 1
            (line,) = ax.plot([p["recall"] for p in mine], [p["precision"] for p in mine], label=label)
            ax.axhline(rank["base_rate"], color=line.get_color(), linestyle=":", linewidth=0.8)
            if c is not None and c["precision"] is not None:
                ax.plot(c["recall"], c["precision"], "o", color=line.get_color(), markersize=5)
    if points and not drawn:
        no_data(ax, "needs both a positive and a negative outcome" if roc else "needs a positive outcome")
    elif drawn:
        if roc:
            ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="chance")
        ax.legend(fontsize="small")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    if roc:
        ax.set(title="ROC (dot: the confusion matrix's threshold)", xlabel="false positive rate", ylabel="recall")
    else:
        ax.set(title="Precision-recall (dotted: base rate)", xlabel="recall", ylabel="precision")
    return png(fig)


def roc_plot(ev: Any, confusion_at: str = "max_f1") -> str:
    """The ROC curve of every model, as a PNG data: URI."""
    return _curve_plot(ev, confusion_at, roc=True)


def pr_plot(ev: Any, confusion_at: str = "max_f1") -> str:
    """The precision-recall curve of every model, as a PNG data: URI."""
    return _curve_plot(ev, confusion_at, roc=False)

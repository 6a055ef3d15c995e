"""replay.report_curves: confusion matrices, the rule sentence, threshold warnings (each claim),
calibration rows with counts, the ROC and PR plots; and the tables and plots they add to
replay.report's summary and HTML page, for classification and regression evaluations."""

from __future__ import annotations

import base64
import datetime as dt
import warnings

import duckdb
import pyarrow as pa
import pytest

from replay import report, report_curves
from replay.errors import ReplayValueError
from replay.evaluation import evaluate
from tests.replay.test_report import _Collect, _topic

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
TS = pa.timestamp("us", "UTC")
HOSTILE = "<b>$\\alpha$&"


def _log(labels, models):
    """Requests r0.. with outcome `labels[i]` (None: no outcome), scored by each model (a score
    None: not scored)."""
    con = duckdb.connect()
    times = [T0 + dt.timedelta(minutes=i) for i in range(len(labels))]
    cols: dict[str, list] = {k: [] for k in ("request_id", "event_time", "model_id", "model_version", "score")}
    for model, scores in models.items():
        for i, s in enumerate(scores):
            if s is not None:
                for k, v in zip(cols, (f"r{i}", times[i], model, "1", float(s))):
                    cols[k].append(v)
    n = len(cols["request_id"])
    _topic(
        con,
        "scores",
        {
            **cols,
            "event_time": pa.array(cols["event_time"], TS),
            "latency_ms": pa.array([1.0] * n),
            "_append_time": pa.array(cols["event_time"], TS),
        },
    )
    known = [i for i, y in enumerate(labels) if y is not None]
    _topic(
        con,
        "outcomes",
        {
            "request_id": [f"r{i}" for i in known],
            "event_time": pa.array([times[i] for i in known], TS),
            "label": pa.array([float(labels[i]) for i in known], pa.float64()),
            "reward": pa.array([0.0] * len(known)),
            "_append_time": pa.array([times[i] for i in known], TS),
        },
    )
    return con


def _ev(labels, models, threshold=0.5, task="auto"):
    return evaluate(_log(labels, models), "scores", outcomes="outcomes", threshold=threshold, task=task, bootstrap=0)


LABELS = [1, 1, 1, 0, 0, 0, 0, 1, 0, 0]


@pytest.fixture(scope="module")
def ev():
    """Two models over 10 outcomes (4 positive) and a third scoring only requests without one."""
    return _ev(
        [*LABELS, None, None],
        {
            "good": [0.9, 0.8, 0.35, 0.3, 0.2, 0.1, 0.45, 0.7, 0.2, 0.1, None, None],
            HOSTILE: [0.6, 0.4, 0.4, 0.7, 0.4, 0.2, 0.1, 0.3, 0.9, 0.4, None, None],
            "unlabelled": [None] * 10 + [0.5, 0.6],
        },
        threshold=0.6,
    )


@pytest.fixture(scope="module")
def regression():
    return _ev([0.5, 2.0, 3.5, 1.0, 9.0, None], {"reg": [0.4, 2.5, 3.0, 1.5, 7.0, 1.0]})


def test_confusion_rows_are_the_thresholds_of_one_rule(ev):
    """One row per labelled model and rule; its counts add up to the labelled rows; the HTML
    matrix puts actual classes in rows and predictions in columns, and escapes the name."""
    for rule in report_curves.CONFUSION_RULES:
        rows = report_curves.confusion_rows(ev, rule)
        assert rows == [r for r in ev.thresholds.to_pylist() if r["rule"] == rule]
        assert sorted(r["model"] for r in rows) == sorted(["good", HOSTILE])
        for r in rows:
            assert r["tp"] + r["fp"] + r["fn"] + r["tn"] == len(LABELS)
            assert r["tp"] + r["fn"] == sum(LABELS)
    good = next(r for r in report_curves.confusion_rows(ev, "given") if r["model"] == "good")
    assert (good["threshold"], good["tp"], good["fp"], good["fn"], good["tn"]) == (0.6, 3, 0, 1, 6)
    page = report_curves.confusion_html([good])
    assert "<caption>good at 0.6</caption>" in page
    assert "<th>actual +</th><td>3</td><td>1</td>" in page and "<th>actual -</th><td>0</td><td>6</td>" in page
    hostile = report_curves.confusion_html(report_curves.confusion_rows(ev, "given"))
    assert "&lt;b&gt;$\\alpha$&amp; at 0.6" in hostile and HOSTILE not in hostile
    assert report_curves.confusion_html([]) == "<p class='meta'>(none)</p>"
    with pytest.raises(ReplayValueError, match="max_f1"):
        report_curves.confusion_rows(ev, "median")


def test_rule_sentence_names_the_threshold_and_the_rule(ev):
    given = report_curves.rule_sentence(ev, "given")
    assert "threshold 0.6 as given" in given
    best = report_curves.rule_sentence(ev, "max_f1")
    assert "max-F1" in best and "optimistic" in best
    for r in report_curves.confusion_rows(ev, "max_f1"):
        assert f"{r['model']} {r['threshold']:.4g}" in best
    assert "good 0.35" in best  # F1 8/9 at 0.35 (4 of 5 predicted, all 4 positives)
    none = _ev([0, 0, 0], {"m": [0.1, 0.5, 0.9]})
    assert "no positives: none chosen" in report_curves.rule_sentence(none, "max_f1")
    with pytest.raises(ReplayValueError):
        report_curves.rule_sentence(ev, "best")


def _warnings(labels, scores, threshold):
    return report_curves.threshold_warnings(_ev(labels, {"m": scores}, threshold=threshold))


def test_a_threshold_above_every_score_predicts_no_positives():
    """Accuracy is then the share of negatives; the hint names the max-F1 threshold."""
    (w,) = _warnings([1, 0, 0, 0, 1], [0.3, 0.1, 0.2, 0.15, 0.4], 0.9)
    assert w.startswith("m: threshold 0.9 predicts no positives at a 40.0% base rate")
    assert "accuracy 0.600 is just the share of negatives" in w
    assert w.endswith("read AUC and average precision, or the confusion matrix at the max-F1 threshold 0.3")


def test_a_threshold_at_or_below_every_score_predicts_every_row_positive():
    """Precision and accuracy are then the base rate."""
    (w,) = _warnings([1, 0, 0, 0, 1], [0.3, 0.1, 0.2, 0.15, 0.4], 0.1)
    assert w.startswith("m: threshold 0.1 predicts every row positive")
    assert "accuracy 0.400 are just the base rate 40.0%" in w


def test_accuracy_equal_to_the_majority_share_is_flagged():
    """11 outcomes, 2 positive; at 0.5 one positive and one negative are predicted: 9 of 11
    correct, exactly what always answering negative scores (1 - 2/11 < 9/11 as floats)."""
    scores = [0.9, 0.1, 0.8] + [0.2] * 8
    (w,) = _warnings([1, 1, 0] + [0] * 8, scores, 0.5)
    assert w.startswith("m: accuracy 0.818 at threshold 0.5 is no better than always predicting the majority")
    assert "(0.818, base rate 18.2%)" in w
    assert _warnings([1, 1, 0] + [0] * 8, [0.9, 0.8, 0.1] + [0.2] * 8, 0.5) == []  # 11 of 11


@pytest.mark.parametrize("label,what", [(0, "negative"), (1, "positive")])
def test_outcomes_of_one_class_give_one_warning(label, what):
    """Every known outcome of one class: that warning only, though the threshold also predicts
    no row positive (the first warning that applies)."""
    (w,) = _warnings([label] * 5, [0.1, 0.2, 0.3, 0.2, 0.1], 0.9)
    assert w == (
        f"m: every one of its 5 known outcomes is {what}: AUC, average precision, precision and recall "
        "are undefined or trivial"
    )


def test_informative_thresholds_and_unlabelled_models_are_not_flagged(ev):
    """good: 9 of 10 right at 0.6; unlabelled: no outcome; the third: 5 of 10 right."""
    (w,) = report_curves.threshold_warnings(ev)
    assert w.startswith(f"{HOSTILE}: accuracy 0.500 at threshold 0.6 is no better than")
    assert report_curves.ranking_rows(ev) == [r for r in ev.ranking.to_pylist() if r["model"] != "unlabelled"]


def _check_calibration(ev):
    rows = report_curves.calibration_rows(ev)
    assert rows
    for r in rows:
        assert r["n"] > 0 and r["bin_range"] == f"[{r['bin_lo']:.2f}, {r['bin_hi']:.2f})"
        assert r["gap"] == pytest.approx(r["mean_label"] - r["mean_score"])
        assert r["bin_lo"] <= r["mean_score"] <= r["bin_hi"] or r["bin"] in (0, 9)
    for o in ev.overall.to_pylist():
        assert sum(r["n"] for r in rows if r["model"] == o["model"]) == o["n_labeled"]
    return rows


def test_calibration_rows_count_every_labelled_row(ev):
    rows = _check_calibration(ev)
    good = {r["bin"]: r for r in rows if r["model"] == "good"}
    assert (good[1]["n"], good[1]["mean_label"], good[1]["bin_range"]) == (2, 0.0, "[0.10, 0.20)")


def test_regression_has_calibration_but_no_ranking_or_confusion(regression):
    """Scored rows without an outcome are not counted; no threshold rows, so no warnings."""
    assert regression.task == "regression"
    rows = _check_calibration(regression)
    assert sum(r["n"] for r in rows) == 5
    assert report_curves.ranking_rows(regression) == []
    assert report_curves.confusion_rows(regression, "given") == []
    assert report_curves.threshold_warnings(regression) == []


def _is_png(uri):
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1], validate=True)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots draw, as they are turned into PNGs."""
    drawn = []
    real = report_curves.png

    def keep(fig):
        drawn.append(fig.axes[0])
        return real(fig)

    monkeypatch.setattr(report_curves, "png", keep)
    return drawn


def test_roc_plot_draws_each_model_with_its_auc_and_threshold_dot(ev, figures):
    """One curve per labelled model, labelled with its AUC (a `$` in a name stays text), the
    chance diagonal, and a dot at the confusion matrix's (false positive rate, recall)."""
    _is_png(report_curves.roc_plot(ev, "given"))
    (ax,) = figures
    ranking = {r["model"]: r for r in ev.ranking.to_pylist()}
    labels = ax.get_legend_handles_labels()[1]
    assert f"good (AUC {ranking['good']['auc']:.3f})" in labels and "chance" in labels
    assert f"<b>\\$\\alpha\\$& (AUC {ranking[HOSTILE]['auc']:.3f})" in labels and len(labels) == 3
    dots = {(float(x), float(y)) for line in ax.lines if line.get_marker() == "o" for x, y in line.get_xydata()}
    good = next(r for r in report_curves.confusion_rows(ev, "given") if r["model"] == "good")
    assert (good["fp"] / (good["fp"] + good["tn"]), good["recall"]) in dots and len(dots) == 2


def test_pr_plot_draws_each_model_with_its_ap_and_base_rate(ev, figures):
    _is_png(report_curves.pr_plot(ev))
    (ax,) = figures
    labels = ax.get_legend_handles_labels()[1]
    assert sorted(labels) == sorted(
        f"{m.replace('$', chr(92) + '$')} (AP {r['average_precision']:.3f})"
        for m, r in ((r["model"], r) for r in report_curves.ranking_rows(ev))
    )
    dotted = [line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == ":"]
    assert dotted == [0.4, 0.4]  # the base rate of each model


def test_plots_without_a_drawable_curve_say_why(regression, figures):
    """Regression, or outcomes of one class only: a PNG with a message, no warnings."""
    negative = _ev([0, 0, 0], {"m": [0.1, 0.5, 0.9]})
    positive = _ev([1, 1, 1], {"m": [0.1, 0.5, 0.9]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for uri in (
            report_curves.roc_plot(regression),
            report_curves.pr_plot(regression),
            report_curves.roc_plot(negative),
            report_curves.pr_plot(negative),
            report_curves.roc_plot(positive),
        ):
            _is_png(uri)
    texts = [[t.get_text() for t in ax.texts] for ax in figures]
    assert texts == [
        ["regression task"],
        ["regression task"],
        ["needs both a positive and a negative outcome"],
        ["needs a positive outcome"],
        ["needs both a positive and a negative outcome"],
    ]
    _is_png(report_curves.pr_plot(positive))
    assert figures[-1].get_legend_handles_labels()[1] == ["m (AP 1.000)"]


def test_summary_adds_ranking_confusion_and_calibration_tables(ev, regression):
    text = report.summary(ev)
    for heading in ("Ranking (ROC and precision-recall", "Confusion matrices", "Calibration (score bins"):
        assert f"\n{heading}" in text
    assert report_curves.rule_sentence(ev, "max_f1") in text
    good = next(r for r in ev.ranking.to_pylist() if r["model"] == "good")
    assert f"{good['average_precision']:.3f}" in text and f"{good['lift_top_decile']:.3f}" in text
    for w in report_curves.threshold_warnings(ev):
        assert f"- warning: {w}" in text
    assert "threshold 0.6 as given" in report.summary(ev, confusion_at="given")
    reg = report.summary(regression)
    assert "\nCalibration (score bins" in reg
    assert "Ranking" not in reg and "Confusion matrices" not in reg


def _page(ev, **kw):
    parser = _Collect()
    page = report.render_html(ev, **kw)
    parser.feed(page)
    parser.close()
    return page, parser


def test_html_adds_roc_and_pr_plots_and_the_tables(ev, regression):
    page, doc = _page(ev, confusion_at="given")
    for plot in ("plot-roc", "plot-pr", "plot-calibration"):
        _is_png(doc.images[plot])
    text = "".join(doc.text)
    for heading in ("Ranking: ROC, precision-recall, lift", "Confusion matrices", "Calibration"):
        assert heading in text
    assert "good at 0.6" in text and "threshold 0.6 as given" in text
    assert "lift (top 10%)" in text and "observed - score" in text
    page, doc = _page(regression)
    assert {"plot-roc", "plot-pr", "plot-calibration"} <= set(doc.images)
    text = "".join(doc.text)
    assert "Confusion matrices" not in text and "Ranking" not in text and "observed - score" in text
    with pytest.raises(ReplayValueError):
        report.render_html(ev, confusion_at="f1")

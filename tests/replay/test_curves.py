"""replay.evaluation.curves: ROC and PR curves, ranking and thresholds of probability scores,
against scikit-learn (property tests with tied scores, one-class and one-row models), the
pro-rata top decile, the curve cap, and the tables `replay.evaluate` fills."""

from __future__ import annotations

import math
from fractions import Fraction

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from replay.evaluation import curves, evaluate
from replay.evaluation.curves import from_counts, score_curves
from tests.replay.test_evaluate import make_log

GRID = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]  # few distinct scores: plenty of ties
MODELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    yield c
    c.close()


def _scored(con, rows) -> str:
    """A TEMP table `scored` of (model, score, label) rows, shaped like scored.sql."""
    table = pa.table(
        {
            "model": pa.array([r[0] for r in rows], pa.string()),
            "score": pa.array([r[1] for r in rows], pa.float64()),
            "label": pa.array([r[2] for r in rows], pa.float64()),
        }
    )
    con.register("__rows", table)
    con.execute("CREATE OR REPLACE TEMP TABLE scored AS SELECT * FROM __rows")
    con.unregister("__rows")
    return "scored"


def _tables(con, rows, threshold=0.5, models=MODELS):
    return score_curves(con, _scored(con, rows), models, threshold)


def _one(table, **where):
    found = [r for r in table.to_pylist() if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]


def _f1(y, s, u) -> Fraction:
    pred = s >= u
    tp, fp, fn = int(np.sum(pred & (y == 1))), int(np.sum(pred & (y == 0))), int(np.sum(~pred & (y == 1)))
    return Fraction(2 * tp, 2 * tp + fp + fn)


def _check_model(model, y, s, t, curve_t, ranking_t, thresholds_t):
    """Every number of one model against scikit-learn on its rows (y 0/1, s scores)."""
    p, n = int(y.sum()), int(len(y) - y.sum())
    rank = _one(ranking_t, model=model)
    assert (rank["n_labeled"], rank["n_positive"]) == (p + n, p)
    assert rank["base_rate"] == pytest.approx(p / (p + n))
    if p and n:
        assert rank["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    else:
        assert rank["auc"] is None
    if p:
        assert rank["average_precision"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    else:
        assert rank["average_precision"] is None and rank["lift_top_decile"] is None

    pts = [r for r in curve_t.to_pylist() if r["model"] == model]
    distinct = np.unique(s)[::-1]
    assert [r["threshold"] for r in pts] == distinct.tolist()  # one point per distinct score
    assert [r["n_predicted"] for r in pts] == [int(np.sum(s >= u)) for u in distinct]  # no split tie
    if p and n:
        fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
        assert thr[1:].tolist() == distinct.tolist()
        np.testing.assert_allclose([r["fpr"] for r in pts], fpr[1:])
        np.testing.assert_allclose([r["tpr"] for r in pts], tpr[1:])
    if p:
        prec, rec, thr = skm.precision_recall_curve(y, s, drop_intermediate=False)
        assert thr[::-1].tolist() == distinct.tolist()
        np.testing.assert_allclose([r["precision"] for r in pts], prec[:-1][::-1])
        np.testing.assert_allclose([r["recall"] for r in pts], rec[:-1][::-1])

    given_row = _one(thresholds_t, model=model, rule="given")
    tn, fp, fn, tp = skm.confusion_matrix(y, (s >= t).astype(float), labels=[0, 1]).ravel()
    assert (given_row["tp"], given_row["fp"], given_row["fn"], given_row["tn"]) == (tp, fp, fn, tn)
    assert given_row["threshold"] == t
    assert given_row["accuracy"] == pytest.approx(skm.accuracy_score(y, (s >= t).astype(float)))
    assert given_row["predicted_positive_rate"] == pytest.approx(np.mean(s >= t))
    best_rows = [r for r in thresholds_t.to_pylist() if r["model"] == model and r["rule"] == "max_f1"]
    if not p:
        assert best_rows == []
        return
    (best,) = best_rows
    f1s = {float(u): _f1(y, s, u) for u in distinct}
    top = max(f1s.values())
    assert best["threshold"] == max(u for u, f in f1s.items() if f == top)  # ties: the higher threshold
    assert best["f1"] == pytest.approx(float(top))
    pred = (s >= best["threshold"]).astype(float)
    assert best["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert best["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert best["recall"] == pytest.approx(skm.recall_score(y, pred))


SCORE = st.one_of(st.sampled_from(GRID), st.floats(0, 1))
ROWS = st.lists(st.tuples(st.sampled_from(MODELS), SCORE, st.sampled_from([0.0, 1.0])), min_size=1, max_size=30)
THRESHOLD = st.one_of(st.sampled_from(GRID), st.floats(-0.5, 1.5))


@settings(max_examples=50, deadline=None)
@given(rows=ROWS, t=THRESHOLD)
def test_tables_match_scikit_learn(con, rows, t):
    """Several models, tied scores, one-class and one-row models: AUC, average precision, the ROC
    and PR points, the confusion matrix at `score >= threshold` and the max-F1 threshold."""
    curve_t, ranking_t, thresholds_t = _tables(con, rows, t)
    assert ranking_t["model"].to_pylist() == MODELS  # every model, labelled or not
    for model in MODELS:
        mine = [(sc, lab) for m, sc, lab in rows if m == model]
        if not mine:
            assert _one(ranking_t, model=model)["n_labeled"] == 0
            assert model not in thresholds_t["model"].to_pylist() + curve_t["model"].to_pylist()
            continue
        s, y = (np.array(c) for c in zip(*mine))
        _check_model(model, y, s, t, curve_t, ranking_t, thresholds_t)


@pytest.mark.parametrize(
    "labels",
    [[1.0], [0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]],
    ids=["one-positive", "one-negative", "all-positive", "all-negative", "mixed"],
)
def test_one_class_and_single_row_models(con, labels):
    """Rows of one class give NULL AUC (and NULL AP and lift without positives); an all-positive
    model has AP 1 and lift 1."""
    s = np.linspace(0.9, 0.1, len(labels)).round(3)
    rows = [("a", float(x), y) for x, y in zip(s, labels)]
    curve_t, ranking_t, thresholds_t = _tables(con, rows, 0.5, ["a"])
    _check_model("a", np.array(labels), s, 0.5, curve_t, ranking_t, thresholds_t)
    rank = _one(ranking_t, model="a")
    if all(labels):
        assert rank["average_precision"] == 1.0 and rank["lift_top_decile"] == 1.0
        assert curve_t["fpr"].null_count == curve_t.num_rows
    if not any(labels):
        assert curve_t["tpr"].null_count == curve_t["recall"].null_count == curve_t.num_rows


def test_max_f1_tie_goes_to_the_higher_threshold(con):
    """F1 is 1/2 at 0.9 (1 of 1 positive) and at 0.7 (2 of 5), with 3 positives: 0.9 is chosen."""
    groups = [(0.9, 1, 0), (0.7, 1, 3), (0.1, 1, 10)]
    rows = [("a", sc, 1.0) for sc, pos, _ in groups for _ in range(pos)]
    rows += [("a", sc, 0.0) for sc, _, neg in groups for _ in range(neg)]
    curve_t, ranking_t, thresholds_t = _tables(con, rows, 0.5, ["a"])
    best = _one(thresholds_t, model="a", rule="max_f1")
    assert (best["threshold"], best["f1"], best["tp"], best["fp"]) == (0.9, 0.5, 1, 0)
    s, y = (np.array(c) for c in zip(*[(r[1], r[2]) for r in rows]))
    _check_model("a", y, s, 0.5, curve_t, ranking_t, thresholds_t)


def test_unlabelled_rows_are_not_counted(con):
    """Rows with a NULL or NaN label are outside every table; a model with only those has a
    ranking row with n_labeled 0 and NULLs."""
    rows = [("a", 0.9, 1.0), ("a", 0.2, 0.0), ("a", 0.5, None), ("a", 0.6, float("nan")), ("b", 0.4, None)]
    curve_t, ranking_t, thresholds_t = _tables(con, rows, 0.5, ["a", "b"])
    assert _one(ranking_t, model="a")["n_labeled"] == 2 and _one(ranking_t, model="a")["auc"] == 1.0
    assert curve_t["threshold"].to_pylist() == [0.9, 0.2]
    b = _one(ranking_t, model="b")
    assert b["n_labeled"] == 0 and b["n_positive"] == 0
    assert all(b[k] is None for k in ("base_rate", "auc", "average_precision", "lift_top_decile"))
    assert thresholds_t["model"].to_pylist() == ["a", "a"]


def _counts(model, scores, pos, neg):
    k = len(scores)
    return pa.table({"model": [model] * k, "score": scores, "n_positive": pos, "n_negative": neg})


def test_top_decile_counts_a_tie_at_its_edge_pro_rata():
    """20 rows: 0.9 (1 positive), 0.8 (1 of 4 positive), 0.1 (3 of 15). The top 2 rows are the
    0.9 row and a quarter-positive share of one 0.8 row: rate 1.25 / 2, lift 0.625 / 0.25."""
    counts = _counts("m", [0.1, 0.9, 0.8], [3, 1, 1], [12, 0, 3])  # any order
    _, ranking_t, _ = from_counts(counts, ["m"], 0.5)
    r = _one(ranking_t, model="m")
    assert (r["n_labeled"], r["n_positive"], r["base_rate"]) == (20, 5, 0.25)
    assert r["top_decile_rate"] == pytest.approx(0.625)
    assert r["lift_top_decile"] == pytest.approx(2.5)


def test_top_decile_on_a_group_edge_and_without_positives():
    """The decile ending exactly at a group takes that whole group; without positives the rate is
    0 and the lift NULL."""
    _, ranking_t, _ = from_counts(_counts("m", [0.9, 0.5], [1, 2], [1, 16]), ["m"], 0.5)
    r = _one(ranking_t, model="m")
    assert r["top_decile_rate"] == pytest.approx(0.5) and r["lift_top_decile"] == pytest.approx(0.5 / 0.15)
    _, ranking_t, thresholds_t = from_counts(_counts("m", [0.9, 0.5], [0, 0], [3, 7]), ["m"], 0.5)
    r = _one(ranking_t, model="m")
    assert r["top_decile_rate"] == 0 and r["lift_top_decile"] is None
    assert r["auc"] is None and r["average_precision"] is None
    assert thresholds_t["rule"].to_pylist() == ["given"]


@settings(max_examples=50, deadline=None)
@given(groups=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=12))
def test_top_decile_is_the_expectation_over_random_tie_breaking(groups):
    """The top-decile rate equals the expected positive share of the top 10% of rows when ties
    are broken at random: whole groups above the edge, a pro-rata share of the edge group."""
    groups = [g for g in groups if sum(g)] or [(1, 0)]
    scores = [1.0 - i / 16 for i in range(len(groups))]
    counts = _counts("m", scores, [g[0] for g in groups], [g[1] for g in groups])
    r = _one(from_counts(counts, ["m"], 0.5)[1], model="m")
    total = sum(map(sum, groups))
    k, taken, hits = Fraction(total, 10), Fraction(0), Fraction(0)
    for pos, neg in groups:
        take = min(max(k - taken, Fraction(0)), Fraction(pos + neg))
        hits += take * Fraction(pos, pos + neg)
        taken += take
    assert r["top_decile_rate"] == pytest.approx(float(hits / k))


def test_curves_are_capped_keeping_the_max_f1_point_and_the_last(monkeypatch):
    """More distinct scores than CURVE_POINTS: at most CURVE_POINTS points per model, among them
    the max-F1 threshold's and the last (every row predicted positive); fewer: every score."""
    rng = np.random.default_rng(3)
    k = 3000
    scores = np.arange(k, 0, -1) / k
    pos = (rng.uniform(size=k) < scores).astype(int)
    # the max-F1 point sits among many tiny groups before one huge group: not on an even grid
    parts = [_counts("m", scores, pos, 1 - pos), _counts("n", [0.5, 0.4, 0.3], [1, 1, 0], [0, 0, 500])]
    curve_t, _, thresholds_t = from_counts(pa.concat_tables(parts), ["m", "n"], 0.5)
    m = [r for r in curve_t.to_pylist() if r["model"] == "m"]
    assert 0.5 * curves.CURVE_POINTS < len(m) <= curves.CURVE_POINTS
    assert [r["threshold"] for r in m] == sorted((r["threshold"] for r in m), reverse=True)
    best = _one(thresholds_t, model="m", rule="max_f1")
    assert best["threshold"] in [r["threshold"] for r in m]
    assert (m[-1]["threshold"], m[-1]["n_predicted"], m[-1]["tpr"], m[-1]["fpr"]) == (scores[-1], k, 1.0, 1.0)
    assert [r["threshold"] for r in curve_t.to_pylist() if r["model"] == "n"] == [0.5, 0.4, 0.3]

    monkeypatch.setattr(curves, "CURVE_POINTS", 5)
    small = _counts("s", [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], [0, 0, 1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 9, 9, 9, 9])
    curve_t, _, thresholds_t = from_counts(small, ["s"], 0.5)
    kept = curve_t["threshold"].to_pylist()
    assert len(kept) <= 5 and kept[-1] == 0.2
    assert _one(thresholds_t, model="s", rule="max_f1")["threshold"] == 0.6 and 0.6 in kept


def test_from_counts_refuses_a_threshold_that_is_not_finite():
    with pytest.raises(ValueError, match="finite"):
        from_counts(_counts("m", [0.5], [1], [1]), ["m"], math.nan)


@pytest.fixture(scope="module")
def log_ev():
    con = make_log(n=600, days=2, seed=5)
    ev = evaluate(con, ["scores", "replay.scores"], outcomes="outcomes", inputs="inputs", bootstrap=0, threshold=0.6)
    return con, ev


def test_evaluate_fills_ranking_thresholds_and_curves(log_ev):
    """`evaluate` on a log: one ranking row per model whose AUC is classification.sql's
    Mann-Whitney AUC, rules max_f1 and given per model, the given rule agreeing with the overall
    accuracy/precision/recall at the evaluation's threshold, and AP as scikit-learn's."""
    con, ev = log_ev
    assert ev.task == "classification" and ev.ranking["model"].to_pylist() == ev.models
    cols = "request_id, model_id, score"
    scores = con.execute(f'SELECT {cols} FROM scores UNION ALL SELECT {cols} FROM "replay.scores"').df()
    labels = con.execute("SELECT request_id, label FROM outcomes").df()
    for model in ev.models:
        rank, overall = _one(ev.ranking, model=model), _one(ev.overall, model=model)
        assert rank["n_labeled"] == overall["n_labeled"] > 0
        assert rank["auc"] == pytest.approx(overall["auc"], abs=1e-12)
        rules = sorted(r["rule"] for r in ev.thresholds.to_pylist() if r["model"] == model)
        assert rules == ["given", "max_f1"]
        given_row = _one(ev.thresholds, model=model, rule="given")
        assert given_row["threshold"] == ev.params["threshold"] == 0.6
        for key in ("accuracy", "precision", "recall"):
            assert given_row[key] == pytest.approx(overall[key], abs=1e-12), key
        j = scores[scores.model_id == model].merge(labels, on="request_id")
        assert rank["average_precision"] == pytest.approx(skm.average_precision_score(j.label, j.score), abs=1e-12)
        pts = [r for r in ev.curves.to_pylist() if r["model"] == model]
        assert pts and pts[-1]["n_predicted"] == rank["n_labeled"]


def test_regression_evaluation_has_empty_curve_tables():
    """A regression evaluation has the three tables with their schemas and no rows."""
    con = make_log(n=200, days=1, seed=2)
    con.execute("UPDATE outcomes SET label = label * 3 + 0.5")
    ev = evaluate(con, "scores", outcomes="outcomes", bootstrap=0)
    assert ev.task == "regression"
    for table, schema in zip((ev.curves, ev.ranking, ev.thresholds), curves.empty_tables()):
        assert table.num_rows == 0 and table.schema == schema.schema

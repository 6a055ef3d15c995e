"""Every metric query in replay/sql, and the bootstrap in replay/metrics.py, against an
independent computation (scikit-learn, scipy where installed, or plain numpy) on data with ties."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from replay.evaluation import (
    EvaluationError,
    metrics,
    parameters,
    placeholders,
    quote_ident,
    render,
    run_sql,
    sql,
    sql_names,
)

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
MODELS = ["champ", "cand"]
WINDOWS = 3


def _scored(seed: int = 7, n: int = 600) -> pa.Table:
    """A table shaped like scored.sql: two models scoring the same requests over 3 windows.

    Scores are rounded to one decimal so ties (within and across classes) are everywhere.
    """
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {
        k: [] for k in ("model", "request_id", "window_start", "event_time", "score", "latency_ms", "label")
    }
    labels = (rng.uniform(size=n) < 0.4).astype(float)
    windows = rng.integers(0, WINDOWS, n)
    for m, model in enumerate(MODELS):
        noise = rng.normal(0, 0.25 - 0.1 * m, n)
        score = np.clip(np.round(0.3 + 0.3 * labels + noise + 0.1 * windows * m, 1), 0.0, 1.0)
        for i in range(n):
            if model == "cand" and i % 10 == 0:
                continue  # the candidate skips some requests: pairs use the common ones
            rows["model"].append(model)
            rows["request_id"].append(f"req-{i}")
            w = T0 + dt.timedelta(days=int(windows[i]))
            rows["window_start"].append(w)
            rows["event_time"].append(w + dt.timedelta(minutes=i))
            rows["score"].append(float(score[i]))
            rows["latency_ms"].append(float(np.round(rng.gamma(2.0, 4.0), 1)) if i % 7 else None)
            rows["label"].append(None if i % 13 == 0 else float(labels[i]))
    ts = pa.timestamp("us", "UTC")
    return pa.table(
        {
            "model": rows["model"],
            "request_id": rows["request_id"],
            "window_start": pa.array(rows["window_start"], ts),
            "event_time": pa.array(rows["event_time"], ts),
            "score": pa.array(rows["score"], pa.float64()),
            "latency_ms": pa.array(rows["latency_ms"], pa.float64()),
            "label": pa.array(rows["label"], pa.float64()),
        }
    )


@pytest.fixture()
def con():
    c = duckdb.connect()
    data = _scored()
    c.register("scored_arrow", data)
    c.execute("CREATE TABLE scored AS SELECT * FROM scored_arrow")
    yield c
    c.close()


@pytest.fixture()
def frame():
    return _scored().to_pandas()


def _by(table: pa.Table, **where) -> dict:
    rows = [r for r in table.to_pylist() if all(r[k] == v for k, v in where.items())]
    assert len(rows) == 1, (where, rows)
    return rows[0]


def _groups(frame):
    """(model, window or None, sub-frame) for every model overall and per window."""
    for model in MODELS:
        sub = frame[frame.model == model]
        yield model, None, sub
        for w, part in sub.groupby("window_start"):
            yield model, w.to_pydatetime(), part


# ---- classification ------------------------------------------------------------------------


@pytest.mark.parametrize("by_window", [False, True])
def test_classification_metrics_match_sklearn(con, frame, by_window):
    """AUC (rank sum with ties), log loss, Brier, accuracy/precision/recall match scikit-learn."""
    out = run_sql(con, "classification", {"threshold": 0.5, "by_window": by_window}, scored="scored")
    checked = 0
    for model, window, part in _groups(frame):
        if (window is None) == by_window:
            continue
        part = part[part.label.notna()]
        y, s = part.label.to_numpy(), part.score.to_numpy()
        row = _by(out, model=model, window_start=window)
        assert row["n_labeled"] == len(part)
        assert row["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert row["log_loss"] == pytest.approx(skm.log_loss(y, np.clip(s, 1e-15, 1 - 1e-15), labels=[0, 1]), rel=1e-9)
        assert row["brier"] == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)
        pred = (s >= 0.5).astype(float)
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        assert row["precision"] == pytest.approx(skm.precision_score(y, pred))
        assert row["recall"] == pytest.approx(skm.recall_score(y, pred))
        checked += 1
    assert checked == (len(MODELS) * WINDOWS if by_window else len(MODELS))


def test_log_loss_clips_certain_scores(con):
    """Scores of exactly 0 and 1 are clipped to [1e-15, 1-1e-15], so log loss stays finite."""
    con.execute(
        "CREATE TABLE certain AS SELECT 'm' AS model, NULL::TIMESTAMPTZ AS window_start, "
        "* FROM (VALUES (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)) t(score, label)"
    )
    row = run_sql(con, "classification", {"threshold": 0.5, "by_window": False}, scored="certain").to_pylist()[0]
    p = np.clip(np.array([0.0, 1.0, 1.0, 0.0]), 1e-15, 1 - 1e-15)
    y = np.array([1.0, 0.0, 1.0, 0.0])
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert row["log_loss"] == pytest.approx(expected, rel=1e-9)
    assert row["auc"] == pytest.approx(skm.roc_auc_score(y, [0.0, 1.0, 1.0, 0.0]))


def test_undefined_classification_metrics_are_null(con):
    """One class only: AUC NULL; nothing predicted positive: precision NULL (not a silent 0)."""
    con.execute(
        "CREATE TABLE one_class AS SELECT 'm' AS model, NULL::TIMESTAMPTZ AS window_start,"
        " * FROM (VALUES (0.1, 0.0), (0.2, 0.0)) t(score, label)"
    )
    row = run_sql(con, "classification", {"threshold": 0.5, "by_window": False}, scored="one_class").to_pylist()[0]
    assert row["auc"] is None and row["precision"] is None and row["recall"] is None
    assert row["accuracy"] == 1.0


# ---- regression, latency, coverage, calibration -------------------------------------------


def test_regression_metrics_match_sklearn_and_numpy(con, frame):
    """MAE matches scikit-learn; RMSE and bias match numpy."""
    out = run_sql(con, "regression", {"by_window": True}, scored="scored")
    for model, window, part in _groups(frame):
        if window is None:
            continue
        part = part[part.label.notna()]
        y, s = part.label.to_numpy(), part.score.to_numpy()
        row = _by(out, model=model, window_start=window)
        assert row["mae"] == pytest.approx(skm.mean_absolute_error(y, s), abs=1e-12)
        assert row["rmse"] == pytest.approx(np.sqrt(np.mean((s - y) ** 2)), abs=1e-12)
        assert row["bias"] == pytest.approx(np.mean(s - y), abs=1e-12)


def test_latency_percentiles_match_numpy(con, frame):
    """p50/p95/p99 equal numpy's linear-interpolation quantiles over the recorded latencies."""
    out = run_sql(con, "latency", {"by_window": False}, scored="scored")
    for model in MODELS:
        lat = frame[(frame.model == model) & frame.latency_ms.notna()].latency_ms.to_numpy()
        row = _by(out, model=model)
        assert row["latency_n"] == len(lat)
        for q, col in ((0.5, "latency_p50"), (0.95, "latency_p95"), (0.99, "latency_p99")):
            assert row[col] == pytest.approx(np.quantile(lat, q), abs=1e-9)


def test_coverage_counts_requests_per_window(con, frame):
    """Coverage = distinct scored requests / requests, per window of the request."""
    run = run_sql(con, "requests", {"window": "1 day"}, inputs="scored")
    assert run.num_rows == frame.request_id.nunique()
    con.register("requests_arrow", run)
    out = run_sql(con, "coverage", {"by_window": False}, scored="scored", requests="requests_arrow")
    total = frame.request_id.nunique()
    for model in MODELS:
        covered = frame[frame.model == model].request_id.nunique()
        row = _by(out, model=model)
        assert (row["n_requests"], row["n_covered"]) == (total, covered)
        assert row["coverage"] == pytest.approx(covered / total)


def test_calibration_bins_match_numpy(con, frame):
    """Reliability bins: equal width on [0, 1]; mean score and mean label per bin."""
    out = run_sql(con, "calibration", {"lo": 0.0, "hi": 1.0, "bins": 10}, scored="scored")
    part = frame[(frame.model == "champ") & frame.label.notna()]
    bins = np.clip(np.floor(part.score.to_numpy() * 10), 0, 9).astype(int)
    for b in np.unique(bins):
        row = _by(out, model="champ", bin=int(b))
        sel = bins == b
        assert row["n"] == sel.sum()
        assert row["mean_score"] == pytest.approx(part.score.to_numpy()[sel].mean())
        assert row["mean_label"] == pytest.approx(part.label.to_numpy()[sel].mean())


# ---- paired --------------------------------------------------------------------------------


def _pairs(frame):
    a = frame[frame.model == "cand"]
    b = frame[frame.model == "champ"]
    return a.merge(b, on="request_id", suffixes=("", "_ref"))


def test_paired_metrics_match_numpy_and_spearman(con, frame):
    """Mean delta, disagreement at the threshold and Spearman (ties averaged) on common requests."""
    out = run_sql(con, "paired", {"reference": "champ", "threshold": 0.5, "by_window": False}, scored="scored")
    row = _by(out, model="cand")
    j = _pairs(frame)
    s, r = j.score.to_numpy(), j.score_ref.to_numpy()
    assert row["n_paired"] == len(j)
    assert row["mean_delta"] == pytest.approx(np.mean(s - r), abs=1e-12)
    assert row["disagreement"] == pytest.approx(np.mean((s >= 0.5) != (r >= 0.5)))
    expected = np.corrcoef(metrics.average_ranks(s), metrics.average_ranks(r))[0, 1]
    assert row["spearman"] == pytest.approx(expected, abs=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert row["spearman"] == pytest.approx(scipy_stats.spearmanr(s, r).statistic, abs=1e-12)


# ---- drift: PSI, KS, Wasserstein -----------------------------------------------------------


def _samples_table(ref: np.ndarray, cur: np.ndarray) -> pa.Table:
    n = len(ref) + len(cur)
    return pa.table(
        {
            "kind": ["k"] * n,
            "model": ["m"] * n,
            "reference": ["r"] * n,
            "window_start": pa.nulls(n, pa.timestamp("us", "UTC")),
            "side": ["reference"] * len(ref) + ["current"] * len(cur),
            "value": np.concatenate([ref, cur]),
        }
    )


def _psi_by_hand(ref: np.ndarray, cur: np.ndarray) -> float:
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))
    bin_ref = np.searchsorted(edges, ref, side="left")  # number of edges strictly below
    bin_cur = np.searchsorted(edges, cur, side="left")
    k = len(edges) + 1
    p = np.maximum(np.bincount(bin_ref, minlength=k) / len(ref), 1e-4)
    q = np.maximum(np.bincount(bin_cur, minlength=k) / len(cur), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def _ecdf_by_hand(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    grid = np.unique(np.concatenate([ref, cur]))
    f_ref = np.searchsorted(np.sort(ref), grid, side="right") / len(ref)
    f_cur = np.searchsorted(np.sort(cur), grid, side="right") / len(cur)
    diff = np.abs(f_ref - f_cur)
    return float(diff.max()), float(np.sum(np.diff(grid) * diff[:-1]))


@pytest.mark.parametrize("shift", [0.0, 0.15, 0.6])
def test_psi_ks_wasserstein_match_hand_computation(shift):
    """PSI (reference deciles, 1e-4 floor), KS and Wasserstein-1 equal numpy (and scipy)."""
    rng = np.random.default_rng(3)
    ref = np.round(rng.beta(2, 5, 800), 2)  # rounded: many ties, duplicate decile edges
    cur = np.round(np.clip(rng.beta(2, 5, 500) + shift, 0, 1), 2)
    c = duckdb.connect()
    c.register("samples", _samples_table(ref, cur))
    psi = run_sql(c, "psi", {"psi_shift": 0.1, "psi_alert": 0.25}, samples="samples")
    ks = run_sql(c, "ks", {}, samples="samples")
    row_psi, row_ks = psi.to_pylist()[0], ks.to_pylist()[0]
    expected_psi = _psi_by_hand(ref, cur)
    assert row_psi["psi"] == pytest.approx(expected_psi, rel=1e-9, abs=1e-12)
    flag = "alert" if expected_psi >= 0.25 else "shift" if expected_psi >= 0.1 else "stable"
    assert row_psi["psi_flag"] == flag
    assert (row_psi["n_reference"], row_psi["n_current"]) == (800, 500)
    expected_ks, expected_w = _ecdf_by_hand(ref, cur)
    assert row_ks["ks"] == pytest.approx(expected_ks, abs=1e-12)
    assert row_ks["wasserstein"] == pytest.approx(expected_w, abs=1e-12)
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - scipy is optional
        return
    assert row_ks["ks"] == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert row_ks["wasserstein"] == pytest.approx(stats.wasserstein_distance(ref, cur), abs=1e-12)


def test_psi_flags_cover_the_three_levels():
    """Identical samples are 'stable'; a moderate shift is flagged; a large one alerts."""
    rng = np.random.default_rng(5)
    ref = rng.normal(size=2000)
    flags = []
    for shift in (0.0, 0.35, 1.5):
        c = duckdb.connect()
        c.register("samples", _samples_table(ref, ref + shift))
        flags.append(run_sql(c, "psi", {"psi_shift": 0.1, "psi_alert": 0.25}, samples="samples")["psi_flag"][0].as_py())
    assert flags == ["stable", "shift", "alert"]


# ---- the bootstrap (replay/metrics.py) -----------------------------------------------------


def test_average_ranks_and_auc_match_references():
    """Average ranks equal scipy's rankdata; rank-sum AUC equals roc_auc_score, with ties."""
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=300), 1)
    y = (rng.uniform(size=300) < 0.3).astype(float)
    assert metrics.auc(x, y) == pytest.approx(skm.roc_auc_score(y, x), abs=1e-12)
    stats = pytest.importorskip("scipy.stats")
    np.testing.assert_allclose(metrics.average_ranks(x), stats.rankdata(x))


def _pooled(idx_by_block, counts_row):
    return np.concatenate(
        [np.repeat(idx_by_block[j], 1) for j, c in enumerate(counts_row.astype(int)) for _ in range(c)]
    )


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_block_bootstrap_replicates_equal_pooling_the_drawn_windows(task):
    """Each replicate's statistic (via per-window sufficient statistics) equals recomputing it
    directly on the pooled rows of the drawn windows."""
    rng = np.random.default_rng(11)
    n, W = 400, 5
    window = rng.integers(0, W, n) * 86_400
    label = (rng.uniform(size=n) < 0.5).astype(float)
    if task == "regression":
        label = np.round(rng.normal(size=n), 1)
    score = np.round(np.clip(0.5 * label + rng.normal(0.3, 0.3, n), 0, 1), 1)
    ref = np.round(np.clip(0.3 * label + rng.normal(0.3, 0.3, n), 0, 1), 1)
    label[::17] = np.nan  # unknown outcomes
    counts = metrics.block_replicates(W, 6, seed=4)
    block, _ = metrics.block_index(window)
    idx_by_block = [np.flatnonzero(block == j) for j in range(W)]
    boot = {}
    for r in range(len(counts)):
        one = counts[r : r + 1]
        stats = metrics.paired_statistics(
            score, ref, label, window, task=task, threshold=0.5, counts=np.repeat(one, 2, axis=0)
        )
        boot[r] = stats
        rows = _pooled(idx_by_block, one[0])
        s, b, y = score[rows], ref[rows], label[rows]
        known = ~np.isnan(y)
        assert stats["mean_delta"].low == pytest.approx(np.mean(s - b))
        assert stats["disagreement"].low == pytest.approx(np.mean((s >= 0.5) != (b >= 0.5)))
        assert stats["spearman"].low == pytest.approx(metrics.spearman(s, b), abs=1e-9)
        if task == "classification":
            expected = metrics.auc(s[known], y[known]) - metrics.auc(b[known], y[known])
            assert stats["auc_delta"].low == pytest.approx(expected, abs=1e-12)
            assert stats["brier_delta"].low == pytest.approx(
                skm.brier_score_loss(y[known], s[known]) - skm.brier_score_loss(y[known], b[known])
            )
        else:
            rmse = lambda p, known=known, y=y: np.sqrt(np.mean((p[known] - y[known]) ** 2))  # noqa: E731
            assert stats["rmse_delta"].low == pytest.approx(rmse(s) - rmse(b))
            assert stats["mae_delta"].low == pytest.approx(
                skm.mean_absolute_error(y[known], s[known]) - skm.mean_absolute_error(y[known], b[known])
            )


def test_bootstrap_is_seeded_and_one_window_gives_no_interval():
    """Same seed, same draws; a single window yields a point estimate without bounds."""
    np.testing.assert_array_equal(metrics.block_replicates(4, 50, 9), metrics.block_replicates(4, 50, 9))
    assert not np.array_equal(metrics.block_replicates(4, 50, 9), metrics.block_replicates(4, 50, 10))
    assert (metrics.block_replicates(4, 50, 9).sum(axis=1) == 4).all()
    x = np.linspace(0, 1, 20)
    stats = metrics.paired_statistics(
        x,
        x[::-1],
        np.full(20, np.nan),
        np.zeros(20),
        task="classification",
        threshold=0.5,
        counts=metrics.block_replicates(1, 100, 0),
    )
    assert stats["mean_delta"].estimate == pytest.approx(0.0)
    assert np.isnan(stats["mean_delta"].low) and np.isnan(stats["mean_delta"].high)


# ---- the SQL file helpers ------------------------------------------------------------------


def test_every_shipped_query_documents_its_tables_and_parameters():
    """Each .sql file opens with a comment naming itself, and parses its placeholders/params."""
    names = sql_names()
    for expected in (
        "coverage",
        "latency",
        "classification",
        "regression",
        "paired",
        "psi",
        "ks",
        "outcomes",
        "scored",
        "drift_samples",
        "calibration",
        "histogram",
    ):
        assert expected in names
    for name in names:
        text = sql(name)
        assert text.startswith(f"-- {name}.sql:"), name
        for p in parameters(text):
            assert f"${p}" in text.split("\n\n")[0] or "Params" in text, (name, p)
        assert placeholders(text), name


def test_render_quotes_identifiers_and_run_sql_checks_parameters(con):
    """Placeholders become quoted identifiers; unknown names and missing parameters are errors."""
    assert quote_ident('a"b') == '"a""b"'
    assert render("SELECT * FROM {{t}}", t='x"; DROP TABLE scored; --') == (
        'SELECT * FROM "x""; DROP TABLE scored; --"'
    )
    with pytest.raises(EvaluationError, match="needs a table"):
        render("SELECT * FROM {{t}}")
    with pytest.raises(EvaluationError, match="parameters"):
        run_sql(con, "latency", {}, scored="scored")
    with pytest.raises(EvaluationError, match="no query named"):
        sql("../../etc/passwd")
    # unused parameters are ignored, so one dict can serve several queries
    out = run_sql(con, "latency", {"by_window": False, "unused": 1}, scored="scored")
    assert out.num_rows == len(MODELS)

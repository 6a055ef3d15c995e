"""replay.evaluate end to end over DuckDB views shaped like log topics: cut-off fencing,
identifier safety, model resolution, paired intervals, drift verdicts, determinism."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from logstore.errors import InvalidNameError, LogstoreError, TopicNotFoundError
from replay.evaluation import Evaluation, EvaluationError, evaluate, quote_ident

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
TS = pa.timestamp("us", "UTC")


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _score_table(model, request_ids, times, scores, latency=None, version="1"):
    n = len(request_ids)
    return pa.table(
        {
            "request_id": request_ids,
            "event_time": pa.array(times, TS),
            "model_id": [model] * n,
            "model_version": [version] * n,
            "score": pa.array(np.round(scores, 2), pa.float64()),  # rounded: ties
            "latency_ms": pa.array(latency if latency is not None else [None] * n, pa.float32()),
            "label": pa.nulls(n, pa.float64()),
            "_append_time": pa.array(times, TS),
            "_partition": pa.array([0] * n, pa.int32()),
            "_offset": pa.array(np.arange(n), pa.int64()),
        }
    )


def _create(con, name, table):
    con.register("__arrow", table)
    con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __arrow")
    con.unregister("__arrow")


def make_log(n=2400, days=4, drift_day=None, seed=1, con=None, names=None):
    """Topics of a small rendezvous deployment: inputs, champion+canary scores, a replayed
    candidate that is genuinely better, outcomes that arrive 0-48h late."""
    names = {"scores": "scores", "replay": "replay.scores", "outcomes": "outcomes", "inputs": "inputs", **(names or {})}
    rng = np.random.default_rng(seed)
    secs = np.sort(rng.uniform(0, days * 86400, n))
    times = [T0 + dt.timedelta(seconds=float(s)) for s in secs]
    rid = [f"r{i:05d}" for i in range(n)]
    x = rng.normal(size=n)
    if drift_day is not None:
        x = x + np.where(secs >= drift_day * 86400, 1.0, 0.0)
    y = (rng.uniform(size=n) < _sigmoid(1.5 * x)).astype(float)
    con = con or duckdb.connect()
    _create(
        con,
        names["inputs"],
        pa.table(
            {
                "request_id": rid,
                "event_time": pa.array(times, TS),
                "features": x.tolist(),
                "_append_time": pa.array(times, TS),
                "_partition": pa.array([0] * n, pa.int32()),
                "_offset": pa.array(np.arange(n), pa.int64()),
            }
        ),
    )
    champ = _score_table("champion", rid, times, _sigmoid(x + rng.normal(0, 1.2, n)), rng.gamma(2, 5, n))
    canary = _score_table("canary", rid, times, _sigmoid(x + rng.normal(0, 1.2, n)), rng.gamma(2, 6, n))
    _create(con, names["scores"], pa.concat_tables([champ, canary]))
    keep = np.arange(n) % 20 != 0  # the replay skipped 5% of requests
    cand = _score_table(
        "candidate-b",
        [r for r, k in zip(rid, keep) if k],
        [t for t, k in zip(times, keep) if k],
        _sigmoid(1.5 * x[keep] + rng.normal(0, 0.3, keep.sum())),
    )
    _create(con, names["replay"], cand)
    known = [t + dt.timedelta(hours=float(h)) for t, h in zip(times, rng.uniform(0, 48, n))]
    _create(
        con,
        names["outcomes"],
        pa.table(
            {
                "request_id": rid,
                "event_time": pa.array(times, TS),
                "label": y,
                "reward": y,
                "_append_time": pa.array(known, TS),
                "_partition": pa.array([0] * n, pa.int32()),
                "_offset": pa.array(np.arange(n), pa.int64()),
            }
        ),
    )
    return con


@pytest.fixture(scope="module")
def log_con():
    return make_log()


@pytest.fixture(scope="module")
def ev(log_con) -> Evaluation:
    return evaluate(
        log_con,
        ["scores", "replay.scores"],
        outcomes="outcomes",
        inputs="inputs",
        champion="champion",
        canary="canary",
        bootstrap=300,
    )


def _row(table, **where):
    rows = [r for r in table.to_pylist() if all(r[k] == v for k, v in where.items())]
    assert len(rows) == 1, where
    return rows[0]


def _truth(con, model, cutoff=None):
    """(y, score) by plain pandas: latest outcome appended by the cut-off, joined on request."""
    s = con.execute('SELECT * FROM scores UNION ALL BY NAME SELECT * FROM "replay.scores"').df()
    o = con.execute("SELECT * FROM outcomes").df()
    if cutoff is not None:
        o = o[o._append_time <= cutoff]
    o = o.sort_values("_append_time").groupby("request_id").tail(1)
    j = s[s.model_id == model].merge(o[["request_id", "label"]], on="request_id", suffixes=("_s", ""))
    j = j[j.label.notna()]
    return j.label.to_numpy(), j.score.to_numpy()


def test_overall_quality_matches_sklearn(log_con, ev):
    """Per-model AUC, log loss and Brier through evaluate() equal scikit-learn on the same join."""
    assert ev.task == "classification"
    assert ev.models == ["canary", "candidate-b", "champion"]
    for model in ev.models:
        y, s = _truth(log_con, model)
        row = _row(ev.overall, model=model)
        assert row["n_labeled"] == len(y)
        assert row["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert row["log_loss"] == pytest.approx(skm.log_loss(y, s, labels=[0, 1]), rel=1e-9)
        assert row["brier"] == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)


def test_coverage_and_latency(ev):
    """The replayed candidate covers 95% of input requests; it recorded no latency."""
    cand = _row(ev.overall, model="candidate-b")
    assert cand["coverage"] == pytest.approx(0.95)
    assert cand["latency_n"] == 0 and cand["latency_p50"] is None
    champ = _row(ev.overall, model="champion")
    assert champ["coverage"] == 1.0 and champ["latency_n"] == 2400
    assert champ["latency_p50"] < champ["latency_p95"] < champ["latency_p99"]
    assert ev.by_window.num_rows == 3 * 4
    assert sum(r["n"] for r in ev.by_window.to_pylist() if r["model"] == "champion") == 2400
    assert "candidate-b scored 95.0% of input requests" in ev.verdicts


def test_paired_comparison_and_verdict(ev):
    """The better candidate beats the champion on AUC with an interval that excludes zero."""
    row = _row(ev.paired, model="candidate-b", reference="champion")
    assert row["n_paired"] == 2280 and row["n_windows"] == 4
    assert row["auc_delta_low"] <= row["auc_delta"] <= row["auc_delta_high"]
    assert row["auc_delta_low"] > 0
    for name in ("mean_delta", "disagreement", "spearman", "log_loss_delta", "brier_delta"):
        assert row[f"{name}_low"] <= row[name] <= row[f"{name}_high"], name
    sentence = [v for v in ev.verdicts if v.startswith("candidate-b beats champion on AUC by")]
    assert len(sentence) == 1, ev.verdicts
    assert {r["reference_role"] for r in ev.paired.to_pylist()} == {"champion", "canary"}
    assert ev.paired_by_window.num_rows == 4 * 4  # (cand, canary) x champ + (cand, champ) x canary


def test_canary_stable_without_drift(ev):
    """No input drift in the data: the canary is stable and the verdict says so."""
    assert any(v.startswith("canary stable (max PSI") for v in ev.verdicts), ev.verdicts
    rows = [r for r in ev.stability.to_pylist() if r["model"] == "canary"]
    assert len(rows) == 4 and all(r["psi_flag"] == "stable" for r in rows)


def test_input_drift_is_told_apart_from_model_change():
    """Inputs shift on day 3: the canary's PSI flags it and the verdict names the window."""
    ev = evaluate(
        make_log(drift_day=3, seed=2),
        ["scores", "replay.scores"],
        outcomes="outcomes",
        champion="champion",
        canary="canary",
        bootstrap=50,
    )
    drift = [v for v in ev.verdicts if v.startswith("input drift: canary PSI")]
    assert drift and drift[0].endswith("in window 2026-01-08"), ev.verdicts
    # the champion is the canary's twin: their gap does not move, so no "model change" for it
    assert any(v.startswith("champion steady against the canary") for v in ev.verdicts)


def test_outcomes_after_cutoff_are_excluded_and_latest_known_wins():
    """Only outcomes appended by the cut-off count; of several, the latest appended wins."""
    con = duckdb.connect()
    rid = ["a", "b", "c", "d"]
    times = [T0] * 4
    _create(con, "s", _score_table("m", rid, times, np.array([0.9, 0.2, 0.6, 0.4])))
    cutoff = T0 + dt.timedelta(days=1)
    h = dt.timedelta(hours=1)
    outcomes = [  # request, label, appended at
        ("a", 0.0, T0 + h),
        ("a", 1.0, T0 + 2 * h),  # corrected before the cut-off: 1 wins
        ("a", 0.0, cutoff + h),  # a later correction, not yet known
        ("b", 0.0, T0 + h),
        ("c", 1.0, cutoff),  # exactly at the cut-off: counts
        ("d", 1.0, cutoff + dt.timedelta(microseconds=1)),  # just after: excluded
    ]
    _create(
        con,
        "o",
        pa.table(
            {
                "request_id": [r for r, _, _ in outcomes],
                "event_time": pa.array([T0] * len(outcomes), TS),
                "label": [v for _, v, _ in outcomes],
                "reward": pa.nulls(len(outcomes), pa.float64()),
                "_append_time": pa.array([t for _, _, t in outcomes], TS),
                "_partition": pa.array([0] * len(outcomes), pa.int32()),
                "_offset": pa.array(range(len(outcomes)), pa.int64()),
            }
        ),
    )
    ev = evaluate(con, "s", outcomes="o", cutoff=cutoff, bootstrap=0)
    row = _row(ev.overall, model="m")
    assert row["n_labeled"] == 3  # a, b, c
    assert row["n_positive"] == 2  # a (corrected to 1) and c
    assert row["brier"] == pytest.approx(np.mean([(0.9 - 1) ** 2, 0.2**2, (0.6 - 1) ** 2]))
    # a naive cut-off is read as UTC; moving it earlier drops c and a's correction
    early = evaluate(con, "s", outcomes="o", cutoff=(T0 + 1.5 * h).replace(tzinfo=None), bootstrap=0)
    assert _row(early.overall, model="m")["n_labeled"] == 2  # a's first outcome (0), b
    assert _row(early.overall, model="m")["n_positive"] == 0


WEIRD = 'weird"; DROP TABLE victim; --'


def test_hostile_topic_and_column_names_cannot_inject():
    """Topic names with quotes, semicolons, spaces, dots and dashes work as plain names; the
    DROP inside one never runs."""
    con = duckdb.connect()
    con.execute("CREATE TABLE victim AS SELECT 42 AS x")
    make_log(
        n=400,
        days=2,
        con=con,
        names={
            "scores": WEIRD,
            "replay": "replay.scores-v2 (test)",
            "outcomes": "out'; SELECT 1; --",
            "inputs": 'in"puts',
        },
    )
    # extra user columns with hostile names ride along without harm
    con.execute(f'ALTER TABLE {quote_ident(WEIRD)} ADD COLUMN "a""; DROP TABLE victim; --" INT')
    ev = evaluate(
        con,
        [WEIRD, "replay.scores-v2 (test)"],
        outcomes="out'; SELECT 1; --",
        inputs='in"puts',
        champion="champion",
        canary="canary",
        bootstrap=20,
    )
    assert con.execute("SELECT x FROM victim").fetchall() == [(42,)]
    assert set(ev.models) == {"champion", "canary", "candidate-b"}
    assert WEIRD in _row(ev.overall, model="champion")["sources"]
    for bad in ("x\n; DROP TABLE victim; --", "nul\x00byte", ""):
        with pytest.raises(InvalidNameError):
            evaluate(con, bad)
    assert con.execute("SELECT x FROM victim").fetchall() == [(42,)]


def test_accepts_a_log_and_leaves_no_temp_tables(log_con):
    """Anything with .duckdb() is a log; the evaluation's temp tables are gone afterwards."""

    class FakeLog:
        def duckdb(self, con=None):
            return log_con

    before = log_con.execute("SELECT count(*) FROM duckdb_tables()").fetchall()
    ev = evaluate(FakeLog(), "scores", bootstrap=0)
    assert ev.models == ["canary", "champion"] and ev.paired.num_rows == 0
    assert log_con.execute("SELECT count(*) FROM duckdb_tables()").fetchall() == before
    with pytest.raises(TypeError, match="duckdb"):
        evaluate(object(), "scores")


def test_clear_errors(log_con):
    """Missing topics, columns, unknown models and bad arguments raise LogstoreErrors that say
    what was expected."""
    with pytest.raises(TopicNotFoundError, match="nope"):
        evaluate(log_con, "nope")
    with pytest.raises(EvaluationError, match="missing"):
        evaluate(log_con, "inputs")  # not a score topic
    with pytest.raises(EvaluationError, match="has no scores"):
        evaluate(log_con, "scores", champion="ghost")
    with pytest.raises(EvaluationError, match="window"):
        evaluate(log_con, "scores", window="fortnightly")
    with pytest.raises(EvaluationError, match="task"):
        evaluate(log_con, "scores", task="ranking")
    with pytest.raises(LogstoreError):
        evaluate(log_con, [])


def test_same_model_in_two_topics_is_kept_apart():
    """A replay of the champion next to the production champion: labels become model@topic,
    and the bare model_id is ambiguous."""
    con = make_log(n=300, days=2)
    con.execute("INSERT INTO \"replay.scores\" SELECT * FROM scores WHERE model_id = 'champion'")
    ev = evaluate(con, ["scores", "replay.scores"], outcomes="outcomes", champion="champion@scores", bootstrap=0)
    assert "champion@replay.scores" in ev.models and "champion@scores" in ev.models
    same = _row(ev.paired, model="champion@replay.scores")
    assert same["mean_delta"] == 0 and same["disagreement"] == 0 and same["auc_delta"] == 0
    with pytest.raises(EvaluationError, match="ambiguous"):
        evaluate(con, ["scores", "replay.scores"], champion="champion")


def _same(x: pa.Table, y: pa.Table) -> None:
    """Equal tables, floats to 1e-9: DuckDB sums doubles in parallel in no fixed order."""
    assert x.schema == y.schema and x.num_rows == y.num_rows
    for name in x.column_names:
        a, b = x[name].to_pylist(), y[name].to_pylist()
        if pa.types.is_floating(x.schema.field(name).type):
            assert [v is None for v in a] == [v is None for v in b], name
            np.testing.assert_allclose(
                [v for v in a if v is not None], [v for v in b if v is not None], rtol=1e-9, err_msg=name
            )
        else:
            assert a == b, name


def test_deterministic_given_seed(log_con):
    """Same seed, same tables and verdicts; the seed only moves the interval bounds."""
    kw = dict(
        outcomes="outcomes", champion="champion", canary="canary", bootstrap=200, cutoff=T0 + dt.timedelta(days=10)
    )
    a = evaluate(log_con, ["scores", "replay.scores"], seed=3, **kw)
    b = evaluate(log_con, ["scores", "replay.scores"], seed=3, **kw)
    c = evaluate(log_con, ["scores", "replay.scores"], seed=4, **kw)
    for name in Evaluation.TABLES:
        _same(a.table(name), b.table(name))
    assert a.verdicts == b.verdicts
    assert a.paired["auc_delta_low"].equals(b.paired["auc_delta_low"])  # numpy: bit-exact
    assert a.paired["auc_delta"].equals(c.paired["auc_delta"])
    assert not a.paired["auc_delta_low"].equals(c.paired["auc_delta_low"])


def test_regression_task_and_single_window():
    """Numeric labels switch to MAE/RMSE; one window gives estimates without intervals."""
    con = duckdb.connect()
    rng = np.random.default_rng(0)
    n = 200
    rid = [f"q{i}" for i in range(n)]
    times = [T0 + dt.timedelta(minutes=i) for i in range(n)]
    y = rng.normal(10, 3, n)
    _create(
        con,
        "s",
        pa.concat_tables(
            [
                _score_table("base", rid, times, y + rng.normal(0, 2, n)),
                _score_table("new", rid, times, y + rng.normal(0, 1, n)),
            ]
        ),
    )
    _create(
        con,
        "o",
        pa.table(
            {
                "request_id": rid,
                "event_time": pa.array(times, TS),
                "label": y,
                "reward": pa.nulls(n, pa.float64()),
                "_append_time": pa.array(times, TS),
                "_partition": pa.array([0] * n, pa.int32()),
                "_offset": pa.array(range(n), pa.int64()),
            }
        ),
    )
    ev = evaluate(con, "s", outcomes="o", champion="base")
    assert ev.task == "regression"
    row = _row(ev.overall, model="new")
    truth = con.execute("SELECT score FROM s WHERE model_id = 'new' ORDER BY request_id").df()
    labels = dict(zip(rid, y))
    ys = np.array([labels[r] for r in sorted(rid)])
    assert row["mae"] == pytest.approx(skm.mean_absolute_error(ys, truth.score), rel=1e-9)
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean((truth.score - ys) ** 2)), rel=1e-9)
    pair = _row(ev.paired, model="new")
    assert pair["rmse_delta"] < 0 and pair["rmse_delta_low"] is None
    assert any("new vs champion on RMSE" in v and "need 3" in v for v in ev.verdicts)
    with pytest.raises(EvaluationError, match="0/1 labels"):
        evaluate(con, "s", outcomes="o", task="classification")


def test_sql_helpers_are_reachable_from_the_function():
    """`replay.evaluate` is the function (`replay.evaluation` the package), and carries the SQL helpers."""
    import replay
    import replay.evaluation

    assert replay.evaluate is evaluate and callable(replay.evaluate)
    assert "quantile_cont" in replay.evaluate.sql("latency")
    assert "psi" in replay.evaluate.sql_names()


def test_evaluates_a_real_log_fenced_by_append_time(tmp_path):
    """Over logstore's own DuckDB views: outcomes count from their append time, not event time."""
    import logstore

    log = logstore.open(tmp_path / "log")
    log.create_topic("scores", "model_score", partitions=2, key_field="request_id")
    log.create_topic("outcomes", "outcome", partitions=2, key_field="request_id")
    rng = np.random.default_rng(0)
    with log.writer("scores", clock=lambda: T0) as w:
        w.append_batch(
            [
                {
                    "request_id": f"r{i}",
                    "event_time": T0 + dt.timedelta(hours=i),
                    "model_id": m,
                    "model_version": "1",
                    "score": float(rng.uniform()),
                    "latency_ms": 3.0,
                }
                for i in range(72)
                for m in ("champ", "canary")
            ]
        )
    learned = T0 + dt.timedelta(days=5)  # labels of day-old events, appended days later
    with log.writer("outcomes", clock=lambda: learned) as w:
        w.append_batch(
            [
                {"request_id": f"r{i}", "event_time": T0 + dt.timedelta(hours=i), "label": float(i % 2)}
                for i in range(72)
            ]
        )
    ev = evaluate(log, "scores", outcomes="outcomes", champion="champ", canary="canary", bootstrap=50)
    assert _row(ev.overall, model="champ")["n_labeled"] == 72
    assert _row(ev.paired, model="canary")["n_windows"] == 3
    before = evaluate(log, "scores", outcomes="outcomes", cutoff=learned - dt.timedelta(seconds=1), bootstrap=0)
    assert before.overall["n_labeled"].to_pylist() == [0, 0]
    assert before.verdicts[0].startswith("no outcomes known by the cut-off")

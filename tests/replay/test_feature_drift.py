"""Per-feature input drift (`replay.evaluation.feature_drift`, replay/sql/feature_drift.sql): PSI of
every input feature per later window against its first, by the score PSI's binning rule, checked
by hand in numpy; which columns are features; and the report's section and JSON."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from replay import report
from replay.evaluation import PSI_ALERT, PSI_SHIFT, evaluate, quote_ident
from replay.evaluation.feature_drift import MAX_CATEGORIES
from replay.report_json import dumps

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
TS = pa.timestamp("us", "UTC")
N = 400  # requests per window
HOSTILE = 'a"; DROP TABLE victim; --'


def _create(con, name, table):
    con.register("__arrow", table)
    con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __arrow")
    con.unregister("__arrow")


def _inputs(rng):
    """Three daily windows. x: N(0,1), N(0,1), N(1,1); amount (map entry): lognormal, scaled by
    1.0, 1.0, 3.0, missing from half the rows of the last window; country: a, b, c at 60/30/10%,
    then 60/30/10%, then 20/30/50%; plus columns that are no features."""
    cols: dict[str, list] = {k: [] for k in ("request_id", "event_time", "x", "country", "features", "raw", "ids")}
    cols[HOSTILE] = []
    for w, (shift, scale, freq) in enumerate(
        ((0, 1, (0.6, 0.3, 0.1)), (0, 1, (0.6, 0.3, 0.1)), (1, 3, (0.2, 0.3, 0.5)))
    ):
        secs = np.sort(rng.uniform(0, 86400, N))
        x = rng.normal(shift, 1, N)
        amount = rng.lognormal(3, 1, N) * scale
        country = rng.choice(["a", "b", "c"], N, p=freq)
        for i in range(N):
            cols["request_id"].append(f"w{w}r{i}")
            cols["event_time"].append(T0 + dt.timedelta(days=w, seconds=float(secs[i])))
            cols["x"].append(float(x[i]))
            cols["country"].append(str(country[i]))
            entry = {"amount": float(amount[i]), "flag": float(i % 2)}
            if w == 2 and i % 2:
                del entry["amount"]
            cols["features"].append(list(entry.items()))
            cols["raw"].append("{}")
            cols["ids"].append(f"id-{w}-{i}")  # distinct per row: an identifier, not a category
            cols[HOSTILE].append(i % 3)
    n = len(cols["request_id"])
    return pa.table(
        {
            **{k: v for k, v in cols.items() if k not in ("event_time", "features")},
            "event_time": pa.array(cols["event_time"], TS),
            "features": pa.array(cols["features"], pa.map_(pa.string(), pa.float64())),
            "_append_time": pa.array(cols["event_time"], TS),
            "_partition": pa.array([0] * n, pa.int32()),
            "_offset": pa.array(range(n), pa.int64()),
        }
    )


def _con(with_token=True):
    rng = np.random.default_rng(7)
    con = duckdb.connect()
    con.execute("CREATE TABLE victim AS SELECT 1 AS x")
    inputs = _inputs(rng)
    if with_token:  # a hot-swap token row and a retried request: neither counts twice
        extra = inputs.slice(0, 1).to_pylist()[0]
        retry = {**extra, "x": 1e9}
        retry["event_time"] = extra["event_time"] + dt.timedelta(seconds=1)
        token = {**extra, "request_id": "token", "x": 1e9}
        rows = inputs.to_pylist() + [retry, token]
        swap = [None] * (len(rows) - 1) + [{"token": "t", "model_id": "m", "version": "2"}]
        inputs = pa.Table.from_pylist(rows, schema=inputs.schema)
        inputs = inputs.append_column(
            "swap",
            pa.array(swap, pa.struct([("token", pa.string()), ("model_id", pa.string()), ("version", pa.string())])),
        )
    _create(con, "inputs", inputs)
    scores = inputs.select(["request_id", "event_time", "_append_time", "_partition", "_offset"])
    n = scores.num_rows
    scores = scores.append_column("model_id", pa.array(["m"] * n)).append_column("model_version", pa.array(["1"] * n))
    scores = scores.append_column("score", pa.array(rng.uniform(size=n))).append_column(
        "latency_ms", pa.array([1.0] * n)
    )
    _create(con, "scores", scores)
    return con, inputs


def _psi_numeric(ref, cur):
    """psi.sql's rule: reference deciles (linear quantiles, duplicates removed), a value's bin the
    number of edges strictly below it, a missing value its own bin, shares floored at 1e-4."""
    ref, cur = np.asarray(ref, float), np.asarray(cur, float)
    present = ref[~np.isnan(ref)]
    edges = np.unique(np.quantile(present, np.arange(1, 10) / 10))

    def shares(v):
        bins = np.where(np.isnan(v), -1, (edges[None, :] < v[:, None]).sum(axis=1))
        return {b: (bins == b).sum() / len(v) for b in range(-1, len(edges) + 1)}

    return _psi(shares(ref), shares(cur))


def _psi(p, q):
    total = 0.0
    for b in set(p) | set(q):
        a, c = max(p.get(b, 0.0), 1e-4), max(q.get(b, 0.0), 1e-4)
        total += (c - a) * np.log(c / a)
    return total


def _freq(values):
    values = list(values)
    return {v: values.count(v) / len(values) for v in set(values)}


@pytest.fixture(scope="module")
def drifted():
    con, inputs = _con()
    ev = evaluate(con, "scores", inputs="inputs", bootstrap=0)
    return con, inputs, ev


def _windows(inputs, column, key=None):
    rows = [r for r in inputs.to_pylist() if r.get("swap") is None and r["request_id"] != "token"]
    seen, out = set(), {}
    for r in sorted(rows, key=lambda r: r["event_time"]):
        if r["request_id"] in seen:
            continue
        seen.add(r["request_id"])
        w = r["event_time"].replace(hour=0, minute=0, second=0, microsecond=0)
        value = r[column] if key is None else dict(r[column]).get(key, np.nan)
        out.setdefault(w, []).append(value)
    return out


def test_numeric_and_map_features_match_a_hand_computation(drifted):
    """x and features.amount, window 2 and 3 against window 1; the missing half of amount counts."""
    _, inputs, ev = drifted
    rows = {(r["feature"], r["window_start"]): r for r in ev.feature_drift.to_pylist()}
    for feature, column, key in (("x", "x", None), ("features.amount", "features", "amount")):
        windows = _windows(inputs, column, key)
        first, *later = sorted(windows)
        for w in later:
            row = rows[(feature, w)]
            assert row["kind"] == "numeric" and row["reference_window"] == first
            assert row["n_reference"] == len(windows[first]) == N and row["n_current"] == N
            assert row["psi"] == pytest.approx(_psi_numeric(windows[first], windows[w]), rel=1e-9), (feature, w)
    last = rows[("features.amount", T0 + dt.timedelta(days=2))]
    assert last["missing_current"] == 0.5 and last["missing_reference"] == 0.0
    assert (T0, "x") not in {(r["window_start"], r["feature"]) for r in ev.feature_drift.to_pylist()}


def test_categorical_features_compare_category_frequencies(drifted):
    _, inputs, ev = drifted
    windows = _windows(inputs, "country")
    first, second, third = sorted(windows)
    rows = {r["window_start"]: r for r in ev.feature_drift.to_pylist() if r["feature"] == "country"}
    assert rows[third]["kind"] == "categorical"
    for w in (second, third):
        assert rows[w]["psi"] == pytest.approx(_psi(_freq(windows[first]), _freq(windows[w])), rel=1e-9)
    assert rows[third]["psi"] >= PSI_ALERT and rows[second]["psi"] < PSI_SHIFT


def test_flags_follow_the_psi_levels_and_only_features_are_compared(drifted):
    con, _, ev = drifted
    features = sorted({r["feature"] for r in ev.feature_drift.to_pylist()})
    # raw and request_id are no features, ids has more than MAX_CATEGORIES values, swap is a token
    assert features == sorted(["x", "country", "features.amount", "features.flag", HOSTILE])
    assert N * 3 > MAX_CATEGORIES
    for r in ev.feature_drift.to_pylist():
        want = "alert" if r["psi"] >= PSI_ALERT else "shift" if r["psi"] >= PSI_SHIFT else "stable"
        assert r["psi_flag"] == want
    flags = {(r["feature"], r["psi_flag"]) for r in ev.feature_drift.to_pylist() if r["window_start"].day == 4}
    assert {("x", "alert"), ("features.amount", "alert"), ("country", "alert")} <= flags
    assert ("features.flag", "stable") in flags
    assert con.execute("SELECT x FROM victim").fetchall() == [(1,)]  # a hostile column name is only a name
    assert any(v.startswith("input features drifted against the first window: ") for v in ev.verdicts)


def test_the_report_has_a_feature_drift_section_and_json(drifted):
    _, _, ev = drifted
    html = report.render_html(ev)
    section = html.split('<section id="feature-drift">', 1)[1].split("</section>", 1)[0]
    assert "alert: x PSI" in section and "features.amount" in section and "country" in section
    assert f"shift at {PSI_SHIFT}, alert at {PSI_ALERT}" in section
    assert "Input feature drift" in report.summary(ev)
    doc = json.loads(dumps(ev))
    assert len(doc["feature_drift"]) == ev.feature_drift.num_rows
    worst = {r["feature"]: r for r in doc["feature_drift_summary"]}
    x_rows = [r for r in ev.feature_drift.to_pylist() if r["feature"] == "x"]
    assert worst["x"]["psi_max"] == pytest.approx(max(r["psi"] for r in x_rows))
    assert worst["x"]["windows"] == 2 and worst["x"]["psi_flag"] == "alert"


def test_without_inputs_there_is_no_feature_drift_and_the_section_says_why():
    con, _ = _con(with_token=False)
    ev = evaluate(con, "scores", bootstrap=0)
    assert ev.feature_drift.num_rows == 0
    assert "no inputs topic" in report.render_html(ev).split('id="feature-drift"', 1)[1]
    one = evaluate(con, "scores", inputs="inputs", bootstrap=0, window="7 days")
    assert one.feature_drift.num_rows == 0  # a single window: nothing to compare


def test_a_drifting_top_level_feature_of_the_evaluate_fixture_is_found():
    """test_evaluate's log shifts its `features` column by +1 from day 2: the feature drifts then."""
    from .test_evaluate import make_log

    con = make_log(n=1200, days=4, drift_day=2)
    ev = evaluate(con, ["scores", "replay.scores"], inputs="inputs", canary="canary", bootstrap=0)
    psi = {r["window_start"].day: r["psi"] for r in ev.feature_drift.to_pylist() if r["feature"] == "features"}
    assert sorted(psi) == [6, 7, 8] and psi[6] < PSI_SHIFT and psi[7] >= PSI_ALERT and psi[8] >= PSI_ALERT

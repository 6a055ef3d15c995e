"""Label maturity (`replay.evaluation.maturity`): the label delay measured from the data, the windows
whose labels have not all arrived by the cut-off (by the p90 delay, or by a label rate far below
the typical one while labels can still arrive), the verdict, `by_window.mature` and the report."""

from __future__ import annotations

import datetime as dt
import json
import statistics

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from replay import report
from replay.evaluation import evaluate, quote_ident
from replay.evaluation.maturity import RATE_FLOOR
from replay.report_json import dumps

T0 = dt.datetime(2026, 4, 6, tzinfo=dt.UTC)
TS = pa.timestamp("us", "UTC")
DAY = dt.timedelta(days=1)
N = 200


def _create(con, name, table):
    con.register("__arrow", table)
    con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __arrow")
    con.unregister("__arrow")


def _log(delays):
    """Two models scoring N requests per daily window w (at w + i * 7 min); request i of window w
    gets its outcome `delays[w](i)` hours after its event (None: never)."""
    rng = np.random.default_rng(0)
    req, times, known, rid_out = [], [], [], []
    for w, delay in enumerate(delays):
        for i in range(N):
            t = T0 + w * DAY + dt.timedelta(minutes=7 * i)
            rid = f"w{w}r{i}"
            req.append(rid)
            times.append(t)
            h = delay(i)
            if h is not None:
                rid_out.append(rid)
                known.append(t + dt.timedelta(hours=h))
    con = duckdb.connect()
    n = len(req)
    scores = []
    for model in ("a", "b"):
        scores.append(
            pa.table(
                {
                    "request_id": req,
                    "event_time": pa.array(times, TS),
                    "model_id": [model] * n,
                    "model_version": ["1"] * n,
                    "score": rng.uniform(size=n),
                    "latency_ms": [1.0] * n,
                    "_append_time": pa.array(times, TS),
                    "_partition": pa.array([0] * n, pa.int32()),
                    "_offset": pa.array(range(n), pa.int64()),
                }
            )
        )
    _create(con, "scores", pa.concat_tables(scores))
    m = len(rid_out)
    label = (rng.uniform(size=m) < 0.3).astype(float)
    _create(
        con,
        "outcomes",
        pa.table(
            {
                "request_id": rid_out,
                "event_time": pa.array(known, TS),
                "label": label,
                "reward": label,
                "_append_time": pa.array(known, TS),
                "_partition": pa.array([0] * m, pa.int32()),
                "_offset": pa.array(range(m), pa.int64()),
            }
        ),
    )
    return con


def _sentence(window, ratio):
    rate = f"{ratio:.0%} of the typical label rate"
    return f"window {window:%Y-%m-%d} has immature labels ({rate}): its quality numbers are provisional"


def test_the_last_window_within_the_p90_delay_of_the_cutoff_is_immature():
    """Delays 0-24 h (uniform over the requests); cut-off 6 h after the last window ends."""
    delay = lambda i: 24.0 * i / N  # noqa: E731
    con = _log([delay] * 4)
    cutoff = T0 + 4 * DAY + dt.timedelta(hours=6)
    ev = evaluate(con, "scores", outcomes="outcomes", cutoff=cutoff, bootstrap=0)
    rows = ev.label_maturity.to_pylist()
    assert [r["window_start"] for r in rows] == [T0 + w * DAY for w in range(4)]
    hours = np.array([delay(i) for i in range(N)] * 4)
    times = np.array([w * 24 + 7 * i / 60 for w in range(4) for i in range(N)])
    known = times + hours <= 4 * 24 + 6
    p50, p90 = np.quantile(hours[known] * 3600, [0.5, 0.9])
    assert rows[0]["delay_p90_s"] == pytest.approx(p90) and rows[0]["delay_p50_s"] == pytest.approx(p50)
    assert rows[0]["delay_max_s"] == pytest.approx(hours[known].max() * 3600)
    for w, r in enumerate(rows):
        assert (r["n_requests"], r["n_labeled"]) == (N, int(known[w * N : (w + 1) * N].sum()))
    assert [r["mature"] for r in rows] == [True, True, True, False]
    assert rows[3]["reason"] == "delay"
    typical = statistics.median(r["label_rate"] for r in rows[:3])
    assert rows[3]["typical_rate"] == typical and rows[3]["rate_vs_typical"] == pytest.approx(
        rows[3]["label_rate"] / typical
    )
    assert _sentence(T0 + 3 * DAY, rows[3]["rate_vs_typical"]) in ev.verdicts
    assert sum("immature labels" in v for v in ev.verdicts) == 1
    marks = {(r["model"], r["window_start"]): r["mature"] for r in ev.by_window.to_pylist()}
    assert marks == {(m, T0 + w * DAY): w < 3 for m in ("a", "b") for w in range(4)}


def test_a_low_label_rate_flags_a_window_only_while_labels_can_still_arrive():
    """Short delays (p90 1 h), a few of 30 h; window 0 is old and sparsely labelled (mature),
    window 3 ends before the cut-off - p90 but most of its labels take 40 h (immature: rate)."""
    delays = [
        lambda i: 1.0 if i % 5 == 0 else None,  # 20% ever labelled, long ago
        lambda i: 30.0 if i < 10 else 1.0,  # the long delays seen
        lambda i: 1.0,
        lambda i: 1.0 if i < 60 else 40.0,  # 140 of 200 not yet known
    ]
    con = _log(delays)
    cutoff = T0 + 4 * DAY + dt.timedelta(hours=12)
    ev = evaluate(con, "scores", outcomes="outcomes", cutoff=cutoff, bootstrap=0)
    rows = ev.label_maturity.to_pylist()
    assert [r["label_rate"] for r in rows] == [0.2, 1.0, 1.0, 0.3]
    assert rows[0]["delay_p90_s"] == pytest.approx(3600) and rows[0]["delay_max_s"] == pytest.approx(30 * 3600)
    typical = statistics.median([0.2, 1.0, 1.0, 0.3])
    assert 0.3 < RATE_FLOOR * typical and 0.2 < RATE_FLOOR * typical
    assert [(r["mature"], r["reason"]) for r in rows] == [(True, None), (True, None), (True, None), (False, "rate")]
    assert _sentence(T0 + 3 * DAY, 0.3 / typical) in ev.verdicts


def test_the_report_marks_provisional_windows_in_text_html_and_json():
    con = _log([lambda i: 24.0 * i / N] * 3)
    ev = evaluate(con, "scores", outcomes="outcomes", cutoff=T0 + 2.5 * DAY, bootstrap=0)
    assert [r["mature"] for r in ev.label_maturity.to_pylist()] == [True, False, False]
    text = report.summary(ev)
    block = text.split("\nLabel maturity\n", 1)[1].split("\n\n", 1)[0]
    assert "label delay (outcome append time - request time): p50 " in block
    assert block.count("provisional") >= 2 and "2026-04-06" in block
    html = report.render_html(ev)
    per_window = html.split("<h3>Per window</h3>", 1)[1].split("</table>", 1)[0]
    assert per_window.count("<td>provisional</td>") == 2 * 2  # two models, two windows
    assert per_window.count("<td>mature</td>") == 2
    doc = json.loads(dumps(ev))
    assert [r["mature"] for r in doc["label_maturity"]] == [True, False, False]


def test_without_outcomes_or_known_labels_maturity_is_unknown():
    con = _log([lambda i: 1.0] * 2)
    ev = evaluate(con, "scores", bootstrap=0)
    assert ev.label_maturity.num_rows == 0
    assert set(ev.by_window["mature"].to_pylist()) == {None}
    before = evaluate(con, "scores", outcomes="outcomes", cutoff=T0, bootstrap=0)
    assert [r["mature"] for r in before.label_maturity.to_pylist()] == [None, None]
    assert not any("immature" in v for v in before.verdicts)
    assert before.verdicts[0].startswith("no outcomes known by the cut-off")
    assert "the label delay is unknown" in report.summary(before)

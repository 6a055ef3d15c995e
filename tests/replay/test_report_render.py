"""How the report draws and lays out: log axes where tails matter (histogram.sql's log-spaced
bins, `report.log_y`), Wilson intervals of the calibration bins (calibration.sql) as error bars,
every HTML table in a sideways-scrolling box, no role word said twice, `$` escaped for matplotlib."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from replay import report
from replay.evaluation import evaluate, quote_ident
from replay.report_tables import role_name, tex

T0 = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)
TS = pa.timestamp("us", "UTC")
MATH = "m$_{1}$"  # mathtext if not escaped: a subscript


def _create(con, name, table):
    con.register("__arrow", table)
    con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __arrow")
    con.unregister("__arrow")


def _con(scores: dict[str, np.ndarray], latency: dict[str, np.ndarray], labels: np.ndarray | None, days: int = 3):
    """One score topic "scores" with the given models, outcomes "outcomes" (when labels are given)."""
    n = len(next(iter(scores.values())))
    times = [T0 + dt.timedelta(seconds=float(s)) for s in np.linspace(0, days * 86400 - 1, n)]
    rid = [f"r{i}" for i in range(n)]
    parts = []
    for model, s in scores.items():
        parts.append(
            pa.table(
                {
                    "request_id": rid,
                    "event_time": pa.array(times, TS),
                    "model_id": [model] * n,
                    "model_version": ["1"] * n,
                    "score": pa.array(s, pa.float64()),
                    "latency_ms": pa.array(latency[model], pa.float64()),
                    "_append_time": pa.array(times, TS),
                    "_partition": pa.array([0] * n, pa.int32()),
                    "_offset": pa.array(range(n), pa.int64()),
                }
            )
        )
    con = duckdb.connect()
    _create(con, "scores", pa.concat_tables(parts))
    if labels is not None:
        _create(
            con,
            "outcomes",
            pa.table(
                {
                    "request_id": rid,
                    "event_time": pa.array(times, TS),
                    "label": pa.array(labels, pa.float64()),
                    "reward": pa.array(labels, pa.float64()),
                    "_append_time": pa.array(times, TS),
                    "_partition": pa.array([0] * n, pa.int32()),
                    "_offset": pa.array(range(n), pa.int64()),
                }
            ),
        )
    return con


def _skewed_inputs():
    """champion/canary named as their roles, a `$` model; fraud-like scores piled near 0 and
    latencies with a heavy tail (lognormal, sigma 1.5: max / p50 far above 20)."""
    rng = np.random.default_rng(3)
    n = 1500
    x = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x - 3)))).astype(float)
    scores = {m: 1 / (1 + np.exp(-(x - 3 + rng.normal(0, 0.5, n)))) for m in ("champion", "canary", MATH)}
    latency = {m: rng.lognormal(1.5, 1.5, n) for m in scores}
    return scores, latency, y


@pytest.fixture(scope="module")
def skewed():
    con = _con(*_skewed_inputs())
    return evaluate(con, "scores", outcomes="outcomes", champion="champion", canary="canary", bootstrap=50)


@pytest.fixture(scope="module")
def even():
    """Scores spread over [0, 1] and gamma latencies: no axis needs a log scale."""
    rng = np.random.default_rng(5)
    n = 900
    s = rng.uniform(size=n)
    y = (rng.uniform(size=n) < s).astype(float)
    con = _con(
        {"m1": s, "m2": np.clip(s + rng.normal(0, 0.1, n), 0, 1)}, {m: rng.gamma(4, 3, n) for m in ("m1", "m2")}, y
    )
    return evaluate(con, "scores", outcomes="outcomes", champion="m1", bootstrap=0)


def _figures(monkeypatch):
    """Every figure report.py turns into a PNG, collected."""
    figs = []
    real = report._png

    def keep(fig):
        figs.append(fig)
        return real(fig)

    monkeypatch.setattr(report, "_png", keep)
    return figs


def _by_title(figs, start):
    (ax,) = [ax for f in figs for ax in f.axes if ax.get_title().startswith(start)]
    return ax


def test_heavy_tailed_latency_gets_log_spaced_bins_and_a_log_axis(skewed, even):
    rows = [r for r in skewed.histograms.to_pylist() if r["column"] == "latency_ms"]
    assert all(r["log_x"] for r in rows)
    ratios = {round(r["bin_hi"] / r["bin_lo"], 9) for r in rows}
    assert len(ratios) == 1  # geometric bins
    lat = np.concatenate(list(_skewed_inputs()[1].values()))
    assert lat.max() / np.median(lat) > 20
    assert min(r["bin_lo"] for r in rows) == pytest.approx(lat.min())
    assert max(r["bin_hi"] for r in rows) == pytest.approx(lat.max())  # no tail folded into the last bin
    assert sum(r["n"] for r in rows) == len(lat)
    flat = [r for r in even.histograms.to_pylist() if r["column"] == "latency_ms"]
    assert not any(r["log_x"] for r in flat)
    widths = {round(r["bin_hi"] - r["bin_lo"], 9) for r in flat}
    assert len(widths) == 1  # equal width


def test_log_axes_follow_the_stated_rule(skewed, even, monkeypatch):
    """Latency: a log count axis always, log x with log-spaced bins; scores: log counts when a
    model's |skewness| exceeds SKEWED."""
    skews = [r["skewness"] for r in skewed.histograms.to_pylist() if r["column"] == "score"]
    assert max(abs(s) for s in skews) > report.SKEWED
    assert max(abs(r["skewness"]) for r in even.histograms.to_pylist() if r["column"] == "score") < report.SKEWED
    assert report.log_y(skewed, "score") and not report.log_y(even, "score")
    assert report.log_y(skewed, "latency_ms") and report.log_y(even, "latency_ms")
    figs = _figures(monkeypatch)
    report.render_html(skewed)
    report.render_html(even)
    latency = [ax for f in figs for ax in f.axes if ax.get_title().startswith("Latency")]
    scores = [ax for f in figs for ax in f.axes if ax.get_title().startswith("Score distribution")]
    assert [(ax.get_xscale(), ax.get_yscale()) for ax in latency] == [("log", "log"), ("linear", "log")]
    assert [ax.get_yscale() for ax in scores] == ["log", "linear"]


def test_calibration_bins_carry_wilson_intervals_drawn_as_error_bars(skewed, monkeypatch):
    from scipy.stats import binomtest

    rows = skewed.calibration.to_pylist()
    assert rows
    for r in rows:
        k = round(r["mean_label"] * r["n"])
        ci = binomtest(k, r["n"]).proportion_ci(confidence_level=0.95, method="wilson")
        assert r["mean_label_low"] == pytest.approx(ci.low, abs=1e-6)
        assert r["mean_label_high"] == pytest.approx(ci.high, abs=1e-6)
        assert r["mean_label_low"] <= r["mean_label"] <= r["mean_label_high"]
    figs = _figures(monkeypatch)
    report.render_html(skewed)
    ax = _by_title(figs, "Calibration")
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert sorted(len(c.lines[2][0].get_segments()) for c in bars) == sorted(
        sum(r["model"] == m for r in rows) for m in skewed.models
    )


def test_regression_labels_have_no_wilson_interval():
    rng = np.random.default_rng(1)
    n = 300
    s = rng.normal(size=n)
    con = _con({"r": s}, {"r": np.ones(n)}, s + rng.normal(0, 0.1, n))
    ev = evaluate(con, "scores", outcomes="outcomes", bootstrap=0)
    assert ev.task == "regression"
    assert {(r["mean_label_low"], r["mean_label_high"]) for r in ev.calibration.to_pylist()} == {(None, None)}


class _Tables(HTMLParser):
    """For each <table>: whether an enclosing <div> has class scroll."""

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.tables: list[bool] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append(any(t == "div" and "scroll" in c.split() for t, c in self.stack))
        if tag not in ("img", "meta", "br"):
            self.stack.append((tag, dict(attrs).get("class") or ""))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        self.text.append(data)


def test_every_html_table_scrolls_sideways(skewed):
    from replay.ope import estimate

    rng = np.random.default_rng(0)
    ope = {
        "p.toml": estimate(
            action=rng.integers(0, 2, 50),
            reward=rng.integers(0, 2, 50).astype(float),
            pscore=np.full(50, 0.5),
            action_dist=np.full((50, 2, 1), 0.5),
        )
    }
    page = report.render_html(skewed, ope=ope)
    parser = _Tables()
    parser.feed(page)
    assert len(parser.tables) > 10 and all(parser.tables)
    assert re.search(r"\.scroll\{overflow-x:auto", page)


DUPLICATE = re.compile(r"\b(champion|canary|challenger|scores|outcomes|inputs)\b[\s(:,]+\1\b")


def test_no_role_word_is_said_twice(skewed):
    """Models named champion and canary, topics named scores and outcomes: never "champion
    champion", "champion (champion)" nor "outcomes outcomes" in the text or the page."""
    text = report.summary(skewed)
    parser = _Tables()
    parser.feed(report.render_html(skewed))
    for where in (text, " ".join(parser.text)):
        assert not DUPLICATE.search(where), DUPLICATE.search(where)
    assert "roles: champion, canary" in text
    assert role_name("champion", "m1") == "champion m1" and role_name("canary", "canary@scores") == "canary@scores"
    assert role_name("champion", None) == "no champion"


def _labels(fig):
    out = []
    for ax in fig.axes:
        legend = ax.get_legend()
        out += [t.get_text() for t in (legend.get_texts() if legend else [])]
        out += [t.get_text() for t in ax.texts]
    return out


def test_model_names_reach_matplotlib_with_dollars_escaped(skewed, monkeypatch):
    from replay.report_sections import Event

    figs = _figures(monkeypatch)
    events = [Event(T0 + dt.timedelta(days=1), "deploy", MATH, "2", "t@h", "")]
    report.render_html(skewed, deployment=events)
    assert tex(MATH) == r"m\$_{1}\$"
    labels = [t for f in figs for t in _labels(f)]
    assert tex(MATH) in labels  # the legends of the histograms, the calibration, the PSI plot ...
    assert any(tex(MATH) in t for t in labels if t.startswith("deploy"))  # ... and the timeline's events
    for text in labels:
        assert not re.search(r"(?<!\\)\$", text), text

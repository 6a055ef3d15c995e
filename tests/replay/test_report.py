"""replay.report: the terminal summary and the self-contained HTML report (parsed, every section
and plot present, nothing fetched from the network, names escaped)."""

from __future__ import annotations

import base64
import datetime as dt
from html.parser import HTMLParser

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from replay import report
from replay.evaluation import evaluate, quote_ident

T0 = dt.datetime(2026, 2, 2, tzinfo=dt.UTC)
TS = pa.timestamp("us", "UTC")
HOSTILE = "<script>alert(1)</script>"


def _topic(con, name, columns):
    n = len(columns["request_id"])
    table = pa.table(
        {
            **columns,
            "_partition": pa.array([0] * n, pa.int32()),
            "_offset": pa.array(range(n), pa.int64()),
        }
    )
    con.register("__arrow", table)
    con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __arrow")
    con.unregister("__arrow")


def _log(days=3, n=900, outcomes=True):
    """Champion, canary and a candidate whose model_id would be markup if pasted into HTML."""
    rng = np.random.default_rng(4)
    con = duckdb.connect()
    times = [T0 + dt.timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, days * 86400, n))]
    rid = [f"r{i}" for i in range(n)]
    x = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-x))).astype(float)
    cols = {
        k: [] for k in ("request_id", "event_time", "model_id", "model_version", "score", "latency_ms", "_append_time")
    }
    for model, noise in (("champion", 1.0), ("canary", 1.0), (HOSTILE, 0.4)):
        s = 1 / (1 + np.exp(-(x + rng.normal(0, noise, n))))
        cols["request_id"] += rid
        cols["event_time"] += times
        cols["model_id"] += [model] * n
        cols["model_version"] += ["v1"] * n
        cols["score"] += np.round(s, 3).tolist()
        cols["latency_ms"] += rng.gamma(2, 4, n).tolist()
        cols["_append_time"] += times
    cols["event_time"] = pa.array(cols["event_time"], TS)
    cols["_append_time"] = pa.array(cols["_append_time"], TS)
    _topic(con, "scores", cols)
    if outcomes:
        _topic(
            con,
            "outcomes",
            {
                "request_id": rid,
                "event_time": pa.array(times, TS),
                "label": y,
                "reward": y,
                "_append_time": pa.array(times, TS),
            },
        )
    return con


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections: list[str] = []
        self.images: dict[str, str] = {}
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.images[a.get("id")] = a.get("src", "")
        for key in ("src", "href"):
            if key in a and not a[key].startswith(("data:", "#")):
                self.urls.append(a[key])

    def handle_data(self, data):
        self.text.append(data)


def _parse(path) -> _Collect:
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture(scope="module")
def ev():
    return evaluate(_log(), "scores", outcomes="outcomes", champion="champion", canary="canary", bootstrap=100)


def test_html_report_has_every_section_and_embedded_plot(ev, tmp_path):
    """Sections overview/quality/paired/drift/latency and four PNG plots as data: URIs."""
    path = report.write_html(ev, tmp_path / "sub" / "report.html")
    assert path == tmp_path / "sub" / "report.html" and path.exists()
    doc = _parse(path)
    assert doc.sections == list(report.SECTIONS)
    assert set(doc.images) == set(report.PLOTS)
    for plot_id, src in doc.images.items():
        assert src.startswith("data:image/png;base64,"), plot_id
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000, plot_id
    # self-contained: no external URLs, scripts or stylesheets to fetch
    assert doc.urls == []
    assert "script" not in doc.tags and "link" not in doc.tags
    text = "".join(doc.text)
    for verdict in ev.verdicts:
        assert verdict in text
    assert HOSTILE in text  # shown as text ...
    assert HOSTILE not in path.read_text(encoding="utf-8")  # ... because it was escaped
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_html_report_without_outcomes_or_history_still_has_every_plot(tmp_path):
    """No outcomes and a single window: the plots say so instead of disappearing."""
    ev = evaluate(
        _log(days=1, outcomes=False), "scores", champion="champion", canary="canary", bootstrap=0, window="1 day"
    )
    doc = _parse(report.write_html(ev, tmp_path / "r.html"))
    assert set(doc.images) == set(report.PLOTS)
    assert doc.sections == list(report.SECTIONS)


def test_summary_is_plain_text_with_tables_and_verdicts(ev):
    """The terminal summary names every model and section and lists every verdict."""
    text = report.summary(ev)
    for heading in ("Models", "Quality", "Latency", "Paired", "Drift", "Verdicts"):
        assert f"\n{heading}" in text
    for model in ev.models:
        assert model in text
    for verdict in ev.verdicts:
        assert f"- {verdict}" in text
    assert "\x1b" not in text  # no terminal escape codes: it pastes anywhere
    assert any(v.startswith(f"{HOSTILE} beats champion on AUC") for v in ev.verdicts), ev.verdicts


def test_write_html_wraps_os_errors(ev, tmp_path):
    """A path that cannot be written raises LogIOError naming the path."""
    from logstore.errors import LogIOError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LogIOError, match="report"):
        report.write_html(ev, blocker / "report.html")

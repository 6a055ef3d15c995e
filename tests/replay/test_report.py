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


def test_html_report_adds_the_deployment_timeline_counterfactual_and_ope_sections(ev, tmp_path):
    """Given control records, a counterfactual and OPE results, the page gains their sections:
    the timeline plot (quality and latency with the steps), the steps as a table (escaped), the
    counterfactual's tables and one row per target policy and estimator."""
    import logstore
    import replay
    from rendezvous.control import CONTROL_TOPIC, ensure_control, make_record
    from replay.ope import estimate
    from replay.report_sections import deployment_events
    from tests.replay.test_counterfactual import CFG, HAND, write_log

    path = tmp_path / "log"
    write_log(path, HAND)
    with logstore.open(path) as log:
        ensure_control(log)
        steps = [
            make_record("deploy", "m3", who="t@h", version="2", role="shadow", why=HOSTILE),
            make_record("ramp", "m3", who="t@h", weight=0.25),
            make_record("swap", "m3", who="t@h", version="3", token="abc"),
        ]
        with log.writer(CONTROL_TOPIC, linger_ms=None) as w:
            for r in steps:
                w.append_batch([r])
        events = deployment_events(log)
        cf = replay.counterfactual(log, config=CFG, sla_ms=15)
    assert [e.label for e in events] == ["deploy m3 2", "ramp m3 to 0.25", "swap m3 to 3"]
    rng = np.random.default_rng(0)
    n = 200
    ope = {
        "uniform.toml": estimate(
            action=rng.integers(0, 2, n),
            reward=rng.integers(0, 2, n).astype(float),
            pscore=np.full(n, 0.5),
            action_dist=np.full((n, 2, 1), 0.5),
            intervals=True,
            n_bootstrap=50,
        )
    }
    out = report.write_html(ev, tmp_path / "live.html", deployment=events, counterfactual=cf, ope=ope)
    doc = _parse(out)
    assert doc.sections == [*report.SECTIONS, *report.LIVE_SECTIONS]
    assert set(doc.images) == set(report.PLOTS) | set(report.LIVE_PLOTS)
    text = "".join(doc.text)
    assert "ramp m3 to 0.25" in text and "swap m3 to 3" in text and HOSTILE in text
    assert HOSTILE not in out.read_text(encoding="utf-8")
    assert cf.to_text().splitlines()[0] in text
    for est in ("ipw", "snipw", "dr"):
        assert f"uniform.toml{est}{ope['uniform.toml'][est].value:.4g}" in text.replace("\n", "")
    plain = report.write_html(ev, tmp_path / "plain.html")
    assert _parse(plain).sections == list(report.SECTIONS)  # without them: the evaluation only


def test_replay_report_html_gains_the_live_sections_from_the_command_line(tmp_path, capsys):
    """`replay report --html` adds the deployment timeline when the log has a control topic, the
    counterfactual with --counterfactual/--sla-ms and an off-policy row per --ope config."""
    import logstore
    from rendezvous.control import CONTROL_TOPIC, ensure_control, make_record
    from replay.cli import main
    from tests.replay.test_counterfactual import HAND, write_log

    path = tmp_path / "log"
    write_log(path, HAND)
    with logstore.open(path) as log:
        ensure_control(log)
        with log.writer(CONTROL_TOPIC, linger_ms=None) as w:
            w.append_batch([make_record("deploy", "m2", who="t@h", version="1", role="shadow")])
    cfg = tmp_path / "rendezvous.toml"
    cfg.write_text(
        'sla_ms = 50\noverhead_ms = 0\ndefault = { score = 0.0 }\n[[schedule]]\nmodel = "m1"\n'
        '[[schedule]]\nmodel = "m2"\nafter_ms = 20\n'
    )
    out = tmp_path / "r.html"
    args = ["report", str(path), "--outcomes", "outcomes", "--html", str(out), "--bootstrap", "0"]
    assert main([*args, "--counterfactual", "m2,m1@20", "--config", str(cfg), "--ope", str(cfg)]) == 0
    doc = _parse(out)
    assert doc.sections == [*report.SECTIONS, *report.LIVE_SECTIONS]
    text = "".join(doc.text)
    assert "deploy m2 1" in text and "counterfactual of" in text and "rendezvous.tomlipw" in text.replace("\n", "")
    assert main([*args]) == 0
    assert _parse(out).sections == [*report.SECTIONS, "deployment"]  # the control topic alone

"""The end-to-end demo (`replay.demo`) at a small size, and the traffic simulator's invariants."""

from __future__ import annotations

import io
from datetime import timedelta
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import logstore
import replay
from replay import demo
from replay.datasets import fraud
from replay.report import PLOTS, SECTIONS

SMALL = ["--days", "3", "--rate", "0.7", "--tick", "30", "--workers", "1"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run the demo once, in process, at a small size; share its output directory and text."""
    out = tmp_path_factory.mktemp("demo") / "out"
    buf = io.StringIO()
    assert demo.main(["--out", str(out), *SMALL], out=buf) == 0
    return out, buf.getvalue()


@pytest.fixture(scope="module")
def small_log(tmp_path_factory):
    """A small simulated log (one day) with its Traffic facts."""
    path = tmp_path_factory.mktemp("sim") / "log"
    log = logstore.open(path)
    traffic = fraud.simulate(log, days=1, rate=2, seed=3, tick=timedelta(minutes=10))
    yield log, traffic
    log.close()


def test_demo_records_every_topic(demo_run):
    """The five rendezvous topics exist with consistent record counts."""
    out, _ = demo_run
    with logstore.open(out / "log") as log:
        counts = {t: log.describe(t)["records"] for t in fraud.TOPICS}
        decisions = log.read("decisions", columns=["reason"])
    n = counts["inputs"]
    assert n > 1000
    assert counts["decisions"] == n
    fallbacks = pc.sum(pc.equal(decisions["reason"].cast(pa.string()), "fallback")).as_py() or 0
    assert counts["scores"] == 2 * n - fallbacks  # the champion failed on fallbacks
    assert 0 < counts["outcomes"] < n  # the last outcomes are not known yet
    assert counts["metrics"] == 3 * 2 * 3 * 24  # 3 metrics x 2 models x 72 hours


def test_demo_good_candidate_completes_and_audits_clean(demo_run):
    """The challenger's run completes, scores every input and audits clean."""
    out, text = demo_run
    with logstore.open(out / "log") as log:
        runs = [r for r in replay.runs(log) if r.manifest["models"][0]["name"] == "challenger"]
        assert len(runs) == 1
        run = runs[0]
        assert run.status == "complete"
        assert run.rows["outputs"] == log.describe("inputs")["records"]
        cert = replay.audit(log, run.id)
        assert cert.ok, str(cert)
    assert "CERTIFIED" in text
    assert "challenger beats champion on AUC" in text or "challenger vs champion on AUC: +" in text


def test_demo_cheater_is_stopped_with_time_leak(demo_run):
    """The peeker's run fails with TimeLeakError naming the model, what it asked and the clock."""
    out, text = demo_run
    with logstore.open(out / "log") as log:
        runs = [r for r in replay.runs(log) if r.manifest["models"][0]["name"] == "peeker"]
        assert len(runs) == 1
        assert runs[0].status == "failed"
        assert runs[0].manifest["error"].startswith("TimeLeakError")
        assert log.describe(demo.PEEKED)["records"] == 0
    assert "stopped by the engine: TimeLeakError" in text
    said = " ".join(text.split("stopped by the engine: TimeLeakError", 1)[1].split())
    assert said.startswith("model 'peeker' (version 0.1) asked ctx.lookup('outcomes') as of 2025-03-")
    assert "after the clock 2025-03-" in said


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        if "id" in d:
            self.ids[d["id"]] = tag
            if tag == "img":
                assert d["src"].startswith("data:image/png;base64,")


def test_demo_writes_html_report_with_every_section(demo_run):
    """The HTML report exists and holds every section and plot; the text names its path."""
    out, text = demo_run
    report = out / "report.html"
    parser = _Ids()
    parser.feed(report.read_text(encoding="utf-8"))
    assert all(parser.ids.get(s) == "section" for s in SECTIONS)
    assert all(parser.ids.get(p) == "img" for p in PLOTS)
    assert str(report) in text
    for hint in ("logstore describe", "replay runs", "analysis.ipynb"):
        assert hint in text


def test_demo_reruns_into_its_own_output_but_refuses_a_foreign_log(tmp_path):
    """A second run replaces what the demo wrote; a log the demo did not write is left alone."""
    foreign = tmp_path / "foreign"
    with logstore.open(foreign / "log") as lg:
        lg.create_topic("t", schema={"type": "record", "name": "t", "fields": [{"name": "a", "type": "long"}]})
    with pytest.raises(SystemExit, match="not written by the demo"):
        demo.prepare_out(foreign)
    assert (foreign / "log").exists()
    own = tmp_path / "own"
    demo.prepare_out(own)
    (own / "log").mkdir()
    (own / "report.html").write_text("old")
    demo.prepare_out(own)
    assert not (own / "log").exists() and not (own / "report.html").exists()


# ---- the simulator --------------------------------------------------------------------------


def _us(col) -> np.ndarray:
    return col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()


def test_simulated_append_times_never_go_back_and_follow_event_times(small_log):
    """Per partition, append time is non-decreasing by offset and never before the event time."""
    log, _ = small_log
    for topic in fraud.TOPICS:
        t = log.read(topic, columns=["event_time", "_partition", "_offset", "_append_time"])
        assert t.num_rows > 0
        for p in set(t["_partition"].to_pylist()):
            part = t.filter(pc.equal(t["_partition"], p)).sort_by("_offset")
            appended = _us(part["_append_time"])
            assert (np.diff(appended) >= 0).all(), topic
        assert (_us(t["_append_time"]) >= _us(t["event_time"])).all(), topic


def test_simulated_outcomes_arrive_after_their_requests(small_log):
    """Every outcome is known (and appended) after its request's event time."""
    log, traffic = small_log
    con = log.duckdb()
    bad, n = con.sql("""
        SELECT count(*) FILTER (WHERE o.event_time <= i.event_time OR o._append_time <= i.event_time),
               count(*)
        FROM outcomes o JOIN inputs i USING (request_id)""").fetchall()[0]
    assert bad == 0
    assert n == traffic.records["outcomes"] and traffic.outcomes_pending > 0


def test_simulated_decisions_reference_scored_models(small_log):
    """Each decision's chosen model is one of its candidates and scored that request."""
    log, traffic = small_log
    con = log.duckdb()
    rows = con.sql("""
        SELECT d.reason, d.chosen_model, list_contains(d.candidates, d.chosen_model) AS listed,
               (SELECT count(*) FROM scores s WHERE s.request_id = d.request_id
                 AND s.model_id || ':' || s.model_version = d.chosen_model) AS scored,
               (SELECT count(*) FROM scores s WHERE s.request_id = d.request_id
                 AND list_contains(d.candidates, s.model_id || ':' || s.model_version)) AS candidates_scored,
               len(d.candidates) AS n_candidates
        FROM decisions d""").fetchall()
    assert len(rows) == traffic.requests
    assert all(listed and scored == 1 and cs == nc for _, _, listed, scored, cs, nc in rows)
    reasons = {r[0] for r in rows}
    assert reasons <= set(fraud.REASONS) and "first" in reasons
    assert sum(traffic.decision_reasons.values()) == traffic.requests


def test_simulation_is_deterministic(tmp_path, small_log):
    """The same arguments give the same records (append times included)."""
    log, _ = small_log
    with logstore.open(tmp_path / "again") as again:
        fraud.simulate(again, days=1, rate=2, seed=3, tick=timedelta(minutes=10))
        for topic in ("inputs", "outcomes", "decisions"):
            a = log.read(topic).sort_by([("_partition", "ascending"), ("_offset", "ascending")])
            b = again.read(topic).sort_by([("_partition", "ascending"), ("_offset", "ascending")])
            assert a.equals(b), topic


def test_simulator_rejects_bad_arguments(tmp_path):
    """Non-positive sizes and out-of-range drift are refused before anything is written."""
    log = logstore.open(tmp_path / "log")
    for kwargs in ({"days": 0}, {"rate": -1}, {"drift_at": 1.5}, {"tick": timedelta(0)}):
        with pytest.raises(ValueError):
            fraud.simulate(log, **kwargs)
    assert log.topics() == []


def test_replay_report_command_prints_the_summary_and_writes_html(demo_run, tmp_path, capsys):
    """`replay report` over the demo log prints the evaluation and writes the HTML report."""
    from replay.cli import main

    out, _ = demo_run
    html = tmp_path / "r" / "report.html"
    rc = main(
        [
            "report",
            str(out / "log"),
            "--scores",
            "scores",
            "--scores",
            demo.REPLAYED,
            "--outcomes",
            "outcomes",
            "--inputs",
            "inputs",
            "--champion",
            "champion",
            "--canary",
            "canary",
            "--bootstrap",
            "50",
            "--cutoff",
            "2025-03-06T00:00Z",
            "--html",
            str(html),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "Verdicts" in text and "challenger" in text and "known by 2025-03-06" in text
    assert html.is_file() and f"HTML report: {html}" in text


def test_replay_report_command_errors_in_one_line(tmp_path, capsys):
    """A missing log or topic is one line on stderr and exit status 2, no traceback."""
    from replay.cli import main

    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("replay: error: no log at") and "Traceback" not in err

"""The provenance of an evaluation (`replay.evaluation.provenance`): what was read, which model
versions and replay runs are behind the scores, what each run's manifest records; and where the
report shows it (text block, HTML section, JSON key)."""

from __future__ import annotations

import datetime as dt
import json
from html.parser import HTMLParser

import pytest

import replay
import replay.runner.manifest as mf
from replay import report
from replay.evaluation import Evaluation, evaluate
from replay.evaluation.provenance import NOT_AUDITED, NOT_RECORDED, Provenance, collect
from replay.report_json import document, dumps

from .builders import T0, Linear, at, make_log, write_at

UNRECORDED = "20990101T000000Z-abcdef"  # a well-formed run id with no manifest in the log
HOSTILE_RUN = "../../etc/passwd"  # not a run name: never a path to read


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A log with inputs, outcomes, a complete replay run of `linear` and a production topic
    holding two versions of `prod` (one row from a run id the log has no manifest of)."""
    log = make_log(tmp_path_factory.mktemp("prov") / "log", n=40)
    run = replay.run(log, "inputs", "outcomes", [Linear()], output="replay.scores")
    log.create_topic("scores", "model_score", partitions=1, key_field="request_id")
    rows = []
    for i in range(40):
        rows.append(
            (
                at(i),
                {
                    "request_id": f"r{i}",
                    "event_time": at(i - 0.5),
                    "model_id": "prod",
                    "model_version": "2" if i >= 20 else "1",
                    "score": float(i % 7) / 7,
                    "latency_ms": 2.0,
                    "code_version": "svc-1.0",
                    "run_id": UNRECORDED if i == 0 else (HOSTILE_RUN if i == 1 else None),
                },
            )
        )
    rows.append((at(41), {**rows[2][1], "request_id": "errored", "score": None, "model_version": "9"}))
    write_at(log, "scores", rows)
    cutoff = T0 + dt.timedelta(days=1)
    ev = evaluate(log, ["scores", "replay.scores"], outcomes="outcomes", inputs="inputs", cutoff=cutoff, bootstrap=0)
    yield log, run, ev
    log.close()


def test_provenance_names_the_log_cutoff_topics_and_time(recorded):
    log, _, ev = recorded
    p = ev.provenance
    assert p.log_path == str(log.path)
    assert p.cutoff == T0 + dt.timedelta(days=1) and p.window == "1 day"
    assert p.score_topics == ["scores", "replay.scores"] and (p.outcomes, p.inputs) == ("outcomes", "inputs")
    assert p.generated.tzinfo is not None and p.generated.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - p.generated) < dt.timedelta(minutes=5)
    import logstore

    assert p.logstore_version == logstore.__version__ and p.log_format == 2
    assert p.generated_by == mf.code_version()


def test_model_versions_and_runs_come_from_the_scores(recorded):
    """Versions: distinct model_version of the non-null scores (the errored row's version 9 is not
    one); run ids: distinct non-null run_id; the replayed model's run is the one replay.run made."""
    _, run, ev = recorded
    models = {m.model: m for m in ev.provenance.models}
    assert sorted(models) == sorted(ev.models) == ["linear", "prod"]
    assert models["prod"].versions == ["1", "2"] and models["prod"].code_versions == ["svc-1.0"]
    assert models["prod"].sources == ["scores"] and models["prod"].run_ids == sorted([UNRECORDED, HOSTILE_RUN])
    assert models["linear"].versions == ["1"] and models["linear"].run_ids == [run.id]


def test_each_run_reports_its_manifest_and_is_not_audited_automatically(recorded):
    log, run, ev = recorded
    m = mf.read(log, run.id)
    rec = ev.provenance.run(run.id)
    assert rec is not None
    assert (rec.status, rec.audit, rec.error) == ("complete", NOT_AUDITED, None)
    assert rec.content_hash == m["content_hash"] and rec.content_hash.startswith("sha256:")
    assert rec.code_version == m["code_version"] and rec.finished == m["finished"]
    assert rec.model_hashes == {"linear@1": m["models"][0]["params_hash"]}
    for rid in (UNRECORDED, HOSTILE_RUN):  # no manifest, or not a run name at all
        other = ev.provenance.run(rid)
        assert other is not None and other.status == NOT_RECORDED and other.content_hash is None


def test_an_audit_the_caller_ran_is_reported(recorded):
    log, run, ev = recorded
    cert = replay.audit(log, run.id)
    assert cert.certified
    p = collect(log, ev, audits={run.id: cert})
    assert p.run(run.id).audit == "certified"
    assert p.run(UNRECORDED).audit == NOT_AUDITED


def test_the_report_shows_the_provenance_in_text_html_and_json(recorded):
    log, run, ev = recorded
    text = report.summary(ev)
    block = text.split("\nProvenance\n", 1)[1].split("\nVerdicts\n", 1)[0]
    assert f"log        {log.path} (logstore" in block and "log format 2" in block
    assert "cut-off    " + (T0 + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S UTC") in block
    assert "score topics scores, replay.scores; outcome topic outcomes; input topic inputs" in block
    rec = ev.provenance.run(run.id)
    assert run.id in block and rec.content_hash in block and NOT_AUDITED in block

    class Sections(HTMLParser):
        def __init__(self):
            super().__init__()
            self.where: list[str] = []
            self.text: dict[str, list[str]] = {}

        def handle_starttag(self, tag, attrs):
            if tag == "section":
                self.where.append(dict(attrs)["id"])

        def handle_data(self, data):
            if self.where:
                self.text.setdefault(self.where[-1], []).append(data)

    parser = Sections()
    parser.feed(report.render_html(ev))
    section = " ".join(parser.text["provenance"])
    assert run.id in section and rec.content_hash in section and "complete" in section and "1, 2" in section

    doc = json.loads(dumps(ev))
    prov = doc["provenance"]
    assert prov == document(ev)["provenance"]
    assert prov["log_path"] == str(log.path) and prov["cutoff"] == (T0 + dt.timedelta(days=1)).isoformat()
    assert dt.datetime.fromisoformat(prov["generated"]) == ev.provenance.generated
    runs = {r["run_id"]: r for r in prov["runs"]}
    assert runs[run.id]["status"] == "complete" and runs[run.id]["content_hash"] == rec.content_hash
    assert {m["model"]: m["versions"] for m in prov["models"]} == {"linear": ["1"], "prod": ["1", "2"]}


def test_a_duckdb_connection_has_no_log_path_nor_manifests():
    """Evaluating a plain DuckDB connection: topics and versions are known; runs are not recorded."""
    from .test_evaluate import make_log as make_con

    con = make_con(n=200, days=2)
    con.execute("ALTER TABLE \"replay.scores\" ADD COLUMN run_id VARCHAR DEFAULT 'r-1'")
    ev = evaluate(con, ["scores", "replay.scores"], outcomes="outcomes", bootstrap=0)
    p = ev.provenance
    assert p.log_path is None and p.log_format is None
    assert {m.model: m.run_ids for m in p.models} == {"canary": [], "champion": [], "candidate-b": ["r-1"]}
    assert [(r.run_id, r.status) for r in p.runs] == [("r-1", NOT_RECORDED)]
    assert "- (a DuckDB connection)" in report.summary(ev)


def test_an_evaluation_made_by_hand_has_an_empty_provenance_and_still_renders(recorded):
    _, _, ev = recorded
    bare = Evaluation(
        **{name: getattr(ev, name) for name in Evaluation.TABLES if name not in ("label_maturity", "feature_drift")},
        verdicts=[],
        task=ev.task,
        models=ev.models,
    )
    assert bare.provenance == Provenance()
    assert "\nProvenance\n" in report.summary(bare)
    assert 'id="provenance"' in report.render_html(bare)
    assert json.loads(dumps(bare))["provenance"]["runs"] == []

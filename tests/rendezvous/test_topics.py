"""Tests for rendezvous.topics and the evolved model_score and decision schemas."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import logstore
import schemas
from rendezvous.config import Topics
from rendezvous.topics import SCHEMAS, TopicSchemaError, ensure_topics, names, upgrade_schema
from tests.rendezvous.procs import processes, wait_for

V1 = Path(__file__).resolve().parents[1] / "schemas" / "data"  # the schemas as first shipped
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize("name", ["model_score", "decision"])
def test_shipped_schema_is_a_backward_compatible_evolution(name, tmp_path):
    """The shipped version reads every version-1 record: the registry's BACKWARD check passes,
    every new field has a default, and a registry holding version 1 accepts it as version 2."""
    old = schemas.parse(V1 / f"{name}.v1.avsc")
    new = schemas.load(name)
    assert schemas.check_compatibility(new, [old], "BACKWARD") == []
    old_names = {f["name"] for f in old["fields"]}
    added = [f for f in new["fields"] if f["name"] not in old_names]
    assert added and all("default" in f for f in added), [f["name"] for f in added if "default" not in f]
    reg = schemas.Registry(tmp_path / "schemas")
    assert reg.register(old).version == 1
    assert reg.register(new, "BACKWARD").version == 2


def test_model_score_fields_follow_the_records_contract():
    """model_score: runner fields nullable, status defaults to "ok", score nullable."""
    fields = {f["name"]: f for f in schemas.load("model_score")["fields"]}
    for name in ("role", "runner_id", "input_topic", "input_partition", "input_offset", "error"):
        assert fields[name]["type"][0] == "null" and fields[name]["default"] is None
    assert fields["score"]["type"] == ["null", "double"]
    assert (fields["status"]["type"], fields["status"]["default"]) == ("string", "ok")
    for name in ("received_time", "answered_time"):
        assert fields[name]["type"][1]["logicalType"] == "timestamp-micros"


def test_decision_reason_gains_default():
    d = {f["name"]: f for f in schemas.load("decision")["fields"]}
    assert d["reason"]["type"]["symbols"] == ["first", "fallback", "deadline", "sampled", "default"]
    assert (d["arrivals"]["default"], d["failed"]["default"], d["propensities"]["default"]) == ({}, [], {})


def test_ensure_topics_creates_every_topic_keyed_by_request_id(tmp_path):
    """Missing topics are created with the shipped schemas; the four request topics keyed by request_id."""
    log = logstore.open(tmp_path / "log")
    got = ensure_topics(log, Topics(inputs="in"), partitions=3)
    assert got == {
        "inputs": "in",
        "scores": "scores",
        "decisions": "decisions",
        "outcomes": "outcomes",
        "metrics": "metrics",
    }
    for role, topic in got.items():
        cfg = log.config(topic)
        assert log.schema(topic) == schemas.load(SCHEMAS[role])
        if role == "metrics":
            assert (cfg.partitions, cfg.key_field) == (1, None)
        else:
            assert (cfg.partitions, cfg.key_field) == (3, "request_id")


def test_ensure_topics_is_idempotent_and_keeps_existing_settings(tmp_path):
    log = logstore.open(tmp_path / "log")
    ensure_topics(log, partitions=2, roles=["scores"])
    ensure_topics(log, partitions=5)
    assert log.config("scores").partitions == 2
    assert [v.version for v in log.schemas("scores")] == [1]


def test_names_from_topics_or_mapping():
    assert names({"scores": "s2"})["scores"] == "s2"
    assert names(None)["inputs"] == "inputs"
    with pytest.raises(ValueError, match="unknown topic role"):
        names({"score": "x"})


def test_old_topic_is_upgraded_and_old_records_still_read(tmp_path):
    """A scores topic made with version 1 gets version 2 registered; its old records read with the
    defaults, and new records with the runner's fields are appended next to them."""
    log = logstore.open(tmp_path / "log")
    log.create_topic("scores", schema=schemas.parse(V1 / "model_score.v1.avsc"), partitions=2, key_field="request_id")
    old = {"request_id": "r0", "event_time": T0, "model_id": "m", "model_version": "1", "score": 0.25}
    with log.writer("scores") as w:
        w.append_batch([old])
    ensure_topics(log, roles=["scores"])
    assert [v.version for v in log.schemas("scores")] == [1, 2]
    assert upgrade_schema(log, "scores", "model_score") is None  # already current: nothing registered
    new = {**old, "request_id": "r1", "score": None, "status": "error", "error": "boom", "role": "shadow"}
    with log.writer("scores") as w:
        w.append_batch([new])
    rows = sorted(log.read("scores").to_pylist(), key=lambda r: r["request_id"])
    assert [(r["request_id"], r["score"], r["status"], r["role"]) for r in rows] == [
        ("r0", 0.25, "ok", None),
        ("r1", None, "error", "shadow"),
    ]


def test_old_topic_keeps_its_own_extra_fields(tmp_path):
    log = logstore.open(tmp_path / "log")
    v1 = schemas.parse(V1 / "model_score.v1.avsc")
    v1["fields"].append({"name": "tenant", "type": ["null", "string"], "default": None})
    log.create_topic("scores", schema=v1)
    ensure_topics(log, roles=["scores"])
    fields = [f["name"] for f in log.schema("scores")["fields"]]
    assert fields[-1] == "tenant" and "status" in fields


def test_a_topic_with_every_field_but_a_narrower_type_is_upgraded(tmp_path):
    """Every shipped field present, but score not nullable: the shipped schema is registered."""
    log = logstore.open(tmp_path / "log")
    narrow = schemas.load("model_score")
    narrow["fields"] = [dict(f, type="double") if f["name"] == "score" else f for f in narrow["fields"]]
    del next(f for f in narrow["fields"] if f["name"] == "score")["default"]
    log.create_topic("scores", schema=narrow)
    ensure_topics(log, roles=["scores"])
    assert [v.version for v in log.schemas("scores")] == [1, 2]
    assert log.schema("scores") == schemas.load("model_score")


def test_a_topic_that_cannot_evolve_is_refused_with_the_reason(tmp_path):
    log = logstore.open(tmp_path / "log")
    log.create_topic("scores", schema="metric")
    with pytest.raises(TopicSchemaError, match=r"topic 'scores' .* cannot hold .* lacks .*request_id"):
        ensure_topics(log, roles=["scores"])


RACE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import logstore
    from rendezvous.config import Topics
    from rendezvous.topics import ensure_topics
    log_dir, go, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        pass
    log = logstore.open(log_dir)
    for i in range(rounds):
        t = Topics(**{r: f"{r}{i}" for r in ("inputs", "scores", "decisions", "outcomes", "metrics")})
        ensure_topics(log, t, partitions=2)
    print("done")
    """
)


def test_ensure_topics_race_between_two_processes(tmp_path):
    """Two processes creating the same topics at the same moment both succeed; each topic exists
    once, with its shipped schema and one schema version."""
    log_dir, go, rounds = tmp_path / "log", tmp_path / "go", 8
    with processes([["-c", RACE, str(log_dir), str(go), str(rounds)]] * 2, tmp_path) as procs:
        time.sleep(0.5)  # both importing; then released together
        go.touch()
        assert wait_for(lambda: all(p.poll() is not None for p in procs), timeout=60)
        outs = [(tmp_path / f"proc{i}.out").read_text() for i in range(2)]
        assert [p.returncode for p in procs] == [0, 0], outs
    log = logstore.open(log_dir)
    assert len(log.topics()) == 5 * rounds
    for i in range(rounds):
        assert log.config(f"scores{i}").partitions == 2
        assert [v.version for v in log.schemas(f"decisions{i}")] == [1]
        assert json.dumps(log.schema(f"inputs{i}")) == json.dumps(schemas.load("model_input"))


def test_a_record_without_the_new_fields_reads_their_defaults(tmp_path):
    """A producer built against version 1 keeps writing: a one-record commit (a row frame) and a
    batch of records lacking status, arrivals... read back with the defaults."""
    log = logstore.open(tmp_path / "log")
    ensure_topics(log, roles=["scores", "decisions"], partitions=1)
    score = {"request_id": "r0", "event_time": T0, "model_id": "m", "model_version": "1", "score": 0.5}
    decision = {
        "request_id": "r0",
        "event_time": T0,
        "candidates": ["m:1"],
        "chosen_model": "m:1",
        "reason": "first",
        "propensity": 1.0,
        "deadline_ms": 50.0,
    }
    for topic, rec in (("scores", score), ("decisions", decision)):
        with log.writer(topic, linger_ms=None) as w:
            w.append(rec)
            w.flush()
            w.append_batch([dict(rec, request_id="r1")] * 20)
    scores = log.read("scores").to_pylist()
    assert len(scores) == 21 and {(r["status"], r["error"]) for r in scores} == {("ok", None)}
    decisions = log.read("decisions").to_pylist()
    assert {(tuple(r["arrivals"]), tuple(r["failed"]), r["policy"], r["seed"]) for r in decisions} == {
        ((), (), "schedule", 0)
    }

"""The rendezvous on Kafka: inputs and scores as topics of librdkafka's mock cluster, recorded into
the log by the bridge (rendezvous/kafka_transport.py).

The end-to-end test is tests/rendezvous/test_e2e.py's once more, with ``--kafka``: the same
models, config and checks of every answer against its records, then every Kafka message found in
the log exactly once and a replay of the recorded inputs giving the served scores.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

# the live end-to-end tests run one at a time (on one xdist worker, `--dist loadgroup`): two
# fleets at once on a 2-core machine starve each other's event loops past the SLA
pytestmark = pytest.mark.xdist_group("live")

pytest.importorskip("confluent_kafka")

import logstore  # noqa: E402
import replay  # noqa: E402
from logstore.bridge.from_kafka import FromKafka  # noqa: E402
from rendezvous.cli import main  # noqa: E402
from rendezvous.client import send  # noqa: E402
from rendezvous.config import Topics, load_config  # noqa: E402
from rendezvous.control import ensure_control  # noqa: E402
from rendezvous.kafka_transport import KafkaTransport, KafkaWriter, arrow_of  # noqa: E402
from rendezvous.runner import Runner, dedupe_scores  # noqa: E402
from rendezvous.topics import ensure_topics  # noqa: E402
from tests.bridge import conftest as bridge_fixtures  # noqa: E402
from tests.bridge.kafkautil import Message, consume_all  # noqa: E402
from tests.bridge.mockcluster import ClusterProcess  # noqa: E402
from tests.rendezvous import models  # noqa: E402
from tests.rendezvous.procs import wait_for  # noqa: E402
from tests.rendezvous.test_e2e import MODELS, answered, bodies, check_answers, fleet, scored_by  # noqa: E402

# the bridge tests' fixtures: a mock cluster (3 brokers on loopback, a child process) for the
# session, and a schema registry over HTTP on 127.0.0.1 for the processes
kafka = bridge_fixtures.cluster
schema_registry = bridge_fixtures.registry
PARTITIONS = 3
_names = itertools.count()


def topics_on(cl: ClusterProcess, partitions: int = PARTITIONS) -> str:
    """A fresh prefix with its Kafka inputs and scores topics."""
    prefix = f"k{os.getpid()}-{next(_names)}."
    for role in ("inputs", "scores"):
        cl.create_topic(prefix + role, partitions)
    return prefix


def record(rid: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {"request_id": rid, "event_time": datetime.now(UTC), "features": {"x": 1.0}, "raw": "{}", "source": "t"}


def bridge(lg: logstore.Log, cl: ClusterProcess, prefix: str, topic: str, url: str) -> None:
    """Record Kafka topic `prefix + topic` into log topic `topic` until it is idle."""
    FromKafka(lg, topic, bootstrap=cl.bootstrap, kafka_topic=prefix + topic, registry=url).run(idle_exit=1.0)


def same_messages(lg: logstore.Log, messages: list[Message], topic: str) -> list[dict[str, Any]]:
    """The log topic's rows, checked to be the Kafka topic's messages, each exactly once and at
    its own place (log partition and offset = Kafka's)."""
    rows = lg.read(topic).to_pylist()
    places = sorted((r["kafka_partition"], r["kafka_offset"]) for r in rows)
    assert places == sorted((m.partition, m.offset) for m in messages)
    assert len(set(places)) == len(places)
    assert all((r["_partition"], r["_offset"]) == (r["kafka_partition"], r["kafka_offset"]) for r in rows)
    return rows


# ---- the transport --------------------------------------------------------------------------------


def test_inputs_and_scores_go_to_the_partition_a_keyed_log_topic_gives_them(
    tmp_path: Path, kafka: ClusterProcess
) -> None:
    """The archive and a runner's writer place each record by `logstore.partition_of(request_id)`,
    as the embedded log's keyed topics do, so recorded partition p is Kafka partition p; a runner's
    tail reads the rows the recorded topic holds."""
    prefix = topics_on(kafka)
    url = f"mock://{prefix}"
    lg = logstore.open(tmp_path / "log")
    t = KafkaTransport(lg, kafka.bootstrap, url, prefix=prefix, bridge=False)
    rids = [f"q{i}" for i in range(90)]

    async def archive() -> None:
        t.prepare_service(Topics())
        sink = t.inputs_sink(Topics(), "flush", "thread")
        try:
            for rid in rids:
                await sink.append(record(rid))
        finally:
            sink.close()

    asyncio.run(archive())
    score = {"event_time": 0, "model_id": "m", "model_version": "1", "status": "ok"}
    with t.scores_writer("scores", "flush") as writer:
        writer.append_batch([{**score, "request_id": r, "score": 0.5} for r in rids[:45]])
        writer.append_batch(pa.Table.from_pylist([{**score, "request_id": r, "score": 0.25} for r in rids[45:]]))
    keyed = logstore.open(tmp_path / "keyed")
    ensure_topics(keyed, partitions=PARTITIONS, roles=["inputs"])
    with keyed.writer("inputs") as w:
        w.append_batch([record(r) for r in rids])
    embedded = {
        r["request_id"]: r["_partition"] for r in keyed.read("inputs", columns=["request_id", "_partition"]).to_pylist()
    }
    for topic in ("inputs", "scores"):
        messages = consume_all(kafka.bootstrap, prefix + topic, PARTITIONS)
        assert sorted(m.key.decode() for m in messages if m.key) == sorted(rids)
        assert all(m.partition == embedded[m.key.decode()] for m in messages if m.key)
        bridge(lg, kafka, prefix, topic, url)
        same_messages(lg, messages, topic)
    assert len(set(embedded.values())) == PARTITIONS

    cursor = t.cursor("inputs", "g", [0, 2])
    assert cursor.positions == {0: 0, 2: 0}
    tail = t.tail("inputs", cursor.positions, cursor)
    recorded = lg.read("inputs", partitions=[0, 2])
    polls = [tail.get(16, 5.0)]
    while sum(p.num_rows for p in polls) < recorded.num_rows and polls[-1].num_rows:
        polls.append(tail.get(16, 5.0))
    got = pa.concat_tables(polls)
    assert max(p.num_rows for p in polls) <= 16
    assert got.schema.names == arrow_of("model_input").names == recorded.schema.names
    key = ["_partition", "_offset"]
    assert (
        got.sort_by([(k, "ascending") for k in key])
        .select(["request_id", *key])
        .equals(recorded.sort_by([(k, "ascending") for k in key]).select(["request_id", *key]))
    )
    cursor.commit({0: 3})
    assert t.cursor("inputs", "g", [0, 2]).positions == {0: 3, 2: 0}
    t.close()


def test_kafka_mode_refuses_a_log_topic_the_bridge_did_not_record(tmp_path: Path, kafka: ClusterProcess) -> None:
    prefix = topics_on(kafka)
    lg = logstore.open(tmp_path / "log")
    ensure_topics(lg, partitions=PARTITIONS)  # an embedded log: keyed inputs, no kafka_offset
    t = KafkaTransport(lg, kafka.bootstrap, f"mock://{prefix}", prefix=prefix)
    with pytest.raises(logstore.LogstoreError, match="was not recorded from Kafka"):
        t.prepare_service(Topics())
    kafka.create_topic(prefix + "other", PARTITIONS + 1)
    with pytest.raises(logstore.LogstoreError, match="same"):
        KafkaTransport(logstore.open(tmp_path / "l2"), kafka.bootstrap, "mock://x", prefix=prefix).prepare_service(
            Topics(scores="other")
        )
    t.close()


def test_kafka_options_go_together(tmp_path: Path, capsys: Any) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text('sla_ms = 50\n[[schedule]]\nmodel = "m"\n')
    log = str(tmp_path / "log")
    assert main(["serve", log, "--config", str(cfg), "--registry", "http://127.0.0.1:1"]) == 2
    assert "--registry goes with --kafka" in capsys.readouterr().err
    assert (
        main(["model", log, "--model", "tests.rendezvous.models:fast", "--kafka", "127.0.0.1:1"]) == 1
    )  # its failures
    assert "--kafka needs --registry" in capsys.readouterr().err
    assert main(["swap", log, "--model", "m", "--to", "2", "--kafka-config", "acks=1"]) == 2
    assert "--kafka-config goes with --kafka" in capsys.readouterr().err


def test_runners_on_kafka_switch_at_a_token_in_each_kafka_partition(
    tmp_path: Path, kafka: ClusterProcess, capsys: Any
) -> None:
    """Two runners over three Kafka partitions, inputs flowing, ``rendezvous swap --kafka`` midway:
    every input before its partition's token is scored by version 1, every one after by version
    2, one marker per partition, each at the token's offset in the recorded log."""
    prefix = topics_on(kafka)
    url = f"mock://{prefix}"
    lg = logstore.open(tmp_path / "log")
    ensure_control(lg)  # the service's log: where the swap's control record goes
    transports = [KafkaTransport(lg, kafka.bootstrap, url, prefix=prefix) for _ in range(3)]
    runners = [
        Runner(lg, "tests.rendezvous.models:swappable", member=(i, 2), batch=8, transport=transports[i], wait_s=10)
        for i in range(2)
    ]
    stop, fed = threading.Event(), [0]

    def feed() -> None:  # what the front door produces, 10 inputs every 10 ms
        with KafkaWriter(transports[2], "inputs", "inputs") as w:
            while not stop.is_set() and fed[0] < 3000:
                w.append_batch([record(f"q{fed[0] + i}") for i in range(10)])
                fed[0] += 10
                time.sleep(0.01)

    feeder = threading.Thread(target=feed)
    try:
        for r in runners:
            assert r.start().ready.wait(20)
        feeder.start()
        assert wait_for(lambda: fed[0] >= 200, timeout=20)
        cfg = tmp_path / "swap.toml"
        cfg.write_text('sla_ms = 1500\ndefault = { score = -1.0 }\n[[schedule]]\nmodel = "swappable"\n')
        args = ["swap", str(lg.path), "--model", "swappable", "--to", "2", "--config", str(cfg)]
        assert main([*args, "--kafka", kafka.bootstrap, "--registry", url, "--kafka-prefix", prefix]) == 0
        at = fed[0]
        assert wait_for(lambda: fed[0] >= at + 200, timeout=20), "inputs flow after the swap too"
        stop.set()
        feeder.join(30)
        scored = lambda: len(consume_all(kafka.bootstrap, prefix + "scores", PARTITIONS))  # noqa: E731
        assert wait_for(lambda: scored() >= fed[0] + PARTITIONS, timeout=30)
    finally:
        stop.set()
        for r in runners:
            r.stop()
        transports[2].close()
    cut = capsys.readouterr().out.split("Kafka inputs cut at ")[1].split("\n")[0]
    bridge(lg, kafka, prefix, "inputs", url)
    bridge(lg, kafka, prefix, "scores", url)
    inputs = lg.read("inputs").to_pylist()
    tokens = {r["_partition"]: r["_offset"] for r in inputs if r["swap"] is not None}
    assert ", ".join(f"{p}:{o}" for p, o in sorted(tokens.items())) == cut and len(tokens) == PARTITIONS
    scores = lg.read("scores").to_pylist()
    markers = [s for s in scores if s["status"] == "swap"]
    assert sorted((m["input_partition"], m["input_offset"]) for m in markers) == sorted(tokens.items())
    versions: dict[str, set[str]] = defaultdict(set)
    for s in scores:
        if s["status"] == "ok":
            versions[s["request_id"]].add(s["model_version"])
            assert s["score"] == models.hash_score(s["request_id"], f"swappable:{s['model_version']}")
    where = {r["request_id"]: (r["_partition"], r["_offset"]) for r in inputs if r["swap"] is None}
    assert set(versions) == set(where) and len(where) == fed[0]
    assert all(vs == {"1" if where[q][1] < tokens[where[q][0]] else "2"} for q, vs in versions.items())
    assert {v for vs in versions.values() for v in vs} == {"1", "2"}


# ---- end to end -----------------------------------------------------------------------------------


def recorded_by(log: logstore.Log, model: str) -> set[str]:
    return scored_by(log, model) if "scores" in log.topics() else set()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_rendezvous_on_kafka_end_to_end(tmp_path: Path, kafka: ClusterProcess, schema_registry: Any) -> None:
    """test_e2e's mixed models on Kafka, the fast runner SIGKILLed and restarted: every request
    answered within the SLA and as recorded; every Kafka input and score in the log exactly once;
    replaying the recorded inputs gives the scores served."""
    prefix = topics_on(kafka)
    fl, cfg_path = fleet(tmp_path)
    fl.common = ["--kafka", kafka.bootstrap, "--registry", schema_registry.url, "--kafka-prefix", prefix]
    fl.grace = 6.0  # the service lets its bridges catch up before it exits
    config = load_config(cfg_path)
    log = logstore.open(tmp_path / "log")
    with fl:
        url = fl.serve(cfg_path)
        for model, role in MODELS.items():
            fl.model(f"tests.rendezvous.models:{model}", role=role)
        for i in range(300):
            asyncio.run(send(url, bodies(f"warm{i}", 1), timeout=10))
            if all(recorded_by(log, m) for m in ("slow", "failing", "fast")):
                break
        else:
            pytest.fail("runners did not start: " + fl.output("fast").read_text()[-2000:])
        asyncio.run(send(url, bodies("warm", 60), rate=100, concurrency=4, timeout=30))
        first = asyncio.run(send(url, bodies("a", 250), rate=50, concurrency=16, timeout=40))
        assert fl.kill("fast", signal.SIGKILL) == -signal.SIGKILL
        during = asyncio.run(send(url, bodies("b", 100), rate=50, concurrency=16, timeout=40))
        fl.model("tests.rendezvous.models:fast", role="champion")
        after = asyncio.run(send(url, bodies("c", 150), rate=50, concurrency=16, timeout=40))
        every = {r.answer["request_id"] for r in first + during + after if r.answer}
        assert wait_for(lambda: recorded_by(log, "fast") >= every, timeout=60), "the restarted runner skipped inputs"
        # every answering runner done (none produces after the service's bridges stop), then stop
        assert wait_for(lambda: all(recorded_by(log, m) >= every for m in ("slow", "failing")), timeout=30)
        fl.kill("stalling")  # it never answers: nothing to wait for
        assert fl.stop()["service"] == 0
        assert "on Kafka at" in fl.output("service").read_text()
    results = first + during + after
    assert all(r.status == 200 for r in results), [r.error for r in results if r.status != 200][:5]
    answers = answered(results)
    check_answers(log, answers, config)
    assert {"first", "fallback", "deadline"} <= {a["reason"] for a in answers}

    inputs = same_messages(log, consume_all(kafka.bootstrap, prefix + "inputs", PARTITIONS), "inputs")
    same_messages(log, consume_all(kafka.bootstrap, prefix + "scores", PARTITIONS), "scores")
    ids = [r["request_id"] for r in inputs]
    assert len(ids) == len(set(ids)) and every <= set(ids)
    assert all(r["kafka_partition"] == logstore.partition_of(r["request_id"], PARTITIONS) for r in inputs)
    live = dedupe_scores(log.read("scores")).to_pylist()
    assert sorted(s["request_id"] for s in live if s["model_id"] == "fast") == sorted(ids)

    run = replay.run(log, "inputs", None, [models.fast(), models.Slow(median_ms=0.0)], output="replay.scores")
    again = {(s["request_id"], s["model_id"]): s["score"] for s in run.scores().to_pylist()}
    served = [s for s in live if s["model_id"] in ("fast", "slow") and s["status"] == "ok"]
    assert served and all(again[(s["request_id"], s["model_id"])] == s["score"] for s in served)
    assert {(a["request_id"], a["model"]) for a in answers if a["model"] in ("fast", "slow")} <= {
        (s["request_id"], s["model_id"]) for s in served
    }

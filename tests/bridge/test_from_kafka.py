"""Kafka -> log: every message once, in partition order, its position kept in the records."""

from __future__ import annotations

import io
import json
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

import logstore
from logstore.bridge.from_kafka import FromKafka
from logstore.bridge.kafka import BridgeError
from logstore.bridge.memregistry import store
from logstore.bridge.registry_client import RegistryClient
from schemas import wire
from tests.bridge.kafkautil import V1, V2, V3, consume_all, payment, produce, run_bridge, spawn_bridge


def _framed(url: str, subject: str, schema: dict[str, Any], records: list[dict[str, Any]]) -> list[bytes]:
    sid = RegistryClient(url).register(subject, schema)
    return [wire.encode(r, schema, sid) for r in records]


def _by_partition(lg: logstore.Log, topic: str) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for row in lg.read(topic).to_pylist():
        out.setdefault(row["_partition"], []).append(row)
    return out


def test_records_arrive_once_in_partition_order_with_their_kafka_position(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(3)
    url = f"mock://{kt}"
    records = [payment(i) for i in range(3000)]
    values = _framed(url, f"{kt}-value", V1, records)
    produce(cluster.bootstrap, kt, ((i % 3, v) for i, v in enumerate(values)))
    lg = logstore.open(tmp_path / "log")

    stats = FromKafka(lg, "payments", bootstrap=cluster.bootstrap, kafka_topic=kt, registry=url).run(idle_exit=1.0)

    assert stats.records == 3000 and stats.stopped == "idle"
    assert stats.positions == {0: 1000, 1: 1000, 2: 1000}
    assert lg.config("payments").partitions == 3 and lg.config("payments").key_field is None
    stamps = {(m.partition, m.offset): m.timestamp for m in consume_all(cluster.bootstrap, kt, 3)}
    rows = _by_partition(lg, "payments")
    for p in range(3):
        got = rows[p]
        assert [r["kafka_offset"] for r in got] == list(range(1000))
        assert {r["kafka_partition"] for r in got} == {p}
        assert [{k: r[k] for k in ("id", "amount")} | {"tags": dict(r["tags"])} for r in got] == records[p::3]
        assert [r["event_time"] for r in got] == [
            datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=stamps[(p, r["kafka_offset"])]) for r in got
        ]
    again = FromKafka(lg, "payments", bootstrap=cluster.bootstrap, kafka_topic=kt, registry=url).run(idle_exit=0.3)
    assert again.records == 0 and again.positions == {0: 1000, 1: 1000, 2: 1000}
    assert lg.read("payments").num_rows == 3000


@pytest.mark.parametrize("value_format", ["avro", "json"])
def test_raw_avro_and_json_values_with_a_given_schema(tmp_path, cluster, kafka_topic, value_format):
    kt = kafka_topic(2)
    records = [payment(i) for i in range(40)]
    if value_format == "avro":
        parsed = fastavro.parse_schema(V1)
        values = []
        for r in records:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, r)
            values.append(buf.getvalue())
    else:
        values = [json.dumps(r).encode() for r in records]
    produce(cluster.bootstrap, kt, ((i % 2, v) for i, v in enumerate(values)))
    lg = logstore.open(tmp_path / "log")
    stats = FromKafka(lg, "raw", bootstrap=cluster.bootstrap, kafka_topic=kt, schema=V1, value_format=value_format).run(
        idle_exit=0.5
    )
    assert stats.records == 40
    rows = _by_partition(lg, "raw")
    assert [r["id"] for r in rows[0]] == [r["id"] for r in records[0::2]]
    assert [r["amount"] for r in rows[1]] == [r["amount"] for r in records[1::2]]


def test_max_records_stops_exactly_and_the_next_run_goes_on(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(1)
    url = f"mock://{kt}"
    produce(cluster.bootstrap, kt, ((0, v) for v in _framed(url, f"{kt}-value", V1, [payment(i) for i in range(30)])))
    lg = logstore.open(tmp_path / "log")
    bridge = {"bootstrap": cluster.bootstrap, "kafka_topic": kt, "registry": url}
    assert FromKafka(lg, "p", **bridge).run(max_records=7, idle_exit=5).records == 7
    assert FromKafka(lg, "p", batch=4, **bridge).run(max_records=9, idle_exit=5).stopped == "max-records"
    assert FromKafka(lg, "p", **bridge).run(idle_exit=0.5).records == 14
    assert [r["kafka_offset"] for r in lg.read("p").to_pylist()] == list(range(30))


def test_schema_evolution_registers_versions_and_refuses_an_incompatible_one_keeping_the_position(
    tmp_path, cluster, kafka_topic
):
    kt = kafka_topic(1)
    url = f"mock://{kt}"
    subject = f"{kt}-value"
    store(kt).handle("PUT", f"/config/{subject}", {"compatibility": "NONE"})  # Kafka's side takes anything
    values = (
        _framed(url, subject, V1, [payment(i) for i in range(10)])
        + _framed(url, subject, V2, [{**payment(i), "currency": "USD"} for i in range(10, 20)])
        + _framed(url, subject, V3, [{**payment(i), "amount": "lots"} for i in range(20, 25)])
        + _framed(url, subject, V1, [payment(i) for i in range(25, 30)])
    )
    produce(cluster.bootstrap, kt, ((0, v) for v in values))
    lg = logstore.open(tmp_path / "log")

    def run() -> Any:
        return FromKafka(lg, "pay", bootstrap=cluster.bootstrap, kafka_topic=kt, registry=url).run(idle_exit=1.0)

    for _ in range(2):  # refused at the same message each time, nothing doubled
        with pytest.raises(BridgeError) as info:
            run()
        text = str(info.value)
        assert text.startswith("Kafka partition 0 offset 20: its writer schema is refused by topic 'pay'")
        assert "amount" in text and "BACKWARD" in text
        rows = lg.read("pay").to_pylist()
        assert [r["kafka_offset"] for r in rows] == list(range(20))
        assert [v.version for v in lg.schemas("pay")] == [1, 2]
        assert [r["currency"] for r in rows] == ["EUR"] * 10 + ["USD"] * 10  # v1 records resolved to v2

    lg.alter_topic("pay", compatibility="NONE")
    stats = run()
    assert stats.records == 10
    assert [r["kafka_offset"] for r in lg.read("pay").to_pylist()] == list(range(30))
    assert len(lg.schemas("pay")) == 3


def test_a_message_that_does_not_decode_stops_the_bridge_after_the_ones_before_it(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(1)
    url = f"mock://{kt}"
    good = _framed(url, f"{kt}-value", V1, [payment(i) for i in range(5)])
    produce(cluster.bootstrap, kt, ((0, v) for v in [*good[:3], b"\x01not framed", *good[3:]]))
    lg = logstore.open(tmp_path / "log")
    with pytest.raises(BridgeError, match=r"Kafka partition 0 offset 3: wire message: expected magic byte 0"):
        FromKafka(lg, "pay", bootstrap=cluster.bootstrap, kafka_topic=kt, registry=url).run(idle_exit=1.0)
    assert [r["kafka_offset"] for r in lg.read("pay").to_pylist()] == [0, 1, 2]


def test_topics_the_bridge_cannot_feed_are_refused(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(2)
    lg = logstore.open(tmp_path / "log")
    settings = {"bootstrap": cluster.bootstrap, "kafka_topic": kt, "schema": V1}
    FromKafka(lg, "mine", **settings).run(idle_exit=0.1)  # creates it, 2 partitions
    other = kafka_topic(3)
    with pytest.raises(BridgeError, match=r"topic 'mine' has 2 partition\(s\) and Kafka topic .* 3"):
        FromKafka(lg, "mine", **{**settings, "kafka_topic": other}).run(idle_exit=0.1)
    lg.create_topic("keyed", V1, partitions=2, key_field="id")
    with pytest.raises(BridgeError, match="places records by its key field 'id'"):
        FromKafka(lg, "keyed", **settings).run(idle_exit=0.1)
    lg.create_topic("plain", V1, partitions=2)
    with pytest.raises(BridgeError, match="has no kafka_partition/kafka_offset fields"):
        FromKafka(lg, "plain", **settings).run(idle_exit=0.1)
    clash = {**V1, "fields": [*V1["fields"], {"name": "kafka_offset", "type": "long"}]}
    with pytest.raises(BridgeError, match="has field\\(s\\) kafka_offset, which the bridge writes itself"):
        FromKafka(lg, "new", **{**settings, "schema": clash}).run(idle_exit=0.1)


def test_a_second_bridge_into_the_same_topic_is_refused(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(1)
    log_dir = tmp_path / "log"
    first = spawn_bridge(
        "from-kafka", str(log_dir), "t", "--bootstrap", cluster.bootstrap, "--kafka-topic", kt,
        "--schema", json.dumps(V1), "--progress", "0",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (log_dir / ".bridge.from-kafka.t.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        second = run_bridge(
            "from-kafka", str(log_dir), "t", "--bootstrap", cluster.bootstrap, "--kafka-topic", kt,
            "--schema", json.dumps(V1), "--idle-exit", "1",
        )  # fmt: skip
        assert second.returncode == 2
        assert "another bridge is running for this target" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=20)
    assert first.returncode == 0, err
    assert "(stopped: signal)" in err


@pytest.mark.slow
def test_sigkill_and_restart_five_times_lose_and_double_nothing(tmp_path, cluster, kafka_topic, registry):
    """The bridge runs as its own process, killed with SIGKILL mid-stream five times and restarted;
    then every Kafka message is in the log exactly once, in order."""
    kt = kafka_topic(3)
    n = 30_000
    records = [payment(i) for i in range(n)]
    produce(
        cluster.bootstrap, kt, ((i % 3, v) for i, v in enumerate(_framed(registry.url, f"{kt}-value", V1, records)))
    )
    log_dir = tmp_path / "log"
    args = ["from-kafka", str(log_dir), "pay", "--bootstrap", cluster.bootstrap, "--kafka-topic", kt]
    args += ["--registry", registry.url, "--batch", "25", "--progress", "0"]
    rng = random.Random(7)
    kills = 0
    total = 0
    for _ in range(5):
        proc = spawn_bridge(*args)
        deadline = time.monotonic() + 30
        # kill once this run has appended something, a little later each time
        while time.monotonic() < deadline and proc.poll() is None:
            if (log_dir / "topics" / "pay").exists():
                now = sum(logstore.open(log_dir).end_offsets("pay").values())
                if now > total:
                    break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
        kills += proc.returncode == -signal.SIGKILL
        total = sum(logstore.open(log_dir).end_offsets("pay").values())
    assert kills == 5 and 0 < total < n  # every kill landed mid-stream
    done = run_bridge(*args, "--idle-exit", "1", timeout=120)
    assert done.returncode == 0, done.stderr
    lg = logstore.open(log_dir)
    rows = _by_partition(lg, "pay")
    for p in range(3):
        assert [r["kafka_offset"] for r in rows[p]] == list(range(n // 3))
        assert [r["id"] for r in rows[p]] == [r["id"] for r in records[p::3]]
    assert lg.verify().ok


def test_losing_every_broker_mid_run_stops_in_one_line_after_the_retry_timeout(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(1)
    url = f"mock://{kt}"
    produce(cluster.bootstrap, kt, ((0, v) for v in _framed(url, f"{kt}-value", V1, [payment(i) for i in range(5)])))
    lg = logstore.open(tmp_path / "log")
    bridge = FromKafka(lg, "pay", bootstrap=cluster.bootstrap, kafka_topic=kt, registry=url, retry_timeout=2.0)
    seen: list[int] = []

    def progress(stats: Any) -> None:
        if stats.records == 5 and not seen:
            seen.append(stats.records)
            cluster.all_down()

    try:
        started = time.monotonic()
        with pytest.raises(BridgeError) as info:
            bridge.run(idle_exit=30, progress=progress, progress_every=0.0)
        assert time.monotonic() - started < 20
    finally:
        cluster.all_down(False)
    assert str(info.value).startswith(f"lost Kafka at {cluster.bootstrap}: ") and "\n" not in str(info.value)
    assert [r["kafka_offset"] for r in lg.read("pay").to_pylist()] == list(range(5))

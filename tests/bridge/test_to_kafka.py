"""Log -> Kafka: every record delivered; the log cursor moves only over what Kafka acknowledged."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import logstore
from logstore.bridge.kafka import BridgeError
from logstore.bridge.registry_client import RegistryClient
from logstore.bridge.to_kafka import ToKafka
from schemas import wire
from tests.bridge.kafkautil import consume_all, run_bridge, spawn_bridge

T0 = datetime(2026, 5, 1, tzinfo=UTC)
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Score",
    "fields": [
        {"name": "request_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "score", "type": "double"},
        {"name": "features", "type": {"type": "map", "values": "double"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def score(i: int) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "event_time": T0 + timedelta(milliseconds=i),
        "score": i / 100,
        "features": {"a": float(i)},
        "note": None if i % 2 else f"n{i}",
    }


def _log(tmp_path, n: int, partitions: int = 3, keyed: bool = True) -> logstore.Log:
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", SCHEMA, partitions=partitions, key_field="request_id" if keyed else None)
    with lg.writer("scores") as w:
        w.append_batch([score(i) for i in range(n)])
    return lg


def _decoded(url: str, messages) -> list[dict[str, Any]]:
    client = RegistryClient(url)
    return [wire.decode(m.value, client.schema)[1] for m in messages]


def test_every_record_is_delivered_in_partition_order_and_the_cursor_committed(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(3)
    url = f"mock://{kt}"
    lg = _log(tmp_path, 2000)
    stats = ToKafka(lg, "scores", bootstrap=cluster.bootstrap, kafka_topic=kt, registry=url).run(idle_exit=0.5)
    assert stats.records == 2000
    ends = lg.end_offsets("scores")
    assert lg.consumer("scores", f"bridge.{kt}").committed() == ends == stats.positions
    messages = consume_all(cluster.bootstrap, kt, 3)
    assert len(messages) == 2000
    table = lg.read("scores").to_pylist()
    by_place = {(r["_partition"], r["_offset"]): r for r in table}
    for m, value in zip(messages, _decoded(url, messages)):
        row = by_place[(int(m.headers["logstore.partition"]), int(m.headers["logstore.offset"]))]
        assert m.partition == row["_partition"]  # same partitioning: log partition p -> Kafka partition p
        assert m.headers["logstore.topic"] == b"scores"
        assert m.key == row["request_id"].encode()
        assert m.timestamp == int(row["event_time"].timestamp() * 1000)
        assert value == {k: (dict(v) if k == "features" else v) for k, v in row.items() if not k.startswith("_")}
    for p in range(3):  # Kafka offsets follow log offsets
        assert [int(m.headers["logstore.offset"]) for m in messages if m.partition == p] == list(range(ends[p]))
    registered = RegistryClient(url).latest(f"{kt}-value")
    assert registered is not None and registered[2]["name"] == "Score"


def test_key_partitioning_raw_avro_and_json(tmp_path, cluster, kafka_topic):
    lg = _log(tmp_path, 300)
    kt = kafka_topic(2)  # 3 log partitions, 2 Kafka ones: placed by key
    ToKafka(lg, "scores", bootstrap=cluster.bootstrap, kafka_topic=kt, group="g1").run(idle_exit=0.3)
    messages = consume_all(cluster.bootstrap, kt, 2)
    assert sorted(m.key for m in messages) == sorted(f"r{i}".encode() for i in range(300))
    places = {m.key: m.partition for m in messages}
    assert len(set(places.values())) == 2
    kj = kafka_topic(3)
    ToKafka(lg, "scores", bootstrap=cluster.bootstrap, kafka_topic=kj, value_format="json").run(idle_exit=0.3)
    import json

    got = sorted((json.loads(m.value) for m in consume_all(cluster.bootstrap, kj, 3)), key=lambda r: r["score"])
    assert got[3] == {"request_id": "r3", "event_time": "2026-05-01T00:00:00.003000+00:00", "score": 0.03,
                      "features": {"a": 3.0}, "note": None}  # fmt: skip
    unkeyed = logstore.open(tmp_path / "log2")
    unkeyed.create_topic("u", SCHEMA, partitions=3)
    with pytest.raises(BridgeError, match="has no key field to partition by"):
        ToKafka(unkeyed, "u", bootstrap=cluster.bootstrap, kafka_topic=kt).run(idle_exit=0.1)


def test_the_cursor_stays_put_while_kafka_acknowledges_nothing(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(3)
    lg = _log(tmp_path, 50)
    cluster.all_down()
    try:
        with pytest.raises(BridgeError) as info:
            ToKafka(lg, "scores", bootstrap=cluster.bootstrap, kafka_topic=kt, retry_timeout=2.0).run(idle_exit=5)
    finally:
        cluster.all_down(False)
    assert "Kafka" in str(info.value) and "\n" not in str(info.value)
    assert lg.consumer("scores", f"bridge.{kt}").committed() == {}
    stats = ToKafka(lg, "scores", bootstrap=cluster.bootstrap, kafka_topic=kt).run(idle_exit=0.5)
    assert stats.records == 50
    assert len(consume_all(cluster.bootstrap, kt, 3)) == 50


def _kill_and_restart(tmp_path, cluster, kt: str, partitioning: str, kafka_partitions: int, n: int) -> Counter:
    """Run the bridge as a process, SIGKILL it mid-stream 4 times, finish; (partition, offset) counts."""
    lg = _log(tmp_path, n)
    args = ["to-kafka", str(tmp_path / "log"), "scores", "--bootstrap", cluster.bootstrap, "--kafka-topic", kt]
    args += ["--partitioning", partitioning, "--batch", "100", "--progress", "0"]
    rng = random.Random(3)
    group = lg.consumer("scores", f"bridge.{kt}")
    committed = 0
    for _ in range(4):
        proc = spawn_bridge(*args)
        deadline = time.monotonic() + 30
        # kill once this run has committed something, a little later each time
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(group.committed().values()) > committed:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
        assert proc.returncode == -signal.SIGKILL
        committed = sum(group.committed().values())
    assert 0 < committed < n, committed  # the kills landed mid-stream
    done = run_bridge(*args, "--idle-exit", "1", timeout=120)
    assert done.returncode == 0, done.stderr
    assert lg.consumer("scores", f"bridge.{kt}").committed() == lg.end_offsets("scores")
    messages = consume_all(cluster.bootstrap, kt, kafka_partitions)
    return Counter((int(m.headers["logstore.partition"]), int(m.headers["logstore.offset"])) for m in messages)


@pytest.mark.slow
def test_sigkill_and_restart_lose_nothing_and_same_partitioning_doubles_nothing(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(3)
    counts = _kill_and_restart(tmp_path, cluster, kt, "same", 3, 6000)
    ends = logstore.open(tmp_path / "log").end_offsets("scores")
    assert set(counts) == {(p, o) for p, end in ends.items() for o in range(end)}  # none lost
    # the restart skips what the Kafka partition holds: a duplicate would need a produce request
    # in flight at the kill that reached the broker after the restart read the partition's tail
    assert sum(c - 1 for c in counts.values()) == 0


@pytest.mark.slow
def test_sigkill_and_restart_with_key_partitioning_is_at_least_once(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(2)
    counts = _kill_and_restart(tmp_path, cluster, kt, "key", 2, 6000)
    ends = logstore.open(tmp_path / "log").end_offsets("scores")
    assert set(counts) == {(p, o) for p, end in ends.items() for o in range(end)}  # none lost
    duplicates = sum(c - 1 for c in counts.values())
    # at least once: each kill repeats at most the batch in flight (100 records per log partition)
    assert 0 <= duplicates <= 4 * 100 * 3
    assert max(counts.values()) <= 5

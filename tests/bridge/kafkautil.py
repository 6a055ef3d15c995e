"""Helpers of the bridge's tests: record schemas, producing to and reading from the mock cluster,
and the `logstore bridge` command as a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import confluent_kafka as ck

ROOT = Path(__file__).resolve().parents[2]

V1: dict[str, Any] = {
    "type": "record",
    "name": "Payment",
    "namespace": "test.bridge",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
    ],
}
# BACKWARD compatible with V1: a field with a default
V2: dict[str, Any] = {**V1, "fields": [*V1["fields"], {"name": "currency", "type": "string", "default": "EUR"}]}
# incompatible with both: amount becomes a string
V3: dict[str, Any] = {
    **V1,
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "string"}, V1["fields"][2]],
}


def payment(i: int) -> dict[str, Any]:
    return {"id": f"p{i}", "amount": i * 0.5, "tags": {"n": str(i)}}


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[int, bytes]], keys: bool = False) -> int:
    """Produce (partition, value) pairs in order with an idempotent producer; returns how many."""
    producer = ck.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 2, "log_level": 0})
    n = 0
    for partition, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, partition=partition, key=b"k%d" % n if keys else None)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
    assert producer.flush(30) == 0
    return n


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp: int


def consume_all(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> list[Message]:
    """Every message of `topic` now (up to each partition's high watermark), in partition order."""
    consumer = ck.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False, "log_level": 0}
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
        }
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(partitions)])
        got: list[Message] = []
        seen = {p: 0 for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while any(seen[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                if m.error() is None:
                    got.append(
                        Message(
                            m.partition(), m.offset(), m.key(), m.value(), dict(m.headers() or []), m.timestamp()[1]
                        )
                    )
                    seen[m.partition()] = m.offset() + 1
        assert all(seen[p] >= ends[p] for p in ends), (seen, ends)
        return sorted(got, key=lambda m: (m.partition, m.offset))
    finally:
        consumer.close()


def bridge_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from logstore.cli import main; raise SystemExit(main())", "bridge", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def run_bridge(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(bridge_command(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env())


def spawn_bridge(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        bridge_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env()
    )

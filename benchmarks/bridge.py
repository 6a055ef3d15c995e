"""`python -m benchmarks.bridge`: the Kafka bridge's throughput both ways and its end-to-end
latency, on librdkafka's mock cluster (3 brokers on loopback, a child process), against
confluent-kafka's own loops.

    python -m benchmarks.bridge                    # 100,000 records, ~1 minute
    python -m benchmarks.bridge --n 20000 --out /tmp/BRIDGE.md

Cases (records of the `model_score` shape, Confluent-framed Avro, a 3-partition topic):

- ``produce loop``: `Producer.produce` of pre-encoded values (idempotent) and a `flush`: the floor
  of getting N messages into the cluster;
- ``consume loop``: `Consumer.consume` batches of N messages, values untouched; ``consume +
  decode``: each value also decoded (`schemas.wire.decode`), the floor of any Avro consumer;
- ``from-kafka``: `FromKafka.run(max_records=N)`: consume, decode, append, commit (durability flush);
- ``to-kafka``: `ToKafka.run(max_records=N)` from the log topic that filled: read, encode,
  produce, wait for every acknowledgement, commit the cursor;
- ``latency``: one message at a time (``--rate`` per second for ``--seconds``) produced while a
  `logstore bridge from-kafka` process tails the topic and this process follows the log topic
  (`reader(follow=True)`): from the produce call to the record readable in the log, p50/p99/max.

Every loop is bounded in count and time; the cluster dies with this process. The load average is
printed with the table: on a shared machine it moves every number.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Score",
    "fields": [
        {"name": "request_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "model_id", "type": "string"},
        {"name": "model_version", "type": "string"},
        {"name": "score", "type": "double"},
        {"name": "latency_ms", "type": "double"},
    ],
}
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _record(i: int) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "event_time": T0 + timedelta(milliseconds=i),
        "model_id": "champion" if i % 2 else "canary",
        "model_version": "1",
        "score": (i % 100) / 100,
        "latency_ms": 3.5 + i % 7,
    }


def _produce(ck: Any, bootstrap: str, topic: str, values: list[bytes], timeout: float) -> float:
    producer = ck.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "log_level": 0})
    start = time.perf_counter()
    for i, v in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=v, partition=i % 3)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(timeout) != 0:
        raise RuntimeError("the produce loop did not finish in time")
    return time.perf_counter() - start


def _consume(ck: Any, bootstrap: str, topic: str, n: int, decode: Any, timeout: float) -> float:
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "log_level": 0})
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(3)])
    got, start = 0, time.perf_counter()
    deadline = time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        for m in consumer.consume(10_000, 0.5):
            if m.error() is None:
                got += 1
                if decode is not None:
                    decode(m.value())
    spent = time.perf_counter() - start
    consumer.close()
    if got < n:
        raise RuntimeError(f"the consume loop read {got} of {n} in time")
    return spent


def _latency(
    ck: Any,
    bootstrap: str,
    topic: str,
    encode: Any,
    registry: str,
    scratch: Path,
    rate: float,
    seconds: float,
    extra: list[str],
) -> list[float]:
    """Produce-to-readable times (ms) of messages sent one at a time through a bridge process."""
    import logstore

    log_dir = scratch / f"latency-{topic}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", "from logstore.cli import main; raise SystemExit(main())", "bridge", "from-kafka"]
    cmd += [str(log_dir), "lat", "--bootstrap", bootstrap, "--kafka-topic", topic, "--registry", registry]
    cmd += extra
    bridge = subprocess.Popen([*cmd, "--progress", "0"], env=env, stderr=subprocess.DEVNULL)
    producer = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 0})
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    try:
        producer.produce(topic, value=encode(_record(0)), partition=0)  # creates the log topic
        producer.flush(10)
        deadline = time.monotonic() + 30
        while not (log_dir / "topics" / "lat").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        lg = logstore.open(log_dir)
        reader = lg.reader("lat", start=1, follow=True, columns=["kafka_partition", "kafka_offset"])
        count = int(rate * seconds)
        done = threading.Event()

        def follow() -> None:
            for batch in reader:
                now = time.perf_counter()
                for p, o in zip(batch.column("kafka_partition").to_pylist(), batch.column("kafka_offset").to_pylist()):
                    seen[o * 3 + p] = now
                if len(seen) >= count or done.is_set():
                    return

        tail = threading.Thread(target=follow, daemon=True)
        tail.start()
        offsets = {0: 1, 1: 0, 2: 0}
        for i in range(count):
            p = i % 3
            key = offsets[p] * 3 + p
            offsets[p] += 1
            sent[key] = time.perf_counter()
            producer.produce(topic, value=encode(_record(i)), partition=p)
            producer.poll(0)
            time.sleep(max(0.0, 1 / rate - 0.0002))
        producer.flush(10)
        tail.join(timeout=10)
        done.set()
    finally:
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(20)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait(10)
    return [(seen[k] - sent[k]) * 1000 for k in sent if k in seen]


def run(n: int, rate: float, seconds: float, scratch: Path) -> list[tuple[str, str, str]]:
    import confluent_kafka as ck

    import logstore
    from logstore.bridge.from_kafka import FromKafka
    from logstore.bridge.registry_client import RegistryClient
    from logstore.bridge.to_kafka import ToKafka
    from schemas import wire
    from tests.bridge.mockcluster import ClusterProcess
    from tests.bridge.registry_server import RegistryServer

    cluster, server = ClusterProcess(3), RegistryServer()
    rows: list[tuple[str, str, str]] = []
    try:
        for name in ("in", "out", "spare", "latency"):
            cluster.create_topic(name, 3)
        client = RegistryClient(server.url)
        sid = client.register("in-value", SCHEMA)
        values = [wire.encode(_record(i), SCHEMA, sid) for i in range(n)]

        def rate_row(case: str, spent: float, floor: float | None = None) -> None:
            ratio = "" if floor is None else f"{spent / floor:.2f}x"
            rows.append((case, f"{n / spent:,.0f} records/s ({spent:.2f} s)", ratio))

        produced = _produce(ck, cluster.bootstrap, "in", values, 120)
        rate_row("produce loop (confluent-kafka)", produced)
        records = [_record(i) for i in range(n)]
        start = time.perf_counter()
        _produce(ck, cluster.bootstrap, "spare", [wire.encode(r, SCHEMA, sid) for r in records], 120)
        encoded_s = time.perf_counter() - start
        rate_row("encode + produce", encoded_s)
        consumed = _consume(ck, cluster.bootstrap, "in", n, None, 120)
        rate_row("consume loop (confluent-kafka)", consumed)
        decoded = _consume(ck, cluster.bootstrap, "in", n, lambda v: wire.decode(v, client.schema), 120)
        rate_row("consume + decode", decoded)

        lg = logstore.open(scratch / "log")
        start = time.perf_counter()
        stats = FromKafka(lg, "scores", bootstrap=cluster.bootstrap, kafka_topic="in", registry=server.url).run(
            max_records=n, idle_exit=30
        )
        assert stats.records == n, stats
        rate_row("from-kafka bridge (vs consume + decode)", time.perf_counter() - start, decoded)

        start = time.perf_counter()
        sent = ToKafka(lg, "scores", bootstrap=cluster.bootstrap, kafka_topic="out", registry=server.url).run(
            max_records=n, idle_exit=30
        )
        assert sent.records == n, sent
        rate_row("to-kafka bridge (vs encode + produce)", time.perf_counter() - start, encoded_s)

        # the mock broker answers a fetch only at its max wait (a real one as soon as data arrives):
        # with the bridge's default (100 ms) that wait is most of the latency; 10 ms shows the rest
        for topic, wait in (("latency", None), ("latency-fast", 10)):
            if topic != "latency":
                cluster.create_topic(topic, 3)
            sid_l = client.register(f"{topic}-value", SCHEMA)
            extra = [] if wait is None else ["--kafka-config", f"fetch.wait.max.ms={wait}"]
            times = sorted(
                _latency(
                    ck,
                    cluster.bootstrap,
                    topic,
                    lambda r, s=sid_l: wire.encode(r, SCHEMA, s),
                    server.url,
                    scratch,
                    rate,
                    seconds,
                    extra,
                )
            )
            if times:
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                rows.append(
                    (
                        f"latency produce -> readable in the log ({len(times)} at {rate:.0f}/s, "
                        f"fetch.wait.max.ms={wait or 100})",
                        f"p50 {statistics.median(times):.1f} ms, p99 {p99:.1f} ms, max {times[-1]:.1f} ms",
                        "",
                    )
                )
    finally:
        server.close()
        cluster.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="records per throughput case")
    parser.add_argument("--rate", type=float, default=200.0, help="messages per second in the latency case")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the latency case produces")
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    try:
        rows = run(args.n, args.rate, args.seconds, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"# Kafka bridge (python -m benchmarks.bridge --n {args.n}), load average {load}",
        "",
        "| case | result | vs floor |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
    ]
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

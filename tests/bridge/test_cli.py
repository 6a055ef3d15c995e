"""`logstore bridge ...` as a user runs it: one-line errors, clean stops, the status listing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import logstore
from logstore.bridge.registry_client import RegistryClient
from schemas import wire
from tests.bridge.kafkautil import ROOT, V1, env, payment, produce, run_bridge, spawn_bridge
from tests.bridge.test_registry import _closed_port


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("logstore: error: "), stderr
    return lines[0]


def test_without_confluent_kafka_the_command_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['confluent_kafka'] = None\n"
        "from logstore.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))"
    )
    args = ["bridge", "from-kafka", str(tmp_path / "log"), "t", "--bootstrap", "127.0.0.1:9", "--kafka-topic", "t"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env())
    assert done.returncode == 2
    assert "pip install 'logstore[kafka]'" in _one_error_line(done.stderr)
    helped = subprocess.run(
        [sys.executable, "-c", code, "bridge", "to-kafka", "--help"], capture_output=True, text=True, env=env()
    )
    assert helped.returncode == 0 and "--kafka-topic" in helped.stdout


def test_an_unreachable_broker_is_one_line_after_bounded_retries(tmp_path):
    servers = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    done = run_bridge(
        "from-kafka", str(tmp_path / "log"), "t", "--bootstrap", servers, "--kafka-topic", "t",
        "--schema", json.dumps(V1), "--retry-timeout", "1.5",
    )  # fmt: skip
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert f"cannot reach Kafka at {servers}" in line and "attempt(s) over" in line
    assert time.monotonic() - started < 20
    assert not (tmp_path / "log" / "topics").exists()  # nothing was created


def test_an_unreachable_registry_stops_the_bridge_in_one_line_keeping_its_position(tmp_path, cluster, kafka_topic):
    kt = kafka_topic(1)
    url = f"mock://{kt}"
    sid = RegistryClient(url).register(f"{kt}-value", V1)
    produce(cluster.bootstrap, kt, [(0, wire.encode(payment(0), V1, sid))])
    done = run_bridge(
        "from-kafka", str(tmp_path / "log"), "t", "--bootstrap", cluster.bootstrap, "--kafka-topic", kt,
        "--registry", f"http://127.0.0.1:{_closed_port()}", "--retry-timeout", "1", "--idle-exit", "5",
    )  # fmt: skip
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert "Kafka partition 0 offset 0: cannot reach the schema registry at http://127.0.0.1:" in line


def test_sigterm_stops_cleanly_and_status_shows_both_directions(tmp_path, cluster, kafka_topic, registry):
    kt = kafka_topic(2)
    sid = RegistryClient(registry.url).register(f"{kt}-value", V1)
    produce(cluster.bootstrap, kt, ((i % 2, wire.encode(payment(i), V1, sid)) for i in range(100)))
    log_dir = tmp_path / "log"
    proc = spawn_bridge(
        "from-kafka", str(log_dir), "pay", "--bootstrap", cluster.bootstrap, "--kafka-topic", kt,
        "--registry", registry.url, "--progress", "0.2",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (log_dir / "topics" / "pay").exists() and sum(logstore.open(log_dir).end_offsets("pay").values()) == 100:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "from-kafka: 100 records" in err  # a progress line
    assert "from-kafka: appended to 'pay' 100 records in" in err and "(stopped: signal)" in err

    out = kafka_topic(2)
    sent = run_bridge(
        "to-kafka", str(log_dir), "pay", "--bootstrap", cluster.bootstrap, "--kafka-topic", out,
        "--registry", registry.url, "--idle-exit", "0.3", "--progress", "0",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert f"delivered to Kafka topic '{out}' 100 records" in sent.stderr

    shown = run_bridge("status", str(log_dir), "pay", "--bootstrap", cluster.bootstrap, "--kafka-topic", kt, "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    [fed] = status["from_kafka"]
    assert [(p["partition"], p["next_kafka_offset"], p["kafka_end"], p["lag"]) for p in fed["partitions"]] == [
        (0, 50, 50, 0),
        (1, 50, 50, 0),
    ]
    [group] = status["to_kafka"]
    assert group["group"] == f"bridge.{out}"
    assert [(p["committed"], p["lag"]) for p in group["topics"][0]["partitions"]] == [(50, 0), (50, 0)]
    table = run_bridge("status", str(log_dir))
    assert table.returncode == 0 and "NEXT KAFKA OFFSET" in table.stdout and f"bridge.{out}" in table.stdout
    # `logstore describe` shows both bridges' positions too (text and JSON)
    described = subprocess.run(
        [str(Path(sys.executable).with_name("logstore")), "describe", str(log_dir), "pay"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert described.returncode == 0, described.stderr
    assert "bridge from Kafka, partition 0: next Kafka offset 50" in described.stdout
    assert f"bridge to Kafka (bridge.{out}), partition 1: committed 50, end 50, lag 0" in described.stdout
    as_json = subprocess.run(
        [str(Path(sys.executable).with_name("logstore")), "describe", str(log_dir), "pay", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    bridge = json.loads(as_json.stdout)["bridge"]
    assert [p["next_kafka_offset"] for p in bridge["from_kafka"]] == [50, 50]
    assert bridge["to_kafka"][0]["group"] == f"bridge.{out}"

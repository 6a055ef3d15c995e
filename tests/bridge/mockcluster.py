"""A librdkafka mock Kafka cluster on loopback, for the bridge's tests and benchmark.

confluent-kafka's clients accept ``test.mock.num.brokers`` (a mock cluster inside that one
client), but Python exposes neither the cluster's bootstrap servers nor topic creation, and the
mock answers no CreateTopics request (its auto-created topics have 4 partitions). So this module
drives librdkafka's mock API itself through ctypes, on the copy of librdkafka that confluent-kafka
ships: `rd_kafka_mock_cluster_new`, `rd_kafka_mock_cluster_bootstraps`,
`rd_kafka_mock_topic_create`, `rd_kafka_mock_broker_set_down`/`_up`.

Run as a process (``python -m tests.bridge.mockcluster --brokers 3``) it prints its bootstrap
servers on the first line of stdout and then serves one command per stdin line, answering
``ok`` or ``error: ...``: ``topic NAME PARTITIONS``, ``down BROKER_ID``, ``up BROKER_ID``. It
exits at end of input, so it dies with the process that started it.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _library() -> ctypes.CDLL:
    import confluent_kafka

    base = Path(confluent_kafka.__file__).resolve().parent
    found = sorted(glob.glob(str(base.parent / "confluent_kafka.libs" / "librdkafka*.so*")))
    if not found:
        found = ["librdkafka.so.1"]  # a build linked against the system's librdkafka
    lib = ctypes.CDLL(found[0])
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    lib.rd_kafka_mock_broker_set_down.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_broker_set_up.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    return lib


class MockCluster:
    """A mock cluster of `brokers` brokers living in this process (librdkafka's own threads)."""

    def __init__(self, brokers: int = 3) -> None:
        self.lib = _library()
        err = ctypes.create_string_buffer(512)
        conf = self.lib.rd_kafka_conf_new()
        self.lib.rd_kafka_conf_set(conf, b"log_level", b"0", err, 512)  # no logs on stderr
        self.rk = self.lib.rd_kafka_new(0, conf, err, 512)  # a producer handle that owns the cluster
        if not self.rk:
            raise RuntimeError(f"rd_kafka_new: {err.value.decode()}")
        self.cluster = self.lib.rd_kafka_mock_cluster_new(self.rk, brokers)
        if not self.cluster:
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.brokers = brokers
        self.bootstrap = self.lib.rd_kafka_mock_cluster_bootstraps(self.cluster).decode()

    def create_topic(self, name: str, partitions: int) -> None:
        code = self.lib.rd_kafka_mock_topic_create(self.cluster, name.encode(), partitions, min(3, self.brokers))
        if code:
            raise RuntimeError(f"create topic {name}: {self.lib.rd_kafka_err2str(code).decode()}")

    def set_down(self, broker: int, down: bool = True) -> None:
        fn = self.lib.rd_kafka_mock_broker_set_down if down else self.lib.rd_kafka_mock_broker_set_up
        code = fn(self.cluster, broker)
        if code:
            raise RuntimeError(f"broker {broker}: {self.lib.rd_kafka_err2str(code).decode()}")


class ClusterProcess:
    """A `MockCluster` in a child process (see the module docstring); `close()` ends it."""

    def __init__(self, brokers: int = 3) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bridge.mockcluster", "--brokers", str(brokers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        self.bootstrap = self.proc.stdout.readline().strip()
        if not self.bootstrap:
            raise RuntimeError(f"the mock cluster did not start (exit {self.proc.wait(10)})")
        self.brokers = brokers

    def _say(self, line: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"mock cluster: {line}: {answer or 'no answer'}")

    def create_topic(self, name: str, partitions: int) -> None:
        self._say(f"topic {name} {partitions}")

    def set_down(self, broker: int, down: bool = True) -> None:
        self._say(f"{'down' if down else 'up'} {broker}")

    def all_down(self, down: bool = True) -> None:
        for b in range(1, self.brokers + 1):
            self.set_down(b, down)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _serve(brokers: int) -> int:
    cluster = MockCluster(brokers)
    print(cluster.bootstrap, flush=True)
    for line in sys.stdin:
        words = line.split()
        try:
            if words[:1] == ["topic"] and len(words) == 3:
                cluster.create_topic(words[1], int(words[2]))
            elif words[:1] in (["down"], ["up"]) and len(words) == 2:
                cluster.set_down(int(words[1]), words[0] == "down")
            else:
                raise ValueError(f"unknown command {line.strip()!r}")
            print("ok", flush=True)
        except (RuntimeError, ValueError) as e:
            print(f"error: {e}", flush=True)
    os._exit(0)  # librdkafka's threads: no teardown needed for a test fixture


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a librdkafka mock cluster on loopback")
    parser.add_argument("--brokers", type=int, default=3)
    raise SystemExit(_serve(parser.parse_args().brokers))

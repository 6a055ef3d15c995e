"""Fixtures of the Kafka bridge's tests: one librdkafka mock cluster (3 brokers on loopback, in a
child process) for the whole session, a fresh Kafka topic per test, and a schema registry over
HTTP on 127.0.0.1 (a thread of this process) for bridges running as other processes."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("confluent_kafka")

from tests.bridge.mockcluster import ClusterProcess  # noqa: E402
from tests.bridge.registry_server import RegistryServer  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterProcess]:
    c = ClusterProcess(3)
    yield c
    c.close()


@pytest.fixture
def kafka_topic(cluster: ClusterProcess) -> Callable[[int], str]:
    """`kafka_topic(partitions)`: a new topic of the mock cluster, named for this test."""

    def make(partitions: int = 3) -> str:
        name = f"t{os.getpid()}-{next(_names)}"
        cluster.create_topic(name, partitions)
        return name

    return make


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    server = RegistryServer()
    yield server
    server.close()

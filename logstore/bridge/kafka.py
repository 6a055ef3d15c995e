"""What both directions of the bridge share: the confluent-kafka import, the error, bounded
retries, the Kafka topic's partition count, the one-bridge-at-a-time lock and the run's stats.

confluent-kafka (librdkafka) is an optional dependency, the ``kafka`` extra: `require()` imports
it or raises `BridgeError` naming the extra, so every other command works without it.

Retries are bounded in time (`Backoff`: 0.1 s doubling to 2 s, until `retry_timeout`); past
that the bridge stops with one line naming the address and the last error. Stopping is safe in
both directions: from Kafka, the log's records are the position; to Kafka, the cursor moves only
over what Kafka acknowledged.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from logstore.errors import LogstoreError
from logstore.files import CLOEXEC, NOFOLLOW

EXTRA = "pip install 'logstore[kafka]'"
KAFKA_LOG = logging.getLogger("logstore.bridge.kafka")  # librdkafka's own log lines
KAFKA_LOG.addHandler(logging.NullHandler())


class BridgeError(LogstoreError):
    """The bridge cannot go on: Kafka or the registry unreachable, a schema refused, a bad message.

    Raised after committing what came before, so a restart resumes at the cause."""


def require() -> ModuleType:
    """The `confluent_kafka` module, or BridgeError saying how to install it."""
    try:
        import confluent_kafka
    except ImportError as e:
        raise BridgeError(f"the Kafka bridge needs confluent-kafka ({e}): {EXTRA}") from None
    return confluent_kafka


class Backoff:
    """Bounded retries: `wait()` sleeps 0.1 s, 0.2 s, ... up to 2 s between attempts and returns
    False once `timeout` seconds have passed since the first attempt (or `stop` is set)."""

    def __init__(self, timeout: float, stop: threading.Event | None = None) -> None:
        self.timeout = timeout
        self.stop = stop
        self.start = time.monotonic()
        self.attempts = 0
        self._delay = 0.1

    def wait(self) -> bool:
        self.attempts += 1
        left = self.timeout - (time.monotonic() - self.start)
        if left <= 0 or (self.stop is not None and self.stop.is_set()):
            return False
        pause = min(self._delay, left)
        if self.stop is not None:
            self.stop.wait(pause)
        else:
            time.sleep(pause)
        self._delay = min(2.0, self._delay * 2)
        return True

    def spent(self) -> str:
        return f"{self.attempts} attempt(s) over {time.monotonic() - self.start:.1f} s"


def kafka_partitions(client: Any, topic: str, servers: str, backoff: Backoff) -> int:
    """The partition count of Kafka topic `topic`, retrying an unreachable cluster with `backoff`.

    BridgeError when the topic does not exist or the cluster does not answer in time."""
    ck = require()
    last: object = None
    while True:
        try:
            md = client.list_topics(topic, timeout=min(5.0, max(0.5, backoff.timeout)))
            meta = md.topics.get(topic)
            if meta is not None and meta.error is None and meta.partitions:
                return len(meta.partitions)
            if meta is not None and meta.error is not None and meta.error.code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BridgeError(f"Kafka topic {topic!r} does not exist at {servers}")
            last = meta.error if meta is not None else "no metadata"
        except ck.KafkaException as e:
            last = e.args[0] if e.args else e
        if not backoff.wait():
            raise BridgeError(f"cannot reach Kafka at {servers}: {describe_error(last)} ({backoff.spent()})")


def describe_error(err: object) -> str:
    """A KafkaError (or anything) as one short phrase."""
    text = err.str() if hasattr(err, "str") else str(err)
    return str(text).strip().rstrip(".") or type(err).__name__


def kafka_config(servers: str, extra: dict[str, str] | None, **settings: Any) -> dict[str, Any]:
    """A librdkafka config: `settings`, then the user's `extra` (``--kafka-config KEY=VALUE``) over them."""
    conf: dict[str, Any] = {"bootstrap.servers": servers, "client.id": "logstore-bridge", "logger": KAFKA_LOG}
    conf.update(settings)
    conf.update(extra or {})
    return conf


class BridgeLock:
    """An exclusive, non-blocking flock on ``<log>/.bridge.<name>.lock``: one bridge per target.

    Two bridges into one topic would each resume from the same point and store every record
    twice. The file starts with a dot, so the log ignores it (and may be created before the log's
    first topic); the lock dies with the process, so a killed bridge never blocks a restart."""

    def __init__(self, log_path: Path, name: str) -> None:
        self.path = Path(log_path) / f".bridge.{name}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(self.path.parent, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BridgeError(f"another bridge is running for this target (it holds {self.path})") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class Stats:
    """What a bridge run did; `positions` are next offsets: Kafka's (from-kafka) or the log's (to-kafka)."""

    records: int = 0
    batches: int = 0
    positions: dict[int, int] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    schema_versions: list[int] = field(default_factory=list)
    stopped: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        """One progress line: records, rate, positions and lag."""
        rate = self.records / self.elapsed if self.elapsed > 0 else 0.0
        pos = ",".join(f"{p}:{o}" for p, o in sorted(self.positions.items())) or "-"
        lag = sum(self.lag.values()) if self.lag else None
        return f"{self.records} records ({rate:,.0f}/s), positions {pos}" + ("" if lag is None else f", lag {lag}")


Progress = Callable[[Stats], None]


class Ticker:
    """Calls `progress(stats)` at most every `every` seconds (never when `progress` is None)."""

    def __init__(self, progress: Progress | None, every: float) -> None:
        self.progress = progress
        self.every = every
        self._last = time.monotonic()

    def __call__(self, stats: Stats, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            self.progress(stats)


class Idle:
    """`expired()` once nothing arrived for `seconds` (None: never)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._since = time.monotonic()

    def touch(self) -> None:
        self._since = time.monotonic()

    def expired(self) -> bool:
        return self.seconds is not None and time.monotonic() - self._since >= self.seconds


class Health:
    """librdkafka's error callback: remembers when every broker went away, so a loop can give up
    after `timeout` seconds without one (`check`), and forget it once any answer came (`ok`)."""

    def __init__(self, servers: str, timeout: float) -> None:
        self.servers = servers
        self.timeout = timeout
        self.down_since: float | None = None
        self.last: str = ""
        self.fatal: str | None = None

    def error_cb(self, err: Any) -> None:
        ck = require()
        if err.fatal():
            self.fatal = describe_error(err)
        elif err.code() in (ck.KafkaError._ALL_BROKERS_DOWN, ck.KafkaError._TRANSPORT, ck.KafkaError._RESOLVE):
            self.last = describe_error(err)
            if self.down_since is None:
                self.down_since = time.monotonic()

    def ok(self) -> None:
        self.down_since = None

    def check(self, client: Any, topic: str) -> None:
        """Raise BridgeError on a fatal client error, or when Kafka has not answered for `timeout` s;
        while it is down, probe it (a metadata request) to notice it came back."""
        if self.fatal is not None:
            raise BridgeError(f"Kafka client failed for {self.servers}: {self.fatal}")
        if self.down_since is None:
            return
        try:
            client.list_topics(topic, timeout=1.0)
            self.ok()
            return
        except Exception:  # noqa: BLE001 - still down: decided by the clock below
            pass
        if time.monotonic() - self.down_since >= self.timeout:
            raise BridgeError(
                f"lost Kafka at {self.servers}: {self.last or 'no broker answers'} (no answer for {self.timeout:.0f} s)"
            )

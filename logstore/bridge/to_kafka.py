"""Log -> Kafka (`logstore bridge to-kafka`): a log topic tailed and produced to a Kafka topic.

Position: a consumer group of the log (``bridge.<kafka topic>`` by default; `logstore groups`
lists it with its lag), committed only over records Kafka acknowledged: each batch is produced,
`flush()`ed until every delivery callback has fired, and the cursor of each log partition then
moves to the first record not acknowledged (past the batch when all were). Nothing the log holds
is skipped: a record is produced again until Kafka takes it.

Messages: value = the record (Confluent-framed Avro with the registry's id of the topic's schema
under subject ``<kafka topic>-value``, or raw Avro / JSON); key = the topic's key field (bytes as
they are, anything else as UTF-8 text); timestamp = the event time (the append time when the topic
has none); headers ``logstore.topic``, ``logstore.partition``, ``logstore.offset`` name the record.
Partitioning: ``same`` (log partition p to Kafka partition p, the default when the counts match)
or ``key`` (Kafka's murmur2 partitioner over the key, as Java producers place keys).

Guarantee: at least once. The producer is idempotent (``enable.idempotence``): within one run
librdkafka's retries never double or reorder a message. Across a crash (SIGKILL), the records
after the last cursor commit are produced again. With ``same`` partitioning the restart first
reads the tail of each Kafka partition and moves the cursor past the last record it finds there
(the headers name it): an idempotent producer's partition holds a prefix of what it sent, so this
skips exactly what Kafka already had, and a duplicate then needs a produce request still in
flight when the bridge died that reached the broker after the restart read the tail. (So with
``same``, a Kafka topic already holding a log topic's records is the position too: a new group
goes on after them; produce a topic again into another Kafka topic.) With ``key``
partitioning no such check is possible (one log partition spreads over several Kafka partitions)
and a crash can repeat up to one batch per log partition; consumers can drop repeats by the
headers. Exactly once through Kafka transactions is not offered: librdkafka's mock cluster, where
this is tested, takes transactions but shows aborted ones to read_committed consumers, so the
claim could not be checked here.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from logstore.errors import LogstoreError
from logstore.names import SYSTEM_COLUMNS

from .kafka import (
    Backoff,
    BridgeError,
    BridgeLock,
    Health,
    Idle,
    Progress,
    Stats,
    Ticker,
    describe_error,
    kafka_config,
    kafka_partitions,
    require,
)
from .records import FORMATS, Encoder, FramedEncoder, JsonEncoder, RawAvroEncoder, key_bytes
from .registry_client import RegistryClient

if TYPE_CHECKING:
    from logstore.consumer import Consumer
    from logstore.log import Log

log = logging.getLogger("logstore.bridge")
PARTITIONING = ("same", "key")
TAIL = 64  # messages read back from the end of each Kafka partition at start (``same`` partitioning)
H_TOPIC, H_PARTITION, H_OFFSET = "logstore.topic", "logstore.partition", "logstore.offset"


def default_group(kafka_topic: str) -> str:
    return f"bridge.{kafka_topic}"


def _millis(col: pa.ChunkedArray | pa.Array) -> list[int | None]:
    """A timestamp column as epoch milliseconds (None for nulls)."""
    unit = col.type.unit
    raw = col.cast(pa.timestamp(unit)).cast(pa.int64())
    per_ms = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    ms = pc.multiply(raw, 1000) if per_ms is None else pc.divide(raw, per_ms) if per_ms > 1 else raw
    return ms.to_pylist()  # type: ignore[no-any-return]


class ToKafka:
    """A bridge from log topic `topic` to Kafka topic `kafka_topic` at `bootstrap`."""

    def __init__(
        self,
        lg: Log,
        topic: str,
        *,
        bootstrap: str,
        kafka_topic: str,
        registry: str | RegistryClient | None = None,
        value_format: str = "avro",
        group: str | None = None,
        subject: str | None = None,
        partitioning: str | None = None,
        batch: int = 5000,
        kafka_settings: dict[str, str] | None = None,
        retry_timeout: float = 30.0,
        poll_timeout: float = 0.2,
    ) -> None:
        if value_format not in FORMATS:
            raise BridgeError(f"value format must be one of {', '.join(FORMATS)}, found {value_format!r}")
        if partitioning is not None and partitioning not in PARTITIONING:
            raise BridgeError(f"partitioning must be one of {', '.join(PARTITIONING)}, found {partitioning!r}")
        if batch < 1:
            raise BridgeError("batch must be at least 1")
        self.log, self.topic = lg, topic
        self.config = lg.config(topic)  # TopicNotFoundError for a missing topic
        self.bootstrap, self.kafka_topic = bootstrap, kafka_topic
        self.group = group or default_group(kafka_topic)
        self.subject = subject or f"{kafka_topic}-value"
        self.value_format, self.partitioning, self.batch = value_format, partitioning, batch
        self.kafka_settings = dict(kafka_settings or {})
        self.retry_timeout, self.poll_timeout = retry_timeout, poll_timeout
        self.registry = RegistryClient(registry, retry_timeout=retry_timeout) if isinstance(registry, str) else registry
        self.health = Health(bootstrap, retry_timeout)
        self._topic_header = topic.encode()

    # --- the run ----------------------------------------------------------------------------------
    def run(
        self,
        *,
        max_records: int | None = None,
        idle_exit: float | None = None,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        progress_every: float = 10.0,
    ) -> Stats:
        """Produce until `stop` is set, `max_records` are acknowledged, or no record came for
        `idle_exit` seconds; returns what was done (`stats.stopped` says why it ended)."""
        ck = require()
        lock = BridgeLock(self.log.path, f"to-kafka.{self.group}.{self.topic}")
        lock.acquire()
        try:
            producer = ck.Producer(
                kafka_config(
                    self.bootstrap,
                    self.kafka_settings,
                    **{
                        "enable.idempotence": True,
                        "acks": "all",
                        "linger.ms": 5,
                        "message.timeout.ms": max(1000, int(self.retry_timeout * 1000)),
                        "allow.auto.create.topics": False,
                        "partitioner": "murmur2_random",
                        "error_cb": self.health.error_cb,
                    },
                )
            )
            try:
                return self._run(ck, producer, max_records, idle_exit, stop, Ticker(progress, progress_every))
            finally:
                producer.flush(1.0)  # whatever is left was not committed: produced again next time
        finally:
            lock.release()

    def _run(
        self, ck: Any, producer: Any, max_records: int | None, idle_exit: float | None, stop: Any, tick: Ticker
    ) -> Stats:
        stats = Stats()
        partitions = kafka_partitions(producer, self.kafka_topic, self.bootstrap, Backoff(self.retry_timeout, stop))
        same = self._partitioning(partitions) == "same"
        encoder = self._encoder()
        consumer = self.log.consumer(self.topic, self.group)
        if same:
            self._reconcile(ck, consumer)
        stats.positions = dict(consumer.positions)
        idle = Idle(idle_exit)
        while True:
            if stop is not None and stop.is_set():
                stats.stopped = "stopped"
                break
            if max_records is not None and stats.records >= max_records:
                stats.stopped = "max-records"
                break
            if idle.expired():
                stats.stopped = "idle"
                break
            want = self.batch if max_records is None else min(self.batch, max_records - stats.records)
            table = consumer.poll(max_records=want, timeout=self.poll_timeout)
            if table.num_rows:
                idle.touch()
                self._deliver(ck, producer, consumer, encoder, table, same, stats)
            else:
                producer.poll(0)
                self.health.check(producer, self.kafka_topic)
            stats.lag = consumer.lag()
            tick(stats)
        tick(stats, force=True)
        return stats

    def _partitioning(self, kafka_partitions: int) -> str:
        n = self.config.partitions
        mode = self.partitioning or ("same" if kafka_partitions == n else "key")
        if mode == "same" and kafka_partitions != n:
            raise BridgeError(
                f"topic {self.topic!r} has {n} partition(s) and Kafka topic {self.kafka_topic!r} {kafka_partitions}: "
                "'same' partitioning needs as many (or use 'key')"
            )
        if mode == "key" and self.config.key_field is None:
            raise BridgeError(
                f"topic {self.topic!r} has no key field to partition by, and {n} partition(s) where Kafka topic "
                f"{self.kafka_topic!r} has {kafka_partitions}: give the Kafka topic {n} partitions"
            )
        return mode

    def _encoder(self) -> Encoder:
        schema = self.log.schema(self.topic)
        if self.registry is not None:
            return FramedEncoder(schema, self.registry.register(self.subject, schema))
        return RawAvroEncoder(schema) if self.value_format == "avro" else JsonEncoder()

    # --- one batch --------------------------------------------------------------------------------
    def _deliver(
        self, ck: Any, producer: Any, consumer: Consumer, encoder: Encoder, table: pa.Table, same: bool, stats: Stats
    ) -> None:
        """Produce `table`, wait for every acknowledgement, then commit each log partition's cursor
        to its first record Kafka did not take; BridgeError after that commit when one failed."""
        parts = table.column("_partition").to_pylist()
        offsets = table.column("_offset").to_pylist()
        user = table.drop_columns([c for c in SYSTEM_COLUMNS if c in table.column_names])
        values = encoder.encode(user)
        key_field, time_field = self.config.key_field, self.config.event_time_field
        keys = user.column(key_field).to_pylist() if key_field else None
        appended = _millis(table.column("_append_time"))
        events = _millis(user.column(time_field)) if time_field else appended
        fired = [0]  # delivery callbacks fired
        failed: dict[int, int] = {}  # per log partition, the first offset Kafka did not take
        errors: list[str] = []

        def delivered(err: Any, msg: Any) -> None:
            fired[0] += 1
            if err is not None:
                h = dict(msg.headers() or [])
                p, o = int(h[H_PARTITION]), int(h[H_OFFSET])
                failed[p] = min(failed.get(p, o), o)
                if len(errors) < 3:
                    errors.append(describe_error(err))

        topic_header = (H_TOPIC, self._topic_header)
        extra: dict[str, int] = {}
        for i, (p, o) in enumerate(zip(parts, offsets)):
            if same:
                extra["partition"] = p
            while True:
                try:
                    producer.produce(
                        self.kafka_topic,
                        value=values[i],
                        key=None if keys is None else key_bytes(keys[i]),
                        timestamp=events[i] if events[i] is not None else appended[i] or 0,
                        headers=[topic_header, (H_PARTITION, b"%d" % p), (H_OFFSET, b"%d" % o)],
                        on_delivery=delivered,
                        **extra,
                    )
                    break
                except BufferError:  # librdkafka's queue is full: let deliveries drain it
                    producer.poll(0.05)
        self._flush(producer)
        if fired[0] < len(parts):  # some fate unknown: move no cursor (they are produced again)
            raise BridgeError(
                f"Kafka at {self.bootstrap} did not answer for {len(parts) - fired[0]} of {len(parts)} records in "
                f"time; the cursor did not move, so a restart produces them again"
            )
        self._commit(consumer, parts, offsets, failed, stats)
        if failed:
            raise BridgeError(
                f"Kafka at {self.bootstrap} did not take records ({'; '.join(errors)}); the cursor stopped before the "
                "first of them, so a restart produces them again"
            )

    def _flush(self, producer: Any) -> None:
        """Wait until every message of the batch was acknowledged or failed (message.timeout.ms bounds it)."""
        deadline = time.monotonic() + self.retry_timeout + 10
        while producer.flush(1.0) > 0 and time.monotonic() < deadline:
            pass

    def _commit(
        self, consumer: Consumer, parts: list[int], offsets: list[int], failed: dict[int, int], stats: Stats
    ) -> None:
        """Move each log partition's cursor to its first failed record of the batch, or past the batch."""
        ends: dict[int, int] = {}
        for p, o in zip(parts, offsets):
            ends[p] = o + 1
        done = {p: failed.get(p, end) for p, end in ends.items()}
        done = {p: o for p, o in done.items() if o > stats.positions.get(p, 0)}
        if done:
            consumer.commit(done)
            stats.positions.update(done)
        stats.records += sum(1 for p, o in zip(parts, offsets) if o < failed.get(p, o + 1))
        stats.batches += 1

    # --- after a crash ------------------------------------------------------------------------------
    def _reconcile(self, ck: Any, consumer: Consumer) -> None:
        """Move each partition's cursor past the last record the Kafka partition already holds
        (found by its headers in the last `TAIL` messages); see the module docstring."""
        reader = ck.Consumer(
            kafka_config(
                self.bootstrap,
                self.kafka_settings,
                **{
                    "group.id": f"{self.group}.check",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",
                    "allow.auto.create.topics": False,
                },
            )
        )
        try:
            for p, position in sorted(consumer.positions.items()):
                last = self._last_produced(ck, reader, p)
                if last is not None and last + 1 > position:
                    try:
                        consumer.commit({p: last + 1})
                    except LogstoreError as e:
                        raise BridgeError(
                            f"Kafka partition {p} holds record {last} of topic {self.topic!r}, which the log does "
                            f"not have ({e}): is this the log the Kafka topic was fed from?"
                        ) from None
                    consumer.seek(p, last + 1)
                    log.info("partition %d: Kafka already holds records up to %d; resuming after it", p, last)
        finally:
            reader.close()

    def _last_produced(self, ck: Any, reader: Any, p: int) -> int | None:
        tp = ck.TopicPartition(self.kafka_topic, p)
        try:
            low, high = reader.get_watermark_offsets(tp, timeout=min(10.0, self.retry_timeout))
        except ck.KafkaException as e:
            raise BridgeError(f"cannot reach Kafka at {self.bootstrap}: {describe_error(e.args[0])}") from None
        if high <= low:
            return None
        reader.assign([ck.TopicPartition(self.kafka_topic, p, max(low, high - TAIL))])
        last, deadline = None, time.monotonic() + min(10.0, self.retry_timeout)
        while time.monotonic() < deadline:
            m = reader.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == ck.KafkaError._PARTITION_EOF:
                    break
                continue
            h = dict(m.headers() or [])
            if h.get(H_TOPIC) == self._topic_header and h.get(H_PARTITION) == b"%d" % p:
                last = int(h[H_OFFSET])
            if m.offset() >= high - 1:
                break
        reader.unassign()
        return last


def to_kafka(lg: Log, topic: str, **options: Any) -> Stats:
    """Run a `ToKafka` bridge: `ToKafka(lg, topic, **settings).run(**run options)` in one call."""
    run_keys = ("max_records", "idle_exit", "stop", "progress", "progress_every")
    run = {k: options.pop(k) for k in run_keys if k in options}
    return ToKafka(lg, topic, **options).run(**run)

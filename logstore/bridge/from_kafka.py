"""Kafka -> log (`logstore bridge from-kafka`): a Kafka topic's messages appended to a log topic,
Kafka partition p into log partition p, in offset order, exactly once.

Where the position lives. Every record carries its Kafka partition and offset (the fields
`kafka_partition` and `kafka_offset` the bridge adds to the topic's schema, `records`), and log
partition p is fed by Kafka partition p alone, in offset order. So the last record of log
partition p names the last offset of Kafka partition p the log holds, and a restart reads it and
seeks Kafka to the next one. The position is stored by the very commit that stores the records
(it *is* the records), so no crash can keep one without the other: a frame is visible whole or
not at all (docs/architecture.md, invariant 3), and a torn tail is truncated with its position.
This holds in every durability mode: a power cut that drops an unsynced tail drops its position
with it, and the bridge reads those messages again.

The other ways were weighed and refused:
(a) a companion topic of offsets committed beside the data: `commit.commit_many` is all-or-nothing
across partitions of one topic only, so a crash between the two topics' commits would double or
lose a batch; (b) a hidden column (``_kafka_offset``): names starting with ``_`` belong to the log
(`logstore.names.SYSTEM_COLUMNS`); Kafka's consumer-group offsets: committed after the log's
commit, a crash between the two doubles a batch (before it, loses one). Nothing is committed to
Kafka at all (no coordinator to wait for; `logstore bridge status` shows the lag).

What it needs: the log topic is unkeyed (a keyed topic places records by the hash of their key),
has as many partitions as the Kafka topic (the bridge creates it so when it is missing; a
mismatch is refused), and the bridge is its only writer (``<log>/.bridge.from-kafka.<topic>.lock``
keeps a second bridge out; a last record of another Kafka partition is refused as foreign).

Schemas: with a registry, each new writer schema id becomes a topic version (its fields plus the
bridge's) under the topic's compatibility mode, and each record is stored in the version of its
writer schema; one the mode refuses stops the bridge with the reasons after committing every
record before it, so a restart stops at the same message until the topic's mode or the producer
changes. A message that does not decode, or a record the log refuses, stops it the same way.
Kafka's timestamp is the event time when the writer schema has none; the append time is the log's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from logstore.errors import RecordValidationError, SchemaError, SchemaIncompatibleError

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
from .records import (
    FORMATS,
    KAFKA_OFFSET,
    KAFKA_PARTITION,
    Decoder,
    FramedDecoder,
    JsonDecoder,
    RawAvroDecoder,
    has_bridge_fields,
    kafka_time,
    log_schema,
)
from .registry_client import RegistryClient

if TYPE_CHECKING:
    from logstore.log import Log
    from logstore.writer import Writer

log = logging.getLogger("logstore.bridge")
DEFAULT_EVENT_TIME = "event_time"
DURABILITY = ("flush", "fsync")
Run = tuple[int, list[dict[str, Any]], list[int]]  # (topic version, records, their Kafka offsets)


def resume_positions(lg: Log, topic: str) -> dict[int, int | None]:
    """Per log partition, the next Kafka offset to read (None: the partition holds no record yet),
    from the `kafka_offset` of its last record. BridgeError when a partition's last record came
    from another Kafka partition, or none is left to tell (retention deleted them all)."""
    ends, starts = lg.end_offsets(topic), lg.start_offsets(topic)
    out: dict[int, int | None] = {}
    for p, end in sorted(ends.items()):
        if end == 0:
            out[p] = None
            continue
        if starts[p] >= end:
            raise BridgeError(
                f"partition {p} of topic {topic!r} has no record left to resume from (retention deleted all "
                f"{end}); the bridge's position is its last record"
            )
        row = lg.read(topic, {p: end - 1}, {p: end}, partitions=[p], columns=[KAFKA_PARTITION, KAFKA_OFFSET])
        last = row.to_pylist()[0]
        if last[KAFKA_PARTITION] != p:
            raise BridgeError(
                f"the last record of partition {p} of topic {topic!r} came from Kafka partition "
                f"{last[KAFKA_PARTITION]}: the topic has another writer than this bridge"
            )
        out[p] = int(last[KAFKA_OFFSET]) + 1
    return out


class FromKafka:
    """A bridge from Kafka topic `kafka_topic` at `bootstrap` into log topic `topic`.

    Values are Confluent-framed Avro decoded through `registry` (a URL or a `RegistryClient`), or
    raw Avro / JSON (`value_format`) of one given `schema`. `start` says where a partition without
    records begins: the Kafka partition's first offset ("earliest") or its end ("latest").
    """

    def __init__(
        self,
        lg: Log,
        topic: str,
        *,
        bootstrap: str,
        kafka_topic: str,
        registry: str | RegistryClient | None = None,
        schema: Any = None,
        value_format: str = "avro",
        durability: str = "flush",
        start: str = "earliest",
        batch: int = 5000,
        kafka_settings: dict[str, str] | None = None,
        retry_timeout: float = 30.0,
        poll_timeout: float = 0.2,
    ) -> None:
        if (registry is None) == (schema is None):
            raise BridgeError("give a schema registry (Confluent-framed Avro) or a schema (raw Avro or JSON), not both")
        if value_format not in FORMATS:
            raise BridgeError(f"value format must be one of {', '.join(FORMATS)}, found {value_format!r}")
        if durability not in DURABILITY:
            raise BridgeError(f"durability must be one of {', '.join(DURABILITY)}, found {durability!r}")
        if start not in ("earliest", "latest"):
            raise BridgeError(f"start must be 'earliest' or 'latest', found {start!r}")
        if batch < 1:
            raise BridgeError("batch must be at least 1")
        lg.topic(topic)  # validates the name
        self.log, self.topic = lg, topic
        self.bootstrap, self.kafka_topic = bootstrap, kafka_topic
        self.durability, self.start, self.batch = durability, start, batch
        self.kafka_settings = dict(kafka_settings or {})
        self.retry_timeout, self.poll_timeout = retry_timeout, poll_timeout
        self.registry = RegistryClient(registry, retry_timeout=retry_timeout) if isinstance(registry, str) else registry
        self.decoder: Decoder
        if self.registry is not None:
            self.decoder = FramedDecoder(self.registry.schema)
            self._fixed: dict[str, Any] | None = None
        else:
            import schemas

            self._fixed = schemas.parse(schema)
            self.decoder = RawAvroDecoder(self._fixed) if value_format == "avro" else JsonDecoder(self._fixed)
        self._versions: dict[Any, int] = {}  # decoder's schema key -> topic version
        self._fills: dict[int, str | None] = {}  # topic version -> the event-time field the bridge fills
        self._writers: dict[int, Writer] = {}
        self._partitions = 0
        self.health = Health(bootstrap, retry_timeout)

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
        """Bridge until `stop` is set, `max_records` are appended, or nothing arrived for
        `idle_exit` seconds; returns what was done (`stats.stopped` says why it ended)."""
        ck = require()
        lock = BridgeLock(self.log.path, f"from-kafka.{self.topic}")
        lock.acquire()
        try:
            consumer = ck.Consumer(self._config())
            try:
                return self._run(ck, consumer, max_records, idle_exit, stop, Ticker(progress, progress_every))
            finally:
                try:
                    self._close_writers()
                finally:
                    consumer.close()
        finally:
            lock.release()

    def _config(self) -> dict[str, Any]:
        return kafka_config(
            self.bootstrap,
            self.kafka_settings,
            **{
                "group.id": f"logstore-bridge.{self.topic}",  # never joined nor committed to
                "enable.auto.commit": False,
                "auto.offset.reset": self.start,
                "enable.partition.eof": False,
                "isolation.level": "read_committed",
                "allow.auto.create.topics": False,
                # a broker answers a fetch once data arrives; one that holds it for the whole wait
                # (librdkafka's mock cluster) would add up to this to every record's latency
                "fetch.wait.max.ms": 100,
                "error_cb": self.health.error_cb,
            },
        )

    def _run(
        self, ck: Any, consumer: Any, max_records: int | None, idle_exit: float | None, stop: Any, tick: Ticker
    ) -> Stats:
        stats = Stats()
        self._partitions = kafka_partitions(
            consumer, self.kafka_topic, self.bootstrap, Backoff(self.retry_timeout, stop)
        )
        self._check_topic()
        positions = resume_positions(self.log, self.topic) if self.topic in self.log.topics() else {}
        begin = ck.OFFSET_BEGINNING if self.start == "earliest" else ck.OFFSET_END
        consumer.assign(
            [
                ck.TopicPartition(self.kafka_topic, p, begin if positions.get(p) is None else positions[p])
                for p in range(self._partitions)
            ]
        )
        stats.positions = {p: o for p, o in positions.items() if o is not None}
        self._expected = dict(stats.positions)  # to notice offsets Kafka deleted before they were read
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
            messages = self._good(ck, self._fetch(consumer, want))
            if messages:
                self.health.ok()
                idle.touch()
                self._append(messages, stats)
            else:
                self.health.check(consumer, self.kafka_topic)
            self._lag(ck, consumer, stats)
            tick(stats)
        tick(stats, force=True)
        return stats

    def _fetch(self, consumer: Any, want: int) -> list[Any]:
        """Up to `want` messages: wait up to the poll timeout for the first, then take what the
        client already holds (`consume` alone would wait for a full batch or the whole timeout)."""
        first = consumer.poll(self.poll_timeout)
        if first is None:
            return []
        return [first, *consumer.consume(num_messages=want - 1, timeout=0)] if want > 1 else [first]

    def _good(self, ck: Any, messages: Sequence[Any]) -> list[Any]:
        """The messages that carry data; errors are the client's to retry (fatal ones stop the run)."""
        out = []
        for m in messages:
            err = m.error()
            if err is None:
                out.append(m)
            elif err.fatal():
                raise BridgeError(f"Kafka consumer failed at {self.bootstrap}: {describe_error(err)}")
            elif err.code() != ck.KafkaError._PARTITION_EOF:
                self.health.last = describe_error(err)
        return out

    def _lag(self, ck: Any, consumer: Any, stats: Stats) -> None:
        for p, pos in stats.positions.items():
            _, high = consumer.get_watermark_offsets(ck.TopicPartition(self.kafka_topic, p), cached=True)
            if high is not None and high >= 0:
                stats.lag[p] = max(0, high - pos)

    # --- the topic and its versions -----------------------------------------------------------------
    def _check_topic(self) -> None:
        """Refuse an existing topic the bridge cannot feed; create a missing one when its schema is known."""
        if self.topic not in self.log.topics():
            if self._fixed is not None:
                self._version(0, self._fixed)
            return
        cfg = self.log.config(self.topic)
        if cfg.partitions != self._partitions:
            raise BridgeError(
                f"topic {self.topic!r} has {cfg.partitions} partition(s) and Kafka topic {self.kafka_topic!r} "
                f"{self._partitions}: the bridge maps Kafka partition p to log partition p"
            )
        if cfg.key_field is not None:
            raise BridgeError(
                f"topic {self.topic!r} places records by its key field {cfg.key_field!r}; the bridge places each "
                "in its Kafka partition's log partition: bridge into an unkeyed topic"
            )
        if not has_bridge_fields(self.log.schema(self.topic)):
            raise BridgeError(
                f"topic {self.topic!r} has no {KAFKA_PARTITION}/{KAFKA_OFFSET} fields, where the bridge keeps its "
                "position: bridge into a new topic (the bridge creates it)"
            )
        if self._fixed is not None:
            self._version(0, self._fixed)

    def _version(self, key: Any, writer: dict[str, Any]) -> int:
        """The topic version records of `writer` are stored in: registered (or the topic created) on first sight."""
        found = self._versions.get(key)
        if found is not None:
            return found
        exists = self.topic in self.log.topics()
        field = self.log.config(self.topic).event_time_field if exists else DEFAULT_EVENT_TIME
        schema, fills = log_schema(writer, field)
        if not exists:
            self.log.create_topic(self.topic, schema, partitions=self._partitions, event_time_field=field)
        version = self.log.register_schema(self.topic, schema)  # SchemaIncompatibleError with the reasons
        self._versions[key] = version
        self._fills[version] = field if fills else None
        if version not in self._writers:
            self._writers[version] = self.log.writer(
                self.topic, schema=schema, durability=self.durability, linger_ms=None, batch_records=1 << 30
            )
        return version

    def _close_writers(self) -> None:
        writers, self._writers = list(self._writers.values()), {}
        for w in writers:
            w.close()

    # --- messages into records ----------------------------------------------------------------------
    def _append(self, messages: list[Any], stats: Stats) -> None:
        """Decode `messages` and append them, each Kafka partition's in order; on a message that
        cannot be stored, append those before it and raise BridgeError naming it."""
        runs: dict[int, list[Run]] = {}
        failure: BridgeError | None = None
        for m in messages:
            p, offset = m.partition(), m.offset()
            try:
                key, writer, record = self.decoder.decode(m.value())
                version = self._version(key, writer)
            except SchemaIncompatibleError as e:
                failure = self._refused(p, offset, e)
                break
            except (SchemaError, BridgeError) as e:
                failure = BridgeError(f"Kafka partition {p} offset {offset}: {e}; {self._stopped_here()}")
                break
            record[KAFKA_PARTITION] = p
            record[KAFKA_OFFSET] = offset
            field = self._fills[version]
            if field is not None:
                record[field] = kafka_time(m.timestamp())
            self._note_gap(p, offset)
            mine = runs.setdefault(p, [])
            if mine and mine[-1][0] == version:
                mine[-1][1].append(record)
                mine[-1][2].append(offset)
            else:
                mine.append((version, [record], [offset]))
        for p, partition_runs in sorted(runs.items()):
            for version, records, offsets in partition_runs:
                self._write(p, version, records, offsets, stats)
        if failure is not None:
            raise failure

    def _write(self, p: int, version: int, records: list[dict[str, Any]], offsets: list[int], stats: Stats) -> None:
        writer = self._writers[version]
        try:
            writer.append_batch(records, partition=p)
        except RecordValidationError as e:
            bad = e.index if e.index is not None and 0 <= e.index < len(records) else 0
            if bad:
                self._write(p, version, records[:bad], offsets[:bad], stats)
            raise BridgeError(f"Kafka partition {p} offset {offsets[bad]}: {e}; {self._stopped_here()}") from None
        stats.records += len(records)
        stats.batches += 1
        stats.positions[p] = offsets[-1] + 1
        if version not in stats.schema_versions:
            stats.schema_versions.append(version)

    def _note_gap(self, p: int, offset: int) -> None:
        expected = self._expected.pop(p, None)
        if expected is not None and offset > expected:
            log.warning(
                "Kafka partition %d: offsets %d..%d were gone (retention or compaction) before the bridge read them",
                p,
                expected,
                offset - 1,
            )

    def _refused(self, p: int, offset: int, e: SchemaIncompatibleError) -> BridgeError:
        mode = self.log.config(self.topic).compatibility
        reasons = "\n".join(f"- {r}" for r in e.reasons) or str(e)
        return BridgeError(
            f"Kafka partition {p} offset {offset}: its writer schema is refused by topic {self.topic!r} under "
            f"{mode} compatibility; {self._stopped_here()}:\n{reasons}"
        )

    def _stopped_here(self) -> str:
        return "the bridge stopped there and the log holds every record before it (a restart resumes at it)"


def from_kafka(lg: Log, topic: str, **options: Any) -> Stats:
    """Run a `FromKafka` bridge: `FromKafka(lg, topic, **settings).run(**run options)` in one call."""
    run_keys = ("max_records", "idle_exit", "stop", "progress", "progress_every")
    run = {k: options.pop(k) for k in run_keys if k in options}
    return FromKafka(lg, topic, **options).run(**run)

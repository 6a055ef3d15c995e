"""The rendezvous on Kafka: ``inputs`` and ``scores`` as Kafka topics, recorded into the log by the bridge.

    rendezvous serve ./log --config r.toml --kafka kafka:9092 --registry http://registry:8081
    rendezvous model ./log --model mypkg.models:champion --kafka kafka:9092 --registry http://registry:8081

The same front door and runners as on the embedded log (`rendezvous.transport`), the two streams
between them on Kafka, so they can run on several machines. Values are Confluent-framed Avro of
the shipped schemas (`model_input`, `model_score`; subject ``<kafka topic>-value``), keys the
request id; ``--kafka-prefix P`` names the Kafka topics P + the log's names.

- The front door produces each input with an idempotent producer (acks=all) to Kafka partition
  ``logstore.partition_of(request_id, n)``, the partition a keyed log topic would give it, and waits
  for the acknowledgment before it waits for scores (the archive comes first). It tails the Kafka
  scores topic from its end into the mailboxes.
- A runner reads its partitions of the Kafka inputs topic (explicit assignment, ``--partitions`` or
  ``--member`` as on the log; its group's offsets are committed to Kafka only after its scores are
  acknowledged: at least once) and produces each score to the partition of its request id.
- Unless ``--no-bridge``, the service process records both Kafka topics into its log with
  `logstore.bridge.from_kafka` on threads of its own (Kafka partition p into log partition p,
  exactly once, each record keeping ``kafka_partition``/``kafka_offset``). Stopping, it lets them
  record what it archived and saw (up to `DRAIN_S`); a restart resumes where the log says.

What lines up. Both Kafka topics have the same partition count (checked), so the scores of input
partition p land in scores partition p, after its hot-swap marker. The bridge records a Kafka
partition from its first offset and the idempotent producer writes no transaction markers, so a
recorded record's log ``_offset`` is its Kafka offset: the ``input_partition``/``input_offset`` of
a score and a token's cut mean the same in Kafka and in the log. A live model gets the columns
the recorded topic has (``kafka_partition``, ``kafka_offset`` included), as replay gives them.

Control stays in the service's log (``deploy``, ``ramp``, ``swap`` run where the log is): a request
is decided under the control records appended before Kafka acknowledged its input. Hot-swap
tokens go through Kafka (``rendezvous swap --kafka``, `transport.kafka_swap`: the control record
into the log, then a token into every Kafka inputs partition, `KafkaTransport.append_tokens`),
since the cut must sit in the stream the runners read; a runner restarted after a swap finds the
tokens it passed in the log it is given (the recorded inputs). Decisions, outcomes and metrics
stay in the service's log. The Kafka topics are created beforehand.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

import logstore
import schemas
from logstore.bridge.from_kafka import FromKafka
from logstore.bridge.kafka import Backoff, BridgeError, Stats, describe_error, kafka_config, kafka_partitions, require
from logstore.bridge.records import KAFKA_OFFSET, KAFKA_PARTITION, FramedDecoder, has_bridge_fields, kafka_time
from logstore.bridge.records import log_schema as recorded_schema
from logstore.bridge.registry_client import RegistryClient
from logstore.errors import SchemaError
from logstore.timeutil import now_us
from replay.engine.tokens import TOKEN_FIELD
from schemas import wire

from .config import Topics
from .control import ControlPlane, Route
from .mailbox import SCORE_COLUMNS
from .swap import TOKEN_SOURCE, token_request_id
from .topics import ROLES, SCHEMAS, ensure_topics

if TYPE_CHECKING:
    from .transport import InputsSink

__all__ = ["KAFKA_ROLES", "KafkaTransport", "arrow_of"]

log = logging.getLogger("rendezvous.kafka")

KAFKA_ROLES = ("inputs", "scores")  # the roles Kafka carries; the others stay in the service's log
DRAIN_S = 3.0  # how long a stopping service lets its bridges record what it archived and saw
POLL_S = 0.2  # the longest a stop waits for a consumer's wait to return
# on the answer path: a broker answers a fetch once data arrives, but one that holds it for the
# whole wait (librdkafka's mock cluster) adds up to this to every hop (--kafka-config overrides)
FETCH_WAIT_MS = 10
PRODUCER = {"enable.idempotence": True, "acks": "all", "linger.ms": 0}
CONSUMER = {
    "enable.auto.commit": False,
    "enable.partition.eof": False,
    "allow.auto.create.topics": False,
    "fetch.wait.max.ms": FETCH_WAIT_MS,
}
_SCORE_TYPES = {
    "score": pa.float64(),
    "input_partition": pa.int32(),
    "input_offset": pa.int64(),
    "_partition": pa.int32(),
    "_offset": pa.int64(),
}
SCORE_SCHEMA = pa.schema([(c, _SCORE_TYPES.get(c, pa.string())) for c in SCORE_COLUMNS])


def arrow_of(shipped: str) -> pa.Schema:
    """The rows a recorded topic of the shipped schema `shipped` reads as: its fields, the
    bridge's `kafka_partition`/`kafka_offset`, and the log's system columns."""
    schema, _ = recorded_schema(schemas.load(shipped), "event_time")
    return (
        schemas.to_arrow(schema)
        .append(pa.field("_partition", pa.int32(), False))
        .append(pa.field("_offset", pa.int64(), False))
        .append(pa.field("_append_time", pa.timestamp("us", tz="UTC"), False))
    )


def fetch(consumer: Any, want: int, timeout: float, linger: float = 0.0) -> list[Any]:
    """Up to `want` messages: wait up to `timeout` for the first, then up to `linger` for more
    (`consume` alone would wait for a full batch or the whole timeout)."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    out = [first]
    deadline = time.monotonic() + linger
    while len(out) < want:
        more = consumer.consume(num_messages=want - len(out), timeout=0)
        if more:
            out += more
            continue
        left = deadline - time.monotonic()
        nxt = consumer.poll(left) if left > 0 else None
        if nxt is None:
            break
        out.append(nxt)
    return out


def _good(messages: Sequence[Any], servers: str) -> list[Any]:
    """The messages that carry data; a fatal client error raises, others are the client's to retry."""
    out = []
    for m in messages:
        err = m.error()
        if err is None:
            out.append(m)
        elif err.fatal():
            raise BridgeError(f"Kafka consumer failed at {servers}: {describe_error(err)}")
    return out


class KafkaTransport:
    """``inputs`` and ``scores`` on Kafka at `servers` (module docstring); `registry` is a URL
    (http(s):// or mock://NAME) or a `RegistryClient`. Implements `rendezvous.transport.Transport`."""

    kafka = True

    def __init__(
        self,
        lg: logstore.Log,
        servers: str,
        registry: str | RegistryClient,
        *,
        prefix: str = "",
        settings: dict[str, str] | None = None,
        bridge: bool = True,
        retry_timeout: float = 30.0,
    ) -> None:
        self.ck = require()
        self.log, self.servers, self.prefix = lg, servers, prefix
        self.registry = RegistryClient(registry, retry_timeout=retry_timeout) if isinstance(registry, str) else registry
        self.settings = dict(settings or {})
        self.bridge, self.retry_timeout = bridge, retry_timeout
        self.partitions = 0  # of both topics, once checked
        self._meta: Any = None
        self._clients: list[Any] = []  # consumers closed by close()
        self._sink: KafkaInputs | None = None
        self._source: KafkaScores | None = None
        self._recorders: dict[str, Recorder] = {}
        self._stop = threading.Event()

    def kafka_topic(self, topic: str) -> str:
        return f"{self.prefix}{topic}"

    def config(self, **settings: Any) -> dict[str, Any]:
        """A librdkafka config: `settings`, then ``--kafka-config`` over them."""
        return kafka_config(self.servers, self.settings, **{"client.id": "rendezvous", **settings})

    def topic_partitions(self, topic: str, stop: threading.Event | None = None, timeout: float | None = None) -> int:
        """The partition count of the Kafka topic of `topic`; BridgeError when it is missing, or
        Kafka did not answer within `timeout` (default: the retry timeout)."""
        if self._meta is None:
            self._meta = self.ck.Consumer(self.config(**{"group.id": "rendezvous-metadata", **CONSUMER}))
        backoff = Backoff(self.retry_timeout if timeout is None else timeout, stop)
        return kafka_partitions(self._meta, self.kafka_topic(topic), self.servers, backoff)

    def watermarks(self, client: Any, topic: str, partition: int) -> tuple[int, int]:
        """(first, next) offset of a partition of Kafka topic `topic` (BridgeError if Kafka does not say)."""
        try:
            low, high = client.get_watermark_offsets(self.ck.TopicPartition(topic, partition), timeout=10)
        except self.ck.KafkaException as e:
            raise BridgeError(f"{topic!r} at {self.servers}: {describe_error(e.args[0] if e.args else e)}") from None
        return int(low), int(high)

    def _pair(self, topics: Topics) -> int:
        n, m = self.topic_partitions(topics.inputs), self.topic_partitions(topics.scores)
        if n != m:
            raise BridgeError(
                f"Kafka topics {self.kafka_topic(topics.inputs)!r} and {self.kafka_topic(topics.scores)!r} have {n} "
                f"and {m} partitions: the scores of input partition p go to scores partition p, give both the same"
            )
        self.partitions = n
        return n

    # --- the front door ------------------------------------------------------------------------
    def prepare_service(self, topics: Topics) -> None:
        """Check the Kafka topics and the log topics the bridge records into; create the rest."""
        n = self._pair(topics)
        for topic in (topics.inputs, topics.scores) if self.bridge else ():
            if topic not in self.log.topics():
                continue
            cfg = self.log.config(topic)
            if cfg.key_field is not None or cfg.partitions != n or not has_bridge_fields(self.log.schema(topic)):
                raise BridgeError(
                    f"topic {topic!r} of {self.log.path} was not recorded from Kafka ({n} partitions, unkeyed, with "
                    f"{KAFKA_PARTITION}/{KAFKA_OFFSET}): the Kafka mode needs a log of its own, or other topic names"
                )
        ensure_topics(self.log, topics, partitions=n, roles=[r for r in ROLES if r not in KAFKA_ROLES])

    def inputs_sink(self, topics: Topics, durability: str, commit_mode: str) -> InputsSink:
        self._sink = KafkaInputs(self, topics.inputs)
        return self._sink

    def scores_source(self, topic: str) -> KafkaScores:
        self._source = KafkaScores(self, topic)
        return self._source

    def background(self, topics: Topics, durability: str) -> list[tuple[str, Coroutine[Any, Any, Any]]]:
        """The recording bridges of both topics (none with ``--no-bridge``)."""
        if not self.bridge:
            return []
        self._recorders = {t: Recorder(self, t, durability) for t in (topics.inputs, topics.scores)}
        return [(f"bridge-{t}", asyncio.to_thread(r.run, self._stop)) for t, r in self._recorders.items()]

    async def stop(self) -> None:
        """Let the bridges record what this service archived and saw (up to `DRAIN_S`), then stop them."""
        ends = []
        for part, seen in ((self._sink, "acked"), (self._source, "seen")):
            if part is not None and part.topic in self._recorders:
                ends.append((self._recorders[part.topic], dict(getattr(part, seen))))
        deadline = time.monotonic() + DRAIN_S
        while not all(r.reached(e) for r, e in ends) and time.monotonic() < deadline:
            if any(r.done for r, _ in ends):
                break
            await asyncio.sleep(0.05)
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        clients, self._clients = self._clients, []
        if self._meta is not None:
            clients.append(self._meta)
            self._meta = None
        for c in clients:
            c.close()

    # --- a runner ------------------------------------------------------------------------------
    def wait_for_inputs(self, topic: str, stop: threading.Event, wait_s: float) -> bool:
        """Wait up to `wait_s` for the Kafka inputs topic to appear; False if `stop` was set first."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.topic_partitions(topic, stop, max(0.5, deadline - time.monotonic()))
                return True
            except BridgeError as e:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{e} (waited {wait_s:g} s)") from None
                log.info("waiting for Kafka topic %r: %s", self.kafka_topic(topic), e)
            if stop.wait(0.5):
                return False

    def input_partitions(self, topic: str) -> int:
        return self.topic_partitions(topic)

    def prepare_scores(self, topics: Topics, partitions: int) -> None:
        if self._pair(topics) != partitions:
            raise BridgeError(f"Kafka topic {self.kafka_topic(topics.scores)!r} must have {partitions} partitions")

    def cursor(self, topic: str, group: str, partitions: list[int]) -> KafkaCursor:
        return KafkaCursor(self, topic, group, partitions)

    def tail(self, topic: str, positions: dict[int, int], cursor: KafkaCursor) -> KafkaTail:
        return KafkaTail(self, cursor, positions)

    def scores_writer(self, topic: str, durability: str) -> KafkaWriter:
        """A producer of scores (`durability` is Kafka's: acks=all; the bridge's is the service's)."""
        return KafkaWriter(self, topic, "scores")

    def append_tokens(self, topic: str, model_id: str, version: str, token: str) -> dict[int, int]:
        """A hot-swap token into every partition of the Kafka inputs topic of `topic`; partition ->
        offset, each acknowledged (`rendezvous.swap`: the same records the log's tokens are)."""
        with KafkaWriter(self, topic, "inputs") as writer:
            n, now = writer.partitions, datetime.now(UTC)
            swap = {"token": token, "model_id": model_id, "version": version}
            rows = [
                {"request_id": token_request_id(token, p, n), "event_time": now, "features": {}, "raw": ""}
                | {"enrichment": None, "source": TOKEN_SOURCE, TOKEN_FIELD: swap}
                for p in range(n)
            ]
            writer.append_batch(rows)
            return dict(writer.offsets)

    def consumer(self, group: str, **settings: Any) -> Any:
        c = self.ck.Consumer(self.config(**{"group.id": group, **CONSUMER, **settings}))
        self._clients.append(c)
        return c


class KafkaWriter:
    """Records of a shipped schema produced to Kafka, each to the partition of its request id:
    `append_batch` returns once Kafka acknowledged all of them (as a log writer's commit returns)."""

    def __init__(self, t: KafkaTransport, topic: str, role: str) -> None:
        self.topic, self.servers = t.kafka_topic(topic), t.servers
        self.partitions = t.partitions or t.topic_partitions(topic)
        self.schema = schemas.load(SCHEMAS[role])
        self.schema_id = t.registry.register(f"{self.topic}-value", self.schema)
        self.producer = t.ck.Producer(t.config(**PRODUCER))
        self.timeout = t.retry_timeout
        self._failed: list[str] = []
        self.offsets: dict[int, int] = {}  # partition -> the last offset acknowledged

    def encode(self, record: dict[str, Any]) -> bytes:
        return wire.encode(record, self.schema, self.schema_id)

    def produce(self, rid: str, value: bytes, on_delivery: Any = None) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value=value,
                    key=rid.encode(),
                    partition=logstore.partition_of(rid, self.partitions),
                    on_delivery=on_delivery or self._delivered,
                )
                return
            except BufferError:  # librdkafka's queue is full: serve deliveries, then again
                self.producer.poll(0.05)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed.append(describe_error(err))
        elif msg.offset() > self.offsets.get(msg.partition(), -1):
            self.offsets[msg.partition()] = msg.offset()

    def append_batch(self, records: pa.Table | Sequence[dict[str, Any]]) -> None:
        rows = records.to_pylist() if isinstance(records, pa.Table) else records
        for r in rows:
            self.produce(str(r["request_id"]), self.encode(r))
        left = self.producer.flush(self.timeout)
        failed, self._failed = self._failed, []
        if left or failed:
            why = failed[0] if failed else f"{left} not acknowledged in {self.timeout:g} s"
            raise BridgeError(f"Kafka at {self.servers} did not take records of {self.topic!r}: {why}")

    def close(self) -> None:
        self.producer.flush(self.timeout)

    def __enter__(self) -> KafkaWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KafkaInputs:
    """The front door's archive on Kafka: `append` returns once Kafka acknowledged the input."""

    def __init__(self, t: KafkaTransport, topic: str) -> None:
        self.topic = topic
        self.writer = KafkaWriter(t, topic, "inputs")
        self.acked = self.writer.offsets
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="rendezvous-kafka-acks", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """Serve the producer's delivery reports (each wakes its request on the loop)."""
        while not self._closed.is_set():
            self.writer.producer.poll(POLL_S)

    async def append(self, record: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        writer = self.writer

        def delivered(err: Any, msg: Any) -> None:  # on the thread serving reports
            writer._delivered(err, msg)
            loop.call_soon_threadsafe(_settle, fut, err, writer.topic)

        writer.produce(str(record["request_id"]), writer.encode(record), delivered)
        await fut

    def route(self, control: ControlPlane, request_id: str, since_us: int) -> Route:
        """The control state of every record appended before Kafka acknowledged the input (just now)."""
        if not control.started:
            return control.route_of(control.state, request_id)
        at = now_us()
        control.catch_up()
        return control.route_of(control.at_time(at), request_id)

    def warm_up(self, record: Mapping[str, Any]) -> None:
        self.writer.encode({**record, "swap": None})

    def close(self) -> None:
        self.writer.close()
        self._closed.set()
        self._thread.join(2 * POLL_S + 1)


def _settle(fut: asyncio.Future[None], err: Any, topic: str) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(BridgeError(f"Kafka did not take the input into {topic!r}: {describe_error(err)}"))


class KafkaScores:
    """The Kafka scores topic from its end, as the front door's tail: an async iterator of
    RecordBatches of `SCORE_COLUMNS` (``_partition``/``_offset``: the score's Kafka place), polled
    and decoded on a thread of its own; setting `follow` to False ends it (as a following reader)."""

    def __init__(self, t: KafkaTransport, topic: str) -> None:
        ck = t.ck
        self.topic, self.servers = topic, t.servers
        self.decoder = FramedDecoder(t.registry.schema)
        kt = t.kafka_topic(topic)
        self.consumer = ck.Consumer(t.config(**{"group.id": f"rendezvous-serve.{kt}", **CONSUMER}))  # never committed
        ends = [t.watermarks(self.consumer, kt, p)[1] for p in range(t.partitions)]
        self.consumer.assign([ck.TopicPartition(kt, p, o) for p, o in enumerate(ends)])  # explicit: nothing skipped
        self.seen: dict[int, int] = {}  # partition -> the last offset handed out
        self.error: BaseException | None = None
        self._follow = True
        self._wake: Any = None

    @property
    def follow(self) -> bool:
        return self._follow

    @follow.setter
    def follow(self, on: bool) -> None:
        self._follow = on
        if not on and self._wake is not None:
            self._wake(None)

    def __aiter__(self) -> AsyncIterator[pa.RecordBatch]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[pa.RecordBatch]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[pa.RecordBatch | None] = asyncio.Queue()

        def wake(item: pa.RecordBatch | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody listens any more
                pass

        self._wake = wake
        threading.Thread(target=self._run, args=(wake,), name="rendezvous-kafka-scores", daemon=True).start()
        while self._follow:
            batch = await queue.get()
            if batch is None:
                break
            yield batch
        if self.error is not None:
            raise self.error

    def _run(self, wake: Any) -> None:
        try:
            while self._follow:
                messages = _good(fetch(self.consumer, 1000, POLL_S), self.servers)
                if messages:
                    wake(self._batch(messages))
        except BaseException as e:  # raised by the iterator
            self.error = e
        finally:
            self.consumer.close()
            wake(None)

    def _batch(self, messages: list[Any]) -> pa.RecordBatch:
        cols: dict[str, list[Any]] = {c: [] for c in SCORE_COLUMNS}
        fields = [c for c in SCORE_COLUMNS if not c.startswith("_")]
        for m in messages:
            try:
                _, _, rec = self.decoder.decode(m.value())
            except (BridgeError, SchemaError) as e:
                log.warning("scores partition %d offset %d skipped: %s", m.partition(), m.offset(), e)
                continue
            for c in fields:
                cols[c].append(rec.get(c))
            p, o = m.partition(), m.offset()
            cols["_partition"].append(p)
            cols["_offset"].append(o)
            self.seen[p] = o
        return pa.RecordBatch.from_pydict(cols, schema=SCORE_SCHEMA)


class Recorder:
    """A `FromKafka` bridge of one topic run by the service, and how far it has got."""

    def __init__(self, t: KafkaTransport, topic: str, durability: str) -> None:
        self.topic = topic
        self.bridge = FromKafka(
            t.log,
            topic,
            bootstrap=t.servers,
            kafka_topic=t.kafka_topic(topic),
            registry=t.registry,
            durability=durability,
            start="earliest",
            kafka_settings=t.settings,
            retry_timeout=t.retry_timeout,
        )
        self.stats: Stats | None = None
        self.done = False

    def run(self, stop: threading.Event) -> Stats:
        try:
            return self.bridge.run(stop=stop, progress=self._progress, progress_every=0.0)
        finally:
            self.done = True

    def _progress(self, stats: Stats) -> None:
        self.stats = stats

    def reached(self, last: dict[int, int]) -> bool:
        """Whether the log holds every record up to offset `last[p]` of each Kafka partition p."""
        positions = dict(self.stats.positions) if self.stats is not None else {}
        return all(positions.get(p, 0) > o for p, o in last.items())


class KafkaCursor:
    """A runner's group on its Kafka input partitions: `positions` (the group's committed offsets,
    else each partition's first) and `commit(offsets)` (committed to Kafka, synchronously)."""

    def __init__(self, t: KafkaTransport, topic: str, group: str, partitions: list[int]) -> None:
        ck = self.ck = t.ck
        self.topic = t.kafka_topic(topic)
        self.consumer = t.consumer(group, **{"auto.offset.reset": "earliest"})
        try:
            committed = self.consumer.committed([ck.TopicPartition(self.topic, p) for p in partitions], timeout=10)
        except ck.KafkaException as e:
            raise BridgeError(f"group {group!r} at {t.servers}: {describe_error(e.args[0] if e.args else e)}") from None
        self.positions = {
            tp.partition: tp.offset if tp.offset >= 0 else t.watermarks(self.consumer, self.topic, tp.partition)[0]
            for tp in committed
        }

    def commit(self, offsets: dict[int, int]) -> None:
        tps = [self.ck.TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
        self.consumer.commit(offsets=tps, asynchronous=False)


class KafkaTail:
    """A runner's Kafka input partitions from `positions`, handed out as `group.InputTail.get`
    does: rows as the recorded topic reads them (`arrow_of`; ``_append_time`` is Kafka's timestamp)."""

    def __init__(self, t: KafkaTransport, cursor: KafkaCursor, positions: dict[int, int]) -> None:
        self.consumer, self.servers = cursor.consumer, t.servers
        self.consumer.assign([t.ck.TopicPartition(cursor.topic, p, o) for p, o in sorted(positions.items())])
        self.decoder = FramedDecoder(t.registry.schema)
        self.schema = arrow_of("model_input")

    def get(self, max_rows: int, timeout: float, linger: float = 0.0) -> pa.Table:
        rows = []
        for m in _good(fetch(self.consumer, max_rows, timeout, linger), self.servers):
            p, o = m.partition(), m.offset()
            try:
                _, _, rec = self.decoder.decode(m.value())
            except (BridgeError, SchemaError) as e:  # the bridge stops at it too: never scored
                raise BridgeError(f"inputs partition {p} offset {o}: {e}") from None
            rec.update({KAFKA_PARTITION: p, KAFKA_OFFSET: o, "_partition": p, "_offset": o})
            rec["_append_time"] = kafka_time(m.timestamp())
            rows.append(rec)
        return pa.Table.from_pylist(rows, schema=self.schema)

    def close(self) -> None:
        return None  # the consumer is the cursor's (its last commit comes after this)

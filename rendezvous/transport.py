"""Where the rendezvous's two streams live: the seam between the front door, the runners and
their ``inputs`` and ``scores``.

`LogTransport` (this module) keeps both as topics of the one embedded log, exactly as the service
and the runners always did; `rendezvous.kafka_transport.KafkaTransport` moves them to Kafka
(``--kafka SERVERS --registry URL``) and records them into the log with the bridge. Both speak
the same interface (`Transport`), so `service.Service` and `runner.Runner` do not know which one
they run on. What each side asks for:

- the front door: `prepare_service` (its topics), `inputs_sink` (`append(record)` returns once the
  input is archived: committed to the log, or acknowledged by Kafka; `route` picks the control
  state of the request), `scores_source` (an async iterable of `mailbox.SCORE_COLUMNS` batches
  from the end of ``scores``; setting its ``follow`` to False ends it), `background` (tasks to run
  beside it: the Kafka mode's recording bridges), `stop` and `close`;
- a runner: `wait_for_inputs`, `input_partitions`, `prepare_scores`, `cursor` (the group's
  committed ``positions`` and ``commit(offsets)``), `tail` (``get``/``close`` as
  `group.InputTail`), `scores_writer` (``append_batch`` returns once the scores are committed or
  acknowledged, as a log writer's commit), `close`.

Invariants every transport keeps (what the service, the runners and replay rely on):

- inputs partition p holds the requests with ``logstore.partition_of(request_id, n) == p`` (the
  place a keyed log topic gives them), each partition read by one runner of a group, in order: a
  hot-swap token's offset is a consistent cut (`rendezvous.swap`);
- an input is archived before the service waits for its scores (no model sees a request first);
- a runner's position is committed only after the scores before it are committed (at least once);
- a score's ``input_partition``/``input_offset`` name its input as the log holds it.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

import logstore
from logstore.errors import ArgumentError

from .commits import Committer
from .config import Config, Topics
from .control import ControlPlane, Route
from .group import InputTail
from .mailbox import SCORE_COLUMNS
from .swap import Swapped
from .topics import ensure_topics

if TYPE_CHECKING:
    from .kafka_transport import KafkaTransport

__all__ = [
    "InputsSink",
    "LogInputs",
    "LogTransport",
    "Transport",
    "add_arguments",
    "check_args",
    "from_args",
    "kafka_from_args",
    "kafka_swap",
    "settings_of",
]

log = logging.getLogger("rendezvous")


class InputsSink(Protocol):
    """The front door's archive of requests."""

    async def append(self, record: dict[str, Any]) -> None: ...
    def route(self, control: ControlPlane, request_id: str, since_us: int) -> Route: ...
    def warm_up(self, record: Mapping[str, Any]) -> None: ...
    def close(self) -> None: ...


class Transport(Protocol):
    """Where ``inputs`` and ``scores`` live (the module docstring lists what each side asks)."""

    log: logstore.Log
    kafka: bool

    def prepare_service(self, topics: Topics) -> None: ...
    def inputs_sink(self, topics: Topics, durability: str, commit_mode: str) -> InputsSink: ...
    def scores_source(self, topic: str) -> Any: ...
    def background(self, topics: Topics, durability: str) -> list[tuple[str, Coroutine[Any, Any, Any]]]: ...
    async def stop(self) -> None: ...
    def close(self) -> None: ...
    def wait_for_inputs(self, topic: str, stop: threading.Event, wait_s: float) -> bool: ...
    def input_partitions(self, topic: str) -> int: ...
    def prepare_scores(self, topics: Topics, partitions: int) -> None: ...
    def cursor(self, topic: str, group: str, partitions: list[int]) -> Any: ...
    def tail(self, topic: str, positions: dict[int, int], cursor: Any) -> Any: ...
    def scores_writer(self, topic: str, durability: str) -> Any: ...


class LogInputs:
    """The embedded archive: one `Committer` of the log's inputs topic."""

    def __init__(self, lg: logstore.Log, topic: str, durability: str, commit_mode: str) -> None:
        self.log, self.topic = lg, topic
        self.committer = Committer(lg.writer(topic, durability=durability, linger_ms=None), commit_mode)

    async def append(self, record: dict[str, Any]) -> None:
        await self.committer.commit([record])

    def route(self, control: ControlPlane, request_id: str, since_us: int) -> Route:
        """The control state of every record appended before the input (`ControlPlane.route`)."""
        return control.route(request_id, since_us)

    def warm_up(self, record: Mapping[str, Any]) -> None:
        """Convert a sample to Arrow as the commits will (the first conversion loads code lazily)."""
        schema = self.log.arrow_schema(self.topic)
        pa.RecordBatch.from_pylist([{f: record.get(f) for f in schema.names}], schema=schema)

    def close(self) -> None:
        self.committer.close()


class LogTransport:
    """Both streams in the embedded log: the log's writers, following readers and consumer groups."""

    kafka = False

    def __init__(self, lg: logstore.Log) -> None:
        self.log = lg

    # --- the front door ------------------------------------------------------------------------
    def prepare_service(self, topics: Topics) -> None:
        ensure_topics(self.log, topics)

    def inputs_sink(self, topics: Topics, durability: str, commit_mode: str) -> LogInputs:
        return LogInputs(self.log, topics.inputs, durability, commit_mode)

    def scores_source(self, topic: str) -> Any:
        """A following reader of `topic` from its end, of the score columns it has (an old schema
        lacks status/role)."""
        have = set(self.log.arrow_schema(topic, system_columns=True).names)
        cols = [c for c in SCORE_COLUMNS if c in have]
        return self.log.reader(topic, start=self.log.end_offsets(topic), follow=True, columns=cols)

    def background(self, topics: Topics, durability: str) -> list[tuple[str, Coroutine[Any, Any, Any]]]:
        return []

    async def stop(self) -> None:
        return None

    def close(self) -> None:
        return None

    # --- a runner ------------------------------------------------------------------------------
    def wait_for_inputs(self, topic: str, stop: threading.Event, wait_s: float) -> bool:
        """Wait up to `wait_s` for `topic` to appear; False if `stop` was set first."""
        deadline = time.monotonic() + wait_s
        announced = False
        while topic not in self.log.topics():
            if not announced:
                log.info("waiting up to %.0f s for topic %r", wait_s, topic)
                announced = True
            if time.monotonic() >= deadline:
                raise TimeoutError(f"topic {topic!r} did not appear in {self.log.path} within {wait_s} s")
            if stop.wait(0.05):
                return False
        return True

    def input_partitions(self, topic: str) -> int:
        return self.log.config(topic).partitions

    def prepare_scores(self, topics: Topics, partitions: int) -> None:
        ensure_topics(self.log, topics, partitions=partitions, roles=["scores"])

    def cursor(self, topic: str, group: str, partitions: list[int]) -> logstore.Consumer:
        return self.log.consumer(topic, group, partitions=partitions)

    def tail(self, topic: str, positions: dict[int, int], cursor: Any) -> InputTail:
        return InputTail(self.log, topic, positions)

    def scores_writer(self, topic: str, durability: str) -> logstore.Writer:
        return self.log.writer(topic, durability=durability, linger_ms=None)


# --- the command line ------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser, *, service: bool) -> None:
    """The Kafka options of ``rendezvous serve`` (`service`), ``model`` and ``swap``."""
    parser.add_argument(
        "--kafka", metavar="SERVERS", help="inputs and scores on Kafka at these bootstrap servers (host:port,...)"
    )
    parser.add_argument("--registry", metavar="URL", help="with --kafka: the schema registry (Confluent-framed Avro)")
    parser.add_argument(
        "--kafka-prefix", default="", metavar="P", help="with --kafka: Kafka topic names are P + the log's (default '')"
    )
    parser.add_argument(
        "--kafka-config", action="append", metavar="KEY=VALUE", help="with --kafka: a librdkafka setting, repeatable"
    )
    if service:
        parser.add_argument(
            "--no-bridge",
            action="store_true",
            help="with --kafka: do not record the Kafka topics into the log here (run `logstore bridge from-kafka`)",
        )


def settings_of(pairs: list[str] | None) -> dict[str, str]:
    """``--kafka-config KEY=VALUE`` pairs as a dict."""
    out = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ArgumentError(f"--kafka-config takes KEY=VALUE (a librdkafka setting), found {pair!r}")
        out[key.strip()] = value
    return out


def check_args(args: argparse.Namespace) -> None:
    """Refuse Kafka options without ``--kafka``, and ``--kafka`` without ``--registry``."""
    if getattr(args, "kafka", None):
        if not args.registry:
            raise ArgumentError("--kafka needs --registry URL: the topics carry Confluent-framed Avro")
        return
    for opt in ("registry", "kafka_config", "no_bridge"):
        if getattr(args, opt, None):
            raise ArgumentError(f"--{opt.replace('_', '-')} goes with --kafka SERVERS")


def from_args(args: argparse.Namespace, lg: logstore.Log) -> Transport:
    """The transport the options ask for: Kafka with ``--kafka``, else the embedded log."""
    check_args(args)
    return kafka_from_args(args, lg) if getattr(args, "kafka", None) else LogTransport(lg)


def kafka_from_args(args: argparse.Namespace, lg: logstore.Log) -> KafkaTransport:
    """The Kafka transport of ``--kafka``, ``--registry``, ``--kafka-prefix``, ``--kafka-config``."""
    from .kafka_transport import KafkaTransport

    return KafkaTransport(
        lg,
        args.kafka,
        args.registry,
        prefix=args.kafka_prefix,
        settings=settings_of(args.kafka_config),
        bridge=not getattr(args, "no_bridge", False),
    )


def kafka_swap(
    t: KafkaTransport,
    model_id: str,
    version: str,
    *,
    config: Config | None = None,
    why: str = "",
    by: str | None = None,
    topics: Topics | None = None,
) -> Swapped:
    """`rendezvous.swap.swap` with the tokens in Kafka: the control record into the log, then a
    token into every partition of the Kafka inputs topic (acknowledged before this returns).
    `ControlError` (nothing appended) if the swap does not apply to the deployment."""
    from .deploy import _fold
    from .swap import append_swap_record, check_version

    topics = topics or (config.topics if config is not None else Topics())
    check_version(model_id, version)
    rec, mine, records, after = append_swap_record(t.log, model_id, version, config=config, why=why, by=by)
    token = rec["token"]
    tokens = t.append_tokens(topics.inputs, model_id, version, token)
    return Swapped(rec, int(mine["_offset"]), token, tokens, _fold(config, records + after))

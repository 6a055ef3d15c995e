"""`logstore bridge from-kafka|to-kafka|status`: the Kafka bridge from the shell (`logstore.cli`
registers it with `add_commands`).

A run stops cleanly on SIGTERM or Ctrl-C (what was decoded is committed, then the clients
close; exit 0, or 130 for Ctrl-C), after ``--max-records N`` or once nothing arrived for
``--idle-exit SECONDS``, and prints a progress line every ``--progress`` seconds on stderr.
Kafka or the registry unreachable past ``--retry-timeout`` is one line and exit 2, as every
user-facing error of `logstore`. librdkafka's own log lines are shown with ``-v`` only.
Without confluent-kafka installed every command says which extra to install.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from logstore.errors import ArgumentError

if TYPE_CHECKING:
    from logstore.log import Log

    from .kafka import Stats

AddCommand = Callable[..., argparse.ArgumentParser]


def _open(args: argparse.Namespace, readonly: bool = False) -> Log:
    import logstore

    return logstore.open(args.log, readonly=readonly)


def _settings(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ArgumentError(f"--kafka-config takes KEY=VALUE (a librdkafka setting), found {pair!r}")
        out[key.strip()] = value
    return out


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="logstore: %(message)s")
    logging.getLogger("logstore.bridge.kafka").setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)


@contextmanager
def _stoppable() -> Iterator[tuple[threading.Event, list[int]]]:
    """An event SIGTERM and SIGINT set (the run then ends cleanly), and the signals received."""
    stop, seen = threading.Event(), []

    def handler(signum: int, _frame: Any) -> None:
        seen.append(signum)
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop, seen
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _progress(prefix: str) -> Callable[[Stats], None]:
    return lambda stats: print(f"{prefix}: {stats.line()}", file=sys.stderr, flush=True)


def _finish(prefix: str, what: str, stats: Stats, seen: list[int]) -> int:
    why = {"idle": "idle", "max-records": "--max-records reached", "stopped": "signal"}.get(
        stats.stopped, stats.stopped
    )
    print(
        f"{prefix}: {what} {stats.records} records in {stats.elapsed:.1f} s (stopped: {why}); "
        f"{stats.line().split(', ', 1)[1]}",
        file=sys.stderr,
    )
    return 130 if signal.SIGINT in seen else 0


def cmd_from_kafka(args: argparse.Namespace) -> int:
    from .from_kafka import FromKafka
    from .kafka import require

    require()
    _logging(args.verbose)
    if args.registry is None and args.schema is None:
        raise ArgumentError("give --registry URL (Confluent-framed Avro) or --schema AVSC (raw Avro or JSON values)")
    schema: Any = args.schema
    if schema is not None and schema.lstrip().startswith("{"):
        schema = json.loads(schema)
    bridge = FromKafka(
        _open(args),
        args.topic,
        bootstrap=args.bootstrap,
        kafka_topic=args.kafka_topic,
        registry=args.registry,
        schema=schema,
        value_format=args.value_format,
        durability=args.durability,
        start=args.start,
        batch=args.batch,
        kafka_settings=_settings(args.kafka_config),
        retry_timeout=args.retry_timeout,
    )
    with _stoppable() as (stop, seen):
        stats = bridge.run(
            max_records=args.max_records,
            idle_exit=args.idle_exit,
            stop=stop,
            progress=_progress("from-kafka") if args.progress > 0 else None,
            progress_every=args.progress or 10.0,
        )
    return _finish("from-kafka", f"appended to {args.topic!r}", stats, seen)


def cmd_to_kafka(args: argparse.Namespace) -> int:
    from .kafka import require
    from .to_kafka import ToKafka

    require()
    _logging(args.verbose)
    bridge = ToKafka(
        _open(args),
        args.topic,
        bootstrap=args.bootstrap,
        kafka_topic=args.kafka_topic,
        registry=args.registry,
        value_format=args.value_format,
        group=args.group,
        subject=args.subject,
        partitioning=args.partitioning,
        batch=args.batch,
        kafka_settings=_settings(args.kafka_config),
        retry_timeout=args.retry_timeout,
    )
    with _stoppable() as (stop, seen):
        stats = bridge.run(
            max_records=args.max_records,
            idle_exit=args.idle_exit,
            stop=stop,
            progress=_progress("to-kafka") if args.progress > 0 else None,
            progress_every=args.progress or 10.0,
        )
    return _finish("to-kafka", f"delivered to Kafka topic {args.kafka_topic!r}", stats, seen)


def cmd_status(args: argparse.Namespace) -> int:
    from .status import bridge_status, print_status

    found = bridge_status(
        _open(args, readonly=True), args.topic, bootstrap=args.bootstrap, kafka_topic=args.kafka_topic
    )
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print_status(found)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic", help="the log topic")
    p.add_argument("--bootstrap", required=True, metavar="SERVERS", help="Kafka bootstrap servers, host:port,...")
    p.add_argument("--kafka-topic", required=True, metavar="T", help="the Kafka topic")
    p.add_argument("--batch", type=int, default=5000, metavar="N", help="records per commit at most (default 5000)")
    p.add_argument(
        "--kafka-config", action="append", metavar="KEY=VALUE", help="a librdkafka setting (security, ...), repeatable"
    )
    p.add_argument(
        "--retry-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up on an unreachable broker or registry after this long (default 30)",
    )
    p.add_argument("--max-records", type=int, metavar="N", help="stop after N records")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS", help="stop once nothing arrived for this long")
    p.add_argument(
        "--progress", type=float, default=10.0, metavar="SECONDS", help="a progress line this often (0: none)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log what the bridge and librdkafka do")


def add_commands(sub: Any, add_command: AddCommand) -> None:
    """Register ``bridge`` (from-kafka, to-kafka, status) on `sub`."""
    bridge = sub.add_parser(
        "bridge",
        help="bridge a topic from or to Kafka (needs the kafka extra)",
        description="bridge a log topic from or to a Kafka topic (confluent-kafka: pip install 'logstore[kafka]')",
        epilog="example:\n  logstore bridge from-kafka ./log payments --bootstrap kafka:9092 --kafka-topic payments\n"
        "  logstore bridge status ./log",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = bridge.add_subparsers(dest="bridge_command", metavar="COMMAND")
    bridge.set_defaults(func=lambda _args: bridge.print_help() or 0)

    p = add_command(
        commands,
        "from-kafka",
        cmd_from_kafka,
        "append a Kafka topic's messages to a log topic, exactly once",
        "logstore bridge from-kafka ./log payments --bootstrap kafka:9092 --kafka-topic payments "
        "--registry http://registry:8081",
    )
    _common(p)
    p.add_argument("--registry", metavar="URL", help="schema registry: values are Confluent-framed Avro")
    p.add_argument("--schema", metavar="AVSC", help="values are raw Avro or JSON of this schema (.avsc path or JSON)")
    p.add_argument("--value-format", choices=["avro", "json"], default="avro", help="with --schema (default avro)")
    p.add_argument("--durability", choices=["flush", "fsync"], default="flush", help="the log writer's (default flush)")
    p.add_argument(
        "--start",
        choices=["earliest", "latest"],
        default="earliest",
        help="where a partition the log holds nothing of begins (default earliest)",
    )
    p.description = (
        f"{p.description}.\nKafka partition p goes to log partition p; every record keeps its kafka_partition and "
        "kafka_offset,\nwhich are the bridge's position: a restart resumes after the last record of each partition."
    )

    p = add_command(
        commands,
        "to-kafka",
        cmd_to_kafka,
        "produce a log topic's records to Kafka, the position a consumer group of the log",
        "logstore bridge to-kafka ./log scores --bootstrap kafka:9092 --kafka-topic scores "
        "--registry http://registry:8081",
    )
    _common(p)
    p.add_argument("--registry", metavar="URL", help="schema registry: values are Confluent-framed Avro")
    p.add_argument("--value-format", choices=["avro", "json"], default="avro", help="without --registry (default avro)")
    p.add_argument("--group", metavar="G", help="the log's consumer group keeping the position (bridge.KAFKA_TOPIC)")
    p.add_argument("--subject", metavar="S", help="registry subject of the schema (KAFKA_TOPIC-value)")
    p.add_argument(
        "--partitioning",
        choices=["same", "key"],
        help="log partition p to Kafka partition p, or by the key field (default: same when the counts match)",
    )
    p.description = (
        f"{p.description}.\nAt least once: the cursor moves only over what Kafka acknowledged; with 'same' "
        "partitioning a restart\nskips what the Kafka partitions already hold (see logstore.bridge.to_kafka)."
    )

    p = add_command(
        commands,
        "status",
        cmd_status,
        "where the bridges of a log stand: Kafka offsets reached and log cursors, with lag",
        "logstore bridge status ./log payments --bootstrap kafka:9092 --kafka-topic payments",
    )
    p.add_argument("topic", nargs="?", help="only this topic")
    p.add_argument("--bootstrap", metavar="SERVERS", help="ask Kafka for its end offsets (lag of from-kafka)")
    p.add_argument("--kafka-topic", metavar="T", help="the Kafka topic TOPIC is fed from (with --bootstrap)")
    p.add_argument("--json", action="store_true")

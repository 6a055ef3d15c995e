"""The `logstore` command: a thin layer over the library (each command calls the public API).

User mistakes print one line to stderr with a hint and exit 2 (1 for a failed `verify`); a fault
of the tool itself prints one line and exits 70; never a traceback. Set LOGSTORE_DEBUG=1 to see
tracebacks. Reading commands open the log read-only: they work on a read-only mount or another
user's log, never create a log where there is none, and never change a byte.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import ArgumentError

if TYPE_CHECKING:
    from .log import Log

PROG = "logstore"


def parse_bound(text: str | None) -> Any:
    """An offset ('1200'), per-partition offsets ('0:10,1:20') or an ISO time ('2026-01-01T00:00Z')."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    if (
        ":" in text
        and all(
            part.split(":")[0].isdigit() and part.split(":")[1].isdigit()
            for part in text.split(",")
            if part.count(":") == 1
        )
        and "T" not in text
        and "-" not in text
    ):
        return {int(p): int(o) for p, o in (part.split(":") for part in text.split(","))}
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ArgumentError(f"{text!r} is not an offset, 'partition:offset,...' or an ISO-8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _ints(text: str | None) -> list[int] | None:
    return None if text is None else [int(x) for x in text.split(",") if x.strip()]


def _cols(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _open(args: argparse.Namespace, readonly: bool = False) -> Log:
    import logstore

    return logstore.open(args.log, readonly=readonly)


def cmd_create(args: argparse.Namespace) -> int:
    log = _open(args)
    schema: Any = args.schema
    if schema.lstrip().startswith("{"):
        schema = json.loads(schema)
    kw: dict[str, Any] = dict(
        partitions=args.partitions,
        key_field=args.key,
        compatibility=args.compatibility,
        compression=None if args.compression == "none" else args.compression,
        segment_bytes=args.segment_bytes,
        segment_ms=args.segment_ms,
        retention_ms=args.retention_ms,
        retention_bytes=args.retention_bytes,
        exist_ok=args.exist_ok,
    )
    if args.event_time is not None:
        kw["event_time_field"] = None if args.event_time == "none" else args.event_time
    cfg = log.create_topic(args.topic, schema, **kw)
    print(
        f"created topic {cfg.name!r}: {cfg.partitions} partition(s), key {cfg.key_field}, "
        f"event time {cfg.event_time_field}, compression {cfg.compression}"
    )
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    log = _open(args, readonly=True)
    for name in log.topics():
        print(name)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    log = _open(args, readonly=True)
    info = log.describe(args.topic)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for d in [info] if args.topic else info.values():
        print(
            f"topic {d['topic']}: {d['records']} records, {d['bytes']} bytes, {d['partitions']} partition(s), "
            f"key {d['key_field']}, event time {d['event_time_field']}, compression {d['compression']}, "
            f"schema versions {d['schema_versions']}"
        )
        for p in d["partition_details"]:
            print(
                f"  partition {p['partition']}: offsets [{p['start_offset']}, {p['end_offset']}), "
                f"{p['bytes']} bytes in {len(p['segments'])} segment(s); append time "
                f"{p['first_append_time']} .. {p['last_append_time']}; event time "
                f"{p['min_event_time']} .. {p['max_event_time']}"
            )
            if args.segments:
                for s in p["segments"]:
                    print(
                        f"    {s['base_offset']:020d}.seg  {s['bytes']:>12} bytes  {s['frames']:>6} frames"
                        f"{'  (active)' if s['active'] else ''}"
                    )
    return 0


def cmd_append(args: argparse.Namespace) -> int:
    from .textio import read_input

    log = _open(args)
    data = read_input(args.file, args.format, log.arrow_schema(args.topic))
    with log.writer(args.topic, durability=args.durability) as w:
        w.append_batch(data)
    print(f"appended {len(data)} records to {args.topic!r}", file=sys.stderr)
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    from .textio import write_jsonl, write_table

    log = _open(args, readonly=True)
    kw = dict(partitions=_ints(args.partitions), columns=_cols(args.columns), by=args.by)
    if args.format == "jsonl":
        reader = log.reader(args.topic, parse_bound(args.start), parse_bound(args.end), **kw)
        write_jsonl(reader, sys.stdout, args.limit)
    else:
        table = log.read(args.topic, parse_bound(args.start), parse_bound(args.end), **kw)
        write_table(table, args.format, limit=args.limit)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from .textio import write_jsonl

    log = _open(args, readonly=True)
    ends = log.end_offsets(args.topic)
    starts = log.start_offsets(args.topic)
    start = {p: max(starts[p], e - args.n) for p, e in ends.items()}
    reader = log.reader(args.topic, start, None, follow=args.follow, columns=_cols(args.columns))
    try:
        write_jsonl(reader, sys.stdout)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    log = _open(args, readonly=True)
    report = log.verify(args.topic)
    for p in report.problems:
        print(f"DAMAGED {p.topic}[{p.partition}] {p}")
    for note in report.notes:
        print(f"note: {note}")
    status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(
        f"verified {report.topics} topic(s), {report.partitions} partition(s), {report.segments} segment(s), "
        f"{report.frames} frames, {report.bytes} bytes: {status}"
    )
    return 0 if report.ok else 1


def cmd_retention(args: argparse.Namespace) -> int:
    log = _open(args)
    report = log.enforce_retention(args.topic)
    for _topic, _p, path, size in report.deleted:
        print(f"deleted {path} ({size} bytes)")
    print(f"retention: {len(report.deleted)} segment(s) deleted, {report.bytes_freed} bytes freed")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    log = _open(args)
    done = log.recover()
    for rec in done:
        print(
            f"recovered {rec.path}: {rec.bytes_truncated} bytes of torn tail truncated, "
            f"{len(rec.problems)} damaged place(s) kept{', index rewritten' if rec.index_rebuilt else ''}"
        )
    print(f"recovery: {len(done)} partition(s) repaired")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from .sql import query
    from .textio import write_table

    log = _open(args, readonly=True)
    table = query(log, args.query, start=parse_bound(args.start), end=parse_bound(args.end))
    write_table(table, args.format, limit=args.limit)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .interchange import export_topic

    log = _open(args, readonly=True)
    n = export_topic(log, args.topic, args.out, args.format, start=parse_bound(args.start), end=parse_bound(args.end))
    print(f"exported {n} records of {args.topic!r} to {args.out} ({args.format})", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .interchange import import_avro

    log = _open(args)
    n = import_avro(log, args.topic, args.file)
    print(f"imported {n} records into {args.topic!r}", file=sys.stderr)
    return 0


def add_command(sub: Any, name: str, func: Callable[..., Any], help: str, example: str) -> argparse.ArgumentParser:
    """A subcommand taking the log directory first, its help with an example (logstore and replay)."""
    p = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    assert isinstance(p, argparse.ArgumentParser)
    p.add_argument("log", help="path of the log directory")
    p.set_defaults(func=func)
    return p


def _range_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", help="inclusive: offset, 'p:offset,...' or ISO time (append time by default)")
    p.add_argument("--end", help="exclusive: offset, 'p:offset,...' or ISO time")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="An embedded, append-only, partitioned segment log.",
        epilog="example:\n  logstore create ./log scores --schema model_score --partitions 4 --key request_id\n"
        "  logstore append ./log scores scores.jsonl\n  logstore cat ./log scores --format table --limit 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = add_command(
        sub,
        "create",
        cmd_create,
        "create a topic",
        "logstore create ./log scores --schema model_score --partitions 4 --key request_id",
    )
    p.add_argument("topic")
    p.add_argument("--schema", required=True, help="shipped record type name, .avsc path or Avro JSON")
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--key", help="key field: records with the same key go to the same partition")
    p.add_argument("--event-time", help="event-time field (default event_time when present; 'none' for none)")
    p.add_argument("--compression", default="zstd", choices=["zstd", "lz4", "none"])
    p.add_argument("--compatibility", default="BACKWARD")
    p.add_argument("--segment-bytes", type=int)
    p.add_argument("--segment-ms", type=int)
    p.add_argument("--retention-ms", type=int)
    p.add_argument("--retention-bytes", type=int)
    p.add_argument("--exist-ok", action="store_true", help="succeed if the topic already exists")

    add_command(sub, "topics", cmd_topics, "list the topics", "logstore topics ./log")

    p = add_command(
        sub,
        "describe",
        cmd_describe,
        "show partitions, segments, offset and time ranges, bytes",
        "logstore describe ./log scores --segments",
    )
    p.add_argument("topic", nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument("--segments", action="store_true", help="list every segment")

    p = add_command(
        sub,
        "append",
        cmd_append,
        "append records from JSON lines, CSV, Parquet or Avro",
        "logstore append ./log scores scores.jsonl --durability fsync",
    )
    p.add_argument("topic")
    p.add_argument("file", nargs="?", default="-", help="input file, '-' for stdin (default)")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet", "avro"], help="default: from the file name")
    p.add_argument("--durability", default="fsync", choices=["none", "flush", "fsync"])

    p = add_command(
        sub,
        "cat",
        cmd_cat,
        "print records as JSON lines, a table, CSV or JSON",
        "logstore cat ./log scores --start 2026-11-20T00:00Z --format table --limit 20",
    )
    p.add_argument("topic")
    _range_options(p)
    p.add_argument("--by", default="append_time", choices=["append_time", "event_time"])
    p.add_argument("--partitions", help="comma-separated partition numbers")
    p.add_argument("--columns", help="comma-separated column names")
    p.add_argument("--format", default="jsonl", choices=["jsonl", "table", "csv", "json"])
    p.add_argument("--limit", type=int)

    p = add_command(
        sub,
        "tail",
        cmd_tail,
        "print the last records; -f keeps printing new ones",
        "logstore tail ./log scores -n 5 -f",
    )
    p.add_argument("topic")
    p.add_argument("-n", type=int, default=10, help="records per partition to start with")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--columns")

    p = add_command(
        sub,
        "verify",
        cmd_verify,
        "check every frame's checksums; exit 1 if anything is damaged",
        "logstore verify ./log",
    )
    p.add_argument("topic", nargs="?")

    p = add_command(
        sub, "retention", cmd_retention, "delete sealed segments past retention", "logstore retention ./log scores"
    )
    p.add_argument("topic", nargs="?")

    p = add_command(
        sub,
        "recover",
        cmd_recover,
        "truncate torn tails and rewrite derived indexes of partitions "
        "no writer holds (writers do this themselves before their first commit)",
        "logstore recover ./log",
    )

    p = add_command(
        sub,
        "sql",
        cmd_sql,
        "run SQL (DuckDB) over the topics; each topic is a view",
        "logstore sql ./log 'SELECT model_id, count(*) FROM scores GROUP BY 1' --format table",
    )
    p.add_argument("query")
    _range_options(p)
    p.add_argument("--format", default="table", choices=["table", "csv", "json", "jsonl"])
    p.add_argument("--limit", type=int)

    p = add_command(
        sub,
        "export",
        cmd_export,
        "export a topic to Avro (zstandard), Parquet or JSON lines",
        "logstore export ./log scores scores.avro --format avro",
    )
    p.add_argument("topic")
    p.add_argument("out")
    p.add_argument("--format", default="avro", choices=["avro", "parquet", "jsonl"])
    _range_options(p)

    p = add_command(
        sub,
        "import",
        cmd_import,
        "import an Avro object container file into a topic",
        "logstore import ./log scores scores.avro",
    )
    p.add_argument("topic")
    p.add_argument("file")
    return parser


def _hint(err: BaseException) -> str:
    from .errors import LogNotFoundError, TopicNotFoundError

    if isinstance(err, TopicNotFoundError):
        return " (hint: `logstore topics LOG` lists them; `logstore create` makes one)"
    if isinstance(err, LogNotFoundError):
        return " (hint: check the path; `logstore create` makes a log)"
    if isinstance(err, FileNotFoundError):
        return " (hint: check the path)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, build_parser(), argv, _hint)


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, KeyError)
INTERNAL_ERROR = 70  # EX_SOFTWARE: a fault of the tool, not of its user


def run(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    hint: Callable[[BaseException], str],
    user_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Parse `argv` and run the chosen command: user mistakes (LogstoreError, `USER_ERRORS`, then
    `user_errors`) print one line and return 2; Ctrl-C returns 130 (printing what the interrupt
    says, if anything, e.g. how to resume a run); a closed pipe returns 0. Set LOGSTORE_DEBUG=1
    to get the traceback instead."""
    from .errors import LogstoreError

    args = parser.parse_args(argv)
    caught: tuple[type[BaseException], ...] = (LogstoreError, *USER_ERRORS, *user_errors)
    try:
        return int(args.func(args))
    except KeyboardInterrupt as err:
        if str(err):
            print(f"{prog}: {err}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except caught as err:
        if os.environ.get("LOGSTORE_DEBUG"):
            raise
        return print_error(prog, err, hint(err))
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if os.environ.get("LOGSTORE_DEBUG"):
            raise
        if _is_query_error(err):
            return print_error(prog, err)
        print_error(prog, err, f" ({type(err).__name__}; set LOGSTORE_DEBUG=1 for the traceback)")
        return INTERNAL_ERROR


def _is_query_error(err: BaseException) -> bool:
    """A DuckDB error (bad SQL, a type mismatch): the user's query, not the tool."""
    return type(err).__module__.split(".")[0] in ("duckdb", "_duckdb")


def print_error(prog: str, err: BaseException, hint: str = "") -> int:
    """Print a user mistake as one line on stderr (then its listed reasons, if any); returns 2."""
    lines = str(err).splitlines() or [type(err).__name__]
    print(f"{prog}: error: {lines[0]}{hint}", file=sys.stderr)
    for line in lines[1:21]:
        print(f"{prog}:   {line.strip()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

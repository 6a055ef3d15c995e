"""The `logstore` command: a thin layer over the library (each command calls the public API).

User mistakes print one line to stderr with a hint and exit 2 (1 for a failed `verify`); a fault
of the tool itself prints one line and exits 70; never a traceback. Set LOGSTORE_DEBUG=1 to see
tracebacks. Reading commands open the log read-only: they work on a read-only mount or another
user's log, never create a log where there is none, and never change a byte.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .clirun import INTERNAL_ERROR, USER_ERRORS, add_command, add_version, print_error, run
from .completion import add_completion
from .errors import ArgumentError

if TYPE_CHECKING:
    from .log import Log

__all__ = [
    "INTERNAL_ERROR",
    "USER_ERRORS",
    "add_command",
    "add_completion",
    "add_version",
    "build_parser",
    "main",
    "print_error",
    "run",
]

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


CREATE_DEFAULTS: dict[str, Any] = {"partitions": 1, "compatibility": "BACKWARD", "compression": "zstd"}


def _create_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `create_topic` keyword arguments the user gave (options left out are absent)."""
    given: dict[str, Any] = {}
    for name in ("partitions", "compatibility", "segment_bytes", "retention_bytes"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    if args.key is not None:
        given["key_field"] = args.key
    if args.compression is not None:
        given["compression"] = None if args.compression == "none" else args.compression
    if args.event_time is not None:
        given["event_time_field"] = None if args.event_time == "none" else args.event_time
    for name in ("remote", "local_retention_bytes"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    for name, unit in (("segment_ms", "ms"), ("retention_ms", "ms"), ("local_retention_ms", "ms")):
        text, with_unit = getattr(args, name), getattr(args, name.removesuffix("_ms"))
        if text is not None and with_unit is not None:
            flag = name.removesuffix("_ms").replace("_", "-")
            raise ArgumentError(f"give --{flag} or --{flag}-ms, not both")
        from .durations import duration_ms

        if with_unit is not None:
            given[name] = duration_ms(with_unit, f"--{name.removesuffix('_ms').replace('_', '-')}")
        elif text is not None:
            given[name] = duration_ms(text, f"--{name.replace('_', '-')}", bare_unit=unit)
    return given


def _differences(log: Log, topic: str, schema: Any, given: dict[str, Any]) -> list[str]:
    """What the existing `topic` has other than `schema` and the `given` settings, in words."""
    import schemas
    from schemas.avro import full_form

    config = log.config(topic)
    out = [
        f"{key.replace('_', '-')}: exists with {getattr(config, key)!r}, asked for {value!r}"
        for key, value in given.items()
        if getattr(config, key) != value
    ]
    versions = log.schemas(topic)
    wanted = full_form(schemas.parse(schema, name=topic.replace(".", "_").replace("-", "_")))
    if full_form(versions[-1].schema) != wanted:
        older = [v.version for v in versions if full_form(v.schema) == wanted]
        state = f"it is version {older[0]}, not the latest" if older else "it is not any of its versions"
        out.append(f"schema: {state} (latest: version {versions[-1].version})")
    return out


def cmd_create(args: argparse.Namespace) -> int:
    log = _open(args)
    schema: Any = args.schema
    if schema.lstrip().startswith("{"):
        schema = json.loads(schema)
    given = _create_settings(args)
    if args.exist_ok and args.topic in log.topics():
        diffs = _differences(log, args.topic, schema, given)
        if diffs:
            raise ArgumentError(
                f"topic {args.topic!r} exists with other settings than asked (--exist-ok accepts only the same):\n"
                + "\n".join(diffs)
            )
        print(f"topic {args.topic!r} exists with these settings")
        return 0
    cfg = log.create_topic(args.topic, schema, **{**CREATE_DEFAULTS, **given})
    print(
        f"created topic {cfg.name!r}: {cfg.partitions} partition(s), key {cfg.key_field}, "
        f"event time {cfg.event_time_field}, compression {cfg.compression}"
    )
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    log = _open(args, readonly=True)
    info = log.describe(args.topic)
    from .bridge.status import by_topic, describe_lines

    bridges = by_topic(log, args.topic)
    for d in [info] if args.topic else info.values():
        if d.get("topic") in bridges:
            d["bridge"] = bridges[d["topic"]]
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
                        f"{'  (active)' if s['active'] else ''}{'  remote ' + s['uri'] if 'uri' in s else ''}"
                    )
        for line in describe_lines(d.get("bridge", {})):
            print(f"  {line}")
    return 0


def _resume_hint(args: argparse.Namespace) -> str:
    """The command line that continues an interrupted append or import (``--skip N`` goes after)."""
    import shlex

    fmt = f" --format {args.format}" if args.format else ""
    return shlex.join([PROG, args.command, args.log, args.topic, args.file]) + fmt


def cmd_append(args: argparse.Namespace) -> int:
    from .interchange import append_file

    log = _open(args)
    hint = _resume_hint(args) if args.file != "-" else None
    n = append_file(
        log,
        args.topic,
        args.file,
        args.format,
        args.durability,
        skip=args.skip,
        delimiter=args.delimiter,
        resume_hint=hint,
        progress=not args.no_progress,
    )
    print(f"appended {n} records to {args.topic!r}", file=sys.stderr)
    return 0


TERMINAL_ROWS = 200  # rows `cat` prints as a table on a terminal when no --limit is given


def cmd_cat(args: argparse.Namespace) -> int:
    from .term import color_enabled
    from .textio import write_jsonl, write_table

    log = _open(args, readonly=True)
    kw = dict(partitions=_ints(args.partitions), columns=_cols(args.columns), by=args.by)
    fmt, limit = args.format, args.limit
    if fmt is None:  # a table on a terminal (the first rows), JSON lines down a pipe (all of them)
        fmt = "table" if sys.stdout.isatty() else "jsonl"
        if fmt == "table" and limit is None:
            limit = TERMINAL_ROWS
    if fmt == "jsonl":
        reader = log.reader(args.topic, parse_bound(args.start), parse_bound(args.end), **kw)
        write_jsonl(reader, sys.stdout, limit)
    else:
        table = log.read(args.topic, parse_bound(args.start), parse_bound(args.end), **kw)
        write_table(table, fmt, limit=limit, color=color_enabled(sys.stdout))
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


def _bar(args: argparse.Namespace, total: int, label: str, unit: str) -> Any:
    """A progress bar on stderr when it is a terminal and --no-progress is not given."""
    from .progress import Progress

    return Progress(total, label, unit=unit, enabled=False if args.no_progress else None)


def cmd_verify(args: argparse.Namespace) -> int:
    from .term import color_enabled, style

    log = _open(args, readonly=True)
    info = log.describe(args.topic)
    total = sum(int(d.get("bytes") or 0) for d in ([info] if args.topic else info.values()))
    with _bar(args, total, "verify", "bytes") as bar:
        report = log.verify(args.topic, progress=bar.update)
    color = color_enabled(sys.stdout)
    for p in report.problems:
        print(f"{style('DAMAGED', 'red', color)} {p.topic}[{p.partition}] {p}")
    for note in report.notes:
        print(f"{style('note:', 'yellow', color)} {note}")
    status = style("ok", "green", color) if report.ok else style(f"{len(report.problems)} problem(s)", "red", color)
    print(
        f"verified {report.topics} topic(s), {report.partitions} partition(s), {report.segments} segment(s), "
        f"{report.frames} frames, {report.bytes} bytes: {status}"
    )
    return 0 if report.ok else 1


def cmd_retention(args: argparse.Namespace) -> int:
    log = _open(args)
    names = [args.topic] if args.topic is not None else log.topics()
    deleted, freed = 0, 0
    with _bar(args, len(names), "retention", "topics") as bar:
        for i, name in enumerate(names):
            report = log.enforce_retention(name)
            for _topic, _p, path, size in report.deleted:
                print(f"deleted {path} ({size} bytes)")
            deleted, freed = deleted + len(report.deleted), freed + report.bytes_freed
            bar.update(i + 1)
    print(f"retention: {deleted} segment(s) deleted, {freed} bytes freed")
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
    from .sqlcli import run_sql

    return run_sql(
        _open(args, readonly=True),
        args.query,
        file=args.file,
        interactive=args.interactive,
        start=parse_bound(args.start),
        end=parse_bound(args.end),
        fmt=args.format,
        limit=args.limit,
        stdin=sys.stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from .interchange import export_topic, file_format

    fmt = file_format(args.out, args.format, "export")  # refused before the log is opened
    log = _open(args, readonly=True)
    n = export_topic(
        log,
        args.topic,
        args.out,
        fmt,
        start=parse_bound(args.start),
        end=parse_bound(args.end),
        progress=not args.no_progress,
    )
    print(f"exported {n} records of {args.topic!r} to {args.out} ({fmt})", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .interchange import file_format, import_file

    fmt = file_format(args.file, args.format, "import")
    log = _open(args)
    n = import_file(
        log,
        args.topic,
        args.file,
        fmt,
        skip=args.skip,
        delimiter=args.delimiter,
        resume_hint=_resume_hint(args),
        progress=not args.no_progress,
    )
    print(f"imported {n} records of {args.file} ({fmt}) into {args.topic!r}", file=sys.stderr)
    return 0


def _progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")


def _file_options(p: argparse.ArgumentParser) -> None:
    _progress_option(p)
    p.add_argument("--delimiter", default=",", help="CSV: the column separator (default ','; '\\t' for a tab)")
    p.add_argument(
        "--skip", type=int, default=0, metavar="N", help="leave out the file's first N records (an interrupted run's)"
    )


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
    add_version(parser)
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
    p.add_argument("--partitions", type=int, help="number of partitions (default 1)")
    p.add_argument("--key", help="key field: records with the same key go to the same partition")
    p.add_argument("--event-time", help="event-time field (default event_time when present; 'none' for none)")
    p.add_argument("--compression", choices=["zstd", "lz4", "none"], help="frame compression (default zstd)")
    p.add_argument("--compatibility", help="schema evolution rule (default BACKWARD)")
    p.add_argument("--segment-bytes", type=int, help="roll the active segment at this size")
    p.add_argument(
        "--segment-age", dest="segment", metavar="DURATION", help="roll the active segment at this age, e.g. 1h"
    )
    p.add_argument("--segment-ms", help="the same in milliseconds")
    p.add_argument("--retention", metavar="DURATION", help="delete sealed segments older than this, e.g. 7d")
    p.add_argument("--retention-ms", help="the same in milliseconds")
    p.add_argument("--retention-bytes", type=int, help="keep at most this many bytes per partition")
    p.add_argument(
        "--remote", metavar="URI", help="move sealed segments to this store (s3://bucket/prefix, file:///...)"
    )
    p.add_argument("--local-retention", metavar="DURATION", help="keep this much history on local disk, e.g. 1d")
    p.add_argument("--local-retention-ms", help="the same in milliseconds")
    p.add_argument("--local-retention-bytes", type=int, help="keep at most this many bytes per partition locally")
    p.add_argument(
        "--exist-ok",
        action="store_true",
        help="succeed if the topic exists with the same schema and the settings given; fail saying what differs",
    )

    from . import admin_cli
    from .bridge import cli as bridge_cli

    admin_cli.add_commands(sub, add_command)  # topics, alter, delete-topic, groups, delete-group
    bridge_cli.add_commands(sub, add_command)  # bridge from-kafka, to-kafka, status

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
    _file_options(p)

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
    p.add_argument(
        "--format",
        choices=["jsonl", "table", "csv", "json"],
        help=f"default: a table of the first {TERMINAL_ROWS} rows on a terminal, JSON lines when piped",
    )
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
    _progress_option(p)

    p = add_command(
        sub, "retention", cmd_retention, "delete sealed segments past retention", "logstore retention ./log scores"
    )
    p.add_argument("topic", nargs="?")
    _progress_option(p)

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
        "logstore sql ./log 'SELECT model_id, count(*) FROM scores GROUP BY 1' --format table\n"
        "  logstore sql ./log -f report.sql --format csv\n"
        "  logstore sql ./log              # a prompt: end statements with ';', .quit to leave",
    )
    p.add_argument(
        "query",
        nargs="?",
        help="the SQL, one or more statements; '-' reads it from stdin (default: stdin when it is "
        "not a terminal, else a prompt)",
    )
    p.set_defaults(late_positional="query")  # `sql ./log --format csv 'SELECT 1'` works too
    p.add_argument("-f", "--file", help="read the SQL from FILE ('-': stdin)")
    p.add_argument("-i", "--interactive", action="store_true", help="prompt for statements even on a pipe")
    _range_options(p)
    p.add_argument("--format", default="table", choices=["table", "csv", "json", "jsonl"])
    p.add_argument("--limit", type=int, help="print at most N rows of each result (DuckDB stops once it has them)")

    p = add_command(
        sub,
        "export",
        cmd_export,
        "export a topic to Avro (zstandard), Parquet or JSON lines",
        "logstore export ./log scores scores.avro\n"
        "  logstore export ./log scores scores.ndjson --start 2026-11-20T00:00Z",
    )
    p.description = (
        "export a topic to Avro (zstandard), Parquet or JSON lines, the format named by the file's\n"
        "extension (.avro, .parquet, .jsonl, .ndjson) unless --format gives it (a --format the\n"
        "extension contradicts is refused). Avro holds the topic's fields only; Parquet and JSON\n"
        "lines add the system columns _partition, _offset, _append_time, which `import` drops, so\n"
        "any export re-imports into a topic of the same schema. JSON lines: ISO 8601 times,\n"
        "base64 bytes, decimals as strings, maps as objects."
    )
    p.add_argument("topic")
    p.add_argument("out", help="output file; its extension names the format")
    p.add_argument("--format", choices=["avro", "parquet", "jsonl"], help="default: from the extension of OUT")
    _range_options(p)
    _progress_option(p)

    p = add_command(
        sub,
        "import",
        cmd_import,
        "import an Avro, Parquet, JSON lines or CSV file into a topic (all records or none)",
        "logstore import ./log scores scores.avro\n  logstore import ./log scores-copy scores.jsonl",
    )
    p.description = (
        "import an Avro, Parquet, JSON lines or CSV file into a topic, the format named by the file's\n"
        "extension (.avro, .parquet, .jsonl, .ndjson, .csv) unless --format gives it. Every record is\n"
        "checked against the topic's schema, as `append` checks it, before anything is written: a\n"
        "rejected file writes nothing, and the error names the record (line of JSON lines, row of\n"
        "Parquet), field and reason. System columns (_partition, _offset, _append_time) in the file\n"
        "are dropped: the log assigns them. Parquet, JSON lines and CSV need the topic to exist; Avro\n"
        "creates it from the file's schema, or registers that schema as a new version if compatible.\n"
        "Memory stays one batch of records. An import stopped after some commits (Ctrl-C, a full\n"
        "disk) says how many records are in and the command that continues it (--skip N)."
    )
    p.add_argument("topic")
    p.add_argument("file", help="input file; its extension names the format")
    p.add_argument("--format", choices=["avro", "parquet", "jsonl", "csv"], help="default: from the extension of FILE")
    _file_options(p)
    add_completion(parser, sub)
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


if __name__ == "__main__":
    sys.exit(main())

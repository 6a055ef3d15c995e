"""The `logstore` commands that administer a log (over `logstore.admin`): `topics` (``--long``,
``--json``), `alter`, `delete-topic`, `groups`, `delete-group`; `logstore.cli` registers them.

Deleting asks first. On a terminal: "delete topic 'x' (N records, B bytes)? [y/N]" (anything but
y/yes keeps it, exit 1); without a terminal it needs ``--yes`` and is refused in one line
otherwise, so a script neither deletes by accident nor hangs on a prompt (`confirm`).
Durations are `logstore.durations` text (``7d``, ``1h30m``); a bare number is taken only by an
option whose name carries its unit (``--retention-ms``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ArgumentError
from .term import confirm

if TYPE_CHECKING:
    from .log import Log

AddCommand = Callable[..., argparse.ArgumentParser]


def _open(args: argparse.Namespace, readonly: bool = False) -> Log:
    import logstore

    return logstore.open(args.log, readonly=readonly)


def human_bytes(n: int | None) -> str:
    """`n` bytes as '512 B', '3.1 KiB', '1.0 GiB' ('?' when unknown)."""
    if n is None:
        return "?"
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _retention(s: dict[str, Any]) -> str:
    from .durations import format_duration

    parts = [format_duration(s["retention_ms"])] if s["retention_ms"] is not None else []
    if s["retention_bytes"] is not None:
        parts.append(f"{human_bytes(s['retention_bytes'])}/partition")
    return " or ".join(parts) or "forever"


# --- topics ----------------------------------------------------------------------------------
def cmd_topics(args: argparse.Namespace) -> int:
    from .admin import topic_summaries

    log = _open(args, readonly=True)
    if not (args.long or args.json):
        for name in log.topics():
            print(name)
        return 0
    summaries = topic_summaries(log)
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    if not summaries:
        print("no topics")
        return 0
    rows = [["TOPIC", "PARTITIONS", "RECORDS", "BYTES", "VERSIONS", "RETENTION"]]
    for s in summaries:
        if "error" in s:
            rows.append([s["topic"], f"error: {s['error']}", "", "", "", ""])
            continue
        versions = s["schema_versions"]
        shown = f"{versions[0]}..{versions[-1]}" if len(versions) > 1 else ",".join(map(str, versions))
        rows.append(
            [s["topic"], str(s["partitions"]), str(s["records"]), human_bytes(s["bytes"]), shown, _retention(s)]
        )
    _table(rows)
    return 0


# --- alter -----------------------------------------------------------------------------------
LABELS = {
    "retention_ms": "retention",
    "retention_bytes": "retention-bytes",
    "compression": "compression",
    "segment_bytes": "segment-bytes",
    "segment_ms": "segment-age",
    "compatibility": "compatibility",
    "max_record_bytes": "max-record-bytes",
    "remote": "remote",
    "local_retention_ms": "local-retention",
    "local_retention_bytes": "local-retention-bytes",
}


def _count(text: str, flag: str, *, none: bool = False) -> int | None:
    """A byte count option: a non-negative int ('none' for no limit where `none`)."""
    if none and text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ArgumentError(f"{flag} {text!r}: give a number of bytes{' or none' if none else ''}") from None
    if value < 0:
        raise ArgumentError(f"{flag} {text!r}: must not be negative")
    return value


def alter_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `alter_topic` keyword arguments the options give (those left out are absent)."""
    from .durations import duration_ms

    given: dict[str, Any] = {}
    for key, flag in (
        ("retention_ms", "--retention"),
        ("segment_ms", "--segment-age"),
        ("local_retention_ms", "--local-retention"),
    ):
        text, ms = getattr(args, key.removesuffix("_ms")), getattr(args, key)
        ms_flag = f"--{key.replace('_', '-')}"
        if text is not None and ms is not None:
            raise ArgumentError(f"give {flag} or {ms_flag}, not both")
        if text is not None:
            given[key] = None if text.strip().lower() == "none" else duration_ms(text, flag)
        elif ms is not None:
            given[key] = None if ms.strip().lower() == "none" else duration_ms(ms, ms_flag, bare_unit="ms")
    for key in ("retention_bytes", "segment_bytes", "max_record_bytes", "local_retention_bytes"):
        if getattr(args, key) is not None:
            none = key in ("retention_bytes", "local_retention_bytes")
            given[key] = _count(getattr(args, key), f"--{key.replace('_', '-')}", none=none)
    if args.remote is not None:
        given["remote"] = None if args.remote.strip().lower() == "none" else args.remote
    if args.compression is not None:
        given["compression"] = None if args.compression == "none" else args.compression
    if args.compatibility is not None:
        given["compatibility"] = args.compatibility.upper()
    if not given:
        raise ArgumentError(
            "nothing to change: give --retention, --retention-ms, --retention-bytes, --compression, "
            "--segment-bytes, --segment-age, --segment-ms, --compatibility, --max-record-bytes, --remote, "
            "--local-retention, --local-retention-ms or --local-retention-bytes"
        )
    return given


def _shown(key: str, value: Any) -> str:
    from .durations import format_duration

    if key.endswith("_ms"):
        return format_duration(value)
    return "none" if value is None else str(value)


def cmd_alter(args: argparse.Namespace) -> int:
    from .admin import alter_topic

    given = alter_settings(args)  # refused before the log is opened
    old, new = alter_topic(_open(args), args.topic, **given)
    for key in given:
        before, after = _shown(key, getattr(old, key)), _shown(key, getattr(new, key))
        print(f"{LABELS[key]}: {before} -> {after}" + (" (unchanged)" if before == after else ""))
    print(
        f"topic {args.topic!r} altered; processes that have the log open keep the settings they read "
        "until they open it again",
        file=sys.stderr,
    )
    return 0


# --- delete-topic, groups, delete-group ------------------------------------------------------
def _size_text(log: Log, topic: str) -> str:
    from .errors import LogstoreError, TopicNotFoundError

    try:
        d = log.describe(topic)
    except TopicNotFoundError:
        raise
    except LogstoreError as e:
        return f"its state cannot be read: {str(e).splitlines()[0]}"
    return f"{d['records']:,} records, {d['bytes']:,} bytes"


def cmd_delete_topic(args: argparse.Namespace) -> int:
    from .admin import check_not_busy

    log = _open(args)
    check_not_busy(log, args.topic)  # before the question, and before sizes that would wait for the writer
    size = _size_text(log, args.topic)
    if not confirm(f"delete topic {args.topic!r} ({size})?", args.yes):
        print(f"topic {args.topic!r} not deleted", file=sys.stderr)
        return 1
    done = log.delete_topic(args.topic)
    said = f" ({done.records:,} records, {done.bytes:,} bytes)" if done.records is not None else ""
    cursors = f"; its cursors removed from group(s) {', '.join(done.groups)}" if done.groups else ""
    print(f"deleted topic {args.topic!r}{said}{cursors}")
    return 0


def cmd_groups(args: argparse.Namespace) -> int:
    from .admin import groups

    found = groups(_open(args, readonly=True))
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no consumer groups")
        return 0
    rows = [["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"]]
    for g in found:
        if not g["topics"]:
            rows.append([g["group"], "-", "", "", "", ""])
        for t in g["topics"]:
            if t["error"] and not t["partitions"]:
                rows.append([g["group"], t["topic"], f"error: {t['error']}", "", "", ""])
            for p in t["partitions"]:
                committed = "-" if p["committed"] is None else str(p["committed"])
                lag = "-" if p["lag"] is None else str(p["lag"])
                rows.append([g["group"], t["topic"], str(p["partition"]), committed, str(p["end"]), lag])
    _table(rows)
    return 0


def cmd_delete_group(args: argparse.Namespace) -> int:
    from .admin import cursor_topics, delete_group, group_names
    from .errors import ConsumerError
    from .names import validate_name

    log = _open(args)
    validate_name(args.group, "group")
    if args.group not in group_names(log):
        raise ConsumerError(f"no consumer group {args.group!r} in {log.path} (`logstore groups LOG` lists them)")
    topics = cursor_topics(log, args.group)
    held = f"cursors of {len(topics)} topic(s): {', '.join(topics)}" if topics else "no cursors"
    if not confirm(f"delete consumer group {args.group!r} ({held})?", args.yes):
        print(f"group {args.group!r} not deleted", file=sys.stderr)
        return 1
    done = delete_group(log, args.group)
    print(f"deleted consumer group {args.group!r} ({len(done.topics)} cursor(s))")
    return 0


# --- tier --------------------------------------------------------------------------------------
def cmd_tier(args: argparse.Namespace) -> int:
    import logstore

    log = logstore.open(args.log, **({"remote": args.remote} if args.remote else {}))
    if args.topic is not None and log.topic(args.topic).remote is None:
        raise ArgumentError(f"topic {args.topic!r} has no remote: give --remote URI (or create it with --remote)")
    report = log.tier(args.topic)
    for step in report.finished:
        print(f"finished: {step}")
    for topic, p, base, size in report.moved:
        print(f"moved {topic}[{p}] segment {base} ({human_bytes(size)})")
    for topic, p in report.busy:
        print(f"skipped {topic}[{p}]: another process is tiering it")
    print(f"tier: moved {len(report.moved)} segment(s), {human_bytes(report.bytes_moved)}")
    return 0


def add_commands(sub: Any, add_command: AddCommand) -> None:
    """Register `topics`, `alter`, `delete-topic`, `groups`, `delete-group` and `tier` on `sub`."""
    p = add_command(
        sub,
        "topics",
        cmd_topics,
        "list the topics (--long: sizes, schema versions, retention)",
        "logstore topics ./log --long",
    )
    p.add_argument("-l", "--long", action="store_true", help="a table of sizes and settings")
    p.add_argument("--json", action="store_true", help="every topic's sizes, settings and append-time range")

    p = add_command(
        sub,
        "alter",
        cmd_alter,
        "change a topic's retention, compression, segment rolling or compatibility",
        "logstore alter ./log scores --retention 7d --compression lz4",
    )
    p.add_argument("topic")
    p.add_argument("--retention", metavar="DURATION", help="delete sealed segments older than this, e.g. 7d ('none')")
    p.add_argument("--retention-ms", metavar="N", help="the same in milliseconds")
    p.add_argument("--retention-bytes", metavar="N", help="keep at most this many bytes per partition ('none')")
    p.add_argument("--compression", choices=["zstd", "lz4", "none"], help="compression of frames written from now on")
    p.add_argument("--segment-bytes", metavar="N", help="roll the active segment at this size")
    p.add_argument(
        "--segment-age",
        dest="segment",
        metavar="DURATION",
        help="roll the active segment at this age, e.g. 1h ('none')",
    )
    p.add_argument("--segment-ms", metavar="N", help="the same in milliseconds")
    p.add_argument("--compatibility", metavar="MODE", help="schema evolution rule, e.g. BACKWARD, FULL, NONE")
    p.add_argument("--max-record-bytes", metavar="N", help="refuse records larger than this")
    p.add_argument(
        "--remote", metavar="URI", help="the store sealed segments move to (pyarrow.fs URI; only while none is there)"
    )
    p.add_argument(
        "--local-retention", dest="local_retention", metavar="DURATION", help="history kept on local disk, e.g. 1d"
    )
    p.add_argument("--local-retention-ms", metavar="N", help="the same in milliseconds")
    p.add_argument("--local-retention-bytes", metavar="N", help="local bytes kept per partition ('none')")
    p.description = (
        f"{p.description}.\nPartitions, key and event-time field cannot be changed. Processes that have "
        "the log open keep\nthe settings they read until they open it again."
    )

    p = add_command(
        sub,
        "delete-topic",
        cmd_delete_topic,
        "delete a topic and the groups' cursors of it (asks first)",
        "logstore delete-topic ./log scores --yes",
    )
    p.add_argument("topic")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")

    p = add_command(
        sub,
        "groups",
        cmd_groups,
        "list the consumer groups: committed offsets, ends and lag",
        "logstore groups ./log",
    )
    p.add_argument("--json", action="store_true")

    p = add_command(
        sub,
        "delete-group",
        cmd_delete_group,
        "delete a consumer group (asks first)",
        "logstore delete-group ./log fraud-scorer --yes",
    )
    p.add_argument("group")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")

    p = add_command(
        sub,
        "tier",
        cmd_tier,
        "move sealed segments past their local retention to the topic's remote store",
        "logstore tier ./log scores\n  logstore tier ./log --remote 's3://bucket/logs?endpoint_override=127.0.0.1:9000&scheme=http'",
    )
    p.add_argument("topic", nargs="?", help="only this topic (default: every topic with a remote)")
    p.add_argument("--remote", metavar="URI", help="the store of topics created without their own (pyarrow.fs URI)")
    p.description = (
        f"{p.description}.\nFirst finishes (or undoes) what an interrupted run left. Credentials come from the\n"
        "environment (AWS_*) or the URI; endpoint options from its query (endpoint_override, scheme)."
    )

"""The log: a directory of topics. `open()` opens one; it writes nothing.

Opening costs nothing but a check that the directory is a log: topics, their partitions and their
schemas are loaded lazily on first use, and nothing is recovered or created on open (reading never
writes). A log is created by its first topic (`Log.create_topic`, or a writer's first use of a
missing topic), its directories fsynced into their parents. A partition's torn tail is recovered
by the first writer to commit to it, under the partition's lock; `Log.recover()` does it for every
partition at once. Many processes may open one log; each partition has one writer at a time (a
file lock per commit, see `partition.py`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

import schemas
from schemas.registry import Registry, SchemaVersion

from . import files
from .consumer import Consumer
from .describe import RetentionReport, VerifyReport, describe_log, retention_topic, verify_log
from .errors import (
    ClockError,
    LogIOError,
    LogNotFoundError,
    LogstoreError,
    TopicError,
    TopicExistsError,
)
from .files import CLOEXEC, NOFOLLOW, fsync_dir, make_dir, write_all, write_atomic
from .names import CACHE_DIR, LOG_FILE, SCHEMAS_DIR, TOPIC_FILE, TOPICS_DIR, partition_dirname, validate_name
from .partition import Snapshot
from .plan import Bound
from .reader import Reader, output_schema, read_table
from .remote import DEFAULT_BLOCK_BYTES, DEFAULT_CACHE_BYTES, Remotes, RemoteStats
from .segment import Recovery
from .tier import TIERED_FORMAT, BackgroundTier, TierReport, finish_topic, tier_topic
from .timeutil import now_us, to_us
from .topic import Topic, TopicConfig, check_fields
from .writer import Writer

if TYPE_CHECKING:
    from .admin import DeletedTopic

FORMAT = 2  # the log format this code creates (docs/architecture.md, formats)
READS = TIERED_FORMAT  # the newest it reads: 3 adds remote segments (`tier.py`)

log = logging.getLogger("logstore")
_DEFAULT = object()


class Log:
    """An opened log directory. Create with `logstore.open(path)`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        recover: bool = False,
        remote: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        tier_in_background: bool = False,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # a read-only log writes nothing inside the log: its cache is a temporary directory
        cache = Path(cache_dir) if cache_dir is not None else None if readonly else self.path / CACHE_DIR
        self.remotes = Remotes(cache, cache_bytes=cache_bytes, block_bytes=block_bytes, temporary=readonly)
        self.remote = self.remotes.configure(remote) if remote is not None else None
        self.tier_in_background = tier_in_background
        self._background: dict[str, BackgroundTier] = {}
        self._topics: dict[str, Topic] = {}
        self.recoveries: list[Recovery] = []
        self._format = FORMAT
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if readonly:
                raise LogNotFoundError(f"no log at {self.path}: the directory does not exist") from None
            st = None
        except OSError as e:
            raise LogIOError(f"cannot open log {self.path}: {e.strerror or e}") from e
        if st is not None:
            if not stat.S_ISDIR(st.st_mode):
                raise LogIOError(f"cannot open log {self.path}: not a directory")
            if readonly and not self._is_log():
                raise LogNotFoundError(f"no log at {self.path} (no {TOPICS_DIR}/ directory)")
            self._format = self._read_format()
        if recover:
            if readonly:
                raise TopicError(f"log {self.path} is open read-only: recovery writes")
            self.recoveries = self.recover()

    def _read_format(self) -> int:
        """The format the log's marker names (1 without a marker); a newer one is refused."""
        try:
            raw = files.read_small(self.path / LOG_FILE, limit=1 << 16)
        except FileNotFoundError:
            return 1
        except OSError as e:
            raise LogIOError(f"cannot read {self.path / LOG_FILE}: {e.strerror or e}") from e
        try:
            found = json.loads(raw)["format"]
            if not isinstance(found, int) or isinstance(found, bool) or found < 1:
                raise ValueError(found)
        except (ValueError, KeyError, TypeError) as e:
            raise LogIOError(f"{self.path / LOG_FILE}: not a logstore marker ({e!r})") from None
        if found > READS:
            raise LogIOError(
                f"log {self.path} is of format {found}, written by a newer logstore; this one reads formats "
                f"1..{READS}: upgrade logstore to read it"
            )
        return int(found)

    def require_format(self, needed: int) -> None:
        """(Writers.) Raise the log's marker to format `needed` before writing what older readers
        cannot decode (format 2: row frames); formats only add, so every older log reads as it is."""
        if self._format >= needed:
            return
        if self.readonly:
            raise TopicError(f"log {self.path} is open read-only")
        self._format = self._read_format()
        if self._format < needed:
            write_atomic(self.path / LOG_FILE, json.dumps({"format": needed}).encode(), "upgrade log marker")
            self._format = needed

    def _is_log(self) -> bool:
        return (self.path / TOPICS_DIR).is_dir() or (self.path / LOG_FILE).is_file()

    def _ensure_created(self) -> None:
        """Create the log's directory, marker and ``topics/`` (each fsynced into its parent) if
        missing; a non-empty directory that is not a log is refused, never turned into one."""
        if self.readonly:
            raise TopicError(f"log {self.path} is open read-only")
        try:
            if self._is_log():
                make_dir(self.path / TOPICS_DIR)
                return
            if self.path.is_dir() and any(not n.startswith(".") for n in os.listdir(self.path)):
                raise LogIOError(
                    f"{self.path} is not a logstore log and not empty: refusing to create a log in it "
                    "(pick a new or empty directory)"
                )
            make_dir(self.path)
            marker = self.path / LOG_FILE
            if not marker.exists():
                write_atomic(marker, json.dumps({"format": FORMAT}).encode(), "create log marker")
            self._format = FORMAT
            make_dir(self.path / TOPICS_DIR)
        except OSError as e:
            raise LogIOError(f"cannot create log directory {self.path}: {e.strerror or e}") from e

    def __repr__(self) -> str:
        return f"logstore.Log({str(self.path)!r})"

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for bg in self._background.values():
            bg.close()
        self._background.clear()
        for t in self._topics.values():
            t.close()
        self.remotes.close()

    # --- topics ------------------------------------------------------------------------------
    def topics(self) -> list[str]:
        """Names of the topics in this log, sorted."""
        root = self.path / TOPICS_DIR
        try:
            names = os.listdir(root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise LogIOError(f"cannot list topics in {root}: {e.strerror or e}") from e
        return sorted(n for n in names if not n.startswith(".") and os.path.lexists(root / n / TOPIC_FILE))

    def topic(self, name: str) -> Topic:
        validate_name(name, "topic")
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = Topic(self, name)
        return t

    def _existing(self, name: str) -> Topic:
        t = self.topic(name)
        _ = t.config  # raises TopicNotFoundError
        return t

    def create_topic(
        self,
        name: str,
        schema: Any,
        *,
        partitions: int = 1,
        key_field: str | None = None,
        event_time_field: str | None = _DEFAULT,  # type: ignore[assignment]
        compatibility: str = "BACKWARD",
        compression: str | None = "zstd",
        segment_bytes: int | None = None,
        segment_ms: int | None = None,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        max_record_bytes: int | None = None,
        remote: str | None = None,
        local_retention_ms: int | None = None,
        local_retention_bytes: int | None = None,
        exist_ok: bool = False,
    ) -> TopicConfig:
        """Create a topic with `schema` (Avro dict/JSON/.avsc path/shipped name, or pyarrow.Schema).

        The event-time field defaults to ``event_time`` when the schema has one; it must be a
        timestamp. `key_field` (a string, bytes or integer field) picks the partition of each record.
        `remote` (a `pyarrow.fs` URI) is where sealed segments past the local retention move
        (`Log.tier`); credentials in it are used by this process, never written to the topic.
        """
        validate_name(name, "topic")
        if self.readonly:
            raise TopicError(f"log {self.path} is open read-only")
        t = self.topic(name)
        if t.exists():
            if exist_ok:
                return t.config
            raise TopicExistsError(f"topic {name!r} already exists in {self.path}")
        avro = schemas.parse(schema, name=name.replace(".", "_").replace("-", "_"))
        arrow = schemas.to_arrow(avro)
        if event_time_field is _DEFAULT:
            event_time_field = "event_time" if "event_time" in arrow.names else None
        check_fields(name, arrow, event_time_field, key_field)
        kwargs = {
            k: v
            for k, v in dict(segment_bytes=segment_bytes, max_record_bytes=max_record_bytes).items()
            if v is not None
        }
        config = TopicConfig(
            name=name,
            partitions=partitions,
            key_field=key_field,
            event_time_field=event_time_field,
            compatibility=compatibility,
            compression=compression,
            segment_ms=segment_ms,
            retention_ms=retention_ms,
            retention_bytes=retention_bytes,
            remote=None if remote is None else self.remotes.configure(remote),
            local_retention_ms=local_retention_ms,
            local_retention_bytes=local_retention_bytes,
            **kwargs,
        )
        self._ensure_created()
        root = self.path / TOPICS_DIR
        tmp = root / f".create-{name}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            # built whole in a temp directory, every file and entry fsynced, then renamed into
            # place and the rename fsynced: after a power cut the topic is all there or absent
            os.mkdir(tmp, 0o755)
            fd = os.open(tmp / TOPIC_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o644)
            try:
                write_all(fd, config.to_json().encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            Registry(tmp / SCHEMAS_DIR).register(avro, compatibility)
            for p in range(partitions):
                os.mkdir(tmp / partition_dirname(p), 0o755)
            fsync_dir(tmp)
            try:
                os.rename(tmp, root / name)
            except OSError:
                if (root / name).exists():
                    if exist_ok:
                        return self._existing(name).config
                    raise TopicExistsError(f"topic {name!r} already exists in {self.path}") from None
                raise
            fsync_dir(root)
        except OSError as e:
            raise LogIOError(f"cannot create topic {name!r} in {root}: {e.strerror or e}") from e
        finally:
            if os.path.lexists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        t._config = None
        return t.config

    def config(self, topic: str) -> TopicConfig:
        """The settings of `topic`."""
        return self._existing(topic).config

    def alter_topic(self, topic: str, **settings: Any) -> TopicConfig:
        """Change settings of `topic` (retention_ms, retention_bytes, compression, segment_bytes,
        segment_ms, compatibility, max_record_bytes, remote, local_retention_ms/bytes) and return the
        new ones; partitions, key and event-time field are refused. When writers see a change:
        `logstore.admin.alter_topic`."""
        from .admin import alter_topic

        return alter_topic(self, topic, **settings)[1]

    def delete_topic(self, topic: str) -> DeletedTopic:
        """Delete `topic` and every consumer group's cursor of it, crash-safely (whole or gone after
        a power cut); refused while a writer holds one of its partitions (`logstore.admin`)."""
        from .admin import delete_topic

        return delete_topic(self, topic)

    def schema(self, topic: str) -> dict[str, Any]:
        """The latest Avro schema of `topic` (a copy: changing it changes nothing in the log)."""
        return copy.deepcopy(self._existing(topic).version().schema)

    def arrow_schema(self, topic: str, *, system_columns: bool = False) -> pa.Schema:
        """The Arrow schema records of `topic` are read as (optionally with the system columns)."""
        arrow = self._existing(topic).version().arrow
        return output_schema(arrow, None) if system_columns else arrow

    def register_schema(self, topic: str, schema: Any) -> int:
        """Register a new schema version under the topic's compatibility mode; returns its number.

        Raises `SchemaIncompatibleError` listing every reason when the mode refuses it.
        """
        t = self._existing(topic)
        sv = t.registry.register(schema, t.config.compatibility)
        return sv.version

    def schemas(self, topic: str) -> list[SchemaVersion]:
        """Every schema version of `topic`, oldest first (version, id, schema)."""
        t = self._existing(topic)
        t.registry.reload()
        return t.registry.versions()

    # --- writing and reading -----------------------------------------------------------------
    def writer(
        self,
        topic: str,
        *,
        durability: str = "flush",
        clock: Callable[[], datetime] | None = None,
        batch_records: int = 10_000,
        batch_bytes: int = 8 * 1024 * 1024,
        linger_ms: float | None = 200.0,
        schema: Any = None,
        validate: bool = True,
        max_clock_skew: float | None = 60.0,
    ) -> Writer:
        """A `Writer` appending to `topic` (created on first use from the data if missing).

        ``validate=False`` trusts Arrow input that has exactly the topic's schema (no per-value
        checks such as nulls in required fields); anything else is still validated.

        `schema` pins the writer to that schema version (registered if new and compatible), so a
        producer built against an older version keeps writing it; readers resolve old frames.

        `max_clock_skew` (seconds, None for no bound): a commit whose append time, by `clock`, is
        further than this ahead of the machine's own clock is refused with `ClockSkewError` and
        writes nothing. Refused, not clamped: a clamped time would be a made-up one, and the
        append time is what replay's fences rest on.
        """
        if self.readonly:
            raise TopicError(f"log {self.path} is open read-only")
        t = self.topic(topic)
        if t.exists():
            finish_topic(t)  # what a tiering process killed half-way left (`tier.finish`)
            if self.tier_in_background and t.remote is not None and topic not in self._background:
                self._background[topic] = BackgroundTier(t)
        version = None
        if schema is not None:
            if not t.exists():
                self.create_topic(topic, schema)
            version = t.registry.register(schema, t.config.compatibility).version
        return Writer(
            t,
            durability=durability,
            clock=clock,
            batch_records=batch_records,
            batch_bytes=batch_bytes,
            linger_ms=linger_ms,
            schema_version=version,
            validate=validate,
            max_clock_skew=max_clock_skew,
        )

    def read(
        self,
        topic: str,
        start: Bound = None,
        end: Bound = None,
        *,
        partitions: Sequence[int] | None = None,
        columns: Sequence[str] | None = None,
        by: str = "append_time",
        on_corrupt: str = "raise",
    ) -> pa.Table:
        """Read records [start, end) of `topic` into one Arrow table.

        Bounds are offsets (an int for every partition, or a {partition: offset} mapping) or aware
        datetimes (append time by default, event time with ``by="event_time"``); start is inclusive,
        end exclusive. Rows are grouped by partition, in offset order, with `_partition`, `_offset`
        and `_append_time`. A frame that fails its checksum raises `CorruptFrameError`
        (``on_corrupt="skip"`` skips it instead; use `reader()` to see the gaps).
        """
        table, _ = read_table(self._existing(topic), start, end, partitions, columns, by, on_corrupt)
        return table

    def reader(
        self,
        topic: str,
        start: Bound = None,
        end: Bound = None,
        *,
        partitions: Sequence[int] | None = None,
        columns: Sequence[str] | None = None,
        by: str = "append_time",
        follow: bool = False,
        poll_interval: float = 0.05,
        on_corrupt: str = "raise",
        read_ahead: int = 0,
    ) -> Reader:
        """An iterator of RecordBatches, each one or more whole frames in offset order (runs of small
        row frames come as one batch; `_append_time` tells the commits apart); ``follow=True`` tails new data.

        ``read_ahead=n`` verifies and decodes up to n frames ahead on a thread of the reader's
        own (decompressing there, which leaves Arrow's CPU pool to the loop), so decoding overlaps
        whatever the loop does with each batch (a damaged frame still
        raises at its place; with ``on_corrupt="skip"`` its gap may be listed a little early). By
        default a frame is read when it is asked for.
        """
        return Reader(
            self._existing(topic),
            start=start,
            end=end,
            partitions=partitions,
            columns=columns,
            by=by,
            follow=follow,
            poll_interval=poll_interval,
            on_corrupt=on_corrupt,
            read_ahead=read_ahead,
        )

    def consumer(
        self,
        topic: str,
        group: str,
        *,
        partitions: Sequence[int] | None = None,
        reset: str = "earliest",
        columns: Sequence[str] | None = None,
    ) -> Consumer:
        """A `Consumer` with a durable cursor for `group`: `poll()`, then `commit()`."""
        return Consumer(self, self._existing(topic), group, partitions=partitions, reset=reset, columns=columns)

    def snapshot(self, topic: str) -> dict[int, Snapshot]:
        """Per partition, the committed state of `topic` now: a `Snapshot` with `start_offset` and
        `end_offset`. Reads bounded by it (`read`/`reader` with its offsets, `offset_for_time` with
        it) see exactly what was committed at this instant, however much is appended later."""
        t = self._existing(topic)
        return {p: t.partition(p).snapshot() for p in range(t.config.partitions)}

    def offset_for_time(
        self, topic: str, partition: int, when: datetime | int, snapshot: Snapshot | None = None
    ) -> int:
        """The first offset of `partition` whose append time is at or after `when` (an aware
        datetime, or microseconds since the epoch), within `snapshot` (default: now); the
        snapshot's end offset if there is none (Kafka's offsetsForTimes)."""
        t = self._existing(topic)
        part = t.partition(partition)
        snap = part.snapshot() if snapshot is None else snapshot
        if isinstance(when, datetime):
            us = to_us(when, "when")
        elif isinstance(when, int) and not isinstance(when, bool):
            us = when
        else:
            raise ClockError(f"when must be an aware datetime or int microseconds, found {when!r}")
        return part.offset_for_append_time(snap, us)

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset just past the last committed record (a snapshot)."""
        t = self._existing(topic)
        return {p: t.partition(p).snapshot().end_offset for p in range(t.config.partitions)}

    def start_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the first offset still stored (after retention)."""
        t = self._existing(topic)
        return {p: t.partition(p).snapshot().start_offset for p in range(t.config.partitions)}

    def duckdb(
        self,
        con: Any = None,
        *,
        topics: Sequence[str] | None = None,
        start: Bound = None,
        end: Bound = None,
        by: str = "append_time",
    ) -> Any:
        """A DuckDB connection with one view per topic, named as the topic (see `logstore.sql`).

        The views hold a consistent snapshot; `start`/`end` restrict (and prune) what is read.
        """
        from .sql import attach

        return attach(self, con, topics=topics, start=start, end=end, by=by)

    # --- maintenance -------------------------------------------------------------------------
    def recover(self) -> list[Recovery]:
        """Recover every partition no live writer holds: truncate torn tails, rewrite indexes.

        Writers do this for a partition before their first commit to it; this is for an operator
        (``logstore recover``). A topic whose topic.json is damaged is skipped and logged.
        Returns what was repaired.
        """
        if self.readonly:
            raise TopicError(f"log {self.path} is open read-only: recovery writes")
        done = []
        for name in self.topics():
            t = self.topic(name)
            try:
                n = t.config.partitions
            except LogstoreError as e:
                log.warning("recovery skips topic %r: %s", name, e)
                continue
            for p in range(n):
                rec = t.partition(p).recover()
                if rec is not None and (rec.bytes_truncated or rec.problems or rec.index_rebuilt):
                    done.append(rec)
        return done

    def describe(self, topic: str | None = None) -> dict[str, Any]:
        """Partitions, segments (local or remote), offset and time ranges, bytes of one topic (or of
        all, by name; a damaged topic's entry says its error)."""
        return describe_log(self, topic)

    def verify(self, topic: str | None = None, *, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Check every frame's checksums, offsets and the indexes, remote segments read from their
        store; `report.ok` is False on damage. `progress(bytes_checked)` is called after each segment."""
        return verify_log(self, topic, progress)

    def tier(self, topic: str | None = None, *, now: datetime | None = None) -> TierReport:
        """Move the sealed segments past their topic's local retention to its remote store (every
        topic with a remote, or `topic`), after finishing what an interrupted run left (`tier.py`)."""
        if self.readonly:
            raise TopicError(f"log {self.path} is open read-only")
        report = TierReport()
        when = to_us(now) if now is not None else now_us()
        for name in [topic] if topic is not None else self.topics():
            tier_topic(self._existing(name), report, now=when)
        return report

    def remote_stats(self) -> RemoteStats:
        """What this log's remote reads fetched (bytes, requests), uploaded and found cached."""
        return self.remotes.stats()

    def enforce_retention(self, topic: str | None = None, *, now: datetime | None = None) -> RetentionReport:
        """Delete whole sealed segments past the topics' retention time or size."""
        report = RetentionReport()
        for name in [topic] if topic is not None else self.topics():
            retention_topic(self._existing(name), report, now)
        return report


def open(  # noqa: A001
    path: str | os.PathLike[str], *, readonly: bool = False, recover: bool = False, **remote: Any
) -> Log:
    """Open the log at `path`. Writes nothing: a missing log is created by its first topic.

    ``readonly=True`` refuses every write and raises `LogNotFoundError` when there is no log at
    `path`. ``recover=True`` runs `Log.recover()` now (a writer recovers a partition's torn tail
    before its first commit to it anyway). The remote tier: ``remote=URI`` (the store of topics
    without their own), ``cache_dir`` (default ``<log>/cache``; a read-only log's is a temporary
    directory), ``cache_bytes``, ``block_bytes`` (of a range read), ``tier_in_background`` (a
    writer's log moves what is due while it appends).
    """
    return Log(path, readonly=readonly, recover=recover, **remote)

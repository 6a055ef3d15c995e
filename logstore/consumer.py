"""Consumer groups: durable read cursors, ``<log>/groups/<group>/<topic>.json``.

The file is a JSON object ``{"format": 1, "topic": ..., "group": ..., "offsets": {"<partition>":
next_offset}}``. `poll()` moves the in-memory position; only `commit()` makes it durable: after a
crash, consumption resumes at the last commit (at-least-once).

Several consumers may share a group, each reading its own partitions, in threads or processes:
`commit()` is a read-modify-write of the whole cursor (it replaces only its own partitions' offsets)
serialized by an exclusive ``flock`` on ``.<topic>.json.lock`` beside the cursor. Each commit opens
its own descriptor of the lock file, so two threads of one process exclude each other too (flock
locks belong to the open file, not the process). Two consumers of one group on the *same*
partition still race (the later commit wins): give each partition one consumer per group.

Durability, in order: ``groups/`` and ``groups/<group>/`` are each fsynced into their parent when
created; the cursor is replaced atomically (temp file, fsync, rename, fsync of the directory), so
it is either the old or the new one after a crash.

Offsets are checked: `seek()` and `commit()` refuse an offset that is not an int in
``[0, end offset of the partition now]`` (`OffsetOutOfRangeError`, a ConsumerError and a
ValueError), and a cursor file holding one, or a partition the topic does not have, is reported
as damaged (ConsumerError naming the file and the field) rather than trusted. An offset below
the partition's first retained offset is valid (retention deleted what it pointed at): `poll()`
resumes at the first retained record.

Constructing and polling never write: a consumer of a topic nobody wrote yet (no lock file, no
segment) sees empty partitions and waits for data. Only `commit()` creates files.
"""

from __future__ import annotations

import fcntl
import json
import numbers
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import ArgumentError, ConsumerError, LogIOError, OffsetOutOfRangeError
from .files import CLOEXEC, NOFOLLOW, make_dir, read_small, write_atomic
from .names import GROUPS_DIR, validate_name
from .notify import ChangeWatch
from .reader import FrameReader
from .rowframes import warm

if TYPE_CHECKING:
    from .log import Log
    from .topic import Topic

CURSOR_FORMAT = 1


def _as_offset(value: Any) -> int | None:
    """`value` as an int offset if it is an integer (bool excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


class Consumer:
    """Reads a topic from a group's committed position: `poll()` then `commit()`."""

    def __init__(
        self,
        log: Log,
        topic: Topic,
        group: str,
        *,
        partitions: Sequence[int] | None = None,
        reset: str = "earliest",
        columns: Sequence[str] | None = None,
    ) -> None:
        validate_name(group, "group")
        if reset not in ("earliest", "latest"):
            raise ArgumentError(f"reset must be 'earliest' or 'latest', found {reset!r}")
        self.log = log
        self.topic = topic
        self.group = group
        self.path: Path = Path(log.path) / GROUPS_DIR / group / f"{topic.name}.json"
        self.lock_path: Path = self.path.with_name(f".{self.path.name}.lock")
        n = topic.config.partitions
        if partitions is None:
            self.partitions = list(range(n))
        else:
            self.partitions = []
            for p in partitions:
                number = _as_offset(p)
                if number is None or not 0 <= number < n:
                    raise ArgumentError(f"topic {topic.name!r} has partitions 0..{n - 1}, asked for {p!r}")
                if number not in self.partitions:
                    self.partitions.append(number)
        self._frames = FrameReader(topic, columns, "raise")
        warm()  # a consumer polls the live path: set up row-frame decoding before the first poll
        committed = self.committed()
        self.positions: dict[int, int] = {}
        for p in self.partitions:
            if p in committed:
                self.positions[p] = committed[p]
            else:
                snap = topic.partition(p).snapshot()
                self.positions[p] = snap.start_offset if reset == "earliest" else snap.end_offset

    # --- the durable cursor ----------------------------------------------------------------------
    def committed(self) -> dict[int, int]:
        """The durable cursor: partition -> next offset to read (empty if never committed).

        Raises ConsumerError naming the file and the field when the cursor is damaged: not the
        JSON this module writes, another topic's or group's, a partition the topic does not have,
        or an offset that is not an int in [0, end offset of its partition now].
        """
        try:
            raw = read_small(self.path)
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise ConsumerError(f"consumer cursor {self.path} cannot be read: {e}") from None
        return self._parse(raw)

    def _damaged(self, field: str, why: str) -> ConsumerError:
        return ConsumerError(f"consumer cursor {self.path} is damaged: field {field!r} {why}")

    def _parse(self, raw: bytes) -> dict[int, int]:
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as e:
            raise ConsumerError(f"consumer cursor {self.path} is damaged: not JSON ({e})") from None
        if not isinstance(data, dict):
            raise ConsumerError(
                f"consumer cursor {self.path} is damaged: expected a JSON object, found {type(data).__name__}"
            )
        if data.get("format") != CURSOR_FORMAT:
            raise self._damaged("format", f"must be {CURSOR_FORMAT}, found {data.get('format')!r}")
        for field, expected in (("topic", self.topic.name), ("group", self.group)):
            if field in data and data[field] != expected:
                raise self._damaged(field, f"must be {expected!r}, found {data[field]!r}")
        offsets = data.get("offsets")
        if not isinstance(offsets, dict):
            raise self._damaged("offsets", f"must be an object of partition to offset, found {offsets!r:.80}")
        n = self.topic.config.partitions
        out: dict[int, int] = {}
        for key, value in offsets.items():
            field = f"offsets.{key}"
            if not (isinstance(key, str) and key.isascii() and key.isdigit()) or int(key) >= n:
                raise self._damaged(
                    field, f"names partition {key!r}, but topic {self.topic.name!r} has partitions 0..{n - 1}"
                )
            p = int(key)
            offset = _as_offset(value)
            end = self.topic.partition(p).snapshot().end_offset  # read after the file: ends only grow
            if offset is None or not 0 <= offset <= end:
                raise self._damaged(
                    field, f"must be an int offset in [0, {end}] (the end of partition {p} now), found {value!r:.80}"
                )
            out[p] = offset
        return out

    # --- reading ---------------------------------------------------------------------------------
    def poll(self, max_records: int = 10_000, timeout: float = 0.0) -> pa.Table:
        """The next records after the current position (at most `max_records`; maybe none).

        Waits up to `timeout` seconds for records to arrive when there are none, woken by a commit
        within a fraction of a millisecond (`notify.ChangeWatch`; polled every 50 ms where
        inotify is missing).
        """
        deadline = time.monotonic() + timeout
        watch = ChangeWatch(self.topic.partition(p).dir for p in self.partitions) if timeout > 0 else None
        try:
            return self._poll(max_records, deadline, watch)
        finally:
            if watch is not None:
                watch.close()

    def _poll(self, max_records: int, deadline: float, watch: ChangeWatch | None) -> pa.Table:
        while True:
            batches: list[pa.RecordBatch] = []
            budget = max_records
            for p in self.partitions:
                if budget <= 0:
                    break
                part = self.topic.partition(p)
                snap = part.snapshot()
                lo = max(self.positions[p], snap.start_offset)
                hi = min(snap.end_offset, lo + budget)
                for batch in self._frames.partition_batches(part, snap, lo, hi):
                    batches.append(batch)
                    budget -= batch.num_rows
                self.positions[p] = max(lo, hi)
            if batches or time.monotonic() >= deadline or watch is None:
                return pa.Table.from_batches(batches, schema=self._frames.schema)
            watch.wait(min(0.05 if not watch.live else 1.0, max(0.0, deadline - time.monotonic())))

    def _checked(self, partition: Any, offset: Any) -> tuple[int, int]:
        """(partition, offset) as ints, or OffsetOutOfRangeError saying what is wrong."""
        p = _as_offset(partition)
        if p is None or p not in self.positions:
            raise OffsetOutOfRangeError(
                f"consumer of topic {self.topic.name!r} (group {self.group!r}) reads partitions "
                f"{self.partitions}, not {partition!r}"
            )
        end = self.topic.partition(p).snapshot().end_offset
        value = _as_offset(offset)
        if value is None or not 0 <= value <= end:
            raise OffsetOutOfRangeError(
                f"partition {p} of topic {self.topic.name!r}: offset {offset!r:.80} is not valid; an offset is "
                f"an int in [0, {end}] (0 to the end offset of the partition now)"
            )
        return p, value

    def seek(self, partition: int, offset: int) -> None:
        """Move the in-memory position of `partition` (commit() makes it durable).

        `offset` must be an int in [0, end offset of the partition now] (OffsetOutOfRangeError).
        """
        p, value = self._checked(partition, offset)
        self.positions[p] = value

    def commit(self, offsets: Mapping[int, int] | None = None) -> None:
        """Durably record `offsets` (default: the current positions) in the group's cursor.

        Only the partitions given change; other consumers' partitions of the group are kept
        (read-modify-write under the cursor's lock). Offsets are checked as by `seek()`. The
        records below them are synced first (`Partition.sync_through`): after a power cut a
        cursor never points past the data, whatever durability mode wrote it.
        """
        if getattr(self.log, "readonly", False):
            raise ConsumerError(f"cannot commit consumer cursor {self.path}: the log is open read-only")
        items = self.positions.items() if offsets is None else offsets.items()
        mine = dict(self._checked(p, o) for p, o in items)
        for p, offset in sorted(mine.items()):
            # the records a cursor passes are durable before the cursor is, in every mode
            self.topic.partition(p).sync_through(offset)
        try:
            make_dir(self.path.parent)  # groups/ and groups/<group>/, each fsynced into its parent
        except OSError as e:
            raise LogIOError(f"create consumer group directory {self.path.parent}: {e.strerror or e}") from None
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
        except OSError as e:
            raise LogIOError(f"open consumer cursor lock {self.lock_path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = self.committed()
            current.update(mine)
            doc = {
                "format": CURSOR_FORMAT,
                "topic": self.topic.name,
                "group": self.group,
                "offsets": {str(k): v for k, v in sorted(current.items())},
            }
            write_atomic(self.path, (json.dumps(doc, indent=2) + "\n").encode(), "commit consumer cursor")
        finally:
            os.close(fd)  # releases the flock

    def lag(self) -> dict[int, int]:
        """Records between the current position and the end, per partition."""
        return {p: max(0, self.topic.partition(p).snapshot().end_offset - pos) for p, pos in self.positions.items()}

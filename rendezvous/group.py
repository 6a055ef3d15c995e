"""One member of a consumer group on the inputs topic: its partitions, its tail, its offset commits.

Consumer groups in logstore have no member assignment: each member reads the partitions it is
given (`assigned_partitions`: a list, or member I of N taking partitions p with p % N == I), and
the members of one group must be given disjoint sets covering the topic (two consumers of one
group on one partition race on its cursor).

`InputTail` reads the assigned partitions from the group's committed position on a thread of its
own, `OffsetCommits` commits the positions of what was handled, on another: neither a wait for
input nor a cursor's fsyncs ever sits on the path of a batch being scored.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Sequence

import pyarrow as pa

import logstore

__all__ = ["InputTail", "OffsetCommits", "advance", "assigned_partitions", "default_group"]

POLL_S = 0.2  # the longest a stop request waits for an idle wait to return


def default_group(name: str, version: str) -> str:
    """The consumer group of a model: ``<name>_<version>`` (':' cannot be in a group name), with
    characters a group name cannot hold replaced by '_'."""
    return re.sub(r"\.\.+", ".", re.sub(r"[^A-Za-z0-9._-]", "_", f"{name}_{version}"))


def assigned_partitions(
    n: int, partitions: Sequence[int] | None = None, member: tuple[int, int] | None = None
) -> list[int]:
    """The partitions of an `n`-partition topic a runner reads: `partitions`, or member (i, k)'s
    share {p : p % k == i}, or all of them."""
    if partitions is not None and member is not None:
        raise ValueError("give partitions or member, not both")
    if member is not None:
        i, k = member
        if not 0 <= i < k:
            raise ValueError(f"member must be I/N with 0 <= I < N, found {i}/{k}")
        return [p for p in range(n) if p % k == i]
    if partitions is None:
        return list(range(n))
    bad = [p for p in partitions if not 0 <= p < n]
    if bad:
        raise ValueError(f"the inputs topic has partitions 0..{n - 1}, asked for {bad}")
    return sorted(set(partitions))


def advance(positions: dict[int, int], table: pa.Table) -> None:
    """Move each partition's position past the rows of `table` (offsets grow within a partition)."""
    parts = table.column("_partition").to_pylist()
    offsets = table.column("_offset").to_pylist()
    for p, o in zip(parts, offsets):
        if o >= positions.get(p, 0):
            positions[p] = o + 1


class InputTail:
    """The assigned partitions of the inputs topic from given offsets, tailed by a thread of its own.

    The thread iterates one `Log.reader(follow=True)` (one inotify watch for its whole life: it
    wakes within a fraction of a millisecond of a commit) and hands frames over through a bounded
    queue (back-pressure: it reads at most `max_frames` ahead). `get()` returns what has arrived,
    up to a number of rows, in each partition's offset order. `close()` returns at once; the
    thread ends within `POLL_S`.
    """

    def __init__(self, log: logstore.Log, topic: str, start: dict[int, int], max_frames: int = 256) -> None:
        self._queue: queue.Queue[pa.RecordBatch | None] = queue.Queue(max_frames)
        self._closed = threading.Event()
        self.error: BaseException | None = None
        self._rest: pa.RecordBatch | None = None  # the rows of a split frame not handed out yet
        self._reader = log.reader(topic, start=dict(start), partitions=sorted(start), follow=True, poll_interval=POLL_S)
        self._thread = threading.Thread(target=self._loop, name=f"rendezvous-tail-{topic}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            for batch in self._reader:
                while not self._closed.is_set():
                    try:
                        self._queue.put(batch, timeout=POLL_S)
                        break
                    except queue.Full:
                        continue
                if self._closed.is_set():
                    return
        except BaseException as e:  # raised by get()
            self.error = e
            self._queue.put(None)

    def get(self, max_rows: int, timeout: float, linger: float = 0.0) -> pa.Table:
        """At most `max_rows` rows that arrived, as one table (waiting up to `timeout` for a first
        frame, then up to `linger` for more); empty if none came. A frame larger than what is
        left is split: its remaining rows come first in the next call."""
        frames: list[pa.RecordBatch] = []
        rows = 0
        deadline = None
        wait = timeout
        while rows < max_rows:
            if self._rest is not None:
                frame, self._rest = self._rest, None
            else:
                try:
                    frame = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    if not frames or deadline is None or (wait := deadline - time.monotonic()) <= 0:
                        break
                    continue
                if frame is None:
                    assert self.error is not None
                    raise self.error
            room = max_rows - rows
            if frame.num_rows > room:
                frame, self._rest = frame.slice(0, room), frame.slice(room)
            frames.append(frame)
            rows += frame.num_rows
            if deadline is None:
                deadline = time.monotonic() + linger
            wait = max(0.0, deadline - time.monotonic())
        return pa.Table.from_batches(frames, schema=self._reader.schema)

    def close(self) -> None:
        """Stop tailing: the thread ends within `POLL_S` (at its reader's next wake-up)."""
        self._closed.set()
        # a following reader re-checks `follow` after every wake-up (a commit, or poll_interval)
        # and returns once it is off; it has no other way to be stopped from outside its thread
        self._reader.follow = False


class OffsetCommits:
    """Commits a group's offsets off the scoring path, on a thread of its own, at most every `interval` s.

    `put(offsets)` is called once a batch's scores are committed; the thread commits the latest
    offsets put (those put meanwhile are folded into the next commit). A cursor commit syncs the
    input partitions (an ``fdatasync`` of the segment the front door is appending to) and the cursor
    file: tens of ms here, and a sync per batch slows the front door's own appends, so commits are
    spaced (as Kafka's ``auto.commit.interval.ms``). Only re-scoring after a crash grows with the
    interval; nothing is committed before its scores are. `close()` commits what is left and
    raises a commit's error.
    """

    def __init__(self, consumer: logstore.Consumer, interval: float = 1.0) -> None:
        self.consumer = consumer
        self.interval = interval
        self.commits = 0
        self._cond = threading.Condition()
        self._pending: dict[int, int] | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="rendezvous-offset-commits", daemon=True)
        self._thread.start()

    def put(self, offsets: dict[int, int]) -> None:
        with self._cond:
            if self._error is not None:
                raise self._error
            self._pending = dict(offsets)
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                offsets, self._pending = self._pending, None
                if offsets is None:
                    return
            try:
                self.consumer.commit(offsets)
                self.commits += 1
            except BaseException as e:  # raised by the next put() or close()
                with self._cond:
                    self._error = e
                return
            with self._cond:  # spaced: the next commit waits out the interval (or the close)
                self._cond.wait_for(lambda: self._closed, timeout=self.interval)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error

"""The remote tier: sealed segments moved to a remote store, half-done moves finished, and
retention of remote segments (the manifest's states: `manifest.py`; the stores: `remote.py`).

A topic with a remote (its own ``remote``, or the log's from `logstore.open(remote=...)`) keeps
on local disk what its local retention says (``local_retention_ms`` / ``local_retention_bytes``;
with neither, only the active segment); older sealed segments are *due* and move, oldest first,
so the remote segments of a partition always precede its local ones. Moving them (up to
`MOVE_BATCH` at once: one manifest write per step, uploads and read-backs in parallel), under the
partition's tier lock (``.tier.lock``; a writer's commits go on meanwhile):

1. its CRC-32C (the whole file) and its index (whole, derived from the frames if the file is not)
   and summary are taken; the log's marker is raised to format 3 (an older logstore refuses the
   log rather than take its remote history for deleted);
2. the manifest records the move as ``uploading`` (the local file stays authoritative);
3. the segment and its index are uploaded, then read back and their checksums compared;
4. under the partition's write lock (so retention cannot delete it in between), the manifest
   records it ``remote``, then the local files are deleted and the directory fsynced (a batch
   records its moves up to the first that failed; the others are undone).

A crash (SIGKILL, power cut) at any point leaves each segment in one authoritative place: before
step 4's manifest write the local file, after it the remote object. `finish` (run by the next
`tier`, and by a writer's open) completes or undoes what a crash left: an ``uploading`` move is
verified again and recorded, or its objects deleted; a local copy of a ``remote`` segment is
evicted; a ``deleted`` segment's objects are deleted once its delay passed. Readers never write:
they read where the manifest says (`partition.Partition.view`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import manifest as manifest_mod
from .checksum import crc
from .errors import LogIOError
from .files import CLOEXEC, NOFOLLOW, fsync_dir, remove
from .manifest import DELETE_DELAY_US, MANIFEST_NAME, TIER_LOCK, Placed, changed
from .names import index_name, partition_dirname, segment_name
from .remote import CHUNK, MemorySegmentView, io_pool
from .timeutil import MAX_TIME, MIN_TIME, now_us

if TYPE_CHECKING:
    from .describe import RetentionReport
    from .partition import Partition
    from .topic import Topic

log = logging.getLogger("logstore")
TIERED_FORMAT = 3  # the log format whose partitions may keep segments in a remote store
MOVE_BATCH = 8  # segments moved together (their uploads in parallel, one manifest write per step)


@dataclass
class TierReport:
    """What `Log.tier` did: segments moved (topic, partition, base offset, bytes), half-done
    steps of earlier runs finished or undone, partitions another process was tiering."""

    moved: list[tuple[str, int, int, int]] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    busy: list[tuple[str, int]] = field(default_factory=list)

    @property
    def bytes_moved(self) -> int:
        return sum(m[3] for m in self.moved)


def object_key(topic: str, partition: int, base: int) -> str:
    """A new key for a segment's object under its store's root, ``<topic>/<partition>/<base>.<random>.seg``:
    every move gets its own (the manifest records it), so two logs sharing a prefix, a topic made
    again under an old name or a move made again after an undo never overwrite another's objects."""
    return f"{topic}/{partition_dirname(partition)}/{base:020d}.{secrets.token_hex(4)}.seg"


@contextmanager
def tier_lock(part: Partition, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the partition's tier lock (every manifest change is made under it); yields False
    without it when `blocking` is False and another holds it. Its own descriptor each time, so
    threads of one process exclude each other too."""
    path = part.dir / TIER_LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
    except OSError as e:
        raise LogIOError(f"cannot open tier lock {path}: {e.strerror or e}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the flock


def tier_topic(topic: Topic, report: TierReport, *, now: int | None = None, blocking: bool = True) -> None:
    """Finish half-done steps, then move every due sealed segment of `topic` to its remote."""
    remote = topic.remote
    now = now_us() if now is None else now
    for p in range(topic.config.partitions):
        part = topic.partition(p)
        if not part.dir.is_dir():
            continue
        with tier_lock(part, blocking=blocking) as held:
            if not held:
                report.busy.append((topic.name, p))
                continue
            finish(topic, part, report, now)
            if remote is None:
                continue
            bases = due(topic, part, now)
            for i in range(0, len(bases), MOVE_BATCH):
                move(topic, part, bases[i : i + MOVE_BATCH], remote, report, now)


def finish_topic(topic: Topic, report: TierReport | None = None) -> None:
    """(A writer's open.) `finish` every partition of `topic` that has a manifest and no other
    tiering process; a failure (the store unreachable) is logged: the next `tier` finishes it."""
    report = report if report is not None else TierReport()
    for p in range(topic.config.partitions):
        part = topic.partition(p)
        if not (part.dir / MANIFEST_NAME).exists():
            continue
        try:
            with tier_lock(part, blocking=False) as held:
                if held:
                    finish(topic, part, report, now_us())
        except (OSError, LogIOError) as e:
            log.warning("tiering of %s not finished (%s): the next `logstore tier` finishes it", part.dir, e)
    for step in report.finished:
        log.info("tier: %s", step)


def due(topic: Topic, part: Partition, now: int) -> list[int]:
    """The local sealed segments past the topic's local retention, oldest first (all of them
    without a local retention)."""
    cfg = topic.config
    bases = part.local_bases()
    placed = part.placement.current().segments
    sealed = [b for b in bases[:-1] if b not in placed]
    if not sealed or sealed != bases[: len(sealed)]:
        return []
    sizes = {b: part.sealed_size(b) for b in sealed}
    total = sum(sizes.values()) + os.lstat(part.seg_path(bases[-1])).st_size
    out = []
    for base in sealed:
        if cfg.local_retention_ms is not None or cfg.local_retention_bytes is not None:
            last = part.last_entry(base)
            old = cfg.local_retention_ms is not None and (
                last is None or int(last["append_time"]) < now - cfg.local_retention_ms * 1000
            )
            big = cfg.local_retention_bytes is not None and total > cfg.local_retention_bytes
            if not (old or big):
                break
        out.append(base)
        total -= sizes[base]
    return out


def _file_chunks(path: os.PathLike[str]) -> Iterator[bytes]:
    fd = os.open(path, os.O_RDONLY | NOFOLLOW | CLOEXEC)
    try:
        while chunk := os.read(fd, CHUNK):
            yield chunk
    finally:
        os.close(fd)


def placed_for(topic: Topic, part: Partition, base: int, remote: str, now: int) -> tuple[Placed, bytes]:
    """The manifest entry of a move of local segment `base` (state ``uploading``) and its index bytes."""
    size, value = 0, 0
    for chunk in _file_chunks(part.seg_path(base)):
        size, value = size + len(chunk), crc(chunk, value)
    entries = part.sealed_entries(base)  # the index file, or derived from the frames
    raw = entries.tobytes()
    end = int(entries["base_offset"][-1] + entries["count"][-1]) if len(entries) else base
    times = entries["append_time"] if len(entries) else np.array([MIN_TIME])
    events = (MIN_TIME, MAX_TIME)  # none known: overlaps every range
    if len(entries):
        events = (int(entries["min_event_time"].min()), int(entries["max_event_time"].max()))
    key = object_key(topic.name, part.number, base)
    placed = Placed(
        base, "uploading", remote, key, size, value, len(raw), crc(raw), len(entries), end,
        int(times[0]), int(times[-1]), events[0], events[1], now,
    )  # fmt: skip
    return placed, raw


def move(topic: Topic, part: Partition, bases: list[int], remote: str, report: TierReport, now: int) -> None:
    """(Under the tier lock.) Move sealed segments `bases` (consecutive, oldest first) to `remote`:
    steps 1-4 of the module docstring for all of them at once (one manifest write per step, the
    uploads and read-backs in parallel). Raises LogIOError if one cannot be uploaded or read back
    equal (those before it are moved)."""
    moves = [placed_for(topic, part, base, remote, now) for base in bases]
    topic.log.require_format(TIERED_FORMAT)
    m = part.placement.current()
    for placed, _ in moves:
        m = m.with_entry(placed)
    manifest_mod.write(part.dir, m)
    store = topic.log.remotes.store(remote)

    def upload(job: tuple[Placed, bytes]) -> None:
        placed, index_raw = job
        store.upload(placed.key, _file_chunks(part.seg_path(placed.base)))
        store.upload(placed.index_key, [index_raw])

    errors = [f.exception() for f in [io_pool().submit(upload, job) for job in moves]]
    uploaded = next((i for i, e in enumerate(errors) if e is not None), len(moves))
    done = _settle(topic, part, [placed for placed, _ in moves], now, uploaded)
    report.moved += [(topic.name, part.number, p.base, p.bytes) for p, _ in moves[:done]]
    if done < len(moves):
        why = errors[done] or "it did not read back equal"
        raise LogIOError(f"tiering {part.seg_path(bases[done])} to {moves[done][0].uri}: {why}")


def _settle(topic: Topic, part: Partition, moves: list[Placed], now: int, uploaded: int | None = None) -> int:
    """(Under the tier lock.) Read uploaded objects back (the first `uploaded` of `moves`); those
    equal to their local segments, up to the first that is not, are recorded ``remote`` and their
    local copies evicted (under the partition's write lock, so retention cannot delete a local
    file in between); the other moves are undone. Returns how many moved."""
    store = topic.log.remotes.store(moves[0].remote) if moves else None

    def equal(placed: Placed) -> bool:
        assert store is not None
        try:
            ok = store.checksum(placed.key) == (placed.bytes, placed.crc)
            return ok and store.checksum(placed.index_key) == (placed.index_bytes, placed.index_crc)
        except FileNotFoundError:
            return False

    checked = list(io_pool().map(equal, moves[: len(moves) if uploaded is None else uploaded]))
    good = next((i for i, ok in enumerate(checked) if not ok), len(checked))
    with part.exclusive():
        while good and not all(os.path.lexists(part.seg_path(p.base)) for p in moves[:good]):
            good -= 1  # retention deleted one meanwhile: it and those after it stay local (undone)
        if good:
            m = part.placement.current()
            for placed in moves[:good]:
                m = m.with_entry(changed(placed, "remote", now))
            manifest_mod.write(part.dir, m)
            for placed in moves[:good]:
                _evict(part, placed.base)
    if good < len(moves):
        _undo(topic, part, moves[good:])
    return good


def _evict(part: Partition, base: int) -> None:
    """(Under the write lock, the segment recorded remote.) Delete its local files, durably."""
    removed = remove(part.seg_path(base)) | remove(part.idx_path(base))
    if removed:
        fsync_dir(part.dir)
    part.forget_index(base)


def _undo(topic: Topic, part: Partition, entries: list[Placed]) -> None:
    """(Under the tier lock.) Delete the objects of moves (or deleted segments), then their entries."""
    for placed in entries:
        store = topic.log.remotes.store(placed.remote)
        store.delete(placed.key)
        store.delete(placed.index_key)
    manifest_mod.write(part.dir, part.placement.current().without(*(p.base for p in entries)))


def finish(topic: Topic, part: Partition, report: TierReport, now: int) -> None:
    """(Under the tier lock.) Complete or undo what an interrupted move or deletion left."""
    m = part.placement.current()
    if not m.segments:
        return
    names = set(os.listdir(part.dir))
    where = f"{topic.name}[{part.number}]"
    for e in sorted(m.segments.values(), key=lambda e: e.base):
        local = segment_name(e.base) in names
        if e.state == "uploading":
            if local and _settle(topic, part, [e], now):
                report.finished.append(f"{where}: moved segment {e.base} (its upload was interrupted)")
            else:
                if not local:  # retention deleted it meanwhile (`_settle` undoes a failed move itself)
                    _undo(topic, part, [e])
                report.finished.append(f"{where}: undid an interrupted move of segment {e.base}")
        elif e.state == "remote" and (local or index_name(e.base) in names):
            with part.exclusive():
                _evict(part, e.base)
            report.finished.append(f"{where}: evicted the local copy of remote segment {e.base}")
        elif e.state == "deleted" and now - e.since >= DELETE_DELAY_US:
            _undo(topic, part, [e])


@contextmanager
def retention_guard(part: Partition) -> Iterator[bool]:
    """Hold the tier lock for retention if the partition has a manifest; yields whether it does."""
    if not (part.dir / MANIFEST_NAME).exists():
        yield False
        return
    with tier_lock(part):
        yield True


def expire_remote(topic: Topic, part: Partition, now: int, report: RetentionReport) -> bool:
    """(Under the tier lock.) Retention of remote segments by the topic's rules, oldest first,
    counting every byte of the partition, local or remote: expired ones are recorded ``deleted``
    (readers skip them at once; their objects go after `DELETE_DELAY_US`). True if no remote
    segment is left (retention goes on with the local ones)."""
    cfg = topic.config
    m = part.placement.current()
    remote = sorted(m.remote_bases())
    gone: list[Placed] = []
    if remote and (cfg.retention_ms is not None or cfg.retention_bytes is not None):
        total = sum(m.segments[b].bytes for b in remote)
        total += sum(os.lstat(part.seg_path(b)).st_size for b in part.local_bases())
        for base in remote:
            e = m.segments[base]
            expired = cfg.retention_ms is not None and e.last_append < now - cfg.retention_ms * 1000
            oversize = cfg.retention_bytes is not None and total > cfg.retention_bytes
            if not (expired or oversize):
                break
            gone.append(changed(e, "deleted", now))
            total -= e.bytes
            report.deleted.append((topic.name, part.number, e.uri, e.bytes))
    if gone:
        for e in gone:
            m = m.with_entry(e)
        manifest_mod.write(part.dir, m)
    finish(topic, part, TierReport(), now)
    return len(gone) == len(remote)


def verify_remote(topic: Topic, part: Partition, placed: Placed) -> tuple[MemorySegmentView | None, list[str]]:
    """For `verify`: remote segment `placed` read whole from its store (not the cache), and what
    is wrong with it beyond its frames (missing; not the bytes the manifest recorded)."""
    store = topic.log.remotes.store(placed.remote)
    try:
        data = store.read(placed.key)
    except FileNotFoundError:
        lost = f"records {placed.base}..{placed.end - 1} are lost"
        return None, [f"remote segment missing from its store (the tier manifest lists it): {lost}"]
    problems = []
    if (len(data), crc(data)) != (placed.bytes, placed.crc):
        problems.append(
            f"remote object is not the segment the tier manifest recorded ({len(data)} bytes, crc 0x{crc(data):08x}; "
            f"recorded {placed.bytes} bytes, crc 0x{placed.crc:08x})"
        )
    return MemorySegmentView(placed.uri, data), problems


def remote_index(topic: Topic, placed: Placed) -> bytes | None:
    """For `verify`: remote segment `placed`'s index read fresh from its store (None: missing)."""
    try:
        return topic.log.remotes.store(placed.remote).read(placed.index_key)
    except FileNotFoundError:
        return None


class BackgroundTier:
    """Tiers a topic in a thread of its own while a writer appends: every `interval` seconds it
    moves what is due (a segment sealed meanwhile), skipping partitions another process is tiering;
    a failure is logged and retried at the next round (or by `logstore tier`)."""

    def __init__(self, topic: Topic, interval: float = 1.0) -> None:
        self.topic = topic
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"logstore-tier-{topic.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                tier_topic(self.topic, TierReport(), blocking=False)
            except Exception as e:  # noqa: BLE001 - logged; the next round or `logstore tier` retries
                log.warning("background tiering of topic %r failed (%s): retried", self.topic.name, e)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

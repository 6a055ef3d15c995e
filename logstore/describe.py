"""Whole-topic maintenance over segments: describe, verify and retention."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import index as index_mod
from . import summary, tier
from .errors import LogIOError, LogstoreError
from .files import fsync_dir
from .names import TOPIC_FILE, TOPICS_DIR
from .segment import SegmentView, scan
from .timeutil import MAX_TIME, MIN_TIME, clock_us, iso

if TYPE_CHECKING:
    from .log import Log
    from .partition import Partition
    from .topic import Topic


def _iso(us: int | None) -> str | None:
    return None if us is None or us in (MIN_TIME, MAX_TIME) else iso(us)


@dataclass
class VerifyProblem:
    """A damaged frame or index found by `Log.verify`."""

    topic: str
    partition: int
    path: str
    position: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path} @ byte {self.position}: {self.reason}"


@dataclass
class VerifyReport:
    """What `Log.verify` checked and found; `ok` is False when anything is damaged."""

    topics: int = 0
    partitions: int = 0
    segments: int = 0
    frames: int = 0
    bytes: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # derived state out of date, torn tails: no damage

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class RetentionReport:
    """Segments deleted by `Log.enforce_retention`: (topic, partition, path, bytes)."""

    deleted: list[tuple[str, int, str, int]] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(d[3] for d in self.deleted)


def describe_topic(topic: Topic) -> dict[str, Any]:
    """A JSON-ready description: settings, schema versions, per partition segments and ranges."""
    cfg = topic.config
    out: dict[str, Any] = {
        "topic": topic.name,
        "partitions": cfg.partitions,
        "key_field": cfg.key_field,
        "event_time_field": cfg.event_time_field,
        "compression": cfg.compression,
        "compatibility": cfg.compatibility,
        "segment_bytes": cfg.segment_bytes,
        "retention_ms": cfg.retention_ms,
        "retention_bytes": cfg.retention_bytes,
        "remote": topic.remote,
        "local_retention_ms": cfg.local_retention_ms,
        "local_retention_bytes": cfg.local_retention_bytes,
        "schema_versions": [v.version for v in topic.registry.versions()],
        "records": 0,
        "bytes": 0,
        "partition_details": [],
    }
    for p in range(cfg.partitions):
        part = topic.partition(p)
        snap = part.snapshot()
        segs = []
        first_append = last_append = None
        min_event = max_event = None
        for base in snap.bases:
            placed = part.placement.remote(base)  # a remote segment is described by its manifest entry
            if placed is not None:
                size, frames, span = placed.bytes, placed.frames, placed.summary() if placed.frames else None
            else:
                entries = part.entries(snap, base)
                size, frames, span = part.segment_size(snap, base), len(entries), _span(entries)
            seg: dict[str, Any] = {
                "base_offset": base,
                "bytes": size,
                "frames": int(frames),
                "active": base == snap.bases[-1],
                "place": "local" if placed is None else "remote",
            }
            if placed is not None:
                seg["uri"] = placed.uri
            if span is not None:
                seg["end_offset"] = span[0]
                seg["first_append_time"] = _iso(span[1])
                seg["last_append_time"] = _iso(span[2])
                first_append = first_append if first_append is not None else span[1]
                last_append = span[2]
                lo, hi = span[3], span[4]
                if lo != MIN_TIME:
                    min_event = lo if min_event is None else min(min_event, lo)
                    max_event = hi if max_event is None else max(max_event, hi)
            segs.append(seg)
        total = sum(s["bytes"] for s in segs)
        out["partition_details"].append(
            {
                "partition": p,
                "start_offset": snap.start_offset,
                "end_offset": snap.end_offset,
                "records": snap.end_offset - snap.start_offset,
                "bytes": total,
                "remote_bytes": sum(s["bytes"] for s in segs if s["place"] == "remote"),
                "segments": segs,
                "first_append_time": _iso(first_append),
                "last_append_time": _iso(last_append),
                "min_event_time": _iso(min_event),
                "max_event_time": _iso(max_event),
            }
        )
        out["records"] += snap.end_offset - snap.start_offset
        out["bytes"] += total
    return out


def _span(entries: np.ndarray) -> tuple[int, int, int, int, int] | None:
    """(end offset, first append, last append, min event, max event) of a segment's entries."""
    if not len(entries):
        return None
    end = int(entries["base_offset"][-1] + entries["count"][-1])
    times = entries["append_time"]
    return (
        end,
        int(times[0]),
        int(times[-1]),
        int(entries["min_event_time"].min()),
        int(entries["max_event_time"].max()),
    )


def describe_log(log: Log, topic: str | None) -> dict[str, Any]:
    """`Log.describe`: one topic's description, or every topic's by name (a damaged one's error)."""
    if topic is not None:
        return describe_topic(log._existing(topic))
    out: dict[str, Any] = {}
    for name in log.topics():
        try:
            out[name] = describe_topic(log._existing(name))
        except LogstoreError as e:  # one damaged topic costs only itself
            out[name] = {"topic": name, "error": str(e)}
    return out


def verify_log(log: Log, topic: str | None, progress: Callable[[int], None] | None) -> VerifyReport:
    """`Log.verify`: every frame of one topic, or of every topic (a damaged one reported)."""
    report = VerifyReport()
    if topic is not None:
        verify_topic(log._existing(topic), report, progress)
        return report
    for name in log.topics():
        try:
            t = log._existing(name)
        except LogstoreError as e:  # one damaged topic costs only itself
            report.topics += 1
            report.problems.append(VerifyProblem(name, -1, str(log.path / TOPICS_DIR / name / TOPIC_FILE), 0, str(e)))
            continue
        verify_topic(t, report, progress)
    return report


def verify_topic(topic: Topic, report: VerifyReport, progress: Callable[[int], None] | None = None) -> None:
    """Check every frame of every segment of `topic`: checksums, offsets, append-time order, index.
    `progress` is called with the report's bytes checked so far after each segment."""
    report.topics += 1
    for p in range(topic.config.partitions):
        part = topic.partition(p)
        report.partitions += 1
        snap = part.snapshot()
        expected: int | None = None
        after_damage = False
        last_time = MIN_TIME
        for base in snap.bases:
            report.segments += 1
            placed = part.placement.remote(base)
            path: Path | str = part.seg_path(base) if placed is None else placed.uri
            try:
                if placed is not None:  # read whole from its store, not the cache
                    remote_view, wrong = tier.verify_remote(topic, part, placed)
                    report.problems += [VerifyProblem(topic.name, p, str(path), 0, w) for w in wrong]
                    if remote_view is None:
                        expected = None
                        continue
                    view: SegmentView = remote_view
                else:
                    view = SegmentView(part.seg_path(base), part.segment_size(snap, base))
            except FileNotFoundError:  # deleted by retention since the snapshot
                expected = None
                continue
            size = view.size
            if base == snap.bases[-1]:
                torn = os.lstat(path).st_size - size
                if torn > 0:
                    report.notes.append(
                        f"{path}: {torn} bytes past the committed end (a torn tail of a commit "
                        "never acknowledged; a writer's recovery removes it)"
                    )
            result = scan(view, 0)
            report.bytes += size
            if progress is not None:
                progress(report.bytes)
            problems = list(result.problems)
            for prob in problems:
                report.problems.append(VerifyProblem(topic.name, p, prob.path, prob.position, prob.reason))
            if expected is None or after_damage:  # after a damaged segment: its problem is reported already
                expected = base
            after_damage = bool(problems)
            if result.frames and result.frames[0][1].base_offset != base:
                report.problems.append(
                    VerifyProblem(
                        topic.name,
                        p,
                        str(path),
                        0,
                        f"segment named for offset {base} starts at offset {result.frames[0][1].base_offset}",
                    )
                )
            for pos, header in result.frames:
                report.frames += 1
                if header.base_offset != expected and not problems:
                    report.problems.append(
                        VerifyProblem(
                            topic.name,
                            p,
                            str(path),
                            pos,
                            f"offsets not dense: expected base offset {expected}, found {header.base_offset}",
                        )
                    )
                if header.append_time < last_time:
                    report.problems.append(
                        VerifyProblem(
                            topic.name,
                            p,
                            str(path),
                            pos,
                            f"append time goes backward: {header.append_time} after {last_time}",
                        )
                    )
                expected = header.next_offset
                last_time = header.append_time
            if placed is None:
                loaded, idx_path = index_mod.load(part.idx_path(base)), str(part.idx_path(base))
            else:
                raw = tier.remote_index(topic, placed)
                loaded, idx_path = None if raw is None else index_mod.parse(raw), placed.index_uri
            idx_problem = None
            if loaded is None:
                idx_problem = "index file missing (rebuilt on next use)"
            else:
                entries, damaged = loaded
                if damaged:
                    idx_problem = f"index damaged after entry {len(entries)} (rebuilt on next use)"
                else:
                    have = {(int(e["base_offset"]), int(e["position"])) for e in entries}
                    want = {(h.base_offset, pos) for pos, h in result.frames}
                    if not have <= want and not problems:
                        idx_problem = "index entries do not match the frames (rebuilt on next use)"
            idx_problem = idx_problem and idx_problem.replace(
                "rebuilt on next use", "derived from the frames until a writer rewrites it"
            )
            if idx_problem is not None and (result.frames or loaded is not None):
                # an index is derived state: reads derive what it should say, a writer rewrites it
                report.notes.append(f"{idx_path}: {idx_problem}")
            if idx_problem is not None:
                part.forget_index(base)


def retention_topic(topic: Topic, report: RetentionReport, now: datetime | None) -> None:
    """Delete whole sealed segments of `topic` older than retention_ms or beyond retention_bytes,
    oldest first: remote ones (`tier.expire_remote`), then local ones."""
    cfg = topic.config
    if cfg.retention_ms is None and cfg.retention_bytes is None:
        return
    now_us = clock_us((lambda: now) if now is not None else None)
    for p in range(cfg.partitions):
        part = topic.partition(p)
        if part.readonly:
            continue
        with tier.retention_guard(part) as tiered:
            # remote segments are the oldest: while one is kept, every local one is
            if tiered and not tier.expire_remote(topic, part, now_us, report):
                continue
            with part.exclusive():
                _expire_local(topic, part, now_us, report)


def _expire_local(topic: Topic, part: Partition, now_us: int, report: RetentionReport) -> None:
    """(Under the write lock.) Retention of the partition's local sealed segments."""
    cfg, p = topic.config, part.number
    bases = part.local_bases()
    sealed = bases[:-1]  # the active segment is never deleted
    sizes = {b: os.lstat(part.seg_path(b)).st_size for b in bases}
    total = sum(sizes.values())
    deleted = False
    for base in sealed:
        expired = False
        if cfg.retention_ms is not None:
            last = part.last_entry(base)
            expired = last is not None and int(last["append_time"]) < now_us - cfg.retention_ms * 1000
        oversize = cfg.retention_bytes is not None and total > cfg.retention_bytes
        if not (expired or oversize):
            break  # segments are deleted oldest first, never leaving a hole
        path = part.seg_path(base)
        try:
            os.remove(path)
            try:
                os.remove(part.idx_path(base))
            except FileNotFoundError:
                pass
        except OSError as e:
            raise LogIOError(f"retention cannot delete {path}: {e.strerror or e}") from e
        total -= sizes[base]
        report.deleted.append((topic.name, p, str(path), sizes[base]))
        deleted = True
    if deleted:
        try:
            # the deletes survive a power cut together, oldest first (never a hole)
            fsync_dir(part.dir)
            summary.rewrite(part.dir, set(part.segment_bases()))
        except OSError as e:
            raise LogIOError(f"retention in {part.dir}: {e.strerror or e}") from e

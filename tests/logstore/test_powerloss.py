"""Power-loss tests: a workload runs once under the `Recorder`; every disk state a power cut could
leave at every crash point (both models of `tests/logstore/powerloss.py`) must open, read, verify
and take an append, and keep everything that was acknowledged under the writer's durability.

Each test prints one line per model (``powerloss fsync/posix: N states, F failures``) and, on
failure, the failures by category with one example each (the crash point, the op before it, the
workload step, the state's variant). Run with ``-s`` to see the lines of passing tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from tests.logstore.powerloss import LogWorkload, Recorder, check_log_state, scratch, sweep

T0 = datetime(2026, 3, 1, tzinfo=UTC)
EVENTS = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
    ]
)
KEYED = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
    ]
)


def event(seq: int, note: bool = False) -> dict:
    r = {"seq": seq, "event_time": T0 + timedelta(milliseconds=seq), "payload": f"e{seq}:" + "x" * (40 + seq * 13 % 90)}
    if note:
        r["note"] = f"n{seq}"
    return r


def keyed(seq: int) -> dict:
    return {"key": f"k{seq % 5}", "seq": seq, "payload": f"k{seq}:" + "y" * (30 + seq * 7 % 60)}


def workload(root: Path, durability: str, rounds: int) -> tuple[Recorder, LogWorkload]:
    """Topics (one keyed with 2 partitions), a second schema version, single records flushed one by
    one, batches, commits of several frames, rolls (4 KiB segments), consumer commits, retention."""
    rec = Recorder(root)
    with rec:
        wl = LogWorkload(rec, root, durability)
        wl.open()
        if wl.log is None:
            return rec, wl
        wl.create_topic("events", EVENTS, probe=event, compression=None, segment_bytes=4096, retention_bytes=6000)
        wl.create_topic(
            "keyed", KEYED, probe=keyed, partitions=2, key_field="key", compression=None, segment_bytes=4096
        )
        if "events" in wl.acked.topics:
            v1 = wl.log.schema("events")
            v2 = {**v1, "fields": v1["fields"] + [{"name": "note", "type": ["null", "string"], "default": None}]}
            wl.register_schema("events", v2)
        if not {"events", "keyed"} <= set(wl.acked.topics):
            return rec, wl
        w = wl.writer("events")
        wk = wl.writer("keyed")
        seq = kseq = 0
        for r in range(rounds):
            for _ in range(2):
                wl.append_each(w, [event(seq, note=True)])
                seq += 1
            wl.append_batch(w, [event(s) for s in range(seq, seq + 4)])
            seq += 4
            wl.append_each(w, [event(s, note=s % 2 == 0) for s in range(seq, seq + 5)], singles=2)  # 2 frames, 1 commit
            seq += 5
            wl.append_batch(wk, [keyed(s) for s in range(kseq, kseq + 6)])  # spread over both partitions
            kseq += 6
            wl.append_each(wk, [keyed(s) for s in range(kseq, kseq + 7)], singles=3)
            kseq += 7
            wl.commit_cursor("events", "g", max_records=3 + 4 * r)
            if r == rounds // 2:
                wl.commit_cursor("keyed", "h", max_records=5)
        wl.retention(["events"])
        wl.append_each(w, [event(seq, note=True)])
        seq += 1
        wl.commit_cursor("events", "g", max_records=1000)
        wl.close_writer(w)
        wl.close_writer(wk)
        wl.finish()
    return rec, wl


def run(tmp_path: Path, durability: str, *, rounds: int, share: float, randoms: int) -> None:
    rec, wl = workload(tmp_path / "log", durability, rounds)
    problems = [f"workload step raised: {e}" for e in wl.errors] + rec.self_check()

    def check(path, acked, state):
        return check_log_state(path, acked, wl.written)

    with scratch(tmp_path / "states") as states:
        result = sweep(rec, check, states, name=durability, share=share, randoms=randoms, seed=11)
    print()
    print(
        f"powerloss {durability}: trace of {len(rec.ops)} ops, {len(wl.errors)} workload errors, "
        f"{len(rec.self_check())} self-check problems"
    )
    print(result.report())
    for p in problems:
        print(f"  {p}")
    assert not problems, "\n".join(problems)
    assert not result.failures, result.report()


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_powerloss(tmp_path, durability):
    """Every crash point's kind and sync/rename boundary, a seeded share of the rest, both models."""
    run(tmp_path, durability, rounds=3, share=0.15, randoms=2)


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_powerloss_every_crash_point(tmp_path, durability):
    """Every crash point, more random variants, a longer workload."""
    run(tmp_path, durability, rounds=4, share=1.0, randoms=3)


def test_powerloss_new_log(tmp_path):
    """A log created by `logstore.open` in a directory that did not exist: once a topic was created
    and a record appended with durability "fsync", a power cut loses neither (the log directory's
    own entry must be durable too). Every crash point, both models."""
    root = tmp_path / "root"
    rec = Recorder(root)
    with rec:
        wl = LogWorkload(rec, root / "log", "fsync")
        wl.open()
        wl.create_topic("events", EVENTS, probe=event, compression=None)
        if wl.errors:
            pytest.fail(f"workload: {wl.errors}")
        w = wl.writer("events")
        wl.append_batch(w, [event(s) for s in range(3)])
        wl.close_writer(w)
        wl.finish()
    problems = [f"workload step raised: {e}" for e in wl.errors] + rec.self_check()

    def check(path, acked, state):
        log_dir = path / "log"
        if acked is None and not log_dir.exists():
            return []  # nothing was acknowledged: no log yet is fine
        return check_log_state(log_dir, acked, wl.written)

    with scratch(tmp_path / "states") as states:
        result = sweep(rec, check, states, name="new-log", randoms=2, seed=3)
    print()
    print(result.report())
    for p in problems:
        print(f"  {p}")
    assert not problems, "\n".join(problems)
    assert not result.failures, result.report()

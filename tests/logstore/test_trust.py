"""What was acknowledged is never lost, doubled or made unreachable; reading never writes.

One test per way the log was found to break these promises: writers of one `Log` in threads, a
damaged last frame, reads that wrote, symlinks, hostile metadata, clock skew, retention racing
readers and SQL.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import logstore
from tests.conftest import SCORE_SCHEMA, score_rows


def _tree(path: Path) -> dict[str, tuple]:
    """Every entry under `path` with its kind, size, mtime and content hash: to prove nothing changed."""
    out: dict[str, tuple] = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(root) / name
            st = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(path))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def _seg(path: Path, topic: str = "scores", partition: int = 0) -> Path:
    return sorted((path / "topics" / topic / f"{partition:05d}").glob("*.seg"))[-1]


def test_writers_of_one_log_in_threads_lose_nothing(tmp_path):
    """One `Log`, one writer per thread, fsync, a flush per record, 4 partitions: every
    acknowledged record is stored once, offsets dense, verify clean."""
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA, partitions=4, key_field="request_id")
    acked: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            with lg.writer("scores", durability="fsync", linger_ms=None) as w:
                for r in score_rows(120, start=k * 1000):
                    w.append(r)
                    w.flush()
                    acked[k].append(r["request_id"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    lg.close()
    again = logstore.open(tmp_path / "log", readonly=True)
    t = again.read("scores")
    ids = t["request_id"].to_pylist()
    assert sorted(ids) == sorted(sum(acked, []))  # all of them, none twice
    for p in range(4):
        offsets = t.filter(pa.compute.equal(t["_partition"], p))["_offset"].to_pylist()
        assert offsets == list(range(len(offsets)))
    assert again.verify().ok


def test_a_writer_whose_log_was_deleted_and_created_again_writes_nothing_into_the_new_one(tmp_path):
    """A writer left running while its log directory is removed and a new log created at the same
    path (an orphaned process of an earlier run): its lock and tail belong to the old files, so its
    next commit is refused, and the new log's acknowledged records stay intact."""
    import shutil

    path = tmp_path / "log"
    old = logstore.open(path)
    old.create_topic("scores", schema=SCORE_SCHEMA, partitions=1)
    orphan = old.writer("scores", linger_ms=None)
    orphan.append_batch(score_rows(5, start=0))
    shutil.rmtree(path)
    new = logstore.open(path)
    new.create_topic("scores", schema=SCORE_SCHEMA, partitions=1)
    with new.writer("scores", linger_ms=None) as w:
        w.append_batch(score_rows(3, start=100))
    with pytest.raises(logstore.LogIOError, match="deleted or replaced"):
        orphan.append_batch(score_rows(2, start=200))
    with new.writer("scores", linger_ms=None) as w:
        w.append_batch(score_rows(2, start=300))
    t = logstore.open(path, readonly=True).read("scores")
    assert t["request_id"].to_pylist() == [r["request_id"] for r in score_rows(3, start=100) + score_rows(2, start=300)]
    assert t["_offset"].to_pylist() == list(range(5))
    assert new.verify().ok


def test_a_damaged_last_frame_is_kept_and_reported_never_truncated(tmp_path):
    """A byte flip in the last committed frame (file length and hint both say committed) is
    damage: verify reports it, reads raise or skip-and-report, recovery and writers keep it."""
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA, compression=None)
    with lg.writer("scores", durability="fsync") as w:
        w.append_batch(score_rows(100))
        w.append_batch(score_rows(400, start=100))
    seg = _seg(tmp_path / "log")
    data = bytearray(seg.read_bytes())
    size = len(data)
    data[size - 10] ^= 0x40  # inside the last frame's body
    seg.write_bytes(bytes(data))
    lg = logstore.open(tmp_path / "log")
    report = lg.verify()
    assert not report.ok and "checksum" in str(report.problems[0])
    with pytest.raises(logstore.CorruptFrameError, match="offsets 100..499"):
        lg.read("scores")
    assert lg.read("scores", on_corrupt="skip").num_rows == 100
    lg.recover()
    assert seg.stat().st_size == size  # damage is kept in place, never truncated as if torn
    with lg.writer("scores", durability="fsync") as w:
        w.append_batch(score_rows(5, start=500))
    assert seg.stat().st_size > size
    t = lg.read("scores", on_corrupt="skip")
    assert t["_offset"].to_pylist() == list(range(100)) + list(range(500, 505))


def test_reading_never_writes(tmp_path):
    """With a torn tail, a damaged index and no lock files, every read (library and CLI) leaves
    every byte, name and mtime of the log as it was."""
    path = tmp_path / "log"
    lg = logstore.open(path)
    lg.create_topic("scores", schema=SCORE_SCHEMA, partitions=2, segment_bytes=4000)
    with lg.writer("scores") as w:
        w.append_batch(score_rows(300))
    lg.close()
    seg = _seg(path)
    with open(seg, "ab") as f:
        f.write(b"LSF1" + b"\x07" * 30)  # a torn tail
    idx = sorted((path / "topics" / "scores" / "00000").glob("*.idx"))[0]
    idx.write_bytes(idx.read_bytes()[:-7])  # a torn index of a sealed segment
    for lock in path.glob("topics/*/*/.lock"):
        lock.unlink()
    before = _tree(path)
    ro = logstore.open(path, readonly=True)
    assert ro.read("scores").num_rows == 300
    assert list(ro.reader("scores"))
    rep = ro.verify()
    assert rep.ok and rep.notes  # derived state out of date is a note, not damage
    ro.describe()
    ro.duckdb().execute("SELECT count(*) FROM scores").fetchall()
    rw = logstore.open(path)
    assert rw.read("scores").num_rows == 300 and rw.verify().ok
    for args in (
        ["topics"],
        ["describe", "scores"],
        ["verify"],
        ["cat", "scores"],
        ["sql", "SELECT count(*) FROM scores"],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "logstore.cli", args[0], str(path), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
    assert _tree(path) == before


def test_cli_reads_create_no_log(tmp_path):
    """`logstore topics ./typo` says there is no log there (one line, exit 2) and creates nothing."""
    out = subprocess.run(
        [sys.executable, "-m", "logstore.cli", "topics", str(tmp_path / "typo")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "no log at" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "typo").exists()


def test_symlinks_in_a_log_are_never_followed(tmp_path):
    """A symlinked active segment or `.lock` is refused; the files they point at are untouched."""
    path = tmp_path / "log"
    lg = logstore.open(path)
    lg.create_topic("scores", schema=SCORE_SCHEMA)
    with lg.writer("scores") as w:
        w.append_batch(score_rows(10))
    lg.close()
    seg = _seg(path)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(seg.read_bytes() + b"LSF1" + b"\x01" * 20)
    seg.unlink()
    seg.symlink_to(outside)
    lock = seg.parent / ".lock"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"x" * 200)
    lock.unlink()
    lock.symlink_to(victim)
    before = (outside.read_bytes(), victim.read_bytes())
    ro = logstore.open(path, readonly=True)
    with pytest.raises(logstore.LogIOError):
        ro.read("scores")
    rw = logstore.open(path)
    with pytest.raises(logstore.LogIOError):
        rw.recover()
    with pytest.raises(logstore.LogIOError):
        with rw.writer("scores") as w:
            w.append_batch(score_rows(1))
    out = subprocess.run(
        [sys.executable, "-m", "logstore.cli", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert (outside.read_bytes(), victim.read_bytes()) == before


def test_a_bad_topic_file_costs_only_its_topic(tmp_path):
    """An empty or hostile topic.json, or a stray segment name, leaves every other topic usable;
    the damaged topic's error names its file."""
    path = tmp_path / "log"
    lg = logstore.open(path)
    for name in ("good", "bad"):
        lg.create_topic(name, schema=SCORE_SCHEMA)
        with lg.writer(name) as w:
            w.append_batch(score_rows(5))
    lg.close()
    (path / "topics" / "good" / "00000" / ("9" * 20 + ".seg")).write_bytes(b"")  # past int64: not a segment
    for text in ("", "[1, 2]", '{"name": "other"}', '{"name": "bad", "partitions": "x"}', "\xff\xfe"):
        (path / "topics" / "bad" / "topic.json").write_bytes(
            text.encode("utf-8", "surrogateescape") if text != "\xff\xfe" else b"\xff\xfe"
        )
        lg = logstore.open(path)
        assert lg.topics() == ["bad", "good"]
        assert lg.read("good").num_rows == 5
        with pytest.raises(logstore.TopicError, match="topic.json"):
            lg.read("bad")
        info = lg.describe()
        assert info["good"]["records"] == 5 and "topic.json" in info["bad"]["error"]
        rep = lg.verify()
        assert [p.topic for p in rep.problems] == ["bad"]
        lg.recover()  # skips the damaged topic


def test_a_fast_clock_is_refused_and_writes_nothing(tmp_path):
    """A writer whose clock runs more than max_clock_skew ahead of the machine's is refused
    (ClockSkewError, nothing written), so it cannot drag later commits into the future."""
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA)
    future = datetime(2100, 1, 1, tzinfo=UTC)
    w = lg.writer("scores", clock=lambda: future, linger_ms=None)
    with pytest.raises(logstore.ClockSkewError, match="ahead of this machine's clock"):
        w.append_batch(score_rows(3))
    assert lg.read("scores").num_rows == 0
    with lg.writer("scores") as good:
        good.append_batch(score_rows(3))
    now = datetime.now(UTC)
    assert lg.read("scores", end=now + timedelta(seconds=5)).num_rows == 3
    slightly = lg.writer("scores", clock=lambda: datetime.now(UTC) + timedelta(seconds=30))
    slightly.append_batch(score_rows(1, start=3))  # within the default bound of 60 s
    slightly.close()
    unbounded = lg.writer("scores", clock=lambda: future, max_clock_skew=None)
    unbounded.append_batch(score_rows(1, start=4))  # the bound is the user's to lift
    unbounded.close()
    assert lg.read("scores").num_rows == 5
    with pytest.raises(logstore.ClockError, match="aware datetime"):
        with lg.writer("scores", clock=lambda: datetime(2026, 1, 1)) as naive:
            naive.append_batch(score_rows(1))
    with pytest.raises(ValueError, match="max_clock_skew"):
        lg.writer("scores", max_clock_skew=-1)


def test_describe_survives_extreme_event_times(tmp_path):
    """An event time in year 9999 is described, not a crash."""
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA)
    rows = score_rows(2)
    rows[1]["event_time"] = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    with lg.writer("scores") as w:
        w.append_batch(rows)
    info = lg.describe("scores")
    assert info["partition_details"][0]["max_event_time"].startswith("9999-12-31")


def test_retention_racing_readers_and_sql(tmp_path):
    """Retention deleting segments under an open reader, a snapshot and DuckDB views: no
    CorruptFrameError, no raw FileNotFoundError; every row read is a true row, in order."""
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA, segment_bytes=3000, retention_bytes=20_000)
    with lg.writer("scores", linger_ms=None) as w:
        for i in range(0, 2000, 50):
            w.append_batch(score_rows(50, start=i))
    reader = iter(lg.reader("scores"))
    first = next(reader)
    con = lg.duckdb()
    report = lg.enforce_retention()
    assert report.deleted
    rest = list(reader)
    ids = [int(x[1:]) for b in [first, *rest] for x in b.column("request_id").to_pylist()]
    assert ids == sorted(ids) and ids[-1] == 1999
    count = con.execute("SELECT count(*), max(request_id) FROM scores").fetchone()
    assert count[0] <= 2000
    assert lg.verify().ok
    # and in a loop: a retention thread against readers, bounded in count and time
    stop = time.monotonic() + 5
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            with lg.writer("scores", linger_ms=None) as w2:
                k = 2000
                while time.monotonic() < stop and k < 6000:
                    w2.append_batch(score_rows(50, start=k))
                    k += 50
                    lg.enforce_retention()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=churn)
    t.start()
    queries = 0
    while t.is_alive() and queries < 200:
        tbl = lg.read("scores")
        offsets = tbl["_offset"].to_pylist()
        # a segment retention deletes while the read is under way is skipped, never an error:
        # what is returned is true rows, in order, each once
        assert offsets == sorted(set(offsets))
        assert tbl["request_id"].to_pylist() == [f"r{o}" for o in offsets]
        lg.duckdb().execute("SELECT count(*) FROM scores").fetchone()
        queries += 1
    t.join(timeout=60)
    assert not errors and queries > 0


def test_a_crafted_header_claiming_bytes_past_the_end_truncates_nothing(tmp_path):
    """A header with a valid checksum whose body length runs past the end of the file, in the
    middle of committed frames: recovery and writers keep every frame after it."""
    from logstore.frame import HEADER_SIZE, pack_header, parse_header

    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA, compression=None)
    with lg.writer("scores", durability="fsync") as w:
        for i in range(0, 50, 10):
            w.append_batch(score_rows(10, start=i))
    seg = _seg(tmp_path / "log")
    data = bytearray(seg.read_bytes())
    size = len(data)
    h = parse_header(bytes(data[:HEADER_SIZE]))
    second = h.size  # the second frame starts where the first ends
    h2 = parse_header(bytes(data[second : second + HEADER_SIZE]))
    forged = pack_header(**{**h2._asdict(), "body_len": 10**9})
    data[second : second + HEADER_SIZE] = forged
    seg.write_bytes(bytes(data))
    lg = logstore.open(tmp_path / "log")
    lg.recover()
    assert seg.stat().st_size == size
    t = lg.read("scores", on_corrupt="skip")
    assert t["_offset"].to_pylist() == list(range(10)) + list(range(20, 50))
    assert not lg.verify().ok


def test_a_commit_whose_undo_failed_never_truncates_another_writers_commit(tmp_path, monkeypatch):
    """A failed commit whose bytes could not be truncated is taken back by the next commit, but
    only if no other writer moved the tail meanwhile: another writer's acknowledged commit after
    it is never truncated, and the failed records are stored nowhere."""
    from logstore import commit as commit_mod

    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA, compression=None)
    wa = lg.writer("scores", durability="fsync", linger_ms=None)
    wa.append_batch(score_rows(5))
    real_write, real_truncate = commit_mod.write_frames, os.ftruncate

    def write_then_fail(fd, position, chunks):
        real_write(fd, position, chunks)
        raise OSError(5, "Input/output error")

    def truncate_fails(fd, size):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(commit_mod, "write_frames", write_then_fail)
    monkeypatch.setattr(commit_mod.os, "ftruncate", truncate_fails)
    with pytest.raises(logstore.LogIOError, match="nothing was written"):
        wa.append_batch(score_rows(5, start=5))
    monkeypatch.setattr(commit_mod, "write_frames", real_write)
    monkeypatch.setattr(commit_mod.os, "ftruncate", real_truncate)
    other = logstore.open(tmp_path / "log")  # another Partition, another lock descriptor: another writer
    with other.writer("scores", durability="fsync") as wb:
        wb.append_batch(score_rows(5, start=100))
    wa.append_batch(score_rows(5, start=10))
    wa.close()
    t = logstore.open(tmp_path / "log", readonly=True).read("scores")
    want = [f"r{i}" for i in [*range(5), *range(100, 105), *range(10, 15)]]
    assert t["request_id"].to_pylist() == want
    assert t["_offset"].to_pylist() == list(range(15))


def test_group_commit_stores_every_acknowledged_commit_once_and_fails_one_alone(tmp_path, monkeypatch):
    """Threads committing to one partition at once share lock holds and fsyncs (group commit);
    a commit that fails in a group is taken back alone: the others are stored, once, densely."""
    from logstore import commit as commit_mod
    from logstore import writer as writer_mod

    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA, compression=None)
    real = writer_mod.encode_body

    def refuse_bad(batch, **kw):
        if "bad" in batch.column("request_id").to_pylist()[0]:
            raise ValueError("refused")
        return real(batch, **kw)

    monkeypatch.setattr(writer_mod, "encode_body", refuse_bad)
    real_rows = writer_mod.rows_body

    def refuse_bad_rows(rows, **kw):  # a commit of a few dicts is encoded as row frames
        if any(b"bad" in r for r in rows):
            raise ValueError("refused")
        return real_rows(rows, **kw)

    monkeypatch.setattr(writer_mod, "rows_body", refuse_bad_rows)
    sizes: list[int] = []
    real_batch = commit_mod._commit_batch

    def counting(part, batch, hand_on):
        sizes.append(len(batch))
        return real_batch(part, batch, hand_on)

    monkeypatch.setattr(commit_mod, "_commit_batch", counting)
    acked: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        with lg.writer("scores", durability="fsync", linger_ms=None) as w:
            for i in range(60):
                rid = f"bad-{k}-{i}" if i % 10 == 3 else f"r-{k}-{i}"
                try:
                    w.append_batch([{**score_rows(1)[0], "request_id": rid}])
                except ValueError:
                    with lock:
                        refused.append(rid)
                    continue
                with lock:
                    acked.append(rid)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    t = logstore.open(tmp_path / "log", readonly=True).read("scores")
    assert sorted(t["request_id"].to_pylist()) == sorted(acked)
    assert t["_offset"].to_pylist() == list(range(len(acked)))
    assert len(refused) == 36 and all(r.startswith("bad") for r in refused)
    assert logstore.open(tmp_path / "log", readonly=True).verify().ok
    assert max(sizes) > 1  # commits were grouped

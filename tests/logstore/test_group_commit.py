"""Group commit: batches written while the one before syncs, and writers taking turns on a tail."""

from __future__ import annotations

import os
import threading

import logstore
from logstore import commit as commit_mod
from tests.conftest import SCORE_SCHEMA, score_rows


def _row(rid: str) -> dict:
    return {**score_rows(1)[0], "request_id": rid}


def test_the_next_batch_is_written_while_the_one_before_syncs(tmp_path, monkeypatch):
    """A durable batch hands the lead on before its fdatasync: a second committer's records are
    in the log (visible to readers) while the first's fdatasync is still running, and neither
    returns before its own records are synced."""
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA, compression=None)
    first_syncing, release_first = threading.Event(), threading.Event()
    real = os.fdatasync
    calls: list[int] = []

    def slow_first(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            first_syncing.set()
            assert release_first.wait(30)
        real(fd)

    done: dict[str, bool] = {}

    def commit(rid: str) -> None:
        with lg.writer("scores", durability="fsync", linger_ms=None) as w:
            w.append_batch([_row(rid)])
            done[rid] = True

    with lg.writer("scores", durability="fsync", linger_ms=None) as warm:
        warm.append_batch([_row("warm")])  # the partition's first segment exists
    monkeypatch.setattr(commit_mod.os, "fdatasync", slow_first)
    a = threading.Thread(target=commit, args=("a",))
    a.start()
    assert first_syncing.wait(30)
    b = threading.Thread(target=commit, args=("b",))
    b.start()
    b.join(30)  # b syncs on its own descriptor (not held up): returns while a still waits
    try:
        assert done == {"b": True}
        ids = logstore.open(tmp_path / "log", readonly=True).read("scores").column("request_id").to_pylist()
        assert ids == ["warm", "a", "b"]
    finally:
        release_first.set()
        a.join(30)
    assert done == {"a": True, "b": True}
    lg.close()
    assert logstore.open(tmp_path / "log", readonly=True).verify().ok


def test_writers_taking_turns_on_one_tail_keep_it_whole(tmp_path):
    """Two opens of one log (as two processes are) committing in turn: each adopts the tail the
    other left without re-deriving it; offsets stay dense and the index and verify agree."""
    a, b = logstore.open(tmp_path / "log"), None
    a.create_topic("scores", schema=SCORE_SCHEMA, compression=None, segment_bytes=16 * 1024)
    b = logstore.open(tmp_path / "log")
    wa = a.writer("scores", durability="flush", linger_ms=None)
    wb = b.writer("scores", durability="flush", linger_ms=None)
    expect = []
    for i in range(400):
        rid = f"r{i}"
        (wa if i % 3 else wb).append_batch([_row(rid)])
        expect.append(rid)
    wa.close()
    wb.close()
    a.close()
    b.close()
    ro = logstore.open(tmp_path / "log", readonly=True)
    t = ro.read("scores", columns=["request_id"])
    assert t.column("request_id").to_pylist() == expect
    assert ro.verify().ok
    parts = sorted((tmp_path / "log" / "topics" / "scores" / "00000").glob("*.seg"))
    assert len(parts) > 1  # the turns crossed segment rolls


INTERRUPTED = r"""
import os, signal, sys, threading, time
sys.path.insert(0, {root!r})
import logstore
from logstore import commit as commit_mod
from tests.conftest import SCORE_SCHEMA, score_rows

def row(rid):
    return {{**score_rows(1)[0], "request_id": rid}}

lg = logstore.open({path!r})
lg.create_topic("scores", schema=SCORE_SCHEMA, compression=None)
with lg.writer("scores", durability="fsync", linger_ms=None) as w:
    w.append_batch([row("warm")])
syncing, release = threading.Event(), threading.Event()
real = commit_mod.write_frames
def slow(*a):
    if not syncing.is_set():
        syncing.set()
        release.wait(30)
    return real(*a)
commit_mod.write_frames = slow

def lead():
    with lg.writer("scores", durability="fsync", linger_ms=None) as w:
        w.append_batch([row("leader")])
t = threading.Thread(target=lead)
t.start()
assert syncing.wait(30)
# the leader sits in its write with the group busy: the main thread queues behind it and is
# interrupted there; its commit leaves the queue, writes nothing, and nobody hangs
def interrupt():
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.3)
    release.set()
threading.Thread(target=interrupt).start()
w = lg.writer("scores", durability="fsync", linger_ms=None)
try:
    w.append_batch([row("interrupted")])
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
t.join(30)
assert not t.is_alive()
w2 = lg.writer("scores", durability="fsync", linger_ms=None)
w2.append_batch([row("after")])
w2.close()
print(lg.read("scores").column("request_id").to_pylist())
"""


def test_a_committer_interrupted_in_the_queue_leaves_it_and_the_group_goes_on(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = INTERRUPTED.format(root=str(root), path=str(tmp_path / "log"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "interrupted"
    assert lines[1] == "['warm', 'leader', 'after']"

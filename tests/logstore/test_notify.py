"""Tailers wake on a commit by any process (inotify), not on a polling period."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import logstore
from logstore.notify import ChangeWatch
from tests.conftest import SCORE_SCHEMA, score_rows

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")

APPEND = """
import sys
sys.path.insert(0, {root!r})
import logstore
from tests.conftest import score_rows
with logstore.open({path!r}).writer("scores", durability="flush") as w:
    w.append_batch(score_rows(3, start={start}))
"""


def _append_in_another_process(path, start: int) -> None:
    root = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    subprocess.run(
        [sys.executable, "-c", APPEND.format(root=root, path=str(path), start=start)], check=True, timeout=60
    )


def test_a_change_watch_wakes_on_a_write_and_drains(tmp_path):
    with ChangeWatch([tmp_path]) as watch:
        assert watch.live and watch.fileno() is not None
        assert not watch.wait(0.01)  # nothing changed
        (tmp_path / "f").write_bytes(b"x")
        assert watch.wait(30)
        watch.drain()
        assert not watch.wait(0.01)  # drained: a later wait sleeps again


def test_a_change_watch_names_the_directories_that_changed(tmp_path):
    dirs = [tmp_path / str(i) for i in range(3)]
    for d in dirs:
        d.mkdir()
    with ChangeWatch(dirs) as watch:
        assert watch.changed() is None  # at first: any of them
        (dirs[2] / "f").write_bytes(b"x")
        (dirs[0] / "g").write_bytes(b"y")
        assert watch.wait(30)
        watch.drain()
        assert watch.changed() == {0, 2}
        assert watch.changed() == set()  # reset by the call
        assert not watch.wait(0.01)
        assert watch.changed() is None  # a timeout: any of them (the backstop looks at all)


def test_a_tailer_of_many_partitions_sees_every_commit_of_each(live, tmp_path):
    """Only the partitions whose directories changed are snapshotted again: none is missed."""
    got: list[str] = []
    reader = live.reader("scores", start=live.end_offsets("scores"), follow=True, poll_interval=30)

    def tail() -> None:
        for b in reader:
            got.extend(b["request_id"].to_pylist())
            if len(got) >= 40:
                return

    t = threading.Thread(target=tail, daemon=True)
    t.start()
    time.sleep(0.2)
    with live.writer("scores", linger_ms=None) as w:
        for i in range(40):  # keyed: the records spread over both partitions, one commit each
            w.append(score_rows(1, start=i)[0])
            w.flush()
    t.join(timeout=20)
    reader.follow = False
    assert sorted(got) == sorted(r["request_id"] for r in score_rows(40))


def test_a_watch_on_nothing_sleeps(tmp_path):
    watch = ChangeWatch([tmp_path / "missing"])
    assert not watch.live and not watch.wait(0.01)
    watch.close()


@pytest.fixture
def live(tmp_path):
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("scores", schema=SCORE_SCHEMA, partitions=2, key_field="request_id")
    return lg


def test_a_tailing_reader_wakes_on_another_process_commit(live, tmp_path):
    """With a 60 s polling backstop, the reader still sees each commit of another process as it
    lands: the wake-up comes from the commit, not from the period."""
    got: list[str] = []
    seen = threading.Event()

    def tail() -> None:
        for batch in live.reader("scores", follow=True, poll_interval=60):
            got.extend(batch.column("request_id").to_pylist())
            if len(got) >= 6:
                seen.set()
                return

    t = threading.Thread(target=tail, daemon=True)
    t.start()
    time.sleep(0.3)  # the reader is waiting
    _append_in_another_process(tmp_path / "log", 0)
    _append_in_another_process(tmp_path / "log", 3)
    assert seen.wait(30), got
    assert sorted(got) == sorted(f"r{i}" for i in range(6))


def test_consumer_poll_returns_when_records_arrive(live, tmp_path):
    consumer = live.consumer("scores", group="g")
    assert consumer.poll(timeout=0.01).num_rows == 0
    threading.Timer(0.3, _append_in_another_process, args=(tmp_path / "log", 0)).start()
    t0 = time.monotonic()
    got = consumer.poll(timeout=60)  # returns when the commit lands, not after the timeout
    assert got.num_rows >= 1 and time.monotonic() - t0 < 59


def test_async_for_over_a_tailing_reader(live, tmp_path):
    with live.writer("scores") as w:
        w.append_batch(score_rows(4))

    async def main() -> list[str]:
        out: list[str] = []
        async for batch in live.reader("scores", follow=True, poll_interval=60):
            out.extend(batch.column("request_id").to_pylist())
            if len(out) >= 7:
                break
            if len(out) == 4:
                await asyncio.to_thread(_append_in_another_process, tmp_path / "log", 4)
        return out

    out = asyncio.run(asyncio.wait_for(main(), 60))
    assert sorted(out) == sorted(f"r{i}" for i in range(7))


def test_an_async_tail_waits_on_the_loop_without_blocking_it_or_a_thread(live, tmp_path):
    """Following, `async for` awaits the change watch on the event loop: other tasks run while it
    waits, and no worker thread carries the wait."""

    async def main() -> tuple[list[str], int, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        threads = threading.active_count()
        out: list[str] = []
        reader = live.reader("scores", follow=True, poll_interval=60)
        writer = threading.Thread(target=_append_in_another_process, args=(tmp_path / "log", 0))
        writer.start()
        most = threads
        async for batch in reader:
            most = max(most, threading.active_count())
            out.extend(batch.column("request_id").to_pylist())
            if len(out) >= 3:
                break
        writer.join()
        stop.set()
        await task
        return out, ticks, most - threads

    out, ticks, extra_threads = asyncio.run(asyncio.wait_for(main(), 60))
    assert sorted(out) == ["r0", "r1", "r2"]
    assert ticks > 3  # the loop ran other tasks while the reader waited (a process start takes longer)
    assert extra_threads <= 1  # the writer thread of this test only

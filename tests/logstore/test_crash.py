"""Crash tests: writers killed with SIGKILL at random moments lose nothing they acknowledged."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import logstore
from tests.logstore.procs import SCHEMA, payload

ROOT = Path(__file__).resolve().parents[2]
PROCS = Path(__file__).with_name("procs.py")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _run_and_kill(path: Path, mode: str, seed: int, delay: float) -> int:
    """Start a crash writer, SIGKILL it after `delay` s; return the highest acknowledged seq."""
    proc = subprocess.Popen(
        [sys.executable, str(PROCS), "crash", str(path), mode, str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(),
    )
    acked = [0]
    started = threading.Event()

    def pump():
        for line in proc.stdout:
            if line.startswith("ack "):
                acked[0] = int(line.split()[1])
                started.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    started.wait(timeout=120)  # the kill comes at a random moment of steady writing
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t.join(timeout=5)
    err = proc.stderr.read()
    assert "Traceback" not in err, err
    return acked[0]


def _check(path: Path, acked: int) -> int:
    log = logstore.open(path)
    t = log.read("t")
    seqs = t["seq"].to_pylist()
    assert seqs == list(range(len(seqs))), "records lost, duplicated or reordered"
    assert len(seqs) >= acked, f"acknowledged {acked} records but only {len(seqs)} survived"
    assert t["_offset"].to_pylist() == list(range(len(seqs)))
    assert t["payload"].to_pylist() == [payload("w", s) for s in seqs]
    assert log.verify().ok
    return len(seqs)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["batch", "records"])
def test_sigkill_loses_nothing_acknowledged(tmp_path, mode):
    """Many SIGKILLs at random moments: every acknowledged record survives once, in order, unchanged."""
    rng = random.Random(7 if mode == "batch" else 8)
    path = tmp_path / "log"
    total_acked = 0
    for round_ in range(12):
        acked = _run_and_kill(path, mode, seed=round_, delay=rng.uniform(0.0, 0.6))
        total_acked = max(total_acked, acked)
        survived = _check(path, total_acked)
        total_acked = survived  # the next writer continues from what survived
    assert total_acked > 0


def test_torn_tail_is_unseen_by_readers_and_truncated_by_recovery(tmp_path):
    """Bytes of a half-written frame at the end of the active segment: readers do not see them and
    write nothing; recovery (a writer's, or `recover()`) truncates them and reports it."""
    from tests.logstore.procs import SCHEMA, rows

    log = logstore.open(tmp_path / "log")
    log.create_topic("t", schema=SCHEMA, compression=None)
    with log.writer("t", linger_ms=None) as w:
        w.append_batch(rows("w", 0, 10))
        w.append_batch(rows("w", 10, 10))
    seg = next((tmp_path / "log" / "topics" / "t" / "00000").glob("*.seg"))
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"LSF1" + b"\x07" * 40)  # a torn header
    again = logstore.open(tmp_path / "log")
    assert again.read("t")["seq"].to_pylist() == list(range(20))
    assert again.verify().ok and seg.stat().st_size == size + 44  # reading never writes
    assert [r.bytes_truncated for r in again.recover()] == [44]
    assert seg.stat().st_size == size
    with again.writer("t") as w:
        w.append_batch(rows("w", 20, 5))
    assert again.read("t")["_offset"].to_pylist() == list(range(25))


@pytest.mark.slow
@pytest.mark.parametrize("procs,threads", [(1, 4), (3, 2)])
def test_group_commit_under_sigkill_keeps_every_acknowledged_record(tmp_path, procs, threads):
    """Threads committing single records with fsync through the partition's group (in one process,
    or in three at once, whose syncs run outside the lock), killed at random moments, five times:
    every acknowledged record is there, unchanged, once; offsets stay dense and the next run
    appends after them."""
    path = tmp_path / "log"
    logstore.open(path).create_topic("t", schema=SCHEMA, compression=None)
    rng = random.Random(7 + procs)
    acked: set[tuple[str, int]] = set()
    for _ in range(5):
        running = [
            subprocess.Popen(
                [sys.executable, str(PROCS), "group", str(path), str(threads)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env=_env(),
            )
            for _ in range(procs)
        ]
        got: list[tuple[str, int]] = []
        pumps = []
        for proc in running:
            started = threading.Event()

            def pump(proc=proc, got=got, started=started) -> None:
                for line in proc.stdout:
                    if line.startswith("ack "):
                        _, w, seq = line.split()
                        got.append((w, int(seq)))
                        started.set()

            t = threading.Thread(target=pump, daemon=True)
            t.start()
            pumps.append((t, started))
        for _, started in pumps:
            assert started.wait(timeout=120)
        time.sleep(rng.uniform(0.05, 0.5))
        for proc in running:
            proc.send_signal(signal.SIGKILL)
        for (t, _), proc in zip(pumps, running):
            proc.wait()
            t.join(timeout=5)
            err = proc.stderr.read()
            assert "Traceback" not in err, err
        acked.update(got)
        table = logstore.open(path, readonly=True).read("t")
        stored = list(zip(table["writer"].to_pylist(), table["seq"].to_pylist()))
        assert len(stored) == len(set(stored))  # nothing twice
        assert acked <= set(stored)  # nothing acknowledged lost
        assert table["_offset"].to_pylist() == list(range(table.num_rows))
        for (w, seq), p in zip(stored, table["payload"].to_pylist()):
            assert p == payload(w, seq)
    assert logstore.open(path, readonly=True).verify().ok

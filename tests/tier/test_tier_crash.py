"""SIGKILL during tiering (a child process appending and tiering in a loop, killed at random
moments of its tiering): every acknowledged record stays readable exactly once, from one place,
before and after the next run finishes what the kill left; `verify` finds nothing wrong; in the
end the store holds exactly the objects the manifests name."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import logstore
from tests.tier.data import SCHEMA, fill
from tests.tier.s3server import S3Server

ROUNDS = 12
PER_ROUND = 700  # records appended per loop of the child: about two 40 KB segments
ROOT = Path(__file__).resolve().parents[2]


def _check(path: Path, acked: int) -> int:
    """Every record once, in order, at least those acknowledged; verify clean. Returns the count."""
    lg = logstore.open(path, readonly=True)
    try:
        seqs = lg.read("t", columns=["seq"])["seq"].to_pylist()
        assert seqs == list(range(len(seqs))), "a record lost or doubled"
        assert len(seqs) >= acked, (len(seqs), acked)
        report = lg.verify()
        assert report.ok, report.problems
        return len(seqs)
    finally:
        lg.close()


class Child:
    """The tiering loop in a child process, its output followed by a thread."""

    def __init__(self, path: Path, remote: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tier.data", str(path), remote, str(PER_ROUND)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.acked = 0
        self.tiers: list[float] = []  # when each tiering began
        self.took: list[float] = []  # how long each finished one took
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                if line.startswith("ack "):
                    self.acked = int(line.split()[1])
                elif line.startswith("tiered"):
                    self.took.append(time.monotonic() - self.tiers[-1])
                elif line.startswith("tier"):
                    self.tiers.append(time.monotonic())
                self.changed.notify_all()

    def kill_in_tiering(self, n: int, fraction: float, estimate: float) -> None:
        """SIGKILL `fraction` of `estimate` seconds into the child's `n`-th tiering."""
        try:
            with self.changed:
                assert self.changed.wait_for(lambda: len(self.tiers) >= n or self.proc.poll() is not None, 60)
                assert self.proc.poll() is None, "the child died"
                start = self.tiers[n - 1]
            time.sleep(max(0.0, start + fraction * estimate - time.monotonic()))
        finally:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.thread.join(timeout=10)


@pytest.mark.slow
def test_sigkill_at_random_moments_of_tiering_loses_and_doubles_nothing(tmp_path, remote, s3: S3Server):
    path = tmp_path / "log"
    lg = logstore.open(path, remote=remote)
    lg.create_topic("t", SCHEMA, segment_bytes=40_000, compression=None)
    acked = fill(lg, "t", 4, PER_ROUND)
    lg.close()
    rng = random.Random(20261204)
    estimate, finished = 0.3, []
    for _ in range(ROUNDS):
        child = Child(path, remote)
        child.kill_in_tiering(rng.randint(1, 2), rng.uniform(0.0, 1.2), estimate)
        acked = max(acked, child.acked)
        estimate = sorted(child.took)[len(child.took) // 2] if child.took else estimate
        _check(path, acked)  # a reader of the state the kill left
        report = logstore.open(path, remote=remote).tier("t")  # finishes it, then tiers on
        finished += report.finished
        _check(path, acked)
    lg = logstore.open(path, remote=remote)
    lg.tier()
    total = _check(path, acked)
    d = lg.describe("t")["partition_details"][0]
    assert [s["place"] for s in d["segments"]] == ["remote"] * (len(d["segments"]) - 1) + ["local"]
    manifest = json.loads((path / "topics" / "t" / "00000" / "tier.json").read_text())
    named = {e["key"] for e in manifest["segments"]} | {e["key"][:-4] + ".idx" for e in manifest["segments"]}
    assert set(s3.objects(remote)) == named  # nothing uploaded and left behind
    assert total >= acked
    assert finished, "no kill left a half-done step: the kills missed the tiering"

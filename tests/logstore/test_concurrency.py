"""Several writer processes on one partition, plus tailing readers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest

import logstore
from tests.logstore.procs import SCHEMA
from tests.logstore.test_crash import PROCS, ROOT, _env


@pytest.mark.slow
def test_four_writers_two_tailing_readers(tmp_path):
    """4 writer processes on one partition: no gaps, no duplicates, each writer in order, readers agree."""
    path = tmp_path / "log"
    log = logstore.open(path)
    log.create_topic("t", schema=SCHEMA, segment_bytes=32 * 1024)
    per_writer, writers = 1500, 4
    total = per_writer * writers
    readers = [
        subprocess.Popen(
            [sys.executable, str(PROCS), "tail", str(path), str(total), str(tmp_path / f"r{i}.json")],
            cwd=ROOT,
            env=_env(),
        )
        for i in range(2)
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, str(PROCS), "writer", str(path), f"w{k}", str(per_writer)], cwd=ROOT, env=_env()
        )
        for k in range(writers)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0
    for r in readers:
        assert r.wait(timeout=300) == 0
    t = log.read("t")
    assert t["_offset"].to_pylist() == list(range(total))
    by_writer = defaultdict(list)
    for w, s in zip(t["writer"].to_pylist(), t["seq"].to_pylist()):
        by_writer[w].append(s)
    assert {w: seqs for w, seqs in by_writer.items()} == {f"w{k}": list(range(per_writer)) for k in range(writers)}
    final = [[o, w, s] for o, w, s in zip(t["_offset"].to_pylist(), t["writer"].to_pylist(), t["seq"].to_pylist())]
    for i in range(2):
        seen = json.loads((tmp_path / f"r{i}.json").read_text())
        assert seen == final
    assert log.verify().ok

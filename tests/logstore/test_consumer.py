"""Tests for consumer groups: concurrent commits, offset checks, damaged cursors, empty partitions."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

import logstore
from logstore.consumer import OffsetOutOfRangeError
from logstore.errors import ConsumerError
from tests.conftest import SCORE_SCHEMA, score_rows
from tests.schemas.fsrecord import FsRecorder

REPO = pathlib.Path(__file__).resolve().parents[2]
PARTS = 4
ROWS = 40  # records per partition
COMMITS = 120  # commits per consumer in the concurrency tests: offsets 1..ROWS, three times over


def commit_sequence() -> list[int]:
    """The offsets each concurrent consumer commits, in order (the last one is ROWS)."""
    return [k % ROWS + 1 for k in range(COMMITS)]


@pytest.fixture
def filled(tmp_path):
    """A log with topic 't' of 4 unkeyed partitions, 40 records in each."""
    lg = logstore.open(tmp_path / "log")
    lg.create_topic("t", schema=SCORE_SCHEMA, partitions=PARTS)
    with lg.writer("t") as w:
        for p in range(PARTS):
            w.append_batch(score_rows(ROWS, start=p * ROWS), partition=p)
    assert lg.end_offsets("t") == {p: ROWS for p in range(PARTS)}
    yield lg
    lg.close()


def cursor(lg, group="g", topic="t"):
    return pathlib.Path(lg.path) / "groups" / group / f"{topic}.json"


def files_under(root) -> dict[str, tuple[int, int]]:
    """Every file and directory under `root` with (size, mtime_ns): a fingerprint of the tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size if name in filenames else 0, st.st_mtime_ns)
    return out


# --- concurrent commits of one group ---------------------------------------------------------------


def test_threads_of_one_group_keep_each_others_commits(filled):
    """4 threads, one consumer each on its own partition of one group, commit 120 times each:
    every partition's last acknowledged commit is in the cursor afterwards."""
    consumers = [filled.consumer("t", group="g", partitions=[p]) for p in range(PARTS)]
    start = threading.Barrier(PARTS)
    acked: dict[int, int] = {}
    errors: list[BaseException] = []

    def run(p: int) -> None:
        try:
            start.wait(timeout=30)
            for k in commit_sequence():
                consumers[p].commit({p: k})
                acked[p] = k
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(p,)) for p in range(PARTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert acked == {p: ROWS for p in range(PARTS)}
    assert filled.consumer("t", group="g").committed() == acked
    assert [p.name for p in cursor(filled).parent.iterdir() if p.name.endswith(".tmp")] == []


_WORKER = """
import sys
import logstore
path, p, rows, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
log = logstore.open(path, recover=False)
c = log.consumer("t", group="g", partitions=[p])
print("ready", flush=True)
sys.stdin.readline()  # start together
for i in range(n):
    k = i % rows + 1
    c.commit({p: k})
    print("ack", k, flush=True)
"""


def test_processes_of_one_group_keep_each_others_commits(filled):
    """4 processes, each committing its own partition of one group 120 times: every partition's
    last acknowledged commit is in the cursor afterwards."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(filled.path), str(p), str(ROWS), str(COMMITS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
            text=True,
        )
        for p in range(PARTS)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        acked = {}
        for p, proc in enumerate(procs):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            acks = [int(line.split()[1]) for line in out.splitlines() if line.startswith("ack")]
            assert acks == commit_sequence()
            acked[p] = acks[-1]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert logstore.open(filled.path, recover=False).consumer("t", group="g").committed() == acked


def test_commit_keeps_other_partitions_and_is_durable_in_order(filled):
    """A commit replaces only its own partitions; groups/ and groups/<group>/ are fsynced into their
    parents when created, the cursor is temp-fsync-rename-fsync, and nothing is written by open()."""
    a = filled.consumer("t", group="g", partitions=[0, 1])
    b = filled.consumer("t", group="g", partitions=[2])
    groups = pathlib.Path(filled.path) / "groups"
    with FsRecorder() as fs:
        a.commit({0: 5, 1: 6})
    fs.assert_no_builtin_writes()
    fs.assert_new_dir_durable(groups)
    fs.assert_new_dir_durable(groups / "g")
    fs.assert_replaced_durably(cursor(filled))
    b.commit({2: 7})
    a.commit({1: 9})
    assert filled.consumer("t", group="g").committed() == {0: 5, 1: 9, 2: 7}
    doc = json.loads(cursor(filled).read_text())
    assert doc == {"format": 1, "topic": "t", "group": "g", "offsets": {"0": 5, "1": 9, "2": 7}}


# --- offsets are checked ----------------------------------------------------------------------------

BAD_OFFSETS = [10**30, -1, ROWS + 1, 1.5, "3", True, None]


@pytest.mark.parametrize("bad", BAD_OFFSETS, ids=repr)
def test_seek_and_commit_refuse_offsets_outside_the_partition(filled, bad):
    """seek() and commit() refuse an offset that is not an int in [0, end], naming partition,
    offset and range; nothing is written."""
    c = filled.consumer("t", group="g", partitions=[1])
    for call in (lambda: c.seek(1, bad), lambda: c.commit({1: bad})):
        with pytest.raises(OffsetOutOfRangeError) as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, ConsumerError)
        msg = str(info.value)
        assert "partition 1" in msg and repr(bad)[:20] in msg and f"[0, {ROWS}]" in msg
    assert c.positions == {1: 0}
    assert not (pathlib.Path(filled.path) / "groups").exists()


def test_offsets_inside_the_range_are_accepted(filled):
    """0, the end offset and numpy integers are valid; seek() then poll() reads from there."""
    import numpy as np

    c = filled.consumer("t", group="g", partitions=[2])
    c.seek(2, ROWS)
    assert c.poll().num_rows == 0
    c.seek(2, np.int64(ROWS - 3))
    assert c.poll()["_offset"].to_pylist() == [ROWS - 3, ROWS - 2, ROWS - 1]
    c.commit()
    c.commit({2: 0})
    assert c.committed() == {2: 0}


def test_partitions_the_consumer_does_not_read_are_refused(filled):
    """seek()/commit() on a partition outside the consumer's set, or the topic's, are refused."""
    c = filled.consumer("t", group="g", partitions=[0])
    for p in (1, 7, -1, True, "0"):
        with pytest.raises(OffsetOutOfRangeError, match="reads partitions"):
            c.seek(p, 0)
        with pytest.raises(OffsetOutOfRangeError, match="reads partitions"):
            c.commit({p: 0})
    with pytest.raises(ValueError, match="partitions 0..3"):
        filled.consumer("t", group="g", partitions=[4])


@pytest.mark.parametrize(
    "offsets, field",
    [
        ({"0": 10**30}, "offsets.0"),
        ({"0": -1}, "offsets.0"),
        ({"1": ROWS + 1}, "offsets.1"),
        ({"0": "5"}, "offsets.0"),
        ({"0": True}, "offsets.0"),
        ({"0": 2.0}, "offsets.0"),
        ({"0": None}, "offsets.0"),
        ({"9": 1}, "offsets.9"),
        ({"x": 1}, "offsets.x"),
        ({"-1": 1}, "offsets.-1"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else v,
)
def test_damaged_cursor_values_are_reported_not_trusted(filled, offsets, field):
    """A cursor holding an offset outside [0, end], a non-int, or an unknown partition is reported
    as damaged, naming the file and the field."""
    path = cursor(filled)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "topic": "t", "group": "g", "offsets": offsets}))
    with pytest.raises(ConsumerError) as info:
        filled.consumer("t", group="g")
    assert str(path) in str(info.value) and repr(field) in str(info.value)
    with pytest.raises(ConsumerError, match="damaged"):
        filled.consumer("t", group="g", partitions=[3])  # whatever partitions it reads


@pytest.mark.parametrize(
    "text, what",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"format": 2, "offsets": {}}), "'format'"),
        (json.dumps({"format": 1}), "'offsets'"),
        (json.dumps({"format": 1, "topic": "other", "offsets": {}}), "'topic'"),
        (json.dumps({"format": 1, "group": "h", "offsets": {}}), "'group'"),
    ],
)
def test_damaged_cursor_shapes_are_reported(filled, text, what):
    """A cursor that is not the JSON object commit() writes is reported as damaged, naming the file."""
    path = cursor(filled)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ConsumerError) as info:
        filled.consumer("t", group="g")
    assert str(path) in str(info.value) and what in str(info.value)


def test_commit_on_a_damaged_cursor_refuses_rather_than_overwrites(filled):
    """commit() reads the cursor under its lock; a damaged one is reported, and left as found."""
    c = filled.consumer("t", group="g", partitions=[0])
    path = cursor(filled)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "offsets": {"1": 10**30}}))
    with pytest.raises(ConsumerError, match="offsets.1"):
        c.commit({0: 3})
    assert json.loads(path.read_text())["offsets"] == {"1": 10**30}


# --- partitions with no data yet -----------------------------------------------------------------


def test_consumer_of_empty_partitions_creates_nothing_and_waits_for_data(tmp_path):
    """On partitions with no lock file and no segment, constructing and polling create no file;
    poll() returns nothing, then the records a writer appends while it waits."""
    path = tmp_path / "log"
    logstore.open(path).create_topic("t", schema=SCORE_SCHEMA, partitions=2)
    for lock in path.glob("topics/t/*/.lock"):  # as if no writer ever touched a partition
        lock.unlink()
    assert not list(path.glob("topics/t/*/*.seg")) and not list(path.glob("topics/t/*/.lock"))
    before = files_under(path)
    lg = logstore.open(path, recover=False)
    with FsRecorder() as fs:
        c = lg.consumer("t", group="g")
        assert c.positions == {0: 0, 1: 0}
        assert c.poll(timeout=0.1).num_rows == 0
        assert c.lag() == {0: 0, 1: 0}
    assert fs.mutations() == [] and files_under(path) == before

    def write_later() -> None:
        time.sleep(0.3)
        with logstore.open(path, recover=False).writer("t") as w:
            w.append_batch(score_rows(5), partition=1)

    writer = threading.Thread(target=write_later)
    writer.start()
    got = c.poll(timeout=30)
    writer.join(timeout=60)
    assert got["_offset"].to_pylist() == [0, 1, 2, 3, 4] and set(got["_partition"].to_pylist()) == {1}
    c.commit()
    assert lg.consumer("t", group="g").committed() == {0: 0, 1: 5}


def test_commit_on_a_read_only_log_is_refused(filled):
    """A consumer of a log opened read-only reads, but commit() refuses to write."""
    ro = logstore.open(filled.path, readonly=True)
    c = ro.consumer("t", group="g", partitions=[0])
    assert c.poll(max_records=3).num_rows == 3
    with pytest.raises(ConsumerError, match="read-only"):
        c.commit()
    assert not (pathlib.Path(filled.path) / "groups").exists()


def test_consumer_commits_durably(log):
    """A consumer resumes from its group's committed position after reopening."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    with log.writer("t") as w:
        w.append_batch(score_rows(30))
    c = log.consumer("t", group="eval")
    assert c.poll(max_records=10).num_rows == 10
    c.commit()
    assert c.poll(max_records=5)["_offset"].to_pylist() == [10, 11, 12, 13, 14]
    again = logstore.open(log.path).consumer("t", group="eval")
    assert again.poll(max_records=100)["_offset"].to_pylist()[0] == 10
    assert again.lag() == {0: 0}


def test_consumer_reset_latest_skips_history(log):
    """A new group with reset="latest" starts at the end and sees only later records."""
    log.create_topic("t", schema=SCORE_SCHEMA)
    with log.writer("t") as w:
        w.append_batch(score_rows(5))
    c = log.consumer("t", group="live", reset="latest")
    assert c.poll().num_rows == 0
    with log.writer("t") as w:
        w.append_batch(score_rows(2, start=5))
    assert c.poll()["_offset"].to_pylist() == [5, 6]

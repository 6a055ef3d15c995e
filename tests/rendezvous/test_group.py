"""Tests for rendezvous.group: partition shares, the input tail, spaced offset commits."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import logstore
from logstore.names import validate_name
from rendezvous.group import InputTail, OffsetCommits, advance, assigned_partitions, default_group
from rendezvous.topics import ensure_topics
from tests.rendezvous.test_runner import inputs


def test_assigned_partitions():
    assert assigned_partitions(5) == [0, 1, 2, 3, 4]
    assert assigned_partitions(5, member=(1, 2)) == [1, 3]
    assert assigned_partitions(5, partitions=[3, 1, 3]) == [1, 3]
    with pytest.raises(ValueError, match="partitions 0..4"):
        assigned_partitions(5, partitions=[7])
    with pytest.raises(ValueError, match="0 <= I < N"):
        assigned_partitions(5, member=(2, 2))
    with pytest.raises(ValueError, match="not both"):
        assigned_partitions(5, partitions=[1], member=(0, 2))


@given(st.integers(1, 64), st.integers(1, 8))
def test_members_divide_the_partitions(n, k):
    """Members 0..k-1 of a group take disjoint shares that cover every partition."""
    shares = [assigned_partitions(n, member=(i, k)) for i in range(k)]
    assert sorted(p for s in shares for p in s) == list(range(n))


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_default_group_is_a_valid_group_name(name, version):
    g = default_group("m" + name, version)
    assert validate_name(g, "group") == g


def test_default_group_spelling():
    assert default_group("fast", "1") == "fast_1"
    assert default_group("m", "1.0+git:ab/c") == "m_1.0_git_ab_c"


def test_tail_splits_frames_and_keeps_offset_order(tmp_path):
    """`get(max_rows)` hands out at most max_rows rows; a frame's rest comes first next time."""
    log = logstore.open(tmp_path / "log")
    ensure_topics(log, partitions=1, roles=["inputs"])
    with log.writer("inputs") as w:
        w.append_batch(inputs(0, 10))
        w.append_batch(inputs(10, 5))
    tail = InputTail(log, "inputs", {0: 3})
    try:
        got: list[list[int]] = []
        deadline = time.monotonic() + 10
        while sum(map(len, got)) < 12 and time.monotonic() < deadline:
            got.append(tail.get(4, timeout=1).column("_offset").to_pylist())
        assert [o for g in got for o in g] == list(range(3, 15))
        assert got[0] == [3, 4, 5, 6] and all(len(g) <= 4 for g in got)
        t0 = time.monotonic()
        assert tail.get(4, timeout=0.1).num_rows == 0 and time.monotonic() - t0 < 2
        positions = {0: 3}
        with log.writer("inputs") as w:
            w.append_batch(inputs(15, 2))
        table = tail.get(10, timeout=5, linger=0.05)
        advance(positions, table)
        assert table.column("_offset").to_pylist() == [15, 16] and positions == {0: 17}
    finally:
        tail.close()
    tail._thread.join(5)
    assert not tail._thread.is_alive()  # idle, it still ends soon after close()


def test_offset_commits_are_spaced_and_the_last_is_committed_on_close(tmp_path):
    log = logstore.open(tmp_path / "log")
    ensure_topics(log, partitions=2, roles=["inputs"])
    with log.writer("inputs") as w:
        w.append_batch(inputs(0, 40))
    ends = log.end_offsets("inputs")
    consumer = log.consumer("inputs", "g")
    commits = OffsetCommits(consumer, interval=60.0)
    commits.put({0: 1, 1: 1})
    deadline = time.monotonic() + 10
    while consumer.committed() != {0: 1, 1: 1} and time.monotonic() < deadline:
        time.sleep(0.01)
    for k in range(2, 10):
        commits.put({0: min(k, ends[0]), 1: min(k, ends[1])})
    assert consumer.committed() == {0: 1, 1: 1}  # the interval has not passed
    commits.close()
    assert consumer.committed() == {0: min(9, ends[0]), 1: min(9, ends[1])} and commits.commits == 2

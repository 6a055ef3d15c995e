"""The frame thread pool: results in order, errors raised, laziness bounded."""

from __future__ import annotations

import threading

import pytest

from logstore import parallel


def test_map_ordered_keeps_order_and_runs_on_threads():
    """Results come back in input order whatever finishes first."""
    seen = set()

    def work(x: int) -> int:
        seen.add(threading.current_thread().name)
        return x * x

    assert parallel.map_ordered(work, list(range(50))) == [x * x for x in range(50)]
    assert parallel.map_ordered(work, []) == []


def test_map_ordered_raises_after_every_call_finished():
    """The first error is raised, and no call is still running when it is."""
    done = []

    def work(x: int) -> int:
        if x == 3:
            raise ValueError("bad 3")
        done.append(x)
        return x

    with pytest.raises(ValueError, match="bad 3"):
        parallel.map_ordered(work, list(range(10)))
    assert sorted(done) == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_imap_ordered_is_lazy_and_ordered():
    """Items are drawn at most `ahead` beyond what the consumer took; order is kept."""
    drawn = []

    def items():
        for i in range(100):
            drawn.append(i)
            yield i

    it = parallel.imap_ordered(lambda x: x + 1, items(), ahead=4)
    assert [next(it) for _ in range(3)] == [1, 2, 3]
    assert len(drawn) <= 3 + 4
    assert list(it) == list(range(4, 101))


def test_imap_ordered_propagates_errors():
    def work(x: int) -> int:
        if x == 7:
            raise RuntimeError("seven")
        return x

    with pytest.raises(RuntimeError, match="seven"):
        list(parallel.imap_ordered(work, range(20), ahead=3))

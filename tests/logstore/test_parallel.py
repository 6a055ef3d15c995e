"""The frame thread pool: results in order, errors raised, laziness bounded."""

from __future__ import annotations

import pytest

from logstore import parallel


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


def test_pool_works_in_a_forked_child():
    """A child forked after the pool started gets a pool of its own."""
    import os

    assert list(parallel.imap_ordered(lambda x: x * 2, range(10), ahead=3)) == list(range(0, 20, 2))
    pid = os.fork()
    if pid == 0:  # child: exit 0 only if the pool works here
        ok = False
        try:
            ok = list(parallel.imap_ordered(lambda x: x * 2, range(10), ahead=3)) == list(range(0, 20, 2))
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

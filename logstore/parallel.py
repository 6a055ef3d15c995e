"""A process-wide thread pool for frame work that releases the GIL (compression, checksums, IPC).

Encoding a frame (Arrow IPC with zstd/lz4, CRC-32C) and decoding one (CRC-32C, decompression)
run in C with the GIL released, so frames of one commit or one read proceed on every core at
once. Results always come back in input order. The pool is created on first use and re-created
in a forked child (threads do not survive `fork`), so worker processes can use it too.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _forget_after_fork() -> None:
    """In a forked child the pool's threads (and maybe a held lock) did not come along: start over."""
    global _lock, _pool
    _lock, _pool = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_after_fork)


def threads() -> int:
    """How many frames are worked on at once: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(threads(), thread_name_prefix="logstore-frames")
        return _pool


def imap_ordered(fn: Callable[[T], R], items: Iterable[T], ahead: int | None = None) -> Iterator[R]:
    """`map(fn, items)` with up to `ahead` calls running in the pool ahead of the consumer.

    Memory stays bounded by `ahead` results; items are drawn lazily. Abandoning the iterator
    waits for the calls already started.
    """
    ahead = ahead if ahead is not None else 2 * threads()
    if ahead < 2 or threads() < 2:
        yield from map(fn, items)
        return
    pool = _executor()
    queue: deque[Future] = deque()
    it = iter(items)
    try:
        for x in it:
            queue.append(pool.submit(fn, x))
            if len(queue) >= ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        for f in queue:
            f.cancel()
        for f in queue:
            if not f.cancelled():
                try:
                    f.result()
                except BaseException:  # noqa: BLE001 - the consumer stopped; its error is what matters
                    pass

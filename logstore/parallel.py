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
_pid = 0


def threads() -> int:
    """How many frames are worked on at once: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _executor() -> ThreadPoolExecutor:
    global _pool, _pid
    with _lock:
        if _pool is None or _pid != os.getpid():
            _pool = ThreadPoolExecutor(threads(), thread_name_prefix="logstore-frames")
            _pid = os.getpid()
        return _pool


def map_ordered(fn: Callable[[T], R], items: list[T]) -> list[R]:
    """`[fn(x) for x in items]`, spread over the pool when there is more than one item.

    The first exception raised by any call is re-raised (after every call has finished, so no
    call is still running on the caller's data when this returns).
    """
    if len(items) < 2 or threads() < 2:
        return [fn(x) for x in items]
    futures = [_executor().submit(fn, x) for x in items[1:]]
    results: list[R] = []
    error: BaseException | None = None
    try:
        results.append(fn(items[0]))  # the caller works too
    except BaseException as e:  # noqa: BLE001 - re-raised below, once the pool is done
        error = e
    for f in futures:
        try:
            results.append(f.result())
        except BaseException as e:  # noqa: BLE001
            error = error or e
    if error is not None:
        raise error
    return results


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

"""A process-wide thread pool for frame work that releases the GIL (compression, checksums, IPC).

Encoding a frame (Arrow IPC with zstd/lz4, CRC-32C) and decoding one (CRC-32C, decompression)
run in C with the GIL released, so frames of one commit or one read proceed on every core at
once. Results always come back in input order. The pool is created on first use and re-created
in a forked child (threads do not survive `fork`), so worker processes can use it too.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

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
    """How many frames are worked on at once: the CPUs this process may run on, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def executor() -> ThreadPoolExecutor:
    """The shared pool. Its tasks must never wait on other tasks of it (that could deadlock)."""
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
    pool = executor()
    queue: deque[Future[Any]] = deque()
    it = iter(items)
    try:
        for x in it:
            queue.append(pool.submit(fn, x))
            if len(queue) >= ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        abandon(queue)


def abandon(futures: Iterable[Future[Any]]) -> None:
    """Cancel the calls not started yet and wait for the running ones (their results and errors are
    dropped), so none still uses what the caller is about to release."""
    futures = list(futures)
    for f in futures:
        f.cancel()
    for f in futures:
        if not f.cancelled():
            f.exception()


class _End:
    """The end of a prefetched iterator: normal (error None) or the error it raised."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items`, drawn up to `depth` ahead of the consumer on a thread of their own.

    For iterators whose work releases the GIL (reading and decoding frames): the consumer works
    on one item while the next ones are produced. Order is kept; an error raised by `items` is
    raised to the consumer at its place. Closing the generator stops the thread and closes
    `items`.
    """
    q: queue.Queue[Any] = queue.Queue[Any](maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_End())
        except BaseException as e:  # noqa: BLE001 - raised in the consumer
            put(_End(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=run, name="logstore-read-ahead", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        t.join()

"""Readers for async code: `async for batch in reader` (a leaf but for `notify`).

A following reader is driven on the event loop: its batches are read there (a live tail's
increments are small) and, where it would wait, the loop awaits the partitions' change watch
(`notify.ChangeWatch.wait_async`: the inotify descriptor registered with the loop), so the code
awaiting a commit resumes in the loop iteration the commit's event arrives in, with no thread
hand-off. A reader that does not follow reads on a worker thread (a bounded read can be large).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

from .notify import ChangeWatch

T = TypeVar("T")


async def aiterate(it: Iterator[T]) -> AsyncIterator[T]:
    """`it` for async code, each step on a worker thread."""
    done = object()
    try:
        while True:
            item = await asyncio.to_thread(next, it, done)
            if item is done:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


async def follow_async(batches: Iterator[T | None], watch: ChangeWatch, poll_interval: float) -> AsyncIterator[T]:
    """The items of a following reader's non-blocking batches (None: wait for a change, or
    `poll_interval` seconds), on the event loop. Closes `batches` and `watch` at the end."""
    try:
        for item in batches:
            if item is None:
                await watch.wait_async(poll_interval)
            else:
                yield item
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        watch.close()

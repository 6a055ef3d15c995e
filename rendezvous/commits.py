"""Committing records from the event loop: one `Committer` per topic the service writes.

`await committer.commit(records)` returns once `records` are committed with the writer's
durability (``flush``: written to the OS, survives a crash of the service; ``fsync``: synced,
survives power loss). Records of one call land in one frame, in order.

A commit is a blocking call (a write, and an ``fdatasync`` with fsync). Two ways to make it:

- ``"loop"``: on the event loop itself, one loop iteration later: what every request of the
  current iteration asked to commit goes out in one commit (a group commit, without a thread).
  Nothing else runs during the commit, but there is no hand-off.
- ``"thread"``: on the committer's own thread. The loop hands the records over and keeps serving;
  everything that piled up while one commit ran goes out in the next commit (a group commit), each
  waiter woken by one ``call_soon_threadsafe``.

`benchmarks/rendezvous.py` measures both at 300 requests/s; the service's default is `DEFAULT_MODE`
(see the comment there).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence
from typing import Any

MODES = ("loop", "thread")

# Measured by `python -m benchmarks.rendezvous` (benchmarks/RENDEZVOUS.md) at 300 requests/s on 2
# cores. When a commit cost the loop 1-3 ms (the Arrow path), the loop saturated on commits and the
# thread won clearly. Since small commits are row frames (~0.1 ms) the two are close: with a fast
# model first, "loop" answered end to end p50 8.4 / p99 31 ms against "thread" 9.3 / 36; with the
# mixed schedule "thread" 20.5 / 46 against "loop" 24.9 / 69. The thread keeps its margin where
# scores arrive late and commits pile up, so it stays the default.
DEFAULT_MODE = "thread"


class CommitError(RuntimeError):
    """A commit failed; nothing of it was acknowledged."""


class Committer:
    """Commits lists of records to one topic through one `logstore.Writer` (see the module docstring)."""

    def __init__(self, writer: Any, mode: str = "loop") -> None:
        if mode not in MODES:
            raise ValueError(f"commit mode must be one of {MODES}, found {mode!r}")
        self.writer = writer
        self.mode = mode
        self.commits = 0
        self._queue: queue.SimpleQueue[tuple[Sequence[dict[str, Any]], asyncio.Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._pending: list[tuple[Sequence[dict[str, Any]], asyncio.Future[None]]] = []

    async def commit(self, records: Sequence[dict[str, Any]]) -> None:
        """Commit `records` (one frame); raises the writer's error if the commit failed."""
        if self._closed:
            raise CommitError(f"committer of topic {self.writer.topic.name!r} is closed")
        if not records:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self.mode == "loop":
            self._pending.append((records, fut))
            if len(self._pending) == 1:
                loop.call_soon(self._commit_pending)
            await fut
            return
        if self._thread is None:
            self._loop = loop
            self._thread = threading.Thread(
                target=self._run, name=f"rendezvous-commit-{self.writer.topic.name}", daemon=True
            )
            self._thread.start()
        self._queue.put((records, fut))
        await fut

    def _commit_pending(self) -> None:
        group, self._pending = self._pending, []
        err: BaseException | None = None
        try:
            self.writer.append_batch([r for records, _ in group for r in records])
            self.commits += 1
        except Exception as e:  # handed to every waiter of this group
            err = e
        _settle([f for _, f in group], err)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            stop = False
            while True:  # everything that piled up meanwhile goes out in this commit
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            rows = [r for records, _ in group for r in records]
            err: BaseException | None = None
            try:
                self.writer.append_batch(rows)
                self.commits += 1
            except BaseException as e:  # noqa: BLE001 - handed to every waiter of this group
                err = e
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_settle, [f for _, f in group], err)
            if stop:
                return

    def close(self) -> None:
        """Stop the thread (after the commits queued before this call) and close the writer."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
        self.writer.close()


def _settle(futures: list[asyncio.Future[None]], err: BaseException | None) -> None:
    for f in futures:
        if f.done():
            continue
        if err is None:
            f.set_result(None)
        else:
            f.set_exception(err)

"""Waking tailers when a partition changes: inotify on Linux, a timed sleep elsewhere (a leaf).

A committing writer changes its partition's directory (the segment's bytes, then the tail hint
in ``.lock``); a `ChangeWatch` on the partition directories a tailer reads wakes within a fraction
of a millisecond of the first such change, in any process, and costs nothing while nothing changes.

No wake-up is lost: the watch is armed before the tailer's first snapshot, and `wait` drains the
events it returns on before the tailer snapshots again, so a commit landing between a snapshot
and the next `wait` makes that `wait` return at once. The timeout is a backstop (and the only
mechanism where inotify is missing, or where a remote file system does not deliver events).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path

# inotify(7) event masks: a file in the directory written, created, renamed in or closed after writing
_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_EVENT = struct.Struct("iIII")  # struct inotify_event's fixed part (the name follows)

_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.inotify_init1.argtypes = [ctypes.c_int]
        _libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        _libc = None


class ChangeWatch:
    """Wait for changes in a set of directories (see the module docstring). Close it when done."""

    def __init__(self, directories: Iterable[Path]) -> None:
        self._fd: int | None = None
        self._poll: select.poll | None = None
        self.directories = list(directories)
        self._changed: set[int] = set()
        self._all = True  # until events say otherwise, any directory may have changed
        if _libc is None:
            return
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return  # out of inotify instances: fall back to the timed sleep
        self._wds: dict[int, int] = {}
        for i, d in enumerate(self.directories):
            wd = _libc.inotify_add_watch(fd, os.fsencode(d), _MASK)
            if wd >= 0:
                self._wds[wd] = i
        if len(self._wds) < len(self.directories):  # one unwatched: only the timed sleep serves it
            os.close(fd)
            return
        self._fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    @property
    def live(self) -> bool:
        """True if changes wake `wait` (inotify), False if it only sleeps."""
        return self._fd is not None

    def fileno(self) -> int | None:
        """The descriptor that becomes readable on a change (for an event loop), or None."""
        return self._fd

    def wait(self, timeout: float) -> bool:
        """Block until a change or `timeout` seconds; True if a change woke it. Drains the events."""
        if self._poll is None:
            time.sleep(max(0.0, timeout))
            self._all = True
            return False
        if not self._poll.poll(max(0, int(timeout * 1000))):
            self._all = True  # the backstop: look at everything
            return False
        self.drain()
        return True

    async def wait_async(self, timeout: float) -> bool:
        """`wait` for async code: the event loop watches the descriptor (no thread)."""
        import asyncio

        if self._fd is None:
            await asyncio.sleep(max(0.0, timeout))
            self._all = True
            return False
        loop = asyncio.get_running_loop()
        woke: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not woke.done():
                woke.set_result(None)

        loop.add_reader(self._fd, readable)
        try:
            await asyncio.wait([woke], timeout=max(0.0, timeout))
        finally:
            loop.remove_reader(self._fd)
        if not woke.done():
            woke.cancel()
            self._all = True  # the backstop: look at everything
            return False
        self.drain()
        return True

    def drain(self) -> None:
        """Take in the changes seen so far (call before snapshotting again): `changed` tells which
        directories they were in."""
        if self._fd is None:
            self._all = True
            return
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                raise
            if not data:
                return
            pos = 0
            while pos + _EVENT.size <= len(data):  # struct inotify_event: wd, mask, cookie, len, name
                wd, _, _, n = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + n
                i = self._wds.get(wd)
                if i is None:  # the queue overflowed (wd -1) or a watch went away: assume all
                    self._all = True
                else:
                    self._changed.add(i)

    def changed(self) -> set[int] | None:
        """Indices (into `directories`) of the directories changed since the last call, or None
        for "any of them" (no inotify, a timeout, an overflow, the first call). Resets."""
        out: set[int] | None = None if self._all else self._changed
        self._changed, self._all = set(), False
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._poll = None, None

    def __enter__(self) -> ChangeWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

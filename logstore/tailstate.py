"""A process's view of a partition's tail, and how a writer brings it up to date under the lock.

`TailState` lives on the `Partition` object, guarded by its exclusive lock, and is shared by
every writer of the partition in this process (see `commit.py` for the protocol using it).
`match_tail` makes it match the partition at the start of every lock hold: kept when the file and
the hint still say what this process left; moved on to another writer's trusted hint when that
writer committed after it on the same segment and the file ends where that hint says; else
re-derived from the segments (recovering a torn tail).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import LogIOError
from .hint import Hint
from .timeutil import MIN_TIME

if TYPE_CHECKING:
    from .partition import Partition

log = logging.getLogger("logstore")


@dataclass
class TailState:
    """What a process knows of a partition's tail while it holds the lock (see module docstring)."""

    fd: int | None = None
    hint: Hint | None = None
    first_append_time: int | None = None
    index_ok: bool = True  # False after an index append failed: the rest of this segment goes unindexed
    undo: Hint | None = None  # a failed commit left bytes past this tail that must be truncated first
    index_pending: list[bytes] = field(default_factory=list)  # entries of committed frames, in order
    synced: Hint | None = None  # the tail a durable batch's fdatasync (outside the lock) made durable
    index_since: float = 0.0  # monotonic time the oldest pending entry waits since

    def close(self) -> None:
        """Forget the tail (pending index entries too: the next index append covers their frames)."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd, self.hint, self.first_append_time, self.index_ok, self.undo = None, None, None, True, None
        self.index_pending = []


def match_tail(part: Partition, tail: TailState) -> None:
    """(Under the lock.) Make `tail` match the partition, re-deriving it if another writer moved it."""
    try:
        hint = part.read_hint()
    except OSError:
        hint = None
    if tail.undo is not None:  # a failed commit whose bytes could not be taken back: do it now
        undo, tail.undo = tail.undo, None
        # only if nobody moved the tail since: another process that took the lock meanwhile saw
        # the exact hint, truncated the bytes itself and may have committed after them
        if tail.fd is not None and hint in (undo.marked(exact=True), undo):
            try:
                os.ftruncate(tail.fd, undo.size)
            except OSError as e:
                tail.undo = undo
                raise LogIOError(
                    f"cannot take back a failed commit to {part.seg_path(undo.base)}: "
                    f"{e.strerror or e}; nothing was written"
                ) from e
            tail.hint = undo
            write_hint_quietly(part, undo)
            return
    if tail.fd is not None and tail.hint is not None and hint is not None:
        same = hint is tail.hint or hint == tail.hint
        # another writer committed after us on the segment we hold open: its trusted hint names
        # the new tail when the file ends exactly there (the common case with several processes)
        moved = not same and hint.trusted and hint.base == tail.hint.base and hint.size > tail.hint.size
        if same or moved:
            try:
                st = os.fstat(tail.fd)
                if st.st_size == hint.size and st.st_nlink > 0:
                    if moved:
                        tail.hint, tail.index_pending = hint, []  # their frames come between ours
                        if tail.first_append_time is None:
                            tail.first_append_time = part.first_append_time(hint.base)
                    return
            except OSError:
                pass
    tail.close()
    if (
        hint is not None
        and hint.trusted
        and not part.seg_path(hint.next_offset).exists()
        or (hint is not None and hint.trusted and hint.size == 0 and hint.base == hint.next_offset)
    ):
        try:
            fd = part.open_segment(hint.base, create=False, durable=False)
        except (LogIOError, OSError):
            fd = None
        if fd is not None:
            if os.fstat(fd).st_size == hint.size and part.segment_bases()[-1:] == [hint.base]:
                tail.fd, tail.hint = fd, hint
                tail.first_append_time = part.first_append_time(hint.base)
                return
            os.close(fd)
    derived = part.derive_tail()
    if derived is None:  # empty partition: create its first segment
        tail.fd = part.open_segment(0, create=True, durable=True)
        tail.hint = Hint(0, 0, 0, MIN_TIME)
        tail.first_append_time = None
        write_hint_quietly(part, tail.hint)
        return
    new_hint, _ = derived
    tail.fd = part.open_segment(new_hint.base, create=False, durable=False)
    tail.hint = new_hint
    tail.first_append_time = part.first_append_time(new_hint.base)


def write_hint_quietly(part: Partition, hint: Hint) -> None:
    try:
        part.write_hint(hint)
    except OSError as e:
        log.warning("tail hint of %s not updated (%s): readers derive the tail", part.dir, e)

"""The commit protocol's steps at a writer's close (`Partition.sync_tail`, `Partition.close_tail`):
index what is pending, make unsynced commits durable and say so in the hint's synced slot, release
the segment descriptor. See `commit.py` for the protocol itself."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .hint import Hint
from .tailindex import flush_index

if TYPE_CHECKING:
    from .partition import Partition
    from .tailstate import TailState

log = logging.getLogger("logstore")


def close_tail(part: Partition) -> None:
    """Release the segment descriptor the commit protocol keeps open for `part`."""
    tail = part.tail
    if tail.fd is not None:
        with part.exclusive():
            if tail.undo is None:
                if tail.index_pending and _tail_unmoved(part, tail):
                    flush_index(part, tail)
                tail.close()


def _tail_unmoved(part: Partition, tail: TailState) -> bool:
    """(Under the lock.) True if the partition's tail is still the one this process left."""
    try:
        return tail.hint is not None and part.read_hint() == tail.hint
    except OSError:
        return False


def sync_tail(part: Partition) -> None:
    """Append the pending index entries, make what was committed to `part` without a sync durable
    (fdatasync) and record the recovery point in the hint's synced slot; for writers at close.
    A failure is logged: it costs only the protection the slot would give after a reboot."""
    tail = part.tail
    with part.exclusive():
        hint = tail.hint
        if tail.fd is None or hint is None:
            return
        if tail.index_pending and _tail_unmoved(part, tail):
            flush_index(part, tail)
        if hint.synced:
            return
        try:
            if os.fstat(tail.fd).st_size != hint.size:
                return
            os.fdatasync(tail.fd)
            part.write_hint(Hint(hint.base, hint.size, hint.next_offset, hint.last_append_time, synced=True), slot=1)
        except OSError as e:
            log.warning("could not sync %s at close (%s)", part.seg_path(hint.base), e)

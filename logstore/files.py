"""Replacing files atomically: the one way the project writes a file that must be whole or absent.

A file is written beside its destination as ``.<name>.<pid>.tmp``, fsynced, renamed over the
destination, and the directory is fsynced: after a crash the destination is the old file or the
new one, never a mix, and at most a stray temp file is left.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import LogIOError


@contextmanager
def replacing(path: Path, what: str = "write") -> Iterator[Path]:
    """Yield the temp path to write; on success it replaces `path` durably.

    On failure the temp file is removed; an OSError becomes a LogIOError naming `what` and `path`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise LogIOError(f"{what} {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, what: str = "write") -> None:
    """Replace `path` with `data` (see `replacing`)."""
    with replacing(path, what) as tmp:
        tmp.write_bytes(data)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a file created or renamed in it survives power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

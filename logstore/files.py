"""File-system primitives: the only way the log changes a file or a directory entry.

Every mutation goes through the `os` functions used here (``os.open``, ``os.write``, ``os.pwrite``,
``os.ftruncate``, ``os.fsync``, ``os.replace``, ``os.unlink``, ``os.mkdir``): the power-loss
simulator of the test suite records exactly these calls and rebuilds every disk state a crash can
leave from them, so a write that bypassed them would escape the proof.

Durability in order (SQLite's and ALICE's rules): a file that must be whole or absent is written
beside its destination as ``.<name>.<pid>.<thread>.tmp``, fsynced, renamed over the destination,
and the directory is fsynced; a new directory is followed by an fsync of its parent. After a
crash the destination is the old file or the new one, never a mix, and at most a stray temp file
is left (ignored by every reader). ``durable=False`` skips the fsyncs for derived files (indexes,
summaries), which are checked on load and rebuilt when damaged.

Files inside a log are opened with ``O_NOFOLLOW``: a symlink planted in a log directory is refused,
never followed out of the log.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LogIOError

if TYPE_CHECKING:
    from typing_extensions import Buffer

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def temp_name(path: Path) -> Path:
    """The temp file beside `path` for this process and thread (never shared between writers)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int | None = None) -> None:
    """Write all of `data` to `fd` (at `offset`, or at the file position), looping on short writes."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        if offset is None:
            n = os.write(fd, view[done:])
        else:
            n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        done += n


def write_atomic(path: Path, data: bytes, what: str = "write", *, durable: bool = True) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, fsync of the directory.

    On failure the temp file is removed and the destination is untouched; an OSError becomes a
    LogIOError naming `what` and `path`.
    """
    path = Path(path)
    with _temp_for(path, what) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW | CLOEXEC, 0o644)
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)


@contextmanager
def _temp_for(path: Path, what: str) -> Iterator[Path]:
    """The temp path beside `path`; on any failure in the block it is removed, and an OSError
    becomes a LogIOError naming `what` and `path`."""
    tmp = temp_name(path)
    try:
        yield tmp
    except OSError as e:
        _unlink_quietly(tmp)
        raise LogIOError(f"{what} {path}: {e.strerror or e}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextmanager
def replacing(path: Path, what: str = "write") -> Iterator[Path]:
    """Yield a temp path for a writer that makes its own file (an export); on success it replaces
    `path` durably, as `write_atomic` does. On failure the temp file is removed."""
    path = Path(path)
    with _temp_for(path, what) as tmp:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)


def append_bytes(path: Path, data: bytes) -> None:
    """Append `data` to `path` (created if missing), not fsynced: for derived, self-checking files."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def make_dir(path: Path, *, durable: bool = True) -> bool:
    """Create directory `path` and any missing parents, each fsynced into its parent.

    Returns True if anything was created. An existing directory is left as it is.
    """
    path = Path(path)
    if path.is_dir():
        return False
    missing = []
    p = path
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue
        if durable:
            fsync_dir(d.parent)
    return True


def fsync_dir(path: Path) -> None:
    """fsync a directory so the entries created, renamed or removed in it survive power loss."""
    fd = os.open(path, os.O_RDONLY | CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> bool:
    """Unlink `path`; False if it was already gone."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_small(path: Path, limit: int = 16 << 20) -> bytes:
    """The bytes of a small metadata file inside the log, refusing symlinks and huge files."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW | CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise LogIOError(f"{path} is {size} bytes, more than a metadata file may hold ({limit})")
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


_IOV_MAX = 512  # iovecs per pwritev (Linux IOV_MAX is 1024)


def write_frames(fd: int, position: int, chunks: Sequence[Buffer]) -> int:
    """Write `chunks` contiguously at `position`; returns bytes written. Raises LogIOError."""
    total = 0
    pos = position
    i = 0
    chunks = list(chunks)
    while i < len(chunks):
        group = chunks[i : i + _IOV_MAX]
        want = sum(memoryview(c).nbytes for c in group)
        done = os.pwritev(fd, group, pos)
        if done < want:  # short write: finish this group piece by piece
            flat = b"".join(bytes(memoryview(c)) for c in group)[done:]
            while flat:
                n = os.pwrite(fd, flat, pos + done)
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                done += n
                flat = flat[n:]
        pos += done
        total += done
        i += _IOV_MAX
    return total

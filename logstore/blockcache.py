"""The local cache of remote bytes: blocks of remote segments (and their indexes), LRU by bytes.

Derived state (docs/architecture.md, invariant 5), safe to delete at any time: a block file is
``<name>.blk``, the block's bytes then an 8-byte trailer (``LSC1`` and the CRC-32C of the bytes),
written beside its place and renamed in, never fsynced. A file that fails its trailer or is not
the length its block must have is deleted and the block fetched again; the frames it holds are
verified by their own checksums on use as well. Names carry the identity of the remote object
(its URI, whole-file checksum and size: `ident`), so a block of another object never stands in.

Above the directory sits a memory LRU (a block is read from its file once per use of it, not
once per frame), and concurrent misses of one block share one fetch. The directory is kept
within its limit by what this process knows of it (the files found at first use, and its own
writes): processes sharing it each bound it so. A limit of 0 keeps no files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from .checksum import crc
from .files import make_dir, remove, write_atomic

log = logging.getLogger("logstore")

TRAILER = struct.Struct("<4sI")
MAGIC = b"LSC1"
SUFFIX = ".blk"


def ident(*parts: object) -> str:
    """A short, stable name for a remote object's identity (URI, checksum, size, block size)."""
    return hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=12).hexdigest()


class BlockCache:
    """Blocks by name: memory, then the directory `locate()` gives (None: no files), then a fetch."""

    def __init__(self, locate: Callable[[], Path | None], limit: int, memory: int) -> None:
        self._locate = locate
        self.limit = limit
        self.memory_limit = memory
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_bytes = 0
        self._inflight: dict[str, Future[bytes]] = {}
        self._files: OrderedDict[str, int] | None = None  # name -> bytes on disk, oldest first
        self._disk_bytes = 0
        self._dir: Path | None = None
        self._broken = False  # the directory cannot be written: memory only from now on
        self.hits = 0
        self.misses = 0

    # --- the directory -------------------------------------------------------------------------
    def _directory(self) -> Path | None:
        """(Under the lock.) The cache directory, its files listed on first use; None for none."""
        if self.limit <= 0 or self._broken:
            return None
        if self._dir is None:
            try:
                self._dir = self._locate()
            except OSError as e:
                log.warning("remote block cache disabled: %s", e)
                self._broken = True
                return None
            if self._dir is None:
                self._broken = True
                return None
        if self._files is None:
            found: list[tuple[int, str, int]] = []
            try:
                with os.scandir(self._dir) as it:
                    for entry in it:
                        if entry.name.endswith(SUFFIX) and entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            found.append((st.st_mtime_ns, entry.name, st.st_size))
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("remote block cache %s unreadable: %s", self._dir, e)
            self._files = OrderedDict((name, size) for _, name, size in sorted(found))
            self._disk_bytes = sum(self._files.values())
        return self._dir

    def _load(self, name: str, length: int, check: Callable[[bytes], bool] | None) -> bytes | None:
        """A block's file, verified; None (and the file deleted) if missing or not whole."""
        with self._lock:
            directory = self._directory()
            if directory is None or self._files is None or name not in self._files:
                return None
        path = directory / name
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            raw = b""
        data = raw[: -TRAILER.size]
        ok = len(raw) == length + TRAILER.size and TRAILER.unpack(raw[-TRAILER.size :]) == (MAGIC, crc(data))
        if ok and check is not None:
            ok = check(data)
        with self._lock:
            if not ok:
                self._forget(name)
            elif self._files is not None and name in self._files:
                self._files.move_to_end(name)
        if not ok:
            if raw:
                remove(path)
            return None
        try:
            os.utime(path)  # recency survives this process (the next one lists by mtime)
        except OSError:
            pass
        return data

    def _forget(self, name: str) -> None:
        if self._files is not None:
            self._disk_bytes -= self._files.pop(name, 0)

    def _store(self, name: str, data: bytes) -> None:
        """Write a block's file (not fsynced: derived) and evict the oldest beyond the limit."""
        with self._lock:
            directory = self._directory()
        if directory is None:
            return
        path = directory / name
        try:
            make_dir(directory, durable=False)
            write_atomic(path, data + TRAILER.pack(MAGIC, crc(data)), "cache remote block", durable=False)
        except OSError as e:  # LogIOError is an OSError too
            log.warning("remote block cache %s not written (%s): reading without it", directory, e)
            with self._lock:
                self._broken = True
            return
        victims = []
        with self._lock:
            if self._files is None:
                return
            self._forget(name)
            self._files[name] = len(data) + TRAILER.size
            self._disk_bytes += len(data) + TRAILER.size
            while self._disk_bytes > self.limit and len(self._files) > 1:
                old, size = self._files.popitem(last=False)
                self._disk_bytes -= size
                victims.append(old)
        for old in victims:
            remove(directory / old)

    # --- memory and fetching ------------------------------------------------------------------
    def _remember(self, name: str, data: bytes) -> None:
        with self._lock:
            if name in self._memory:
                return
            self._memory[name] = data
            self._memory_bytes += len(data)
            while self._memory_bytes > self.memory_limit and len(self._memory) > 1:
                _, old = self._memory.popitem(last=False)
                self._memory_bytes -= len(old)

    def known(self, name: str) -> bool:
        """True if block `name` is in memory, on its way, or has a file."""
        with self._lock:
            return name in self._memory or name in self._inflight or bool(self._files and name in self._files)

    def get(
        self, name: str, length: int, fetch: Callable[[], bytes], check: Callable[[bytes], bool] | None = None
    ) -> bytes:
        """Block `name` of `length` bytes: from memory, its file, or `fetch()` (kept if whole and
        `check` accepts it). Concurrent calls for one block share one fetch."""
        with self._lock:
            data = self._memory.get(name)
            if data is not None:
                self._memory.move_to_end(name)
                self.hits += 1
                return data
            fut = self._inflight.get(name)
            mine = fut is None
            if fut is None:
                fut = self._inflight[name] = Future()
        if not mine:
            return fut.result()
        try:
            data = self._load(name, length, check)
            if data is not None:
                with self._lock:
                    self.hits += 1
            else:
                with self._lock:
                    self.misses += 1
                data = fetch()
                if len(data) == length and (check is None or check(data)):
                    self._store(name, data)
                else:  # short or failing its check: handed on (its frames will say what is wrong), never kept
                    fut.set_result(data)
                    return data
            self._remember(name, data)
            fut.set_result(data)
            return data
        except BaseException as e:
            fut.set_exception(e)
            raise
        finally:
            with self._lock:
                self._inflight.pop(name, None)

    def close(self) -> None:
        """Keep nothing more (memory freed, no files written): the directory may be gone."""
        with self._lock:
            self._broken = True
            self._memory.clear()
            self._memory_bytes = 0

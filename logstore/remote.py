"""Remote stores of sealed segments (`pyarrow.fs`: S3, GCS, HDFS, a local path), read by ranges.

A store is named by a URI as `pyarrow.fs.FileSystem.from_uri` takes it: ``s3://bucket/prefix``
(endpoint options in the query: ``?endpoint_override=127.0.0.1:9000&scheme=http``; credentials
from ``AWS_*`` in the environment or ``s3://KEY:SECRET@bucket/...``), ``file:///path`` for tests.
Credentials are used, never written down: the log records a URI without them (`public_uri`), and
a process that gave the URI with credentials (`Remotes.configure`) uses them for that store.

A remote segment is read as a `RemoteSegmentView`: the `segment.SegmentView` every reader uses,
whose bytes come in blocks (`block_bytes`, aligned) fetched by range reads through the log's
`blockcache.BlockCache`, so a read fetches only the blocks holding the frames its index picked,
and a sequential read fetches a few blocks ahead. Every frame is verified by its own checksums
as a local one is: a remote frame that fails them is reported, never returned. `Remotes.stats`
counts what was fetched (bytes and requests) and uploaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from .blockcache import BlockCache, ident
from .checksum import crc
from .errors import ArgumentError, LogIOError
from .manifest import Placed
from .segment import SegmentView

DEFAULT_BLOCK_BYTES = 1 << 20
DEFAULT_CACHE_BYTES = 256 << 20
MEMORY_BYTES = 64 << 20  # blocks kept in memory above the cache directory
READ_AHEAD = 8  # blocks fetched ahead of a sequential read, at most
CHUNK = 8 << 20  # pieces of an upload or a whole-object read
_OBJECT_STORES = ("s3", "gcs")  # no directories to create

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _forget_after_fork() -> None:
    global _pool_lock, _pool
    _pool_lock, _pool = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_after_fork)


def io_pool() -> ThreadPoolExecutor:
    """Threads for read-ahead fetches (their own: a frame-pool task may wait on one)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(8, thread_name_prefix="logstore-remote")
        return _pool


def public_uri(uri: str) -> str:
    """`uri` without credentials (the user info of its authority): what the log may write down.
    Raises ArgumentError for a string that is no URI with a scheme."""
    if not isinstance(uri, str) or "://" not in uri:
        raise ArgumentError(f"remote {uri!r}: give a URI such as s3://bucket/prefix or file:///path")
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme:
        raise ArgumentError(f"remote {uri!r}: give a URI such as s3://bucket/prefix or file:///path")
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


@dataclass
class RemoteStats:
    """What a log's remote access did (counters since the log was opened)."""

    bytes_fetched: int = 0  # bytes read from remote stores (range reads, read-backs, indexes)
    requests: int = 0  # read requests made
    bytes_uploaded: int = 0
    cache_hits: int = 0  # blocks found in memory or the cache directory
    cache_misses: int = 0  # blocks fetched


class Store:
    """One remote store: a `pyarrow.fs` file system and the root path under it."""

    def __init__(self, public: str, full: str, stats: Callable[..., None]) -> None:
        self.public = public
        try:
            self.fs, root = pafs.FileSystem.from_uri(full)
        except (OSError, ValueError, pa.ArrowException) as e:
            raise LogIOError(f"remote {public}: {e}") from None
        self.root = root.rstrip("/")
        self._count = stats

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def _fail(self, what: str, key: str, e: BaseException) -> LogIOError:
        return LogIOError(f"{what} {self.public}/{key}: {e}")

    def upload(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write object `key` from `chunks` (a local store's file is fsynced); its size."""
        path, n = self.path(key), 0
        try:
            if self.fs.type_name not in _OBJECT_STORES:
                self.fs.create_dir(path.rpartition("/")[0], recursive=True)
            with self.fs.open_output_stream(path) as out:
                for chunk in chunks:
                    out.write(chunk)
                    n += len(chunk)
            if isinstance(self.fs, pafs.LocalFileSystem):
                _fsync_local(path)
        except FileNotFoundError as e:
            raise self._fail("cannot upload", key, e) from None
        except (OSError, pa.ArrowException) as e:
            raise self._fail("cannot upload", key, e) from None
        self._count(uploaded=n)
        return n

    def read_chunks(self, key: str) -> Iterable[bytes]:
        """Object `key`, whole, in pieces. FileNotFoundError if there is none."""
        try:
            with self.fs.open_input_stream(self.path(key)) as f:
                while True:
                    chunk = f.read(CHUNK)
                    self._count(fetched=len(chunk), requests=1)
                    if not chunk:
                        return
                    yield chunk
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as e:
            raise self._fail("cannot read", key, e) from None

    def checksum(self, key: str) -> tuple[int, int]:
        """(size, CRC-32C) of object `key` as stored, read back whole."""
        size, value = 0, 0
        for chunk in self.read_chunks(key):
            size, value = size + len(chunk), crc(chunk, value)
        return size, value

    def read(self, key: str) -> bytes:
        return b"".join(self.read_chunks(key))

    def read_at(self, handle: Any, key: str, offset: int, length: int) -> bytes:
        try:
            data: bytes = handle.read_at(length, offset)
        except (OSError, pa.ArrowException) as e:
            raise self._fail("cannot read", key, e) from None
        self._count(fetched=len(data), requests=1)
        return data

    def open(self, key: str) -> Any:
        """A random-access handle on object `key`; FileNotFoundError if there is none."""
        try:
            return self.fs.open_input_file(self.path(key))
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as e:
            raise self._fail("cannot open", key, e) from None

    def delete(self, key: str) -> bool:
        """Delete object `key`; False if it was not there."""
        try:
            self.fs.delete_file(self.path(key))
            return True
        except FileNotFoundError:
            return False
        except (OSError, pa.ArrowException) as e:
            raise self._fail("cannot delete", key, e) from None


def _fsync_local(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Remotes:
    """A log's access to remote stores: stores by URI, the block cache, the counters.

    `cache_dir` is where blocks are kept (created on first use); None with `temporary` keeps
    them in a private temporary directory removed at `close` (a read-only log writes nothing
    inside the log); `cache_bytes` bounds it (0: memory only).
    """

    def __init__(
        self,
        cache_dir: Path | None,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        temporary: bool = False,
    ) -> None:
        if not isinstance(block_bytes, int) or block_bytes < 4096:
            raise ArgumentError(f"block_bytes must be an int of at least 4096, found {block_bytes!r}")
        if not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise ArgumentError(f"cache_bytes must be a non-negative int, found {cache_bytes!r}")
        self.block_bytes = block_bytes
        self._cache_dir = cache_dir
        self._temporary = temporary
        self._temp: str | None = None
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]
        self.cache = BlockCache(self._locate, cache_bytes, MEMORY_BYTES)
        self._lock = threading.Lock()
        self._full: dict[str, str] = {}  # public URI -> the URI given (with credentials)
        self._stores: dict[str, Store] = {}
        self._stats = RemoteStats()
        self._next_index: dict[tuple[str, str], int] = {}  # per partition: the index read in order next

    def _locate(self) -> Path | None:
        if self._cache_dir is not None:
            return self._cache_dir
        if not self._temporary:
            return None
        with self._lock:
            if self._temp is None:
                self._temp = tempfile.mkdtemp(prefix="logstore-cache-")
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._temp, True)
            return Path(self._temp)

    @property
    def cache_dir(self) -> Path | None:
        """Where blocks are kept (None until a temporary one is made, or with none)."""
        return self._cache_dir if self._cache_dir is not None else (Path(self._temp) if self._temp else None)

    def configure(self, uri: str) -> str:
        """Remember `uri` (maybe with credentials) for its store; returns its public form."""
        public = public_uri(uri)
        with self._lock:
            if self._full.get(public) != uri:
                self._full[public] = uri
                self._stores.pop(public, None)
        return public

    def store(self, remote: str) -> Store:
        """The store at public URI `remote` (made once per log)."""
        with self._lock:
            st = self._stores.get(remote)
            if st is None:
                st = self._stores[remote] = Store(remote, self._full.get(remote, remote), self._count)
            return st

    def _count(self, *, fetched: int = 0, requests: int = 0, uploaded: int = 0) -> None:
        with self._lock:
            self._stats.bytes_fetched += fetched
            self._stats.requests += requests
            self._stats.bytes_uploaded += uploaded

    def stats(self) -> RemoteStats:
        with self._lock:
            s = self._stats
            return RemoteStats(s.bytes_fetched, s.requests, s.bytes_uploaded, self.cache.hits, self.cache.misses)

    def view(self, entry: Placed, size: int | None = None, following: Placed | None = None) -> RemoteSegmentView:
        """A view of remote segment `entry` (its first `size` bytes), read through the cache; a
        sequential read near its end fetches the first blocks of the `following` segment ahead."""
        return RemoteSegmentView(ObjectBlocks(self, entry, entry.bytes if size is None else size, following))

    def index_bytes(self, entry: Placed, following: Sequence[Placed] = ()) -> bytes | None:
        """The remote index of `entry` through the cache (checked against the manifest's checksum
        when taken from a file); None if it is missing (the frames then say what it would). When
        a partition's indexes are read in order, those of the `following` segments are fetched ahead."""
        folder = (entry.remote, entry.key.rpartition("/")[0])
        with self._lock:
            sequential = self._next_index.get(folder) == entry.base
            self._next_index[folder] = following[0].base if following else -1
        if sequential:
            for e in following:
                if not self.cache.known(_index_name(e)):
                    io_pool().submit(self._index_quietly, e)
        try:
            return self._index(entry)
        except FileNotFoundError:
            return None

    def _index(self, entry: Placed) -> bytes:
        store = self.store(entry.remote)
        return self.cache.get(
            _index_name(entry),
            entry.index_bytes,
            lambda: store.read(entry.index_key),
            lambda b: crc(b) == entry.index_crc,
        )

    def _index_quietly(self, entry: Placed) -> None:
        try:
            self._index(entry)
        except Exception:  # noqa: BLE001 - the read that needs it fetches it again and says why
            pass

    def whole(self, entry: Placed) -> MemorySegmentView:
        """Remote segment `entry` read whole, fresh (not from the cache): for `verify`."""
        data = self.store(entry.remote).read(entry.key)
        return MemorySegmentView(entry.uri, data)

    def close(self) -> None:
        """Remove a temporary cache directory (later reads keep no cache)."""
        if self._finalizer is not None:
            self.cache.close()
            self._finalizer()


def _index_name(entry: Placed) -> str:
    return ident(entry.remote, entry.index_key, entry.index_crc, entry.index_bytes) + "-idx.blk"


class ObjectBlocks:
    """The blocks of one remote object, as the cache holds them; `read` and `slice` assemble ranges."""

    def __init__(self, remotes: Remotes, entry: Placed, size: int, following: Placed | None = None) -> None:
        self.remotes = remotes
        self.following = following
        self.entry = entry
        self.uri = entry.uri
        self.size = min(size, entry.bytes)
        self.block = remotes.block_bytes
        self._ident = ident(entry.remote, entry.key, entry.crc, entry.bytes, self.block)
        self._store = remotes.store(entry.remote)
        self._lock = threading.Lock()
        self._handle: Any = None
        self._last = -2
        self._run = 0  # blocks read in order so far

    def _name(self, n: int) -> str:
        return f"{self._ident}-{n}.blk"

    def _length(self, n: int) -> int:
        return min(self.block, self.entry.bytes - n * self.block)

    def _fetch(self, n: int) -> bytes:
        with self._lock:
            if self._handle is None:
                try:
                    self._handle = self._store.open(self.entry.key)
                except FileNotFoundError:
                    raise LogIOError(
                        f"remote segment {self.uri} is missing: the partition's tier manifest says it is "
                        "there (its records cannot be read)"
                    ) from None
            handle = self._handle
        return self._store.read_at(handle, self.entry.key, n * self.block, self._length(n))

    def get(self, n: int) -> bytes:
        """Block `n`. A sequential read fetches blocks ahead on the remote threads, the more the
        longer it goes on (doubling up to `READ_AHEAD`; a frame across two blocks fetches no
        third), and near the end the first blocks of the `following` segment."""
        with self._lock:
            self._run = self._run + 1 if n == self._last + 1 else 0
            self._last, ahead = n, 0 if self._run < 2 else min(READ_AHEAD, 2 ** (self._run - 1))
        data = self.remotes.cache.get(self._name(n), self._length(n), lambda: self._fetch(n))
        if ahead > 0:
            self.prefetch(n + 1, n + ahead)
            beyond = n + ahead - (self.entry.bytes - 1) // self.block
            if beyond > 0 and self.following is not None:
                ObjectBlocks(self.remotes, self.following, self.following.bytes).prefetch(0, beyond - 1)
        return data

    def prefetch(self, first: int, last: int) -> None:
        """Fetch blocks `first`..`last` (those there are, not yet known) on the remote threads."""
        for k in range(first, min(last, (self.entry.bytes - 1) // self.block) + 1):
            if not self.remotes.cache.known(self._name(k)):
                io_pool().submit(self._prefetch, k)

    def _prefetch(self, n: int) -> None:
        try:
            self.remotes.cache.get(self._name(n), self._length(n), lambda: self._fetch(n))
        except Exception:  # noqa: BLE001 - the read that needs the block fetches it again and says why
            pass

    def read(self, start: int, stop: int) -> memoryview:
        """Bytes [start, stop) (fewer past the end)."""
        stop = min(stop, self.size)
        if start >= stop:
            return memoryview(b"")
        b = self.block
        first, last = start // b, (stop - 1) // b
        if first == last:
            return memoryview(self.get(first))[start - first * b : stop - first * b]
        parts = [memoryview(self.get(n)) for n in range(first, last + 1)]
        return memoryview(b"".join(parts))[start - first * b : stop - first * b]

    def slice(self, offset: int, length: int) -> pa.Buffer:
        """Bytes [offset, offset + length) as a pyarrow Buffer (zero-copy within one block)."""
        b = self.block
        stop = min(offset + length, self.size)
        if offset < stop and offset // b == (stop - 1) // b:
            n = offset // b
            return pa.py_buffer(self.get(n)).slice(offset - n * b, stop - offset)
        return pa.py_buffer(bytes(self.read(offset, stop)))


class RemoteSegmentView(SegmentView):
    """A `SegmentView` of a remote segment: the same frame reading, its bytes fetched by block."""

    __slots__ = ("blocks",)

    def __init__(self, blocks: ObjectBlocks) -> None:  # noqa: D107 - SegmentView's mapping is not made
        self.blocks = blocks
        self.path = blocks.uri
        self.size = blocks.size
        self.buffer = blocks  # `.slice(offset, length)`, as a mapped view's buffer has
        self._view = memoryview(b"")

    def _bytes(self, start: int, stop: int) -> memoryview:
        return self.blocks.read(start, stop)


class MemorySegmentView(SegmentView):
    """A `SegmentView` over bytes in memory (a remote segment read whole)."""

    def __init__(self, uri: str, data: bytes) -> None:  # noqa: D107
        self.path = uri
        self.size = len(data)
        self.buffer = pa.py_buffer(data)
        self._view = memoryview(self.buffer)

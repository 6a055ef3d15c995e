"""A power-loss simulator for the log, in the manner of SQLite's crash tests and ALICE.

A workload runs for real inside a `Recorder`, which wraps the ``os`` functions the log may mutate
the file system with (the contract of `logstore.files`: ``os.open``, ``write``, ``pwrite``,
``pwritev``, ``ftruncate``, ``fsync``, ``fdatasync``, ``close``, ``replace``, ``rename``,
``unlink``/``remove``, ``mkdir``, ``rmdir``) and records, for paths under one root directory, a
trace of what they did:

    create(path)             a new, empty file got a name (``os.open`` with ``O_CREAT``)
    write(path, offset, b)   bytes b reached the file at offset (``write``/``pwrite``/``pwritev``,
                             ``O_APPEND`` writes at the size the file had)
    truncate(path, size)     ``ftruncate``, or ``O_TRUNC`` on an existing file
    sync(path)               ``fsync``/``fdatasync`` of a file
    dirsync(dir)             ``fsync`` of a descriptor of a directory: its entries are durable
    rename(src, dst)         ``rename``/``replace`` (dst, if it existed, is replaced atomically)
    unlink(path), mkdir(path), rmdir(path)
    mark(label)              the workload was told something is done (an acknowledgement), with
                             the state it was promised (see `Acked`)

Files are inodes and directory entries name them (a write after a rename goes to the renamed
file; an unlinked file still open keeps its data). The Recorder snapshots the root's tree when it
starts; replaying the whole trace on that snapshot must give the real final tree byte for byte
(`Recorder.self_check`): that proves no mutation escaped the shim. A write through anything else
(``open(path, "w")``, ``Path.write_text``...) under the root is a *violation* of the contract: it is
recorded with the caller's location (and modelled as an unsynced write, so the simulation stays
faithful), and every test asserts there are none. The Recorder does not pass syncs on to the disk:
nothing real crashes, so they only need to be recorded.

Crash states. A power cut at crash point k (0 <= k <= len(trace)) leaves the disk with the first k
ops done and nothing after; the machine reboots (the log is opened under a new boot id, see
`simulated_reboot`). Which of those k ops reached the platter is decided per model:

* Durable data of a file at k: its content right after its last sync (of any descriptor of it)
  before k, or its content in the initial snapshot. Its *pending* ops: its writes and truncates
  after that sync and before k.

* Model ``"ext4"`` (ordered metadata, delayed data, as ext4 ``data=ordered`` without
  ``auto_da_alloc``, or XFS): every directory-entry op before k persists, in order, so the names at
  k are exactly the real ones; pending truncates persist (size changes are journaled metadata). Of
  each file's pending writes the crash keeps one of: all of them; none; a prefix, the rest lost
  (any suffix may be lost), where the first lost write may instead be *torn* (only a prefix of it,
  cut at a 512 B or 4 KiB boundary of the file, persists; optionally the rest of its range reads
  as zeros) or *zero-filled* (the file grew to the write's end but the new bytes read as zeros;
  bytes it overwrote keep their old value); or any subset (writes reached the disk out of order).
  Files are independent of each other.

* Model ``"posix"`` (strict): file data as in ext4, except that pending truncates are lost like
  pending writes (with the suffix or subset; never torn). A directory-entry op (create, mkdir,
  rename, unlink, rmdir) persists only if every directory whose entries it changed (for a rename,
  the source's and the destination's parents) was dirsync-ed after it and before k; otherwise it
  is undone: a create or mkdir never happened, an unlink or rmdir did not happen (the name still
  names the old inode, with its durable data and whatever of its pending data survived), a
  rename did not happen (the old name still names the file, the destination whatever it named
  before). What an undone entry named is unreachable: an undone mkdir takes everything under it.

For every crash point the states enumerated per model are ``lost`` (every pending write lost),
``kept`` (every pending op persisted) and a few seeded random mixes of the variants above
(`crash_states`); identical states are checked once per acknowledgement level. Crash points: all of
them, or (subsampled with a fixed seed) a random share plus every point after and before a sync,
dirsync, rename, replace, unlink, mkdir, rmdir or mark, and every point where the op kind changes
(`crash_points`).

Faults. A Recorder given a `Fault` (or several) makes the n-th call of one write-path op on a path
under the root raise ``OSError(errno)`` once, without doing anything (``write``, ``pwrite``, ``pwritev``,
``fdatasync``, ``fsync``, ``ftruncate``, ``rename``, ``replace``, ``open_creat``: ``os.open`` with
``O_CREAT``, ``mkdir``). `Recorder.calls` counts each kind's calls.

The second half of the module is the log's side: `Acked` (what a workload was promised),
`Written` (everything it ever gave the log), `LogWorkload` (a workload harness that marks each
acknowledgement with the `Acked` state it promises), `check_log_state` (the checker handed every
crash state) and `sweep` (runs a checker over a trace's crash states and summarizes). The checker,
run as after a reboot (`simulated_reboot`: a hint written before the cut is not of this boot) and
without real syncs (`nosync`: the state is throwaway), asserts on each state:

* `logstore.open` does not raise; every topic acknowledged is there with its settings and every
  schema version acknowledged; no topic the workload never created;
* every record read is one the workload wrote, with the values it wrote, at the partition and
  offset the real run gave it, once; within a partition the records of one call (one commit,
  maybe several frames) are all visible or none; each partition's offsets are dense from its start
  offset to its end offset; every record promised (see `LogWorkload`) is there unless an
  acknowledged or started `enforce_retention()` may have deleted it, and what an acknowledged
  retention deleted stays deleted;
* `verify()` reports no damage (the states hold no damage, only lost or torn unsynced writes);
* every consumer cursor acknowledged reads back (as committed, or as a later commit);
* a writer appends one more record to every topic, and reading then returns it at the end.
"""

from __future__ import annotations

import builtins
import copy
import errno as errno_mod
import hashlib
import io
import os
import random
import shutil
import stat
import sys
import threading
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ================================================================================================
# the logical file system
# ================================================================================================

ROOT = 0  # logical id of the root directory


class FS:
    """A tree of inodes: `dirs` (id -> {name: id}) and `files` (id -> content)."""

    __slots__ = ("dirs", "files", "next_id")

    def __init__(self) -> None:
        self.dirs: dict[int, dict[str, int]] = {ROOT: {}}
        self.files: dict[int, bytearray] = {}
        self.next_id = 1

    def copy(self) -> FS:
        fs = FS.__new__(FS)
        fs.dirs = {d: dict(e) for d, e in self.dirs.items()}
        fs.files = {i: bytearray(c) for i, c in self.files.items()}
        fs.next_id = self.next_id
        return fs

    def new_id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    @classmethod
    def snapshot(cls, root: Path) -> FS:
        """The tree under `root` (which must exist) as it is on disk."""
        fs = cls()

        def walk(path: str, dir_id: int) -> None:
            for entry in sorted(os.scandir(path), key=lambda e: e.name):
                st = entry.stat(follow_symlinks=False)
                i = fs.new_id()
                if stat.S_ISDIR(st.st_mode):
                    fs.dirs[i] = {}
                    fs.dirs[dir_id][entry.name] = i
                    walk(entry.path, i)
                elif stat.S_ISREG(st.st_mode):
                    with builtins.open(entry.path, "rb") as f:
                        fs.files[i] = bytearray(f.read())
                    fs.dirs[dir_id][entry.name] = i
                else:
                    raise ValueError(f"{entry.path}: only files and directories are simulated (a symlink?)")

        walk(str(root), ROOT)
        return fs

    def lookup(self, rel: str) -> int | None:
        """The id named by `rel` (a path relative to the root, '' for the root), or None."""
        node = ROOT
        if not rel:
            return node
        for part in rel.split("/"):
            entries = self.dirs.get(node)
            if entries is None:
                return None
            node = entries.get(part)
            if node is None:
                return None
        return node

    def tree(
        self, dirs: dict[int, dict[str, int]] | None = None, files: dict[int, bytes | bytearray] | None = None
    ) -> dict[str, bytes | None]:
        """path -> content (None for a directory) of everything reachable from the root."""
        dirs = self.dirs if dirs is None else dirs
        files = self.files if files is None else files
        out: dict[str, bytes | None] = {}
        stack = [("", ROOT)]
        while stack:
            prefix, d = stack.pop()
            for name, i in dirs[d].items():
                p = f"{prefix}{name}"
                if i in dirs:
                    out[p] = None
                    stack.append((p + "/", i))
                else:
                    out[p] = bytes(files.get(i, b""))
        return out


def tree_digest(tree: dict[str, bytes | None]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in sorted(tree):
        c = tree[p]
        h.update(p.encode() + (b"\x00D" if c is None else b"\x00F" + len(c).to_bytes(8, "little")))
        if c:
            h.update(c)
    return h.hexdigest()


def materialize(tree: dict[str, bytes | None], dest: Path) -> None:
    """Write `tree` (from `FS.tree`) into the new directory `dest`."""
    base = os.fspath(dest)
    os.makedirs(base)
    made = {""}
    for p in sorted(tree, key=lambda s: s.count("/")):
        c = tree[p]
        parent = p.rpartition("/")[0]
        if parent not in made:  # unreachable in a tree, kept for safety
            os.makedirs(os.path.join(base, parent), exist_ok=True)
            made.add(parent)
        full = os.path.join(base, p)
        if c is None:
            os.mkdir(full)
            made.add(p)
        else:
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(c)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)


def diff_trees(a: dict[str, bytes | None], b: dict[str, bytes | None]) -> list[str]:
    """What differs between two trees (empty if none), for messages."""
    out = []
    for p in sorted(set(a) | set(b)):
        if p not in a:
            out.append(f"{p}: only in the real tree")
        elif p not in b:
            out.append(f"{p}: only in the replayed trace")
        elif a[p] != b[p]:
            if a[p] is None or b[p] is None:
                out.append(f"{p}: a directory in one, a file in the other")
            else:
                out.append(f"{p}: {len(a[p])} bytes replayed, {len(b[p])} real, contents differ")
    return out


# ================================================================================================
# the trace
# ================================================================================================

DATA_KINDS = ("write", "truncate")
ENTRY_KINDS = ("create", "mkdir", "rename", "unlink", "rmdir")
FS_KINDS = DATA_KINDS + ENTRY_KINDS + ("sync", "dirsync")


@dataclass(eq=False)
class Op:
    """One recorded operation (see the module docstring). Ids are logical inode ids."""

    kind: str
    path: str = ""  # relative to the root
    ino: int = -1  # the file or directory concerned (for dirsync: the directory)
    parent: int = -1  # entry ops: the directory holding the name
    name: str = ""
    dst_path: str = ""  # rename
    dst_parent: int = -1
    dst_name: str = ""
    replaced: int | None = None  # rename: what dst named before
    offset: int = 0
    data: bytes = b""
    size: int = 0
    label: str = ""  # mark/step
    payload: Any = None  # mark: the Acked state
    via: str = ""  # the os function (or violation) that did it
    escaped: bool = False  # modelled from a contract violation

    def __str__(self) -> str:
        k = self.kind
        if k == "write":
            return f"write({self.path}, @{self.offset}, {len(self.data)} B)"
        if k == "truncate":
            return f"truncate({self.path}, {self.size})"
        if k == "rename":
            return f"rename({self.path} -> {self.dst_path})"
        if k in ("mark", "step"):
            return f"{k}({self.label})"
        return f"{k}({self.path or '.'})"


def apply_entry(dirs: dict[int, dict[str, int]], op: Op) -> None:
    """Apply a directory-entry op to `dirs`, tolerating one whose source an undone op removed."""
    k = op.kind
    if k in ("create", "mkdir"):
        if op.parent in dirs:
            dirs[op.parent][op.name] = op.ino
        if k == "mkdir":
            dirs.setdefault(op.ino, {})
    elif k == "rename":
        src = dirs.get(op.parent)
        if src is not None and src.get(op.name) == op.ino:
            del src[op.name]
        if op.dst_parent in dirs:
            dirs[op.dst_parent][op.dst_name] = op.ino
    elif k in ("unlink", "rmdir"):
        entries = dirs.get(op.parent)
        if entries is not None and entries.get(op.name) == op.ino:
            del entries[op.name]


def apply_data(content: bytearray, op: Op) -> None:
    if op.kind == "write":
        end = op.offset + len(op.data)
        if len(content) < op.offset:
            content.extend(bytes(op.offset - len(content)))
        content[op.offset : end] = op.data
    elif op.kind == "truncate":
        if op.size <= len(content):
            del content[op.size :]
        else:
            content.extend(bytes(op.size - len(content)))


def apply(fs: FS, op: Op) -> None:
    """Apply one op to `fs` exactly as it happened."""
    if op.kind in ENTRY_KINDS:
        apply_entry(fs.dirs, op)
        if op.kind == "create":
            fs.files.setdefault(op.ino, bytearray())
    elif op.kind in DATA_KINDS:
        apply_data(fs.files.setdefault(op.ino, bytearray()), op)


def replay(initial: FS, ops: Iterable[Op]) -> FS:
    fs = initial.copy()
    for op in ops:
        apply(fs, op)
    return fs


# ================================================================================================
# the recorder (the shim over os)
# ================================================================================================

FAULT_KINDS = (
    "write",
    "pwrite",
    "pwritev",
    "fdatasync",
    "fsync",
    "ftruncate",
    "rename",
    "replace",
    "open_creat",
    "mkdir",
)
_PATCHED = (
    "open",
    "write",
    "pwrite",
    "pwritev",
    "ftruncate",
    "fsync",
    "fdatasync",
    "close",
    "replace",
    "rename",
    "unlink",
    "remove",
    "mkdir",
    "rmdir",
)
# mutating os functions outside the contract: a call on a path under the root is a violation
_FORBIDDEN = (
    "truncate",
    "writev",
    "link",
    "symlink",
    "posix_fallocate",
    "sendfile",
    "copy_file_range",
    "splice",
    "mkfifo",
    "mknod",
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR


@dataclass
class Fault:
    """Make call number `nth` (1-based) of `kind` on a path under the root raise OSError(`errno`) once."""

    kind: str
    nth: int
    errno: int = errno_mod.EIO
    fired: bool = False
    where: str = ""  # the op that failed, once it fired

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {self.kind!r}")


@dataclass
class _Fd:
    ino: int
    is_dir: bool
    append: bool
    path: str


def _caller() -> str:
    """file:line of the first frame outside this module and the standard library."""
    for fr in reversed(traceback.extract_stack()[:-2]):
        f = fr.filename
        if f == __file__ or f.startswith(sys.prefix + "/lib") or f.startswith(sys.base_prefix + "/lib"):
            continue
        return f"{os.path.relpath(f)}:{fr.lineno} ({fr.line})"
    return "?"


class _EscapedFile:
    """A file object opened for writing outside the contract; closing it records what it wrote."""

    def __init__(self, rec: Recorder, f: Any, rel: str) -> None:
        self._f, self._rec, self._rel = f, rec, rel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __iter__(self):
        return iter(self._f)

    def __enter__(self) -> _EscapedFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()
        self._rec._adopt(self._rel)


class Recorder:
    """Record every mutation under `root` made through the os functions of the contract.

    Use as a context manager around a workload; then `ops` is the trace, `initial` the snapshot
    taken at entry, and `self_check()` says whether the trace replays to the real tree.
    `mark(label, payload)` records an acknowledgement; `step(label)` names what comes next (for
    reports only). With `fault`, see `Fault`.
    """

    def __init__(
        self, root: str | os.PathLike, *, fault: Fault | list[Fault] | None = None, sync: bool = False
    ) -> None:
        self.root = os.path.realpath(root)
        self.fault = fault
        self.faults = [] if fault is None else [fault] if isinstance(fault, Fault) else list(fault)
        self.sync = sync  # pass syncs on to the disk (not needed: nothing real crashes)
        self.ops: list[Op] = []
        self.violations: list[str] = []
        self.calls: Counter[str] = Counter()
        self.initial: FS | None = None
        self.live: FS | None = None
        self._fds: dict[int, _Fd] = {}
        self._lock = threading.RLock()
        self._saved: dict[tuple[Any, str], Any] = {}
        self._active = False

    # --- public -----------------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        os.makedirs(self.root, exist_ok=True)
        self.initial = FS.snapshot(Path(self.root))
        self.live = self.initial.copy()
        self._install()
        self._active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._active = False
        self._uninstall()

    def mark(self, label: str, payload: Any = None) -> Op:
        op = Op("mark", label=label, payload=payload)
        with self._lock:
            self.ops.append(op)
        return op

    def step(self, label: str) -> Op:
        op = Op("step", label=label)
        with self._lock:
            self.ops.append(op)
        return op

    def real_tree(self) -> dict[str, bytes | None]:
        return FS.snapshot(Path(self.root)).tree()

    def replayed_tree(self) -> dict[str, bytes | None]:
        assert self.initial is not None
        return replay(self.initial, self.ops).tree()

    def self_check(self) -> list[str]:
        """Differences between the replayed trace and the real tree, plus contract violations."""
        problems = [f"contract violation: {v}" for v in self.violations]
        problems += [
            f"trace does not replay to the real tree: {d}" for d in diff_trees(self.replayed_tree(), self.real_tree())
        ]
        return problems

    # --- paths ------------------------------------------------------------------------------
    def _rel(self, path: Any, dir_fd: int | None = None) -> str | None:
        """`path` relative to the root, or None when it is outside it."""
        if isinstance(path, int):
            return None
        p = os.fsdecode(path)
        if dir_fd is not None and not os.path.isabs(p):
            try:
                base = os.readlink(f"/proc/self/fd/{dir_fd}")
            except OSError:
                return None
            p = os.path.join(base, p)
        p = os.path.abspath(p)
        if p == self.root:
            return ""
        if p.startswith(self.root + os.sep):
            return p[len(self.root) + 1 :]
        return None

    def _split(self, rel: str) -> tuple[int | None, str]:
        parent, _, name = rel.rpartition("/")
        assert self.live is not None
        return self.live.lookup(parent), name

    def _fd(self, fd: Any) -> _Fd | None:
        if not isinstance(fd, int):
            try:
                fd = fd.fileno()
            except AttributeError:
                return None
        info = self._fds.get(fd)
        if info is None:  # opened before recording? find it by its path
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return None
            rel = self._rel(target)
            if rel is None:
                return None
            assert self.live is not None
            ino = self.live.lookup(rel)
            if ino is None:
                self.violations.append(f"descriptor {fd} of {rel} is not one the shim knows ({_caller()})")
                return None
            info = self._fds[fd] = _Fd(ino, ino in self.live.dirs, False, rel)
        return info

    def _record(self, op: Op) -> None:
        assert self.live is not None
        apply(self.live, op)
        self.ops.append(op)

    def _maybe_fault(self, kind: str, what: str) -> None:
        self.calls[kind] += 1
        for f in self.faults:
            if not f.fired and f.kind == kind and self.calls[kind] == f.nth:
                f.fired = True
                f.where = what
                raise OSError(f.errno, f"{os.strerror(f.errno)} (injected: {kind} call {f.nth})")

    def _adopt(self, rel: str) -> None:
        """Model the effect of a write that escaped the shim on file `rel` (a violation)."""
        with self._lock:
            assert self.live is not None
            try:
                with builtins.open(os.path.join(self.root, rel), "rb") as f:
                    content = f.read()
            except OSError:
                return
            ino = self.live.lookup(rel)
            if ino is None:
                parent, name = self._split(rel)
                if parent is None:
                    return
                ino = self.live.new_id()
                self._record(Op("create", rel, ino, parent, name, via="escape", escaped=True))
            if bytes(self.live.files.get(ino, b"")) != content:
                if self.live.files.get(ino):
                    self._record(Op("truncate", rel, ino, size=0, via="escape", escaped=True))
                if content:
                    self._record(Op("write", rel, ino, offset=0, data=content, via="escape", escaped=True))

    # --- install ------------------------------------------------------------------------------
    def _install(self) -> None:
        def patch(mod: Any, name: str, fn: Callable) -> None:
            self._saved[(mod, name)] = getattr(mod, name)
            setattr(mod, name, fn)

        real = {n: getattr(os, n) for n in _PATCHED}
        self._real = real
        for n in _PATCHED:
            patch(os, n, getattr(self, f"_os_{n}"))
        for n in _FORBIDDEN:
            if hasattr(os, n):
                patch(os, n, self._forbidden(n, getattr(os, n)))
        real_open = io.open
        self._real_io_open = real_open
        patch(io, "open", self._io_open)
        patch(builtins, "open", self._io_open)

    def _uninstall(self) -> None:
        for (mod, name), fn in reversed(list(self._saved.items())):
            setattr(mod, name, fn)
        self._saved.clear()

    def _forbidden(self, name: str, fn: Callable) -> Callable:
        fds = 2 if name in ("copy_file_range", "splice") else 1  # leading arguments that may be descriptors

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wheres = []
            for i, a in enumerate(args[:2]):
                if isinstance(a, int) and i < fds:
                    info = self._fd(a)
                    where = info.path if info is not None else None
                elif isinstance(a, (str, bytes, os.PathLike)):
                    where = self._rel(a)
                else:
                    where = None
                if where is not None:
                    wheres.append(where or ".")
            if wheres:
                self.violations.append(f"os.{name} on {', '.join(wheres)} ({_caller()})")
            return fn(*args, **kwargs)

        return wrapper

    def _io_open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = self._real_io_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            rel = self._rel(file)
            if rel is not None and self._active:
                self.violations.append(f"open({rel!r}, {mode!r}) writes outside os.open/os.write ({_caller()})")
                self._adopt(rel)  # created or truncated by the open itself
                return _EscapedFile(self, f, rel)
        return f

    # --- the shims ----------------------------------------------------------------------------
    def _os_open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        rel = self._rel(path, dir_fd)
        if rel is None:
            return self._real["open"](path, flags, mode, dir_fd=dir_fd)
        with self._lock:
            assert self.live is not None
            before = self.live.lookup(rel)
            if flags & os.O_CREAT:
                self._maybe_fault("open_creat", f"open({rel}, O_CREAT)")
            fd = self._real["open"](path, flags, mode, dir_fd=dir_fd)
            ino = before
            if before is None:
                parent, name = self._split(rel)
                if flags & os.O_CREAT and parent is not None:
                    ino = self.live.new_id()
                    self._record(Op("create", rel, ino, parent, name, via="os.open"))
                else:  # exists on disk but not in the trace: something created it outside the shim
                    self.violations.append(f"{rel} exists but was not created through the shim ({_caller()})")
                    self._adopt(rel)
                    ino = self.live.lookup(rel)
                    if ino is None:
                        return fd
            elif (
                flags & os.O_TRUNC
                and flags & _WRITE_FLAGS
                and before not in self.live.dirs
                and len(self.live.files.get(before, b""))
            ):
                self._record(Op("truncate", rel, before, size=0, via="os.open(O_TRUNC)"))
            self._fds[fd] = _Fd(ino, ino in self.live.dirs, bool(flags & os.O_APPEND), rel)
            return fd

    def _os_close(self, fd: int) -> None:
        with self._lock:
            self._fds.pop(fd, None)
            return self._real["close"](fd)

    def _write_common(self, kind: str, fd: int, data: bytes, offset: int | None, call: Callable[[], int]) -> int:
        info = self._fd(fd)
        if info is None:
            return call()
        with self._lock:
            self._maybe_fault(kind, f"{kind}({info.path})")
            if info.append:  # Linux: every write of an O_APPEND descriptor appends, pwrite's too
                offset = os.fstat(fd).st_size
            elif offset is None:
                offset = os.lseek(fd, 0, os.SEEK_CUR)
            n = call()
            if n > 0:
                self._record(Op("write", info.path, info.ino, offset=offset, data=bytes(data[:n]), via=f"os.{kind}"))
            return n

    def _os_write(self, fd: int, data: Any) -> int:
        return self._write_common("write", fd, memoryview(data).cast("B"), None, lambda: self._real["write"](fd, data))

    def _os_pwrite(self, fd: int, data: Any, offset: int) -> int:
        return self._write_common(
            "pwrite", fd, memoryview(data).cast("B"), offset, lambda: self._real["pwrite"](fd, data, offset)
        )

    def _os_pwritev(self, fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        buffers = list(buffers)
        if self._fd(fd) is None:
            return self._real["pwritev"](fd, buffers, offset, flags)
        joined = b"".join(bytes(memoryview(b).cast("B")) for b in buffers)
        return self._write_common(
            "pwritev", fd, joined, offset, lambda: self._real["pwritev"](fd, buffers, offset, flags)
        )

    def _os_ftruncate(self, fd: int, length: int) -> None:
        info = self._fd(fd)
        if info is None:
            return self._real["ftruncate"](fd, length)
        with self._lock:
            self._maybe_fault("ftruncate", f"ftruncate({info.path}, {length})")
            self._real["ftruncate"](fd, length)
            self._record(Op("truncate", info.path, info.ino, size=length, via="os.ftruncate"))

    def _sync_common(self, kind: str, fd: Any) -> None:
        info = self._fd(fd)
        if info is None:
            return self._real[kind](fd)
        with self._lock:
            self._maybe_fault(kind, f"{kind}({info.path or '.'})")
            if self.sync:
                self._real[kind](fd)
            if info.is_dir:
                self._record(Op("dirsync", info.path, info.ino, via=f"os.{kind}"))
            else:
                self._record(Op("sync", info.path, info.ino, via=f"os.{kind}"))

    def _os_fsync(self, fd: Any) -> None:
        return self._sync_common("fsync", fd)

    def _os_fdatasync(self, fd: Any) -> None:
        return self._sync_common("fdatasync", fd)

    def _rename_common(self, kind: str, src: Any, dst: Any, src_dir_fd: int | None, dst_dir_fd: int | None) -> None:
        rs, rd = self._rel(src, src_dir_fd), self._rel(dst, dst_dir_fd)
        call = lambda: self._real[kind](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)  # noqa: E731
        if rs is None and rd is None:
            return call()
        with self._lock:
            assert self.live is not None
            if rs is None or rd is None:
                call()
                self.violations.append(f"os.{kind} across the root: {src} -> {dst} ({_caller()})")
                if rd is not None:
                    self._adopt(rd)
                return None
            self._maybe_fault(kind, f"{kind}({rs} -> {rd})")
            ino = self.live.lookup(rs)
            call()
            sp, sn = self._split(rs)
            dp, dn = self._split(rd)
            if ino is None or sp is None or dp is None:
                self.violations.append(f"os.{kind} of {rs}, which the shim does not know ({_caller()})")
                return None
            replaced = self.live.dirs[dp].get(dn)
            if replaced == ino:
                return None  # rename onto itself: a no-op
            self._record(
                Op(
                    "rename",
                    rs,
                    ino,
                    sp,
                    sn,
                    dst_path=rd,
                    dst_parent=dp,
                    dst_name=dn,
                    replaced=replaced,
                    via=f"os.{kind}",
                )
            )

    def _os_rename(self, src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        return self._rename_common("rename", src, dst, src_dir_fd, dst_dir_fd)

    def _os_replace(self, src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        return self._rename_common("replace", src, dst, src_dir_fd, dst_dir_fd)

    def _remove_common(self, kind: str, fname: str, path: Any, dir_fd: int | None) -> None:
        rel = self._rel(path, dir_fd)
        if rel is None:
            return self._real[fname](path, dir_fd=dir_fd)
        with self._lock:
            assert self.live is not None
            ino = self.live.lookup(rel)
            self._real[fname](path, dir_fd=dir_fd)
            parent, name = self._split(rel)
            if ino is None or parent is None:
                self.violations.append(f"os.{fname} of {rel}, which the shim does not know ({_caller()})")
                return None
            self._record(Op(kind, rel, ino, parent, name, via=f"os.{fname}"))

    def _os_unlink(self, path: Any, *, dir_fd: int | None = None) -> None:
        return self._remove_common("unlink", "unlink", path, dir_fd)

    def _os_remove(self, path: Any, *, dir_fd: int | None = None) -> None:
        return self._remove_common("unlink", "remove", path, dir_fd)

    def _os_rmdir(self, path: Any, *, dir_fd: int | None = None) -> None:
        return self._remove_common("rmdir", "rmdir", path, dir_fd)

    def _os_mkdir(self, path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        rel = self._rel(path, dir_fd)
        if rel is None or rel == "":
            return self._real["mkdir"](path, mode, dir_fd=dir_fd)
        with self._lock:
            assert self.live is not None
            self._maybe_fault("mkdir", f"mkdir({rel})")
            self._real["mkdir"](path, mode, dir_fd=dir_fd)
            parent, name = self._split(rel)
            if parent is None:
                self.violations.append(f"os.mkdir of {rel} in a directory the shim does not know ({_caller()})")
                return None
            self._record(Op("mkdir", rel, self.live.new_id(), parent, name, via="os.mkdir"))


# ================================================================================================
# crash points and crash states
# ================================================================================================

ALWAYS = ("sync", "dirsync", "rename", "unlink", "mkdir", "rmdir", "mark")


def crash_points(ops: list[Op], *, share: float = 1.0, seed: int = 0) -> list[int]:
    """Crash points to check: k means the first k ops happened (0 and len(ops) always).

    With `share` < 1, a random share (fixed `seed`) of the other points is kept besides every
    point before and after an op of `ALWAYS` and every point where the op kind changes.
    """
    n = len(ops)
    if share >= 1.0:
        return list(range(n + 1))
    rng = random.Random(seed)
    keep = {0, n}
    fs_kind = [op.kind if op.kind != "step" else None for op in ops]
    prev = None
    for i, _op in enumerate(ops):
        k = fs_kind[i]
        if k is None:
            continue
        if k in ALWAYS:
            keep.add(i)
            keep.add(i + 1)
        if k != prev:
            keep.add(i)  # the op before is of another kind: crash between them
            keep.add(i + 1)
        prev = k
    for k in range(1, n):
        if rng.random() < share:
            keep.add(k)
    return sorted(keep)


@dataclass
class CrashState:
    """One disk state a power cut at `k` can leave under `model` (`variant` says which)."""

    k: int
    model: str
    variant: str
    tree: dict[str, bytes | None]
    digest: str


def _torn_cut(op: Op, rng: random.Random) -> int | None:
    """A sector boundary strictly inside write `op` (file offset), or None."""
    gran = rng.choice((512, 4096))
    start, end = op.offset, op.offset + len(op.data)
    first = (start // gran + 1) * gran
    if first >= end:
        gran = 512
        first = (start // gran + 1) * gran
        if first >= end:
            return None
    return rng.randrange(first, end, gran)


def _pending_content(base: bytes, pending: list[Op], plan: str, model: str, rng: random.Random) -> tuple[bytes, str]:
    """The content a file with durable content `base` and `pending` ops has after the crash."""
    content = bytearray(base)
    writes = [i for i, op in enumerate(pending) if op.kind == "write"]
    keep_trunc = model == "ext4"
    if plan == "kept" or not writes and plan != "lost":
        for op in pending:
            apply_data(content, op)
        return bytes(content), "kept"
    if plan == "lost":
        for op in pending:
            if op.kind == "truncate" and keep_trunc:
                apply_data(content, op)
        return bytes(content), "lost"
    # random
    choice = rng.choice(("prefix", "prefix", "torn", "zero", "subset", "kept"))
    if choice == "kept":
        for op in pending:
            apply_data(content, op)
        return bytes(content), "kept"
    if choice == "subset":
        kept = {i for i in range(len(pending)) if rng.random() < 0.5}
        for i, op in enumerate(pending):
            if i in kept or (op.kind == "truncate" and keep_trunc):
                apply_data(content, op)
        return bytes(content), f"subset{sorted(kept)}"
    cut = rng.randrange(0, len(pending))  # first op lost
    while pending[cut].kind != "write" and cut + 1 < len(pending) and choice in ("torn", "zero"):
        cut += 1
    desc = f"{choice}@{cut}"
    for i, op in enumerate(pending):
        if i < cut:
            apply_data(content, op)
        elif i == cut and op.kind == "write" and choice in ("torn", "zero"):
            end = op.offset + len(op.data)
            if choice == "torn":
                t = _torn_cut(op, rng)
                if t is not None:
                    zeros = rng.random() < 0.5
                    part = Op("write", offset=op.offset, data=op.data[: t - op.offset])
                    if zeros and end > len(content):
                        apply_data(content, Op("truncate", size=end))
                    apply_data(content, part)
                    desc += f"/{t - op.offset}B{'+zeros' if zeros else ''}"
            elif end > len(content):
                apply_data(content, Op("truncate", size=end))
        elif op.kind == "truncate" and keep_trunc:
            apply_data(content, op)
    return bytes(content), desc


def crash_states(
    initial: FS,
    ops: list[Op],
    points: Iterable[int],
    models: Iterable[str] = ("ext4", "posix"),
    *,
    randoms: int = 3,
    seed: int = 0,
) -> Iterator[CrashState]:
    """Every (crash point, model) state: ``lost``, ``kept`` and `randoms` random mixes (seeded)."""
    models = tuple(models)
    points = sorted(set(points))
    n = len(ops)
    # posix: index of the dirsync that makes entry op i durable (max over the directories it changed)
    durable_at = [n + 1] * n
    last_dirsync: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        op = ops[i]
        if op.kind == "dirsync":
            last_dirsync[op.ino] = i
        elif op.kind in ENTRY_KINDS:
            parents = {op.parent} | ({op.dst_parent} if op.kind == "rename" else set())
            durable_at[i] = max(last_dirsync.get(p, n + 1) for p in parents)
    entry_ops = [i for i, op in enumerate(ops) if op.kind in ENTRY_KINDS]
    full = initial.copy()
    durable: dict[int, bytes] = {i: bytes(c) for i, c in initial.files.items()}
    pending: dict[int, list[Op]] = defaultdict(list)
    k = 0
    for point in points:
        while k < point:
            op = ops[k]
            apply(full, op)
            if op.kind in DATA_KINDS:
                pending[op.ino].append(op)
            elif op.kind == "sync":
                durable[op.ino] = bytes(full.files.get(op.ino, b""))
                pending.pop(op.ino, None)
            k += 1
        rng = random.Random(f"{seed}:{point}")
        for model in models:
            if model == "ext4":
                dirs = full.dirs
            elif model == "posix":
                dirs = {d: dict(e) for d, e in initial.dirs.items()}
                for i in entry_ops:
                    if i >= point:
                        break
                    if durable_at[i] < point:
                        apply_entry(dirs, ops[i])
            else:
                raise ValueError(f"unknown model {model!r}")
            reachable = _reachable_files(dirs)
            touched = [i for i in reachable if pending.get(i)]
            plans = ["lost", "kept"] + ["random"] * (randoms if touched else 0)
            if not touched:
                plans = ["lost"]
            for plan in plans:
                files: dict[int, bytes] = {}
                notes = []
                for i in reachable:
                    p = pending.get(i)
                    if p:
                        files[i], how = _pending_content(durable.get(i, b""), p, plan, model, rng)
                        if plan == "random":
                            notes.append(f"{i}:{how}")
                    else:
                        files[i] = durable.get(i, b"")
                tree = full.tree(dirs, files)
                variant = plan if plan != "random" else "random[" + ",".join(notes) + "]"
                yield CrashState(point, model, variant, tree, tree_digest(tree))


def _reachable_files(dirs: dict[int, dict[str, int]]) -> list[int]:
    out = []
    stack = [ROOT]
    while stack:
        d = stack.pop()
        for i in dirs[d].values():
            if i in dirs:
                stack.append(i)
            else:
                out.append(i)
    return out


# ================================================================================================
# running a checker over crash states
# ================================================================================================


@contextmanager
def scratch(fallback: Path) -> Iterator[Path]:
    """A directory for crash states: in RAM (/dev/shm) where there is one (materializing thousands
    of small states costs file creations), else `fallback`. Removed afterwards."""
    import tempfile

    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="powerloss-", dir=base)) if base else fallback
    d.mkdir(parents=True, exist_ok=True)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Failure:
    """A crash state the checker refused: where the power was cut, and what was wrong."""

    name: str
    model: str
    k: int
    variant: str
    op: str  # the last op that happened before the cut
    step: str  # the workload step it belonged to
    acked: str  # the last acknowledgement before the cut
    problems: list[tuple[str, str]]  # (category, detail)

    def __str__(self) -> str:
        first = "; ".join(f"[{c}] {d}" for c, d in self.problems[:3])
        return (
            f"{self.name}/{self.model} k={self.k} after {self.op} (step {self.step!r}, last ack "
            f"{self.acked!r}), state {self.variant}: {first}"
        )


@dataclass
class SweepResult:
    name: str
    points: int = 0
    states: Counter = field(default_factory=Counter)  # per model: states enumerated
    distinct: Counter = field(default_factory=Counter)  # per model: states actually checked (the rest were duplicates)
    failed: Counter = field(default_factory=Counter)  # per model: states that failed
    failures: list[Failure] = field(default_factory=list)
    categories: Counter = field(default_factory=Counter)  # (model, category) -> failing states

    def lines(self) -> list[str]:
        return [
            f"powerloss {self.name}/{m}: {self.states[m]} states ({self.distinct[m]} distinct, "
            f"{self.points} crash points), {self.failed[m]} failures"
            for m in sorted(self.states)
        ]

    def report(self, examples: int = 1) -> str:
        out = self.lines()
        shown: Counter = Counter()
        for (model, cat), n in sorted(self.categories.items()):
            out.append(f"  {model} [{cat}]: {n} states")
        for f in self.failures:
            key = (f.model, f.problems[0][0])
            if shown[key] < examples:
                shown[key] += 1
                out.append(f"    e.g. {f}")
        return "\n".join(out)


def sweep(
    rec: Recorder,
    check: Callable[[Path, Any, CrashState], list[tuple[str, str]]],
    tmp: Path,
    *,
    name: str,
    models: Iterable[str] = ("ext4", "posix"),
    share: float = 1.0,
    randoms: int = 3,
    seed: int = 0,
    keep_failures: int = 200,
) -> SweepResult:
    """Check every crash state of `rec`'s trace with `check(state_dir, acked, state)`.

    `acked` is the payload of the last mark before the crash point (None before the first).
    Identical states at the same acknowledgement level are checked once.
    """
    assert rec.initial is not None
    ops = rec.ops
    points = crash_points(ops, share=share, seed=seed)
    level = [0] * (len(ops) + 1)
    step_at = [""] * (len(ops) + 1)
    marks: list[Op] = []
    for i, op in enumerate(ops):
        level[i + 1] = level[i] + (op.kind == "mark")
        step_at[i + 1] = op.label if op.kind in ("step", "mark") else step_at[i]
        if op.kind == "mark":
            marks.append(op)
    result = SweepResult(name, points=len(points))
    cache: dict[tuple[str, int], list[tuple[str, str]]] = {}
    tmp.mkdir(parents=True, exist_ok=True)
    n = 0
    for st in crash_states(rec.initial, ops, points, models, randoms=randoms, seed=seed):
        result.states[st.model] += 1
        lv = level[st.k]
        key = (st.digest, lv)
        problems = cache.get(key)
        if problems is None:
            n += 1
            d = tmp / f"state{n}"
            materialize(st.tree, d)
            try:
                problems = check(d, marks[lv - 1].payload if lv else None, st)
            except Exception as e:  # the checker itself must not die on a state
                problems = [("checker raised", f"{type(e).__name__}: {e}")]
            finally:
                shutil.rmtree(d, ignore_errors=True)
            cache[key] = problems
            result.distinct[st.model] += 1
        if problems:
            result.failed[st.model] += 1
            for cat in {c for c, _ in problems}:
                result.categories[(st.model, cat)] += 1
            if len(result.failures) < keep_failures:
                j = st.k - 1
                while j >= 0 and ops[j].kind not in FS_KINDS:
                    j -= 1
                result.failures.append(
                    Failure(
                        name,
                        st.model,
                        st.k,
                        st.variant,
                        str(ops[j]) if j >= 0 else "(nothing)",
                        step_at[st.k],
                        marks[lv - 1].label if lv else "(none)",
                        problems,
                    )
                )
    return result


# ================================================================================================
# the log's side: what a workload was promised, and the checker
# ================================================================================================


@contextmanager
def nosync() -> Iterator[None]:
    """fsync/fdatasync as no-ops (checking a throwaway crash state needs no durability)."""
    saved = os.fsync, os.fdatasync
    os.fsync = os.fdatasync = lambda fd: None  # type: ignore[assignment]
    try:
        yield
    finally:
        os.fsync, os.fdatasync = saved


_REBOOT_TARGETS: list | None = None


def _reboot_targets() -> list:
    """(module, None) holding a BOOT_ID and (function, None) whose defaults hold it (found once)."""
    global _REBOOT_TARGETS
    if _REBOOT_TARGETS is None:
        old = None
        for name, mod in list(sys.modules.items()):
            if (name == "logstore" or name.startswith("logstore.")) and isinstance(
                getattr(mod, "BOOT_ID", None), bytes
            ):
                old = mod.BOOT_ID
                break
        targets: list = []
        if old is not None:
            for name, mod in list(sys.modules.items()):
                if not (name == "logstore" or name.startswith("logstore.")):
                    continue
                if getattr(mod, "BOOT_ID", None) == old:
                    targets.append(("module", mod))
                for obj in list(vars(mod).values()):
                    init = getattr(obj, "__init__", None) if isinstance(obj, type) and obj.__module__ == name else None
                    defaults = getattr(init, "__defaults__", None)
                    if defaults and any(isinstance(d, bytes) and d == old for d in defaults):
                        targets.append(("defaults", init))
        _REBOOT_TARGETS = [(old, targets)] if old is not None else []
    return _REBOOT_TARGETS


@contextmanager
def simulated_reboot() -> Iterator[None]:
    """Run as after a reboot: every ``BOOT_ID`` of logstore (and the defaults that hold it) is new,
    so a hint written before the power cut is not trusted as one of this boot."""
    found = _reboot_targets()
    if not found:
        yield
        return
    old, targets = found[0]
    new = os.urandom(16)
    undo: list[Callable[[], None]] = []
    for what, obj in targets:
        if what == "module":
            obj.BOOT_ID = new
            undo.append(lambda m=obj: setattr(m, "BOOT_ID", old))
        else:
            saved = obj.__defaults__
            obj.__defaults__ = tuple(new if isinstance(d, bytes) and d == old else d for d in saved)
            undo.append(lambda f=obj, d=saved: setattr(f, "__defaults__", d))
    try:
        yield
    finally:
        for u in reversed(undo):
            u()


def close_fds_under(path: Path) -> int:
    """Close descriptors left open on files under `path`; returns how many (leaks of the product)."""
    prefix = os.path.realpath(path) + os.sep
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(prefix):
            try:
                os.close(int(name))
                n += 1
            except OSError:
                pass
    return n


@dataclass
class Acked:
    """What a workload was promised at a mark (cumulative).

    `topics`: name -> {"partitions", "key_field", "schemas": [schema dicts, oldest first]};
    `records`: topic -> seq -> (partition, offset) promised to survive power loss;
    `cursors`: (group, topic) -> index into the workload's cursor history of the last commit acknowledged;
    `floors`: topic -> partition -> offset below which retention may have deleted records;
    `retained`: topic -> partition -> start offset an acknowledged `enforce_retention()` left (what
    it deleted stays deleted).
    """

    topics: dict[str, dict] = field(default_factory=dict)
    records: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)
    cursors: dict[tuple[str, str], int] = field(default_factory=dict)
    floors: dict[str, dict[int, int]] = field(default_factory=dict)
    retained: dict[str, dict[int, int]] = field(default_factory=dict)


@dataclass
class Written:
    """Everything a workload ever gave the log (whatever was acknowledged), for the garbage checks.

    `records`: topic -> seq -> the record as written; `placed`: topic -> seq -> (partition, offset)
    where the real run put it; `cursors`: (group, topic) -> every offsets dict committed, in order;
    `topics`: names created (or attempted); `probe`: topic -> a record to append after recovery;
    `commits`: topic -> the seqs of each call that committed records (within one partition, a
    call's records are one commit: all visible or none).
    """

    records: dict[str, dict[int, dict]] = field(default_factory=lambda: defaultdict(dict))
    placed: dict[str, dict[int, tuple[int, int]]] = field(default_factory=lambda: defaultdict(dict))
    cursors: dict[tuple[str, str], list[dict[int, int]]] = field(default_factory=lambda: defaultdict(list))
    topics: set[str] = field(default_factory=set)
    probe: dict[str, Callable[[int], dict]] = field(default_factory=dict)
    commits: dict[str, list[list[int]]] = field(default_factory=lambda: defaultdict(list))


def check_records(
    log: Any,
    topic: str,
    written: Written,
    acked: Acked | None,
    *,
    require: bool = True,
    exactly: set[int] | None = None,
) -> tuple[list[tuple[str, str]], Any]:
    """Read `topic` and check it against what was written (and promised): returns (problems, rows).

    Every record read must be one written, with its values, where the real run placed it, once;
    each partition's offsets dense from its start offset to its end offset; with `require`, every
    promised record at or above its partition's retention floor present. With `exactly`, the seqs
    read must be exactly that set.
    """
    problems: list[tuple[str, str]] = []
    try:
        table = log.read(topic)
    except Exception as e:
        return [("read raised", f"read({topic!r}): {type(e).__name__}: {e}")], None
    rows = table.to_pylist()
    seen: dict[int, tuple[int, int]] = {}
    by_part: dict[int, list[int]] = defaultdict(list)
    wrote = written.records.get(topic, {})
    placed = written.placed.get(topic, {})
    for r in rows:
        seq, p, off = r.get("seq"), r["_partition"], r["_offset"]
        by_part[p].append(off)
        if seq in seen:
            problems.append(("duplicate record", f"{topic} seq {seq} at {seen[seq]} and {(p, off)}"))
            continue
        seen[seq] = (p, off)
        w = wrote.get(seq)
        if w is None:
            problems.append(("garbage record", f"{topic} seq {seq!r} at {(p, off)} was never written: {r!r:.200}"))
            continue
        bad = [k for k, v in w.items() if v != r.get(k)]
        if bad:
            problems.append(
                (
                    "changed record",
                    f"{topic} seq {seq} at {(p, off)}: fields {bad} differ: "
                    f"wrote {[w[k] for k in bad]!r:.160}, read {[r.get(k) for k in bad]!r:.160}",
                )
            )
        where = placed.get(seq)
        if where is not None and where != (p, off):
            problems.append(("moved record", f"{topic} seq {seq} read at {(p, off)}, written at {where}"))
    try:
        starts, ends = log.start_offsets(topic), log.end_offsets(topic)
    except Exception as e:
        problems.append(("read raised", f"start/end_offsets({topic!r}): {type(e).__name__}: {e}"))
        starts = ends = {}
    for p, offs in by_part.items():
        if offs != list(range(offs[0], offs[0] + len(offs))):
            holes = sorted(set(range(offs[0], offs[-1] + 1)) - set(offs))[:5]
            problems.append(
                ("offsets not dense", f"{topic} partition {p}: offsets {offs[0]}..{offs[-1]}, missing {holes}")
            )
    for p in set(starts) | set(by_part):
        offs = by_part.get(p, [])
        lo, hi = (offs[0], offs[-1] + 1) if offs else (None, None)
        s, e = starts.get(p), ends.get(p)
        if offs and (lo != s or hi != e):
            problems.append(
                ("offsets not dense", f"{topic} partition {p}: read {lo}..{hi}, but start/end offsets say {s}..{e}")
            )
        elif not offs and s is not None and s != e:
            problems.append(
                ("offsets not dense", f"{topic} partition {p}: nothing read, start/end offsets say {s}..{e}")
            )
    if require and acked is not None:
        for p, kept in acked.retained.get(topic, {}).items():
            if starts.get(p, kept) < kept:
                problems.append(
                    (
                        "retention undone",
                        f"{topic} partition {p} starts at offset {starts.get(p)}, but "
                        f"enforce_retention() returned having deleted up to {kept}",
                    )
                )
        floors = acked.floors.get(topic, {})
        lost = [
            (seq, pl)
            for seq, pl in acked.records.get(topic, {}).items()
            if seen.get(seq) != pl and pl[1] >= floors.get(pl[0], 0)
        ]
        if lost:
            seq, pl = lost[0]
            problems.append(
                (
                    "acknowledged record lost",
                    f"{topic}: {len(lost)} of {len(acked.records[topic])} "
                    f"promised records missing or moved, e.g. seq {seq} at {pl} "
                    f"(read: {seen.get(seq)})",
                )
            )
    for group in written.commits.get(topic, ()):
        parts: dict[int, list[int]] = defaultdict(list)
        for seq in group:
            if seq in placed:
                parts[placed[seq][0]].append(seq)
        for p, seqs in parts.items():
            there = [s for s in seqs if s in seen]
            if there and len(there) < len(seqs):
                problems.append(
                    (
                        "commit half-visible",
                        f"{topic} partition {p}: of the records {seqs} committed together, only {there} are read",
                    )
                )
    if exactly is not None and set(seen) != exactly:
        missing, extra = sorted(exactly - set(seen))[:5], sorted(set(seen) - exactly)[:5]
        problems.append(("not exactly once", f"{topic}: missing {missing}, unexpected {extra}"))
    return problems, rows


def check_log_state(path: Path, acked: Acked | None, written: Written, *, probe: bool = True) -> list[tuple[str, str]]:
    """The checker for one crash state of a log (see the module docstring and `check_records`).

    Opens the log (as after a reboot), checks topics, schema versions, records, cursors and
    `verify()`, then appends a probe record to every topic and reads again.
    """
    import logstore

    problems: list[tuple[str, str]] = []
    with simulated_reboot(), nosync():
        try:
            log = logstore.open(path)
        except Exception as e:
            return [("open raised", f"{type(e).__name__}: {e}")]
        try:
            try:
                topics = log.topics()
            except Exception as e:
                return [("open raised", f"topics(): {type(e).__name__}: {e}")]
            for t in topics:
                if t not in written.topics:
                    problems.append(("garbage topic", f"topic {t!r} was never created"))
            for t, spec in acked.topics.items() if acked else ():
                if t not in topics:
                    problems.append(("acknowledged topic lost", f"topic {t!r} is missing (topics: {topics})"))
                    continue
                try:
                    cfg = log.config(t)
                    if cfg.partitions != spec["partitions"] or cfg.key_field != spec["key_field"]:
                        problems.append(("topic config changed", f"{t}: {cfg}"))
                    versions = [v.schema for v in log.schemas(t)]
                except Exception as e:
                    problems.append(("topic unreadable", f"{t}: {type(e).__name__}: {e}"))
                    continue
                want = spec["schemas"]
                if versions[: len(want)] != want:
                    problems.append(
                        (
                            "schema version lost",
                            f"{t}: {len(want)} versions acknowledged, {len(versions)} found (or changed)",
                        )
                    )
            unreadable: set[str] = set()
            for t in topics:
                if t not in written.topics:
                    continue
                got, rows = check_records(log, t, written, acked)
                problems += got
                if rows is None:
                    unreadable.add(t)
            try:
                report = log.verify()
                if not report.ok:
                    problems.append(("verify reports damage", "; ".join(str(p) for p in report.problems[:3])))
            except Exception as e:
                problems.append(("verify raised", f"{type(e).__name__}: {e}"))
            for (group, t), i in acked.cursors.items() if acked else ():
                allowed = written.cursors[(group, t)][i:]
                try:
                    got = log.consumer(t, group).committed()
                except Exception as e:
                    problems.append(("consumer raised", f"consumer({t!r}, {group!r}): {type(e).__name__}: {e}"))
                    continue
                if not any(all(got.get(p) == o for p, o in c.items()) for c in allowed):
                    problems.append(
                        (
                            "acknowledged cursor lost",
                            f"group {group} on {t}: {got}, acknowledged {allowed[0]} (or a later commit)",
                        )
                    )
            if probe:
                problems += _probe(log, topics, written, acked, unreadable)
        finally:
            try:
                log.close()
            except Exception as e:
                problems.append(("close raised", f"{type(e).__name__}: {e}"))
            close_fds_under(path)
    return problems


def _probe(
    log: Any, topics: list[str], written: Written, acked: Acked | None, unreadable: set[str]
) -> list[tuple[str, str]]:
    """Append one record to each topic of the recovered log; reads must then still work.

    The read after the append starts at the end offsets before it (the whole topic was just read
    and checked), unless the topic's read raised before the append: then it is read whole again, so
    a read that raises forever is told from one the append cured.
    """
    problems: list[tuple[str, str]] = []
    for t in topics:
        make = written.probe.get(t)
        if make is None:
            continue
        rec = make(-1 - len(written.records[t]))
        try:
            ends = dict(log.end_offsets(t))
            with log.writer(t, durability="flush", linger_ms=None) as w:
                w.append_batch([rec])
        except Exception as e:
            problems.append(("append after recovery failed", f"{t}: {type(e).__name__}: {e}"))
            continue
        if t in unreadable:
            extended = Written(
                records=defaultdict(dict, {t: {**written.records[t], rec["seq"]: rec}}),
                placed=written.placed,
                topics=written.topics,
                commits=written.commits,
            )
            got, rows = check_records(log, t, extended, acked)
            problems += [(f"after probe append: {c}", d) for c, d in got]
            continue
        try:
            rows = log.read(t, start=ends).to_pylist()
            after = log.end_offsets(t)
        except Exception as e:
            problems.append(("read after append raised", f"{t}: {type(e).__name__}: {e}"))
            continue
        if [r.get("seq") for r in rows] != [rec["seq"]]:
            problems.append(
                (
                    "append after recovery failed",
                    f"{t}: read {[r.get('seq') for r in rows]} after the end offsets {ends}, appended {rec['seq']}",
                )
            )
            continue
        p = rows[0]["_partition"]
        if rows[0]["_offset"] != ends.get(p) or after != {**ends, p: ends[p] + 1}:
            problems.append(
                (
                    "append after recovery failed",
                    f"{t}: the probe landed at offset {rows[0]['_offset']} of "
                    f"partition {p}; end offsets {ends} before, {after} after",
                )
            )
    return problems


class LogWorkload:
    """A workload on a log inside a `Recorder`: every step acknowledged is marked with the `Acked`
    state it promises (records are promised under power loss when `durability` is ``"fsync"``, or
    once a ``"flush"`` writer's `close()` returned, which syncs what it committed).

    Steps that raise are collected in `errors` (the workload goes on; the test reports them).
    """

    def __init__(self, rec: Recorder, root: Path, durability: str) -> None:
        self.rec = rec
        self.root = root
        self.durability = durability
        self.acked = Acked()
        self.written = Written()
        self.errors: list[str] = []
        self.log: Any = None
        self._writers: dict[int, tuple[Any, str, set[int]]] = {}

    # --- plumbing -----------------------------------------------------------------------------
    def mark(self, label: str) -> Op:
        return self.rec.mark(label, copy.deepcopy(self.acked))

    def run(self, label: str, fn: Callable[[], Any]) -> Any:
        self.rec.step(label)
        try:
            return fn()
        except Exception as e:
            self.errors.append(f"{label}: {type(e).__name__}: {e}")
            return None

    def placement(self, topic: str) -> dict[int, tuple[int, int]]:
        """Where each record of `topic` is now (read back; reading never writes)."""
        table = self.log.read(topic)
        out = dict(zip(table["seq"].to_pylist(), zip(table["_partition"].to_pylist(), table["_offset"].to_pylist())))
        placed = self.written.placed[topic]
        for seq, where in out.items():
            if placed.setdefault(seq, where) != where:
                self.errors.append(f"{topic} seq {seq} moved from {placed[seq]} to {where} during the run")
        return out

    # --- steps ----------------------------------------------------------------------------------
    def open(self) -> None:
        import logstore

        def go() -> None:
            self.log = logstore.open(self.root)
            self.mark("open")

        self.run("open", go)

    def create_topic(self, name: str, schema: Any, probe: Callable[[int], dict], **kw: Any) -> None:
        self.written.topics.add(name)
        self.written.probe[name] = probe

        def go() -> None:
            cfg = self.log.create_topic(name, schema=schema, **kw)
            self.acked.topics[name] = {
                "partitions": cfg.partitions,
                "key_field": cfg.key_field,
                "schemas": [v.schema for v in self.log.schemas(name)],
            }
            self.acked.records.setdefault(name, {})
            self.mark(f"create_topic {name}")

        self.run(f"create_topic {name}", go)

    def register_schema(self, name: str, schema: Any) -> None:
        def go() -> None:
            self.log.register_schema(name, schema)
            self.acked.topics[name]["schemas"] = [v.schema for v in self.log.schemas(name)]
            self.mark(f"register_schema {name} v{len(self.acked.topics[name]['schemas'])}")

        self.run(f"register_schema {name}", go)

    def writer(self, topic: str, **kw: Any) -> Any:
        w = self.log.writer(topic, durability=self.durability, linger_ms=None, **kw)
        self._writers[id(w)] = (w, topic, set())
        return w

    def _committed(self, w: Any, label: str, seqs: list[int]) -> None:
        _, topic, mine = self._writers[id(w)]
        mine.update(seqs)
        where = self.placement(topic)
        if self.durability == "fsync":
            self.acked.records[topic].update({s: where[s] for s in seqs})
        self.mark(label)

    def _remember(self, topic: str, rows: list[dict]) -> list[int]:
        for r in rows:
            self.written.records[topic][r["seq"]] = dict(r)
        seqs = [r["seq"] for r in rows]
        self.written.commits[topic].append(seqs)
        return seqs

    def append_batch(self, w: Any, rows: list[dict], label: str = "") -> None:
        topic = self._writers[id(w)][1]
        seqs = self._remember(topic, rows)
        label = label or f"append_batch {topic} seq {seqs[0]}..{seqs[-1]}"

        def go() -> None:
            w.append_batch(rows)
            self._committed(w, label, seqs)

        self.run(label, go)

    def append_each(self, w: Any, rows: list[dict], singles: int | None = None, label: str = "") -> None:
        """append() each of `rows` then flush(); with `singles`, the first `singles` rows go through
        append() and the rest as one append_batch (several frames in one commit)."""
        topic = self._writers[id(w)][1]
        seqs = self._remember(topic, rows)
        n = len(rows) if singles is None else singles
        label = label or (
            f"append+flush {topic} seq {seqs[0]}..{seqs[-1]}"
            if singles is None
            else f"append x{n} + append_batch {topic} seq {seqs[0]}..{seqs[-1]}"
        )

        def go() -> None:
            for r in rows[:n]:
                w.append(r)
            if n < len(rows):
                w.append_batch(rows[n:])
            else:
                w.flush()
            self._committed(w, label, seqs)

        self.run(label, go)

    def close_writer(self, w: Any) -> None:
        _, topic, mine = self._writers.pop(id(w))

        def go() -> None:
            w.close()
            where = self.placement(topic)
            self.acked.records[topic].update({s: where[s] for s in mine if s in where})
            self.mark(f"close writer {topic}")

        self.run(f"close writer {topic}", go)

    def commit_cursor(self, topic: str, group: str, max_records: int) -> None:
        def go() -> None:
            c = self.log.consumer(topic, group)
            c.poll(max_records)
            c.commit()
            history = self.written.cursors[(group, topic)]
            history.append(dict(c.committed()))
            self.acked.cursors[(group, topic)] = len(history) - 1
            self.mark(f"commit {group}/{topic} {history[-1]}")

        self.run(f"commit {group}/{topic}", go)

    def retention(self, topics: list[str]) -> None:
        """enforce_retention(); from its start on, records below the new start offsets may be gone."""
        start = self.rec.mark("enforce_retention (start)", None)

        def go() -> None:
            self.log.enforce_retention()
            for t in topics:
                self.acked.floors[t] = dict(self.log.start_offsets(t))
            before.floors = copy.deepcopy(self.acked.floors)
            self.acked.retained = copy.deepcopy(self.acked.floors)
            self.mark("enforce_retention")

        before = copy.deepcopy(self.acked)
        self.run("enforce_retention", go)
        start.payload = before

    def finish(self) -> None:
        """Record where every record ended up (for the placement checks)."""
        for t in self.written.topics:
            try:
                self.placement(t)
            except Exception as e:
                self.errors.append(f"final read of {t}: {type(e).__name__}: {e}")
        try:
            self.log.close()
        except Exception as e:
            self.errors.append(f"close log: {type(e).__name__}: {e}")

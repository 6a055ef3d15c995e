"""A recorder of the file-system calls a block makes, to check the durability rules in tests.

The log may change the file system only through ``os`` functions (mkdir, open, write, fsync,
replace, rename, unlink...), never through a builtin ``open()`` for writing. `FsRecorder` wraps
those functions (and ``builtins.open`` / ``io.open``) with pytest's monkeypatch and keeps the
calls in order, with descriptors mapped back to the paths they were opened on, so a test can ask:
was this new directory fsynced into its parent? was this file fsynced before its rename, and its
directory after? did anything write at all?
"""

from __future__ import annotations

import builtins
import io
import os
from typing import Any

import pytest

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class FsRecorder:
    """Records ``(op, path[, path2])`` for every mutating call; ``fsync`` entries name the fd's path.

    Use as a context manager: ``with FsRecorder() as fs: ...`` records the calls of the block only.
    """

    def __init__(self) -> None:
        self.ops: list[tuple] = []
        self._patch = pytest.MonkeyPatch()

    def __enter__(self) -> FsRecorder:
        self._install(self._patch)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._patch.undo()

    def _install(self, monkeypatch: Any) -> None:
        self._fds: dict[int, str] = {}
        real = {
            name: getattr(os, name)
            for name in ("open", "fsync", "fdatasync", "replace", "rename", "mkdir", "rmdir", "unlink", "ftruncate")
        }
        real_open = builtins.open

        def _open(path, flags, mode=0o777, *, dir_fd=None):
            fd = real["open"](path, flags, mode, dir_fd=dir_fd)
            self._fds[fd] = os.fspath(path)
            if flags & _WRITE_FLAGS:
                self.ops.append(("open-write", os.fspath(path)))
            return fd

        def _sync(name):
            def f(fd):
                self.ops.append((name, self._fds.get(fd, f"<fd {fd}>")))
                return real[name](fd)

            return f

        def _two(name):
            def f(src, dst, *a, **k):
                self.ops.append((name, os.fspath(src), os.fspath(dst)))
                return real[name](src, dst, *a, **k)

            return f

        def _one(name):
            def f(path, *a, **k):
                self.ops.append((name, os.fspath(path)))
                return real[name](path, *a, **k)

            return f

        def _ftruncate(fd, length):
            self.ops.append(("ftruncate", self._fds.get(fd, f"<fd {fd}>")))
            return real["ftruncate"](fd, length)

        def _builtin_open(file, mode="r", *a, **k):
            if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
                self.ops.append(("builtin-open-write", os.fspath(file)))
            return real_open(file, mode, *a, **k)

        monkeypatch.setattr(os, "open", _open)
        monkeypatch.setattr(os, "fsync", _sync("fsync"))
        monkeypatch.setattr(os, "fdatasync", _sync("fdatasync"))
        monkeypatch.setattr(os, "replace", _two("replace"))
        monkeypatch.setattr(os, "rename", _two("rename"))
        for name in ("mkdir", "rmdir", "unlink"):
            monkeypatch.setattr(os, name, _one(name))
        monkeypatch.setattr(os, "ftruncate", _ftruncate)
        monkeypatch.setattr(builtins, "open", _builtin_open)
        monkeypatch.setattr(io, "open", _builtin_open)

    def clear(self) -> None:
        self.ops.clear()

    def mutations(self) -> list[tuple]:
        """Every recorded call that changes the file system (all but fsyncs)."""
        return [op for op in self.ops if op[0] not in ("fsync", "fdatasync")]

    def index(self, op: tuple, start: int = 0) -> int:
        """Position of the first `op` at or after `start`."""
        assert op in self.ops[start:], f"{op} not among the calls recorded: {self.ops}"
        return self.ops.index(op, start)

    def assert_no_builtin_writes(self) -> None:
        bad = [op for op in self.ops if op[0] == "builtin-open-write"]
        assert not bad, f"files written through builtin open(), not os functions: {bad}"

    def assert_new_dir_durable(self, path: Any) -> None:
        """`path` was created by os.mkdir and its parent fsynced after that."""
        path = os.fspath(path)
        i = self.index(("mkdir", path))
        assert ("fsync", os.path.dirname(path)) in self.ops[i:], f"new directory {path}: parent not fsynced"

    def assert_replaced_durably(self, path: Any) -> None:
        """`path` was renamed into place from a temp file fsynced before, its directory fsynced after."""
        path = os.fspath(path)
        renames = [i for i, op in enumerate(self.ops) if op[0] in ("replace", "rename") and op[2] == path]
        assert renames, f"{path} was not renamed into place: {self.ops}"
        for i in renames:
            tmp = self.ops[i][1]
            opened = max(k for k in range(i) if self.ops[k] == ("open-write", tmp))
            assert ("fsync", tmp) in self.ops[opened:i], f"{tmp} renamed to {path} without an fsync before"
            assert ("fsync", os.path.dirname(path)) in self.ops[i:], f"{path} renamed without a directory fsync"

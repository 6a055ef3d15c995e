"""Atomic file replacement: whole or absent, never a mix; failures leave the old file."""

from __future__ import annotations

import pytest

import logstore
from logstore.files import replacing, write_atomic


def test_write_atomic_replaces_whole(tmp_path):
    """write_atomic replaces the file and leaves no temp file behind."""
    p = tmp_path / "f.json"
    write_atomic(p, b"old")
    write_atomic(p, b"new")
    assert p.read_bytes() == b"new"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


def test_failure_keeps_old_file_and_removes_temp(tmp_path):
    """An error while writing keeps the old content; an OSError becomes a LogIOError naming the path."""
    p = tmp_path / "f.json"
    write_atomic(p, b"old")
    with pytest.raises(RuntimeError):
        with replacing(p) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    with pytest.raises(logstore.LogIOError, match="export"):
        with replacing(p, "export") as tmp:
            raise FileNotFoundError(2, "No such file")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]

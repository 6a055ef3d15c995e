"""Tests of the power-loss simulator itself (`tests/logstore/powerloss.py`): the shim records what
happened, the trace replays to the real tree, and each model leaves the states it says it does."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from tests.logstore.powerloss import (
    FS,
    Fault,
    Recorder,
    crash_points,
    crash_states,
    simulated_reboot,
)

FLAGS = os.O_WRONLY | os.O_CREAT


def _write(path: Path, data: bytes, *, sync: bool = False, flags: int = os.O_TRUNC) -> None:
    fd = os.open(path, FLAGS | flags, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _dirsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _states(rec: Recorder, model: str, k: int | None = None, randoms: int = 8) -> list:
    k = len(rec.ops) if k is None else k
    return list(crash_states(rec.initial, rec.ops, [k], [model], randoms=randoms, seed=1))


def _file_values(states: list, name: str) -> set:
    return {st.tree.get(name) for st in states}


def test_trace_replays_to_the_real_tree(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "old").write_bytes(b"before")  # in the initial snapshot
    with Recorder(root) as rec:
        os.mkdir(root / "d")
        _write(root / "d" / "a", b"hello", sync=True)
        fd = os.open(root / "d" / "a", os.O_WRONLY | os.O_APPEND)
        os.write(fd, b" world")
        os.pwrite(fd, b"J", 0)  # O_APPEND ignores the offset on Linux: appended
        os.close(fd)
        fd = os.open(root / "d" / "b", os.O_RDWR | os.O_CREAT)
        os.pwritev(fd, [b"abc", memoryview(b"defg")], 10)
        os.ftruncate(fd, 12)
        os.fdatasync(fd)
        os.close(fd)
        os.replace(root / "d" / "b", root / "d" / "c")
        os.rename(root / "old", root / "d" / "old2")
        (root / "e").mkdir()
        (root / "e").rmdir()
        os.unlink(root / "d" / "old2")
        _dirsync(root / "d")
        rec.mark("done")
    assert rec.self_check() == []
    kinds = [op.kind for op in rec.ops]
    for k in ("mkdir", "create", "write", "sync", "truncate", "rename", "rmdir", "unlink", "dirsync", "mark"):
        assert k in kinds
    assert (root / "d" / "a").read_bytes() == b"hello worldJ"
    appended = [op for op in rec.ops if op.kind == "write" and op.path == "d/a"]
    assert [(op.offset, op.data) for op in appended] == [(0, b"hello"), (5, b" world"), (11, b"J")]


def test_shutil_rmtree_with_dir_fds_is_recorded(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with Recorder(root) as rec:
        (root / "t" / "x").mkdir(parents=True)
        _write(root / "t" / "x" / "f", b"1")
        shutil.rmtree(root / "t")
    assert rec.self_check() == []
    assert [op.kind for op in rec.ops].count("rmdir") == 2


def test_writes_outside_the_contract_are_violations(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with Recorder(root) as rec:
        (root / "f").write_text("escaped")
        with open(root / "g", "wb") as f:
            f.write(b"escaped too")
        (tmp_path / "outside").write_text("fine")  # not under the root
    problems = rec.self_check()
    assert len([p for p in problems if "contract violation" in p]) == 2, problems
    assert not [p for p in problems if "does not replay" in p]  # modelled, so the simulation stays faithful
    assert any("test_powerloss_sim.py" in p for p in problems)  # names the caller


def test_mutations_outside_the_contract_are_violations(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with Recorder(root) as rec:
        _write(root / "f", b"0123456789")
        os.truncate(root / "f", 3)
        os.link(root / "f", root / "g")
        fd = os.open(root / "f", os.O_WRONLY)
        os.writev(fd, [b"x"])
        os.close(fd)
        (tmp_path / "elsewhere").write_bytes(b"abc")
        os.truncate(tmp_path / "elsewhere", 1)  # outside the root: not ours
    names = [v.split()[0] for v in rec.violations]
    assert names == ["os.truncate", "os.link", "os.writev"], rec.violations


def test_a_write_the_shim_missed_fails_the_self_check(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with Recorder(root) as rec:
        _write(root / "f", b"seen")
        saved = rec._real["write"]
        fd = os.open(root / "f", os.O_WRONLY | os.O_APPEND)
        saved(fd, b" unseen")  # bypasses the shim
        os.close(fd)
    assert any("does not replay" in p for p in rec.self_check())


def test_ext4_keeps_names_and_loses_unsynced_data_in_every_way(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    data = bytes(range(256)) * 40  # 10240 bytes: torn at 512 / 4096 boundaries
    with Recorder(root) as rec:
        _write(root / "f", b"A" * 100, sync=True)
        fd = os.open(root / "f", os.O_WRONLY | os.O_APPEND)
        os.write(fd, data)
        os.write(fd, b"tail")
        os.close(fd)
    states = _states(rec, "ext4", randoms=60)
    values = _file_values(states, "f")
    full = b"A" * 100 + data + b"tail"
    assert b"A" * 100 in values  # all unsynced lost
    assert full in values  # all kept
    assert b"A" * 100 + data in values  # suffix lost
    torn = [v for v in values if v and 100 < len(v) < 100 + len(data) and v == full[: len(v)]]
    assert torn and all(len(v) % 512 == 0 for v in torn)  # torn at sector boundaries of the file
    assert any(
        v and v.startswith(b"A" * 100) and len(v) >= 100 + len(data) and v[100 : 100 + len(data)] == bytes(len(data))
        for v in values
    )  # zero-filled
    assert b"A" * 100 + b"tail" not in values  # the second write is at offset 100+len(data)...
    assert any(
        v and len(v) == len(full) and v[-4:] == b"tail" and v[100:200] != data[:100] for v in values
    )  # reordered
    assert all(st.tree.get("f") is not None for st in states)  # the name always persists under ext4


def test_posix_undoes_entry_ops_without_a_dirsync(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "dst").write_bytes(b"old")
    (root / "gone").write_bytes(b"still here")
    with Recorder(root) as rec:
        _write(root / "tmp", b"new", sync=True)
        _dirsync(root)  # tmp's name is durable
        os.replace(root / "tmp", root / "dst")
        os.unlink(root / "gone")
        os.mkdir(root / "d")
        _write(root / "d" / "f", b"inner", sync=True)
        _dirsync(root / "d")
        n_before = len(rec.ops)
        _dirsync(root)
    before = _states(rec, "posix", n_before)
    assert all(st.tree.get("dst") == b"old" and st.tree.get("tmp") == b"new" for st in before)  # rename undone
    assert all(st.tree.get("gone") == b"still here" for st in before)  # unlink undone
    assert all("d" not in st.tree and "d/f" not in st.tree for st in before)  # mkdir undone: d/f unreachable
    after = _states(rec, "posix")
    assert all(
        st.tree.get("dst") == b"new"
        and "tmp" not in st.tree
        and "gone" not in st.tree
        and st.tree.get("d/f") == b"inner"
        for st in after
    )
    ext4 = _states(rec, "ext4", n_before)
    assert all(st.tree.get("dst") == b"new" and "gone" not in st.tree for st in ext4)


def test_posix_loses_unsynced_truncates_ext4_keeps_them(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with Recorder(root) as rec:
        fd = os.open(root / "f", os.O_RDWR | os.O_CREAT)
        os.write(fd, b"0123456789")
        os.fsync(fd)
        _dirsync(root)
        os.ftruncate(fd, 4)
        os.close(fd)
    assert _file_values(_states(rec, "ext4"), "f") == {b"0123"}
    assert _file_values(_states(rec, "posix"), "f") == {b"0123", b"0123456789"}


def test_a_sync_through_another_descriptor_covers_the_file(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with Recorder(root) as rec:
        a = os.open(root / "f", os.O_WRONLY | os.O_CREAT)
        os.write(a, b"data")
        b = os.open(root / "f", os.O_RDONLY)
        os.fsync(b)
        os.close(a)
        os.close(b)
    assert _file_values(_states(rec, "ext4"), "f") == {b"data"}


def test_crash_points_cover_every_boundary(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with Recorder(root) as rec:
        fd = os.open(root / "f", os.O_WRONLY | os.O_CREAT)
        for _ in range(200):
            os.write(fd, b"x")
        os.fsync(fd)
        for _ in range(200):
            os.write(fd, b"y")
        os.close(fd)
        os.rename(root / "f", root / "g")
        rec.mark("m")
    points = crash_points(rec.ops, share=0.05, seed=3)
    assert len(points) < len(rec.ops) / 3
    for i, op in enumerate(rec.ops):
        if op.kind in ("sync", "rename", "mark", "create"):
            assert i in points and i + 1 in points, (i, op)
        if i and rec.ops[i - 1].kind != op.kind:
            assert i in points
    assert points == crash_points(rec.ops, share=0.05, seed=3)  # deterministic
    assert crash_points(rec.ops) == list(range(len(rec.ops) + 1))


def test_faults_fire_once_on_the_nth_call(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with Recorder(root, fault=Fault("write", 2, errno.ENOSPC)) as rec:
        fd = os.open(root / "f", os.O_WRONLY | os.O_CREAT)
        os.write(fd, b"1")
        with pytest.raises(OSError) as info:
            os.write(fd, b"2")
        assert info.value.errno == errno.ENOSPC
        os.write(fd, b"3")
        os.close(fd)
    assert (root / "f").read_bytes() == b"13"
    assert rec.calls["write"] == 3 and rec.fault.fired
    assert rec.self_check() == []


def test_simulated_reboot_changes_the_boot_id():
    import logstore.hint as part

    before = part.BOOT_ID
    with simulated_reboot():
        assert part.BOOT_ID != before
        h = part.Hint(0, 0, 0, 0)
        assert h.boot != before
    assert part.BOOT_ID == before and part.Hint(0, 0, 0, 0).boot == before


def test_snapshot_refuses_symlinks(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "l").symlink_to(tmp_path)
    with pytest.raises(ValueError):
        FS.snapshot(root)


def _replace_file(root: Path, data: bytes, *, fsync: bool, dirsync: bool) -> None:
    tmp = root / ".f.tmp"
    _write(tmp, data, sync=fsync)
    os.replace(tmp, root / "f")
    if dirsync:
        _dirsync(root)


def _atomic_sweep(tmp_path: Path, name: str, replace) -> dict:
    """Sweep a file replaced v1 -> v2: before the mark it must read whole v1 or v2, after it v2."""
    from tests.logstore.powerloss import sweep

    root = tmp_path / name
    root.mkdir()
    (root / "f").write_bytes(b"v1" * 3000)
    with Recorder(root) as rec:
        replace(root, b"v2" * 3000)
        rec.mark("replaced", "v2")

    def check(path, acked, state):
        got = (path / "f").read_bytes() if (path / "f").exists() else None
        allowed = [b"v2" * 3000] if acked else [b"v1" * 3000, b"v2" * 3000]
        return [] if got in allowed else [("torn or lost", f"{len(got or b'')} bytes")]

    result = sweep(rec, check, tmp_path / f"{name}-states", name=name, randoms=6)
    return {m: result.failed[m] for m in ("ext4", "posix")}


def test_models_pass_the_right_protocol_and_catch_each_missing_sync(tmp_path):
    from logstore.files import write_atomic

    assert _atomic_sweep(tmp_path, "right", lambda r, d: _replace_file(r, d, fsync=True, dirsync=True)) == {
        "ext4": 0,
        "posix": 0,
    }
    assert _atomic_sweep(tmp_path, "product", lambda r, d: write_atomic(r / "f", d)) == {"ext4": 0, "posix": 0}
    no_fsync = _atomic_sweep(tmp_path, "nofsync", lambda r, d: _replace_file(r, d, fsync=False, dirsync=True))
    assert no_fsync["ext4"] and no_fsync["posix"]  # the new name may point at lost data
    no_dirsync = _atomic_sweep(tmp_path, "nodirsync", lambda r, d: _replace_file(r, d, fsync=True, dirsync=False))
    assert no_dirsync == {"ext4": 0, "posix": no_dirsync["posix"]} and no_dirsync["posix"]  # rename undone

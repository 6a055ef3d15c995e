"""Corruption: truncations and byte flips of segments and indexes never yield wrong data."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from logstore.frame import HEADER_SIZE
from tests.logstore.procs import SCHEMA, payload, rows


def _make(path: Path, batches: int = 12, segment_bytes: int = 16 * 1024) -> list[tuple[int, int, int]]:
    """A one-partition log; returns (segment base, frame position, first seq) of every frame."""
    log = logstore.open(path)
    log.create_topic("t", schema=SCHEMA, segment_bytes=segment_bytes, compression=None)
    with log.writer("t", linger_ms=None) as w:
        seq = 0
        for i in range(batches):
            n = 70 + (i * 7) % 30  # over ROW_FRAME_MAX: Arrow frames
            w.append_batch(rows("w", seq, n))
            seq += n
    return seq


def _pdir(path: Path) -> Path:
    return path / "topics" / "t" / "00000"


def _frames(path: Path):
    """(segment path, position, size, base, count) of every frame, from the headers."""
    from logstore.segment import SegmentView, scan

    out = []
    for seg in sorted(_pdir(path).glob("*.seg")):
        for pos, h in scan(SegmentView(seg), 0).frames:
            out.append((seg, pos, h.size, h.base_offset, h.count))
    return out


def _assert_rows_correct(table) -> None:
    """Every returned row is exactly the record written at its offset."""
    for off, seq, pl in zip(table["_offset"].to_pylist(), table["seq"].to_pylist(), table["payload"].to_pylist()):
        assert seq == off and pl == payload("w", seq)


def test_flip_in_sealed_frame_is_found_and_never_returned(tmp_path):
    """A flipped byte in a sealed frame: verify names file and byte; read raises; skip reports the gap."""
    path = tmp_path / "log"
    total = _make(path)
    frames = _frames(path)
    seg, pos, size, base, count = frames[2]
    data = bytearray(seg.read_bytes())
    data[pos + HEADER_SIZE + size // 3] ^= 0x40
    seg.write_bytes(bytes(data))
    log = logstore.open(path)
    report = log.verify()
    assert not report.ok
    assert [(Path(p.path), p.position) for p in report.problems] == [(seg, pos)]
    with pytest.raises(logstore.CorruptFrameError, match=f"byte {pos} of"):
        log.read("t")
    import pyarrow as pa

    for ahead in (0, 3):  # frames read when asked, or decoded ahead on the pool: the same outcome
        reader = log.reader("t", on_corrupt="skip", read_ahead=ahead)
        got = [b for b in reader]
        table = pa.Table.from_batches(got)
        _assert_rows_correct(table)
        assert table.num_rows == total - count
        assert [(g.start_offset, g.end_offset) for g in reader.gaps] == [(base, base + count)]
        seen = []  # raising: every record before the damaged frame comes out first
        with pytest.raises(logstore.CorruptFrameError, match=f"byte {pos} of"):
            for b in log.reader("t", read_ahead=ahead, partitions=[0]):
                seen.extend(b["_offset"].to_pylist())
        assert seen == list(range(base))


def test_flip_in_active_middle_frame_is_not_truncated(tmp_path):
    """Damage followed by valid frames in the active segment is reported, never truncated away."""
    path = tmp_path / "log"
    total = _make(path, segment_bytes=10**9)
    frames = _frames(path)
    seg, pos, size, base, count = frames[3]
    data = bytearray(seg.read_bytes())
    data[pos + HEADER_SIZE + 5] ^= 0x01
    seg.write_bytes(bytes(data))
    log = logstore.open(path)
    assert all(r.bytes_truncated == 0 for r in log.recoveries)
    t = log.read("t", on_corrupt="skip")
    _assert_rows_correct(t)
    assert t.num_rows == total - count
    assert seg.stat().st_size == len(data)


def test_flip_in_header_resyncs_to_next_frame(tmp_path):
    """A damaged header: the frames after it are still found and read."""
    path = tmp_path / "log"
    total = _make(path, segment_bytes=10**9)
    frames = _frames(path)
    seg, pos, size, base, count = frames[1]
    data = bytearray(seg.read_bytes())
    data[pos + 9] ^= 0xFF  # body length field: header crc catches it
    seg.write_bytes(bytes(data))
    (seg.with_suffix(".idx")).unlink()  # force a rebuild from the frames
    log = logstore.open(path)
    t = log.read("t", on_corrupt="skip")
    _assert_rows_correct(t)
    assert t.num_rows == total - count
    assert not log.verify().ok


def test_index_damage_is_rebuilt(tmp_path):
    """Damaged or missing index files never change what is read."""
    path = tmp_path / "log"
    total = _make(path)
    idxs = sorted(_pdir(path).glob("*.idx"))
    idxs[0].unlink()
    data = bytearray(idxs[1].read_bytes())
    data[10] ^= 0xFF
    idxs[1].write_bytes(bytes(data))
    idxs[-1].write_bytes(idxs[-1].read_bytes()[:-13])
    log = logstore.open(path)
    t = log.read("t")
    assert t.num_rows == total
    _assert_rows_correct(t)
    assert log.read("t", start=100, end=130)["seq"].to_pylist() == list(range(100, 130))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1))
def test_random_truncation_keeps_exact_valid_prefix(tmp_path_factory, cut):
    """Truncating the active segment anywhere: recovery keeps exactly the frames wholly before the cut."""
    path = tmp_path_factory.mktemp("trunc") / "log"
    _make(path, segment_bytes=10**9)
    seg = next(_pdir(path).glob("*.seg"))
    frames = _frames(path)
    size = seg.stat().st_size
    at = int(size * cut)
    with open(seg, "r+b") as f:
        f.truncate(at)
    survivors = sum(c for s, p, sz, b, c in frames if p + sz <= at)
    log = logstore.open(path)
    t = log.read("t")
    assert t.num_rows == survivors
    _assert_rows_correct(t)
    kept = max([p + sz for s, p, sz, b, c in frames if p + sz <= at], default=0)
    assert seg.stat().st_size == at  # reading never writes
    log.recover()
    assert seg.stat().st_size == kept
    with log.writer("t") as w:  # appends continue densely after recovery
        w.append_batch(rows("w", survivors, 3))
    assert log.read("t")["_offset"].to_pylist() == list(range(survivors + 3))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 6))
def test_random_flips_never_return_wrong_data(tmp_path_factory, seed, flips):
    """Random byte flips anywhere in segments and indexes: verify finds damage; reads return only true rows."""
    path = tmp_path_factory.mktemp("flip") / "log"
    _make(path)
    rng = random.Random(seed)
    files = sorted(_pdir(path).glob("*.seg")) + sorted(_pdir(path).glob("*.idx"))
    touched_segments = False
    for _ in range(flips):
        f = rng.choice(files)
        data = bytearray(f.read_bytes())
        if not data:
            continue
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
        f.write_bytes(bytes(data))
        touched_segments |= f.suffix == ".seg"
    pristine = path.parent / "copy"
    shutil.copytree(path, pristine)
    log = logstore.open(pristine)
    report = log.verify()
    if touched_segments:  # found by verify, or it was the active tail and recovery dropped (and reported) it
        assert not report.ok or any(r.bytes_truncated for r in log.recoveries)
    try:
        t = log.read("t")
    except logstore.CorruptFrameError:
        t = log.read("t", on_corrupt="skip")
    _assert_rows_correct(t)

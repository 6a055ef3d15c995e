"""Unit tests of the on-disk encoders: frame headers, index entries, tail hints, key hash, names."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from logstore import keyhash
from logstore.checksum import crc
from logstore.frame import HEADER_SIZE, FrameHeader, decode_body, encode_body, pack_header, parse_header
from logstore.hint import Hint, pack_hint, parse_hint
from logstore.index import ENTRY_SIZE, entry_from, load
from logstore.names import parse_segment_name, segment_name

i64 = st.integers(-(2**63), 2**63 - 1)


@given(
    body_len=st.integers(0, 2**31 - 1),
    crc=st.integers(0, 2**32 - 1),
    base=st.integers(0, 2**62),
    count=st.integers(1, 2**32 - 1),
    version=st.integers(0, 2**32 - 1),
    at=i64,
    lo=i64,
    hi=i64,
    flags=st.integers(0, 2**16 - 1),
)
def test_header_round_trip(body_len, crc, base, count, version, at, lo, hi, flags):
    """pack_header/parse_header round-trip every field."""
    lo, hi = min(lo, hi), max(lo, hi)
    raw = pack_header(
        body_len=body_len,
        body_crc=crc,
        base_offset=base,
        count=count,
        schema_version=version,
        append_time=at,
        min_event_time=lo,
        max_event_time=hi,
        flags=flags,
    )
    assert len(raw) == HEADER_SIZE
    assert parse_header(raw) == FrameHeader(body_len, crc, base, count, version, at, lo, hi, flags)


@given(pos=st.integers(0, HEADER_SIZE - 1), bit=st.integers(0, 7))
def test_any_header_bit_flip_is_detected(pos, bit):
    """Flipping any bit of a header makes it invalid (magic or checksum)."""
    raw = bytearray(
        pack_header(
            body_len=10,
            body_crc=1,
            base_offset=5,
            count=2,
            schema_version=1,
            append_time=7,
            min_event_time=1,
            max_event_time=2,
            flags=0,
        )
    )
    raw[pos] ^= 1 << bit
    assert isinstance(parse_header(bytes(raw)), str)


@given(st.lists(st.tuples(st.integers(0, 2**40), st.text(max_size=20)), max_size=50))
def test_body_round_trip(rows):
    """encode_body/decode_body round-trip a batch, compressed or not."""
    batch = pa.RecordBatch.from_pylist([{"a": a, "s": s} for a, s in rows] or [{"a": 0, "s": ""}])
    for comp in (None, "zstd"):
        body = encode_body(batch, schema_version=1, options=pa.ipc.IpcWriteOptions(compression=comp))
        joined = pa.py_buffer(b"".join(memoryview(p) for p in body.parts))
        assert joined.size == body.size and crc(joined) == body.crc
        assert decode_body(joined).equals(batch)


def test_index_entries_and_damage(tmp_path):
    """Index entries round-trip; a damaged entry ends the valid prefix."""
    p = tmp_path / "x.idx"
    entries = [entry_from(i * 10, i * 100, 10, 36, i, 0, 5) for i in range(4)]
    p.write_bytes(b"".join(e.tobytes() for e in entries))
    got, damaged = load(p)
    assert not damaged and list(got["base_offset"]) == [0, 10, 20, 30]
    data = bytearray(p.read_bytes())
    data[2 * ENTRY_SIZE + 3] ^= 1
    p.write_bytes(bytes(data))
    got, damaged = load(p)
    assert damaged and len(got) == 2


def test_hint_round_trip():
    """The tail hint round-trips and rejects damage."""
    h = Hint(100, 4096, 150, 123456)
    raw = pack_hint(h)
    assert parse_hint(raw) == h
    assert parse_hint(raw[:-1] + bytes([raw[-1] ^ 1])) is None


def test_segment_names_sort_and_parse():
    """Segment file names are 20-digit zero-padded base offsets."""
    assert segment_name(42) == "00000000000000000042.seg"
    assert parse_segment_name(segment_name(2**62)) == 2**62
    assert parse_segment_name("00000000000000000042.idx") is None


def test_key_hash_is_frozen():
    """The key hash is a contract: these values must never change."""
    assert [keyhash.key_hash(k) for k in ["", "r1", "abcdefghi"]] == [
        11286133854226296554,
        9731496116666421931,
        3152806097155732885,
    ]
    assert keyhash.key_hash(12345) == 15670486307672154724
    assert [keyhash.partition_of(k, 4) for k in ["r1", "r2", "r3", "r4", "r5"]] == [3, 2, 1, 1, 1]


@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40)), min_size=1, max_size=60), st.integers(1, 64))
def test_vectorized_hash_matches_scalar(keys, n):
    """partitions_for over an Arrow column equals partition_of per key."""
    strs = [k for k in keys if isinstance(k, str)]
    bins = [k for k in keys if isinstance(k, bytes)]
    for arr, ks in (
        (pa.array(strs, pa.string()), strs),
        (pa.array(bins, pa.binary()), bins),
        (pa.array(strs, pa.large_string()), strs),
    ):
        assert list(keyhash.partitions_for(arr, n)) == [keyhash.partition_of(k, n) for k in ks]


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50), st.integers(1, 64))
def test_vectorized_int_hash_matches_scalar(keys, n):
    """Integer keys hash by their 8-byte little-endian form, vectorized and scalar alike."""
    assert list(keyhash.partitions_for(pa.array(keys, pa.int64()), n)) == [keyhash.partition_of(k, n) for k in keys]


def test_null_keys_go_to_partition_zero():
    """A null key lands in partition 0."""
    assert list(keyhash.partitions_for(pa.array(["a", None, "b"]), 8))[1] == 0


def test_sliced_arrays_hash_like_whole():
    """Slices (non-zero array offset) hash their own values."""
    arr = pa.array([f"k{i}" for i in range(100)])
    assert list(keyhash.partitions_for(arr.slice(10, 20), 7)) == [
        keyhash.partition_of(f"k{i}", 7) for i in range(10, 30)
    ]

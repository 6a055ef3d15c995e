"""Buffers the codec barely shrinks are stored raw inside compressed frame bodies, and every body
still decodes to exactly the batch that was encoded."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore import rawbuffers
from logstore.frame import decode_body, encode_body

ZSTD = pa.ipc.IpcWriteOptions(compression="zstd", use_threads=False)
LZ4 = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)


def _body(batch: pa.RecordBatch, options: pa.ipc.IpcWriteOptions) -> pa.Buffer:
    enc = encode_body(batch, schema_version=1, options=options)
    return pa.py_buffer(b"".join(bytes(p) for p in enc.parts))


def _batch(n: int, seed: int, nulls: bool) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    mask = rng.random(n) < 0.2 if nulls else None
    return pa.record_batch(
        {
            "noise": pa.array(rng.random(n), mask=mask),  # does not compress: stored raw
            "latency": pa.array(rng.lognormal(size=n).astype(np.float32)),
            "counter": pa.array(np.arange(n, dtype=np.int64)),  # compresses well: stays compressed
            "at": pa.array(np.full(n, 1_700_000_000_000_000, np.int64)).cast(pa.timestamp("us", tz="UTC")),
            "tag": pa.array([f"t{i % 7}" for i in range(n)]),
            "flag": pa.array(rng.random(n) < 0.5),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(n * 4).astype(np.float32)), 4),
            "seq": pa.ListArray.from_arrays(
                pa.array(np.arange(0, 3 * n + 1, 3, dtype=np.int32)),
                pa.array(rng.random(3 * n)),
                mask=None if mask is None else pa.array(mask),
            ),
            "code": pa.array([i % 3 for i in range(n)], pa.int8()).dictionary_encode(),
        }
    )


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 3000), seed=st.integers(0, 2**32 - 1), nulls=st.booleans(), cut=st.data(), lz4=st.booleans())
def test_bodies_with_raw_buffers_decode_to_the_batch(n, seed, nulls, cut, lz4):
    batch = _batch(n, seed, nulls)
    start = cut.draw(st.integers(0, n))
    batch = batch.slice(start, cut.draw(st.integers(0, n - start)))
    got = decode_body(_body(batch, LZ4 if lz4 else ZSTD))
    assert got.equals(batch)


def test_an_incompressible_buffer_is_stored_raw_and_read_zero_copy():
    batch = _batch(20_000, 7, False).select(["noise", "counter"])
    body = _body(batch, ZSTD)
    raw = batch.column(0).buffers()[1].to_pybytes()
    assert raw in body.to_pybytes()  # as is, after its -1 length
    assert batch.column(1).buffers()[1].to_pybytes() not in body.to_pybytes()  # compressed
    got = decode_body(body)
    assert got.equals(batch)
    data = got.column(0).buffers()[1]
    assert body.address <= data.address < body.address + body.size  # a view into the body, no copy


def test_unknown_layouts_are_left_as_arrow_wrote_them():
    rng = np.random.default_rng(3)
    n = 5000
    batch = pa.record_batch({"s": pa.array([{"x": float(v)} for v in rng.random(n)])})
    parts = [b"unchanged"]
    assert rawbuffers.store_raw(parts, batch) is parts
    assert decode_body(_body(batch, ZSTD)).equals(batch)

"""The canonical benchmark workload: model score records, deterministic (numpy seed 42).

One record per model score, as a scoring service would log it:

    request_id     string                    32 lowercase hex chars (16 random bytes)
    event_time     timestamp[us, tz=UTC]     about 1 ms apart, +-300 us jitter; 1% arrive up to
                                             5 ms late, so the column is non-decreasing *mostly*
    model_id       string                    one of 6 (fraud-gbm, ..., ltv-xgb)
    model_version  string                    fixed per model id (v1.4.2, ...)
    score          float64                   uniform [0, 1)
    latency_ms     float32                   lognormal(mean=1.5, sigma=0.5): median ~4.5 ms
    features       fixed_size_list<float32>[16]   standard normal

`features` is an Arrow *fixed-size* list (`pa.list_(pa.float32(), 16)`): 64 bytes of values per row
and no offsets buffer, which is what a feature vector is. Avro has no fixed-size array, so the Avro
form (`AVRO_SCHEMA`) uses `array<float>`; readers that resolve through Avro may return a variable
list of the same values.

The Arrow table is about 142 bytes per record (`nbytes / n`). Generation is vectorized (about 1 s
per million records) and never inside a timed region; the harness writes the table once to an
uncompressed Arrow IPC *file* in the scratch directory and every benchmark child process loads it
from there, so all processes see byte-identical input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

SEED = 42
BATCH_RECORDS = 10_000
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z

MODELS = {  # model_id -> model_version
    "fraud-gbm": "v1.4.2",
    "fraud-lr": "v2.0.1",
    "fraud-nn": "v0.9.7",
    "churn-gbm": "v3.1.0",
    "churn-lr": "v1.0.5",
    "ltv-xgb": "v2.2.3",
}

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("latency_ms", pa.float32(), nullable=False),
        pa.field("features", pa.list_(pa.float32(), 16), nullable=False),
    ]
)

AVRO_SCHEMA = {
    "type": "record",
    "name": "model_score_bench",
    "namespace": "logstore.benchmarks",
    "fields": [
        {"name": "request_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "model_id", "type": "string"},
        {"name": "model_version", "type": "string"},
        {"name": "score", "type": "double"},
        {"name": "latency_ms", "type": "float"},
        {"name": "features", "type": {"type": "array", "items": "float"}},
    ],
}

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def make_workload(n: int, seed: int = SEED) -> pa.Table:
    """Return `n` score records as one contiguous table (same `n` and seed, same bytes)."""
    rng = np.random.default_rng(seed)

    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    offsets = np.arange(0, 32 * n + 1, 32, dtype=np.int32)
    request_id = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexed.tobytes()))

    t = START_US + np.arange(n, dtype=np.int64) * 1000 + rng.integers(-300, 301, size=n)
    late = rng.random(n) < 0.01
    t[late] -= rng.integers(1000, 5001, size=int(late.sum()))
    event_time = pa.array(t, type=pa.timestamp("us", tz="UTC"))

    ids = list(MODELS)
    which = rng.integers(0, len(ids), size=n)
    model_id = pa.array(ids, pa.string()).take(which)
    model_version = pa.array([MODELS[m] for m in ids], pa.string()).take(which)

    score = pa.array(rng.random(n))
    latency = pa.array(rng.lognormal(mean=1.5, sigma=0.5, size=n).astype(np.float32))
    flat = rng.standard_normal(n * 16, dtype=np.float32)
    features = pa.FixedSizeListArray.from_arrays(pa.array(flat), 16)

    return pa.Table.from_arrays(
        [request_id, event_time, model_id, model_version, score, latency, features], schema=SCHEMA
    )


def save(table: pa.Table, path: Path) -> None:
    """Write the workload as an uncompressed IPC file in batches of `BATCH_RECORDS`."""
    tmp = path.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table, max_chunksize=BATCH_RECORDS)
    tmp.replace(path)


def load(path: Path) -> pa.Table:
    """Read the workload into process memory (a real copy, not a memory map)."""
    with pa.OSFile(str(path), "rb") as f:
        return pa.ipc.open_file(f).read_all()


def path_for(scratch: Path, n: int) -> Path:
    return scratch / f"workload-{n}-seed{SEED}.arrow"


def ensure(scratch: Path, n: int) -> Path:
    """Generate the workload of `n` records into `scratch` unless it is already there."""
    path = path_for(scratch, n)
    if not path.exists():
        scratch.mkdir(parents=True, exist_ok=True)
        save(make_workload(n), path)
    return path


def batches(table: pa.Table, size: int = BATCH_RECORDS) -> list[pa.RecordBatch]:
    """The table as record batches of `size` rows (zero-copy slices)."""
    return table.to_batches(max_chunksize=size)

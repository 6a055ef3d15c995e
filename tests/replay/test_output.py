"""The output of a run: the content hash's independence of batching, the sink's partitions."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logstore
import replay
from replay.runner.hashing import ContentHash, _Runs

from .builders import FailOnPartition, Linear, make_log

_ints = st.lists(st.integers(min_value=-3, max_value=3), min_size=0, max_size=60)


def _cuts(n: int, data: st.DataObject) -> list[int]:
    cuts = sorted(set(data.draw(st.lists(st.integers(min_value=0, max_value=n), max_size=8))))
    return [0] + cuts + [n]


@settings(max_examples=60, deadline=None)
@given(values=_ints, deltas=st.booleans(), data=st.data())
def test_runs_digest_does_not_depend_on_chunking(values, deltas, data):
    """A sequence hashed as runs (or runs of differences) gives one digest however it is chunked."""
    v = np.cumsum(np.array(values, np.int64)) if deltas else np.array(values, np.int64)
    whole = _Runs(deltas)
    whole.add(v)
    parts = _Runs(deltas)
    cuts = _cuts(len(v), data)
    for lo, hi in zip(cuts, cuts[1:]):
        parts.add(v[lo:hi])
    assert whole.digest() == parts.digest()


def _rows(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    valid = rng.random(n) > 0.2
    return pa.table(
        {
            "request_id": pa.array([f"r{i}" * int(rng.integers(1, 4)) if ok else None for i, ok in enumerate(valid)]),
            "event_time": pa.array(rng.integers(0, 10**12, n), pa.timestamp("us", tz="UTC")),
            "score": pa.array(rng.random(n)),
            "scores": pa.array([[float(i), 0.5] if i % 3 else None for i in range(n)], pa.list_(pa.float64())),
            "label": pa.array([None if i % 4 else "yes" for i in range(n)], pa.string()),
            "input_offset": pa.array(np.cumsum(rng.integers(1, 3, n)), pa.int64()),
            "clock": pa.array(np.repeat(np.arange(n // 5 + 1), 5)[:n], pa.timestamp("us", tz="UTC")),
            "read_fence": pa.array(np.repeat(np.arange(n // 7 + 1), 7)[:n], pa.timestamp("us", tz="UTC")),
            "fence": pa.array([[("t/0", i)] if i % 2 else None for i in range(n)], pa.map_(pa.string(), pa.int64())),
            "model_version": pa.array(["1"] * n),
        }
    )


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=0, max_value=80), seed=st.integers(0, 1000), data=st.data())
def test_content_hash_does_not_depend_on_batching(n, seed, data):
    """The stream digest of rows is the same whether they come in one table or in slices."""
    t = _rows(n, seed)
    whole = ContentHash()
    whole.update("in", 0, "m", t)
    parts = ContentHash()
    cuts = _cuts(n, data)
    for lo, hi in zip(cuts, cuts[1:]):
        parts.update("in", 0, "m", t.slice(lo, hi - lo))
    assert whole.hexdigest() == parts.hexdigest()
    if n:
        changed = t.set_column(
            t.schema.get_field_index("input_offset"), "input_offset", pa.array(np.arange(n) * 2 + 1, pa.int64())
        )
        other = ContentHash()
        other.update("in", 0, "m", changed)
        assert other.hexdigest() != whole.hexdigest() or np.array_equal(
            changed.column("input_offset").to_numpy(), t.column("input_offset").to_numpy()
        )


def test_workers_write_to_partitions_of_their_own(tmp_path):
    """A new output topic gets a partition per worker; each input partition's rows are in one."""
    log = make_log(tmp_path / "log", n=120, partitions=4, frame=5)
    run = replay.run(log, inputs="inputs", models=[Linear()], output="out", workers=2, progress=False)
    assert log.config("out").partitions == 2
    t = logstore.open(tmp_path / "log").read("out")
    pairs = set(zip(t.column("input_partition").to_pylist(), t.column("_partition").to_pylist()))
    assert pairs == {(p, p % 2) for p in range(4)}
    one = replay.run(log, inputs="inputs", models=[Linear()], output="out1", workers=1, progress=False)
    assert log.config("out1").partitions == 1 and one.content_hash == run.content_hash
    assert run.audit().ok


@pytest.mark.parametrize("partition", [0, 1])
def test_a_failure_in_either_process_fails_the_run_and_stops_the_other(tmp_path, partition):
    """With workers=2 this process replays one partition and a worker process the other: a model
    error on either side is raised, the run is marked failed, and no process is left behind."""
    log = make_log(tmp_path / "log", n=60, partitions=2, frame=3)
    # raised as itself from this process, as a ReplayError naming it from the worker
    with pytest.raises((ValueError, replay.errors.ReplayError), match=f"partition {partition}"):
        replay.run(log, inputs="inputs", models=[FailOnPartition(partition)], output="out", workers=2, progress=False)
    (run,) = replay.runs(log)
    assert run.status == "failed" and f"partition {partition}" in run.manifest["error"]
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("replay-worker")]

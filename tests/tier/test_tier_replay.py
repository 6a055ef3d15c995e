"""Replay reads a tiered topic where it lies: the same content hash as before the move, in one
process and on a Dask cluster on loopback (its workers read the remote segments themselves)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import logstore
import replay
from tests.replay.builders import Linear, at, write_at

pytestmark = pytest.mark.timeout(180)


def _inputs(lg: logstore.Log, n: int = 240) -> None:
    lg.create_topic("inputs", "model_input", partitions=2, key_field="request_id", segment_bytes=4_000)
    rng = np.random.default_rng(0)
    rows = [
        (
            at(i - i % 4),
            {
                "request_id": f"r{i}",
                "event_time": at(i - 0.5),
                "features": {"x": float(rng.normal()), "y": float(rng.normal())},
                "raw": "{}",
                "source": "test",
            },
        )
        for i in range(n)
    ]
    write_at(lg, "inputs", rows)


def test_replay_of_a_tiered_topic_gives_the_local_content_hash(tmp_path, remote):
    lg = logstore.open(tmp_path / "log", remote=remote)
    _inputs(lg)
    before = replay.run(lg, "inputs", None, [Linear()], output="before")
    report = lg.tier("inputs")
    assert len(report.moved) >= 4  # most of the history now lives in the bucket
    lg.close()
    lg = logstore.open(tmp_path / "log", remote=remote, cache_dir=tmp_path / "fresh-cache")
    after = replay.run(lg, "inputs", None, [Linear()], output="after")
    assert after.status == "complete" and after.content_hash == before.content_hash
    assert lg.remote_stats().bytes_fetched > 0  # read from the bucket, not from local copies
    lg.close()


def test_replay_on_a_dask_cluster_reads_the_remote_tier(tmp_path, remote):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    import replay.runner.cluster as cluster_mod

    lg = logstore.open(tmp_path / "log", remote=remote)
    _inputs(lg)
    local = replay.run(lg, "inputs", None, [Linear()], output="local")
    assert lg.tier("inputs").moved
    cluster = LocalCluster(
        host="127.0.0.1",
        dashboard_address=None,
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        silence_logs=logging.ERROR,
        scheduler_kwargs=cluster_mod.LOOPBACK_HTTP,
    )
    try:
        run = replay.run(
            lg, "inputs", None, [Linear()], output="dask", engine="dask", address=cluster.scheduler_address
        )
    finally:
        cluster.close(timeout=30)
    assert run.status == "complete" and run.content_hash == local.content_hash
    lg.close()

"""replay.run(engine="dask"): stateless models as a task per input partition on Dask distributed.

Every cluster is a `LocalCluster` on 127.0.0.1 without a dashboard, started by a fixture (or by
the run itself, for ``address=None``) and closed at the end; every wait is bounded.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from distributed import LocalCluster

import logstore
import replay
import replay.runner.cluster as cluster_mod
import replay.runner.manifest as mf
from replay.cli import main
from replay.errors import ReplayError, RunInterrupted
from replay.runner.cluster_task import read_progress

from .builders import FailOnPartition, Linear, make_log, make_other

pytestmark = pytest.mark.timeout(120)


def _cluster(workers: int) -> LocalCluster:
    return LocalCluster(
        host="127.0.0.1",
        dashboard_address=None,
        processes=True,
        n_workers=workers,
        threads_per_worker=1,
        silence_logs=logging.ERROR,
        scheduler_kwargs=cluster_mod.LOOPBACK_HTTP,  # its health/metrics routes on a loopback port of its own
    )


@pytest.fixture(scope="module")
def scheduler():
    """An external scheduler with 2 worker processes, for the module's runs."""
    c = _cluster(2)
    try:
        yield c.scheduler_address
    finally:
        c.close(timeout=30)


@pytest.fixture
def fresh_scheduler():
    """A scheduler with 2 worker processes of its own (for a test that kills one)."""
    c = _cluster(2)
    try:
        yield c.scheduler_address
    finally:
        c.close(timeout=30)


@pytest.fixture
def log(tmp_path):
    lg = make_log(tmp_path / "log", n=90, partitions=3, frame=5, outcomes=False)
    yield lg
    lg.close()


def _rows(log: Any, topic: str, run_id: str) -> pa.Table:
    t = log.read(topic, columns=["run_id", "input_partition", "input_offset", "model_id"])
    return t.filter(pc.equal(t.column("run_id"), run_id))


def _no_duplicates(log: Any, topic: str, run_id: str, expected: int) -> None:
    t = _rows(log, topic, run_id)
    keys = set(zip(*(t.column(c).to_pylist() for c in ("input_partition", "input_offset", "model_id"))))
    assert t.num_rows == len(keys) == expected


# ---- models (importable by the workers) ---------------------------------------------------------
class Where:
    """Linear scores; notes the worker's address and pid in `notes` (a directory)."""

    def __init__(self, notes: str) -> None:
        self.notes = notes
        self.inner = Linear()
        self.name, self.version = "linear", "1"

    def params(self) -> Any:
        return {}

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        from distributed import get_worker

        Path(self.notes, str(os.getpid())).write_text(get_worker().address)
        return self.inner.predict(batch, ctx)


class PauseOnce:
    """Linear scores; the first attempt at partition 0 past offset `at` says where it runs (file
    `running`: its pid) and waits there to be killed (at most 30 s). Later attempts find the file
    `killed` and go on."""

    def __init__(self, notes: str, at: int) -> None:
        self.notes = notes
        self.at = at
        self.inner = Linear()
        self.name, self.version = "linear", "1"

    def params(self) -> Any:
        return {}

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        first = batch.column("_offset")[0].as_py()
        if ctx.partition == 0 and first >= self.at and not Path(self.notes, "killed").exists():
            Path(self.notes, "running").write_text(str(os.getpid()))
            time.sleep(30)
        return self.inner.predict(batch, ctx)


class InterruptOnce:
    """Linear scores; raises KeyboardInterrupt once on partition 1 (whoever removes `marker`)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.inner = Linear()
        self.name, self.version = "linear", "1"

    def params(self) -> Any:
        return {}

    def predict(self, batch: pa.RecordBatch, ctx: Any) -> np.ndarray:
        if ctx.partition == 1:
            try:
                os.remove(self.marker)
            except FileNotFoundError:
                pass
            else:
                raise KeyboardInterrupt
        return self.inner.predict(batch, ctx)


# ---- tests --------------------------------------------------------------------------------------
def test_an_external_scheduler_gives_the_content_hash_of_one_process(log, scheduler):
    """Two models over 3 partitions on 2 dask workers: the hash of workers=1, every row once, the
    engine in the manifest, and the audit certifies the run."""
    local = replay.run(log, "inputs", None, [Linear(), make_other()], output="local", workers=1)
    run = replay.run(log, "inputs", None, [Linear(), make_other()], output="dask", engine="dask", address=scheduler)
    assert run.status == "complete" and run.content_hash == local.content_hash
    assert run.manifest["streams"] == local.manifest["streams"]
    assert run.manifest["engine"] == {"name": "dask", "address": scheduler, "workers": 2}
    assert local.manifest["engine"] == {"name": "local"}
    assert run.manifest["rows"]["inputs"] == 90 and run.manifest["progress"] == local.manifest["progress"]
    _no_duplicates(log, "dask", run.id, 180)
    assert replay.audit(log, run.id).certified
    assert not (Path(log.path) / "runs" / run.id / "tasks").exists()  # the task files go with success


@pytest.mark.slow
def test_a_cluster_of_the_runs_own_binds_loopback_and_is_closed_after(log, tmp_path):
    """address=None: a LocalCluster of `workers` processes on 127.0.0.1 for the run, gone after it."""
    notes = tmp_path / "notes"
    notes.mkdir()
    local = replay.run(log, "inputs", None, [Linear()], output="local")
    run = replay.run(log, "inputs", None, [Where(str(notes))], output="own", engine="dask", workers=2)
    assert run.content_hash == local.content_hash
    assert run.manifest["engine"] == {"name": "dask", "address": None, "workers": 2}
    pids = [int(p.name) for p in notes.iterdir()]
    assert pids and os.getpid() not in pids
    assert all(p.read_text().startswith("tcp://127.0.0.1:") for p in notes.iterdir())
    assert _gone(pids)


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    """Whether every process of `pids` has ended (and been reaped) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_without_duplicate_rows(tmp_path, fresh_scheduler):
    """kill -9 of the worker replaying partition 0 after it committed rows: the task runs again,
    continues after those rows, and the run has the hash of workers=1 and every row once."""
    lg = make_log(tmp_path / "log", n=120, partitions=2, frame=4, outcomes=False)
    notes = tmp_path / "notes"
    notes.mkdir()
    local = replay.run(lg, "inputs", None, [Linear()], output="local")
    seen: dict[str, Any] = {}

    def killer() -> None:
        deadline = time.monotonic() + 30
        running = notes / "running"
        while not running.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = int(running.read_text())
        reader = logstore.open(tmp_path / "log")
        while time.monotonic() < deadline:  # the killed attempt's rows are in the log, its progress reported
            t = reader.read("killed", columns=["input_partition"]) if "killed" in reader.topics() else None
            seen["before"] = 0 if t is None else int(pc.sum(pc.equal(t.column("input_partition"), 0)).as_py() or 0)
            reported = [read_progress(f)[0].get(0) for f in (tmp_path / "log" / "runs").glob("*/tasks/p0.progress")]
            seen["reported"] = reported[0][2] if reported and reported[0] else 0
            if seen["before"] and seen["reported"]:
                break
            time.sleep(0.02)
        reader.close()
        (notes / "killed").touch()
        os.kill(pid, signal.SIGKILL)
        seen["pid"] = pid

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    run = replay.run(
        lg, "inputs", None, [PauseOnce(str(notes), 24)], output="killed", engine="dask", address=fresh_scheduler
    )
    th.join(timeout=30)
    assert seen["before"] > 0 and seen["reported"] > 0 and _gone([seen["pid"]])
    assert run.status == "complete" and run.content_hash == local.content_hash
    _no_duplicates(lg, "killed", run.id, 120)
    assert replay.audit(lg, run.id).certified
    lg.close()


def test_a_model_error_is_raised_as_a_local_run_raises_it(log, scheduler):
    """The model's own exception (type and message); the run is failed with it; no task left running."""
    with pytest.raises(ValueError, match="bad rows in partition 1") as local_err:
        replay.run(log, "inputs", None, [FailOnPartition(1)], output="local")
    with pytest.raises(ValueError, match="bad rows in partition 1") as err:
        replay.run(log, "inputs", None, [FailOnPartition(1)], output="dask", engine="dask", address=scheduler)
    assert type(err.value) is type(local_err.value)
    assert any("input partition 1" in n for n in getattr(err.value, "__notes__", []))
    (m,) = [mf.read(log, r) for r in mf.list_ids(log) if mf.read(log, r)["output"]["topic"] == "dask"]
    assert m["status"] == "failed" and m["error"] == "ValueError: bad rows in partition 1"
    assert m["engine"]["name"] == "dask" and m["content_hash"] is None
    stop = Path(log.path) / "runs" / m["run_id"] / "tasks" / "stop"
    assert stop.exists()  # told the other tasks to stop; the driver waited for their locks


def test_resume_honours_the_recorded_engine_or_the_one_given(log, scheduler, tmp_path):
    """A dask run interrupted in a task is resumed on dask (its recorded address), or locally when
    asked; both give the hash of an uninterrupted run."""
    full = replay.run(log, "inputs", None, [Linear()], output="full")
    for i, engine in enumerate([None, "local"]):
        marker = tmp_path / f"interrupt-{i}"
        marker.touch()
        with pytest.raises(RunInterrupted) as err:
            replay.run(
                log, "inputs", None, [InterruptOnce(str(marker))], output=f"out{i}", engine="dask", address=scheduler
            )
        m = mf.read(log, err.value.run_id)
        assert m["status"] == "incomplete" and m["engine"]["name"] == "dask"
        run = replay.resume(log, err.value.run_id, models=[InterruptOnce(str(marker))], engine=engine)
        assert run.status == "complete" and run.content_hash == full.content_hash
        assert run.manifest["engine"]["name"] == (engine or "dask") and run.manifest["resumed"] == 1
        _no_duplicates(log, f"out{i}", run.id, 90)


def test_event_time_order_on_dask_gives_the_local_hash(log, scheduler):
    """Event-time order (a release buffer per partition) replays whole partitions as tasks too."""
    kw: dict[str, Any] = {"order": "event_time", "lateness": 2.0}
    local = replay.run(log, "inputs", None, [Linear()], output="local", **kw)
    run = replay.run(log, "inputs", None, [Linear()], output="dask", engine="dask", address=scheduler, **kw)
    assert run.content_hash == local.content_hash


def test_the_cli_takes_engine_and_address(log, scheduler, capsys):
    code = main(
        [
            "run",
            str(log.path),
            "--inputs",
            "inputs",
            "--model",
            "tests.replay.builders:make_linear",
            "--output",
            "cli",
            "--engine",
            "dask",
            "--address",
            scheduler,
            "--no-progress",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    run = replay.get(log, out.split()[1].rstrip(":"))
    assert run.manifest["engine"] == {"name": "dask", "address": scheduler, "workers": 2}


def test_without_distributed_the_error_names_the_extra(log, monkeypatch, capsys):
    """Nothing is written; the message says what to install (library and CLI)."""
    real = cluster_mod.importlib.util.find_spec
    monkeypatch.setattr(cluster_mod.importlib.util, "find_spec", lambda n: None if n == "distributed" else real(n))
    with pytest.raises(ReplayError, match=r"logstore\[cluster\]"):
        replay.run(log, "inputs", None, [Linear()], output="o", engine="dask")
    assert mf.list_ids(log) == [] and "o" not in log.topics()
    code = main(
        ["run", str(log.path), "--inputs", "inputs", "--model", "tests.replay.builders:make_linear"]
        + ["--engine", "dask"]
    )
    assert code != 0 and "logstore[cluster]" in capsys.readouterr().err


def test_engine_arguments_are_checked(log, monkeypatch):
    monkeypatch.setattr(cluster_mod, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(ReplayError, match="engine must be one of"):
        replay.run(log, "inputs", None, [Linear()], output="o", engine="ray")
    with pytest.raises(ReplayError, match="needs engine='dask'"):
        replay.run(log, "inputs", None, [Linear()], output="o", address="tcp://127.0.0.1:1")
    with pytest.raises(ReplayError, match="cannot use the dask scheduler at tcp://127.0.0.1:1"):
        replay.run(log, "inputs", None, [Linear()], output="o", engine="dask", address="tcp://127.0.0.1:1")
    assert mf.list_ids(log) == []

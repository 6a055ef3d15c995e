"""Cluster engines: stateless models replayed as tasks on a cluster (``replay.run(engine="dask")``).

The engine is **Dask distributed** (the optional extra ``cluster``: ``pip install
'logstore[cluster]'``). It is pure Python and light to install; a `LocalCluster` started with
``host="127.0.0.1"`` and ``dashboard_address=None`` binds loopback only (its scheduler, nannies,
workers, and the scheduler's health/metrics HTTP routes, `LOOPBACK_HTTP`) and serves no
dashboard; it reports no usage anywhere. Ray was the other candidate: a heavy wheel, a head node that binds
every interface unless told otherwise, and a dashboard and usage statistics to turn off. The
interface an engine offers (`Engine`) is small so another (Ray) can be added beside `DaskEngine`.

The unit of work is one **input partition** (`replay.runner.cluster_task`), not a range of its
segments: a stream (input topic, partition, model) is written to one output partition in clock
order and hashed as it is written by one streaming digest (`replay.runner.hashing`), and in
event-time order the release buffer (`replay.engine.clock.EventTimeOrder`) needs the partition
from its start; tasks over parts of a partition would interleave a stream's rows and could not
hash it. Models that learn replay in one process, in clock order, whatever the engine.

Each task reads the inputs from the log path, so the log directory must be visible to every
worker at the same path: a shared file system (with working ``flock``, e.g. NFSv4) or the same
machine. Object storage comes later. The driver (this process) submits a task per partition,
shows progress from the tasks' progress files on the run's tracker, and raises the first task's
error as a local run would. A task whose worker died is run again by the engine (Dask's
``allowed-failures``, by default 3), and a task that raised an `OSError` up to `RETRIES` times;
a retried task continues after what its earlier attempts committed, so the output holds no row
twice and the run's content hash is the one ``workers=1`` gives. When the run stops (an error,
Ctrl-C) the driver makes the stop file, cancels what has not started and waits (up to
`STOP_WAIT` seconds) until no attempt holds its partition's lock, so nothing is written after
the manifest says how the run ended.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from ..engine.replayer import Plan
from ..errors import ReplayError
from .cluster_task import STOP, Failure, Task, partition_lock, read_progress, replay_partition, tasks_dir
from .workers import _main_hidden

ENGINES = ("local", "dask")
EXTRA = "pip install 'logstore[cluster]' (or: pip install 'distributed>=2024.1')"
RETRIES = 2  # further attempts of a task that raised an OSError
POLL = 0.2  # seconds the driver waits for a task to finish before looking again
PROGRESS_POLL = 0.5  # seconds between the driver's reads of the progress files
STOP_WAIT = 30.0  # seconds to wait for running attempts to stop
CONNECT_TIMEOUT = "10s"
# the scheduler serves its health and metrics routes over HTTP even without a dashboard, by
# default on port 8787 of its host: here on a loopback port of the system's choosing
LOOPBACK_HTTP = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}


class Engine(Protocol):
    """A cluster engine: runs task functions on workers, running again those whose worker died."""

    name: str
    address: str | None  # the scheduler it was given (None: a cluster of its own)

    def workers(self) -> int:
        """Worker processes now."""

    def submit(self, fn: Callable[[Any], Any], arg: Any, *, key: str, retries: int) -> Any:
        """Start ``fn(arg)`` on a worker; a handle (hashable)."""

    def wait(self, handles: Collection[Any], timeout: float) -> set[Any]:
        """Those of `handles` finished (done, failed or cancelled), waiting up to `timeout` for one."""

    def result(self, handle: Any) -> Any:
        """The task's return value; raises its error."""

    def cancel(self, handles: Collection[Any]) -> None:
        """Forget tasks that have not finished (a running one finishes its current frame)."""

    def close(self) -> None:
        """Disconnect; stop a cluster of its own."""


def check_engine(engine: str, address: str | None) -> None:
    """ReplayError unless `engine` names an engine usable here (its package installed)."""
    if engine not in ENGINES:
        raise ReplayError(f"engine must be one of {list(ENGINES)}, found {engine!r}")
    if address is not None and engine == "local":
        raise ReplayError("address names a cluster scheduler: it needs engine='dask' (CLI: --engine dask)")
    if engine == "dask" and importlib.util.find_spec("distributed") is None:
        raise ReplayError(f"engine 'dask' needs the distributed package, in the extra 'cluster': {EXTRA}")


def open_engine(engine: str, address: str | None, workers: int) -> Engine | None:
    """The engine named (None for ``"local"``): connected, with at least one worker."""
    check_engine(engine, address)
    if engine == "local":
        return None
    return DaskEngine(address, workers)


def engine_record(engine: Engine | None) -> dict:
    """The manifest's ``engine`` field (never part of the content hash)."""
    if engine is None:
        return {"name": "local"}
    return {"name": engine.name, "address": engine.address, "workers": engine.workers()}


class DaskEngine:
    """`Engine` on Dask distributed: a client of the scheduler at `address`, or of a `LocalCluster`
    of `workers` processes on loopback (no dashboard) started now and stopped by `close`.

    While a cluster of its own runs, the main module is hidden from the worker processes it
    spawns (also a worker the nanny restarts), as in `replay.runner.workers`: models travel
    pickled (Dask pickles those of ``__main__`` by value), and an unguarded script is not run again.
    """

    name = "dask"

    def __init__(self, address: str | None, workers: int = 1) -> None:
        import distributed

        self.address = address
        self._cluster: Any = None
        self._client: Any = None
        self._hidden = _main_hidden(False)
        self._wake = threading.Event()
        try:
            if address is None:
                self._hidden.__enter__()
                self._cluster = distributed.LocalCluster(
                    host="127.0.0.1",
                    dashboard_address=None,
                    processes=True,
                    n_workers=workers,
                    threads_per_worker=1,
                    silence_logs=logging.ERROR,
                    scheduler_kwargs=LOOPBACK_HTTP,
                )
            target = address if address is not None else self._cluster.scheduler_address
            self._client = distributed.Client(target, timeout=CONNECT_TIMEOUT, set_as_default=False)
            self._client.wait_for_workers(1, timeout=30)
        except Exception as e:
            self.close()
            where = f"the dask scheduler at {address}" if address else "a local dask cluster"
            hint = "; pass another address (CLI: --address) or engine 'local'" if address else ""
            raise ReplayError(f"cannot use {where}: {type(e).__name__}: {e}{hint}") from e

    def workers(self) -> int:
        return len(self._client.nthreads())

    def submit(self, fn: Callable[[Any], Any], arg: Any, *, key: str, retries: int) -> Any:
        future = self._client.submit(fn, arg, key=key, retries=retries, pure=False)
        future.add_done_callback(lambda _f: self._wake.set())
        return future

    def wait(self, handles: Collection[Any], timeout: float) -> set[Any]:
        self._wake.clear()
        done = {h for h in handles if h.done()}
        if not done:
            self._wake.wait(timeout)
            done = {h for h in handles if h.done()}
        return done

    def result(self, handle: Any) -> Any:
        return handle.result()

    def cancel(self, handles: Collection[Any]) -> None:
        if handles:
            self._client.cancel(list(handles), force=True)

    def close(self) -> None:
        try:
            if self._client is not None:
                self._client.close(timeout=10)
                self._client = None
        finally:
            try:
                if self._cluster is not None:
                    self._cluster.close(timeout=30)
                    self._cluster = None
            finally:
                self._hidden.__exit__(None, None, None)


def run_cluster(
    log: Any,
    plan: Plan,
    models: list,
    parts: list[int],
    engine: Engine,
    tracker: Any,
    skip: dict,
    *,
    hash_streams: bool,
    output_start: dict[int, int],
) -> dict:
    """Replay `parts` (stateless `models`) as one task each on `engine`; the result `execute`
    expects (``streams``: the digests when `hash_streams`). Raises the first task's error."""
    d = tasks_dir(log.path, plan.run_id)
    d.mkdir(parents=True, exist_ok=True)
    for stale in [d / STOP, *d.glob("*.progress")]:  # an earlier execution's (never its locks: held ones stay held)
        stale.unlink(missing_ok=True)
    tag = secrets.token_hex(3)  # a key of its own per execution: a resume never meets old tasks
    handles: dict[Any, int] = {}
    for p in sorted(parts, key=lambda q: (plan.input_ranges[q][0] - plan.input_ranges[q][1], q)):  # big first
        task = Task(os.path.abspath(log.path), plan, models, p, output_start, skip.get(p), hash_streams)
        handles[engine.submit(replay_partition, task, key=f"replay-{plan.run_id}-{tag}-p{p}", retries=RETRIES)] = p
    pending = set(handles)
    streams: dict[str, dict] = {}
    next_look = time.monotonic() + PROGRESS_POLL
    try:
        while pending:
            done = engine.wait(pending, POLL)
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + PROGRESS_POLL
                _progress(d, [handles[h] for h in pending - done], plan, tracker)
            for h in sorted(done, key=lambda h: handles[h]):
                pending.discard(h)
                res = engine.result(h)
                for topic, key in res["lookups"]:
                    tracker.add_lookup(topic, key, plan.topics[topic])
                tracker.update(res["marks"])
                failure: Failure | None = res["failure"]
                if failure is not None:
                    failure.raise_()
                if res["stopped"]:
                    raise KeyboardInterrupt()  # only the driver asks a task to stop
                streams.update(res["streams"])
    except BaseException:
        _stop(engine, pending, d, parts)
        raise
    shutil.rmtree(d, ignore_errors=True)
    return {"streams": streams, "learned": 0, "unmatched": 0}


def _progress(d: Any, parts: list[int], plan: Plan, tracker: Any) -> None:
    """Progress files of running tasks onto the tracker (the bar, checkpoints, lookups)."""
    for p in parts:
        marks, lookups = read_progress(d / f"p{p}.progress")
        for topic, key in lookups:
            tracker.add_lookup(topic, key, plan.topics[topic])
        if marks:
            tracker.update(marks)


def _stop(engine: Engine, pending: set, d: Any, parts: list[int]) -> None:
    """Stop every attempt: the stop file, cancel, then wait until no partition's lock is held."""
    try:
        (d / STOP).touch()
        engine.cancel(pending)
        deadline = time.monotonic() + STOP_WAIT
        for p in parts:
            try:
                with partition_lock(d / f"p{p}.lock", timeout=max(0.0, deadline - time.monotonic())):
                    pass
            except TimeoutError:
                break  # an attempt still running: a resume's attempt waits for its lock
    except Exception:  # noqa: BLE001 - the run's own error is the one to raise
        pass

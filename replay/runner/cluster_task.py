"""A cluster task: one input partition of a run, replayed on a worker of a cluster engine.

`replay_partition(task)` runs on a worker (`replay.runner.cluster` submits it): it opens the log at
`Task.log_path` (the log directory must be visible to every worker, on a shared file system or
the same machine), replays the task's input partition through the models with the `Replayer` and
writes the rows through the `Sink` (output partition ``partition % partitions``), as a worker
process of `replay.runner.workers` does. Its files live in the run's directory::

    <log>/runs/<run_id>/tasks/p<partition>.lock       flock'ed by the attempt replaying the
                                                      partition; the kernel releases it when that
                                                      process dies (a killed worker)
    <log>/runs/<run_id>/tasks/p<partition>.progress   JSON {"marks": {p: [clock, offset, inputs]},
                                                      "lookups": [[topic, key], ...]}, replaced
                                                      (temp file, rename) after output commits
    <log>/runs/<run_id>/tasks/stop                    made by the driver when the run stops (an
                                                      error elsewhere, Ctrl-C): attempts stop
                                                      between frames

Idempotence (an engine retries a task whose worker died, and a lost worker's task may be run
again): an attempt first takes its partition's lock, waiting while an earlier attempt still holds
it, then reads what the output holds of the run's rows from its partition, as `replay.resume`
does (`execute.scan_progress`). Output frames are whole commits, each holding every model's rows
for whole input frames, so the last row written says where the previous attempt stopped: in
append-time order the attempt replays from the next input offset; in event-time order (whose
release buffer needs the partition from its start) it replays it all and writes only rows past
that row (`Replayer`'s `skip`). An attempt that finds rows written hashes its streams from the
log once done; a first attempt hashes as it writes. Either way the digest is the one ``workers=1``
gives (`replay.runner.hashing`).

Errors: an `OSError` (the file system, the log's `LogIOError`) is raised, for the engine to retry
the task; any other error (a model's, a time leak) is returned in the result (a `Failure`), so
a deterministic failure is not replayed again, and the driver raises it as a local run would.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import logstore
from logstore.names import RUNS_DIR

from ..engine.replayer import Plan, Replayer, Stop
from ..errors import ReplayError
from .hashing import ContentHash
from .sink import Sink, read_run

TASKS_DIR = "tasks"
STOP = "stop"
LOCK_WAIT = 120.0  # seconds an attempt waits for an earlier attempt of its partition to end
STOP_POLL = 0.2  # seconds between checks of the stop file
PROGRESS_EVERY = 0.25  # seconds between progress files


@dataclass(frozen=True)
class Task:
    """What a worker needs to replay one input partition of a run (serialized by the engine)."""

    log_path: str
    plan: Plan
    models: list
    partition: int
    output_start: dict[int, int]  # the run's output start offsets, per output partition
    skip: tuple[int, int] | None = None  # (clock, offset) written before, for event-time order
    hash_streams: bool = True


def tasks_dir(log_path: str | os.PathLike[str], run_id: str) -> Path:
    """The directory of a run's task files (see the module docstring)."""
    return Path(log_path) / RUNS_DIR / run_id / TASKS_DIR


@contextmanager
def partition_lock(path: Path, timeout: float = LOCK_WAIT) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on `path` (created); TimeoutError after `timeout` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path} is still held by another attempt after {timeout:.0f} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


class _StopFile:
    """`should_stop` of a task's Replayer: whether the run's stop file exists, checked at most
    every `STOP_POLL` seconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._next = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + STOP_POLL
        return self.path.exists()


def write_progress(path: Path, marks: dict[int, tuple[int, int, int]], lookups: list[tuple[str, str]]) -> None:
    """Replace the progress file `path` (derived state: no fsync)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    data = {"marks": {str(p): list(m) for p, m in marks.items()}, "lookups": [list(x) for x in lookups]}
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_progress(path: Path) -> tuple[dict[int, tuple[int, int, int]], list[tuple[str, str]]]:
    """The marks and lookups of a progress file (nothing when it is missing or being replaced)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, []
    marks = {int(p): (int(m[0]), int(m[1]), int(m[2])) for p, m in data.get("marks", {}).items()}
    return marks, [(str(t), str(k)) for t, k in data.get("lookups", [])]


@dataclass
class Failure:
    """A task's error that retrying cannot change, carried back to the driver in its result."""

    error: BaseException
    where: str

    @classmethod
    def of(cls, e: BaseException, where: str) -> Failure:
        tb = "".join(traceback.format_exception(e))
        try:
            pickle.loads(pickle.dumps(e))
            err = e
        except Exception:  # noqa: BLE001 - an error that does not pickle travels as its text
            err = ReplayError(f"{type(e).__name__}: {e}")
        return cls(err, f"{where}\n{tb}")

    def raise_(self) -> None:
        self.error.add_note(f"replay: raised in the cluster task of {self.where}")
        raise self.error


def _written(log: Any, task: Task) -> tuple[int, tuple[int, int] | None]:
    """Inputs of the task's range the output holds for its partition (rows / models), and the
    (clock, offset) of the last row written (None: none)."""
    plan, p = task.plan, task.partition
    q = p % log.config(plan.output).partitions
    lo = plan.input_ranges[p][0]
    rows, last = 0, None
    cols = ["input_partition", "input_offset", "clock"]
    for t in read_run(log, plan.output, plan.run_id, {q: task.output_start.get(q, 0)}, None, cols, partitions=[q]):
        t = t.filter(pc.equal(t.column("input_partition"), p))
        if not t.num_rows:
            continue
        offs = t.column("input_offset").to_numpy()
        rows += int((offs >= lo).sum())
        last = (int(t.column("clock").cast(pa.int64())[-1].as_py()), int(offs[-1]))
    return rows // max(1, len(task.models)), last


def _hash_from_log(log: Any, task: Task) -> dict[str, dict]:
    """The stream digests of the task's partition, from every row the output holds for it."""
    plan, p = task.plan, task.partition
    q = p % log.config(plan.output).partitions
    h = ContentHash()
    for t in read_run(log, plan.output, plan.run_id, {q: task.output_start.get(q, 0)}, None, None, partitions=[q]):
        h.update_mixed(t.filter(pc.equal(t.column("input_partition"), p)))
    return h.summary()


def replay_partition(task: Task) -> dict[str, Any]:
    """Replay `task`'s partition (module docstring); the result: ``partition``, ``marks``
    ``{partition: (clock, offset, inputs)}``, ``streams`` (digests, when hashing), ``lookups``
    (undeclared topics looked up), ``stopped`` and ``failure`` (a `Failure` or None)."""
    d = tasks_dir(task.log_path, task.plan.run_id)
    d.mkdir(parents=True, exist_ok=True)
    p = task.partition
    result: dict[str, Any] = {"partition": p, "marks": {}, "streams": {}, "lookups": [], "stopped": False}
    result["failure"] = None
    with partition_lock(d / f"p{p}.lock"):
        should_stop = _StopFile(d / STOP)
        if should_stop():
            result["stopped"] = True
            return result
        log = logstore.Log(task.log_path, recover=False)  # the driver opened (and recovered) it
        try:
            _replay(log, task, d, should_stop, result)
        except OSError:
            raise  # the environment's: the engine retries the task, which continues where this one stopped
        except BaseException as e:  # noqa: BLE001 - retrying cannot change it: the driver raises it
            result["failure"] = Failure.of(e, f"input partition {p} (pid {os.getpid()})")
        finally:
            log.close()
    return result


def _replay(log: Any, task: Task, d: Path, should_stop: _StopFile, result: dict[str, Any]) -> None:
    plan, p = task.plan, task.partition
    prior, last = _written(log, task)
    skip: dict[int, tuple[int, int]] = {}
    base = 0  # inputs of the range written before this attempt, in append-time order
    if plan.order == "append_time":
        lo, hi = plan.input_ranges[p]
        if last is not None:
            plan = replace(plan, input_ranges={**plan.input_ranges, p: (min(max(lo, last[1] + 1), hi), hi)})
            base = prior
    else:
        marks_ = [m for m in (task.skip, last) if m is not None]
        if marks_:
            skip = {p: max(marks_)}
    lookups: list[tuple[str, str]] = []
    progress_path = d / f"p{p}.progress"
    next_write = [0.0]

    def counted(marks: dict[int, tuple[int, int, int]]) -> dict[int, tuple[int, int, int]]:
        return {q: (c, o, n + base) for q, (c, o, n) in marks.items()}

    def on_commit(marks: dict[int, tuple[int, int, int]]) -> None:
        now = time.monotonic()
        if now >= next_write[0]:
            next_write[0] = now + PROGRESS_EVERY
            try:
                write_progress(progress_path, counted(marks), lookups)
            except OSError:  # the bar's, best effort: never the sink's error
                pass

    def on_lookup(topic: str, key: str, _ranges: Any) -> None:
        lookups.append((topic, key))

    hash_now = task.hash_streams and last is None
    sink = Sink(log, plan.output, durability=plan.durability, hash=hash_now, on_commit=on_commit)
    ok = False
    try:
        Replayer(
            log, plan, task.models, sink, partitions=[p], skip=skip, should_stop=should_stop, on_lookup=on_lookup
        ).run()
        ok = True
    except Stop:
        result["stopped"] = True
    finally:
        try:
            sink.close()  # writes what is queued: whole frames, consistent with the progress marks
        except BaseException:
            if ok:
                raise
        marks = counted(sink.progress())
        if not marks and last is not None:  # nothing left to replay: where the earlier attempt stopped
            marks = {p: (last[0], last[1], base)}
        result["marks"] = marks
        result["lookups"] = lookups
    if ok and task.hash_streams:
        result["streams"] = sink.hasher.summary() if sink.hasher is not None else _hash_from_log(log, task)

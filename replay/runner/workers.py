"""The worker pool: stateless models replaying groups of input partitions in several processes.

This process takes the first group of partitions and N-1 worker processes (a fork server,
`_mp_context`) the others, each writing to output partitions of its own (`replay.runner.sink`);
workers report progress, first lookups of undeclared topics and their stream digests over a
queue, and stop between frames when asked (Ctrl-C, or another process failed).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue as queue_mod
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import logstore
from logstore.errors import TimeLeakError

from ..engine.replayer import Plan, Replayer, Stop
from ..errors import LookupTopicError, ModelError, ModelNameError, RangeError, ReplayError, ReplayNameError
from ..models import load
from .sink import Sink

if TYPE_CHECKING:
    from .execute import Tracker


# pandas: pyarrow imports it (when installed) on its first pa.array(ndarray)
_PRELOAD = [
    "replay.runner.workers",
    "replay.engine.replayer",
    "replay.engine.context",
    "replay.runner.sink",
    "replay.runner.hashing",
    "logstore.reader",
    "logstore.writer",
    "schemas.registry",
    "schemas.conform",
    "schemas.arrow",
    "pyarrow.compute",
    "fastavro",
    "pandas",
]


def _mp_context(models: Sequence[Any] = ()):
    """The start method of worker processes: a fork server, which starts once per process.

    It preloads what every worker imports, and the modules of the first run's models: a worker
    unpickling a model imports its module, which the server then already holds (without
    bytecode caches, ``PYTHONDONTWRITEBYTECODE``, an import compiles every time). Later runs
    share the server; modules it lacks are imported by each worker, as before.
    """
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        extra = sorted({type(m).__module__ for m in models} - {"__main__", "builtins"})
        try:  # missing ones are skipped by the server
            ctx.set_forkserver_preload(_PRELOAD + extra)
        except Exception:  # pragma: no cover - preload is an optimisation only
            pass
    return ctx


class _main_hidden:
    """While starting workers, hide the main module from multiprocessing's preparation data.

    Spawn/forkserver children re-run the parent's main script (as ``__mp_main__``) unless it is
    hidden; an unguarded script (no ``if __name__ == "__main__":``) would then replay again in
    every worker. Workers need only importable models (they unpickle them themselves), so the
    main module is hidden unless a model class lives in it.
    """

    def __init__(self, needed: bool) -> None:
        self.needed = needed
        self.saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        main = sys.modules.get("__main__")
        if self.needed or main is None:
            return
        for attr in ("__file__", "__spec__"):
            if attr in vars(main):
                self.saved[attr] = vars(main)[attr]
        vars(main).pop("__file__", None)
        if "__spec__" in vars(main):
            main.__spec__ = None

    def __exit__(self, *exc: object) -> None:
        main = sys.modules.get("__main__")
        if main is not None:
            for attr, value in self.saved.items():
                setattr(main, attr, value)


def _groups(plan: Plan, parts: list[int], n: int, out_partitions: int = 1) -> list[list[int]]:
    """Partitions split into `n` groups of similar row counts (deterministic).

    Input partitions that write to the same output partition (``p % out_partitions``, see `Sink`)
    stay in one group, so workers do not contend for an output partition when there are enough.
    """
    buckets: dict[int, list[int]] = {}
    for p in parts:
        buckets.setdefault(p % out_partitions if out_partitions >= n else p, []).append(p)
    sizes = sorted(
        ((sum(plan.input_ranges[p][1] - plan.input_ranges[p][0] for p in ps), ps) for ps in buckets.values()),
        key=lambda x: (-x[0], x[1]),
    )
    groups: list[list[int]] = [[] for _ in range(n)]
    loads = [0] * n
    for size, ps in sizes:
        i = min(range(n), key=lambda j: (loads[j], j))
        groups[i].extend(ps)
        loads[i] += size
    return [sorted(g) for g in groups if g]


_ERRORS = {
    "TimeLeakError": TimeLeakError,
    "ModelError": ModelError,
    "ReplayError": ReplayError,
    "RangeError": RangeError,
    "LookupTopicError": LookupTopicError,
    "ModelNameError": ModelNameError,
    "ReplayNameError": ReplayNameError,
}


class _WorkerFailed(Exception):
    """A worker process failed: this process stops its own share of the replay."""


def run_workers(
    log: Any, plan: Plan, loaded: list, parts: list[int], n: int, tracker: Tracker, skip: dict, *, hash_streams: bool
) -> dict:
    """Replay `parts` in `n` processes: this one takes the first group of partitions, worker
    processes the others (this process would otherwise only wait; it is also the one with warm
    caches and nothing to import)."""
    groups = _groups(plan, parts, n, log.config(plan.output).partitions)
    ctx = _mp_context([m for m, _ in loaded])
    q = ctx.Queue()
    stop = ctx.Event()
    specs = [spec for _, spec in loaded]
    payload = None if all(specs) else pickle.dumps([m for m, _ in loaded])
    procs: dict[int, Any] = {}
    with _main_hidden(any(type(m).__module__ == "__main__" for m, _ in loaded)):
        for wid, group in enumerate(groups):
            if wid == 0:
                continue
            pr = ctx.Process(
                target=_worker_main,
                name=f"replay-worker-{wid}",
                args=(
                    str(log.path),
                    plan,
                    specs,
                    payload,
                    group,
                    skip,
                    q,
                    stop,
                    list(sys.path),
                    wid,
                    hash_streams,
                    dict(os.environ),
                ),
                daemon=True,
            )
            pr.start()
            procs[wid] = pr
    done: dict[int, dict] = {}
    errors: list[tuple[str, str]] = []
    state = {"interrupted": False}

    def handle(msg: tuple) -> None:
        kind, wid = msg[0], msg[1]
        if kind == "progress":
            tracker.update(msg[2])
        elif kind == "lookup":
            tracker.add_lookup(msg[2], msg[3], plan.topics[msg[2]])
        elif kind == "done":
            res = msg[2]
            tracker.update(res["progress"])
            done[wid] = res
            if res.get("error"):
                errors.append(res["error"])
                stop.set()
            if res.get("stopped"):
                state["interrupted"] = True

    def check_dead() -> None:
        for wid, pr in procs.items():
            if wid not in done and not pr.is_alive() and pr.exitcode not in (0, None):
                done[wid] = {"streams": {}, "learned": 0, "unmatched": 0}
                errors.append(("ReplayError", f"worker {wid} died (exit code {pr.exitcode})"))
                stop.set()

    # this process's share, taking the workers' messages between frames
    local_error: BaseException | None = None
    sink = Sink(log, plan.output, durability=plan.durability, hash=hash_streams)
    last_poll = [0.0]

    def between_frames() -> None:
        tracker.tick(sink.progress)
        now = time.monotonic()
        if now - last_poll[0] >= 0.05:
            last_poll[0] = now
            while True:
                try:
                    handle(q.get_nowait())
                except queue_mod.Empty:
                    break
            check_dead()
        if errors or stop.is_set():
            raise _WorkerFailed()

    ok = False
    try:
        Replayer(
            log,
            plan,
            [m for m, _ in loaded],
            sink,
            partitions=groups[0],
            skip=skip,
            on_event=between_frames,
            on_lookup=tracker.add_lookup,
        ).run()
        ok = True
    except KeyboardInterrupt:
        state["interrupted"] = True
        stop.set()
    except _WorkerFailed:
        pass
    except BaseException as e:  # noqa: BLE001 - raised once the workers stopped
        local_error = e
        stop.set()
    finally:
        try:
            sink.close()  # writes what is queued: whole frames, consistent with the progress marks
        except BaseException as e:  # noqa: BLE001
            if local_error is None:
                local_error = e
            stop.set()
        tracker.update(sink.progress())
    try:
        while len(done) < len(procs):
            try:
                msg = q.get(timeout=0.2)
            except queue_mod.Empty:
                check_dead()
                continue
            except KeyboardInterrupt:
                state["interrupted"] = True
                stop.set()
                continue
            handle(msg)
    except KeyboardInterrupt:
        state["interrupted"] = True
        stop.set()
        for pr in procs.values():
            pr.join(timeout=10)
    for pr in procs.values():
        pr.join(timeout=30)
    if local_error is not None:
        raise local_error
    if errors:
        kind, message = errors[0]
        raise _ERRORS.get(kind, ReplayError)(message if kind in _ERRORS else f"worker failed: {kind}: {message}")
    if state["interrupted"] or not ok:
        raise KeyboardInterrupt()
    streams: dict[str, dict] = dict(sink.hasher.summary()) if sink.hasher is not None else {}
    for res in done.values():
        streams.update(res["streams"])
    return {"streams": streams, "learned": 0, "unmatched": 0}


def _worker_main(
    log_path: str,
    plan: Plan,
    specs: list,
    payload: bytes | None,
    partitions: list[int],
    skip: dict,
    q: Any,
    stop: Any,
    parent_path: list[str],
    wid: int,
    hash_streams: bool,
    env: dict,
) -> None:
    """One worker process: replays `partitions` and reports progress and its stream digests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; we stop between frames
    # a forkserver child starts with the server's environment and path: take the parent's
    os.environ.clear()
    os.environ.update(env)
    for p in reversed(parent_path):
        if p not in sys.path:
            sys.path.insert(0, p)
    result: dict[str, Any] = {
        "streams": {},
        "learned": 0,
        "unmatched": 0,
        "progress": {},
        "error": None,
        "stopped": False,
    }
    sink = None
    try:
        models = pickle.loads(payload) if payload is not None else [load(s) for s in specs]
        log = logstore.Log(log_path, recover=False)  # the parent opened (and recovered) it
        sink = Sink(
            log,
            plan.output,
            durability=plan.durability,
            hash=hash_streams,
            on_commit=lambda marks: q.put(("progress", wid, marks)),
        )
        rep = Replayer(
            log,
            plan,
            models,
            sink,
            partitions=partitions,
            skip=skip,
            should_stop=stop.is_set,
            on_lookup=lambda topic, key, _: q.put(("lookup", wid, topic, key)),
        )
        try:
            rep.run()
        except (Stop, KeyboardInterrupt):  # asked to stop, or a model raised KeyboardInterrupt
            result["stopped"] = True
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        result["error"] = (type(e).__name__, str(e).splitlines()[0] if str(e) else type(e).__name__)
    finally:
        if sink is not None:
            try:
                sink.close()
            except BaseException as e:  # noqa: BLE001
                result["error"] = result["error"] or (type(e).__name__, str(e))
            result["progress"] = sink.progress()
            if sink.hasher is not None:
                result["streams"] = sink.hasher.summary()
        q.put(("done", wid, result))

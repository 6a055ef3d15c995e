"""Starting runs: `run`, `resume` and `rerun`.

A run resolves its ranges exactly (`log.snapshot` of every topic first: the run's horizon is that
instant), checks every name it records (`replay.names`), writes its manifest (status
``running``) and replays (`replay.runner.execute`). Stateless models may replay in several
processes (`replay.runner.workers`) or as tasks on a cluster engine (`replay.runner.cluster`);
models that learn replay in one, in clock order. `resume` continues an interrupted or failed run
from what its output topic holds, so an interrupted-and-resumed run has the content hash of an
uninterrupted one.
"""

from __future__ import annotations

import socket
import warnings
from dataclasses import replace
from typing import Any

from .. import names
from ..engine import clock as clock_mod
from ..engine.replayer import Plan
from ..errors import RangeError, ReplayError, RunStateError
from ..models import learns
from . import manifest as mf
from .cluster import check_engine, engine_record, open_engine
from .execute import execute, scan_progress
from .handle import Run
from .logs import open_log
from .plan import (
    all_topics,
    check_options,
    declared_lookups,
    load_models,
    lookup_keys,
    model_records,
    models_for,
    plan_from_manifest,
    timedelta_us,
    with_topics,
)
from .sink import ensure_output, output_partitions


def refuse_occupied_output(log: Any, output: str) -> None:
    """ReplayError if `output` already holds records, naming the runs that wrote there."""
    if output not in log.topics():
        return
    held = sum(log.end_offsets(output).values())
    if not held:
        return
    ids = [rid for rid in mf.list_ids(log) if (mf.read(log, rid).get("output") or {}).get("topic") == output]
    shown = ", ".join(ids[-3:]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    raise ReplayError(
        f"output topic {output!r} already holds {held:,} records"
        + (f" (run{'s' if len(ids) > 1 else ''} {shown})" if ids else "")
        + ": pass append=True (replay run --append) to add this run beside them, or choose another output"
    )


def run(
    log: Any,
    inputs: str,
    outcomes: str | None = None,
    models: Any = (),
    *,
    start: Any = None,
    end: Any = None,
    output: str = "replay.scores",
    workers: int = 1,
    seed: int = 0,
    key: str = "request_id",
    label: str = "label",
    lookups: Any = None,
    order: str = "append_time",
    lateness: Any = None,
    horizon: Any = None,
    run_id: str | None = None,
    progress: bool | None = None,
    durability: str = "flush",
    append: bool = False,
    engine: str = "local",
    address: str | None = None,
) -> Run:
    """Replay `inputs` (and `outcomes`) of `log` through `models`, writing scores to `output`.

    `start`/`end`: offsets (an int for every partition or {partition: offset}) or aware datetimes
    (append time), start inclusive, end exclusive; resolved exactly on end offsets snapshotted now.
    `lookups`: topics models read through ``ctx.lookup`` (list, or {topic: key field}); models may
    also declare a `lookups` attribute. `order="event_time"` decides rows at
    ``max(event_time + lateness, append_time)`` (see `replay.engine.clock`). `horizon`: how long a decided
    input waits for its outcome (learning models; None: the whole run). `workers`: processes for
    stateless models (this one included). `progress`: a bar on stderr (default: when stderr is a terminal).
    An `output` topic that already holds scores (another run's) is refused unless `append` is
    true, so a rerun never piles duplicates into it silently. `engine="dask"` replays stateless
    models as a task per input partition on Dask distributed (`replay.runner.cluster`; the extra
    ``cluster``): on the scheduler at `address` (``"tcp://127.0.0.1:8786"``), or with `address`
    None on a cluster of `workers` processes on loopback started for the run and closed after it;
    the log directory must be visible to the workers (a shared file system or this machine).
    Returns the `Run` (``run.id``, ``run.manifest``, ``run.scores()``).
    """
    log = open_log(log)
    loaded = load_models(models)
    check_options(order, lateness, workers)
    check_engine(engine, address)
    run_id = names.run_id(mf.new_run_id() if run_id is None else run_id)
    names.output_topic(output)
    records = model_records(loaded)
    declared = declared_lookups(lookups, loaded)
    topics = [inputs] + ([outcomes] if outcomes else []) + list(declared)
    if output in topics:
        raise ReplayError(f"output topic {output!r} is also an input/outcome/lookup topic of the run")
    if outcomes == inputs:
        raise ReplayError(f"outcomes and inputs are the same topic {inputs!r}")
    # snapshot every topic's end first: the run's horizon is this instant
    snaps = {t: log.snapshot(t) for t in dict.fromkeys(topics)}
    input_ranges = clock_mod.resolve(log, inputs, start, end, snaps[inputs])
    total = sum(hi - lo for lo, hi in input_ranges.values())
    if total == 0:
        shown = ", ".join(f"{p}: {lo}..{hi}" for p, (lo, hi) in input_ranges.items())
        raise RangeError(f"the range of topic {inputs!r} holds no records (partition: start..end offsets {shown})")
    at_start = all_topics(log, snaps, output)
    lookup_plan = {t: (k, at_start[t]) for t, k in lookup_keys(log, declared, key).items()}
    outcome_ranges: dict[int, tuple[int, int]] = {}
    any_learner = any(learns(m) for m, _ in loaded)
    if outcomes:
        oschema = log.arrow_schema(outcomes)
        for f, what in ((key, "key"), (label, "label")):
            if f not in oschema.names:
                raise ReplayError(
                    f"outcomes topic {outcomes!r} has no {what} field {f!r} (its fields: {oschema.names}); "
                    f"pass {what}=..."
                )
        if any_learner and key not in log.arrow_schema(inputs).names:
            raise ReplayError(f"inputs topic {inputs!r} has no join key {key!r}; pass key=...")
        if outcomes in lookup_plan:
            outcome_ranges = lookup_plan[outcomes][1]
        else:
            first = clock_mod.first_append_time(log, inputs, input_ranges)
            outcome_ranges = clock_mod.ranges_from_time(log, outcomes, snaps[outcomes], first)
    eff_workers = 1 if any_learner else workers
    plan = Plan(
        run_id=run_id,
        inputs=inputs,
        input_ranges=input_ranges,
        output=output,
        outcomes=outcomes,
        outcome_ranges=outcome_ranges,
        key=key,
        label=label,
        lookups=lookup_plan,
        topics=at_start,
        order=order,
        lateness_us=timedelta_us(lateness, "lateness") if order == "event_time" else None,
        event_time_field=log.config(inputs).event_time_field,
        seed=int(seed),
        code_version=mf.code_version(),
        host=socket.gethostname(),
        horizon_us=timedelta_us(horizon, "horizon"),
        durability=durability,
    )
    if mf.path(log, run_id).exists():
        raise ReplayError(f"run {run_id!r} already exists in {log.path}")
    if not append:
        refuse_occupied_output(log, output)
    if workers > 1 and any_learner:
        warnings.warn("models that learn replay in one process, in clock order; workers set to 1", stacklevel=2)
    if engine != "local" and any_learner:
        warnings.warn(
            f"models that learn replay in this process, in clock order; engine {engine!r} unused", stacklevel=2
        )
    eng = None if any_learner else open_engine(engine, address, workers)
    try:
        if eng is not None:  # a task per input partition, each writing an output partition of its own
            eff_workers = eng.workers()
            ensure_output(log, output, partitions=output_partitions(input_ranges, len(input_ranges)))
        else:
            ensure_output(log, output, partitions=output_partitions(input_ranges, eff_workers))
        manifest = mf.new_manifest(
            plan,
            records,
            workers=eff_workers,
            request=(start, end),
            output_start=log.end_offsets(output),
            engine=engine_record(eng),
        )
        mf.create(log, manifest)
        return execute(log, plan, loaded, manifest, workers=eff_workers, progress=progress, engine=eng)
    finally:
        if eng is not None:
            eng.close()


def resume(
    log: Any,
    run_id: str,
    models: Any = None,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    force: bool = False,
    engine: str | None = None,
    address: str | None = None,
) -> Run:
    """Finish an incomplete (or failed) run from what its output topic holds.

    Stateless models continue each partition after its last written row; learning models (and
    event-time order) replay again from the start, writing only rows past the progress, so their
    state is rebuilt exactly. The content hash is then computed from the whole output. `engine`
    and `address` (see `run`) default to those the run recorded; the manifest records the one used.
    """
    log = open_log(log)
    m = mf.read(log, run_id)
    if m["status"] == "complete":
        raise RunStateError(f"run {run_id} is already complete (content hash {m.get('content_hash')})")
    if m["status"] == "running" and not force:
        raise RunStateError(
            f"run {run_id} is marked running; if its process is gone, resume with force=True (CLI: --force)"
        )
    loaded = models_for(m, models)
    plan = with_topics(log, plan_from_manifest(m))
    stateful = any(learns(x) for x, _ in loaded)
    name, addr = recorded_engine(m, engine, address)
    check_engine(name, addr)
    written = scan_progress(log, m)
    skip: dict[int, tuple[int, int]] = {}
    done0: dict[int, int] = {}
    if not stateful and plan.order == "append_time":
        ranges = dict(plan.input_ranges)
        for p, (_c, off, n) in written.items():
            lo, hi = ranges[p]
            ranges[p] = (min(max(lo, off + 1), hi), hi)
            done0[p] = n
        plan = replace(plan, input_ranges=ranges)
    else:
        skip = {p: (c, off) for p, (c, off, n) in written.items()}
    w = workers if workers is not None else int(m.get("workers", 1))
    eng = None if stateful else open_engine(name, addr, w)
    try:
        manifest = mf.Manifest.from_dict(m)
        manifest.status = "running"
        manifest.error = None
        manifest.resumed = int(manifest.resumed or 0) + 1
        manifest.engine = engine_record(eng)
        mf.write(log, manifest)
        return execute(
            log,
            plan,
            loaded,
            manifest,
            workers=1 if stateful else w,
            progress=progress,
            skip=skip,
            done0=done0,
            resumed=True,
            engine=eng,
        )
    finally:
        if eng is not None:
            eng.close()


def recorded_engine(m: dict, engine: str | None, address: str | None) -> tuple[str, str | None]:
    """The engine and scheduler address a resume of run `m` uses: those given (an address alone
    means dask), else those recorded (a scheduler address only with the engine that recorded it)."""
    rec = m.get("engine") or {"name": "local"}
    if engine is None and address is not None:
        engine = "dask"
    name = engine if engine is not None else str(rec.get("name", "local"))
    if address is None and name == rec.get("name"):
        address = rec.get("address")
    return name, address


def rerun(
    log: Any,
    run_id: str,
    models: Any = None,
    *,
    output: str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    new_run_id: str | None = None,
) -> Run:
    """Replay exactly what run `run_id` replayed (same ranges, models, seed) as a new run."""
    log = open_log(log)
    old = mf.read(log, run_id)
    loaded = models_for(old, models)
    rid = names.run_id(new_run_id or mf.new_run_id())
    plan = plan_from_manifest(old, run_id=rid, output=names.output_topic(output or old["output"]["topic"]))
    if plan.output in plan.lookups or plan.output in (plan.inputs, plan.outcomes):
        raise ReplayError(f"output topic {plan.output!r} is also an input/outcome/lookup topic of run {run_id}")
    plan = with_topics(log, plan)
    records = model_records(loaded)
    stateful = any(learns(x) for x, _ in loaded)
    w = workers if workers is not None else int(old.get("workers", 1))
    ensure_output(log, plan.output, partitions=output_partitions(plan.input_ranges, 1 if stateful else w))
    manifest = mf.new_manifest(
        plan,
        records,
        workers=1 if stateful else w,
        request=(old["request"]["start"], old["request"]["end"]),
        output_start=log.end_offsets(plan.output),
    )
    manifest.rerun_of = run_id
    mf.create(log, manifest)
    return execute(log, plan, loaded, manifest, workers=1 if stateful else w, progress=progress)

"""Runs: `run`, `resume`, `rerun`, `runs` and the `Run` handle; the worker processes.

A run resolves its ranges exactly (snapshotting every topic's end offsets first), writes its
manifest (status ``running``), replays (`replay.engine.Replayer`: in this process, or for
stateless models with ``workers=N`` in N processes, this one and N-1 workers, each replaying a
group of input partitions into output partitions of its own) and marks the manifest
``complete`` with row counts and the content hash. On Ctrl-C the rows queued so far are written
(each output frame is whole), the manifest says ``incomplete`` with per-partition progress and
`RunInterrupted` is raised; `resume` continues from what the output topic actually holds, so an
interrupted-and-resumed run has the same content hash as an uninterrupted one. Any other error
once the manifest exists (a model's, e.g. `TimeLeakError`, or one while finishing the run) marks
the run ``failed`` with the error and re-raises it: a manifest never stays ``running`` after
its process returned. Every name the run records (run id, output topic, model names and
versions) is checked before anything is written (`replay.names`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue as queue_mod
import signal
import socket
import sys
import time
import warnings
from dataclasses import replace
from datetime import timedelta
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

import logstore
from logstore.errors import TimeLeakError

from . import clock as clock_mod
from . import manifest as mf
from . import names
from .engine import Plan, Replayer, Stop
from .errors import (
    LookupTopicError,
    ModelError,
    ModelNameError,
    RangeError,
    ReplayError,
    ReplayNameError,
    RunInterrupted,
    RunStateError,
)
from .lookups import Ranges, resolve_key, snapshot_topics
from .models import check, learns, load, lookups_of, params_hash
from .output import ContentHash, Sink, output_avro, read_run
from .progress import Progress

CHECKPOINT_SECONDS = 2.0
# uncompressed by default: a replay is CPU-bound, and a codec costs more CPU (lz4 ~680 MB/s here)
# than handing the page cache ~76 B/row (constant columns are already runs, the rest is mostly
# request ids); REPLAY_OUTPUT_COMPRESSION=lz4|zstd, or an output topic created beforehand with a
# codec, trades that CPU for disk
OUTPUT_COMPRESSION = os.environ.get("REPLAY_OUTPUT_COMPRESSION", "") or None


class Run:
    """A replay run recorded in a log: its manifest, and its rows in the output topic."""

    def __init__(self, log: Any, manifest: dict) -> None:
        self.log = log
        self.manifest = manifest

    @property
    def id(self) -> str:
        return self.manifest["run_id"]

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def output(self) -> str:
        return self.manifest["output"]["topic"]

    @property
    def content_hash(self) -> str | None:
        return self.manifest.get("content_hash")

    @property
    def rows(self) -> dict:
        return self.manifest.get("rows", {})

    def refresh(self) -> "Run":
        self.manifest = mf.read(self.log, self.id)
        return self

    def scores(self, columns: Sequence[str] | None = None) -> pa.Table:
        """This run's output rows, ordered by input topic, partition, clock, offset, model id."""
        out = self.manifest["output"]
        start = {int(p): o for p, o in out["start"].items()}
        need = ["input_topic", "input_partition", "clock", "input_offset", "model_id"]
        cols = None if columns is None else list(dict.fromkeys(list(columns) + need))
        tables = list(read_run(self.log, out["topic"], self.id, start, None, cols))
        if tables:
            t = pa.concat_tables(tables)
        else:
            schema = self.log.arrow_schema(out["topic"], system_columns=True)
            t = schema.empty_table() if cols is None else schema.empty_table().select(cols)
        t = t.sort_by([(c, "ascending") for c in need])
        return t if columns is None else t.select(list(columns))

    def audit(self):
        """Check every output row against the log (see `replay.audit`)."""
        from .audit import audit

        return audit(self.log, self.id)

    def __repr__(self) -> str:
        rows = self.rows.get("outputs")
        return f"<replay.Run {self.id} {self.status} rows={rows} hash={self.content_hash}>"


# --------------------------------------------------------------------------------------------
# public entry points


def _open(log: Any) -> Any:
    if isinstance(log, (str, os.PathLike)):
        return logstore.open(log)
    if not hasattr(log, "reader") or not hasattr(log, "path"):
        raise TypeError(f"log must be a logstore.Log or a path, found {type(log).__name__}")
    return log


def _load_models(models: Any) -> list[tuple[Any, str | None]]:
    if models is None or isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
        models = [models] if models is not None else []
    if not models:
        raise ModelError("no models to replay: pass models=[model, 'package.module:factory', ...]")
    out = []
    for m in models:
        if isinstance(m, str):
            out.append((load(m), m))
        else:
            check(m)
            out.append((m, None))
    names = [m.name for m, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelError(f"model names must be unique within a run (they become model_id); repeated: {dup}")
    return out


def _timedelta_us(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        us = int(value * 1_000_000)
    else:
        raise ReplayError(f"{what} must be a timedelta (or seconds), found {value!r}")
    if us < 0:
        raise ReplayError(f"{what} must not be negative, found {value!r}")
    return us


def _bound_json(v: Any) -> Any:
    if v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, Mapping):
        return {str(k): _bound_json(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return repr(v)


def ensure_output(log: Any, topic: str, partitions: int = 1) -> None:
    """Create the output topic (`partitions` partitions: one per worker, so workers write in
    parallel) or check an existing one has the output schema and no key field.

    Rows decided from input partition ``p`` go to output partition ``p % partitions`` (`Sink`), so
    the rows of a stream (input partition, model) are in one output partition, in order, and
    workers are given input partitions that write to different output partitions.
    """
    import schemas

    want = schemas.to_arrow(output_avro())
    if topic not in log.topics():
        log.create_topic(topic, schema=output_avro(), partitions=max(1, partitions), event_time_field="event_time",
                         compression=OUTPUT_COMPRESSION, exist_ok=True)
        return
    have = log.arrow_schema(topic)
    problems = []
    for f in want:
        if f.name not in have.names:
            problems.append(f"no field {f.name!r}")
        elif have.field(f.name).type != f.type:
            problems.append(f"field {f.name!r} is {have.field(f.name).type}, expected {f.type}")
    if problems:
        raise ReplayError(f"output topic {topic!r} exists with another schema ({'; '.join(problems)}); "
                          f"choose another output topic")
    cfg = log.config(topic)
    if cfg.partitions > 1 and cfg.key_field is not None:
        raise ReplayError(f"output topic {topic!r} spreads rows over {cfg.partitions} partitions by key "
                          f"{cfg.key_field!r}; a run's rows must stay in write order: choose another output topic")


def _output_partitions(input_ranges: Mapping[int, tuple[int, int]], workers: int) -> int:
    """Partitions of a new output topic: one per worker process that will write to it."""
    return max(1, min(workers, sum(1 for lo, hi in input_ranges.values() if hi > lo)))


def _lookup_keys(log: Any, declared: Mapping[str, str | None], key: str) -> dict[str, str]:
    return {topic: resolve_key(log, topic, k, key) for topic, k in sorted(declared.items())}


def _model_records(loaded: list) -> list[dict]:
    """The manifest's ``models`` entries (computed before anything is written: params_hash may fail)."""
    return [{"name": m.name, "version": m.version, "spec": spec,
             "class": f"{type(m).__module__}.{type(m).__qualname__}", "params_hash": params_hash(m),
             "learns": learns(m), "lookups": sorted(lookups_of(m))} for m, spec in loaded]


def _all_topics(log: Any, snaps: Mapping[str, Mapping[int, Any]], output: str) -> dict[str, Ranges]:
    """Every topic's range at run start: the snapshots taken for the run's topics, the others now."""
    topics = snapshot_topics(log, exclude=output)
    for t, snap in snaps.items():
        topics[t] = {p: (s.start_offset, s.end_offset) for p, s in sorted(snap.items())}
    return dict(sorted(topics.items()))


def run(log: Any, inputs: str, outcomes: str | None = None, models: Any = (), *, start: Any = None,
        end: Any = None, output: str = "replay.scores", workers: int = 1, seed: int = 0,
        key: str = "request_id", label: str = "label", lookups: Any = None, order: str = "append_time",
        lateness: Any = None, horizon: Any = None, run_id: str | None = None, progress: bool | None = None,
        durability: str = "flush") -> Run:
    """Replay `inputs` (and `outcomes`) of `log` through `models`, writing scores to `output`.

    `start`/`end`: offsets (an int for every partition or {partition: offset}) or aware datetimes
    (append time), start inclusive, end exclusive; resolved exactly on end offsets snapshotted now.
    `lookups`: topics models read through ``ctx.lookup`` (list, or {topic: key field}); models may
    also declare a `lookups` attribute. `order="event_time"` decides rows at
    ``max(event_time + lateness, append_time)`` (see `replay.clock`). `horizon`: how long a decided
    input waits for its outcome (learning models; None: the whole run). `workers`: processes for
    stateless models (this one included). `progress`: a bar on stderr (default: when stderr is a terminal).
    Returns the `Run` (``run.id``, ``run.manifest``, ``run.scores()``).
    """
    log = _open(log)
    loaded = _load_models(models)
    if order not in ("append_time", "event_time"):
        raise ReplayError(f"order must be 'append_time' or 'event_time', found {order!r}")
    if lateness is not None and order != "event_time":
        raise ReplayError("lateness applies to order='event_time' only")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ReplayError(f"workers must be a positive int, found {workers!r}")
    run_id = names.run_id(mf.new_run_id() if run_id is None else run_id)
    names.output_topic(output)
    records = _model_records(loaded)

    declared: dict[str, str | None] = {}
    if lookups:
        declared.update({lookups: None} if isinstance(lookups, str) else
                        (dict(lookups) if isinstance(lookups, Mapping) else {t: None for t in lookups}))
    for m, _ in loaded:
        for t, k in lookups_of(m).items():
            if declared.get(t) is None:
                declared[t] = k
    topics = [inputs] + ([outcomes] if outcomes else []) + list(declared)
    if output in topics:
        raise ReplayError(f"output topic {output!r} is also an input/outcome/lookup topic of the run")
    if outcomes == inputs:
        raise ReplayError(f"outcomes and inputs are the same topic {inputs!r}")
    # snapshot every topic's end first: the run's horizon is this instant
    snaps = {t: clock_mod.snapshot(log, t) for t in dict.fromkeys(topics)}
    input_ranges = clock_mod.resolve(log, inputs, start, end, snaps[inputs])
    total = sum(hi - lo for lo, hi in input_ranges.values())
    if total == 0:
        shown = ", ".join(f"{p}: {lo}..{hi}" for p, (lo, hi) in input_ranges.items())
        raise RangeError(f"the range of topic {inputs!r} holds no records (partition: start..end offsets {shown})")
    lookup_keys = _lookup_keys(log, declared, key)
    all_topics = _all_topics(log, snaps, output)
    lookup_plan = {t: (k, all_topics[t]) for t, k in lookup_keys.items()}
    outcome_ranges: dict[int, tuple[int, int]] = {}
    any_learner = any(learns(m) for m, _ in loaded)
    if outcomes:
        oschema = log.arrow_schema(outcomes)
        for f, what in ((key, "key"), (label, "label")):
            if f not in oschema.names:
                raise ReplayError(f"outcomes topic {outcomes!r} has no {what} field {f!r} (its fields: {oschema.names}); "
                                  f"pass {what}=...")
        if any_learner and key not in log.arrow_schema(inputs).names:
            raise ReplayError(f"inputs topic {inputs!r} has no join key {key!r}; pass key=...")
        if outcomes in lookup_plan:
            outcome_ranges = lookup_plan[outcomes][1]
        else:
            first = clock_mod.first_append_time(log, inputs, input_ranges)
            outcome_ranges = clock_mod.ranges_from_time(log, outcomes, snaps[outcomes], first)
    eff_workers = 1 if any_learner else workers
    plan = Plan(run_id=run_id, inputs=inputs, input_ranges=input_ranges, output=output, outcomes=outcomes,
                outcome_ranges=outcome_ranges, key=key, label=label, lookups=lookup_plan, topics=all_topics,
                order=order, lateness_us=_timedelta_us(lateness, "lateness") if order == "event_time" else None,
                event_time_field=log.config(inputs).event_time_field, seed=int(seed),
                code_version=mf.code_version(), host=socket.gethostname(),
                horizon_us=_timedelta_us(horizon, "horizon"), durability=durability)
    if mf.path(log, run_id).exists():
        raise ReplayError(f"run {run_id!r} already exists in {log.path}")
    ensure_output(log, output, partitions=_output_partitions(input_ranges, eff_workers))
    if workers > 1 and any_learner:
        warnings.warn("models that learn replay in one process, in clock order; workers set to 1", stacklevel=2)
    manifest = _new_manifest(log, plan, records, workers=1 if any_learner else workers, request=(start, end))
    mf.create(log, manifest)
    return _execute(log, plan, loaded, manifest, workers=1 if any_learner else workers, progress=progress)


def _lookup_entry(topic: str, key: str, ranges: Ranges, on_demand: bool) -> dict:
    return {"topic": topic, "key": key, "partitions": mf.ranges_json(ranges), "on_demand": on_demand}


def _new_manifest(log: Any, plan: Plan, records: list[dict], *, workers: int, request: tuple) -> dict:
    end = log.end_offsets(plan.output)
    return {
        "format": mf.FORMAT,
        "run_id": plan.run_id,
        "status": "running",
        "created": mf.now_iso(),
        "finished": None,
        "error": None,
        "inputs": {"topic": plan.inputs, "partitions": mf.ranges_json(plan.input_ranges),
                   "event_time_field": plan.event_time_field},
        "outcomes": None if not plan.outcomes else {
            "topic": plan.outcomes, "partitions": mf.ranges_json(plan.outcome_ranges), "key": plan.key,
            "label": plan.label},
        "key": plan.key,
        "label": plan.label,
        "lookups": [_lookup_entry(t, k, r, False) for t, (k, r) in sorted(plan.lookups.items())],
        "topics": {t: mf.ranges_json(r) for t, r in sorted(plan.topics.items())},
        "request": {"start": _bound_json(request[0]), "end": _bound_json(request[1])},
        "order": plan.order,
        "lateness_us": plan.lateness_us,
        "horizon_us": plan.horizon_us,
        "output": {"topic": plan.output, "start": {str(p): o for p, o in end.items()}, "end": None},
        "models": records,
        "seed": plan.seed,
        "workers": workers,
        "code_version": plan.code_version,
        "host": plan.host,
        "progress": {},
        "rows": {"inputs_planned": sum(hi - lo for lo, hi in plan.input_ranges.values()), "inputs": 0,
                 "outputs": 0, "learned": 0, "outcomes_unmatched": 0},
        "streams": {},
        "content_hash": None,
        "seconds": 0.0,
    }


def plan_from_manifest(m: dict, run_id: str | None = None, output: str | None = None) -> Plan:
    """The exact plan a manifest recorded (for resume and rerun)."""
    o = m.get("outcomes")
    return Plan(
        run_id=run_id or m["run_id"], inputs=m["inputs"]["topic"],
        input_ranges=mf.ranges_from_json(m["inputs"]["partitions"]), output=output or m["output"]["topic"],
        outcomes=o["topic"] if o else None, outcome_ranges=mf.ranges_from_json(o["partitions"]) if o else {},
        key=m.get("key", "request_id"), label=m.get("label", "label"),
        lookups={lk["topic"]: (lk["key"], mf.ranges_from_json(lk["partitions"])) for lk in m.get("lookups", [])},
        topics={t: mf.ranges_from_json(r) for t, r in (m.get("topics") or {}).items()},
        order=m.get("order", "append_time"), lateness_us=m.get("lateness_us"),
        event_time_field=m["inputs"].get("event_time_field"), seed=int(m.get("seed", 0)),
        code_version=mf.code_version(), host=socket.gethostname(), horizon_us=m.get("horizon_us"),
    )


def _with_topics(log: Any, plan: Plan) -> Plan:
    """`plan` with every topic's range for on-demand lookups: the manifest's (runs recorded before
    manifests had ``topics``: the log's now), never the output topic."""
    topics = dict(plan.topics) if plan.topics else snapshot_topics(log, exclude=plan.output)
    topics.pop(plan.output, None)
    topics.update({t: r for t, (_, r) in plan.lookups.items()})
    return replace(plan, topics=dict(sorted(topics.items())))


def _models_for(m: dict, models: Any) -> list[tuple[Any, str | None]]:
    """The models of a manifest: rebuilt from their specs, or the given ones checked against it."""
    recorded = m["models"]
    if models is None:
        missing = [r["name"] for r in recorded if not r.get("spec")]
        if missing:
            raise ModelError(f"run {m['run_id']}: model(s) {missing} were given as objects, not 'module:factory' "
                             f"specs; pass models=[...] to resume or rerun it")
        loaded = [(load(r["spec"]), r["spec"]) for r in recorded]
    else:
        loaded = _load_models(models)
    if [x.name for x, _ in loaded] != [r["name"] for r in recorded]:
        raise ModelError(f"run {m['run_id']} recorded models {[r['name'] for r in recorded]}, "
                         f"given {[x.name for x, _ in loaded]}")
    for (x, _), r in zip(loaded, recorded):
        if x.version != r["version"] or params_hash(x) != r["params_hash"]:
            raise ModelError(f"model {x.name!r} is not the one run {m['run_id']} recorded: version {x.version} "
                             f"(recorded {r['version']}), params {params_hash(x)} (recorded {r['params_hash']})")
    return loaded


def resume(log: Any, run_id: str, models: Any = None, *, workers: int | None = None, progress: bool | None = None,
           force: bool = False) -> Run:
    """Finish an incomplete (or failed) run from what its output topic holds.

    Stateless models continue each partition after its last written row; learning models (and
    event-time order) replay again from the start, writing only rows past the progress, so their
    state is rebuilt exactly. The content hash is then computed from the whole output.
    """
    log = _open(log)
    m = mf.read(log, run_id)
    if m["status"] == "complete":
        raise RunStateError(f"run {run_id} is already complete (content hash {m.get('content_hash')})")
    if m["status"] == "running" and not force:
        raise RunStateError(f"run {run_id} is marked running; if its process is gone, resume with force=True "
                            f"(CLI: --force)")
    loaded = _models_for(m, models)
    plan = _with_topics(log, plan_from_manifest(m))
    stateful = any(learns(x) for x, _ in loaded)
    written = scan_progress(log, m)
    skip: dict[int, tuple[int, int]] = {}
    done0: dict[int, int] = {}
    if not stateful and plan.order == "append_time":
        ranges = dict(plan.input_ranges)
        for p, (c, off, n) in written.items():
            lo, hi = ranges[p]
            ranges[p] = (min(max(lo, off + 1), hi), hi)
            done0[p] = n
        plan = replace(plan, input_ranges=ranges)
    else:
        skip = {p: (c, off) for p, (c, off, n) in written.items()}
    m["status"] = "running"
    m["error"] = None
    m["resumed"] = int(m.get("resumed", 0)) + 1
    mf.write(log, m)
    w = workers if workers is not None else int(m.get("workers", 1))
    return _execute(log, plan, loaded, m, workers=1 if stateful else w, progress=progress, skip=skip,
                    done0=done0, resumed=True)


def rerun(log: Any, run_id: str, models: Any = None, *, output: str | None = None, workers: int | None = None,
          progress: bool | None = None, new_run_id: str | None = None) -> Run:
    """Replay exactly what run `run_id` replayed (same ranges, models, seed) as a new run."""
    log = _open(log)
    old = mf.read(log, run_id)
    loaded = _models_for(old, models)
    rid = names.run_id(new_run_id or mf.new_run_id())
    plan = plan_from_manifest(old, run_id=rid, output=names.output_topic(output or old["output"]["topic"]))
    if plan.output in plan.lookups or plan.output in (plan.inputs, plan.outcomes):
        raise ReplayError(f"output topic {plan.output!r} is also an input/outcome/lookup topic of run {run_id}")
    plan = _with_topics(log, plan)
    records = _model_records(loaded)
    stateful = any(learns(x) for x, _ in loaded)
    w = workers if workers is not None else int(old.get("workers", 1))
    ensure_output(log, plan.output, partitions=_output_partitions(plan.input_ranges, 1 if stateful else w))
    manifest = _new_manifest(log, plan, records, workers=1 if stateful else w,
                             request=(old["request"]["start"], old["request"]["end"]))
    manifest["rerun_of"] = run_id
    mf.create(log, manifest)
    return _execute(log, plan, loaded, manifest, workers=1 if stateful else w, progress=progress)


def runs(log: Any) -> list[Run]:
    """Every run recorded in `log`, oldest first."""
    log = _open(log)
    return [Run(log, mf.read(log, rid)) for rid in mf.list_ids(log)]


def get(log: Any, run_id: str) -> Run:
    """The run `run_id` of `log`."""
    log = _open(log)
    return Run(log, mf.read(log, run_id))


def scan_progress(log: Any, m: dict) -> dict[int, tuple[int, int, int]]:
    """Per input partition, (clock, offset) of the last row the output holds for run `m`, and the
    number of inputs written (rows / models)."""
    out = m["output"]
    start = {int(p): o for p, o in out["start"].items()}
    last: dict[int, tuple[int, int]] = {}
    rows: dict[int, int] = {}
    cols = ["input_topic", "input_partition", "input_offset", "clock"]
    for t in read_run(log, out["topic"], m["run_id"], start, None, cols):
        parts = t.column("input_partition").to_numpy()
        offs = t.column("input_offset").to_numpy()
        clocks = t.column("clock").cast(pa.int64()).to_numpy()
        for p in set(parts.tolist()):
            sel = parts == p
            i = int(sel.nonzero()[0][-1])
            last[p] = max(last.get(p, (-(2**63), -1)), (int(clocks[i]), int(offs[i])))
            rows[p] = rows.get(p, 0) + int(sel.sum())
    n_models = max(1, len(m["models"]))
    return {p: (c, o, rows[p] // n_models) for p, (c, o) in last.items()}


def hash_from_log(log: Any, m: dict) -> ContentHash:
    """The content hash of run `m` recomputed from its output rows in the log."""
    out = m["output"]
    start = {int(p): o for p, o in out["start"].items()}
    h = ContentHash()
    for t in read_run(log, out["topic"], m["run_id"], start, None, None):
        h.update_mixed(t)
    return h


# --------------------------------------------------------------------------------------------
# execution


class _Tracker:
    """Progress across processes: per partition (clock, offset, inputs) -> bar and checkpoints."""

    def __init__(self, log: Any, manifest: dict, bar: Progress, done0: Mapping[int, int]) -> None:
        self.log = log
        self.manifest = manifest
        self.bar = bar
        self.base = {str(p): v for p, v in manifest.get("progress", {}).items()}
        self.marks: dict[int, tuple[int, int, int]] = {}
        self.done0 = dict(done0)
        self._last_ckpt = time.monotonic()
        self._last_tick = 0.0

    def tick(self, progress: Callable[[], Mapping[int, tuple[int, int, int]]]) -> None:
        """Called per event: refresh from `progress()` at most every 0.1 s."""
        now = time.monotonic()
        if now - self._last_tick >= 0.1:
            self._last_tick = now
            self.update(progress())

    def update(self, marks: Mapping[int, tuple[int, int, int]]) -> None:
        self.marks.update(marks)
        self.bar.update(self.inputs_done())
        now = time.monotonic()
        if now - self._last_ckpt >= CHECKPOINT_SECONDS:
            self._last_ckpt = now
            self.checkpoint()

    def progress(self) -> dict[str, dict]:
        prog = dict(self.base)
        for p, (c, off, n) in self.marks.items():
            prog[str(p)] = {"clock": c, "offset": off, "inputs": n + self.done0.get(p, 0)}
        return dict(sorted(prog.items(), key=lambda kv: int(kv[0])))

    def inputs_done(self) -> int:
        return sum(v["inputs"] for v in self.progress().values())

    def checkpoint(self) -> None:
        self.manifest["progress"] = self.progress()
        self.manifest["rows"]["inputs"] = self.inputs_done()
        mf.write(self.log, self.manifest)

    def add_lookup(self, topic: str, key: str, ranges: Ranges) -> None:
        """A topic a model looked up without declaring it: listed in the manifest (written now), so
        the audit checks the fences of the rows that read it."""
        lookups = self.manifest.setdefault("lookups", [])
        if any(lk["topic"] == topic for lk in lookups):
            return
        lookups.append(_lookup_entry(topic, key, ranges, True))
        lookups.sort(key=lambda lk: lk["topic"])
        self.checkpoint()


def _execute(log: Any, plan: Plan, loaded: list, manifest: dict, *, workers: int, progress: bool | None,
             skip: dict | None = None, done0: dict | None = None, resumed: bool = False) -> Run:
    """Replay `plan` and mark `manifest` complete; on any error mark it failed (or incomplete on
    Ctrl-C) with the error recorded, then re-raise it (`RunInterrupted` for Ctrl-C)."""
    t0 = time.monotonic()
    base = {"seconds": float(manifest.get("seconds", 0.0)), "learned": int(manifest["rows"].get("learned", 0)),
            "unmatched": int(manifest["rows"].get("outcomes_unmatched", 0))}
    tracker: _Tracker | None = None
    try:
        bar = Progress(manifest["rows"]["inputs_planned"], label=f"replay {plan.run_id}", enabled=progress)
        tracker = _Tracker(log, manifest, bar, done0 or {})
        try:
            bar.update(tracker.inputs_done())
            result = _replay(log, plan, loaded, tracker, workers, skip or {}, resumed)
        finally:
            bar.close()
        _account(manifest, tracker, base, result, t0)
        _complete(log, plan, manifest, result, resumed)
    except BaseException as e:  # noqa: BLE001 - recorded in the manifest, then re-raised
        interrupted = isinstance(e, (KeyboardInterrupt, Stop))
        _fail(log, manifest, tracker, base, t0, e, interrupted)
        if interrupted:
            raise RunInterrupted(plan.run_id) from None
        raise
    return Run(log, manifest)


def _replay(log: Any, plan: Plan, loaded: list, tracker: "_Tracker", workers: int, skip: dict,
            resumed: bool) -> dict:
    parts = [p for p, (lo, hi) in sorted(plan.input_ranges.items()) if hi > lo]
    stateless = not any(learns(m) for m, _ in loaded)
    if stateless and workers > 1 and len(parts) > 1:
        return _run_workers(log, plan, loaded, parts, min(workers, len(parts)), tracker, skip,
                            hash_streams=not resumed)
    return _run_local(log, plan, [m for m, _ in loaded], tracker, skip, hash_streams=not resumed)


def _account(manifest: dict, tracker: "_Tracker", base: dict, result: Mapping[str, Any], t0: float) -> None:
    """Progress, row counts and seconds into `manifest` (from `base`, so it can be done twice)."""
    manifest["progress"] = tracker.progress()
    manifest["rows"]["inputs"] = tracker.inputs_done()
    manifest["rows"]["learned"] = base["learned"] + int(result.get("learned", 0))
    manifest["rows"]["outcomes_unmatched"] = base["unmatched"] + int(result.get("unmatched", 0))
    manifest["seconds"] = round(base["seconds"] + time.monotonic() - t0, 3)


def _complete(log: Any, plan: Plan, manifest: dict, result: Mapping[str, Any], resumed: bool) -> None:
    streams = hash_from_log(log, manifest).summary() if resumed else result["streams"]
    manifest["streams"] = streams
    manifest["content_hash"] = ContentHash.combine(streams)
    manifest["rows"]["outputs"] = sum(s["rows"] for s in streams.values())
    manifest["output"]["end"] = {str(p): o for p, o in log.end_offsets(plan.output).items()}
    manifest["status"] = "complete"
    manifest["finished"] = mf.now_iso()
    manifest["error"] = None
    mf.write(log, manifest)


def _error_line(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure
        text = ""
    line = f"{type(e).__name__}: {text.splitlines()[0]}" if text.strip() else type(e).__name__
    return line[:2000]


def _fail(log: Any, manifest: dict, tracker: "_Tracker | None", base: dict, t0: float, e: BaseException,
          interrupted: bool) -> None:
    """Mark the run failed (incomplete when interrupted) with the error; nothing of a completion stays."""
    try:
        if tracker is not None:
            _account(manifest, tracker, base, {}, t0)
    except Exception:  # noqa: BLE001 - the counts are best effort, the status is not
        pass
    manifest["status"] = "incomplete" if interrupted else "failed"
    manifest["error"] = "interrupted" if interrupted else _error_line(e)
    manifest["content_hash"] = None
    manifest["streams"] = {}
    manifest["finished"] = None
    manifest["output"]["end"] = None
    try:
        mf.write(log, manifest)
    except BaseException as w:  # noqa: BLE001 - the original error is the one to raise
        e.add_note(f"replay: the manifest of run {manifest['run_id']} could not be marked "
                   f"{manifest['status']}: {type(w).__name__}: {w}")


def _run_local(log: Any, plan: Plan, models: list, tracker: _Tracker, skip: dict, *, hash_streams: bool) -> dict:
    sink = Sink(log, plan.output, durability=plan.durability, hash=hash_streams)
    rep = Replayer(log, plan, models, sink, skip=skip, on_event=lambda: tracker.tick(sink.progress),
                   on_lookup=tracker.add_lookup)
    ok = False
    try:
        res = rep.run()
        ok = True
    finally:
        try:
            sink.close()  # writes what is queued: whole frames, consistent with the progress marks
        except BaseException:
            if ok:
                raise
        tracker.update(sink.progress())
    return {"learned": res.learned, "unmatched": res.unmatched,
            "streams": sink.hasher.summary() if sink.hasher is not None else {}}


_PRELOAD = ["replay.runner", "replay.engine", "replay.context", "replay.output", "logstore.reader",
            "logstore.writer", "schemas.registry", "schemas.conform", "schemas.arrow", "pyarrow.compute",
            "fastavro", "pandas"]  # pyarrow imports pandas (when installed) on its first pa.array(ndarray)


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
    sizes = sorted(((sum(plan.input_ranges[p][1] - plan.input_ranges[p][0] for p in ps), ps)
                    for ps in buckets.values()), key=lambda x: (-x[0], x[1]))
    groups: list[list[int]] = [[] for _ in range(n)]
    loads = [0] * n
    for size, ps in sizes:
        i = min(range(n), key=lambda j: (loads[j], j))
        groups[i].extend(ps)
        loads[i] += size
    return [sorted(g) for g in groups if g]


_ERRORS = {"TimeLeakError": TimeLeakError, "ModelError": ModelError, "ReplayError": ReplayError,
           "RangeError": RangeError, "LookupTopicError": LookupTopicError, "ModelNameError": ModelNameError,
           "ReplayNameError": ReplayNameError}


class _WorkerFailed(Exception):
    """A worker process failed: this process stops its own share of the replay."""


def _run_workers(log: Any, plan: Plan, loaded: list, parts: list[int], n: int, tracker: _Tracker, skip: dict,
                 *, hash_streams: bool) -> dict:
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
            pr = ctx.Process(target=_worker_main, name=f"replay-worker-{wid}",
                             args=(str(log.path), plan, specs, payload, group, skip, q, stop, list(sys.path), wid,
                                   hash_streams, dict(os.environ)), daemon=True)
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
        Replayer(log, plan, [m for m, _ in loaded], sink, partitions=groups[0], skip=skip,
                 on_event=between_frames, on_lookup=tracker.add_lookup).run()
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


def _worker_main(log_path: str, plan: Plan, specs: list, payload: bytes | None, partitions: list[int], skip: dict,
                 q: Any, stop: Any, parent_path: list[str], wid: int, hash_streams: bool, env: dict) -> None:
    """One worker process: replays `partitions` and reports progress and its stream digests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; we stop between frames
    # a forkserver child starts with the server's environment and path: take the parent's
    os.environ.clear()
    os.environ.update(env)
    for p in reversed(parent_path):
        if p not in sys.path:
            sys.path.insert(0, p)
    result: dict[str, Any] = {"streams": {}, "learned": 0, "unmatched": 0, "progress": {}, "error": None,
                              "stopped": False}
    sink = None
    try:
        models = pickle.loads(payload) if payload is not None else [load(s) for s in specs]
        log = logstore.Log(log_path, recover=False)  # the parent opened (and recovered) it
        sink = Sink(log, plan.output, durability=plan.durability, hash=hash_streams,
                    on_commit=lambda marks: q.put(("progress", wid, marks)))
        rep = Replayer(log, plan, models, sink, partitions=partitions, skip=skip, should_stop=stop.is_set,
                       on_lookup=lambda topic, key, _: q.put(("lookup", wid, topic, key)))
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

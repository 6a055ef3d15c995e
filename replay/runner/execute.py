"""Executing a run: replaying its plan, checkpointing its manifest, and ending it in a terminal state.

`execute` replays (in this process, or for stateless models with ``workers=N`` in N processes:
`replay.runner.workers`, or as tasks on a cluster engine: `replay.runner.cluster`) and marks the
manifest ``complete`` with row counts and the content hash. On Ctrl-C the rows queued so far are
written (each output frame is whole), the manifest says ``incomplete`` with per-partition
progress and `RunInterrupted` is raised. Any other error
once the manifest exists (a model's, e.g. `TimeLeakError`, or one while finishing the run) marks
the run ``failed`` with the error and re-raises it: a manifest never stays ``running`` after its
process returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from ..engine.lookups import Ranges
from ..engine.replayer import Plan, Replayer, Stop
from ..errors import RunInterrupted
from ..models import learns
from . import manifest as mf
from .cluster import Engine, run_cluster
from .handle import Run
from .hashing import ContentHash
from .progress import Progress
from .sink import Sink, read_run
from .workers import run_workers

CHECKPOINT_SECONDS = 2.0


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


class Tracker:
    """Progress across processes: per partition (clock, offset, inputs) -> bar and checkpoints."""

    def __init__(self, log: Any, manifest: mf.Manifest, bar: Progress, done0: Mapping[int, int]) -> None:
        self.log = log
        self.manifest = manifest
        self.bar = bar
        self.base = {str(p): v for p, v in (manifest.progress or {}).items()}
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
        self.manifest.progress = self.progress()
        self.manifest.rows["inputs"] = self.inputs_done()
        mf.write(self.log, self.manifest)

    def add_lookup(self, topic: str, key: str, ranges: Ranges) -> None:
        """A topic a model looked up without declaring it: listed in the manifest (written now), so
        the audit checks the fences of the rows that read it."""
        lookups = self.manifest.lookups = self.manifest.lookups or []
        if any(lk["topic"] == topic for lk in lookups):
            return
        lookups.append(mf.lookup_entry(topic, key, ranges, True))
        lookups.sort(key=lambda lk: lk["topic"])
        self.checkpoint()


def execute(
    log: Any,
    plan: Plan,
    loaded: list,
    manifest: mf.Manifest,
    *,
    workers: int,
    progress: bool | None,
    skip: dict | None = None,
    done0: dict | None = None,
    resumed: bool = False,
    engine: Engine | None = None,
) -> Run:
    """Replay `plan` and mark `manifest` complete; on any error mark it failed (or incomplete on
    Ctrl-C) with the error recorded, then re-raise it (`RunInterrupted` for Ctrl-C). `engine`: a
    cluster engine for stateless models (`replay.runner.cluster`; None: this machine's processes)."""
    t0 = time.monotonic()
    base = {
        "seconds": float(manifest.seconds or 0.0),
        "learned": int(manifest.rows.get("learned", 0)),
        "unmatched": int(manifest.rows.get("outcomes_unmatched", 0)),
    }
    tracker: Tracker | None = None
    try:
        bar = Progress(manifest.rows["inputs_planned"], label=f"replay {plan.run_id}", enabled=progress)
        tracker = Tracker(log, manifest, bar, done0 or {})
        try:
            bar.update(tracker.inputs_done())
            result = _replay(log, plan, loaded, tracker, workers, skip or {}, resumed, engine, manifest)
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
    return Run(log, manifest.to_dict())


def _replay(
    log: Any,
    plan: Plan,
    loaded: list,
    tracker: Tracker,
    workers: int,
    skip: dict,
    resumed: bool,
    engine: Engine | None,
    manifest: mf.Manifest,
) -> dict:
    parts = [p for p, (lo, hi) in sorted(plan.input_ranges.items()) if hi > lo]
    stateless = not any(learns(m) for m, _ in loaded)
    if stateless and engine is not None:
        start = {int(p): int(o) for p, o in manifest.output["start"].items()}
        models = [m for m, _ in loaded]
        return run_cluster(
            log, plan, models, parts, engine, tracker, skip, hash_streams=not resumed, output_start=start
        )
    if stateless and workers > 1 and len(parts) > 1:
        return run_workers(log, plan, loaded, parts, min(workers, len(parts)), tracker, skip, hash_streams=not resumed)
    return _run_local(log, plan, [m for m, _ in loaded], tracker, skip, hash_streams=not resumed)


def _account(manifest: mf.Manifest, tracker: Tracker, base: dict, result: Mapping[str, Any], t0: float) -> None:
    """Progress, row counts and seconds into `manifest` (from `base`, so it can be done twice)."""
    manifest.progress = tracker.progress()
    manifest.rows["inputs"] = tracker.inputs_done()
    manifest.rows["learned"] = base["learned"] + int(result.get("learned", 0))
    manifest.rows["outcomes_unmatched"] = base["unmatched"] + int(result.get("unmatched", 0))
    manifest.seconds = round(base["seconds"] + time.monotonic() - t0, 3)


def _complete(log: Any, plan: Plan, manifest: mf.Manifest, result: Mapping[str, Any], resumed: bool) -> None:
    streams = hash_from_log(log, manifest.to_dict()).summary() if resumed else result["streams"]
    manifest.streams = streams
    manifest.content_hash = ContentHash.combine(streams)
    manifest.rows["outputs"] = sum(s["rows"] for s in streams.values())
    manifest.output["end"] = {str(p): o for p, o in log.end_offsets(plan.output).items()}
    manifest.status = "complete"
    manifest.finished = mf.now_iso()
    manifest.error = None
    mf.write(log, manifest)


def _error_line(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure
        text = ""
    line = f"{type(e).__name__}: {text.splitlines()[0]}" if text.strip() else type(e).__name__
    return line[:2000]


def _fail(
    log: Any, manifest: mf.Manifest, tracker: Tracker | None, base: dict, t0: float, e: BaseException, interrupted: bool
) -> None:
    """Mark the run failed (incomplete when interrupted) with the error; nothing of a completion stays."""
    try:
        if tracker is not None:
            _account(manifest, tracker, base, {}, t0)
    except Exception:  # noqa: BLE001 - the counts are best effort, the status is not
        pass
    manifest.status = "incomplete" if interrupted else "failed"
    manifest.error = "interrupted" if interrupted else _error_line(e)
    manifest.content_hash = None
    manifest.streams = {}
    manifest.finished = None
    manifest.output["end"] = None
    try:
        mf.write(log, manifest)
    except BaseException as w:  # noqa: BLE001 - the original error is the one to raise
        e.add_note(
            f"replay: the manifest of run {manifest.run_id} could not be marked "
            f"{manifest.status}: {type(w).__name__}: {w}"
        )


def _run_local(log: Any, plan: Plan, models: list, tracker: Tracker, skip: dict, *, hash_streams: bool) -> dict:
    sink = Sink(log, plan.output, durability=plan.durability, hash=hash_streams)
    rep = Replayer(
        log, plan, models, sink, skip=skip, on_event=lambda: tracker.tick(sink.progress), on_lookup=tracker.add_lookup
    )
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
    return {
        "learned": res.learned,
        "unmatched": res.unmatched,
        "streams": sink.hasher.summary() if sink.hasher is not None else {},
    }

"""Run manifests: ``<log>/runs/<run_id>/manifest.json``, one JSON object per run.

Written atomically (temp file, fsync, rename: `logstore.files.write_atomic`) when the run starts,
at checkpoints while it runs (every few seconds), and when it ends. Format 1::

    {
      "format": 1,
      "run_id": "20261101T120000Z-3fa9c1",       # UTC start time + random: unique, sortable
      "status": "running" | "complete" | "incomplete" | "failed",
      "created": iso, "updated": iso, "finished": iso | null,
      "error": null | "one line",                 # why a run failed ("Type: message") / "interrupted"
      "inputs":   {"topic": t, "partitions": {"0": [lo, hi], ...}, "event_time_field": f | null},
      "outcomes": null | {"topic": t, "partitions": {...}, "key": "request_id", "label": "label"},
      "lookups":  [{"topic": t, "key": k, "partitions": {...}, "on_demand": bool}],  # exact ranges
                                                  # [lo, hi); on_demand: first looked up, not declared
      "topics":   {t: {"0": [lo, hi], ...}},       # every topic's range at start (on-demand lookups)
      "request":  {"start": ..., "end": ...},      # the bounds as given (offsets / ISO times)
      "order": "append_time" | "event_time", "lateness_us": int | null,
      "output":   {"topic": t, "start": {"0": offset, ...}, "end": {...} | null},  # per output partition
      "models":   [{"name", "version", "spec" | null, "class", "params_hash", "learns", "lookups"}],
      "seed": 0, "workers": 1,
      "engine": {"name": "local"} | {"name": "dask", "address": a | null, "workers": n},  # where it
                                                  # ran (the last start or resume); not in the hash
      "code_version": "git:<sha>[-dirty]" | "logstore <version>",
      "progress": {"0": {"clock": us, "offset": o, "inputs": n}, ...},   # last input written per partition
      "rows": {"inputs": n, "outputs": n, "learned": n, "outcomes_unmatched": n},
      "streams": {"topic/partition/model": {"rows": n, "sha256": hex}},
      "content_hash": "sha256:<hex>" | null,
      "seconds": float
    }

A run that raised anything once its manifest exists ends ``failed`` with its error (``incomplete``
and ``"interrupted"`` on Ctrl-C), never ``running``; only ``complete`` has a content hash, a
finish time and an output end. `replay.audit` recomputes what it certifies of this record from
the log and names any field that differs. Run ids and model names follow the log's name rule
(`replay.names`).

Offsets ranges are per partition ``[lo, hi)`` as JSON lists; partition keys are strings (JSON).
The manifest is the run's record; the output topic holds the rows. Re-running a manifest
(`replay.rerun`) replays exactly the same ranges and reproduces `content_hash`. In a run, the
record is a `Manifest`; `Run.manifest` and `read` give the JSON object as a dict.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logstore.files import write_atomic
from logstore.names import RUNS_DIR, validate_name
from logstore.timeutil import iso_z, now_us

from ..errors import ReplayError, RunNotFoundError

if TYPE_CHECKING:
    from ..engine.replayer import Plan

MANIFEST = "manifest.json"
FORMAT = 1
STATUSES = ("running", "complete", "incomplete", "failed")


def new_run_id(now: datetime | None = None) -> str:
    """A unique, time-sortable run id: ``YYYYMMDDTHHMMSSZ-<6 hex>``."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def now_iso() -> str:
    return iso_z(now_us())


def run_dir(log: Any, run_id: str) -> Path:
    validate_name(run_id, "run")
    return Path(log.path) / RUNS_DIR / run_id


def path(log: Any, run_id: str) -> Path:
    return run_dir(log, run_id) / MANIFEST


class _Absent:
    """The value of a field the manifest read does not have (one written by an older replay)."""

    def __bool__(self) -> bool:  # `m.seconds or 0.0` reads like `m.get("seconds", 0.0)`
        return False

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(kw_only=True, eq=False)
class Manifest:
    """A run's record, field by field as in the module docstring; `to_dict` is the JSON object.

    `from_dict(m).to_dict()` equals `m`: a field `m` lacks is `ABSENT` (falsy, never written),
    and keys this version does not know are kept in `others`.
    """

    format: int = FORMAT
    run_id: str
    status: str = "running"
    created: str = field(default_factory=now_iso)
    updated: str = ABSENT  # set by every `write`
    finished: str | None = None
    error: str | None = None
    inputs: dict
    outcomes: dict | None
    key: str
    label: str
    lookups: list[dict]
    topics: dict[str, dict]
    request: dict
    order: str
    lateness_us: int | None
    horizon_us: int | None
    output: dict
    models: list[dict]
    seed: int
    workers: int
    code_version: str
    host: str
    progress: dict = field(default_factory=dict)
    rows: dict
    streams: dict = field(default_factory=dict)
    content_hash: str | None = None
    seconds: float = 0.0
    engine: dict = ABSENT  # where the run (its last start or resume) replayed: `replay.runner.cluster`
    resumed: int = ABSENT  # how many times `replay.resume` continued the run
    rerun_of: str = ABSENT  # the run a `replay.rerun` replayed again
    others: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "others"}
        out = {k: v for k, v in out.items() if v is not ABSENT}
        out.update(self.others)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        known = [f.name for f in fields(cls) if f.name != "others"]
        return cls(**{k: data.get(k, ABSENT) for k in known}, others={k: v for k, v in data.items() if k not in known})


def new_manifest(
    plan: Plan,
    models: list[dict],
    *,
    workers: int,
    request: tuple,
    output_start: Mapping[int, int],
    engine: dict | None = None,
) -> Manifest:
    """The manifest of a run about to start: `plan`'s ranges and settings, the `models` records,
    the bounds as given (`request`), the output topic's end offsets now (`output_start`) and the
    `engine` record (default: this machine's processes)."""
    return Manifest(
        run_id=plan.run_id,
        inputs={
            "topic": plan.inputs,
            "partitions": ranges_json(plan.input_ranges),
            "event_time_field": plan.event_time_field,
        },
        outcomes=None
        if not plan.outcomes
        else {
            "topic": plan.outcomes,
            "partitions": ranges_json(plan.outcome_ranges),
            "key": plan.key,
            "label": plan.label,
        },
        key=plan.key,
        label=plan.label,
        lookups=[lookup_entry(t, k, r, False) for t, (k, r) in sorted(plan.lookups.items())],
        topics={t: ranges_json(r) for t, r in sorted(plan.topics.items())},
        request={"start": bound_json(request[0]), "end": bound_json(request[1])},
        order=plan.order,
        lateness_us=plan.lateness_us,
        horizon_us=plan.horizon_us,
        output={"topic": plan.output, "start": {str(p): o for p, o in output_start.items()}, "end": None},
        models=models,
        seed=plan.seed,
        workers=workers,
        engine=engine if engine is not None else {"name": "local"},
        code_version=plan.code_version,
        host=plan.host,
        rows={
            "inputs_planned": sum(hi - lo for lo, hi in plan.input_ranges.values()),
            "inputs": 0,
            "outputs": 0,
            "learned": 0,
            "outcomes_unmatched": 0,
        },
    )


def lookup_entry(topic: str, key: str, ranges: dict[int, tuple[int, int]], on_demand: bool) -> dict:
    """A ``lookups`` entry: the topic, its key field, its exact ranges, whether it was first looked up."""
    return {"topic": topic, "key": key, "partitions": ranges_json(ranges), "on_demand": on_demand}


def bound_json(v: Any) -> Any:
    """A start/end bound as given, as JSON (offsets as they are, datetimes as ISO text)."""
    if v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, Mapping):
        return {str(k): bound_json(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return repr(v)


def write(log: Any, manifest: Manifest | dict) -> None:
    """Write `manifest` atomically (creating the run's directory); a dict is written as it is."""
    if isinstance(manifest, Manifest):
        manifest.updated = now_iso()
        data = manifest.to_dict()
    else:
        manifest["updated"] = now_iso()
        data = manifest
    d = run_dir(log, data["run_id"])
    d.mkdir(parents=True, exist_ok=True)
    write_atomic(d / MANIFEST, json.dumps(data, indent=2, sort_keys=True, default=str).encode())


def create(log: Any, manifest: Manifest | dict) -> None:
    """Write a new run's manifest; refuses a run id already taken."""
    run_id = manifest.run_id if isinstance(manifest, Manifest) else manifest["run_id"]
    d = run_dir(log, run_id)
    try:
        d.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise ReplayError(f"run {run_id!r} already exists in {log.path}") from None
    write(log, manifest)


def read(log: Any, run_id: str) -> dict:
    """The manifest of `run_id`; RunNotFoundError when there is none."""
    p = path(log, run_id)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise RunNotFoundError(f"no run {run_id!r} in {log.path} (see `replay runs {log.path}`)") from None
    except ValueError as e:
        raise ReplayError(f"{p}: not valid JSON ({e})") from e
    if data.get("format") != FORMAT:
        raise ReplayError(f"{p}: manifest format {data.get('format')!r}, this replay reads format {FORMAT}")
    return data


def list_ids(log: Any) -> list[str]:
    """Run ids with a manifest in `log`, oldest first (ids sort by start time)."""
    root = Path(log.path) / RUNS_DIR
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(".") and (root / n / MANIFEST).exists())


def ranges_json(ranges: dict[int, tuple[int, int]]) -> dict[str, list[int]]:
    return {str(p): [int(lo), int(hi)] for p, (lo, hi) in sorted(ranges.items())}


def ranges_from_json(data: dict[str, list[int]]) -> dict[int, tuple[int, int]]:
    return {int(p): (int(v[0]), int(v[1])) for p, v in data.items()}


_CODE_VERSION: str | None = None


def code_version() -> str:
    """The git commit of the code running replay (``git:<sha>``, ``-dirty`` if modified), else the
    package version."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        root = Path(__file__).resolve().parents[2]  # replay/runner/manifest.py -> the checkout
        try:
            sha = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", "replay", "logstore"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            _CODE_VERSION = f"git:{sha[:12]}" + ("-dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            try:
                from importlib.metadata import version

                _CODE_VERSION = f"logstore {version('logstore')}"
            except Exception:
                import logstore

                _CODE_VERSION = f"logstore {logstore.__version__}"
    return _CODE_VERSION

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
(`replay.rerun`) replays exactly the same ranges and reproduces `content_hash`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from logstore.files import write_atomic
from logstore.names import RUNS_DIR, validate_name

from .errors import ReplayError, RunNotFoundError

MANIFEST = "manifest.json"
FORMAT = 1
STATUSES = ("running", "complete", "incomplete", "failed")


def new_run_id(now: datetime | None = None) -> str:
    """A unique, time-sortable run id: ``YYYYMMDDTHHMMSSZ-<6 hex>``."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_dir(log: Any, run_id: str) -> Path:
    validate_name(run_id, "run")
    return Path(log.path) / RUNS_DIR / run_id


def path(log: Any, run_id: str) -> Path:
    return run_dir(log, run_id) / MANIFEST


def write(log: Any, manifest: dict) -> None:
    """Write `manifest` atomically (creating the run's directory)."""
    d = run_dir(log, manifest["run_id"])
    d.mkdir(parents=True, exist_ok=True)
    manifest["updated"] = now_iso()
    write_atomic(d / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())


def create(log: Any, manifest: dict) -> None:
    """Write a new run's manifest; refuses a run id already taken."""
    d = run_dir(log, manifest["run_id"])
    try:
        d.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise ReplayError(f"run {manifest['run_id']!r} already exists in {log.path}") from None
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
        here = Path(__file__).resolve().parent
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                 timeout=5, check=True).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "replay", "logstore"],
                                   cwd=here.parent, capture_output=True, text=True, timeout=5).stdout.strip()
            _CODE_VERSION = f"git:{sha[:12]}" + ("-dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            try:
                from importlib.metadata import version

                _CODE_VERSION = f"logstore {version('logstore')}"
            except Exception:
                import logstore

                _CODE_VERSION = f"logstore {logstore.__version__}"
    return _CODE_VERSION

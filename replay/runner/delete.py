"""Deleting a run: `delete_run` (``replay.delete_run``) and ``replay delete LOG RUN``.

A run is its directory ``<log>/runs/<run_id>/`` (the manifest) and its rows in the output topic.
The directory goes crash-safely: renamed to ``runs/.deleted-<ns>-<pid>-<run_id>`` (a dot name,
which `replay.runs` never lists) and ``runs/`` fsynced, the commit point (after a power cut the
run is listed whole or not at all), then removed; a tree a crash left is removed by the next
`delete_run`. The output topic is append-only, so its rows cannot be taken out one run at a
time: when it holds only this run's scores (no other run's rows, no other manifest naming it),
``with_output=True`` deletes the topic too (`Log.delete_topic`, before the run's directory, so a
refused deletion leaves both as they were); otherwise the topic is kept and the result names the
runs sharing it. A run marked running is refused unless `force` (its process would write the
manifest again).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from logstore.files import fsync_dir
from logstore.names import RUNS_DIR

from ..errors import RunStateError
from . import manifest as mf
from .logs import open_log

logger = logging.getLogger("replay")
DELETED = ".deleted-"
UNKNOWN = "(rows without a run id)"


@dataclass(frozen=True)
class RunDeletion:
    """A run to delete (`plan_delete`) or deleted (`delete_run`), and its output topic's state."""

    run_id: str
    status: str
    scores: int  # the run's output rows, by its manifest
    output: str
    output_exists: bool
    output_records: int = 0
    output_bytes: int = 0
    shared_with: tuple[str, ...] = ()  # other runs with rows in the output or naming it
    output_deleted: bool = False

    @property
    def exclusive(self) -> bool:
        """True if the output topic exists and holds this run's scores only."""
        return self.output_exists and not self.shared_with


def plan_delete(log: Any, run_id: str) -> RunDeletion:
    """What deleting `run_id` would remove, reading only (RunNotFoundError if there is no such run)."""
    log = open_log(log)
    m = mf.read(log, run_id)
    output = m["output"]["topic"]
    base = RunDeletion(run_id, m["status"], int(m.get("rows", {}).get("outputs", 0)), output, False)
    naming = [r for r in mf.list_ids(log) if r != run_id and _output_of(log, r) == output]
    if output not in log.topics():
        return replace(base, shared_with=tuple(naming))
    info = log.describe(output)
    others = set(naming) | (_writers(log, output) - {run_id})
    return replace(
        base,
        output_exists=True,
        output_records=int(info["records"]),
        output_bytes=int(info["bytes"]),
        shared_with=tuple(sorted(others)),
    )


def delete_run(log: Any, run_id: str, with_output: bool = False, *, force: bool = False) -> RunDeletion:
    """Delete run `run_id` (its directory under ``runs/``), and with `with_output` its output
    topic when that holds only this run's scores; returns what was done (`output_deleted`, and
    `shared_with` naming the runs that keep a shared output). A run marked running is refused
    (RunStateError) unless `force`."""
    log = open_log(log)
    _sweep(Path(log.path) / RUNS_DIR)
    plan = plan_delete(log, run_id)
    if plan.status == "running" and not force:
        raise RunStateError(
            f"run {run_id} is marked running: its process would write it again; if that process is "
            "gone, delete with force=True (CLI: --force)"
        )
    if with_output and plan.exclusive:
        log.delete_topic(plan.output)
        plan = replace(plan, output_deleted=True)
    _retire(mf.run_dir(log, run_id))
    return plan


def _output_of(log: Any, run_id: str) -> str | None:
    try:
        return (mf.read(log, run_id).get("output") or {}).get("topic")
    except Exception:  # noqa: BLE001 - a manifest that cannot be read names no output
        return None


def _writers(log: Any, topic: str) -> set[str]:
    """The run ids of the rows in `topic`, read a batch at a time (UNKNOWN for rows without one)."""
    if "run_id" not in log.arrow_schema(topic).names:
        return {UNKNOWN}
    found: set[str] = set()
    for batch in log.reader(topic, columns=["run_id"]):
        found.update(UNKNOWN if v is None else v for v in pc.unique(batch.column(0)).to_pylist())
    return found


def _retire(run_dir: Path) -> None:
    """Rename `run_dir` to a hidden name, fsync ``runs/`` (the commit point), remove the tree."""
    root = run_dir.parent
    hidden = root / f"{DELETED}{time.time_ns()}-{os.getpid()}-{run_dir.name}"
    os.rename(run_dir, hidden)
    fsync_dir(root)
    _remove(hidden)


def _sweep(root: Path) -> None:
    """Remove the trees of deletions a crash interrupted."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    for name in sorted(names):
        if name.startswith(DELETED):
            _remove(root / name)


def _remove(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as e:
        logger.warning("cannot remove %s yet (%s): the next deletion of a run removes it", path, e)
        return
    fsync_dir(path.parent)


# --- the command -----------------------------------------------------------------------------
HELP = "delete a run's record (and with --with-output its output topic, if it holds only this run)"


def _question(plan: RunDeletion, with_output: bool) -> str:
    if with_output and plan.exclusive:
        return (
            f"delete run {plan.run_id} and its output topic {plan.output!r} "
            f"({plan.output_records:,} records, {plan.output_bytes:,} bytes)?"
        )
    return f"delete run {plan.run_id} ({plan.status}, {plan.scores:,} scores)?"


def _outcome(done: RunDeletion, log_path: str) -> str:
    """What happened to the output topic, in words."""
    if done.output_deleted:
        return (
            f"its output topic {done.output!r} deleted ({done.output_records:,} records, {done.output_bytes:,} bytes)"
        )
    if not done.output_exists:
        return f"its output topic {done.output!r} does not exist"
    if done.shared_with:
        shown = ", ".join(done.shared_with[:5]) + (
            f" and {len(done.shared_with) - 5} more" if len(done.shared_with) > 5 else ""
        )
        return f"output topic {done.output!r} kept: it holds scores of run(s) {shown} too"
    return (
        f"its output topic {done.output!r} holds only this run's scores ({done.output_records:,} records) and was "
        f"kept: `logstore delete-topic {log_path} {done.output}` deletes it (or `replay delete --with-output`)"
    )


def cmd_delete(args: argparse.Namespace) -> int:
    import logstore
    from logstore.errors import LogNotFoundError
    from logstore.term import confirm

    if not os.path.isdir(args.log):
        raise LogNotFoundError(f"no log at {args.log}")
    log = logstore.open(args.log)
    plan = plan_delete(log, args.run)
    if not confirm(_question(plan, args.with_output), args.yes):
        print(f"run {args.run} not deleted", file=sys.stderr)
        return 1
    done = delete_run(log, args.run, with_output=args.with_output, force=args.force)
    print(f"deleted run {done.run_id}; {_outcome(done, args.log)}")
    return 0


def add_delete_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``replay delete`` through `command` (replay.cli's `_command`)."""
    p = command(sub, "delete", cmd_delete, HELP)
    p.add_argument("run")
    p.add_argument(
        "--with-output",
        action="store_true",
        help="also delete the output topic when it holds only this run's scores (kept when shared)",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    p.add_argument("--force", action="store_true", help="delete a run marked running whose process is gone")

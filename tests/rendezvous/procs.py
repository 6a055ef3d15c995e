"""Subprocess helpers for runner processes: start, wait for, stop and always kill.

`runner_process(...)` is a context manager that starts ``python -m rendezvous.runner`` from the
repository root (so ``tests.rendezvous.models`` imports), its output in a file (a pipe nobody reads
would fill and block it), and kills it on the way out whatever happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rendezvous.launch import kill  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[2]


def start_runner(
    log_dir: str | os.PathLike[str],
    model: str,
    *args: str,
    output: str | os.PathLike[str],
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a runner process for `model` (``module:factory``) on `log_dir`; output to `output`."""
    cmd = [sys.executable, "-m", "rendezvous.runner", str(log_dir), "--model", model, *args]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    with open(output, "ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=full_env)


@contextmanager
def runner_process(
    log_dir: str | os.PathLike[str],
    model: str,
    *args: str,
    output: str | os.PathLike[str],
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A runner process for the `with` block; killed (SIGKILL) at its end if still running."""
    proc = start_runner(log_dir, model, *args, output=output, env=env)
    try:
        yield proc
    finally:
        kill(proc)


@contextmanager
def processes(cmds: Sequence[Sequence[str]], output_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Python processes running `cmds` (argument lists after ``python``), each killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, cmd in enumerate(cmds):
            with open(output_dir / f"proc{i}.out", "ab") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, *cmd],
                        cwd=ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                    )
                )
        yield procs
    finally:
        for p in procs:
            kill(p)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)

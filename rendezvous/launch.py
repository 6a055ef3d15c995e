"""Starting a front door and model runners as processes on loopback, and always stopping them.

    with Fleet("out/log", "out") as fleet:
        url = fleet.serve("out/rendezvous.toml")          # waits until it listens (a free port)
        fleet.model("mypkg.models:champion", role="champion")
        ...                                                # talk HTTP to `url`
    # every process is gone here: SIGTERM, then SIGKILL after `grace` seconds
    # (and if the launcher itself dies, each process gets SIGTERM: PR_SET_PDEATHSIG on Linux)

Each process runs ``python -m rendezvous ...`` with its output in a file of `out_dir` (a pipe
nobody reads would fill and block it); `common` arguments go to every ``serve`` and ``model``
(``Fleet(..., common=["--kafka", servers, "--registry", url])``: the fleet on Kafka). The demo,
the benchmark and the end-to-end tests use it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

_READY = re.compile(r"serving (http://\S+)")


def _die_with_parent() -> None:
    """(In the child, before exec.) SIGTERM the child when its launcher dies, however it dies
    (Linux ``PR_SET_PDEATHSIG``): a fleet never outlives the process that owns it."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1


class LaunchError(RuntimeError):
    """A process did not start (its output says why)."""


def kill(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL, timeout: float = 10.0) -> int | None:
    """Send `sig` to `proc` and wait; SIGKILL if it has not exited within `timeout`. Its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


class Fleet:
    """The processes of one rendezvous on one log (see the module docstring)."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        grace: float = 5.0,
        common: Sequence[str] = (),
    ) -> None:
        self.log_dir = str(log_dir)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.grace = grace
        self.common = list(common)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def output(self, name: str) -> Path:
        return self.out_dir / f"{name}.out"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``python -m rendezvous ARGS`` as process `name` (its output in ``NAME.out``)."""
        if name in self.procs and self.procs[name].poll() is None:
            raise LaunchError(f"process {name!r} is already running")
        with open(self.output(name), "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rendezvous", *args],
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # a Ctrl-C of the caller's terminal does not reach it first
                preexec_fn=_die_with_parent,
            )
        self.procs[name] = proc
        return proc

    def serve(self, config: str | os.PathLike[str], *args: str, name: str = "service", timeout: float = 60.0) -> str:
        """Start the front door on 127.0.0.1 (a free port unless `args` give one); its URL once listening."""
        port = [] if "--port" in args else ["--port", "0"]
        start = self.output(name).stat().st_size if self.output(name).exists() else 0
        cmd = ["serve", self.log_dir, "--config", str(config), "--host", "127.0.0.1", *port, *self.common, *args]
        proc = self.start(name, *cmd)
        deadline = time.monotonic() + timeout
        while True:
            text = self.output(name).read_bytes()[start:].decode(errors="replace")
            m = _READY.search(text)
            if m:
                return m.group(1)
            if proc.poll() is not None:
                raise LaunchError(f"{name} exited with {proc.returncode}: {text.strip()[-2000:]}")
            if time.monotonic() > deadline:
                self.kill(name)
                raise LaunchError(f"{name} did not listen within {timeout:g} s: {text.strip()[-2000:]}")
            time.sleep(0.02)

    def model(self, spec: str, *args: str, role: str = "champion", name: str | None = None) -> subprocess.Popen[bytes]:
        """Start a runner of model `spec` (``module:factory``) with `role`."""
        cmd = ["model", self.log_dir, "--model", spec, "--role", role, *self.common, *args]
        return self.start(name or spec.rpartition(":")[2], *cmd)

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int | None:
        """Send `sig` to process `name` and wait (SIGKILL after `timeout`); its exit code."""
        proc = self.procs.get(name)
        return None if proc is None else kill(proc, sig, timeout)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process, SIGKILL what is left after `grace` seconds; exit codes by name."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return {name: p.returncode for name, p in self.procs.items()}

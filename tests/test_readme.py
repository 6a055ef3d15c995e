"""The README's tour runs: its Python blocks in order, then its shell commands."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def blocks(kind: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_demo_and_test():
    """The first lines give `make demo` and `make test`."""
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:6])
    assert "make demo" in head and "make test" in head


def test_readme_tour_runs(tmp_path, monkeypatch):
    """Every Python block of the tour runs, then every `$ logstore ...` command exits 0."""
    from logstore.cli import main

    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for code in blocks("python"):
        exec(compile(code, "README.md", "exec"), scope)
    commands = [line[2:] for block in blocks("console") for line in block.splitlines() if line.startswith("$ ")]
    assert commands
    for cmd in commands:
        argv = shlex.split(cmd)
        assert argv[0] == "logstore"
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            assert main(argv[1:]) == 0, cmd
        assert out.getvalue().strip(), cmd  # every command says what it did

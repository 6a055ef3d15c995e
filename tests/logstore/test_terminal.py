"""On a terminal: progress bars on long commands, colour, tables; piped: plain text, no bars."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

import logstore
from logstore.cli import main
from logstore.progress import Progress
from logstore.term import color_enabled, style
from tests.conftest import SCORE_SCHEMA, score_rows


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*argv: str, tty: bool = False) -> tuple[int, str, str]:
    out, err = (Tty(), Tty()) if tty else (io.StringIO(), io.StringIO())
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def logdir(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    d = tmp_path / "log"
    with logstore.open(d) as log:
        log.create_topic("s", SCORE_SCHEMA, partitions=2, key_field="request_id")
        with log.writer("s", linger_ms=None) as w:
            w.append_batch(score_rows(300))
    return str(d)


def test_color_rules(monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert color_enabled(Tty()) and not color_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not color_enabled(Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not color_enabled(Tty())
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert color_enabled(io.StringIO())
    assert style("x", "red", True) == "\x1b[31mx\x1b[0m" and style("x", "red", False) == "x"


def test_progress_draws_only_on_a_terminal():
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        with Progress(3 << 20, "verify", stream=stream, unit="bytes", interval=0) as bar:
            bar.update(1 << 20)
            bar.update(3 << 20)
    assert pipe.getvalue() == ""
    assert "verify [" in tty.getvalue() and "3.0/3.0 MiB" in tty.getvalue() and tty.getvalue().endswith("\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "{d}"],
        ["export", "{d}", "s", "{tmp}/s.jsonl"],
        ["import", "{d}", "s", "{tmp}/s.jsonl"],
        ["retention", "{d}"],
    ],
)
def test_long_commands_show_a_bar_on_a_terminal_and_not_with_no_progress(logdir, tmp_path, argv):
    if argv[0] == "import":
        assert run("export", logdir, "s", str(tmp_path / "s.jsonl"))[0] == 0
    args = [a.format(d=logdir, tmp=tmp_path) for a in argv]
    code, _, err = run(*args, tty=True)
    assert code == 0, err
    assert "\r" in err and "ETA" in err
    code, _, err = run(*args, "--no-progress", tty=True)
    assert code == 0 and "\r" not in err and "ETA" not in err


def test_cat_is_a_table_on_a_terminal_and_json_lines_down_a_pipe(logdir):
    code, out, _ = run("cat", logdir, "s", tty=True)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("\x1b[1m") and "request_id" in lines[0]  # a bold header
    assert "... 100 more rows" in out and "(300 rows)" in out  # the first 200 rows
    code, out, _ = run("cat", logdir, "s")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 300 and "\x1b[" not in out
    code, out, _ = run("cat", logdir, "s", "--limit", "5", tty=True)
    assert "(300 rows)" in out and "... 295 more rows" in out


def test_errors_are_red_on_a_terminal_only(logdir):
    code, _, err = run("describe", logdir, "nope", tty=True)
    assert code == 2 and "\x1b[31merror:\x1b[0m" in err
    code, _, err = run("describe", logdir, "nope")
    assert code == 2 and err.startswith("logstore: error:")


def test_verify_marks_ok_in_green_on_a_terminal(logdir):
    code, out, _ = run("verify", logdir, "--no-progress", tty=True)
    assert code == 0 and "\x1b[32mok\x1b[0m" in out
    code, out, _ = run("verify", logdir)
    assert out.rstrip().endswith(": ok")

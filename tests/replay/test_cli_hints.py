"""The replay CLI's hints are shell commands, not Python calls."""

from __future__ import annotations

import pytest

import replay
from replay.cli import main
from replay.errors import RunInterrupted, RunStateError


def test_an_interrupted_run_says_the_shell_command_that_finishes_it(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise RunInterrupted("20261108T120000Z-3fa9c1")

    monkeypatch.setattr(replay, "run", interrupted)
    monkeypatch.setattr(replay, "resume", interrupted)
    d = str(tmp_path / "my log")
    import logstore

    with logstore.open(d) as log:
        log.create_topic("i", schema="model_input")
    argv = ["run", d, "--inputs", "i", "--model", "replay.demo:make_challenger", "--output", "o"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"finish it with: replay resume '{d}' 20261108T120000Z-3fa9c1" in err
    assert "replay.resume(" not in err
    assert main(["resume", d, "20261108T120000Z-3fa9c1"]) == 130
    assert "finish it with: replay resume" in capsys.readouterr().err


def test_a_running_run_says_add_force(tmp_path, monkeypatch, capsys):
    def running(*args, **kwargs):
        raise RunStateError("run R is marked running; if its process is gone, resume with force=True (CLI: --force)")

    monkeypatch.setattr(replay, "resume", running)
    import logstore

    with logstore.open(tmp_path / "log") as log:
        log.create_topic("i", schema="model_input")
    assert main(["resume", str(tmp_path / "log"), "R"]) == 2
    err = capsys.readouterr().err
    assert "add --force" in err and "force=True" not in err


@pytest.mark.parametrize("argv", [["run"], ["resume"]])
def test_usage_errors_stay_usage_errors(argv):
    with pytest.raises(SystemExit):
        main(argv)

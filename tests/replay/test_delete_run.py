"""Deleting a run: its record goes crash-safely; its output topic goes too only when asked and
when it holds no other run's scores; `replay delete` asks first."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys

import pytest

import logstore
import replay
from logstore.admin import TopicBusyError
from logstore.errors import InvalidNameError
from replay.cli import main
from replay.errors import RunNotFoundError, RunStateError
from replay.runner import delete as delete_mod
from replay.runner import manifest as mf

from .builders import make_log


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A log with run A alone in output 'a.scores' and runs B, C sharing output 'shared'."""
    path = tmp_path_factory.mktemp("runs") / "log"
    log = make_log(path, n=12)
    ids = {}
    for name, output, append in (("A", "a.scores", False), ("B", "shared", False), ("C", "shared", True)):
        run = replay.run(
            log,
            inputs="inputs",
            models=["tests.replay.builders:make_linear"],
            output=output,
            run_id=f"run-{name}",
            progress=False,
            append=append,
        )
        ids[name] = run.id
    log.close()
    return path, ids


@pytest.fixture
def runs(template, tmp_path):
    """(log, ids): a fresh copy of the template."""
    path, ids = template
    shutil.copytree(path, tmp_path / "log")
    log = logstore.open(tmp_path / "log")
    yield log, ids
    log.close()


def _hidden(log) -> list[str]:
    return [n for n in os.listdir(log.path / "runs") if n.startswith(".")]


def test_an_output_of_its_own_is_deleted_only_when_asked(runs):
    log, ids = runs
    plan = delete_mod.plan_delete(log, ids["A"])
    assert plan.exclusive and plan.output == "a.scores" and plan.output_records == 12 and plan.scores == 12
    done = replay.delete_run(log, ids["A"])
    assert done.exclusive and not done.output_deleted and "a.scores" in log.topics()
    assert [r.id for r in replay.runs(log)] == [ids["B"], ids["C"]] and _hidden(log) == []
    with pytest.raises(RunNotFoundError):
        replay.get(log, ids["A"])


def test_with_output_deletes_a_topic_that_holds_only_this_run(runs):
    log, ids = runs
    done = replay.delete_run(log, ids["A"], with_output=True)
    assert done.output_deleted and "a.scores" not in log.topics() and not (log.path / "runs" / ids["A"]).exists()
    assert logstore.open(log.path).topics() == ["inputs", "outcomes", "shared"]


def test_a_shared_output_is_kept_and_the_runs_sharing_it_named(runs):
    log, ids = runs
    before = replay.get(log, ids["C"]).scores().num_rows
    done = replay.delete_run(log, ids["B"], with_output=True)
    assert not done.output_deleted and done.shared_with == (ids["C"],) and "shared" in log.topics()
    assert replay.get(log, ids["C"]).scores().num_rows == before == 12
    # B's rows stay in the append-only topic: C is not alone there, whatever the manifests say
    plan = delete_mod.plan_delete(log, ids["C"])
    assert plan.shared_with == (ids["B"],) and not plan.exclusive
    assert not replay.delete_run(log, ids["C"], with_output=True).output_deleted and "shared" in log.topics()


def test_a_running_run_is_refused_unless_forced(runs):
    log, ids = runs
    m = mf.read(log, ids["A"])
    m["status"] = "running"
    mf.write(log, m)
    with pytest.raises(RunStateError, match="marked running"):
        replay.delete_run(log, ids["A"], with_output=True)
    assert replay.get(log, ids["A"]).status == "running" and "a.scores" in log.topics()
    assert replay.delete_run(log, ids["A"], force=True).run_id == ids["A"]
    assert ids["A"] not in [r.id for r in replay.runs(log)]


def test_a_refused_output_deletion_leaves_the_run(runs, monkeypatch):
    log, ids = runs

    def busy(topic):
        raise TopicBusyError(f"topic {topic!r} is in use")

    monkeypatch.setattr(log, "delete_topic", busy)
    with pytest.raises(TopicBusyError):
        replay.delete_run(log, ids["A"], with_output=True)
    assert replay.get(log, ids["A"]).status == "complete" and "a.scores" in log.topics()


def test_a_crash_before_the_removal_hides_the_run_and_the_next_delete_cleans_up(runs, monkeypatch):
    log, ids = runs

    def broken(path, *a, **k):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(shutil, "rmtree", broken)
    replay.delete_run(log, ids["A"])
    assert len(_hidden(log)) == 1 and ids["A"] not in [r.id for r in replay.runs(log)]
    monkeypatch.undo()
    replay.delete_run(log, ids["B"])
    assert _hidden(log) == [] and [r.id for r in replay.runs(log)] == [ids["C"]]


def test_unknown_and_invalid_runs(runs):
    log, _ = runs
    with pytest.raises(RunNotFoundError):
        replay.delete_run(log, "no-such-run")
    for bad in ("../log", "..", ".deleted-1-1-x"):
        with pytest.raises(InvalidNameError):
            replay.delete_run(log, bad)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_command_asks_first_and_says_what_became_of_the_output(runs, capsys, monkeypatch):
    log, ids = runs
    d = str(log.path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert main(["delete", d, ids["A"]]) == 2
    err = capsys.readouterr().err
    assert "pass --yes" in err and err.count("\n") == 1 and replay.get(d, ids["A"])
    monkeypatch.setattr(sys, "stdin", FakeTTY("n\n"))
    assert main(["delete", d, ids["A"], "--with-output"]) == 1
    assert "delete run run-A and its output topic 'a.scores' (12 records," in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", FakeTTY("y\n"))
    assert main(["delete", d, ids["B"], "--with-output"]) == 0
    out = capsys.readouterr().out
    assert out == f"deleted run {ids['B']}; output topic 'shared' kept: it holds scores of run(s) {ids['C']} too\n"
    assert main(["delete", d, ids["A"], "--yes"]) == 0
    out = capsys.readouterr().out
    assert "holds only this run's scores (12 records) and was kept: `logstore delete-topic" in out
    assert main(["runs", d, "--json"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == [ids["C"]]
    assert main(["delete", d, ids["A"], "--yes"]) == 2 and "no run 'run-A'" in capsys.readouterr().err

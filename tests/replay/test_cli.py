"""The `replay` CLI: thin over the library, examples in --help, one-line errors, exit codes."""

from __future__ import annotations

import json

import pytest

import replay
from replay.cli import build_parser, main

from .builders import InterruptAfter, make_log


@pytest.fixture
def logdir(tmp_path):
    log = make_log(tmp_path / "log", n=24)
    log.close()
    return str(tmp_path / "log")


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_runs_show_audit(logdir, capsys):
    """run prints the run id and hash; runs lists it; show prints the manifest; audit certifies."""
    code, out, err = _run(
        capsys,
        "run",
        logdir,
        "--inputs",
        "inputs",
        "--outcomes",
        "outcomes",
        "--model",
        "tests.replay.builders:make_linear",
        "--model",
        "tests.replay.builders:make_mean",
        "--output",
        "cli.scores",
        "--no-progress",
    )
    assert code == 0, err
    run_id = out.split()[1].rstrip(":")
    assert "complete" in out and "content hash sha256:" in out
    code, out, _ = _run(capsys, "runs", logdir)
    assert code == 0 and run_id in out and "linear,mean" in out
    code, out, _ = _run(capsys, "runs", logdir, "--json")
    assert json.loads(out)[0]["run"] == run_id
    code, out, _ = _run(capsys, "show", logdir, run_id)
    assert code == 0 and json.loads(out)["run_id"] == run_id
    code, out, _ = _run(capsys, "audit", logdir, run_id)
    assert code == 0 and "CERTIFIED" in out
    assert replay.get(logdir, run_id).manifest["models"][1]["spec"] == "tests.replay.builders:make_mean"


def test_ranges_and_workers_from_the_command_line(logdir, capsys):
    """--start/--end take offsets, partition:offset lists or ISO times."""
    code, out, err = _run(
        capsys,
        "run",
        logdir,
        "--inputs",
        "inputs",
        "--model",
        "tests.replay.builders:make_linear",
        "--start",
        "0:1,1:2",
        "--end",
        "2026-11-01T00:00:20Z",
        "--workers",
        "2",
        "--no-progress",
    )
    assert code == 0, err
    run_id = out.split()[1].rstrip(":")
    parts = replay.get(logdir, run_id).manifest["inputs"]["partitions"]
    assert parts["0"][0] == 1 and parts["1"][0] == 2


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "{log}", "--inputs", "nope", "--model", "tests.replay.builders:make_linear"], "topic 'nope'"),
        (["run", "{log}", "--inputs", "inputs", "--model", "nomodule_zz:f"], "cannot import"),
        (
            ["run", "{log}", "--inputs", "inputs", "--model", "tests.replay.builders:make_linear", "--start", "99999"],
            "past its end",
        ),
        (
            [
                "run",
                "{log}",
                "--inputs",
                "inputs",
                "--outcomes",
                "outcomes",
                "--model",
                "tests.replay.builders:make_peeker",
            ],
            "after the clock",
        ),
        (["audit", "{log}", "no-such-run"], "no run 'no-such-run'"),
        (["show", "/no/such/log", "x"], "no log at"),
    ],
)
def test_errors_are_one_line_without_traceback(logdir, capsys, argv, needle):
    """User mistakes (and a stopped time leak) print one line to stderr and exit 2."""
    code, out, err = _run(capsys, *[a.replace("{log}", logdir) for a in argv])
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("replay: error:")


def test_resume_finishes_an_interrupted_run(logdir, capsys):
    """An interrupted run resumes from the CLI; resuming a complete run is refused."""
    InterruptAfter.armed = True
    code, out, err = _run(
        capsys,
        "run",
        logdir,
        "--inputs",
        "inputs",
        "--model",
        "tests.replay.builders:make_interrupting_linear",
        "--no-progress",
    )
    assert code == 130 and "interrupted" in err
    (run,) = replay.runs(logdir)
    assert run.status == "incomplete"
    code, out, err = _run(capsys, "resume", logdir, run.id, "--no-progress")
    assert code == 0 and "complete" in out, err
    code, out, err = _run(capsys, "resume", logdir, run.id)
    assert code == 2 and "already complete" in err


def test_help_has_examples(capsys):
    """Every command's --help ends with an example."""
    parser = build_parser()
    for cmd in ("run", "runs", "show", "audit", "resume"):
        with pytest.raises(SystemExit):
            parser.parse_args([cmd, "--help"])
        out = capsys.readouterr().out
        assert "example:" in out and f"replay {cmd}" in out


def test_audit_of_a_failed_or_tampered_run_exits_1(logdir, capsys):
    """`replay audit` of a run stopped by a time leak, or whose manifest was edited, prints why and exits 1."""
    import replay.runner.manifest as mf

    code, _, _ = _run(
        capsys,
        "run",
        logdir,
        "--inputs",
        "inputs",
        "--outcomes",
        "outcomes",
        "--model",
        "tests.replay.builders:make_peeker",
        "--no-progress",
    )
    assert code == 2
    (failed,) = replay.runs(logdir)
    code, out, _ = _run(capsys, "audit", logdir, failed.id)
    assert code == 1 and "FAILED, not certified" in out and "TimeLeakError" in out
    code, out, _ = _run(
        capsys, "run", logdir, "--inputs", "inputs", "--model", "tests.replay.builders:make_linear", "--no-progress"
    )
    run_id = out.split()[1].rstrip(":")
    log = replay.get(logdir, run_id).log
    m = mf.read(log, run_id)
    m["models"][0]["version"] = "9"
    mf.write(log, m)
    code, out, _ = _run(capsys, "audit", logdir, run_id)
    assert code == 1 and "models[0].version" in out and "'9'" in out


def test_a_rerun_into_an_occupied_output_is_refused_unless_appended(logdir, capsys):
    """A second `replay run` into an output topic that holds another run's scores writes nothing
    and names that run; with --append it adds its own rows beside them."""
    argv = ["run", logdir, "--inputs", "inputs", "--model", "tests.replay.builders:make_linear"]
    argv += ["--output", "o", "--no-progress"]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    first = out.split()[1].rstrip(":")
    ends = replay.runs(logdir)[0].log.end_offsets("o")
    code, _, err = _run(capsys, *argv)
    assert code == 2 and f"already holds {sum(ends.values()):,} records (run {first})" in err and "--append" in err
    assert replay.runs(logdir)[-1].id == first and replay.runs(logdir)[0].log.end_offsets("o") == ends
    code, out, _ = _run(capsys, *argv, "--append")
    assert code == 0 and len(replay.runs(logdir)) == 2
    assert sum(replay.runs(logdir)[0].log.end_offsets("o").values()) == 2 * sum(ends.values())

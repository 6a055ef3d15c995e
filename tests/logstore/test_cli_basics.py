"""The three console scripts: --version, the bare command, `create --exist-ok`, durations."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import logstore
from logstore.cli import main

BIN = Path(sys.executable).parent


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("prog", ["logstore", "replay", "rendezvous"])
def test_version_and_bare_help_through_the_console_scripts(prog):
    done = subprocess.run([str(BIN / prog), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == f"{prog} {logstore.__version__}"
    bare = subprocess.run([str(BIN / prog)], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith(f"usage: {prog}")
    assert "COMMAND" in bare.stdout and bare.stderr == ""


def test_create_exist_ok_same_settings_succeeds(tmp_path):
    d = str(tmp_path / "log")
    args = ["create", d, "s", "--schema", "model_score", "--partitions", "2", "--retention", "7d"]
    assert run(*args)[0] == 0
    code, out, _ = run(*args, "--exist-ok")
    assert code == 0 and "exists with these settings" in out
    # options left out are not compared: only what is asked must match
    assert run("create", d, "s", "--schema", "model_score", "--exist-ok")[0] == 0


def test_create_exist_ok_different_settings_says_what_differs(tmp_path):
    d = str(tmp_path / "log")
    assert run("create", d, "s", "--schema", "model_score", "--partitions", "2")[0] == 0
    code, _, err = run(
        "create", d, "s", "--schema", "model_score", "--partitions", "3", "--compression", "lz4", "--exist-ok"
    )
    assert code == 2
    assert "partitions: exists with 2, asked for 3" in err
    assert "compression: exists with 'zstd', asked for 'lz4'" in err
    code, _, err = run("create", d, "s", "--schema", "model_input", "--exist-ok")
    assert code == 2 and "schema: it is not any of its versions" in err
    with logstore.open(d, readonly=True) as log:  # nothing changed
        assert log.config("s").partitions == 2 and log.config("s").compression == "zstd"
    # without --exist-ok an existing topic is an error, as before
    assert run("create", d, "s", "--schema", "model_score")[0] == 2


def test_create_durations_take_units(tmp_path):
    d = str(tmp_path / "log")
    code = run("create", d, "a", "--schema", "model_score", "--retention", "7d", "--segment-age", "1h")[0]
    assert code == 0
    assert run("create", d, "b", "--schema", "model_score", "--retention-ms", "5000")[0] == 0
    assert run("create", d, "c", "--schema", "model_score", "--retention-ms", "2h")[0] == 0
    code, _, err = run("create", d, "x", "--schema", "model_score", "--retention", "7")
    assert code == 2 and "ambiguous" in err
    code, _, err = run("create", d, "y", "--schema", "model_score", "--retention", "7d", "--retention-ms", "1")
    assert code == 2 and "not both" in err
    code, out, _ = run("describe", d, "--json")
    info = json.loads(out)
    assert info["a"]["retention_ms"] == 7 * 86_400_000
    assert info["b"]["retention_ms"] == 5000
    assert info["c"]["retention_ms"] == 7_200_000
    assert "x" not in info and "y" not in info


def test_replay_durations_refuse_a_bare_number(tmp_path, capsys):
    from replay.cli import main as replay_main

    d = str(tmp_path / "log")
    assert run("create", d, "inputs", "--schema", "model_input")[0] == 0
    argv = ["run", d, "--inputs", "inputs", "--model", "replay.demo:make_challenger", "--output", "o"]
    assert replay_main([*argv, "--horizon", "7"]) == 2
    assert "--horizon '7': a bare number is ambiguous" in capsys.readouterr().err
    assert replay_main([*argv, "--lateness", "soon"]) == 2
    assert "--lateness 'soon' is not a duration" in capsys.readouterr().err
    with logstore.open(d, readonly=True) as log:
        assert "o" not in log.topics()  # refused before the run began


def test_sql_query_may_follow_the_options(tmp_path):
    d = str(tmp_path / "log")
    assert run("create", d, "s", "--schema", "model_score")[0] == 0
    code, out, err = run("sql", d, "--format", "csv", "SELECT 41 + 1 AS answer")
    assert code == 0, err
    assert out.split() == ["answer", "42"]
    with pytest.raises(SystemExit):  # two stray words are still a usage error
        run("sql", d, "--format", "csv", "SELECT 1", "extra")


@pytest.mark.parametrize("prog", ["logstore", "replay", "rendezvous"])
def test_completion_scripts_complete_commands_and_options(prog, tmp_path):
    """`PROG completion bash` is a script bash sources; its function completes subcommands and
    options from the parser (so it cannot fall behind)."""
    script = subprocess.run([str(BIN / prog), "completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0, script.stderr
    path = tmp_path / "complete.bash"
    path.write_text(script.stdout)
    fn = f"_shtab_{prog}"
    probe = (
        f"source {path}; COMP_WORDS=({prog} ''); COMP_CWORD=1; {fn}; echo \"${{COMPREPLY[@]}}\"; "
        f"COMP_WORDS=({prog} completion ''); COMP_CWORD=2; {fn}; echo \"${{COMPREPLY[@]}}\""
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
    commands, shells = done.stdout.splitlines()[-2:]
    assert "completion" in commands.split()
    assert set(shells.split()) == {"bash", "zsh", "tcsh"}
    zsh = subprocess.run([str(BIN / prog), "completion", "zsh"], capture_output=True, text=True, timeout=60)
    assert zsh.returncode == 0 and f"#compdef {prog}" in zsh.stdout
